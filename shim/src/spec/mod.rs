//! From what containerd hands the shim (a bundle's `config.json`, an exec's OCI process)
//! to the agent requests the Kata Go runtime sends for it, field for field, so that the
//! agent policy `contrast generate` makes for the pod (which models that runtime) allows
//! them.
//!
//! The runtime configuration modelled is our platforms' (`Platform::kata_runtime`):
//! `shared_fs = none` (host files reach the guest by `CopyFile`), the guest pulls every
//! image (`experimental_force_guest_pull`), guest seccomp and SELinux disabled.
//!
//! References are to kata-containers at commit 7c6ba40c54ea29b459b4997cff948caaba4e658b:
//! `ka.go` = `src/runtime/virtcontainers/kata_agent.go`, `fs.go` =
//! `src/runtime/virtcontainers/fs_share_linux.go`, `ctr.go` =
//! `src/runtime/virtcontainers/container.go`, `oci.go` = `src/runtime/pkg/oci/utils.go`.
//!
//! emptyDir volumes become guest storages as the runtime makes them with our platforms'
//! `emptydir_mode = "shared-fs"`: a memory-backed one (a tmpfs on the host) an `ephemeral`
//! tmpfs in the guest, a disk-backed one a `local` directory in the guest; neither takes
//! anything from the host but the fsGroup's GID. Not covered: hugepage-backed emptyDirs
//! (refused with [`SpecError::Unsupported`]); block volumes and the agent `devices` they
//! need (none is sent).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use contrast_agent_protocol::proto::agent::{
    CopyFileRequest, CreateContainerRequest, CreateSandboxRequest, ExecProcessRequest,
    KernelModule, Storage,
};
use contrast_agent_protocol::proto::oci;
use protobuf::MessageField;
use serde_json::Value;

mod convert;
mod mounts;
mod node;

use convert::*;
use mounts::*;
use node::*;

/// The CRI annotation that says whether a bundle is the pod's sandbox (pause) container.
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// The CRI annotation naming the pod's sandbox (its pause container's ID).
pub const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// The CRI annotation naming a container's image.
pub const CRI_IMAGE_NAME: &str = "io.kubernetes.cri.image-name";
/// CRI-O's annotation naming a container's image (the runtime reads it too, ka.go:1949).
const CRIO_IMAGE_NAME: &str = "io.kubernetes.cri-o.ImageName";
/// Added by the runtime: the host bundle directory (oci.go:1414-1420).
pub const BUNDLE_PATH_ANNOTATION: &str = "io.katacontainers.pkg.oci.bundle_path";
/// Added by the runtime: `pod_sandbox` or `pod_container` (oci.go:1422-1427).
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.katacontainers.pkg.oci.container_type";
/// Added by the runtime to the sandbox: its network namespace (katautils/create.go:181).
pub const NETNS_ANNOTATION: &str = "nerdctl/network-namespace";
/// Removed by the runtime: they configure the runtime, not the guest
/// (katautils/create.go:185-190,259-263).
const REMOVED_ANNOTATIONS: &[&str] = &[
    "io.katacontainers.config.agent.policy",
    "io.katacontainers.config.hypervisor.cc_init_data",
];
/// Removed by the runtime: CDI device requests (containerd-shim-v2/create.go:500-510).
const CDI_ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

