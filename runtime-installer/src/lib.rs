//! The node installer: puts the confidential runtime on a Kubernetes node.
//!
//! Run by a privileged DaemonSet with the host's root mounted (docs/runtime.md §2–§6):
//! 1. fetches the runtime's files (shim, VMM, firmware, kernel, initrd, image) listed in
//!    the install configuration, checks their integrity and writes each one atomically
//!    under the host root ([`fetch`]);
//! 2. copies the image puller's registry credentials, if the Secret is mounted
//!    ([`imagepuller`]), and writes the Kata configuration for the platform ([`kata`]);
//! 3. adds the runtime handler to containerd's configuration ([`containerd`]);
//! 4. restarts containerd's unit when its configuration changed ([`restart`]).
//!
//! Every step compares before it writes, so a second run on an installed node writes
//! nothing and restarts nothing. All inputs are checked before the first write.

use std::fmt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use contrast_platforms::{Platform, RuntimeHandler};

pub mod config;
pub mod containerd;
pub mod fetch;
pub mod hostpath;
pub mod imagepuller;
pub mod kata;
pub mod restart;
pub mod snp;
pub mod target;

pub use config::InstallConfig;
pub use hostpath::HostRoot;
pub use imagepuller::ImagePullerConfig;
pub use restart::{CommandOutput, CommandRunner, SystemRunner};
pub use target::TargetConfig;

use crate::containerd::{PatchOutcome, RuntimeEntry, read_optional};
use crate::fetch::{Downloader, FetchOutcome};
use crate::imagepuller::FileOutcome;
use crate::kata::{KataInputs, RuntimeKind};
use crate::restart::RestartOutcome;
use crate::snp::SnpIdBlock;

