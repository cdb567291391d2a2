//! The crate's only unsafe code: the ioctl system calls.
//!
//! Each function takes references, so the memory the kernel reads and writes is borrowed
//! (alive, exclusive, of the right size) for the whole call, and the file descriptor stays
//! open. What the compiler cannot check, that the structs match the kernel's and that the
//! ioctl number names the struct passed, is pinned by the layout tests in [`crate::abi`].

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::ptr;

use crate::abi::{
    SNP_GET_EXT_REPORT, SNP_GET_REPORT, SNP_MSG_VERSION, SnpExtReportReq, SnpGuestRequestIoctl,
    SnpReportReq, SnpReportResp, TDX_CMD_GET_REPORT0, TdxReportReq,
};

/// A failed `/dev/sev-guest` request: the errno, and `exitinfo2` as the kernel left it.
#[derive(Debug)]
pub(crate) struct SnpRequestFailure {
    pub(crate) source: io::Error,
    pub(crate) request: SnpGuestRequestIoctl,
}

/// Issues `request` with `arg` as its in/out argument.
///
/// # Safety
///
/// `request` must be a read-write ioctl of `file`'s driver whose argument is exactly a `T`
/// laid out as the kernel's struct, and every address inside `*arg` must point to memory
/// the kernel may read and write, as large as the kernel's struct for it, that stays valid
/// until this returns.
#[allow(unsafe_code)]
unsafe fn ioctl_readwrite<T>(file: &File, request: u32, arg: &mut T) -> io::Result<()> {
    // The request type differs by libc (c_ulong on glibc, c_int on musl); the cast keeps
    // the bits.
    let request = request as libc::Ioctl;
    // SAFETY: `file` is borrowed, so the descriptor stays open during the call; `arg` is an
    // exclusive reference to a live `T`, which the caller guarantees is the argument
    // `request` expects, with valid embedded addresses.
    let result = unsafe { libc::ioctl(file.as_raw_fd(), request, ptr::from_mut(arg)) };
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `SNP_GET_REPORT`: the firmware's MSG_REPORT_RSP for `report_req` lands in `response`.
#[allow(unsafe_code)]
pub(crate) fn snp_get_report(
    file: &File,
    report_req: &mut SnpReportReq,
    response: &mut SnpReportResp,
) -> Result<(), SnpRequestFailure> {
    let mut request = SnpGuestRequestIoctl {
        msg_version: SNP_MSG_VERSION,
        // The kernel accesses these through the addresses: expose their provenance.
        req_data: ptr::from_mut(report_req).expose_provenance() as u64,
        resp_data: ptr::from_mut(response).expose_provenance() as u64,
        exitinfo2: 0,
    };
    // SAFETY: SNP_GET_REPORT takes a `snp_guest_request_ioctl` (`SnpGuestRequestIoctl`, same
    // layout, tested). The kernel reads a `snp_report_req` at `req_data` and writes a
    // `snp_report_resp` at `resp_data`: both point to exclusively borrowed structs of exactly
    // those layouts, alive until the call returns.
    let result = unsafe { ioctl_readwrite(file, SNP_GET_REPORT, &mut request) };
    result.map_err(|source| SnpRequestFailure { source, request })
}

/// `SNP_GET_EXT_REPORT`: like [`snp_get_report`], plus the host's certificate table in
/// `certs`. Sets `ext_req.certs_address` and `ext_req.certs_len` from `certs`; when the
/// buffer is too small the kernel leaves the size needed in `ext_req.certs_len`.
///
/// `certs.len()` must fit a `u32` (callers pass at most a few pages); a larger buffer is
/// announced as `u32::MAX` bytes, which is still within it.
#[allow(unsafe_code)]
pub(crate) fn snp_get_ext_report(
    file: &File,
    ext_req: &mut SnpExtReportReq,
    certs: &mut [u8],
    response: &mut SnpReportResp,
) -> Result<(), SnpRequestFailure> {
    ext_req.certs_address = certs.as_mut_ptr().expose_provenance() as u64;
    ext_req.certs_len = u32::try_from(certs.len()).unwrap_or(u32::MAX);
    let mut request = SnpGuestRequestIoctl {
        msg_version: SNP_MSG_VERSION,
        req_data: ptr::from_mut(ext_req).expose_provenance() as u64,
        resp_data: ptr::from_mut(response).expose_provenance() as u64,
        exitinfo2: 0,
    };
    // SAFETY: SNP_GET_EXT_REPORT takes a `snp_guest_request_ioctl` (same layout, tested).
    // The kernel reads and writes a `snp_ext_report_req` at `req_data` and writes a
    // `snp_report_resp` at `resp_data`, both exclusively borrowed structs of those layouts;
    // it writes at most `certs_len` bytes at `certs_address`, which is no more than the
    // exclusively borrowed `certs`. All stay alive until the call returns.
    let result = unsafe { ioctl_readwrite(file, SNP_GET_EXT_REPORT, &mut request) };
    result.map_err(|source| SnpRequestFailure { source, request })
}

/// `TDX_CMD_GET_REPORT0`: reads `req.reportdata`, fills `req.tdreport`.
#[allow(unsafe_code)]
pub(crate) fn tdx_get_report0(file: &File, req: &mut TdxReportReq) -> io::Result<()> {
    // SAFETY: TDX_CMD_GET_REPORT0 takes a `tdx_report_req` (`TdxReportReq`, same layout,
    // tested), which holds no addresses; `req` is exclusively borrowed for the call.
    unsafe { ioctl_readwrite(file, TDX_CMD_GET_REPORT0, req) }
}