/// Where the agent puts a container's bundle; a guest-pulled root is `<this>/<cid>/rootfs`
/// (fs.go:674, ka.go:1682).
const GUEST_CONTAINER_BASE: &str = "/run/kata-containers";
/// Where copied host files go (fs.go:336, `defaultKataGuestSharedDir` ka.go:113).
pub const GUEST_SHARED_DIR: &str = "/run/kata-containers/shared/containers";
/// The sandbox's shared memory in the guest (ka.go:1167, `kataGuestSandboxDir()/shm`).
pub const GUEST_SANDBOX_SHM: &str = "/run/kata-containers/sandbox/shm";
/// What the runtime names as the pause container's image (ka.go:1940-1941): the agent
/// ignores it and unpacks the guest image's own pause bundle.
const PAUSE_IMAGE_SOURCE: &str = "pause";
/// Where the guest's tmpfs volumes are (`ephemeralPath()`, ka.go:2669-2671).
const GUEST_EPHEMERAL_DIR: &str = "/run/kata-containers/sandbox/ephemeral";
/// kubelet's directory of emptyDir volumes, the second-to-last component of their paths
/// (`K8sEmptyDir`, mount.go:31; `isEmptyDir`, mount.go:373).
const K8S_EMPTY_DIR: &str = "kubernetes.io~empty-dir";
/// The options of every `local` storage (`localDirOptions`, ka.go:141).
const LOCAL_DIR_OPTIONS: &[&str] = &["mode=0777"];
/// The storage option naming an emptyDir's group when it is not root's: the fsGroup
/// kubelet gave the directory (`fsGid`, ka.go:87; ka.go:1815-1820,1860-1865).
const FS_GID_OPTION: &str = "fsgid";
/// The host's mount table, where the runtime looks up an emptyDir's file system
/// (`GetDevicePathAndFsTypeOptions`, utils_linux.go:110-150).
const HOST_MOUNTS: &str = "/proc/mounts";
/// The largest `data` of one CopyFile request (`grpcMaxDataSize`, ka.go:139).
const COPY_CHUNK: usize = 1024 * 1024;
/// `uint32(os.FileMode(0750) | os.ModeDir)` (sandbox.go:71): Go's ModeDir is bit 31, so
/// the agent gets 0x800001e8 and masks it (rpc.rs:2339).
pub const COPY_DIR_MODE: u32 = 0x8000_01e8;
/// The hostname the runtime sends is cut to this many bytes (ka.go:142,828-830).
const MAX_HOSTNAME_LEN: usize = 64;
/// The guest resolv.conf the sandbox's DNS is read from (ka.go:800-808, `GuestDNSFile`).
const RESOLV_CONF: &str = "/etc/resolv.conf";
/// Host paths the runtime never copies (mount.go:33,46-55 `isSystemMount`).
const SYSTEM_MOUNT_PREFIXES: &[&str] = &["/proc", "/sys"];

/// Whether a bundle is the pod's sandbox (pause) container or one of its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// The pause container; its ID is the sandbox ID.
    Sandbox,
    /// An application (or init) container.
    Container,
}

impl ContainerKind {
    /// From the CRI annotation `io.kubernetes.cri.container-type` (`sandbox` or
    /// `container`) of a bundle's `config.json`.
    pub fn from_spec(spec: &Value) -> Result<Self, SpecError> {
        let node = Node::root(spec).get("annotations").get(CRI_CONTAINER_TYPE);
        match node.string()?.as_str() {
            "sandbox" => Ok(ContainerKind::Sandbox),
            "container" => Ok(ContainerKind::Container),
            other => Err(SpecError::InvalidField {
                field: node.path,
                expected: "\"sandbox\" or \"container\" (containerd's CRI sets it on every \
                           bundle of a pod)",
                found: other.to_owned(),
            }),
        }
    }

    /// The runtime's container type annotation value (`types.go:14-23`).
    fn kata_type(self) -> &'static str {
        match self {
            ContainerKind::Sandbox => "pod_sandbox",
            ContainerKind::Container => "pod_container",
        }
    }
}

/// The sandbox's runtime settings that go into `CreateSandboxRequest`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SandboxSettings {
    /// Bytes of the sandbox's shared memory: the runtime's `getShmSize` (oci.go:1432-1455)
    /// takes the size of the file system at the pause spec's `/dev/shm` bind source
    /// (statfs blocks × block size), 64 MiB when that source is `/dev/shm` or not a
    /// bind, and 0 without a `/dev/shm` mount. 0 means no shm storage.
    pub shm_size: u64,
    /// `hypervisor.guest_hook_path` (empty: none; our policies refuse any other).
    pub guest_hook_path: String,
    /// `agent.kernel_modules` (empty on our platforms; our policies refuse any other).
    pub kernel_modules: Vec<KernelModule>,
}

/// What the runtime sends to create one container: the files it copies in first, then
/// the CreateContainer request.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRequests {
    /// CopyFile requests, in the order they must be sent.
    pub copies: Vec<CopyFileRequest>,
    /// The CreateContainer request (its mount sources name the copies' paths).
    pub create: CreateContainerRequest,
}

