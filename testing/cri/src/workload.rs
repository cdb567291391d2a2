//! A Kubernetes pod spec run through the CRI as the kubelet runs it: the sandbox with the
//! pod's annotations, its emptyDir volumes in the pod's directory, the init containers in
//! order (each to completion, a native sidecar, `restartPolicy: Always`, until its startup
//! probe passes), then the containers. What the kubelet would fill in that the pod spec
//! does not say (masked paths, namespaces, the managed `/etc/hosts`) is filled in as the
//! kubelet fills it.
//!
//! A node without a cluster has no cluster DNS: the names a pod dials (Services) are
//! given as host entries in the pod's managed `/etc/hosts`, the file kubelet writes for
//! every pod on the pod network (and puts HostAliases into).
//!
//! Startup probes run as the kubelet's prober runs them: exec through the CRI, HTTP GET
//! from the node to the pod's address. A sidecar's gates the next init container; the
//! containers' are tried once all containers started (a caller waits for the pod to have
//! started). Readiness and liveness probes are not run.
//!
//! Not modelled, and refused with the field's name when a pod uses it: volumes other than
//! emptyDir, env from Secrets or ConfigMaps, TCP and gRPC startup probes. Not added: the
//! service account token volume, `/dev/termination-log`, and the Service environment
//! variables.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::kubelet::{
    MASKED_PATHS, READONLY_PATHS, host_network_namespaces, pod_network_namespaces,
};
use crate::runtime::{
    Capability, ContainerConfig, ContainerMetadata, ContainerState, ContainerStatusRequest,
    CreateContainerRequest, ExecSyncRequest, ImageSpec, KeyValue, LinuxContainerConfig,
    LinuxContainerResources, LinuxContainerSecurityContext, LinuxPodSandboxConfig,
    LinuxSandboxSecurityContext, Mount, PodSandboxConfig, PodSandboxMetadata,
    PodSandboxStatusRequest, RunPodSandboxRequest, StartContainerRequest,
};
use crate::{Cri, CriError};