/// Why the installation stopped.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The install configuration is not valid JSON of the expected shape.
    #[error(
        "install configuration {path}; expected {{\"files\": [{{\"url\", \"path\", \"executable\", \"integrity\"}}], \"QemuExtraKernelParams\", \"debugRuntime\"}}"
    )]
    ParseInstallConfig {
        /// The file.
        path: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// A target path is not absolute.
    #[error(
        "path {path:?} is not absolute; give the host path, e.g. /opt/edgeless/@@runtimeName@@/bin/…"
    )]
    RelativePath {
        /// The path.
        path: String,
    },
    /// A target path names the host root itself.
    #[error("path {path:?} names no file")]
    PathNotAFile {
        /// The path.
        path: String,
    },
    /// A target path would leave the host root.
    #[error("path {path:?} leaves the host root: {reason}")]
    PathEscapesHostRoot {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// A file URL is not usable.
    #[error("files[{index}].url {url:?}: {reason}")]
    BadUrl {
        /// The entry's index.
        index: usize,
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// An http(s) file without integrity.
    #[error(
        "files[{index}]: {url} is downloaded, so it needs \"integrity\": \"sha256-<base64>\" (or sha384, sha512)"
    )]
    MissingIntegrity {
        /// The entry's index.
        index: usize,
        /// The URL.
        url: String,
    },
    /// An integrity value that is not `sha256|sha384|sha512-<base64 digest>`.
    #[error("files[{index}].integrity {integrity:?}: {reason}")]
    MalformedIntegrity {
        /// The entry's index.
        index: usize,
        /// The value.
        integrity: String,
        /// Why.
        reason: String,
    },
    /// The fetched content does not have the expected digest; nothing was written.
    #[error(
        "{source_url} for {path}: integrity mismatch, expected {expected}, got {actual}; the target was left as it was"
    )]
    IntegrityMismatch {
        /// Where the content came from.
        source_url: String,
        /// The local target path.
        path: PathBuf,
        /// The expected SRI.
        expected: String,
        /// The SRI of what was received.
        actual: String,
    },
    /// The HTTP client could not be built.
    #[error("setting up the HTTP client")]
    HttpClient {
        /// The client error.
        source: reqwest::Error,
    },
    /// A download failed.
    #[error("downloading {url}")]
    Download {
        /// The URL.
        url: String,
        /// The transfer error.
        source: reqwest::Error,
    },
    /// A download got an error status.
    #[error("downloading {url}: HTTP status {status}")]
    HttpStatus {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// A file system operation failed.
    #[error("{operation} {}", path.display())]
    Io {
        /// What was being done.
        operation: &'static str,
        /// The local path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The platform has no node runtime.
    #[error(
        "platform {platform} has no node runtime to install (simulated platforms run without one)"
    )]
    UnsupportedPlatform {
        /// The platform.
        platform: Platform,
    },
    /// The runtime handler was built for another platform.
    #[error(
        "runtime handler {handler} is for platform {}, not {platform}; pass the handler of the same platform",
        handler.platform()
    )]
    HandlerPlatformMismatch {
        /// The handler.
        handler: RuntimeHandler,
        /// The platform asked for.
        platform: Platform,
    },
    /// The SNP ID block file is unusable.
    #[error("SNP ID blocks {file}: {reason}")]
    SnpIdBlocks {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// The target configuration (ConfigMap) has a bad entry.
    #[error("target configuration key {key}: {reason}")]
    TargetConfig {
        /// The key (file name).
        key: String,
        /// Why.
        reason: String,
    },
    /// The image puller configuration is larger than the installer accepts.
    #[error(
        "image puller configuration {}: larger than {limit} bytes; the Secret \
         contrast-node-installer-imagepuller-config (key contrast-imagepuller.toml) should hold \
         only registry credentials and CA certificates",
        path.display()
    )]
    ImagePullerConfigTooLarge {
        /// The file.
        path: PathBuf,
        /// The limit in bytes.
        limit: u64,
    },
    /// The image puller configuration is not text.
    #[error(
        "image puller configuration {}: not UTF-8 (invalid byte at offset {offset}); the Secret \
         contrast-node-installer-imagepuller-config (key contrast-imagepuller.toml) must hold \
         the TOML file itself, e.g. kubectl create secret generic … \
         --from-file=contrast-imagepuller.toml=./contrast-imagepuller.toml",
        path.display()
    )]
    ImagePullerConfigNotUtf8 {
        /// The file.
        path: PathBuf,
        /// The offset of the first byte that is not UTF-8.
        offset: usize,
    },
    /// containerd's configuration is not TOML.
    #[error("containerd configuration {path} is not valid TOML: {message}")]
    ContainerdParse {
        /// The file.
        path: String,
        /// The parser's message.
        message: String,
    },
    /// containerd's configuration has no `version` line (version 1).
    #[error(
        "containerd configuration {path} has no `version` line, so containerd reads it as version 1, \
         which this installer does not edit; migrate it to `version = 2` (containerd 1.x) or `version = 3` \
         (containerd 2.x: `containerd config migrate`) and run the installer again"
    )]
    ContainerdVersion1 {
        /// The file.
        path: String,
    },
    /// containerd's configuration has a version this installer does not know.
    #[error("containerd configuration {path} has version {version}; expected 2 or 3")]
    ContainerdUnsupportedVersion {
        /// The file.
        path: String,
        /// The value found.
        version: String,
    },
    /// A key on the way to the runtime table holds a value, not a table.
    #[error("containerd configuration {path}: {key} is not a table; fix the file by hand")]
    ContainerdNotATable {
        /// The file.
        path: String,
        /// The dotted key.
        key: String,
    },
    /// Neither the K3s/RKE2 template nor the rendered configuration exists.
    #[error(
        "neither {template} nor the rendered {rendered} exists: is K3s/RKE2 running on this node? \
         Set containerd-config-path in the target configuration if containerd's configuration lives elsewhere"
    )]
    TemplateWithoutRendered {
        /// The template path.
        template: String,
        /// The rendered path.
        rendered: String,
    },
    /// A command could not be started.
    #[error("running {command}")]
    CommandSpawn {
        /// The command line.
        command: String,
        /// The error.
        source: std::io::Error,
    },
    /// None of the candidate units exists on the host.
    #[error(
        "none of the systemd units {} exists on the host; set systemd-unit-name in the target configuration",
        units.join(", ")
    )]
    NoUnitFound {
        /// The candidates.
        units: Vec<String>,
    },
    /// `systemctl restart` failed.
    #[error("restarting {unit} failed: {stderr}")]
    RestartFailed {
        /// The unit.
        unit: String,
        /// What systemctl printed.
        stderr: String,
    },
}