/// Why no agent request could be made from what containerd gave.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// A field has the wrong JSON type or value.
    #[error(
        "{field}: expected {expected}, found {found}: the OCI spec is not one containerd \
         writes; check the bundle's config.json"
    )]
    InvalidField {
        /// The field's path in the spec, such as `linux.namespaces[2].type`.
        field: String,
        /// What the field must be.
        expected: &'static str,
        /// What it is.
        found: String,
    },
    /// A field the runtime needs is missing.
    #[error("{field}: missing; {why}")]
    MissingField {
        /// The field's path.
        field: String,
        /// Why it is needed and what to do.
        why: &'static str,
    },
    /// Something the Kata runtime would do that this shim does not do yet.
    #[error("{field}: {reason}")]
    Unsupported {
        /// The field's path.
        field: String,
        /// What and what to do instead.
        reason: String,
    },
    /// A host file to be copied into the guest could not be read.
    #[error(
        "{field}: reading {path} to copy it into the guest (check that it exists and is readable by the shim)"
    )]
    HostFile {
        /// The mount's path in the spec.
        field: String,
        /// The host file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file below a copied mount is not a regular file, directory or symlink.
    #[error(
        "{field}: {path} is neither a regular file, a directory nor a symlink, and cannot be \
         copied into the guest; remove it from the volume"
    )]
    UncopyableFile {
        /// The mount's path in the spec.
        field: String,
        /// The host file.
        path: PathBuf,
    },
    /// A file below a copied mount has a name the agent protocol (UTF-8 strings) cannot
    /// carry.
    #[error(
        "{field}: {path}: the name is not UTF-8 and cannot be copied into the guest; rename it"
    )]
    NotUtf8 {
        /// The mount's path in the spec.
        field: String,
        /// The host file.
        path: PathBuf,
    },
    /// No randomness for the copied files' names.
    #[error("the system's random number generator failed; the copied files cannot be named")]
    Random,
}

/// The CreateSandbox request for a pod, from its pause container's `config.json`
/// (ka.go:866-874).
pub fn create_sandbox_request(
    spec: &Value,
    sandbox_id: &str,
    settings: &SandboxSettings,
) -> Result<CreateSandboxRequest, SpecError> {
    let root = Node::root(spec);
    let mut req = CreateSandboxRequest::new();
    req.hostname = truncate_hostname(root.get("hostname").string()?);
    req.dns = sandbox_dns(&root)?;
    if settings.shm_size > 0 {
        req.storages.push(shm_storage(settings.shm_size));
    }
    // `sandbox.sharePidNs` is never set in the Go runtime (sandbox.go:686): containers of
    // a pod sharing its PID namespace say so in CreateContainer instead.
    req.sandbox_pidns = false;
    req.sandbox_id = sandbox_id.to_owned();
    req.guest_hook_path.clone_from(&settings.guest_hook_path);
    req.kernel_modules.clone_from(&settings.kernel_modules);
    Ok(req)
}

/// The hostname cut to 64 bytes as the runtime does (at a character boundary, which
/// for a hostname is any byte).
fn truncate_hostname(mut hostname: String) -> String {
    if hostname.len() > MAX_HOSTNAME_LEN {
        let mut end = MAX_HOSTNAME_LEN;
        while !hostname.is_char_boundary(end) {
            end -= 1;
        }
        hostname.truncate(end);
    }
    hostname
}

/// The lines of the host file bind-mounted at `/etc/resolv.conf`, split on `\n` as
/// `getDNS` does (ka.go:795-817), so a trailing newline gives a last empty entry; no
/// such mount, no DNS.
fn sandbox_dns(root: &Node<'_>) -> Result<Vec<String>, SpecError> {
    for m in root.get("mounts").array()? {
        if m.get("destination").string()? != RESOLV_CONF {
            continue;
        }
        let source = m.get("source");
        let path = PathBuf::from(source.string()?);
        let text = std::fs::read_to_string(&path).map_err(|e| SpecError::HostFile {
            field: source.path.clone(),
            path,
            source: e,
        })?;
        return Ok(text.split('\n').map(str::to_owned).collect());
    }
    Ok(Vec::new())
}

/// The sandbox's shared memory storage (`setupStorages`, ka.go:956-970).
fn shm_storage(size: u64) -> Storage {
    let mut s = Storage::new();
    s.driver = "ephemeral".to_owned();
    s.source = "shm".to_owned();
    s.fstype = "tmpfs".to_owned();
    s.mount_point = GUEST_SANDBOX_SHM.to_owned();
    s.options = ["noexec", "nosuid", "nodev", "mode=1777"]
        .iter()
        .map(|o| (*o).to_owned())
        .chain(std::iter::once(format!("size={size}")))
        .collect();
    s
}