/// A pod spec the harness cannot run, naming the field.
#[derive(Debug, thiserror::Error)]
#[error("pod {pod}: {field}: {problem}")]
pub struct PodSpecError {
    /// The pod's name.
    pub pod: String,
    /// The field, as a path in the pod spec.
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

/// A startup probe: what it checks, and how often and how many times to try it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// What it checks.
    pub action: ProbeAction,
    /// Before the first try.
    pub initial_delay: Duration,
    /// Between tries.
    pub period: Duration,
    /// Tries before the container counts as failed.
    pub failure_threshold: u32,
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeAction {
    /// A command in the container (ExecSync) that exits 0.
    Exec(Vec<String>),
    /// An HTTP GET from the node to the pod's `port` at `path` that answers 2xx or 3xx.
    HttpGet {
        /// The path.
        path: String,
        /// The port.
        port: u16,
    },
}

/// A container of the pod, as the kubelet creates it.
#[derive(Debug, Clone)]
pub struct PlannedContainer {
    /// Its CRI configuration (without the managed `/etc/hosts`, which comes at start).
    pub config: ContainerConfig,
    /// An init container that keeps running (`restartPolicy: Always`).
    pub sidecar: bool,
    /// Its startup probe.
    pub startup_probe: Option<Probe>,
}

impl PlannedContainer {
    /// The container's name.
    pub fn name(&self) -> &str {
        self.config
            .metadata
            .as_ref()
            .map_or("", |m| m.name.as_str())
    }
}

/// A pod as the kubelet runs it.
#[derive(Debug, Clone)]
pub struct PodPlan {
    /// The pod's name (a controller's pod name for a Deployment or StatefulSet).
    pub name: String,
    /// Its UID.
    pub uid: String,
    /// RunPodSandbox's configuration.
    pub sandbox: PodSandboxConfig,
    /// Its emptyDir volumes: name and whether memory-backed.
    pub empty_dirs: Vec<(String, bool)>,
    /// The init containers, in order.
    pub init_containers: Vec<PlannedContainer>,
    /// The containers.
    pub containers: Vec<PlannedContainer>,
    /// On the host's network (no managed `/etc/hosts`).
    pub host_network: bool,
    /// The controller that owns the pod: its kind and name (a Deployment's pods belong to
    /// its ReplicaSet).
    pub controller: Option<(String, String)>,
    /// The pod's labels (the template's).
    pub labels: HashMap<String, String>,
}

/// The pod `name` (a controller's, or a bare Pod's) of a workload of `kind` with the pod
/// template `template` (`metadata` and `spec`), in `namespace`; kubelet's directory of
/// the pod is `<kubelet_root>/pods/<uid>` and its logs go under it.
pub fn plan_pod(
    kind: &str,
    workload: &str,
    namespace: &str,
    template: &Value,
    kubelet_root: &Path,
) -> Result<PodPlan, PodSpecError> {
    // A ReplicaSet's pods: its name (the Deployment's and the pod-template hash), then
    // five characters.
    let (name, controller) = match kind {
        "StatefulSet" => (
            format!("{workload}-0"),
            Some(("StatefulSet".to_owned(), workload.to_owned())),
        ),
        "Pod" => (workload.to_owned(), None),
        _ => (
            format!("{workload}-7c9d8b6f5d-x2k4p"),
            Some(("ReplicaSet".to_owned(), format!("{workload}-7c9d8b6f5d"))),
        ),
    };
    let uid = pod_uid(namespace, &name);
    let error = |field: &str, problem: &str| PodSpecError {
        pod: name.clone(),
        field: field.to_owned(),
        problem: problem.to_owned(),
    };
    let spec = &template["spec"];
    let pod_dir = kubelet_root.join("pods").join(&uid);
    let host_network = spec["hostNetwork"].as_bool().unwrap_or(false);

    let mut empty_dirs = Vec::new();
    for (index, volume) in array(&spec["volumes"]).iter().enumerate() {
        let volume_name = volume["name"].as_str().unwrap_or_default().to_owned();
        let Some(empty_dir) = volume.get("emptyDir") else {
            return Err(error(
                &format!("spec.volumes[{index}]"),
                "only emptyDir volumes are modelled",
            ));
        };
        empty_dirs.push((volume_name, empty_dir["medium"] == "Memory"));
    }

    let mut annotations = HashMap::new();
    if let Some(map) = template["metadata"]["annotations"].as_object() {
        for (key, value) in map {
            annotations.insert(key.clone(), value.as_str().unwrap_or_default().to_owned());
        }
    }
    annotations.insert("kubernetes.io/config.source".to_owned(), "api".to_owned());
    let mut pod_labels = HashMap::new();
    if let Some(map) = template["metadata"]["labels"].as_object() {
        for (key, value) in map {
            pod_labels.insert(key.clone(), value.as_str().unwrap_or_default().to_owned());
        }
    }
    let mut labels = pod_labels.clone();
    labels.extend([
        ("io.kubernetes.pod.name".to_owned(), name.clone()),
        (
            "io.kubernetes.pod.namespace".to_owned(),
            namespace.to_owned(),
        ),
        ("io.kubernetes.pod.uid".to_owned(), uid.clone()),
    ]);
    let namespaces = if host_network {
        host_network_namespaces()
    } else {
        pod_network_namespaces()
    };
    let privileged = ["initContainers", "containers"].iter().any(|list| {
        array(&spec[*list])
            .iter()
            .any(|c| c["securityContext"]["privileged"] == true)
    });
    let sandbox = PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.clone(),
            uid: uid.clone(),
            namespace: namespace.to_owned(),
            attempt: 0,
        }),
        hostname: if host_network {
            String::new()
        } else {
            name.clone()
        },
        log_directory: pod_dir.join("logs").to_string_lossy().into_owned(),
        labels,
        annotations,
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(namespaces),
                privileged,
                ..Default::default()
            }),
            // Pod-level resources (kubelet ≥ 1.34): the sandbox's, which containerd ≥ 1.7
            // hands the runtime as its sizing annotations.
            resources: match memory_limit(&spec["resources"]["limits"]["memory"]) {
                None => None,
                Some(limit) => Some(LinuxContainerResources {
                    memory_limit_in_bytes: limit
                        .map_err(|problem| error("spec.resources.limits.memory", &problem))?,
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };

    let mut plan = PodPlan {
        name: name.clone(),
        uid,
        sandbox,
        empty_dirs,
        init_containers: Vec::new(),
        containers: Vec::new(),
        host_network,
        controller,
        labels: pod_labels,
    };
    for list in ["initContainers", "containers"] {
        for (index, container) in array(&spec[list]).iter().enumerate() {
            let field = format!("spec.{list}[{index}]");
            let planned = plan_container(&plan, container, &pod_dir, &field)
                .map_err(|(field, problem)| error(&field, &problem))?;
            if list == "initContainers" {
                plan.init_containers.push(planned);
            } else {
                plan.containers.push(planned);
            }
        }
    }
    Ok(plan)
}

/// The pod as the API server holds it once the kubelet reported it: metadata with the
/// controller's owner reference, and the status with its address and readiness.
pub fn api_pod(plan: &PodPlan, ip: &str, ready: bool) -> Value {
    let namespace = plan
        .sandbox
        .metadata
        .as_ref()
        .map_or("default", |m| m.namespace.as_str());
    let owners: Vec<Value> = plan
        .controller
        .iter()
        .map(|(kind, name)| {
            serde_json::json!({
                "apiVersion": "apps/v1",
                "kind": kind,
                "name": name,
                "uid": pod_uid(namespace, &format!("{kind}/{name}")),
                "controller": true,
                "blockOwnerDeletion": true,
            })
        })
        .collect();
    serde_json::json!({
        "metadata": {
            "name": plan.name,
            "namespace": namespace,
            "uid": plan.uid,
            "labels": plan.labels,
            "ownerReferences": owners,
        },
        "status": {
            "phase": "Running",
            "podIP": ip,
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
        },
    })
}

/// A pod's UID: stable for a pod name, shaped like the API server's.
fn pod_uid(namespace: &str, name: &str) -> String {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(format!("{namespace}/{name}")));
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

fn array(value: &Value) -> &[Value] {
    value.as_array().map_or(&[], Vec::as_slice)
}

fn strings(value: &Value) -> Vec<String> {
    array(value)
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_owned())
        .collect()
}

