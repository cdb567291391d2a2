//! Kernel ABI of the two guest devices: ioctl numbers and struct layouts, from
//! `include/uapi/linux/sev-guest.h` and `include/uapi/linux/tdx-guest.h`.
//!
//! The structs are `#[repr(C)]` copies of the kernel's; the tests pin their sizes and field
//! offsets, and every ioctl number encodes the size of the struct it passes.

use std::mem::size_of;

// The generic Linux ioctl encoding (x86, arm, riscv; not powerpc, mips or sparc):
// bits 0..8 number, 8..16 type, 16..30 argument size, 30..32 direction.
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = 8;
const IOC_SIZESHIFT: u32 = 16;
const IOC_DIRSHIFT: u32 = 30;
const IOC_SIZEBITS: u32 = 14;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// `_IOWR(ty, nr, size)`: an ioctl that passes `size` bytes in and out.
///
/// Only used to define constants, so an oversized struct fails the build, not a call.
const fn iowr(ty: u8, nr: u8, size: usize) -> u32 {
    assert!(
        size < 1 << IOC_SIZEBITS,
        "ioctl argument too large for the size field"
    );
    ((IOC_READ | IOC_WRITE) << IOC_DIRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
}

/// `SNP_GET_REPORT`: an attestation report, `_IOWR('S', 0, struct snp_guest_request_ioctl)`.
pub const SNP_GET_REPORT: u32 = iowr(b'S', 0, size_of::<SnpGuestRequestIoctl>());
/// `SNP_GET_EXT_REPORT`: a report plus the host's certificate table,
/// `_IOWR('S', 2, struct snp_guest_request_ioctl)`.
pub const SNP_GET_EXT_REPORT: u32 = iowr(b'S', 2, size_of::<SnpGuestRequestIoctl>());
/// `TDX_CMD_GET_REPORT0`: a TDREPORT, `_IOWR('T', 1, struct tdx_report_req)`.
pub const TDX_CMD_GET_REPORT0: u32 = iowr(b'T', 1, size_of::<TdxReportReq>());

/// The message version `/dev/sev-guest` requests are sent with (must be non-zero).
pub(crate) const SNP_MSG_VERSION: u8 = 1;
/// Host error in `exitinfo2`: the certificate buffer is too small; `certs_len` now holds
/// the size needed (SNP_GUEST_VMM_ERR_INVALID_LEN).
pub(crate) const SNP_VMM_ERR_INVALID_LEN: u32 = 1;
/// Host error in `exitinfo2`: the host is busy (SNP_GUEST_VMM_ERR_BUSY).
pub(crate) const SNP_VMM_ERR_BUSY: u32 = 2;

/// Size of `snp_report_resp.data`.
pub(crate) const SNP_REPORT_RESP_LEN: usize = 4000;
/// Offset of the report in MSG_REPORT_RSP (after status, report_size and 24 reserved bytes).
pub(crate) const SNP_REPORT_RSP_HEADER_LEN: usize = 32;
/// Size of the SEV-SNP `REPORT_DATA` and TDX `REPORTDATA` the caller binds.
pub const REPORT_DATA_LEN: usize = 64;
/// Size of a TDREPORT (REPORTMACSTRUCT, TEE_TCB_INFO, reserved, TDINFO).
pub const TDREPORT_LEN: usize = 1024;
/// The certificate buffer must be a whole number of pages (the guest page size on x86-64).
pub const SNP_CERTS_PAGE: usize = 4096;

/// `struct snp_guest_request_ioctl`.
#[repr(C)]
#[derive(Debug, Default)]
pub(crate) struct SnpGuestRequestIoctl {
    pub(crate) msg_version: u8,
    /// Address of the request struct.
    pub(crate) req_data: u64,
    /// Address of the `snp_report_resp`.
    pub(crate) resp_data: u64,
    /// Union of `u64 exitinfo2` and `{u32 fw_error; u32 vmm_error}`; on little-endian x86-64
    /// `fw_error` is the low half.
    pub(crate) exitinfo2: u64,
}

impl SnpGuestRequestIoctl {
    pub(crate) fn fw_error(&self) -> u32 {
        self.exitinfo2 as u32
    }

    pub(crate) fn vmm_error(&self) -> u32 {
        (self.exitinfo2 >> 32) as u32
    }
}

/// `struct snp_report_req`.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SnpReportReq {
    pub(crate) user_data: [u8; REPORT_DATA_LEN],
    pub(crate) vmpl: u32,
    pub(crate) rsvd: [u8; 28],
}

