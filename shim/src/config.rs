//! The Kata configuration the runtime installer writes (`runtime-installer/src/kata.rs`),
//! read back: the one schema both sides share. Only the keys this shim acts on are read;
//! unknown keys are ignored, as Kata ignores them, so the installer can write Kata's own
//! settings beside ours.
//!
//! One addition of ours, `[simulation]`, exists only for the simulated platforms (no TEE):
//! the same QEMU under TCG, the guest in test mode (`contrast.test=` on the measured command
//! line, so it never attests as a production VM) with a payload that brings the test TSM
//! provider, and vsock through a user-space back end. Only a build with the `simulated`
//! feature (the tests' and the quickstart's) launches it; the shipped shim refuses it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Why the configuration cannot run a pod.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "reading the Kata configuration {path} (does the runtime installer's ConfigPath name it?)"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the installer's TOML.
    #[error("the Kata configuration {path} is not valid TOML of the runtime installer: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A key the shim needs is missing or out of range.
    #[error(
        "the Kata configuration {path} has no usable `{key}`: {reason}; re-run the runtime installer"
    )]
    Key {
        /// The file.
        path: PathBuf,
        /// The key, as a TOML path.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

/// The configuration file as written.
#[derive(Debug, Deserialize)]
struct File {
    #[serde(default)]
    hypervisor: Hypervisors,
    #[serde(default)]
    agent: Agents,
    #[serde(default)]
    runtime: Runtime,
    simulation: Option<Simulation>,
}

#[derive(Debug, Default, Deserialize)]
struct Hypervisors {
    qemu: Option<Qemu>,
    clh: Option<toml::Table>,
}

#[derive(Debug, Deserialize)]
struct Qemu {
    path: PathBuf,
    firmware: Option<PathBuf>,
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    image: PathBuf,
    kernel_params: String,
    #[serde(default = "one")]
    default_vcpus: u32,
    default_memory: u32,
    machine_type: Option<String>,
    #[serde(default)]
    confidential_guest: bool,
    #[serde(default)]
    sev_snp_guest: bool,
    snp_id_block: Option<String>,
    snp_id_auth: Option<String>,
    snp_guest_policy: Option<u64>,
    cpu_features: Option<String>,
    #[serde(default)]
    guest_hook_path: String,
    #[serde(default)]
    disable_vhost_net: bool,
    /// Contrast's key: the node's image puller config (empty: none).
    #[serde(default)]
    contrast_imagepuller_config: String,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Default, Deserialize)]
struct Agents {
    kata: Option<Agent>,
}

#[derive(Debug, Default, Deserialize)]
struct Agent {
    dial_timeout: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
struct Runtime {
    create_container_timeout: Option<u64>,
    internetworking_model: Option<String>,
}

/// `[simulation]`: a simulated platform's test-mode launch.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Simulation {
    /// The guest test named on the kernel command line (`contrast.test=<test>`).
    pub test: String,
    /// The test payload (a newc cpio archive the guest's init unpacks in test mode): the
    /// test TSM provider and the simulator's keys.
    pub payload: PathBuf,
    /// `vhost-device-vsock`, the user-space vsock back end (no `/dev/vhost-vsock`).
    pub vsock_backend: PathBuf,
}

/// The TEE a pod VM is launched in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tee {
    /// AMD SEV-SNP: HOST_DATA carries the initdata digest.
    Snp {
        /// The ID block and its authentication structure (base64), when the platform has
        /// them.
        id_block: Option<(String, String)>,
        /// The guest policy.
        policy: u64,
    },
    /// Intel TDX: MRCONFIGID carries the initdata digest.
    Tdx,
    /// No TEE: the simulator's test TSM provider gets HOST_DATA from the VMM.
    #[cfg(feature = "simulated")]
    Simulated(Simulation),
}

impl Tee {
    /// Whether this is the simulated platform's test-mode launch (never in a shipped shim).
    pub fn is_simulated(&self) -> bool {
        #[cfg(feature = "simulated")]
        if matches!(self, Tee::Simulated(_)) {
            return true;
        }
        false
    }
}

