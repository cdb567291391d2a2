//! The policy data: what `policy_data` in a generated policy holds, field by field.
//!
//! Serialised as JSON after the rules (`policy_data := {...}`). Fields marked
//! `serde(skip)` are not policy: they are concrete examples of what a pattern admits,
//! used to build the requests a faithful runtime sends ([`crate::expected_requests`]).
//!
//! Patterns are regular expressions (Rust `regex` syntax, what regorus uses), anchored.
//! Mount sources and storage mount points are templates: `$(cid)` stands for the
//! container ID and `$(sid)` for the sandbox ID of the request, both checked to be 64
//! characters of `[a-z0-9]` before they are put in.

use std::collections::BTreeMap;

use serde::Serialize;

/// The version of this data model (bumped when a field changes meaning).
pub(crate) const DATA_VERSION: u32 = 1;

/// `policy_data`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PolicyData {
    /// [`DATA_VERSION`].
    pub(crate) version: u32,
    /// What holds for the whole pod.
    pub(crate) pod: PodRules,
    /// The pause (sandbox) container.
    pub(crate) pause: PauseRules,
    /// Init containers, then containers, in spec order.
    pub(crate) containers: Vec<ContainerRules>,
}

/// What holds for the whole pod.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PodRules {
    /// `io.kubernetes.cri.sandbox-namespace` must be this; empty: any namespace (the
    /// resource names none), the same for the whole sandbox.
    pub(crate) namespace: String,
    /// The namespace of the example requests.
    #[serde(skip)]
    pub(crate) namespace_example: String,
    /// `io.kubernetes.cri.sandbox-name` must match this: the name, or the name with the
    /// suffixes controllers add (`web-7d9f8b6c5d-x2x4z`, `db-0`).
    pub(crate) name_regex: String,
    /// Whether containers may join the sandbox's PID namespace.
    pub(crate) share_process_namespace: bool,
    /// The agent device types of block volumes (the platform's block device driver).
    pub(crate) device_types: Vec<String>,
    /// `hypervisor.guest_hook_path`: where the GPU platforms' guest image keeps the OCI
    /// hooks the agent runs (the measured image's, never the host's); empty elsewhere.
    pub(crate) guest_hook_path: String,
    /// Patterns for whole `NAME=value` entries the runtime may add to any container's
    /// environment without the pod declaring them (service links, HOSTNAME).
    pub(crate) optional_env: Vec<String>,
    /// The sysctls a container may get, with their values.
    pub(crate) sysctls: BTreeMap<String, String>,
    /// An example pod name (matches `name_regex`).
    #[serde(skip)]
    pub(crate) name_example: String,
    /// An example hostname.
    #[serde(skip)]
    pub(crate) hostname_example: String,
    /// Example `NAME=value` entries the runtime adds (each matches `optional_env`).
    #[serde(skip)]
    pub(crate) optional_env_examples: Vec<String>,
}

/// The pause container.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct PauseRules {
    /// Its command.
    pub(crate) args: Vec<String>,
    /// The only environment entries it may get.
    pub(crate) env: Vec<String>,
    /// The mounts it may get.
    pub(crate) mounts: Vec<MountRule>,
    /// Its namespaces (after the runtime dropped network, cgroup, time and pid): ipc, uts
    /// and mount; without uts in a host-network pod, whose sandbox keeps the node's
    /// hostname (containerd gives it none; genpolicy's `get_kata_namespaces` agrees).
    pub(crate) namespaces: Vec<String>,
    /// Its user, as containerd sets it: the pod's `runAsUser`/`runAsGroup`, else the
    /// pause image's user; supplementary groups the pod's `supplementalGroups` and
    /// `fsGroup` (the agent runs the guest image's pause bundle whatever the request
    /// says, but a request with another user is not one a faithful runtime sends).
    pub(crate) uid: u32,
    /// The primary GID may be any of these.
    pub(crate) gids: Vec<u32>,
    /// The supplementary GIDs may only be these.
    pub(crate) additional_gids: Vec<u32>,
}