/// The requests that create a container from containerd's `config.json` of its bundle
/// (`createContainer`, ka.go:1560-1720): the CopyFile requests for its bind mounts
/// (read from the host now) and the CreateContainer request.
///
/// The sandbox's shared memory is assumed to exist (`shm_size > 0`), as it does whenever
/// the pause spec has a `/dev/shm` mount, which containerd always gives it.
pub fn container_requests(
    spec: &Value,
    container_id: &str,
    bundle: &Path,
    kind: ContainerKind,
) -> Result<ContainerRequests, SpecError> {
    let root = Node::root(spec);
    let annotations = annotations(&root, bundle, kind)?;
    let image = image_source(&annotations, kind)?;
    let root_path = format!("{GUEST_CONTAINER_BASE}/{container_id}/rootfs");

    let mut oci_spec = convert_spec(&root)?;
    let mut copies = Vec::new();
    // Local directories live below the sandbox's bundle (ka.go:1866-1870), whose ID is
    // the pause container's.
    let sandbox_id = match kind {
        ContainerKind::Sandbox => Ok(container_id.to_owned()),
        ContainerKind::Container => annotations
            .get(CRI_SANDBOX_ID)
            .filter(|id| !id.is_empty())
            .cloned()
            .ok_or_else(|| root.get("annotations").get(CRI_SANDBOX_ID).path),
    };
    let (mounts, volume_storages) = guest_mounts(&root, container_id, &sandbox_id, &mut copies)?;
    oci_spec.Mounts = mounts;
    oci_spec.Annotations = annotations.clone().into_iter().collect();
    let oci_root = oci_spec.Root.mut_or_insert_default();
    oci_root.Path.clone_from(&root_path);
    let sandbox_pidns = remove_pid_namespace(&mut oci_spec);
    constrain(&mut oci_spec, &root)?;

    let mut create = CreateContainerRequest::new();
    create.container_id = container_id.to_owned();
    create.exec_id = container_id.to_owned();
    // The root first (ka.go:1580-1583), then the volumes' storages.
    create.storages = vec![guest_pull_storage(&annotations, image, &root_path)];
    create.storages.extend(volume_storages);
    create.OCI = MessageField::some(oci_spec);
    create.sandbox_pidns = sandbox_pidns;
    Ok(ContainerRequests { copies, create })
}

/// The spec's annotations as the runtime passes them on (§7 of the facts): the two it
/// adds, the sandbox's network namespace, and without the runtime's own settings and CDI
/// requests. A `BTreeMap`, so the guest-pull metadata is in Go's key order.
fn annotations(
    root: &Node<'_>,
    bundle: &Path,
    kind: ContainerKind,
) -> Result<BTreeMap<String, String>, SpecError> {
    let mut out: BTreeMap<String, String> = root.get("annotations").string_map()?;
    out.retain(|k, _| !REMOVED_ANNOTATIONS.contains(&k.as_str()));
    out.retain(|k, _| !k.starts_with(CDI_ANNOTATION_PREFIX));
    let bundle = bundle.to_str().ok_or_else(|| SpecError::InvalidField {
        field: "bundle".to_owned(),
        expected: "a UTF-8 path",
        found: bundle.display().to_string(),
    })?;
    out.insert(BUNDLE_PATH_ANNOTATION.to_owned(), bundle.to_owned());
    out.insert(
        CONTAINER_TYPE_ANNOTATION.to_owned(),
        kind.kata_type().to_owned(),
    );
    if kind == ContainerKind::Sandbox
        && let Some(netns) = network_namespace_path(root)?
    {
        out.insert(NETNS_ANNOTATION.to_owned(), netns);
    }
    Ok(out)
}

/// The sandbox's own network namespace (CNI's), if its spec names one; a host-network pod
/// has no network namespace entry. An entry without a path (a new, empty namespace) is
/// refused: containerd's CRI names the pod's, and the VM must not get the host's network
/// in its place.
pub fn sandbox_network_namespace(spec: &Value) -> Result<Option<PathBuf>, SpecError> {
    let Some(path) = network_namespace_entry(&Node::root(spec))? else {
        return Ok(None);
    };
    let text = path.string()?;
    if text.is_empty() {
        return Err(path.invalid(
            "the pod's network namespace (containerd's CRI names one for every pod that is \
             not on the host's network)",
        ));
    }
    Ok(Some(PathBuf::from(text)))
}

/// The path of the spec's network namespace, if it names one (oci.go:450-466).
fn network_namespace_path(root: &Node<'_>) -> Result<Option<String>, SpecError> {
    let Some(path) = network_namespace_entry(root)? else {
        return Ok(None);
    };
    let path = path.string()?;
    Ok((!path.is_empty()).then_some(path))
}