/// `struct snp_report_resp`: MSG_REPORT_RSP as the firmware sent it.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SnpReportResp {
    pub(crate) data: [u8; SNP_REPORT_RESP_LEN],
}

/// `struct snp_ext_report_req`.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct SnpExtReportReq {
    pub(crate) data: SnpReportReq,
    /// Address of the certificate buffer.
    pub(crate) certs_address: u64,
    /// Its size in bytes (a multiple of [`SNP_CERTS_PAGE`]); the kernel writes the size
    /// needed here when the buffer is too small.
    pub(crate) certs_len: u32,
}

/// `struct tdx_report_req`.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct TdxReportReq {
    pub(crate) reportdata: [u8; REPORT_DATA_LEN],
    pub(crate) tdreport: [u8; TDREPORT_LEN],
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of};

    #[test]
    fn ioctl_numbers_match_the_hand_derived_values() {
        // dir 3 (read|write) << 30 = 0xc000_0000; size << 16; type << 8; number.
        // snp_guest_request_ioctl is 32 = 0x20 bytes, 'S' = 0x53.
        assert_eq!(SNP_GET_REPORT, 0xc020_5300);
        assert_eq!(SNP_GET_EXT_REPORT, 0xc020_5302);
        // tdx_report_req is 64 + 1024 = 1088 = 0x440 bytes, 'T' = 0x54.
        assert_eq!(TDX_CMD_GET_REPORT0, 0xc440_5401);
        // SNP_GET_DERIVED_KEY, for the encoding only.
        assert_eq!(iowr(b'S', 1, 32), 0xc020_5301);
    }

    #[test]
    fn snp_guest_request_ioctl_layout() {
        assert_eq!(size_of::<SnpGuestRequestIoctl>(), 32);
        assert_eq!(offset_of!(SnpGuestRequestIoctl, msg_version), 0);
        assert_eq!(offset_of!(SnpGuestRequestIoctl, req_data), 8);
        assert_eq!(offset_of!(SnpGuestRequestIoctl, resp_data), 16);
        assert_eq!(offset_of!(SnpGuestRequestIoctl, exitinfo2), 24);
    }

    #[test]
    fn exitinfo2_halves() {
        let request = SnpGuestRequestIoctl {
            exitinfo2: 0x0000_0002_0000_0016,
            ..Default::default()
        };
        assert_eq!(request.fw_error(), 0x16);
        assert_eq!(request.vmm_error(), SNP_VMM_ERR_BUSY);
        // The union's struct view: fw_error is the first u32 in memory.
        let bytes = request.exitinfo2.to_le_bytes();
        assert_eq!(
            u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            0x16
        );
    }

    #[test]
    fn snp_report_structs_layout() {
        assert_eq!(size_of::<SnpReportReq>(), 96);
        assert_eq!(offset_of!(SnpReportReq, user_data), 0);
        assert_eq!(offset_of!(SnpReportReq, vmpl), 64);
        assert_eq!(offset_of!(SnpReportReq, rsvd), 68);
        assert_eq!(size_of::<SnpReportResp>(), 4000);
        // 96 + 8 + 4, padded to the u64 alignment.
        assert_eq!(size_of::<SnpExtReportReq>(), 112);
        assert_eq!(align_of::<SnpExtReportReq>(), 8);
        assert_eq!(offset_of!(SnpExtReportReq, data), 0);
        assert_eq!(offset_of!(SnpExtReportReq, certs_address), 96);
        assert_eq!(offset_of!(SnpExtReportReq, certs_len), 104);
    }

    #[test]
    fn tdx_report_req_layout() {
        assert_eq!(size_of::<TdxReportReq>(), 1088);
        assert_eq!(offset_of!(TdxReportReq, reportdata), 0);
        assert_eq!(offset_of!(TdxReportReq, tdreport), 64);
    }
}
