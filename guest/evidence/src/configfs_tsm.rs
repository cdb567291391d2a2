//! Reports through the kernel's configfs-tsm interface (Linux 6.7+,
//! `Documentation/ABI/testing/configfs-tsm-report`).
//!
//! One report is one directory under the report root (`/sys/kernel/config/tsm/report`):
//! [`ConfigfsTsm::issue`] creates a directory with a name no other requester uses, reads
//! `provider` and `generation`, writes `privlevel` (if asked for) and the 64-byte `inblob`,
//! reads `outblob` and `auxblob`, reads `generation` again, and removes the directory, on
//! every error path too (a leaked directory keeps the TSM provider from being reloaded).
//!
//! The kernel counts committed attribute writes in `generation`: one per write of `inblob`,
//! `privlevel` or `service_*`. A report is accepted only if `generation` after reading it
//! equals `generation` before our writes plus the number of writes we did; anything else
//! means another process wrote to the same directory, and the report may not be bound to our
//! `inblob`. [`ConfigfsTsm::issue`] then tries again in a fresh directory, up to
//! [`DEFAULT_MAX_ATTEMPTS`] times in all.
//!
//! # The test-only fake provider
//!
//! The QEMU tests load a fake provider (`qemu-tests/fake-tsm`, provider name
//! [`FAKE_TEST_PROVIDER`]) so that the real kernel ABI runs without TEE hardware. Its reports
//! are unsigned and prove nothing: [`ConfigfsTsm::issue`] refuses it like any unknown
//! provider, and only [`ConfigfsTsm::issue_from_fake_test_provider`], which accepts nothing
//! else, returns its output.
//!
//! # Testing without a TSM provider
//!
//! On configfs the kernel does three things a plain directory cannot: `mkdir` creates the
//! attribute files, a write bumps `generation` (and a later `outblob` read produces the
//! report), and `rmdir` removes the directory with its attributes. The issuer reports those
//! three moments to a private `KernelSide`; for the real interface it does nothing, because
//! the kernel has already done it. Tests pass a fake provider that does the kernel's part on
//! a temporary directory, so they run exactly the code the real path runs, in the same order.
//! No filesystem abstraction sits between the issuer and `std::fs`.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Provider, UnknownProvider};

/// Where configfs-tsm report directories are created on a real system.
pub const DEFAULT_REPORT_ROOT: &str = "/sys/kernel/config/tsm/report";

/// The size of `inblob` (SEV-SNP REPORT_DATA, TDX REPORTDATA). Real providers refuse shorter
/// input when generating the report, and the kernel refuses longer input.
pub const INBLOB_LEN: usize = 64;

/// The highest `privlevel` the kernel accepts (TSM_REPORT_PRIVLEVEL_MAX).
pub const PRIVLEVEL_MAX: u32 = 3;

// errno values on Linux (all architectures Contrast runs on), named so the mapping reads as
// the kernel documents it; std exposes them only as raw numbers.
const ENXIO: i32 = 6;
const EBUSY: i32 = 16;
const EFBIG: i32 = 27;

/// How many report directories [`ConfigfsTsm::issue`] uses before giving up when another
/// process keeps writing to them.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// The provider name of the test-only fake TSM module of the QEMU tests. Its reports are
/// unsigned SEV-SNP-shaped bodies; only [`ConfigfsTsm::issue_from_fake_test_provider`]
/// accepts it.
pub const FAKE_TEST_PROVIDER: &str = "fake_sev_guest";

/// How many directory names to try before giving up; each name is unique to this process and
/// call, so a collision means something else creates directories with our names.
const NAME_ATTEMPTS: usize = 8;