/// The `path` of the spec's network namespace entry, if it has one.
fn network_namespace_entry<'a>(root: &Node<'a>) -> Result<Option<Node<'a>>, SpecError> {
    for ns in root.get("linux").get("namespaces").array()? {
        if ns.get("type").string()? == "network" {
            return Ok(Some(ns.get("path")));
        }
    }
    Ok(None)
}

/// The image the guest pulls (ka.go:1935-1966): `pause` for the sandbox (the agent uses
/// its own pause bundle), else the CRI's image name.
fn image_source(
    annotations: &BTreeMap<String, String>,
    kind: ContainerKind,
) -> Result<String, SpecError> {
    if kind == ContainerKind::Sandbox {
        return Ok(PAUSE_IMAGE_SOURCE.to_owned());
    }
    [CRI_IMAGE_NAME, CRIO_IMAGE_NAME]
        .iter()
        .filter_map(|k| annotations.get(*k))
        .find(|v| !v.is_empty())
        .cloned()
        .ok_or_else(|| SpecError::MissingField {
            field: format!("annotations.{CRI_IMAGE_NAME}"),
            why: "the guest pulls the container's image by this name, and containerd's CRI \
                  always sets it",
        })
}

/// The `image_guest_pull` storage of the container's root (ka.go:1968-1999): the
/// annotations as metadata, in `encoding/json`'s form.
fn guest_pull_storage(
    annotations: &BTreeMap<String, String>,
    image: String,
    root_path: &str,
) -> Storage {
    let mut s = Storage::new();
    s.driver = "image_guest_pull".to_owned();
    s.driver_options = vec![format!(
        "image_guest_pull={}",
        go_metadata_json(annotations)
    )];
    s.source = image;
    s.fstype = "overlay".to_owned();
    s.mount_point = root_path.to_owned();
    s
}

/// `json.Marshal(ImagePullVolume{Metadata: m})`: `{"metadata":{…}}` with keys sorted and
/// Go's HTML-safe escaping (types/virtual_volume.go:49-52).
fn go_metadata_json(metadata: &BTreeMap<String, String>) -> String {
    let mut out = String::from("{\"metadata\":{");
    for (i, (k, v)) in metadata.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        contrast_go_json::write_go_string(&mut out, k);
        out.push(':');
        contrast_go_json::write_go_string(&mut out, v);
    }
    out.push_str("}}");
    out
}

// ---------------------------------------------------------------------------------------
// The runtime's changes to the converted spec.

/// Removes the `pid` namespace and says whether it named a path, i.e. the container
/// joins the sandbox's (`handlePidNamespace`, ka.go:2168-2192).
fn remove_pid_namespace(spec: &mut oci::Spec) -> bool {
    let Some(linux) = spec.Linux.as_mut() else {
        return false;
    };
    match linux.Namespaces.iter().position(|ns| ns.Type == "pid") {
        Some(i) => !linux.Namespaces.remove(i).Path.is_empty(),
        None => false,
    }
}