/// An atomic write failed: the step, the path and the operating system's error, as the
/// installer's other file errors.
impl From<contrast_atomic_file::WriteError> for InstallError {
    fn from(e: contrast_atomic_file::WriteError) -> Self {
        InstallError::Io {
            operation: e.step,
            path: e.path,
            source: e.source,
        }
    }
}

/// Everything one installation needs.
#[derive(Debug, Clone)]
pub struct Installation {
    /// The platform.
    pub platform: Platform,
    /// The runtime handler to install.
    pub handler: RuntimeHandler,
    /// Where the host's root is mounted.
    pub host_root: HostRoot,
    /// The files and runtime settings.
    pub config: InstallConfig,
    /// Where containerd's configuration is and which unit to restart.
    pub target: TargetConfig,
    /// The guest kernel command line; `None`: the install configuration's
    /// `QemuExtraKernelParams` (QEMU platforms), else [`kata::DEFAULT_KERNEL_PARAMS`]
    /// (QEMU) or empty (AKS: the command line is inside the IGVM file).
    pub kernel_params: Option<String>,
    /// The host's SNP ID block (QEMU SNP platforms).
    pub snp_id_block: Option<SnpIdBlock>,
    /// The image puller's registry credentials from the mounted Secret; `None`: the guest
    /// pulls anonymously, and a copy an earlier run installed is removed.
    pub imagepuller_config: Option<ImagePullerConfig>,
    /// Report what would change, change nothing.
    pub dry_run: bool,
}

impl Installation {
    /// The runtime base directory as a host path: `/opt/edgeless/<handler>`.
    pub fn base_dir(&self) -> String {
        format!("/opt/edgeless/{}", self.handler)
    }

    /// The kernel command line the Kata configuration gets.
    pub fn effective_kernel_params(&self, kind: RuntimeKind) -> String {
        if let Some(params) = &self.kernel_params {
            return params.clone();
        }
        match kind {
            RuntimeKind::QemuSnp | RuntimeKind::QemuTdx => self
                .config
                .qemu_extra_kernel_params
                .clone()
                .unwrap_or_else(|| kata::DEFAULT_KERNEL_PARAMS.to_owned()),
            RuntimeKind::ClhSnp => String::new(),
        }
    }
}

/// One thing the installer did (or, in a dry run, would do); paths are host paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A file was written.
    Installed(String),
    /// A file already had its content and mode.
    Unchanged(String),
    /// A file had its content; its mode was fixed.
    ModeFixed(String),
    /// Dry run: a file would be written (or its mode fixed).
    WouldInstall(String),
    /// The Kata configuration was written.
    KataConfigWritten(String),
    /// The Kata configuration was current.
    KataConfigUnchanged(String),
    /// QEMU SNP without an ID block: the VM starts, but Contrast's validators require one.
    NoSnpIdBlock,
    /// A file an earlier run installed was removed.
    Removed(String),
    /// Dry run: a file would be removed.
    WouldRemove(String),
    /// No image puller configuration: the guest pulls images without credentials.
    NoImagePullerConfig,
    /// The platform pulls images on the host; the image puller configuration is not used.
    ImagePullerConfigIgnored(Platform),
    /// containerd's configuration was patched; the backup's host path if there was a file.
    ContainerdPatched {
        /// The configuration file.
        path: String,
        /// The backup of the previous content.
        backup: Option<String>,
    },
    /// containerd's configuration already had the runtime.
    ContainerdUnchanged(String),
    /// Dry run: containerd's configuration would be patched.
    WouldPatchContainerd(String),
    /// The unit was restarted.
    Restarted(String),
    /// containerd already runs with the configuration.
    NothingToRestart,
    /// The target configuration turned restarts off.
    RestartDisabled,
    /// Dry run: one of these units would be restarted.
    WouldRestart(Vec<String>),
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Installed(path) => write!(f, "installed {path}"),
            Action::Unchanged(path) => write!(f, "unchanged {path}"),
            Action::ModeFixed(path) => write!(f, "fixed the mode of {path}"),
            Action::WouldInstall(path) => write!(f, "would install {path}"),
            Action::KataConfigWritten(path) => write!(f, "wrote Kata configuration {path}"),
            Action::KataConfigUnchanged(path) => write!(f, "unchanged Kata configuration {path}"),
            Action::NoSnpIdBlock => f.write_str(
                "warning: no SNP ID block for this host; pod VMs start without one and Contrast's validators will refuse their reports",
            ),
            Action::Removed(path) => write!(f, "removed {path}"),
            Action::WouldRemove(path) => write!(f, "would remove {path}"),
            Action::NoImagePullerConfig => f.write_str(
                "note: no contrast-imagepuller.toml (Secret contrast-node-installer-imagepuller-config); pod VMs pull images without registry credentials",
            ),
            Action::ImagePullerConfigIgnored(platform) => write!(
                f,
                "note: contrast-imagepuller.toml not installed: {platform} pulls images on the host, not in the pod VM"
            ),
            Action::ContainerdPatched { path, backup } => {
                write!(f, "patched containerd configuration {path}")?;
                match backup {
                    Some(backup) => write!(f, " (previous content in {backup})"),
                    None => f.write_str(" (new file)"),
                }
            }
            Action::ContainerdUnchanged(path) => {
                write!(f, "unchanged containerd configuration {path}")
            }
            Action::WouldPatchContainerd(path) => {
                write!(f, "would patch containerd configuration {path}")
            }
            Action::Restarted(unit) => write!(f, "restarted {unit}"),
            Action::NothingToRestart => f.write_str("nothing to restart"),
            Action::RestartDisabled => {
                f.write_str("not restarting: no systemd unit configured")
            }
            Action::WouldRestart(units) => {
                write!(f, "would restart the first existing of {}", units.join(", "))
            }
        }
    }
}