/// Errors from asking configfs-tsm for a report.
#[derive(Debug, thiserror::Error)]
pub enum ConfigfsTsmError {
    /// The report root does not exist (or is not a directory).
    #[error("configfs-tsm not available at {root}: mount configfs or use a 6.7+ kernel")]
    NotAvailable {
        /// The report root that was looked for.
        root: PathBuf,
    },
    /// The kernel has no TSM provider (ENXIO): no SEV-SNP or TDX guest driver is bound.
    #[error("no TSM provider: not running in a confidential VM ({path})")]
    NoProvider {
        /// The path whose access failed with ENXIO.
        path: PathBuf,
    },
    /// The provider is busy (EBUSY), for example while another report is generated.
    #[error("the TSM provider is busy ({path}); retry later")]
    Busy {
        /// The path whose access failed with EBUSY.
        path: PathBuf,
    },
    /// The report is larger than the kernel passes on (EFBIG; 32 KiB for `outblob`).
    #[error(
        "the report is larger than the kernel allows ({path}, EFBIG); the provider is misbehaving"
    )]
    TooLarge {
        /// The path whose access failed with EFBIG.
        path: PathBuf,
    },
    /// `provider` names the test-only fake provider, whose reports prove nothing.
    #[error(
        "{path} names the test-only fake TSM provider {FAKE_TEST_PROVIDER:?}: its reports are \
         unsigned and prove nothing, so they are refused; unload fake_tsm (it must never be \
         loaded outside the QEMU tests)"
    )]
    FakeTestProvider {
        /// The `provider` file.
        path: PathBuf,
    },
    /// The test-only fake provider was asked for, but another provider is registered.
    #[error(
        "{path} names {found:?}, not the test-only fake provider {FAKE_TEST_PROVIDER:?}: \
         load fake_tsm.ko (QEMU tests only), or use the hardware issuer"
    )]
    NotTheFakeTestProvider {
        /// The `provider` file.
        path: PathBuf,
        /// The provider name found.
        found: String,
    },
    /// `provider` names a provider this crate does not know how to read.
    #[error("{path}: {source}")]
    UnknownProvider {
        /// The `provider` file.
        path: PathBuf,
        /// The name found.
        source: UnknownProvider,
    },
    /// `generation` is not a decimal number.
    #[error("{path} holds {content:?}, not a number: this is not a configfs-tsm report directory")]
    BadGeneration {
        /// The `generation` file.
        path: PathBuf,
        /// What it held.
        content: String,
    },
    /// `generation` moved by more than our own writes: another process wrote to our report
    /// directory, so the report may not be bound to our `inblob`.
    #[error(
        "{dir}: generation went from {before} to {after}, but our {writes} attribute write(s) \
         account for {expected} (the kernel counts one per write): another process wrote to \
         this report directory; retry"
    )]
    ConcurrentWrite {
        /// The report directory.
        dir: PathBuf,
        /// `generation` before our writes.
        before: u64,
        /// `generation` after reading the report.
        after: u64,
        /// `before` plus our writes.
        expected: u64,
        /// How many attribute writes we did.
        writes: u64,
    },
    /// The requested privilege level is above [`PRIVLEVEL_MAX`].
    #[error("privlevel {privlevel} is out of range: the kernel accepts 0..={PRIVLEVEL_MAX}")]
    PrivlevelOutOfRange {
        /// The requested level.
        privlevel: u32,
    },
    /// A privilege level was requested but the provider has no `privlevel` attribute.
    #[error(
        "the {provider} provider has no privlevel attribute: request the report without a privlevel"
    )]
    PrivlevelUnsupported {
        /// The provider of the report directory, as named in its `provider` file.
        provider: String,
    },
    /// `inblob` input is not exactly [`INBLOB_LEN`] bytes.
    #[error(
        "inblob must be exactly {INBLOB_LEN} bytes, got {len}: hash or zero-pad the data to bind"
    )]
    InblobLength {
        /// The length given.
        len: usize,
    },
    /// `outblob` was read but empty.
    #[error("{path} is empty: the provider returned no report")]
    EmptyOutblob {
        /// The `outblob` file.
        path: PathBuf,
    },
    /// Every directory name tried already existed.
    #[error(
        "could not create a report directory under {root}: {attempts} fresh names all existed; \
         check what else creates directories there"
    )]
    NameCollision {
        /// The report root.
        root: PathBuf,
        /// How many names were tried.
        attempts: usize,
    },
    /// The report was read but its directory could not be removed.
    #[error(
        "could not remove report directory {path}: {source}; remove it with rmdir, a leaked \
         report directory keeps the TSM provider from being reloaded"
    )]
    RemoveFailed {
        /// The report directory.
        path: PathBuf,
        /// Why rmdir failed.
        source: io::Error,
    },
    /// Any other I/O failure.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path accessed.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

/// What to ask the provider for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRequest {
    /// The data the report binds (SEV-SNP REPORT_DATA, TDX REPORTDATA).
    pub inblob: [u8; INBLOB_LEN],
    /// The SEV-SNP VMPL to report at; `None` leaves the kernel's default
    /// (`privlevel_floor`). Only `sev_guest` has this attribute.
    pub privlevel: Option<u32>,
}

impl ReportRequest {
    /// A request binding `inblob`, at the default privilege level.
    pub fn new(inblob: [u8; INBLOB_LEN]) -> Self {
        ReportRequest {
            inblob,
            privlevel: None,
        }
    }

    /// A request binding `inblob`, which must be exactly [`INBLOB_LEN`] bytes.
    pub fn from_slice(inblob: &[u8]) -> Result<Self, ConfigfsTsmError> {
        let inblob = inblob
            .try_into()
            .map_err(|_| ConfigfsTsmError::InblobLength { len: inblob.len() })?;
        Ok(ReportRequest::new(inblob))
    }

    /// The same request at privilege level `privlevel` (checked when issued).
    pub fn with_privlevel(mut self, privlevel: u32) -> Self {
        self.privlevel = Some(privlevel);
        self
    }
}

/// A report as the provider returned it, not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TsmReport {
    /// Who produced it; decides the format of `outblob` and `auxblob`.
    pub provider: Provider,
    /// The report: an SEV-SNP attestation report or a TDX quote.
    pub outblob: Vec<u8>,
    /// Supplemental data, empty when absent: for `sev_guest` the certificate table
    /// ([`crate::snp_cert_table`]) if the host supplies certificates.
    pub auxblob: Vec<u8>,
    /// How many report directories it took: 1, or more when another process wrote to ours.
    pub attempts: u32,
}

