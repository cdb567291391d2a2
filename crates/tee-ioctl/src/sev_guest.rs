//! `/dev/sev-guest`: SEV-SNP attestation reports through the legacy ioctls.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::abi::{
    REPORT_DATA_LEN, SNP_CERTS_PAGE, SNP_REPORT_RESP_LEN, SNP_REPORT_RSP_HEADER_LEN,
    SNP_VMM_ERR_BUSY, SNP_VMM_ERR_INVALID_LEN, SnpExtReportReq, SnpReportReq, SnpReportResp,
};
use crate::{EIO, ENODEV, ENOTTY, ENXIO, ffi};

/// Where the SEV guest driver's device is.
pub const DEFAULT_SEV_GUEST_PATH: &str = "/dev/sev-guest";

/// The highest VMPL a report can be requested for.
pub const MAX_VMPL: u32 = 3;

/// The certificate buffer offered first: 16 KiB, the kernel's SEV_FW_BLOB_MAX_SIZE.
pub const SNP_CERTS_INITIAL_LEN: usize = 4 * SNP_CERTS_PAGE;

/// The most a host may ask for when the first buffer is too small; a real chain is a few
/// KiB, so more means a misbehaving host.
const SNP_CERTS_MAX_LEN: usize = 1 << 20;

/// Errors from `/dev/sev-guest`.
#[derive(Debug, thiserror::Error)]
pub enum SevGuestError {
    /// The device is missing, has no driver, or does not answer the SEV guest ioctls.
    #[error("no {path}: not an SNP guest or driver not loaded")]
    NoDevice {
        /// The device path.
        path: PathBuf,
    },
    /// Opening the device failed otherwise (for example EACCES: run as root).
    #[error("cannot open {path}")]
    Open {
        /// The device path.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
    /// A VMPL above [`MAX_VMPL`] was requested.
    #[error("VMPL {vmpl} is out of range: SEV-SNP has VMPLs 0..={MAX_VMPL}")]
    VmplOutOfRange {
        /// The requested VMPL.
        vmpl: u32,
    },
    /// The firmware or the host refused the request (EIO); the codes come from `exitinfo2`.
    #[error(
        "{request} failed in the firmware or host: fw_error {fw_error:#x}, vmm_error \
         {vmm_error:#x} ({})", firmware_hint(*.fw_error, *.vmm_error)
    )]
    Firmware {
        /// The ioctl.
        request: &'static str,
        /// The SEV firmware's status (SNP ABI status codes).
        fw_error: u32,
        /// The hypervisor's error (GHCB specification).
        vmm_error: u32,
    },
    /// The host needs a larger certificate buffer than this crate offers.
    #[error(
        "the host wants a {required}-byte certificate buffer, more than the {offered} bytes \
         offered: the host's certificate table is misconfigured"
    )]
    CertsBufferTooSmall {
        /// What the kernel asked for.
        required: u32,
        /// What was offered last.
        offered: usize,
    },
    /// MSG_REPORT_RSP carries a non-zero status.
    #[error("the SEV firmware answered the report request with status {status:#x}; check the VMPL")]
    ReportStatus {
        /// The status.
        status: u32,
    },
    /// MSG_REPORT_RSP claims a report size that is zero or does not fit the response.
    #[error(
        "the SEV firmware's response claims a {size}-byte report, but at most {} fit; the \
         response is malformed", SNP_REPORT_RESP_LEN - SNP_REPORT_RSP_HEADER_LEN
    )]
    ReportSize {
        /// The claimed size.
        size: u32,
    },
    /// The ioctl failed with another errno.
    #[error("{request} on {path} failed")]
    Ioctl {
        /// The ioctl.
        request: &'static str,
        /// The device path.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

fn firmware_hint(fw_error: u32, vmm_error: u32) -> &'static str {
    match vmm_error {
        SNP_VMM_ERR_BUSY => "the host is busy: retry",
        SNP_VMM_ERR_INVALID_LEN => "the certificate buffer is too small",
        0 if fw_error != 0 => "the firmware refused the request: check the VMPL",
        0 => "no error code: check the kernel log",
        _ => "unknown host error: see the GHCB specification",
    }
}