fn plan_container(
    plan: &PodPlan,
    container: &Value,
    pod_dir: &Path,
    field: &str,
) -> Result<PlannedContainer, (String, String)> {
    let name = container["name"].as_str().unwrap_or_default().to_owned();
    let mut envs = Vec::new();
    for (index, env) in array(&container["env"]).iter().enumerate() {
        let key = env["name"].as_str().unwrap_or_default().to_owned();
        let value = match (&env["value"], env.get("valueFrom")) {
            (Value::String(value), _) => value.clone(),
            (_, Some(from)) => downward_api(plan, from).ok_or_else(|| {
                (
                    format!("{field}.env[{index}].valueFrom"),
                    "only metadata.name, metadata.namespace and metadata.uid are modelled"
                        .to_owned(),
                )
            })?,
            _ => String::new(),
        };
        envs.push(KeyValue {
            key,
            value: value.into_bytes(),
        });
    }
    let mut mounts = Vec::new();
    for (index, mount) in array(&container["volumeMounts"]).iter().enumerate() {
        let volume = mount["name"].as_str().unwrap_or_default();
        if !plan.empty_dirs.iter().any(|(name, _)| name == volume) {
            return Err((
                format!("{field}.volumeMounts[{index}].name"),
                format!("{volume:?} is no emptyDir volume of the pod"),
            ));
        }
        mounts.push(Mount {
            container_path: mount["mountPath"].as_str().unwrap_or_default().to_owned(),
            host_path: empty_dir_path(pod_dir, volume)
                .to_string_lossy()
                .into_owned(),
            readonly: mount["readOnly"] == true,
            ..Default::default()
        });
    }
    let security = &container["securityContext"];
    let privileged = security["privileged"] == true;
    let mut resources = LinuxContainerResources::default();
    if let Some(limit) = memory_limit(&container["resources"]["limits"]["memory"]) {
        resources.memory_limit_in_bytes =
            limit.map_err(|problem| (format!("{field}.resources.limits.memory"), problem))?;
    }
    let startup_probe = match container.get("startupProbe") {
        None => None,
        Some(probe) => Some(
            startup_probe(container, probe)
                .map_err(|problem| (format!("{field}.startupProbe"), problem.to_owned()))?,
        ),
    };
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.clone(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: container["image"].as_str().unwrap_or_default().to_owned(),
            ..Default::default()
        }),
        command: strings(&container["command"]),
        args: strings(&container["args"]),
        working_dir: container["workingDir"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        envs,
        mounts,
        labels: HashMap::from([
            ("io.kubernetes.container.name".to_owned(), name.clone()),
            ("io.kubernetes.pod.name".to_owned(), plan.name.clone()),
            ("io.kubernetes.pod.uid".to_owned(), plan.uid.clone()),
        ]),
        log_path: format!("{name}/0.log"),
        linux: Some(LinuxContainerConfig {
            resources: Some(resources),
            security_context: Some(LinuxContainerSecurityContext {
                capabilities: Some(Capability {
                    add_capabilities: strings(&security["capabilities"]["add"]),
                    drop_capabilities: strings(&security["capabilities"]["drop"]),
                    ..Default::default()
                }),
                privileged,
                namespace_options: Some(if plan.host_network {
                    host_network_namespaces()
                } else {
                    pod_network_namespaces()
                }),
                // A privileged container gets neither (kubelet's securitycontext).
                masked_paths: if privileged {
                    Vec::new()
                } else {
                    MASKED_PATHS.map(str::to_owned).to_vec()
                },
                readonly_paths: if privileged {
                    Vec::new()
                } else {
                    READONLY_PATHS.map(str::to_owned).to_vec()
                },
                ..Default::default()
            }),
        }),
        ..Default::default()
    };
    Ok(PlannedContainer {
        config,
        sidecar: container["restartPolicy"] == "Always",
        startup_probe,
    })
}