/// Output of the test-only fake provider ([`FAKE_TEST_PROVIDER`]): an unsigned body laid out
/// like an SEV-SNP report. Not evidence of anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeTestProviderReport {
    /// The body the fake provider wrote.
    pub outblob: Vec<u8>,
    /// How many report directories it took: 1, or more when another process wrote to ours.
    pub attempts: u32,
}

/// The configfs-tsm report interface under one report root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigfsTsm {
    report_root: PathBuf,
    max_attempts: u32,
}

/// Which providers a request accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Accept {
    /// `sev_guest` and `tdx_guest`.
    Hardware,
    /// [`FAKE_TEST_PROVIDER`] only.
    FakeTest,
}

/// The provider found in a report directory, after [`Accept`] allowed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Hardware(Provider),
    FakeTest,
}

/// What one report directory gave.
#[derive(Debug)]
struct RawReport {
    found: Found,
    outblob: Vec<u8>,
    auxblob: Vec<u8>,
    attempts: u32,
}

impl Default for ConfigfsTsm {
    /// The interface at [`DEFAULT_REPORT_ROOT`].
    fn default() -> Self {
        ConfigfsTsm::new(DEFAULT_REPORT_ROOT)
    }
}

impl ConfigfsTsm {
    /// The interface with report directories under `report_root`.
    pub fn new(report_root: impl Into<PathBuf>) -> Self {
        ConfigfsTsm {
            report_root: report_root.into(),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// The same interface, using at most `max_attempts` report directories per report
    /// (at least 1) when other processes write to ours.
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Where report directories are created.
    pub fn report_root(&self) -> &Path {
        &self.report_root
    }

    /// Asks the provider for a report binding `request.inblob`.
    ///
    /// The report directory is removed before this returns, whatever the outcome.
    /// Only `sev_guest` and `tdx_guest` are accepted; the test-only fake provider is refused
    /// with [`ConfigfsTsmError::FakeTestProvider`]. When another process writes to our report
    /// directory, the report is discarded and asked for again in a fresh directory.
    pub fn issue(&self, request: &ReportRequest) -> Result<TsmReport, ConfigfsTsmError> {
        self.issue_with(request, &RealKernel, unique_name)
    }

    /// TEST ONLY: the unsigned body of the fake provider [`FAKE_TEST_PROVIDER`], through the
    /// same protocol as [`ConfigfsTsm::issue`]. Every other provider is refused with
    /// [`ConfigfsTsmError::NotTheFakeTestProvider`], so this never returns hardware output.
    pub fn issue_from_fake_test_provider(
        &self,
        request: &ReportRequest,
    ) -> Result<FakeTestProviderReport, ConfigfsTsmError> {
        self.issue_fake_with(request, &RealKernel, unique_name)
    }

    fn issue_with(
        &self,
        request: &ReportRequest,
        kernel: &dyn KernelSide,
        next_name: impl FnMut() -> String,
    ) -> Result<TsmReport, ConfigfsTsmError> {
        let raw = self.issue_raw(request, Accept::Hardware, kernel, next_name)?;
        match raw.found {
            Found::Hardware(provider) => Ok(TsmReport {
                provider,
                outblob: raw.outblob,
                auxblob: raw.auxblob,
                attempts: raw.attempts,
            }),
            // read_report refuses it for Accept::Hardware; never turn it into a TsmReport.
            Found::FakeTest => Err(ConfigfsTsmError::FakeTestProvider {
                path: self.report_root.clone(),
            }),
        }
    }

    fn issue_fake_with(
        &self,
        request: &ReportRequest,
        kernel: &dyn KernelSide,
        next_name: impl FnMut() -> String,
    ) -> Result<FakeTestProviderReport, ConfigfsTsmError> {
        let raw = self.issue_raw(request, Accept::FakeTest, kernel, next_name)?;
        match raw.found {
            Found::FakeTest => Ok(FakeTestProviderReport {
                outblob: raw.outblob,
                attempts: raw.attempts,
            }),
            Found::Hardware(provider) => Err(ConfigfsTsmError::NotTheFakeTestProvider {
                path: self.report_root.clone(),
                found: provider.to_string(),
            }),
        }
    }

    /// The protocol, retried in a fresh directory when another writer interfered.
    fn issue_raw(
        &self,
        request: &ReportRequest,
        accept: Accept,
        kernel: &dyn KernelSide,
        mut next_name: impl FnMut() -> String,
    ) -> Result<RawReport, ConfigfsTsmError> {
        if let Some(privlevel) = request.privlevel
            && privlevel > PRIVLEVEL_MAX
        {
            return Err(ConfigfsTsmError::PrivlevelOutOfRange { privlevel });
        }
        let mut attempt = 1;
        loop {
            let dir = self.create_report_dir(kernel, &mut next_name)?;
            // On error `dir` is dropped, which removes the directory.
            match read_report(&dir.path, request, accept, kernel) {
                Ok(mut report) => {
                    dir.remove()?;
                    report.attempts = attempt;
                    return Ok(report);
                }
                Err(error @ ConfigfsTsmError::ConcurrentWrite { .. })
                    if attempt < self.max_attempts =>
                {
                    drop(dir);
                    tracing::warn!(%error, attempt, "configfs-tsm report discarded; retrying");
                    attempt += 1;
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn create_report_dir<'k>(
        &self,
        kernel: &'k dyn KernelSide,
        next_name: &mut impl FnMut() -> String,
    ) -> Result<ReportDir<'k>, ConfigfsTsmError> {
        let not_available = || ConfigfsTsmError::NotAvailable {
            root: self.report_root.clone(),
        };
        match fs::metadata(&self.report_root) {
            Ok(metadata) if metadata.is_dir() => {}
            Ok(_) => return Err(not_available()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(not_available()),
            Err(error) => return Err(classify(&self.report_root, error)),
        }
        for _ in 0..NAME_ATTEMPTS {
            let path = self.report_root.join(next_name());
            match fs::create_dir(&path) {
                Ok(()) => {
                    // From here on the directory is ours and the guard removes it.
                    let dir = ReportDir {
                        path,
                        kernel,
                        removed: false,
                    };
                    kernel.created(&dir.path);
                    return Ok(dir);
                }
                // Someone else's directory: never touch it, try another name.
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {
                    return Err(not_available());
                }
                Err(error) => return Err(classify(&path, error)),
            }
        }
        Err(ConfigfsTsmError::NameCollision {
            root: self.report_root.clone(),
            attempts: NAME_ATTEMPTS,
        })
    }
}

/// The steps of the report protocol, inside a directory we created.
fn read_report(
    dir: &Path,
    request: &ReportRequest,
    accept: Accept,
    kernel: &dyn KernelSide,
) -> Result<RawReport, ConfigfsTsmError> {
    // The provider cannot change while our directory exists (the kernel refuses to
    // re-register one while report directories exist), so reading it first is safe, and it
    // refuses an unknown provider before asking the hardware for anything.
    let provider_path = dir.join("provider");
    let provider_text = read_text(&provider_path)?;
    let provider_name = provider_text
        .strip_suffix('\n')
        .unwrap_or(&provider_text)
        .to_owned();
    let found = match accept {
        Accept::Hardware if provider_name == FAKE_TEST_PROVIDER => {
            return Err(ConfigfsTsmError::FakeTestProvider {
                path: provider_path,
            });
        }
        Accept::Hardware => {
            Found::Hardware(provider_text.parse::<Provider>().map_err(|source| {
                ConfigfsTsmError::UnknownProvider {
                    path: provider_path,
                    source,
                }
            })?)
        }
        Accept::FakeTest if provider_name == FAKE_TEST_PROVIDER => Found::FakeTest,
        Accept::FakeTest => {
            return Err(ConfigfsTsmError::NotTheFakeTestProvider {
                path: provider_path,
                found: provider_name,
            });
        }
    };

    let generation_path = dir.join("generation");
    let before = read_generation(&generation_path)?;
    let mut writes: u64 = 0;
    if let Some(privlevel) = request.privlevel {
        write_attribute(dir, "privlevel", privlevel.to_string().as_bytes(), kernel).map_err(
            |error| match error {
                // The kernel hides privlevel when the provider does not support it.
                ConfigfsTsmError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => {
                    ConfigfsTsmError::PrivlevelUnsupported {
                        provider: provider_name.clone(),
                    }
                }
                other => other,
            },
        )?;
        writes += 1;
    }
    write_attribute(dir, "inblob", &request.inblob, kernel)?;
    writes += 1;

    let outblob_path = dir.join("outblob");
    let outblob = fs::read(&outblob_path).map_err(|error| classify(&outblob_path, error))?;
    if outblob.is_empty() {
        return Err(ConfigfsTsmError::EmptyOutblob { path: outblob_path });
    }
    let auxblob_path = dir.join("auxblob");
    let auxblob = match fs::read(&auxblob_path) {
        Ok(auxblob) => auxblob,
        // tdx_guest has no auxblob attribute.
        Err(error) if error.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(error) => return Err(classify(&auxblob_path, error)),
    };

    let after = read_generation(&generation_path)?;
    // The kernel's counter is an unsigned long and wraps.
    let expected = before.wrapping_add(writes);
    if after != expected {
        return Err(ConfigfsTsmError::ConcurrentWrite {
            dir: dir.to_path_buf(),
            before,
            after,
            expected,
            writes,
        });
    }
    Ok(RawReport {
        found,
        outblob,
        auxblob,
        attempts: 1,
    })
}

/// Writes an attribute that must already exist (configfs creates them; we never do).
///
/// configfs commits a binary attribute when the file is closed, so the file is closed
/// before the kernel side is told about the write.
fn write_attribute(
    dir: &Path,
    name: &str,
    content: &[u8],
    kernel: &dyn KernelSide,
) -> Result<(), ConfigfsTsmError> {
    let path = dir.join(name);
    let mut file = OpenOptions::new()
        .write(true)
        .open(&path)
        .map_err(|error| classify(&path, error))?;
    file.write_all(content)
        .map_err(|error| classify(&path, error))?;
    drop(file);
    kernel.written(dir, name);
    Ok(())
}

fn read_text(path: &Path) -> Result<String, ConfigfsTsmError> {
    fs::read_to_string(path).map_err(|error| classify(path, error))
}

fn read_generation(path: &Path) -> Result<u64, ConfigfsTsmError> {
    let content = read_text(path)?;
    content
        .strip_suffix('\n')
        .unwrap_or(&content)
        .parse()
        .map_err(|_| ConfigfsTsmError::BadGeneration {
            path: path.to_path_buf(),
            content,
        })
}

/// Maps the errno values the ABI gives a meaning to; everything else is plain I/O.
fn classify(path: &Path, source: io::Error) -> ConfigfsTsmError {
    let path = path.to_path_buf();
    match source.raw_os_error() {
        Some(ENXIO) => ConfigfsTsmError::NoProvider { path },
        Some(EBUSY) => ConfigfsTsmError::Busy { path },
        Some(EFBIG) => ConfigfsTsmError::TooLarge { path },
        _ => ConfigfsTsmError::Io { path, source },
    }
}

/// A directory name no other requester uses: other processes (also in other PID
/// namespaces, which share configfs) differ in PID or time, other calls in the counter.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    format!("contrast-{}-{nanos}-{count}", std::process::id())
}

/// What the kernel does by itself at the points of the protocol where configfs differs from
/// a plain directory (see the module documentation).
pub(crate) trait KernelSide {
    /// The report directory was just created.
    fn created(&self, dir: &Path);
    /// An attribute write was just committed (the file closed).
    fn written(&self, dir: &Path, attribute: &str);
    /// The report directory is about to be removed.
    fn removing(&self, dir: &Path);
}

/// Real configfs: the kernel has done it all already.
struct RealKernel;

impl KernelSide for RealKernel {
    fn created(&self, _dir: &Path) {}
    fn written(&self, _dir: &Path, _attribute: &str) {}
    fn removing(&self, _dir: &Path) {}
}

/// Removes the report directory when dropped, so every error path cleans up; the success
/// path calls [`ReportDir::remove`] to learn whether that worked.
struct ReportDir<'k> {
    path: PathBuf,
    kernel: &'k dyn KernelSide,
    removed: bool,
}

impl ReportDir<'_> {
    fn remove(mut self) -> Result<(), ConfigfsTsmError> {
        self.removed = true;
        self.kernel.removing(&self.path);
        fs::remove_dir(&self.path).map_err(|source| ConfigfsTsmError::RemoveFailed {
            path: self.path.clone(),
            source,
        })
    }
}

impl Drop for ReportDir<'_> {
    fn drop(&mut self) {
        if !self.removed {
            self.kernel.removing(&self.path);
            // Best effort: the caller is already getting the error that brought us here.
            let _ = fs::remove_dir(&self.path);
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! The fake kernel side for unit tests here and in [`crate::issuer`].
    #![allow(clippy::unwrap_used)]

    use super::*;
    use std::cell::RefCell;

    /// A fresh directory under the system temporary directory, removed on drop.
    pub(crate) struct TempDir(pub(crate) PathBuf);

    impl TempDir {
        pub(crate) fn new(test: &str) -> TempDir {
            let path =
                std::env::temp_dir().join(format!("configfs-tsm-test-{test}-{}", unique_name()));
            fs::create_dir(&path).unwrap();
            TempDir(path)
        }

        pub(crate) fn entries(&self) -> Vec<PathBuf> {
            fs::read_dir(&self.0)
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .collect()
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Does the kernel's part on a plain directory, like a TSM provider would.
    pub(crate) struct FakeProvider {
        pub(crate) provider: &'static str,
        /// Extra `generation` bumps per write, as if another process wrote too.
        pub(crate) extra_bumps: u64,
        /// Only the first this many report directories see `extra_bumps` (`None`: all).
        pub(crate) interfered_dirs: Option<usize>,
        pub(crate) has_privlevel: bool,
        pub(crate) auxblob: Option<Vec<u8>>,
        pub(crate) empty_outblob: bool,
        pub(crate) generation_content: Option<&'static str>,
        /// Leave a file behind at rmdir, so that rmdir fails.
        pub(crate) leak_file: bool,
        /// What `outblob` holds for an `inblob`.
        pub(crate) outblob_for: fn(&[u8]) -> Vec<u8>,
        pub(crate) created_dirs: RefCell<Vec<PathBuf>>,
        pub(crate) writes: RefCell<Vec<String>>,
    }

    impl FakeProvider {
        pub(crate) fn new(provider: &'static str) -> FakeProvider {
            FakeProvider {
                provider,
                extra_bumps: 0,
                interfered_dirs: None,
                has_privlevel: provider == "sev_guest",
                auxblob: (provider == "sev_guest").then(|| b"cert table".to_vec()),
                empty_outblob: false,
                generation_content: None,
                leak_file: false,
                outblob_for: FakeProvider::report_for,
                created_dirs: RefCell::new(Vec::new()),
                writes: RefCell::new(Vec::new()),
            }
        }

        pub(crate) fn report_for(inblob: &[u8]) -> Vec<u8> {
            [b"REPORT:".as_slice(), inblob].concat()
        }
    }

    impl KernelSide for FakeProvider {
        fn created(&self, dir: &Path) {
            self.created_dirs.borrow_mut().push(dir.to_path_buf());
            fs::write(dir.join("provider"), format!("{}\n", self.provider)).unwrap();
            fs::write(
                dir.join("generation"),
                self.generation_content.unwrap_or("0\n"),
            )
            .unwrap();
            fs::write(dir.join("inblob"), b"").unwrap();
            fs::write(dir.join("outblob"), b"").unwrap();
            if self.has_privlevel {
                fs::write(dir.join("privlevel"), b"").unwrap();
            }
            if let Some(auxblob) = &self.auxblob {
                fs::write(dir.join("auxblob"), auxblob).unwrap();
            }
        }

        fn written(&self, dir: &Path, attribute: &str) {
            self.writes.borrow_mut().push(attribute.to_owned());
            let generation_path = dir.join("generation");
            if let Ok(generation) = fs::read_to_string(&generation_path)
                .unwrap()
                .trim()
                .parse::<u64>()
            {
                let dirs = self.created_dirs.borrow();
                let interfered = match self.interfered_dirs {
                    None => true,
                    Some(count) => dirs.iter().take(count).any(|d| d == dir),
                };
                let extra = if interfered { self.extra_bumps } else { 0 };
                let generation = generation + 1 + extra;
                fs::write(&generation_path, format!("{generation}\n")).unwrap();
            }
            if attribute == "inblob" && !self.empty_outblob {
                let inblob = fs::read(dir.join("inblob")).unwrap();
                fs::write(dir.join("outblob"), (self.outblob_for)(&inblob)).unwrap();
            }
        }

        fn removing(&self, dir: &Path) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if !(self.leak_file && path.ends_with("provider")) {
                    fs::remove_file(path).unwrap();
                }
            }
        }
    }

    impl ConfigfsTsm {
        /// [`ConfigfsTsm::issue_from_fake_test_provider`] with `kernel` doing the kernel's part.
        pub(crate) fn issue_fake_for_test(
            &self,
            request: &ReportRequest,
            kernel: &dyn KernelSide,
        ) -> Result<FakeTestProviderReport, ConfigfsTsmError> {
            self.issue_fake_with(request, kernel, unique_name)
        }

        /// [`ConfigfsTsm::issue`] with `kernel` doing the kernel's part.
        pub(crate) fn issue_for_test(
            &self,
            request: &ReportRequest,
            kernel: &dyn KernelSide,
        ) -> Result<TsmReport, ConfigfsTsmError> {
            self.issue_with(request, kernel, unique_name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{FakeProvider, TempDir};
    use super::*;

    fn inblob() -> [u8; INBLOB_LEN] {
        std::array::from_fn(|i| i as u8)
    }

    fn issue(
        root: &Path,
        request: &ReportRequest,
        fake: &FakeProvider,
    ) -> Result<TsmReport, ConfigfsTsmError> {
        ConfigfsTsm::new(root).issue_with(request, fake, unique_name)
    }

    #[test]
    fn issues_report_and_removes_directory() {
        let root = TempDir::new("success");
        let fake = FakeProvider::new("sev_guest");
        let report = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap();
        assert_eq!(report.provider, Provider::SevGuest);
        assert_eq!(report.outblob, FakeProvider::report_for(&inblob()));
        assert_eq!(report.auxblob, b"cert table");
        assert_eq!(*fake.writes.borrow(), ["inblob"]);
        assert_eq!(fake.created_dirs.borrow().len(), 1);
        assert!(fake.created_dirs.borrow()[0].starts_with(&root.0));
        assert!(
            root.entries().is_empty(),
            "left behind: {:?}",
            root.entries()
        );
    }

    #[test]
    fn privlevel_is_written_and_counted() {
        let root = TempDir::new("privlevel");
        let fake = FakeProvider::new("sev_guest");
        let request = ReportRequest::new(inblob()).with_privlevel(2);
        let report = issue(&root.0, &request, &fake).unwrap();
        assert_eq!(report.outblob, FakeProvider::report_for(&inblob()));
        assert_eq!(*fake.writes.borrow(), ["privlevel", "inblob"]);
        assert!(root.entries().is_empty());
    }

    #[test]
    fn missing_auxblob_reads_as_empty() {
        let root = TempDir::new("tdx");
        let fake = FakeProvider::new("tdx_guest");
        let report = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap();
        assert_eq!(report.provider, Provider::TdxGuest);
        assert!(report.auxblob.is_empty());
        assert!(root.entries().is_empty());
    }

    #[test]
    fn refuses_concurrent_writer_and_removes_directory() {
        let root = TempDir::new("concurrent");
        let mut fake = FakeProvider::new("sev_guest");
        fake.extra_bumps = 1;
        let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigfsTsmError::ConcurrentWrite {
                    before: 0,
                    after: 2,
                    expected: 1,
                    writes: 1,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("another process wrote"), "{err}");
        assert!(root.entries().is_empty());

        // Two writes: two expected bumps, four seen.
        let request = ReportRequest::new(inblob()).with_privlevel(0);
        let err = issue(&root.0, &request, &fake).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigfsTsmError::ConcurrentWrite {
                    after: 4,
                    expected: 2,
                    writes: 2,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(root.entries().is_empty());
    }

    #[test]
    fn retries_in_a_fresh_directory_after_a_concurrent_write() {
        let root = TempDir::new("retry");
        let mut fake = FakeProvider::new("sev_guest");
        fake.extra_bumps = 1;
        fake.interfered_dirs = Some(1);
        let report = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap();
        assert_eq!(report.attempts, 2);
        assert_eq!(report.outblob, FakeProvider::report_for(&inblob()));
        let created = fake.created_dirs.borrow();
        assert_eq!(created.len(), 2);
        assert_ne!(created[0], created[1], "a retry must use a fresh directory");
        assert!(
            root.entries().is_empty(),
            "left behind: {:?}",
            root.entries()
        );
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let root = TempDir::new("retry-limit");
        let mut fake = FakeProvider::new("sev_guest");
        fake.extra_bumps = 1;
        let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
        assert!(
            matches!(err, ConfigfsTsmError::ConcurrentWrite { .. }),
            "{err:?}"
        );
        assert_eq!(
            fake.created_dirs.borrow().len(),
            DEFAULT_MAX_ATTEMPTS as usize
        );
        assert!(root.entries().is_empty());

        let fake = FakeProvider {
            extra_bumps: 1,
            ..FakeProvider::new("sev_guest")
        };
        let err = ConfigfsTsm::new(&root.0)
            .with_max_attempts(1)
            .issue_for_test(&ReportRequest::new(inblob()), &fake)
            .unwrap_err();
        assert!(
            matches!(err, ConfigfsTsmError::ConcurrentWrite { .. }),
            "{err:?}"
        );
        assert_eq!(fake.created_dirs.borrow().len(), 1);
        // 0 means 1: there is always one attempt.
        assert_eq!(
            ConfigfsTsm::new(&root.0).with_max_attempts(0).max_attempts,
            1
        );
        assert!(root.entries().is_empty());
    }

    #[test]
    fn other_errors_are_not_retried() {
        let root = TempDir::new("no-retry");
        let mut fake = FakeProvider::new("sev_guest");
        fake.empty_outblob = true;
        let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
        assert!(
            matches!(err, ConfigfsTsmError::EmptyOutblob { .. }),
            "{err:?}"
        );
        assert_eq!(fake.created_dirs.borrow().len(), 1);
    }

    #[test]
    fn hardware_issue_refuses_the_fake_test_provider() {
        let root = TempDir::new("fake-refused");
        let fake = FakeProvider::new(FAKE_TEST_PROVIDER);
        let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
        assert!(
            matches!(err, ConfigfsTsmError::FakeTestProvider { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("prove nothing"), "{err}");
        // Refused before any write.
        assert!(fake.writes.borrow().is_empty());
        assert!(root.entries().is_empty());
    }

    #[test]
    fn fake_test_provider_issue_accepts_only_the_fake() {
        let root = TempDir::new("fake-accepted");
        let fake = FakeProvider::new(FAKE_TEST_PROVIDER);
        let report = ConfigfsTsm::new(&root.0)
            .issue_fake_for_test(&ReportRequest::new(inblob()), &fake)
            .unwrap();
        assert_eq!(report.outblob, FakeProvider::report_for(&inblob()));
        assert_eq!(report.attempts, 1);
        assert!(root.entries().is_empty());

        for provider in ["sev_guest", "tdx_guest", "fake_sev_guest2", "fake", ""] {
            let fake = FakeProvider::new(provider);
            let err = ConfigfsTsm::new(&root.0)
                .issue_fake_for_test(&ReportRequest::new(inblob()), &fake)
                .unwrap_err();
            assert!(
                matches!(&err, ConfigfsTsmError::NotTheFakeTestProvider { found, .. } if found == provider),
                "{provider}: {err:?}"
            );
            assert!(fake.writes.borrow().is_empty(), "{provider}");
            assert!(root.entries().is_empty(), "{provider}");
        }
    }

    #[test]
    fn refuses_missing_report_root() {
        let root = TempDir::new("missing");
        let missing = root.0.join("tsm").join("report");
        let fake = FakeProvider::new("sev_guest");
        let err = issue(&missing, &ReportRequest::new(inblob()), &fake).unwrap_err();
        assert!(
            matches!(err, ConfigfsTsmError::NotAvailable { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("configfs-tsm not available")
                && err
                    .to_string()
                    .contains("mount configfs or use a 6.7+ kernel"),
            "{err}"
        );
        assert!(fake.created_dirs.borrow().is_empty());
    }

    #[test]
    fn refuses_report_root_that_is_a_file() {
        let root = TempDir::new("file");
        let file = root.0.join("report");
        fs::write(&file, b"").unwrap();
        let fake = FakeProvider::new("sev_guest");
        let err = issue(&file, &ReportRequest::new(inblob()), &fake).unwrap_err();
        assert!(
            matches!(err, ConfigfsTsmError::NotAvailable { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn refuses_unknown_provider_and_removes_directory() {
        let root = TempDir::new("unknown");
        let fake = FakeProvider::new("unknown");
        let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
        assert!(
            matches!(err, ConfigfsTsmError::UnknownProvider { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("\"unknown\""), "{err}");
        // Refused before asking for a report.
        assert!(fake.writes.borrow().is_empty());
        assert!(root.entries().is_empty());
    }

    #[test]
    fn refuses_privlevel_out_of_range_before_creating_anything() {
        let root = TempDir::new("privlevel-range");
        let fake = FakeProvider::new("sev_guest");
        let request = ReportRequest::new(inblob()).with_privlevel(PRIVLEVEL_MAX + 1);
        let err = issue(&root.0, &request, &fake).unwrap_err();
        assert!(
            matches!(err, ConfigfsTsmError::PrivlevelOutOfRange { privlevel: 4 }),
            "{err:?}"
        );
        assert!(fake.created_dirs.borrow().is_empty());
    }

    #[test]
    fn refuses_privlevel_when_provider_lacks_it() {
        let root = TempDir::new("privlevel-tdx");
        let fake = FakeProvider::new("tdx_guest");
        let request = ReportRequest::new(inblob()).with_privlevel(0);
        let err = issue(&root.0, &request, &fake).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigfsTsmError::PrivlevelUnsupported { ref provider } if provider == "tdx_guest"
            ),
            "{err:?}"
        );
        assert!(root.entries().is_empty());
    }

    #[test]
    fn refuses_empty_outblob() {
        let root = TempDir::new("empty");
        let mut fake = FakeProvider::new("sev_guest");
        fake.empty_outblob = true;
        let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
        assert!(
            matches!(err, ConfigfsTsmError::EmptyOutblob { .. }),
            "{err:?}"
        );
        assert!(root.entries().is_empty());
    }

    #[test]
    fn refuses_unparsable_generation() {
        let root = TempDir::new("generation");
        let mut fake = FakeProvider::new("sev_guest");
        fake.generation_content = Some("zero\n");
        let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
        assert!(
            matches!(&err, ConfigfsTsmError::BadGeneration { content, .. } if content == "zero\n"),
            "{err:?}"
        );
        assert!(root.entries().is_empty());
    }

    #[test]
    fn reports_failed_removal() {
        let root = TempDir::new("rmdir");
        let mut fake = FakeProvider::new("sev_guest");
        fake.leak_file = true;
        let err = issue(&root.0, &ReportRequest::new(inblob()), &fake).unwrap_err();
        assert!(
            matches!(err, ConfigfsTsmError::RemoveFailed { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("remove it with rmdir"), "{err}");
    }

    #[test]
    fn never_reuses_an_existing_directory() {
        let root = TempDir::new("collision");
        let taken = root.0.join("taken");
        fs::create_dir(&taken).unwrap();
        let fake = FakeProvider::new("sev_guest");
        let err = ConfigfsTsm::new(&root.0)
            .issue_with(&ReportRequest::new(inblob()), &fake, || "taken".to_owned())
            .unwrap_err();
        assert!(
            matches!(
                err,
                ConfigfsTsmError::NameCollision {
                    attempts: NAME_ATTEMPTS,
                    ..
                }
            ),
            "{err:?}"
        );
        // Someone else's directory stays.
        assert!(taken.is_dir());
        assert!(fake.created_dirs.borrow().is_empty());
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name(), unique_name());
    }

    #[test]
    fn maps_errno_values_of_the_abi() {
        let path = Path::new("/sys/kernel/config/tsm/report/x/outblob");
        let err = classify(path, io::Error::from_raw_os_error(ENXIO));
        assert!(
            matches!(err, ConfigfsTsmError::NoProvider { .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("not running in a confidential VM"),
            "{err}"
        );
        let err = classify(path, io::Error::from_raw_os_error(EBUSY));
        assert!(matches!(err, ConfigfsTsmError::Busy { .. }), "{err:?}");
        assert!(err.to_string().contains("retry"), "{err}");
        let err = classify(path, io::Error::from_raw_os_error(EFBIG));
        assert!(matches!(err, ConfigfsTsmError::TooLarge { .. }), "{err:?}");
        // EACCES: plain I/O, with the path.
        let err = classify(path, io::Error::from_raw_os_error(13));
        assert!(matches!(err, ConfigfsTsmError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("x/outblob"), "{err}");
    }

    #[test]
    fn errno_constants_match_the_platform() {
        assert_eq!(
            io::Error::from_raw_os_error(EBUSY).kind(),
            io::ErrorKind::ResourceBusy
        );
        assert_eq!(
            io::Error::from_raw_os_error(EFBIG).kind(),
            io::ErrorKind::FileTooLarge
        );
        assert!(
            io::Error::from_raw_os_error(ENXIO)
                .to_string()
                .contains("No such device or address")
        );
    }

    #[test]
    fn inblob_must_be_64_bytes() {
        assert_eq!(
            ReportRequest::from_slice(&inblob()).unwrap(),
            ReportRequest::new(inblob())
        );
        for len in [0, 32, 63, 65, 128] {
            let err = ReportRequest::from_slice(&vec![0; len]).unwrap_err();
            assert!(
                matches!(err, ConfigfsTsmError::InblobLength { len: l } if l == len),
                "{err:?}"
            );
            assert!(err.to_string().contains("exactly 64 bytes"), "{err}");
        }
    }

    #[test]
    fn default_root_is_the_kernel_path() {
        assert_eq!(
            ConfigfsTsm::default().report_root(),
            Path::new(DEFAULT_REPORT_ROOT)
        );
    }
}
