//! `/dev/tdx_guest`: TDREPORTs through `TDX_CMD_GET_REPORT0`.
//!
//! A TDREPORT is MACed for the local platform, not signed: a remote verifier needs a quote,
//! which upstream Linux produces only through configfs-tsm.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::abi::{REPORT_DATA_LEN, TDREPORT_LEN, TdxReportReq};
use crate::sev_guest::is_missing_device;
use crate::{ENOTTY, ffi};

/// Where the TDX guest driver's device is.
pub const DEFAULT_TDX_GUEST_PATH: &str = "/dev/tdx_guest";

/// Errors from `/dev/tdx_guest`.
#[derive(Debug, thiserror::Error)]
pub enum TdxGuestError {
    /// The device is missing, has no driver, or does not answer the TDX guest ioctl.
    #[error("no {path}: not a TDX guest or driver not loaded")]
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
    /// The ioctl failed with another errno (EIO: the TDG.MR.REPORT call failed).
    #[error("TDX_CMD_GET_REPORT0 on {path} failed")]
    Ioctl {
        /// The device path.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

/// An open `/dev/tdx_guest`.
#[derive(Debug)]
pub struct TdxGuest {
    file: File,
    path: PathBuf,
}

impl TdxGuest {
    /// Opens the device at [`DEFAULT_TDX_GUEST_PATH`].
    pub fn open_default() -> Result<TdxGuest, TdxGuestError> {
        TdxGuest::open(DEFAULT_TDX_GUEST_PATH)
    }

    /// Opens the device at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<TdxGuest, TdxGuestError> {
        let path = path.as_ref().to_path_buf();
        match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => Ok(TdxGuest { file, path }),
            Err(source) if is_missing_device(&source) => Err(TdxGuestError::NoDevice { path }),
            Err(source) => Err(TdxGuestError::Open { path, source }),
        }
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A TDREPORT binding `report_data` (its REPORTDATA).
    pub fn get_report0(
        &self,
        report_data: &[u8; REPORT_DATA_LEN],
    ) -> Result<[u8; TDREPORT_LEN], TdxGuestError> {
        let mut req = TdxReportReq {
            reportdata: *report_data,
            tdreport: [0; TDREPORT_LEN],
        };
        ffi::tdx_get_report0(&self.file, &mut req).map_err(|source| self.ioctl_failed(source))?;
        Ok(req.tdreport)
    }

    fn ioctl_failed(&self, source: io::Error) -> TdxGuestError {
        let path = self.path.clone();
        if source.raw_os_error() == Some(ENOTTY) {
            TdxGuestError::NoDevice { path }
        } else {
            TdxGuestError::Ioctl { path, source }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EIO;

    #[test]
    fn missing_device_is_a_clear_error() {
        let err = TdxGuest::open("/nonexistent/tdx_guest").unwrap_err();
        assert!(matches!(err, TdxGuestError::NoDevice { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            "no /nonexistent/tdx_guest: not a TDX guest or driver not loaded"
        );
    }

    #[test]
    fn device_without_the_ioctl_is_a_clear_error() {
        // /dev/null answers every ioctl with ENOTTY.
        let device = TdxGuest::open("/dev/null").unwrap();
        assert_eq!(device.path(), Path::new("/dev/null"));
        let err = device.get_report0(&[0; REPORT_DATA_LEN]).unwrap_err();
        assert!(matches!(err, TdxGuestError::NoDevice { .. }), "{err:?}");
    }

    #[test]
    fn other_failures_name_the_path() {
        let err = TdxGuest::open("/").unwrap_err();
        assert!(matches!(err, TdxGuestError::Open { .. }), "{err:?}");
        let device = TdxGuest::open("/dev/null").unwrap();
        let err = device.ioctl_failed(io::Error::from_raw_os_error(EIO));
        assert!(matches!(err, TdxGuestError::Ioctl { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with("TDX_CMD_GET_REPORT0 on /dev/null failed"),
            "{err}"
        );
    }
}