/// A container's startup probe, with the kubelet's defaults (period 10 s, threshold 3).
fn startup_probe(container: &Value, probe: &Value) -> Result<Probe, &'static str> {
    let action = if let Some(command) = probe["exec"].get("command") {
        ProbeAction::Exec(strings(command))
    } else if let Some(get) = probe.get("httpGet") {
        let port = match &get["port"] {
            Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
            // A named port: the container's port of that name.
            Value::String(name) => array(&container["ports"])
                .iter()
                .find(|p| p["name"] == name.as_str())
                .and_then(|p| p["containerPort"].as_u64())
                .and_then(|n| u16::try_from(n).ok()),
            _ => None,
        }
        .ok_or("httpGet.port is neither a port number nor the name of a container port")?;
        ProbeAction::HttpGet {
            path: get["path"].as_str().unwrap_or("/").to_owned(),
            port,
        }
    } else {
        return Err("only exec and httpGet probes are modelled");
    };
    Ok(Probe {
        action,
        initial_delay: Duration::from_secs(probe["initialDelaySeconds"].as_u64().unwrap_or(0)),
        period: Duration::from_secs(probe["periodSeconds"].as_u64().unwrap_or(10)),
        failure_threshold: probe["failureThreshold"]
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(3),
    })
}

/// The downward API's pod fields the harness knows.
fn downward_api(plan: &PodPlan, from: &Value) -> Option<String> {
    let namespace = plan.sandbox.metadata.as_ref()?.namespace.clone();
    match from["fieldRef"]["fieldPath"].as_str()? {
        "metadata.name" => Some(plan.name.clone()),
        "metadata.namespace" => Some(namespace),
        "metadata.uid" => Some(plan.uid.clone()),
        _ => None,
    }
}

