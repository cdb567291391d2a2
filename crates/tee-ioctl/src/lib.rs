//! The legacy guest-device interfaces: `SNP_GET_REPORT` and `SNP_GET_EXT_REPORT` on
//! `/dev/sev-guest`, `TDX_CMD_GET_REPORT0` on `/dev/tdx_guest`.
//!
//! # Why this crate allows unsafe code
//!
//! The workspace forbids `unsafe`. An ioctl is a system call with a raw pointer argument,
//! so it cannot be made without `unsafe`, and `forbid` cannot be relaxed locally: this crate
//! alone does not use the workspace lints. Its `Cargo.toml` repeats them with `unsafe_code`
//! lowered to `deny`, and only the functions in the private `ffi` module allow it, each
//! unsafe block with a `SAFETY:` comment. Everything public is safe.
//!
//! `libc` provides the `ioctl` call. `rustix` would wrap the system call too, but its ioctl
//! API still needs an `unsafe` implementation of its `Ioctl` trait per request, which adds a
//! layer without removing the unsafe code we must reason about; `libc` is a thinner, direct
//! binding and already in the dependency tree.
//!
//! Linux only, with the generic ioctl encoding of x86-64 (the only architecture with
//! SEV-SNP and TDX guests). Prefer `contrast-evidence`'s configfs-tsm issuer, which
//! needs no unsafe code; these devices serve kernels older than 6.7 and the TDREPORT, which
//! configfs-tsm does not offer.

mod abi;
mod ffi;
mod sev_guest;
mod tdx_guest;

pub use abi::{
    REPORT_DATA_LEN, SNP_CERTS_PAGE, SNP_GET_EXT_REPORT, SNP_GET_REPORT, TDREPORT_LEN,
    TDX_CMD_GET_REPORT0,
};
pub use sev_guest::{
    DEFAULT_SEV_GUEST_PATH, MAX_VMPL, SNP_CERTS_INITIAL_LEN, SevGuest, SevGuestError,
    SnpExtendedReport,
};
pub use tdx_guest::{DEFAULT_TDX_GUEST_PATH, TdxGuest, TdxGuestError};

// errno values on Linux, named as the kernel documents them; std exposes only raw numbers.
const ENXIO: i32 = 6;
const EIO: i32 = 5;
const ENODEV: i32 = 19;
const ENOTTY: i32 = 25;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_constants_match_libc() {
        assert_eq!(EIO, libc::EIO);
        assert_eq!(ENXIO, libc::ENXIO);
        assert_eq!(ENODEV, libc::ENODEV);
        assert_eq!(ENOTTY, libc::ENOTTY);
    }
}
