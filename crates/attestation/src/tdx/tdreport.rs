//! The TDREPORT (`TDREPORT_STRUCT`, 1024 bytes) that `TDG.MR.REPORT` writes into the TD's
//! private memory, as Linux returns it from `TDX_CMD_GET_REPORT0` on `/dev/tdx_guest`.
//!
//! Unlike a quote, which the host's quote service makes, the TDREPORT comes from the TDX
//! module without passing through the host, so a TD can read its own measurements from it.
//! It carries a MAC for the local platform, not a signature: only the TD itself can trust
//! it. Layout (Intel TDX module ABI): REPORTMACSTRUCT (256 bytes: REPORTTYPE at 0,
//! REPORTDATA at 128, MAC at 224), TEE_TCB_INFO (239 bytes at 256), 17 reserved bytes,
//! TDINFO (512 bytes at 512: ATTRIBUTES, XFAM, MRTD, MRCONFIGID, MROWNER, MROWNERCONFIG,
//! RTMR0–3, SERVTD_HASH, reserved).

/// Length of a TDREPORT.
pub const TDREPORT_LEN: usize = 1024;

/// REPORTTYPE.TYPE of a TDX report.
const REPORT_TYPE_TDX: u8 = 0x81;
const REPORT_DATA: usize = 128;
const TD_INFO: usize = 512;

/// A TDREPORT that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TdReportError {
    /// Not 1024 bytes.
    #[error("the TDREPORT is {0} bytes long, expected 1024 (TDREPORT_STRUCT)")]
    Length(usize),
    /// REPORTTYPE.TYPE is not TDX.
    #[error("the TDREPORT's REPORTTYPE.TYPE is {0:#04x}, expected 0x81 (TDX)")]
    ReportType(u8),
}

/// The fields of a TDREPORT a TD reads about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTdReport {
    /// REPORTDATA, as the TD asked for it.
    pub report_data: [u8; 64],
    /// TDINFO.ATTRIBUTES.
    pub td_attributes: [u8; 8],
    /// TDINFO.XFAM.
    pub xfam: [u8; 8],
    /// TDINFO.MRTD.
    pub mr_td: [u8; 48],
    /// TDINFO.MRCONFIGID: set by the host at launch (Kata: the initdata digest).
    pub mr_config_id: [u8; 48],
    /// TDINFO.MROWNER.
    pub mr_owner: [u8; 48],
    /// TDINFO.MROWNERCONFIG.
    pub mr_owner_config: [u8; 48],
    /// TDINFO.RTMR0–3.
    pub rtmrs: [[u8; 48]; 4],
}

fn field<const N: usize>(bytes: &[u8], offset: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&bytes[offset..offset + N]);
    out
}

impl LocalTdReport {
    /// Reads a TDREPORT.
    pub fn parse(bytes: &[u8]) -> Result<Self, TdReportError> {
        if bytes.len() != TDREPORT_LEN {
            return Err(TdReportError::Length(bytes.len()));
        }
        if bytes[0] != REPORT_TYPE_TDX {
            return Err(TdReportError::ReportType(bytes[0]));
        }
        let td = TD_INFO;
        Ok(LocalTdReport {
            report_data: field(bytes, REPORT_DATA),
            td_attributes: field(bytes, td),
            xfam: field(bytes, td + 8),
            mr_td: field(bytes, td + 16),
            mr_config_id: field(bytes, td + 64),
            mr_owner: field(bytes, td + 112),
            mr_owner_config: field(bytes, td + 160),
            rtmrs: [
                field(bytes, td + 208),
                field(bytes, td + 256),
                field(bytes, td + 304),
                field(bytes, td + 352),
            ],
        })
    }

    /// Lays the fields out as a TDREPORT (TEE_TCB_INFO and MAC zero): what a simulated
    /// TDX module returns.
    pub fn to_bytes(&self) -> [u8; TDREPORT_LEN] {
        let mut out = [0; TDREPORT_LEN];
        out[0] = REPORT_TYPE_TDX;
        out[REPORT_DATA..REPORT_DATA + 64].copy_from_slice(&self.report_data);
        let td = TD_INFO;
        out[td..td + 8].copy_from_slice(&self.td_attributes);
        out[td + 8..td + 16].copy_from_slice(&self.xfam);
        out[td + 16..td + 64].copy_from_slice(&self.mr_td);
        out[td + 64..td + 112].copy_from_slice(&self.mr_config_id);
        out[td + 112..td + 160].copy_from_slice(&self.mr_owner);
        out[td + 160..td + 208].copy_from_slice(&self.mr_owner_config);
        for (i, rtmr) in self.rtmrs.iter().enumerate() {
            out[td + 208 + 48 * i..td + 256 + 48 * i].copy_from_slice(rtmr);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_sit_where_the_tdx_module_abi_puts_them() {
        let mut bytes = [0u8; TDREPORT_LEN];
        bytes[0] = 0x81;
        bytes[128] = 0xaa; // REPORTDATA[0]
        bytes[191] = 0xab; // REPORTDATA[63]
        bytes[512] = 0x10; // ATTRIBUTES[0]
        bytes[528] = 0x7d; // MRTD[0]
        bytes[576] = 0xc1; // MRCONFIGID[0]
        bytes[623] = 0xc2; // MRCONFIGID[47]
        bytes[720] = 0x01; // RTMR0[0]
        bytes[911] = 0x03; // RTMR3[47]
        let report = LocalTdReport::parse(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (report.report_data[0], report.report_data[63]),
            (0xaa, 0xab)
        );
        assert_eq!(report.td_attributes[0], 0x10);
        assert_eq!(report.mr_td[0], 0x7d);
        assert_eq!(
            (report.mr_config_id[0], report.mr_config_id[47]),
            (0xc1, 0xc2)
        );
        assert_eq!((report.rtmrs[0][0], report.rtmrs[3][47]), (0x01, 0x03));
        assert_eq!(report.to_bytes(), bytes);
    }

    #[test]
    fn other_lengths_and_report_types_are_refused() {
        assert_eq!(
            LocalTdReport::parse(&[0x81; 1023]),
            Err(TdReportError::Length(1023))
        );
        let mut bytes = [0u8; TDREPORT_LEN];
        assert_eq!(
            LocalTdReport::parse(&bytes),
            Err(TdReportError::ReportType(0))
        );
        bytes[0] = 0x80; // an SGX-style type is not a TD's
        assert_eq!(
            LocalTdReport::parse(&bytes),
            Err(TdReportError::ReportType(0x80))
        );
    }
}