/// A `resources.limits.memory` in bytes (a quantity, which YAML may have read as a
/// number); `None` when there is none.
fn memory_limit(value: &Value) -> Option<Result<i64, String>> {
    let text = match value {
        Value::Null => return None,
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    Some(
        contrast_kube_resources::memory::quantity_bytes(&text)
            .and_then(|bytes| i64::try_from(bytes).ok())
            .ok_or_else(|| format!("{text:?} is not a quantity of bytes")),
    )
}

/// kubelet's directory of the pod's emptyDir `volume`.
pub fn empty_dir_path(pod_dir: &Path, volume: &str) -> PathBuf {
    pod_dir.join("volumes/kubernetes.io~empty-dir").join(volume)
}

/// kubelet's `/etc/hosts` of a pod at `ip` named `hostname`, with `entries` (address,
/// names) where HostAliases go.
pub fn managed_etc_hosts(ip: &str, hostname: &str, entries: &[(String, Vec<String>)]) -> String {
    let mut text = String::from(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n",
    );
    text.push_str(&format!("{ip}\t{hostname}\n"));
    if !entries.is_empty() {
        text.push_str("\n# Entries added by HostAliases.\n");
        for (address, names) in entries {
            text.push_str(&format!("{address}\t{}\n", names.join("\t")));
        }
    }
    text
}

/// The kubelet's clean-up of a removed pod: its memory-backed volumes unmounted, its
/// directory removed. Quiet: after a failed start, some of it may not exist.
pub fn remove_pod_dir(kubelet_root: &Path, plan: &PodPlan) {
    let pod_dir = kubelet_root.join("pods").join(&plan.uid);
    for (volume, memory) in &plan.empty_dirs {
        if *memory {
            let _ = std::process::Command::new("umount")
                .arg(empty_dir_path(&pod_dir, volume))
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    let _ = std::fs::remove_dir_all(pod_dir);
}

/// A pod whose sandbox runs: its ID and address.
#[derive(Debug, Clone)]
pub struct RunningSandbox {
    /// The sandbox ID.
    pub id: String,
    /// The pod's address (CNI's), empty on the host's network.
    pub ip: String,
}

/// The kubelet's first half of a pod: its volumes made (a memory-backed emptyDir is a
/// tmpfs on its directory) and RunPodSandbox with `handler`.
pub async fn run_sandbox(
    cri: &mut Cri,
    plan: &PodPlan,
    kubelet_root: &Path,
    handler: &str,
) -> Result<RunningSandbox, CriError> {
    let pod_dir = kubelet_root.join("pods").join(&plan.uid);
    for (volume, memory) in &plan.empty_dirs {
        let dir = empty_dir_path(&pod_dir, volume);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        if *memory {
            let mut mount = std::process::Command::new("mount");
            mount.args(["-t", "tmpfs", "tmpfs"]).arg(&dir);
            crate::images::run(mount)?;
        }
    }
    let logs = pod_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(io("create", &logs))?;
    let id = cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(plan.sandbox.clone()),
            runtime_handler: handler.to_owned(),
        })
        .await
        .map_err(|status| call("RunPodSandbox", status))?
        .into_inner()
        .pod_sandbox_id;
    let status = cri
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: id.clone(),
            verbose: false,
        })
        .await
        .map_err(|status| call("PodSandboxStatus", status))?
        .into_inner();
    let ip = status
        .status
        .and_then(|s| s.network)
        .map(|n| n.ip)
        .unwrap_or_default();
    Ok(RunningSandbox { id, ip })
}

/// The kubelet's second half: the managed `/etc/hosts` with `hosts` (on the pod network),
/// the init containers in order — each to a zero exit, a sidecar until its startup probe
/// passes — then the containers. Returns the containers' IDs by name.
pub async fn start_containers(
    cri: &mut Cri,
    plan: &PodPlan,
    sandbox: &RunningSandbox,
    kubelet_root: &Path,
    hosts: &[(String, Vec<String>)],
) -> Result<HashMap<String, String>, CriError> {
    let pod_dir = kubelet_root.join("pods").join(&plan.uid);
    let etc_hosts = pod_dir.join("etc-hosts");
    if !plan.host_network {
        std::fs::write(
            &etc_hosts,
            managed_etc_hosts(&sandbox.ip, &plan.sandbox.hostname, hosts),
        )
        .map_err(io("write", &etc_hosts))?;
    }
    let ip = if sandbox.ip.is_empty() {
        "127.0.0.1"
    } else {
        sandbox.ip.as_str()
    };
    let mut ids = HashMap::new();
    // The containers' startup probes, tried once all of them started (the kubelet starts
    // them without waiting for each other; a caller waits for the pod to have started).
    let mut started_later = Vec::new();
    for (container, init) in plan
        .init_containers
        .iter()
        .map(|c| (c, true))
        .chain(plan.containers.iter().map(|c| (c, false)))
    {
        let mut config = container.config.clone();
        if !plan.host_network {
            config.mounts.push(Mount {
                container_path: "/etc/hosts".to_owned(),
                host_path: etc_hosts.to_string_lossy().into_owned(),
                ..Default::default()
            });
        }
        let created = cri
            .runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox.id.clone(),
                config: Some(config),
                sandbox_config: Some(plan.sandbox.clone()),
            })
            .await
            .map_err(|status| call("CreateContainer", status))?
            .into_inner()
            .container_id;
        cri.runtime
            .start_container(StartContainerRequest {
                container_id: created.clone(),
            })
            .await
            .map_err(|status| call("StartContainer", status))?;
        ids.insert(container.name().to_owned(), created.clone());
        if !init {
            started_later.push((container, created));
            continue;
        }
        // An init container: a sidecar until its startup probe passes, any other to its
        // exit; then the next one.
        let done = match (&container.startup_probe, container.sidecar) {
            (_, false) => wait_for_success(cri, &created, container.name()).await,
            (Some(probe), true) => wait_for_probe(cri, &created, ip, probe, container.name()).await,
            (None, true) => Ok(()),
        };
        with_log(plan, container, done)?;
    }
    for (container, id) in started_later {
        if let Some(probe) = &container.startup_probe {
            let done = wait_for_probe(cri, &id, ip, probe, container.name()).await;
            with_log(plan, container, done)?;
        }
    }
    Ok(ids)
}