/// `constrainGRPCSpec` (ka.go:1054-1146) with our platforms' settings: no hooks, no
/// seccomp (`disable_guest_seccomp`), no SELinux labels (`disable_guest_selinux`), the
/// resource controls the VM replaces cleared, and only namespaces the guest creates.
fn constrain(spec: &mut oci::Spec, root: &Node<'_>) -> Result<(), SpecError> {
    spec.Hooks = MessageField::none();
    let process = spec.Process.mut_or_insert_default();
    let clear_mount_label = !process.SelinuxLabel.is_empty();
    process.SelinuxLabel.clear();
    // The runtime dereferences linux and linux.resources (ka.go:1063,1099): containerd
    // always writes both.
    let linux = spec.Linux.as_mut().ok_or_else(|| SpecError::MissingField {
        field: root.get("linux").path,
        why: "the Kata runtime requires it, and containerd always writes it",
    })?;
    linux.Seccomp = MessageField::none();
    if clear_mount_label {
        // Only together with a process label (ka.go:1067-1096).
        linux.MountLabel.clear();
    }
    let resources = linux
        .Resources
        .as_mut()
        .ok_or_else(|| SpecError::MissingField {
            field: root.get("linux").get("resources").path,
            why: "the Kata runtime requires it, and containerd always writes it",
        })?;
    resources.Devices.clear();
    resources.Pids = MessageField::none();
    resources.BlockIO = MessageField::none();
    resources.Network = MessageField::none();
    if let Some(cpu) = resources.CPU.as_mut() {
        // Host CPU and NUMA node numbers mean nothing in a guest with one node.
        cpu.Cpus.clear();
        cpu.Mems.clear();
    }
    // The guest shares the VM's network and cgroup namespaces and has no time namespace;
    // no host namespace path means anything in the guest (ka.go:1113-1129).
    linux
        .Namespaces
        .retain(|ns| !matches!(ns.Type.as_str(), "cgroup" | "network" | "time"));
    for ns in &mut linux.Namespaces {
        ns.Path.clear();
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// ExecProcess (containerd-shim-v2/exec.go:72-119, ka.go:510-601).

/// The ExecProcess request for containerd's exec process: only terminal, user, args,
/// environment and working directory are sent (`cmdToKataProcess`, ka.go:561-571); no
/// capabilities (the agent then gives the exec the container's), no NoNewPrivileges, no
/// labels or limits.
///
/// `exec_id`: the Kata runtime sends a fresh random UUID (ka.go:600) and keeps its own
/// map from containerd's exec ID. The policy does not look at `exec_id`, so either passes
/// it; a fresh random ID is the safer choice for the agent, where exec IDs share one
/// namespace with the container's own process (its exec ID is the container ID), which a
/// client-chosen exec ID could collide with.
pub fn exec_request(
    process: &Value,
    container_id: &str,
    exec_id: &str,
) -> Result<ExecProcessRequest, SpecError> {
    let node = Node::root(process);
    let user = node.get("user");
    let mut p = oci::Process::new();
    p.Terminal = node.get("terminal").bool()?;
    let u = p.User.mut_or_insert_default();
    u.UID = user.get("uid").u32()?;
    u.GID = user.get("gid").u32()?;
    u.AdditionalGids = user.get("additionalGids").u32s()?;
    p.Args = node.get("args").strings()?;
    // Split on the first '=' and joined again (exec.go:53-69, ka.go:576-585): an entry
    // without '=' gets one.
    p.Env = node
        .get("env")
        .strings()?
        .into_iter()
        .map(|e| if e.contains('=') { e } else { format!("{e}=") })
        .collect();
    p.Cwd = node.get("cwd").string()?;
    let mut req = ExecProcessRequest::new();
    req.container_id = container_id.to_owned();
    req.exec_id = exec_id.to_owned();
    req.process = MessageField::some(p);
    Ok(req)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const TABLE: &str = "\
tmpfs /run tmpfs rw,nosuid,nodev,size=1g 0 0
tmpfs /var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/scratch tmpfs rw,relatime 0 0
none /var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/huge hugetlbfs rw,pagesize=2M 0 0
overlay /var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/scratch overlay rw 0 0
";

    #[test]
    fn an_emptydir_is_recognised_by_its_parent_directory() {
        assert!(is_empty_dir(
            "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/a"
        ));
        assert!(!is_empty_dir(
            "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir"
        ));
        assert!(!is_empty_dir(
            "/var/lib/kubelet/pods/u/volumes/kubernetes.io~configmap/a"
        ));
        assert!(!is_empty_dir("kubernetes.io~empty-dir"));
    }

    #[test]
    fn the_first_mount_table_entry_decides_the_file_system() {
        let dir = "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir";
        assert_eq!(
            mounted_fs_type(TABLE, &format!("{dir}/scratch")),
            Some("tmpfs")
        );
        assert_eq!(
            mounted_fs_type(TABLE, &format!("{dir}/huge")),
            Some("hugetlbfs")
        );
        assert_eq!(mounted_fs_type(TABLE, &format!("{dir}/disk")), None);
    }

    #[test]
    fn a_hugepage_emptydir_is_refused_naming_the_mount() {
        let source = "/var/lib/kubelet/pods/u/volumes/kubernetes.io~empty-dir/huge";
        let spec = serde_json::json!({"mounts": [
            {"destination": "/huge", "type": "bind", "source": source, "options": ["rbind"]},
        ]});
        let root = Node::root(&spec);
        let node = root.get("mounts").array().unwrap().remove(0);
        let mut mount = convert_mount(&node).unwrap();
        let err = empty_dir_storage(&node, &mut mount, TABLE, "s").unwrap_err();
        assert!(
            matches!(&err, SpecError::Unsupported { field, .. } if field == "mounts[0].source"),
            "{err}"
        );
    }
}