/// One container (init containers too).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ContainerRules {
    /// `io.kubernetes.cri.container-name` must be this.
    pub(crate) name: String,
    /// The image reference as the pod spec has it (for readers; not checked).
    pub(crate) image: String,
    /// The guest-pull source must end in `@` and this.
    pub(crate) image_digest: String,
    /// The process's `Args`, exactly.
    pub(crate) args: Vec<String>,
    /// The process's `Cwd`, exactly.
    pub(crate) cwd: String,
    /// Whether the container has a terminal (then `TERM=xterm` may be added).
    pub(crate) terminal: bool,
    /// The process's UID.
    pub(crate) uid: u32,
    /// The GIDs the process may have as its primary group.
    pub(crate) gids: Vec<u32>,
    /// The only supplementary GIDs the process may have.
    pub(crate) additional_gids: Vec<u32>,
    /// Variables with a known value: each must be present with exactly this value.
    pub(crate) env: BTreeMap<String, String>,
    /// Variables whose value is only known at run time (downward API): each must be
    /// present, with a value matching the pattern.
    pub(crate) env_patterns: BTreeMap<String, String>,
    /// Variables whose value is the sandbox's namespace (`metadata.namespace` of a pod
    /// whose resource names none): each must be present with that value.
    pub(crate) env_sandbox_namespace: Vec<String>,
    /// No capability set may hold anything else.
    pub(crate) capabilities: Vec<String>,
    /// `NoNewPrivileges` must be true.
    pub(crate) no_new_privileges: bool,
    /// The container is privileged (for readers: the other fields already say what that
    /// allows).
    pub(crate) privileged: bool,
    /// `Root.Readonly` must be true.
    pub(crate) read_only_root: bool,
    /// The default masked and read-only paths must be there.
    pub(crate) require_masked_paths: bool,
    /// The mounts it may get; `required` ones it must get.
    pub(crate) mounts: Vec<MountRule>,
    /// The storages (besides the image) it may get.
    pub(crate) storages: Vec<StorageRule>,
    /// The device paths it may get (`volumeDevices`).
    pub(crate) devices: Vec<String>,
    /// The GPUs it gets on a GPU platform (its `nvidia.com/pgpu` limit): as many CDI
    /// annotations `cdi.k8s.io/vfio<n>`, and as many VFIO devices (hot plug) or none (cold
    /// plug: the runtime attached them to the VM before it started).
    pub(crate) gpus: u32,
    /// The commands `ExecProcess` may run in it.
    pub(crate) exec: Vec<Vec<String>>,
    /// The container's environment in the order a runtime sends it, with example
    /// values for the patterns.
    #[serde(skip)]
    pub(crate) env_example: Vec<String>,
    /// Whether it is an init container.
    #[serde(skip)]
    pub(crate) init: bool,
}

/// A mount a container may get.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MountRule {
    /// The path in the container, exactly.
    pub(crate) destination: String,
    /// The OCI mount type, exactly.
    #[serde(rename = "type")]
    pub(crate) mount_type: String,
    /// A pattern template for the source in the guest.
    pub(crate) source: String,
    /// The mount must be read-only (`ro` among the options, `rw` not).
    pub(crate) read_only: bool,
    /// The mount must be there (declared in the pod spec).
    pub(crate) required: bool,
    /// An example source (`$(cid)`, `$(sid)`, `$(rand)` to be filled in).
    #[serde(skip)]
    pub(crate) source_example: String,
    /// For an emptyDir on an encrypted block device (the runtime's `block-encrypted`
    /// mode): the exact options, and then `source` is unused: the mount's source must be
    /// the guest mount point of one of the request's block storages. Empty otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) block_options: Vec<String>,
    /// The propagation option containerd gives the mount from its `mountPropagation`
    /// (`rshared` for Bidirectional, `rslave` for HostToContainer; emptyDir mounts only, as
    /// Contrast's genpolicy has it); empty: the mount may carry none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) propagation: String,
}

/// A storage (a file system the agent mounts in the guest) a container may get.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct StorageRule {
    /// The storage driver, exactly.
    pub(crate) driver: String,
    /// The storage source, exactly.
    pub(crate) source: String,
    /// The file system type, exactly.
    pub(crate) fstype: String,
    /// A pattern template for the guest path.
    pub(crate) mount_point: String,
    /// An example guest path (`$(sid)` to be filled in).
    #[serde(skip)]
    pub(crate) mount_point_example: String,
    /// The mount options a runtime sends (for the example requests).
    #[serde(skip)]
    pub(crate) options_example: Vec<String>,
    /// An emptyDir's encrypted block device: then `source` and `mount_point` are unused
    /// (the source is the device's address, the mount point follows from it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) block: Option<BlockStorageRule>,
}

/// A block device the agent formats under an ephemeral LUKS key and mounts for an emptyDir
/// (the runtime's `block-encrypted` mode; kata_agent.go `handleDeviceBlockVolume`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct BlockStorageRule {
    /// The driver options, exactly and in order.
    pub(crate) driver_options: Vec<String>,
    /// The mount options, exactly.
    pub(crate) options: Vec<String>,
    /// The guest directory the mount point is in: `<dir>/<base64url of the address>`.
    pub(crate) mount_point_dir: String,
    /// The pod's `fsGroup`, which the agent gives the file system; `null` without one.
    pub(crate) fs_group: Option<FsGroupRule>,
    /// An example device address (the platform's kind).
    #[serde(skip)]
    pub(crate) source_example: String,
}

/// The agent protocol's `FSGroup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct FsGroupRule {
    /// The group.
    pub(crate) group_id: u32,
    /// 0: always change ownership, 1: only when the root's owner differs
    /// (`fsGroupChangePolicy: OnRootMismatch`).
    pub(crate) group_change_policy: u32,
}