/// `done`, with the container's log when it is a failure of the container.
fn with_log(
    plan: &PodPlan,
    container: &PlannedContainer,
    done: Result<(), CriError>,
) -> Result<(), CriError> {
    match done {
        Err(CriError::Pod(why)) => {
            let log = Path::new(&plan.sandbox.log_directory).join(&container.config.log_path);
            Err(CriError::Pod(format!(
                "{why}; its log ({}) ends with:\n{}",
                log.display(),
                crate::containerd::log_tail(&log, 20)
            )))
        }
        other => other,
    }
}

/// Until an init container has exited 0; its exit code otherwise.
async fn wait_for_success(cri: &mut Cri, id: &str, name: &str) -> Result<(), CriError> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let status = cri
            .runtime
            .container_status(ContainerStatusRequest {
                container_id: id.to_owned(),
                verbose: false,
            })
            .await
            .map_err(|status| call("ContainerStatus", status))?
            .into_inner()
            .status
            .unwrap_or_default();
        if status.state == ContainerState::ContainerExited as i32 {
            if status.exit_code == 0 {
                return Ok(());
            }
            return Err(failed(format!(
                "the init container {name} exited with {} ({} {})",
                status.exit_code, status.reason, status.message
            )));
        }
        if Instant::now() > deadline {
            return Err(failed(format!("the init container {name} still runs")));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Tries `probe` on container `id` of the pod at `pod_ip` until it passes, as kubelet's
/// prober does.
async fn wait_for_probe(
    cri: &mut Cri,
    id: &str,
    pod_ip: &str,
    probe: &Probe,
    name: &str,
) -> Result<(), CriError> {
    tokio::time::sleep(probe.initial_delay).await;
    let mut last = String::new();
    for _ in 0..probe.failure_threshold.max(1) {
        match &probe.action {
            ProbeAction::Exec(command) => match cri
                .runtime
                .exec_sync(ExecSyncRequest {
                    container_id: id.to_owned(),
                    cmd: command.clone(),
                    timeout: 60,
                })
                .await
            {
                Ok(answer) if answer.get_ref().exit_code == 0 => return Ok(()),
                Ok(answer) => last = format!("exit code {}", answer.get_ref().exit_code),
                Err(status) => last = status.message().to_owned(),
            },
            ProbeAction::HttpGet { path, port } => match http_status(pod_ip, *port, path).await {
                Ok(status) if (200..400).contains(&status) => return Ok(()),
                Ok(status) => last = format!("HTTP {status}"),
                Err(e) => last = e.to_string(),
            },
        }
        tokio::time::sleep(probe.period).await;
    }
    Err(failed(format!(
        "the startup probe of {name} did not pass ({last})"
    )))
}

/// The status of an HTTP/1.1 GET of `path` at `ip:port` (kubelet's HTTP prober: one
/// second to answer).
async fn http_status(ip: &str, port: u16, path: &str) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let get = async {
        let mut stream = tokio::net::TcpStream::connect((ip, port)).await?;
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {ip}:{port}\r\nUser-Agent: kube-probe/1.31\r\n\
             Connection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0; 12];
        stream.read_exact(&mut head).await?;
        std::str::from_utf8(&head[9..12])
            .ok()
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| std::io::Error::other("no HTTP status line"))
    };
    tokio::time::timeout(Duration::from_secs(1), get)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in 1 s"))?
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CriError {
    let path = path.to_owned();
    move |source| CriError::Io {
        action,
        path,
        source,
    }
}

