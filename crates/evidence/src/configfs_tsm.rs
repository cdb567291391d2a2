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
    #[cfg(feature = "simulated")]
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
    #[error("{path}")]
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
        "could not remove report directory {path}; remove it with rmdir, a leaked \
         report directory keeps the TSM provider from being reloaded"
    )]
    RemoveFailed {
        /// The report directory.
        path: PathBuf,
        /// Why rmdir failed.
        source: io::Error,
    },
    /// Any other I/O failure.
    #[error("I/O error on {path}")]
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

#[cfg(feature = "simulated")]
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
    #[cfg(feature = "simulated")]
    FakeTest,
}

/// The provider found in a report directory, after [`Accept`] allowed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    Hardware(Provider),
    #[cfg(feature = "simulated")]
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

    #[cfg(feature = "simulated")]
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
            #[cfg(feature = "simulated")]
            Found::FakeTest => Err(ConfigfsTsmError::FakeTestProvider {
                path: self.report_root.clone(),
            }),
        }
    }

    #[cfg(feature = "simulated")]
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
        #[cfg(feature = "simulated")]
        Accept::FakeTest if provider_name == FAKE_TEST_PROVIDER => Found::FakeTest,
        #[cfg(feature = "simulated")]
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
pub(crate) mod test_support;

#[cfg(test)]
mod tests;
