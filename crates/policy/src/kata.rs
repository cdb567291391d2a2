//! What the container runtime adds to every container, and where the Kata runtime puts
//! things in the guest: the facts the policy data is built from besides the pod spec.
//!
//! These are the runtime's conventions (containerd's default OCI spec, the Kata
//! runtime's paths for confidential guests without a shared file system), not choices
//! of ours. They are in one place so that a runtime that does it differently needs one
//! change here.

/// Where the agent puts container bundles: a guest-pulled image's root file system is
/// `<CONTAINER_BASE>/<container id>/rootfs` (runtime `fs_share_linux.go`, agent `rpc.rs`).
pub(crate) const CONTAINER_BASE: &str = "/run/kata-containers";

/// Where the Kata runtime puts the files it copies into the guest (and disk emptyDirs).
pub(crate) const SHARED_DIR: &str = "/run/kata-containers/shared/containers";

/// The sandbox's shared memory, mounted at `/dev/shm` in every container.
pub(crate) const SANDBOX_SHM: &str = "/run/kata-containers/sandbox/shm";

/// Where memory-backed emptyDir volumes live in the guest.
pub(crate) const EPHEMERAL_DIR: &str = "/run/kata-containers/sandbox/ephemeral";

/// Where the agent mounts a block storage of the sandbox, at `<dir>/<base64url of the
/// device's address>` (kata_agent.go `handleBlkOCIMounts`).
pub(crate) const SANDBOX_STORAGE_DIR: &str = "/run/kata-containers/sandbox/storage";

/// The PATH containerd gives a container whose image sets none.
pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The pause container's command (the pause bundle of the guest image).
pub(crate) const PAUSE_ARGS: &[&str] = &["/pause"];

/// The user of Kubernetes' pause images (`USER 65535:65535`), which containerd gives the
/// sandbox when the pod's security context names none.
pub(crate) const PAUSE_USER: &str = "65535:65535";

/// What a CRI runtime names the pause image when it creates the sandbox (only used
/// for the example requests: the guest ignores it and runs its own pause bundle).
pub(crate) const PAUSE_IMAGE_EXAMPLE: &str = "registry.k8s.io/pause:3.10";

/// The Kubernetes default for `terminationMessagePath`.
pub(crate) const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";

/// Where the service account token is mounted when the pod does not opt out.
pub(crate) const SERVICE_ACCOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A source copied from the host by `CopyFile`: `<shared>/<container id>-<16>-<name>`.
pub(crate) const COPIED_SOURCE: &str =
    "^/run/kata-containers/shared/containers/$(cid)-[a-z0-9]{16}-[^/]+$";

/// The example of a copied source (`$(cid)`/`$(rand)` filled in by the request builder).
pub(crate) const COPIED_EXAMPLE: &str = "/run/kata-containers/shared/containers/$(cid)-$(rand)-";

/// The capabilities containerd gives an unprivileged container.
pub(crate) const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_AUDIT_WRITE",
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_MKNOD",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_RAW",
    "CAP_SETFCAP",
    "CAP_SETGID",
    "CAP_SETPCAP",
    "CAP_SETUID",
    "CAP_SYS_CHROOT",
];

/// Every Linux capability (`include/uapi/linux/capability.h`, 0 to 40).
pub(crate) const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// The sysctls containerd sets in every sandbox (unprivileged ports and ping).
pub(crate) const DEFAULT_SYSCTLS: &[(&str, &str)] = &[
    ("net.ipv4.ip_unprivileged_port_start", "0"),
    ("net.ipv4.ping_group_range", "0 2147483647"),
];

/// The paths containerd masks in an unprivileged container (the rules require at least
/// the ones in `default_masked_paths`; the example requests send these).
pub(crate) const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// The paths containerd makes read-only in an unprivileged container.
pub(crate) const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A container's namespaces as the Kata runtime sends them (network, cgroup, time and
/// pid dropped, paths emptied): ipc, uts (unless the container has the node's UTS
/// namespace) and mount, in containerd's order.
pub(crate) fn namespaces(uts: bool) -> Vec<String> {
    let mut out = vec!["ipc".to_owned()];
    if uts {
        out.push("uts".to_owned());
    }
    out.push("mount".to_owned());
    out
}

/// The kernel file systems of containerd's default spec: destination, type (= source),
/// and whether an unprivileged container gets them read-only.
pub(crate) const DEFAULT_MOUNTS: &[(&str, &str, bool)] = &[
    ("/proc", "proc", false),
    ("/dev", "tmpfs", false),
    ("/dev/pts", "devpts", false),
    ("/dev/mqueue", "mqueue", false),
    ("/sys", "sysfs", true),
    ("/sys/fs/cgroup", "cgroup", true),
];