fn call(call: &'static str, status: tonic::Status) -> CriError {
    CriError::Call {
        call,
        code: status.code(),
        message: status.message().to_owned(),
        log_tail: String::new(),
    }
}

fn failed(message: String) -> CriError {
    CriError::Pod(message)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_deployment_pod_as_the_kubelet_runs_it() {
        let template = serde_json::json!({
            "metadata": {"labels": {"app": "web"}, "annotations": {"a": "b"}},
            "spec": {
                "initContainers": [{
                    "name": "sidecar", "image": "i", "restartPolicy": "Always",
                    "securityContext": {"privileged": true, "capabilities": {"add": ["NET_ADMIN"]}},
                    "startupProbe": {"exec": {"command": ["test", "-f", "/ready"]}, "periodSeconds": 1, "failureThreshold": 60},
                    "volumeMounts": [{"name": "secrets", "mountPath": "/contrast"}],
                }],
                "containers": [{
                    "name": "web", "image": "w", "args": ["--port", "8080"],
                    "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                    "resources": {"limits": {"memory": "50Mi"}},
                    "ports": [{"name": "probes", "containerPort": 9102}],
                    "startupProbe": {"httpGet": {"path": "/probe/startup", "port": "probes"}},
                }],
                "volumes": [{"name": "secrets", "emptyDir": {"medium": "Memory"}}],
                "resources": {"limits": {"memory": 314572800}},
            },
        });
        let plan = plan_pod("Deployment", "web", "default", &template, Path::new("/k")).unwrap();
        assert!(plan.name.starts_with("web-"), "{}", plan.name);
        assert_eq!(plan.sandbox.hostname, plan.name);
        assert_eq!(plan.sandbox.annotations["a"], "b");
        assert_eq!(plan.empty_dirs, vec![("secrets".to_owned(), true)]);
        let sidecar = &plan.init_containers[0];
        assert!(sidecar.sidecar);
        assert_eq!(
            sidecar.startup_probe.as_ref().unwrap().failure_threshold,
            60
        );
        assert_eq!(
            plan.containers[0].startup_probe.as_ref().unwrap().action,
            ProbeAction::HttpGet {
                path: "/probe/startup".to_owned(),
                port: 9102
            }
        );
        let security = sidecar
            .config
            .linux
            .as_ref()
            .unwrap()
            .security_context
            .as_ref()
            .unwrap();
        assert!(security.privileged && security.masked_paths.is_empty());
        assert_eq!(
            sidecar.config.mounts[0].host_path,
            format!(
                "/k/pods/{}/volumes/kubernetes.io~empty-dir/secrets",
                plan.uid
            )
        );
        let web = &plan.containers[0].config;
        assert_eq!(web.envs[0].value, plan.name.as_bytes());
        assert_eq!(web.args, ["--port", "8080"]);
        assert_eq!(
            web.linux
                .as_ref()
                .unwrap()
                .resources
                .as_ref()
                .unwrap()
                .memory_limit_in_bytes,
            50 << 20
        );
        let linux = plan.sandbox.linux.unwrap();
        assert!(linux.security_context.unwrap().privileged);
        // The pod-level limit is the sandbox's.
        assert_eq!(linux.resources.unwrap().memory_limit_in_bytes, 300 << 20);
    }

    #[test]
    fn what_is_not_modelled_is_refused_by_field() {
        let template = serde_json::json!({"spec": {
            "containers": [{"name": "c", "image": "i"}],
            "volumes": [{"name": "v", "configMap": {"name": "m"}}],
        }});
        let e = plan_pod("Pod", "p", "default", &template, Path::new("/k")).unwrap_err();
        assert_eq!(e.field, "spec.volumes[0]");
        let template = serde_json::json!({"spec": {"containers": [{
            "name": "c", "image": "i", "startupProbe": {"tcpSocket": {"port": 80}},
        }]}});
        let e = plan_pod("Pod", "p", "default", &template, Path::new("/k")).unwrap_err();
        assert_eq!(e.field, "spec.containers[0].startupProbe");
    }
}