/// What a pod VM is launched with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeConfig {
    /// QEMU.
    pub qemu: PathBuf,
    /// The firmware (`-bios`).
    pub firmware: Option<PathBuf>,
    /// The guest kernel.
    pub kernel: PathBuf,
    /// The initrd.
    pub initrd: Option<PathBuf>,
    /// The root filesystem image (dm-verity protected; read-only).
    pub image: PathBuf,
    /// The kernel command line, exactly as measured.
    pub kernel_params: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// QEMU's machine type (none: QEMU's default).
    pub machine_type: Option<String>,
    /// `-cpu` features after the model.
    pub cpu_features: Option<String>,
    /// The TEE.
    pub tee: Tee,
    /// Where OCI hooks live in the guest (`hypervisor.qemu.guest_hook_path`; empty: none).
    pub guest_hook_path: String,
    /// The taps' packets go through the kernel's vhost-net (`hypervisor.qemu.
    /// disable_vhost_net` unset, Kata's default); never on the simulated platforms (TCG).
    pub vhost_net: bool,
    /// How long to wait for the agent after launch, in seconds.
    pub dial_timeout_secs: u64,
    /// How long CreateContainer may take (the guest pulls the image), in seconds.
    pub create_container_timeout_secs: u64,
    /// The node's image puller config (registry credentials for the guest's pulls,
    /// `hypervisor.qemu.contrast_imagepuller_config`), handed to the VM unmeasured on a
    /// disk of its own; `None`: the disk holds an empty config (anonymous pulls).
    pub imagepuller_config: Option<PathBuf>,
}

/// The SNP guest policy Kata uses when the configuration names none (SMT allowed,
/// reserved bit 17).
const DEFAULT_SNP_POLICY: u64 = 0x30000;

impl RuntimeConfig {
    /// Reads the configuration at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses `text` (read from `path`, named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let key = |key: &'static str, reason: &str| ConfigError::Key {
            path: path.to_owned(),
            key,
            reason: reason.to_owned(),
        };
        let Some(qemu) = file.hypervisor.qemu else {
            return Err(if file.hypervisor.clh.is_some() {
                key(
                    "hypervisor.qemu",
                    "Cloud Hypervisor (AKS) pods are not run by this shim, only QEMU ones",
                )
            } else {
                key("hypervisor.qemu", "the table is missing")
            });
        };
        if qemu.default_memory < 64 {
            return Err(key(
                "hypervisor.qemu.default_memory",
                "at least 64 MiB are needed",
            ));
        }
        // Timeouts beyond a day are mistakes (and would overflow a deadline).
        const MAX_TIMEOUT_SECS: u64 = 86_400;
        let dial_timeout_secs = file.agent.kata.and_then(|a| a.dial_timeout).unwrap_or(90);
        if dial_timeout_secs > MAX_TIMEOUT_SECS {
            return Err(key("agent.kata.dial_timeout", "at most 86400 seconds"));
        }
        let create_container_timeout_secs = file.runtime.create_container_timeout.unwrap_or(60);
        if create_container_timeout_secs > MAX_TIMEOUT_SECS {
            return Err(key(
                "runtime.create_container_timeout",
                "at most 86400 seconds",
            ));
        }
        // The pod's interfaces reach the VM through tc redirects to its taps (Kata's
        // default, and what the installer writes); macvtap is not implemented.
        if let Some(model) = &file.runtime.internetworking_model
            && model != "tcfilter"
        {
            return Err(key(
                "runtime.internetworking_model",
                &format!(
                    "{model:?} is not supported; this shim joins pods to their VM with \"tcfilter\""
                ),
            ));
        }
        if qemu.default_vcpus == 0 {
            return Err(key("hypervisor.qemu.default_vcpus", "at least 1 is needed"));
        }
        let tee = match (file.simulation, qemu.confidential_guest, qemu.sev_snp_guest) {
            #[cfg(feature = "simulated")]
            (Some(simulation), _, _) => Tee::Simulated(simulation),
            #[cfg(not(feature = "simulated"))]
            (Some(_), _, _) => {
                return Err(key(
                    "simulation",
                    "this shim is built without the simulator (feature `simulated`): it runs \
                     pods on TEE hardware only; remove the [simulation] section",
                ));
            }
            (None, true, true) => Tee::Snp {
                id_block: match (qemu.snp_id_block, qemu.snp_id_auth) {
                    (Some(block), Some(auth)) => Some((block, auth)),
                    (None, None) => None,
                    _ => {
                        return Err(key(
                            "hypervisor.qemu.snp_id_block",
                            "snp_id_block and snp_id_auth go together",
                        ));
                    }
                },
                policy: qemu.snp_guest_policy.unwrap_or(DEFAULT_SNP_POLICY),
            },
            (None, true, false) => Tee::Tdx,
            (None, false, _) => {
                return Err(key(
                    "hypervisor.qemu.confidential_guest",
                    "a pod VM must be confidential (true)",
                ));
            }
        };
        Ok(RuntimeConfig {
            qemu: qemu.path,
            firmware: qemu.firmware,
            kernel: qemu.kernel,
            initrd: qemu.initrd,
            image: qemu.image,
            kernel_params: qemu.kernel_params,
            vcpus: qemu.default_vcpus,
            memory_mib: qemu.default_memory,
            machine_type: qemu.machine_type,
            cpu_features: qemu.cpu_features,
            vhost_net: !qemu.disable_vhost_net && !tee.is_simulated(),
            tee,
            guest_hook_path: qemu.guest_hook_path,
            dial_timeout_secs,
            create_container_timeout_secs,
            imagepuller_config: (!qemu.contrast_imagepuller_config.is_empty())
                .then(|| PathBuf::from(qemu.contrast_imagepuller_config)),
        })
    }
}