fn file_action(outcome: FileOutcome, path: &str) -> Action {
    match outcome {
        FileOutcome::Changed => Action::Installed(path.to_owned()),
        FileOutcome::Unchanged => Action::Unchanged(path.to_owned()),
        FileOutcome::WouldChange => Action::WouldInstall(path.to_owned()),
    }
}

/// Installs the runtime. Inputs are all checked before anything is written; `runner`
/// runs the restart on the host.
pub fn install(
    installation: &Installation,
    runner: &mut dyn CommandRunner,
) -> Result<Vec<Action>, InstallError> {
    let platform = installation.platform;
    if installation.handler.platform() != platform {
        return Err(InstallError::HandlerPlatformMismatch {
            handler: installation.handler,
            platform,
        });
    }
    let kind = RuntimeKind::for_platform(platform)?;
    let handler = installation.handler.to_string();
    let root = &installation.host_root;
    let dry_run = installation.dry_run;

    let files = installation
        .config
        .files
        .iter()
        .enumerate()
        .map(|(index, spec)| {
            let file = spec.validate(index, &handler)?;
            let local = root.resolve(&file.path)?;
            Ok((file, local))
        })
        .collect::<Result<Vec<_>, InstallError>>()?;
    let base_dir = installation.base_dir();
    let kata_path = hostpath::join_host(&base_dir, &["etc", kind.config_file_name()]);
    let kata_local = root.resolve(&kata_path)?;
    let state_local = root.resolve(&hostpath::join_host(
        &base_dir,
        &["etc", "containerd-restart.state"],
    ))?;
    let imagepuller_path = ImagePullerConfig::host_path(&base_dir);
    let imagepuller_local = root.resolve(&imagepuller_path)?;
    // Only the QEMU runtimes pull in the guest; AKS pulls on the host (tardev snapshotter).
    let imagepuller = match kind {
        RuntimeKind::QemuSnp | RuntimeKind::QemuTdx => installation.imagepuller_config.as_ref(),
        RuntimeKind::ClhSnp => None,
    };
    let kernel_params = installation.effective_kernel_params(kind);
    let kata_text = kata::kata_config(&KataInputs {
        platform,
        base_dir: &base_dir,
        kernel_params: &kernel_params,
        snp_id_block: installation.snp_id_block.as_ref(),
        debug: installation.config.debug_runtime,
        imagepuller_config: imagepuller.map(|_| imagepuller_path.as_str()),
    })?;
    let entry = RuntimeEntry {
        handler: &handler,
        base_dir: &base_dir,
        kind,
        gpu: kata::is_gpu(platform),
    };
    let containerd_plan =
        containerd::Plan::new(root, &installation.target.containerd_config_path, &entry)?;

    // Everything is checked; from here on the host changes.
    let mut actions = Vec::new();
    let mut downloader: Option<Downloader> = None;
    for (file, local) in &files {
        if let (false, Some(dir)) = (dry_run, local.parent()) {
            std::fs::create_dir_all(dir).map_err(fetch::io_error("creating", dir))?;
        }
        let mode = if file.executable { 0o755 } else { 0o644 };
        tracing::info!(source = %file.source, path = %file.path, "fetching");
        let outcome = fetch::fetch(
            &file.source,
            local,
            file.integrity.as_ref(),
            mode,
            &mut downloader,
            dry_run,
        )?;
        actions.push(match outcome {
            FetchOutcome::Written => Action::Installed(file.path.clone()),
            FetchOutcome::Unchanged => Action::Unchanged(file.path.clone()),
            FetchOutcome::ModeChanged => Action::ModeFixed(file.path.clone()),
            FetchOutcome::WouldWrite | FetchOutcome::WouldChangeMode => {
                Action::WouldInstall(file.path.clone())
            }
        });
    }

    if kind == RuntimeKind::QemuSnp && installation.snp_id_block.is_none() {
        tracing::warn!("no SNP ID block for this host");
        actions.push(Action::NoSnpIdBlock);
    }
    // The file before the Kata configuration that names it; its removal after.
    match (imagepuller, &installation.imagepuller_config) {
        (Some(config), _) => {
            tracing::info!(
                source = %config.source.display(),
                path = %imagepuller_path,
                "installing the image puller configuration"
            );
            let outcome = imagepuller::install_file(&imagepuller_local, &config.text, dry_run)?;
            actions.push(file_action(outcome, &imagepuller_path));
        }
        (None, Some(_)) => {
            tracing::warn!(
                %platform,
                "the image puller configuration is not used: this platform pulls on the host"
            );
            actions.push(Action::ImagePullerConfigIgnored(platform));
        }
        (None, None) if kind == RuntimeKind::ClhSnp => {}
        (None, None) => {
            tracing::info!(
                "no image puller configuration: only anonymous pulls are possible in the pod VM"
            );
            actions.push(Action::NoImagePullerConfig);
        }
    }
    if read_optional(&kata_local)?.as_deref() == Some(kata_text.as_str()) {
        actions.push(Action::KataConfigUnchanged(kata_path));
    } else if dry_run {
        actions.push(Action::WouldInstall(kata_path));
    } else {
        contrast_atomic_file::write_creating_dir(&kata_local, kata_text.as_bytes(), 0o644)?;
        actions.push(Action::KataConfigWritten(kata_path));
    }
    if imagepuller.is_none() {
        match imagepuller::remove_file(&imagepuller_local, dry_run)? {
            FileOutcome::Changed => actions.push(Action::Removed(imagepuller_path)),
            FileOutcome::WouldChange => actions.push(Action::WouldRemove(imagepuller_path)),
            FileOutcome::Unchanged => {}
        }
    }

    let containerd_path = &installation.target.containerd_config_path;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let outcome = containerd_plan.commit(dry_run, now)?;
    let changed = outcome != PatchOutcome::Unchanged;
    actions.push(match outcome {
        PatchOutcome::Unchanged => Action::ContainerdUnchanged(containerd_path.clone()),
        PatchOutcome::WouldWrite => Action::WouldPatchContainerd(containerd_path.clone()),
        PatchOutcome::Written { backup } => Action::ContainerdPatched {
            path: containerd_path.clone(),
            backup: backup.map(|_| format!("{containerd_path}.{now}.bak")),
        },
    });

    let restart = restart::restart_if_needed(
        &installation.target.systemd_units,
        containerd_plan.content(),
        changed,
        &state_local,
        runner,
        dry_run,
    )?;
    actions.push(match restart {
        RestartOutcome::Restarted { unit } => Action::Restarted(unit),
        RestartOutcome::NotNeeded => Action::NothingToRestart,
        RestartOutcome::Disabled => Action::RestartDisabled,
        RestartOutcome::WouldRestart { units } => Action::WouldRestart(units),
    });
    Ok(actions)
}