/// An SEV-SNP report with the host's certificate table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpExtendedReport {
    /// The attestation report (1184 bytes on current firmware).
    pub report: Vec<u8>,
    /// The certificate buffer as the kernel filled it: a GHCB certificate table followed by
    /// zero padding, all zero when the host supplies no certificates.
    pub certs: Vec<u8>,
}

/// An open `/dev/sev-guest`.
#[derive(Debug)]
pub struct SevGuest {
    file: File,
    path: PathBuf,
}

impl SevGuest {
    /// Opens the device at [`DEFAULT_SEV_GUEST_PATH`].
    pub fn open_default() -> Result<SevGuest, SevGuestError> {
        SevGuest::open(DEFAULT_SEV_GUEST_PATH)
    }

    /// Opens the device at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<SevGuest, SevGuestError> {
        let path = path.as_ref().to_path_buf();
        match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => Ok(SevGuest { file, path }),
            Err(source) if is_missing_device(&source) => Err(SevGuestError::NoDevice { path }),
            Err(source) => Err(SevGuestError::Open { path, source }),
        }
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An attestation report binding `report_data`, at `vmpl`.
    pub fn get_report(
        &self,
        report_data: &[u8; REPORT_DATA_LEN],
        vmpl: u32,
    ) -> Result<Vec<u8>, SevGuestError> {
        let mut report_req = report_req(report_data, vmpl)?;
        let mut response = Box::new(SnpReportResp {
            data: [0; SNP_REPORT_RESP_LEN],
        });
        ffi::snp_get_report(&self.file, &mut report_req, &mut response)
            .map_err(|failure| self.request_failed("SNP_GET_REPORT", failure))?;
        report_from_response(&response.data)
    }

    /// An attestation report binding `report_data`, at `vmpl`, with the certificate table
    /// the host supplies.
    pub fn get_ext_report(
        &self,
        report_data: &[u8; REPORT_DATA_LEN],
        vmpl: u32,
    ) -> Result<SnpExtendedReport, SevGuestError> {
        let mut ext_req = SnpExtReportReq {
            data: report_req(report_data, vmpl)?,
            certs_address: 0,
            certs_len: 0,
        };
        let mut response = Box::new(SnpReportResp {
            data: [0; SNP_REPORT_RESP_LEN],
        });
        let mut certs = vec![0; SNP_CERTS_INITIAL_LEN];
        // One retry: the first answer tells the size the host needs.
        let mut retried = false;
        loop {
            match ffi::snp_get_ext_report(&self.file, &mut ext_req, &mut certs, &mut response) {
                Ok(()) => break,
                Err(failure)
                    if failure.source.raw_os_error() == Some(EIO)
                        && failure.request.vmm_error() == SNP_VMM_ERR_INVALID_LEN =>
                {
                    let required = ext_req.certs_len;
                    match retry_certs_len(required, certs.len()) {
                        Some(len) if !retried => {
                            retried = true;
                            certs = vec![0; len];
                        }
                        _ => {
                            return Err(SevGuestError::CertsBufferTooSmall {
                                required,
                                offered: certs.len(),
                            });
                        }
                    }
                }
                Err(failure) => return Err(self.request_failed("SNP_GET_EXT_REPORT", failure)),
            }
        }
        Ok(SnpExtendedReport {
            report: report_from_response(&response.data)?,
            certs,
        })
    }

    fn request_failed(
        &self,
        request: &'static str,
        failure: ffi::SnpRequestFailure,
    ) -> SevGuestError {
        match failure.source.raw_os_error() {
            // Not the SEV guest driver behind this file.
            Some(ENOTTY) => SevGuestError::NoDevice {
                path: self.path.clone(),
            },
            Some(EIO) => SevGuestError::Firmware {
                request,
                fw_error: failure.request.fw_error(),
                vmm_error: failure.request.vmm_error(),
            },
            _ => SevGuestError::Ioctl {
                request,
                path: self.path.clone(),
                source: failure.source,
            },
        }
    }
}

/// Missing node, or a node without a driver.
pub(crate) fn is_missing_device(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::NotFound
        || matches!(error.raw_os_error(), Some(ENODEV) | Some(ENXIO))
}