/// What the pod's containers ask for beyond the VM's defaults, from the sizing annotations
/// containerd (1.7 and later) puts on the sandbox: memory in MiB and a CPU count, as the
/// Kata runtime's static sandbox sizing reads them (`CalculateSandboxSizing`, oci.go).
/// A missing or unreadable value counts as 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SandboxSizing {
    /// Memory to add, in MiB (the sum of the containers' limits, or the pod-level limit).
    pub memory_mib: u32,
    /// CPUs to add (quota / period; from the shares when the quota is unconstrained).
    pub cpus: f64,
}

impl SandboxSizing {
    /// The sizing of a sandbox whose `config.json` is `spec`.
    pub fn of(spec: &serde_json::Value) -> SandboxSizing {
        let annotation = |key: &str| {
            spec.get("annotations")
                .and_then(|a| a.get(key))
                .and_then(serde_json::Value::as_str)
        };
        let number = |key: &str| -> i64 {
            annotation(key).map_or(0, |v| {
                v.parse().unwrap_or_else(|_| {
                    tracing::warn!(
                        key,
                        value = v,
                        "an unreadable sandbox sizing annotation counts as 0"
                    );
                    0
                })
            })
        };
        let period = number("io.kubernetes.cri.sandbox-cpu-period");
        let quota = number("io.kubernetes.cri.sandbox-cpu-quota");
        let shares = number("io.kubernetes.cri.sandbox-cpu-shares");
        let memory = number("io.kubernetes.cri.sandbox-memory");
        let mut cpus = if quota >= 0 && period > 0 {
            quota as f64 / period as f64
        } else {
            0.0
        };
        // kubelet's static CPU manager leaves the quota unconstrained (-1) and gives CPUs
        // by cpuset; then the shares say how many (1024 per CPU).
        if quota < 0 && cpus == 0.0 && shares > 0 {
            cpus = (shares as f64 / 1024.0).ceil();
        }
        SandboxSizing {
            memory_mib: u32::try_from(memory.max(0) >> 20).unwrap_or(u32::MAX),
            cpus,
        }
    }

    /// `config` with this sizing added to its vCPUs and memory.
    pub fn apply(self, config: &RuntimeConfig) -> RuntimeConfig {
        let mut sized = config.clone();
        sized.memory_mib = config.memory_mib.saturating_add(self.memory_mib);
        let vcpus = (f64::from(config.vcpus) + self.cpus).ceil();
        // At most what a u32 holds; QEMU refuses more than the host has anyway.
        sized.vcpus = if vcpus >= f64::from(u32::MAX) {
            u32::MAX
        } else {
            vcpus as u32
        };
        sized
    }
}
