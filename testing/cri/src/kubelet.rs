//! The CRI requests' configurations as the kubelet fills them for a host-network pod
//! (what containerd turns into the OCI specs a runtime sees): the namespaces, and for each
//! container the masked and read-only paths kubelet always sends for an unprivileged one.

use std::collections::HashMap;
use std::path::Path;

use crate::runtime::{
    ContainerConfig, ContainerMetadata, ImageSpec, LinuxContainerConfig,
    LinuxContainerSecurityContext, LinuxPodSandboxConfig, LinuxSandboxSecurityContext,
    NamespaceMode, NamespaceOption, PodSandboxConfig, PodSandboxMetadata,
};

/// kubelet's `DefaultMaskedPaths` (pkg/securitycontext).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// kubelet's `DefaultReadonlyPaths` (pkg/securitycontext).
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The namespaces kubelet asks for in a host-network pod that does not share its PID
/// namespace: the node's network, a PID namespace per container, the pod's IPC.
pub fn host_network_namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Node.into(),
        pid: NamespaceMode::Container.into(),
        ipc: NamespaceMode::Pod.into(),
        ..Default::default()
    }
}

/// The namespaces kubelet asks for in a pod on the pod network: the pod's own network
/// (CNI's), a PID namespace per container, the pod's IPC.
pub fn pod_network_namespaces() -> NamespaceOption {
    NamespaceOption {
        network: NamespaceMode::Pod.into(),
        ..host_network_namespaces()
    }
}

/// Puts a pod of [`pod_sandbox_config`] on the pod network, with its name as its hostname
/// (as kubelet does for a pod that is not on the host's network).
pub fn on_pod_network(config: &mut PodSandboxConfig) {
    config.hostname = config
        .metadata
        .as_ref()
        .map(|m| m.name.clone())
        .unwrap_or_default();
    if let Some(context) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        context.namespace_options = Some(pod_network_namespaces());
    }
}

/// Puts a container of [`container_config`] into a pod on the pod network.
pub fn container_on_pod_network(config: &mut ContainerConfig) {
    if let Some(context) = config
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
    {
        context.namespace_options = Some(pod_network_namespaces());
    }
}

/// A host-network pod `namespace/name` with its `uid`, its logs under `log_directory`,
/// and the pod's `annotations`.
pub fn pod_sandbox_config(
    name: &str,
    namespace: &str,
    uid: &str,
    log_directory: &Path,
    annotations: HashMap<String, String>,
) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.to_owned(),
            uid: uid.to_owned(),
            namespace: namespace.to_owned(),
            attempt: 0,
        }),
        log_directory: log_directory.to_string_lossy().into_owned(),
        annotations,
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(host_network_namespaces()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Container `name` of a host-network pod, running `command` (the image's entrypoint when
/// empty) of `image`, logging to `<name>.log` in the pod's log directory.
pub fn container_config(name: &str, image: &str, command: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        command: command.iter().map(|arg| (*arg).to_owned()).collect(),
        log_path: format!("{name}.log"),
        linux: Some(LinuxContainerConfig {
            security_context: Some(LinuxContainerSecurityContext {
                namespace_options: Some(host_network_namespaces()),
                masked_paths: MASKED_PATHS.map(str::to_owned).to_vec(),
                readonly_paths: READONLY_PATHS.map(str::to_owned).to_vec(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}