fn report_req(
    report_data: &[u8; REPORT_DATA_LEN],
    vmpl: u32,
) -> Result<SnpReportReq, SevGuestError> {
    if vmpl > MAX_VMPL {
        return Err(SevGuestError::VmplOutOfRange { vmpl });
    }
    Ok(SnpReportReq {
        user_data: *report_data,
        vmpl,
        rsvd: [0; 28],
    })
}

/// The report inside MSG_REPORT_RSP: u32 status, u32 report_size, 24 reserved bytes, report.
fn report_from_response(data: &[u8; SNP_REPORT_RESP_LEN]) -> Result<Vec<u8>, SevGuestError> {
    let (status, rest) = data
        .split_first_chunk::<4>()
        .ok_or(SevGuestError::ReportSize { size: 0 })?;
    let (size, _) = rest
        .split_first_chunk::<4>()
        .ok_or(SevGuestError::ReportSize { size: 0 })?;
    let status = u32::from_le_bytes(*status);
    let size = u32::from_le_bytes(*size);
    if status != 0 {
        return Err(SevGuestError::ReportStatus { status });
    }
    let report = usize::try_from(size)
        .ok()
        .filter(|&len| len > 0)
        .and_then(|len| {
            data.get(SNP_REPORT_RSP_HEADER_LEN..SNP_REPORT_RSP_HEADER_LEN.checked_add(len)?)
        })
        .ok_or(SevGuestError::ReportSize { size })?;
    Ok(report.to_vec())
}

/// The buffer size to retry with when the host needs `required` bytes: whole pages, larger
/// than what was offered, within [`SNP_CERTS_MAX_LEN`].
fn retry_certs_len(required: u32, offered: usize) -> Option<usize> {
    let required = usize::try_from(required).ok()?;
    let len = required.checked_next_multiple_of(SNP_CERTS_PAGE)?;
    (len > offered && len <= SNP_CERTS_MAX_LEN).then_some(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::SnpGuestRequestIoctl;

    #[test]
    fn missing_device_is_a_clear_error() {
        let err = SevGuest::open("/nonexistent/sev-guest").unwrap_err();
        assert!(matches!(err, SevGuestError::NoDevice { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "no /nonexistent/sev-guest: not an SNP guest or driver not loaded"
        );
    }

    #[test]
    fn device_without_the_ioctls_is_a_clear_error() {
        // /dev/null answers every ioctl with ENOTTY.
        let device = SevGuest::open("/dev/null").unwrap();
        assert_eq!(device.path(), Path::new("/dev/null"));
        let err = device.get_report(&[0; REPORT_DATA_LEN], 0).unwrap_err();
        assert!(matches!(err, SevGuestError::NoDevice { .. }), "{err:?}");
        assert!(err.to_string().contains("not an SNP guest"), "{err}");
        let err = device.get_ext_report(&[0; REPORT_DATA_LEN], 0).unwrap_err();
        assert!(matches!(err, SevGuestError::NoDevice { .. }), "{err:?}");
    }

    #[test]
    fn other_open_failures_name_the_path() {
        // A directory cannot be opened for writing.
        let err = SevGuest::open("/").unwrap_err();
        assert!(matches!(err, SevGuestError::Open { .. }), "{err:?}");
        let chain = contrast_platforms::error_chain(&err);
        assert!(chain.starts_with("cannot open /: "), "{chain}");
    }

    #[test]
    fn refuses_vmpl_out_of_range_before_asking() {
        let device = SevGuest::open("/dev/null").unwrap();
        let err = device
            .get_report(&[0; REPORT_DATA_LEN], MAX_VMPL + 1)
            .unwrap_err();
        assert!(
            matches!(err, SevGuestError::VmplOutOfRange { vmpl: 4 }),
            "{err:?}"
        );
        let err = device.get_ext_report(&[0; REPORT_DATA_LEN], 7).unwrap_err();
        assert!(
            matches!(err, SevGuestError::VmplOutOfRange { vmpl: 7 }),
            "{err:?}"
        );
    }

    #[test]
    fn maps_ioctl_failures() {
        let device = SevGuest::open("/dev/null").unwrap();
        let failure = |errno: i32, exitinfo2: u64| ffi::SnpRequestFailure {
            source: io::Error::from_raw_os_error(errno),
            request: SnpGuestRequestIoctl {
                exitinfo2,
                ..Default::default()
            },
        };

        let err = device.request_failed("SNP_GET_REPORT", failure(EIO, 0x0000_0002_0000_0016));
        assert!(
            matches!(
                err,
                SevGuestError::Firmware {
                    fw_error: 0x16,
                    vmm_error: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("fw_error 0x16, vmm_error 0x2 (the host is busy: retry)"),
            "{err}"
        );
        let err = device.request_failed("SNP_GET_REPORT", failure(EIO, 0x16));
        assert!(err.to_string().contains("check the VMPL"), "{err}");

        let err = device.request_failed("SNP_GET_REPORT", failure(ENOTTY, 0));
        assert!(matches!(err, SevGuestError::NoDevice { .. }), "{err:?}");

        let err = device.request_failed("SNP_GET_EXT_REPORT", failure(22, 0));
        assert!(
            matches!(
                err,
                SevGuestError::Ioctl {
                    request: "SNP_GET_EXT_REPORT",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .contains("SNP_GET_EXT_REPORT on /dev/null failed"),
            "{err}"
        );
    }

    #[test]
    fn missing_driver_errnos_count_as_missing_device() {
        for errno in [2, ENODEV, ENXIO] {
            assert!(
                is_missing_device(&io::Error::from_raw_os_error(errno)),
                "{errno}"
            );
        }
        assert!(!is_missing_device(&io::Error::from_raw_os_error(13)));
    }

    fn response(status: u32, size: u32) -> [u8; SNP_REPORT_RESP_LEN] {
        let mut data = [0; SNP_REPORT_RESP_LEN];
        data[..4].copy_from_slice(&status.to_le_bytes());
        data[4..8].copy_from_slice(&size.to_le_bytes());
        for (i, byte) in data[SNP_REPORT_RSP_HEADER_LEN..].iter_mut().enumerate() {
            *byte = i as u8;
        }
        data
    }

    #[test]
    fn reads_the_report_out_of_the_response() {
        let report = report_from_response(&response(0, 1184)).unwrap();
        assert_eq!(report.len(), 1184);
        assert_eq!(report[..3], [0, 1, 2]);
        // The largest size that fits.
        let max = (SNP_REPORT_RESP_LEN - SNP_REPORT_RSP_HEADER_LEN) as u32;
        assert_eq!(
            report_from_response(&response(0, max)).unwrap().len(),
            max as usize
        );
    }

    #[test]
    fn refuses_bad_responses() {
        let err = report_from_response(&response(0x16, 1184)).unwrap_err();
        assert!(
            matches!(err, SevGuestError::ReportStatus { status: 0x16 }),
            "{err:?}"
        );
        let max = (SNP_REPORT_RESP_LEN - SNP_REPORT_RSP_HEADER_LEN) as u32;
        for size in [0, max + 1, u32::MAX] {
            let err = report_from_response(&response(0, size)).unwrap_err();
            assert!(
                matches!(err, SevGuestError::ReportSize { size: s } if s == size),
                "{err:?}"
            );
        }
    }

    #[test]
    fn certificate_buffer_retry_sizes() {
        // Rounded up to whole pages.
        assert_eq!(
            retry_certs_len(20_000, SNP_CERTS_INITIAL_LEN),
            Some(5 * SNP_CERTS_PAGE)
        );
        // Not larger than what was offered: no point retrying.
        assert_eq!(retry_certs_len(4096, SNP_CERTS_INITIAL_LEN), None);
        // Beyond the cap.
        assert_eq!(retry_certs_len(u32::MAX, SNP_CERTS_INITIAL_LEN), None);
        assert_eq!(
            retry_certs_len(SNP_CERTS_MAX_LEN as u32, 0),
            Some(SNP_CERTS_MAX_LEN)
        );
        assert_eq!(retry_certs_len(SNP_CERTS_MAX_LEN as u32 + 1, 0), None);
    }

    #[test]
    fn certs_buffer_too_small_message() {
        let err = SevGuestError::CertsBufferTooSmall {
            required: 2 << 20,
            offered: SNP_CERTS_INITIAL_LEN,
        };
        assert!(err.to_string().contains("misconfigured"), "{err}");
    }
}
