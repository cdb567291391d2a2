//! From the pod spec and image configs to the policy data.
//!
//! Every field of the pod spec is either handled (it changes what the agent must admit),
//! ignored (it does not reach the agent, or only through the host-provided network and
//! files whose content the policy cannot vouch for anyway), or unknown, which is an
//! error: a field we do not know may change what a container runs. The lists below are
//! that classification.

use std::collections::BTreeMap;

use crate::env::{self, EnvContext, EnvList, EnvValue};
use crate::json::{
    Obj, as_obj, check_known, clean_absolute, get_array, get_bool, get_id, get_obj, get_str,
    get_str_list, index, invalid, join, regex_escape, require_str, unsupported,
};
use crate::kata;
use crate::model::{
    BlockStorageRule, ContainerRules, DATA_VERSION, FsGroupRule, MountRule, PauseRules, PodRules,
    PolicyData, StorageRule,
};
use crate::{ImageConfig, PodInput, PolicyError};
use contrast_platforms::kata::{BlockDeviceDriver, EmptyDirMode, ImagePull};

/// PodSpec fields. Handled: `containers`, `initContainers`, `volumes`,
/// `securityContext`, `shareProcessNamespace`, `enableServiceLinks`,
/// `automountServiceAccountToken`, `hostname`, `hostnameOverride`, `subdomain`,
/// `setHostnameAsFQDN`, `hostNetwork`, `serviceAccountName`, `serviceAccount`.
/// `ephemeralContainers` are added through their own subresource after the pod exists;
/// the policy admits none of them. The rest is scheduling, networking, DNS, node
/// placement or resource accounting, none of which reaches the agent in a form the
/// policy checks.
const POD_SPEC_FIELDS: &[&str] = &[
    "activeDeadlineSeconds",
    "affinity",
    "automountServiceAccountToken",
    "containers",
    "dnsConfig",
    "dnsPolicy",
    "enableServiceLinks",
    "ephemeralContainers",
    "hostAliases",
    "hostIPC",
    "hostNetwork",
    "hostPID",
    "hostUsers",
    "hostname",
    "hostnameOverride",
    "imagePullSecrets",
    "initContainers",
    "nodeName",
    "nodeSelector",
    "os",
    "overhead",
    "preemptionPolicy",
    "priority",
    "priorityClassName",
    "readinessGates",
    "resourceClaims",
    "resources",
    "restartPolicy",
    "runtimeClassName",
    "schedulerName",
    "schedulingGates",
    "securityContext",
    "serviceAccount",
    "serviceAccountName",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "subdomain",
    "terminationGracePeriodSeconds",
    "tolerations",
    "topologySpreadConstraints",
    "volumes",
];

/// Container fields. Ignored: `imagePullPolicy` (the guest pulls by digest), `ports`,
/// `resources`, `resizePolicy`, `restartPolicy`, `restartPolicyRules`, `stdin`,
/// `stdinOnce` (the policy denies writing to stdin), `terminationMessagePolicy`.
const CONTAINER_FIELDS: &[&str] = &[
    "args",
    "command",
    "env",
    "envFrom",
    "image",
    "imagePullPolicy",
    "lifecycle",
    "livenessProbe",
    "name",
    "ports",
    "readinessProbe",
    "resizePolicy",
    "resources",
    "restartPolicy",
    "restartPolicyRules",
    "securityContext",
    "startupProbe",
    "stdin",
    "stdinOnce",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "tty",
    "volumeDevices",
    "volumeMounts",
    "workingDir",
];

/// Ignored: AppArmor, SELinux, seccomp and Windows options (the guest kernel's LSM
/// setup is the guest image's, and a missing seccomp filter only loosens what the
/// container's own code may do).
const SECURITY_CONTEXT_FIELDS: &[&str] = &[
    "allowPrivilegeEscalation",
    "appArmorProfile",
    "capabilities",
    "privileged",
    "procMount",
    "readOnlyRootFilesystem",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "seLinuxOptions",
    "seccompProfile",
    "windowsOptions",
];

/// Ignored as above, plus `fsGroupChangePolicy` and `seLinuxChangePolicy` (volume
/// ownership handling on the host; only in the runtime's block-encrypted emptyDir mode
/// does the change policy reach the agent, see `block_empty_dir`) and
/// `supplementalGroupsPolicy` (the policy admits only the declared groups either way).
const POD_SECURITY_CONTEXT_FIELDS: &[&str] = &[
    "appArmorProfile",
    "fsGroup",
    "fsGroupChangePolicy",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "seLinuxChangePolicy",
    "seLinuxOptions",
    "seccompProfile",
    "supplementalGroups",
    "supplementalGroupsPolicy",
    "sysctls",
    "windowsOptions",
];

const CAPABILITIES_FIELDS: &[&str] = &["add", "drop"];
const SYSCTL_FIELDS: &[&str] = &["name", "value"];
/// `mountPropagation` and `recursiveReadOnly` change mount options only.
const VOLUME_MOUNT_FIELDS: &[&str] = &[
    "mountPath",
    "mountPropagation",
    "name",
    "readOnly",
    "recursiveReadOnly",
    "subPath",
    "subPathExpr",
];
const VOLUME_DEVICE_FIELDS: &[&str] = &["devicePath", "name"];
/// Only `exec` reaches the agent; kubelet runs the other probes over the network.
const PROBE_FIELDS: &[&str] = &[
    "exec",
    "failureThreshold",
    "grpc",
    "httpGet",
    "initialDelaySeconds",
    "periodSeconds",
    "successThreshold",
    "tcpSocket",
    "terminationGracePeriodSeconds",
    "timeoutSeconds",
];
const LIFECYCLE_FIELDS: &[&str] = &["postStart", "preStop", "stopSignal"];
const HANDLER_FIELDS: &[&str] = &["exec", "httpGet", "sleep", "tcpSocket"];
const EXEC_FIELDS: &[&str] = &["command"];

/// Volume types a container may mount, and all others Kubernetes has (which may back
/// `volumeDevices` only: their content would come from the host unverified).
const MOUNTABLE_VOLUMES: &[&str] = &[
    "configMap",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];
const OTHER_VOLUMES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "image",
    "iscsi",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];
const EMPTY_DIR_FIELDS: &[&str] = &["medium", "sizeLimit"];

/// Builds the policy data for a pod.
pub(crate) fn resolve(input: &PodInput<'_>) -> Result<PolicyData, PolicyError> {
    let spec = as_obj(input.pod_spec, "spec")?;
    check_known(spec, "spec", POD_SPEC_FIELDS)?;
    if input.name.is_empty() {
        return Err(invalid("metadata.name", "the pod needs a name"));
    }
    // Without a namespace in the resource, any namespace is admitted; "default" is the
    // example the expected requests use.
    let any_namespace = input.namespace.is_empty();
    let namespace = if any_namespace {
        "default"
    } else {
        input.namespace
    };
    if input.runtime.image_pull != ImagePull::InGuest {
        return Err(unsupported(
            "spec.runtimeClassName",
            "on this platform the node's snapshotter hands the guest the image layers \
             (tardev), which contrast's policies do not admit yet: use a platform whose guest \
             pulls images (bare metal with QEMU)",
        ));
    }
    let pod_sc = get_obj(spec, "securityContext", "spec")?;
    let empty = Obj::new();
    let pod_sc = pod_sc.unwrap_or(&empty);
    check_known(pod_sc, "spec.securityContext", POD_SECURITY_CONTEXT_FIELDS)?;

    let (name_regex, name_example) = if input.generate_name {
        (
            env::generated_name_regex(input.name),
            format!("{}x7k2p", input.name),
        )
    } else {
        (env::name_regex(input.name), input.name.to_owned())
    };
    let (hostname_regex, hostname_example) =
        hostname(spec, input.name, (!any_namespace).then_some(namespace))?;
    let host_network = get_bool(spec, "hostNetwork", "spec")?.unwrap_or(false);
    let service_links = get_bool(spec, "enableServiceLinks", "spec")?.unwrap_or(true);
    let (optional_env, optional_env_examples) =
        env::optional_env(service_links, &hostname_regex, &hostname_example);
    let service_account = get_str(spec, "serviceAccountName", "spec")?
        .or(get_str(spec, "serviceAccount", "spec")?)
        .filter(|s| !s.is_empty())
        .unwrap_or("default");

    let mut sysctls: BTreeMap<String, String> = kata::DEFAULT_SYSCTLS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let sysctl_path = "spec.securityContext.sysctls";
    for (i, s) in get_array(pod_sc, "sysctls", "spec.securityContext")?
        .iter()
        .enumerate()
    {
        let path = index(sysctl_path, i);
        let s = as_obj(s, &path)?;
        check_known(s, &path, SYSCTL_FIELDS)?;
        let name = require_str(s, "name", &path)?;
        // YAML writes `value: 1` as a number; the runtime passes its text as the sysctl.
        let value = match s.get("value") {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(v)) => v.clone(),
            Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => v.to_string(),
            Some(_) => {
                return Err(invalid(
                    join(&path, "value"),
                    "must be a string or a number",
                ));
            }
        };
        sysctls.insert(name.to_owned(), value);
    }

    let pod = PodContext {
        input,
        pod_sc,
        volumes: volumes(spec)?,
        env: EnvContext {
            input,
            namespace,
            any_namespace,
            name_regex: &name_regex,
            name_example: &name_example,
            service_account,
            service_links,
        },
        automount_token: get_bool(spec, "automountServiceAccountToken", "spec")?.unwrap_or(true),
    };

    let mut containers = Vec::new();
    for (key, init) in [("initContainers", true), ("containers", false)] {
        let list_path = join("spec", key);
        for (i, c) in get_array(spec, key, "spec")?.iter().enumerate() {
            let path = index(&list_path, i);
            let c = as_obj(c, &path)?;
            containers.push(container(&pod, c, &path, init)?);
        }
    }
    if !containers.iter().any(|c| !c.init) {
        return Err(invalid(
            "spec.containers",
            "a pod needs at least one container",
        ));
    }
    for (i, c) in containers.iter().enumerate() {
        if containers[..i].iter().any(|d| d.name == c.name) {
            return Err(invalid(
                "spec",
                format!("two containers are named {:?}", c.name),
            ));
        }
    }

    Ok(PolicyData {
        version: DATA_VERSION,
        pod: PodRules {
            namespace: if any_namespace {
                String::new()
            } else {
                namespace.to_owned()
            },
            namespace_example: namespace.to_owned(),
            name_regex: name_regex.clone(),
            share_process_namespace: get_bool(spec, "shareProcessNamespace", "spec")?
                .unwrap_or(false),
            device_types: vec![
                input
                    .runtime
                    .block_device_driver
                    .agent_device_type()
                    .to_owned(),
            ],
            guest_hook_path: input.runtime.guest_hook_path.unwrap_or_default().to_owned(),
            optional_env,
            sysctls,
            name_example: name_example.clone(),
            hostname_example,
            optional_env_examples,
        },
        pause: pause_rules(&pod, host_network)?,
        containers,
    })
}

/// The pod's hostname (HOSTNAME, the OCI hostname) as a pattern, and an example.
/// A namespace name (an RFC 1123 label).
const DNS_LABEL: &str = "[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?";

/// `namespace` is `None` when the resource names none (any namespace).
fn hostname(
    spec: &Obj,
    name: &str,
    namespace: Option<&str>,
) -> Result<(String, String), PolicyError> {
    if get_bool(spec, "hostNetwork", "spec")?.unwrap_or(false) {
        // The node's name: any DNS name.
        return Ok((
            "[a-z0-9]([-a-z0-9.]*[a-z0-9])?".to_owned(),
            "node-1".to_owned(),
        ));
    }
    let explicit = get_str(spec, "hostnameOverride", "spec")?
        .or(get_str(spec, "hostname", "spec")?)
        .filter(|h| !h.is_empty());
    let fqdn = get_bool(spec, "setHostnameAsFQDN", "spec")?.unwrap_or(false);
    let subdomain = get_str(spec, "subdomain", "spec")?.filter(|s| !s.is_empty());
    let (mut regex, mut example) = match explicit {
        Some(h) => (regex_escape(h), h.to_owned()),
        None => {
            // The pod's name, cut to 63 characters by kubelet; generated names go on.
            let mut prefix: String = name.chars().take(63).collect();
            while prefix.ends_with(['-', '.']) {
                prefix.pop();
            }
            (format!("{}[-a-z0-9.]*", regex_escape(&prefix)), prefix)
        }
    };
    if fqdn && let Some(sub) = subdomain {
        regex = format!(
            r"{regex}(\.{}\.{}\.svc\.[-a-z0-9.]+)?",
            regex_escape(sub),
            namespace.map_or_else(|| DNS_LABEL.to_owned(), regex_escape)
        );
        let namespace = namespace.unwrap_or("default");
        example = format!("{example}.{sub}.{namespace}.svc.cluster.local");
    }
    Ok((regex, example))
}

struct PodContext<'a> {
    input: &'a PodInput<'a>,
    pod_sc: &'a Obj,
    volumes: BTreeMap<String, Volume>,
    env: EnvContext<'a>,
    automount_token: bool,
}

/// A pod volume: how it reaches a container.
#[derive(Debug, Clone)]
enum Volume {
    /// A guest-local directory: on the guest's disk, or in its memory.
    EmptyDir { memory: bool },
    /// Files the host copies in (ConfigMap, Secret, projected, downward API): always
    /// mounted read-only by kubelet.
    Copied,
    /// A persistent volume shared from the host; read-only if the claim says so.
    Claim { read_only: bool },
    /// Any other volume type: usable as a block device only.
    Other { kind: String, path: String },
}

fn volumes(spec: &Obj) -> Result<BTreeMap<String, Volume>, PolicyError> {
    let mut out = BTreeMap::new();
    for (i, v) in get_array(spec, "volumes", "spec")?.iter().enumerate() {
        let path = index("spec.volumes", i);
        let v = as_obj(v, &path)?;
        let name = require_str(v, "name", &path)?;
        let mut kinds = v.keys().filter(|k| *k != "name");
        let (Some(kind), None) = (kinds.next(), kinds.next()) else {
            return Err(invalid(&path, "needs exactly one volume source"));
        };
        let source_path = join(&path, kind);
        let volume = match kind.as_str() {
            "emptyDir" => {
                let empty = Obj::new();
                let e = get_obj(v, "emptyDir", &path)?.unwrap_or(&empty);
                check_known(e, &source_path, EMPTY_DIR_FIELDS)?;
                match get_str(e, "medium", &source_path)?.unwrap_or_default() {
                    "" => Volume::EmptyDir { memory: false },
                    "Memory" => Volume::EmptyDir { memory: true },
                    other => {
                        return Err(unsupported(
                            join(&source_path, "medium"),
                            format!(
                                "medium {other:?} is not supported in a confidential pod (use \"\" or \"Memory\")"
                            ),
                        ));
                    }
                }
            }
            "configMap" | "secret" | "projected" | "downwardAPI" => Volume::Copied,
            "persistentVolumeClaim" => {
                let empty = Obj::new();
                let claim = get_obj(v, kind, &path)?.unwrap_or(&empty);
                Volume::Claim {
                    read_only: get_bool(claim, "readOnly", &source_path)?.unwrap_or(false),
                }
            }
            "ephemeral" => Volume::Claim { read_only: false },
            k if OTHER_VOLUMES.contains(&k) => Volume::Other {
                kind: k.to_owned(),
                path: source_path,
            },
            _ => return Err(PolicyError::UnknownField { path: source_path }),
        };
        debug_assert!(
            MOUNTABLE_VOLUMES.contains(&kind.as_str()) || matches!(volume, Volume::Other { .. })
        );
        if out.insert(name.to_owned(), volume).is_some() {
            return Err(invalid(
                join(&path, "name"),
                format!("another volume is named {name:?}"),
            ));
        }
    }
    Ok(out)
}

fn container(
    pod: &PodContext<'_>,
    c: &Obj,
    path: &str,
    init: bool,
) -> Result<ContainerRules, PolicyError> {
    check_known(c, path, CONTAINER_FIELDS)?;
    let name = require_str(c, "name", path)?;
    let image = require_str(c, "image", path)?;
    let image_path = join(path, "image");
    let config = pod
        .input
        .images
        .get(image)
        .ok_or_else(|| PolicyError::MissingImageConfig {
            path: image_path.clone(),
            image: image.to_owned(),
        })?;
    let digest = image_digest(image, config, &image_path)?;

    // Environment: containerd's PATH, the image's, then kubelet's.
    let kubelet = env::kubelet_env(&pod.env, c, path)?;
    let mut full = EnvList::default();
    full.set("PATH", EnvValue::Exact(kata::DEFAULT_PATH.to_owned()));
    for (i, entry) in config.env.iter().enumerate() {
        let (k, v) = entry.split_once('=').ok_or_else(|| {
            invalid(
                format!("{image_path} (image config Env[{i}])"),
                format!("{entry:?} is not NAME=value"),
            )
        })?;
        full.set(k, EnvValue::Exact(v.to_owned()));
    }
    for (k, v) in &kubelet.entries {
        full.set(k, v.clone());
    }
    let mut exact = BTreeMap::new();
    let mut patterns = BTreeMap::new();
    let mut sandbox_namespace = Vec::new();
    let mut env_example = Vec::with_capacity(full.entries.len());
    for (k, v) in full.entries {
        match v {
            EnvValue::Exact(value) => {
                env_example.push(format!("{k}={value}"));
                exact.insert(k, value);
            }
            EnvValue::Pattern { regex, example } => {
                env_example.push(format!("{k}={example}"));
                patterns.insert(k, regex);
            }
            EnvValue::SandboxNamespace => {
                env_example.push(format!("{k}={}", pod.env.namespace));
                sandbox_namespace.push(k);
            }
        }
    }

    let args = command(pod, c, path, config, &kubelet)?;
    let cwd = match get_str(c, "workingDir", path)?.filter(|w| !w.is_empty()) {
        Some(w) => w.to_owned(),
        None if !config.working_dir.is_empty() => config.working_dir.clone(),
        None => "/".to_owned(),
    };

    let empty = Obj::new();
    let sc_path = join(path, "securityContext");
    let sc = get_obj(c, "securityContext", path)?.unwrap_or(&empty);
    check_known(sc, &sc_path, SECURITY_CONTEXT_FIELDS)?;
    let privileged = get_bool(sc, "privileged", &sc_path)?.unwrap_or(false);
    let escalation = get_bool(sc, "allowPrivilegeEscalation", &sc_path)?;
    let capabilities = capabilities(sc, &sc_path, privileged)?;
    if escalation == Some(false)
        && (privileged || capabilities.iter().any(|c| c == "CAP_SYS_ADMIN"))
    {
        return Err(invalid(
            join(&sc_path, "allowPrivilegeEscalation"),
            "cannot be false for a privileged container or one with CAP_SYS_ADMIN (Kubernetes refuses this too)",
        ));
    }
    let (uid, gids, additional_gids) = user(pod, sc, &sc_path, config, &image_path)?;
    let proc_mount = get_str(sc, "procMount", &sc_path)?.unwrap_or("Default");

    let (mounts, storages) = mounts(pod, c, path, config, privileged)?;
    let devices = devices(pod, c, path)?;
    let gpus = gpus(c, path)?;
    if gpus > 0 && pod.input.runtime.guest_hook_path.is_none() {
        return Err(unsupported(
            format!("{path}.resources.limits[\"{GPU_RESOURCE}\"]"),
            "GPUs are attached only on the GPU platforms (their guest image has the GPU \
             driver and hooks): use one, or remove the limit",
        ));
    }
    let exec = exec_commands(c, path)?;

    Ok(ContainerRules {
        name: name.to_owned(),
        image: image.to_owned(),
        image_digest: digest,
        args,
        cwd,
        terminal: get_bool(c, "tty", path)?.unwrap_or(false),
        uid,
        gids,
        additional_gids,
        env: exact,
        env_patterns: patterns,
        env_sandbox_namespace: sandbox_namespace,
        capabilities,
        no_new_privileges: escalation == Some(false),
        privileged,
        read_only_root: get_bool(sc, "readOnlyRootFilesystem", &sc_path)?.unwrap_or(false),
        require_masked_paths: !privileged && proc_mount != "Unmasked",
        mounts,
        storages,
        devices,
        gpus,
        exec,
        env_example,
        init,
    })
}

/// The digest the reference pins, which must be the image config's.
fn image_digest(image: &str, config: &ImageConfig, path: &str) -> Result<String, PolicyError> {
    let digest = &config.digest;
    let valid = digest.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    });
    if !valid {
        return Err(invalid(
            format!("{path} (image config digest)"),
            format!("{digest:?} is not sha256:<64 lowercase hex digits>"),
        ));
    }
    match image.rsplit_once('@') {
        None => Err(PolicyError::ImageNotPinned {
            path: path.to_owned(),
            image: image.to_owned(),
            digest: digest.clone(),
        }),
        Some((_, pinned)) if pinned == digest => Ok(digest.clone()),
        Some((_, pinned)) => Err(PolicyError::DigestMismatch {
            path: path.to_owned(),
            image: image.to_owned(),
            pinned: pinned.to_owned(),
            config_digest: digest.clone(),
        }),
    }
}

/// The process's arguments: `command` replaces the image's Entrypoint, `args` its Cmd;
/// a `command` without `args` drops the image's Cmd. `$(NAME)` expands against the
/// container's variables.
fn command(
    pod: &PodContext<'_>,
    c: &Obj,
    path: &str,
    config: &ImageConfig,
    kubelet: &EnvList,
) -> Result<Vec<String>, PolicyError> {
    let command = get_str_list(c, "command", path)?;
    let args = get_str_list(c, "args", path)?;
    let expand_all = |list: Vec<String>, key: &str| -> Result<Vec<String>, PolicyError> {
        let list_path = join(path, key);
        list.iter()
            .enumerate()
            .map(|(i, a)| env::expand(a, kubelet, &pod.env, &index(&list_path, i)))
            .collect()
    };
    let (entrypoint, args) = match (command, args) {
        (Some(command), args) => (
            expand_all(command, "command")?,
            args.map(|a| expand_all(a, "args"))
                .transpose()?
                .unwrap_or_default(),
        ),
        (None, Some(args)) => (config.entrypoint.clone(), expand_all(args, "args")?),
        (None, None) => (config.entrypoint.clone(), config.cmd.clone()),
    };
    let mut all = entrypoint;
    all.extend(args);
    if all.is_empty() {
        return Err(invalid(
            path,
            "neither the container nor its image names a command: set command or args",
        ));
    }
    Ok(all)
}

fn capabilities(sc: &Obj, path: &str, privileged: bool) -> Result<Vec<String>, PolicyError> {
    if privileged {
        return Ok(kata::ALL_CAPABILITIES
            .iter()
            .map(|c| (*c).to_owned())
            .collect());
    }
    let mut caps: Vec<&str> = kata::DEFAULT_CAPABILITIES.to_vec();
    let empty = Obj::new();
    let caps_path = join(path, "capabilities");
    let spec = get_obj(sc, "capabilities", path)?.unwrap_or(&empty);
    check_known(spec, &caps_path, CAPABILITIES_FIELDS)?;
    let list = |key: &str| -> Result<Vec<String>, PolicyError> {
        let names = get_str_list(spec, key, &caps_path)?.unwrap_or_default();
        let list_path = join(&caps_path, key);
        names
            .iter()
            .enumerate()
            .map(|(i, n)| capability_name(n, &index(&list_path, i)))
            .collect()
    };
    let add = list("add")?;
    let drop = list("drop")?;
    // containerd: ALL in add, then ALL in drop, then single adds, then single drops.
    if add.iter().any(|c| c == "ALL") {
        caps = kata::ALL_CAPABILITIES.to_vec();
    }
    if drop.iter().any(|c| c == "ALL") {
        caps.clear();
    }
    for cap in add.iter().filter(|c| *c != "ALL") {
        if !caps.contains(&cap.as_str()) {
            caps.push(cap);
        }
    }
    caps.retain(|c| !drop.iter().any(|d| d == c));
    let mut caps: Vec<String> = caps.into_iter().map(str::to_owned).collect();
    caps.sort();
    Ok(caps)
}

/// `NET_ADMIN` → `CAP_NET_ADMIN` (a `CAP_` prefix is accepted too); `ALL` stays.
fn capability_name(name: &str, path: &str) -> Result<String, PolicyError> {
    let upper = name.to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if kata::ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(invalid(path, format!("{name:?} is not a Linux capability")))
    }
}

/// UID, the GIDs the primary group may be, and the supplementary GIDs allowed.
///
/// Without the image's layers there is no /etc/passwd or /etc/group: a user name in the
/// image config is refused (set runAsUser), and where the runtime would look the
/// primary group up in /etc/passwd (a numeric user without a group), the policy admits
/// 0 (not found) or the UID (the common convention).
fn user(
    pod: &PodContext<'_>,
    sc: &Obj,
    sc_path: &str,
    config: &ImageConfig,
    image_path: &str,
) -> Result<(u32, Vec<u32>, Vec<u32>), PolicyError> {
    let pod_path = "spec.securityContext";
    let run_as_user = match get_id(sc, "runAsUser", sc_path)? {
        Some(u) => Some(u),
        None => get_id(pod.pod_sc, "runAsUser", pod_path)?,
    };
    let run_as_group = match get_id(sc, "runAsGroup", sc_path)? {
        Some(g) => Some(g),
        None => get_id(pod.pod_sc, "runAsGroup", pod_path)?,
    };
    let run_as_non_root = match get_bool(sc, "runAsNonRoot", sc_path)? {
        Some(b) => Some(b),
        None => get_bool(pod.pod_sc, "runAsNonRoot", pod_path)?,
    };
    let numeric = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let non_numeric = || PolicyError::NonNumericUser {
        path: image_path.to_owned(),
        user: config.user.clone(),
    };
    let (image_user, image_group) = match config.user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (config.user.as_str(), None),
    };
    let uid = match run_as_user {
        Some(u) => u,
        None if image_user.is_empty() => 0,
        None => numeric(image_user).ok_or_else(non_numeric)?,
    };
    let gids = match (run_as_group, run_as_user, image_group) {
        (Some(g), _, _) => vec![g],
        (None, None, Some(g)) if !g.is_empty() => vec![numeric(g).ok_or_else(non_numeric)?],
        _ if uid == 0 => vec![0],
        _ => vec![0, uid],
    };
    if run_as_non_root == Some(true) && uid == 0 {
        return Err(invalid(
            join(sc_path, "runAsNonRoot"),
            "is true, but the container runs as root (UID 0): set runAsUser, or use an image with a non-root user",
        ));
    }
    let mut additional = gids.clone();
    for (i, g) in get_array(pod.pod_sc, "supplementalGroups", pod_path)?
        .iter()
        .enumerate()
    {
        let g = g
            .as_u64()
            .and_then(|g| u32::try_from(g).ok())
            .ok_or_else(|| {
                invalid(
                    index(&join(pod_path, "supplementalGroups"), i),
                    "must be a group ID",
                )
            })?;
        additional.push(g);
    }
    if let Some(fs_group) = get_id(pod.pod_sc, "fsGroup", pod_path)? {
        additional.push(fs_group);
    }
    additional.sort_unstable();
    additional.dedup();
    Ok((uid, gids, additional))
}

/// The propagation option containerd gives a mount for its `mountPropagation`: `rshared`
/// for Bidirectional, `rslave` for HostToContainer, none for None. Only emptyDir mounts in
/// the runtime's shared-fs mode carry one (as in Contrast's genpolicy: the secure-pv
/// Initializer's decrypted volume reaches the app through the pod's emptyDir); other
/// mounts get none, as genpolicy gives them (`rprivate`), and a request that names one
/// is refused.
fn mount_propagation(
    m: &Obj,
    m_path: &str,
    volume: &Volume,
    pod: &PodContext<'_>,
) -> Result<&'static str, PolicyError> {
    let field = join(m_path, "mountPropagation");
    let propagation = match get_str(m, "mountPropagation", m_path)? {
        None | Some("None") => return Ok(""),
        Some("HostToContainer") => "rslave",
        // Kubernetes admits Bidirectional in privileged containers only; genpolicy does not
        // check, and without CAP_SYS_ADMIN a container has nothing to propagate anyway.
        Some("Bidirectional") => "rshared",
        Some(other) => {
            return Err(invalid(
                field,
                format!("{other:?} is not None, HostToContainer or Bidirectional"),
            ));
        }
    };
    let shared_fs_empty_dir = match volume {
        Volume::EmptyDir { memory } => {
            *memory || pod.input.runtime.emptydir_mode == EmptyDirMode::SharedFs
        }
        _ => false,
    };
    Ok(if shared_fs_empty_dir { propagation } else { "" })
}

/// The mounts a container may get, and the storages its emptyDir volumes need.
fn mounts(
    pod: &PodContext<'_>,
    c: &Obj,
    path: &str,
    config: &ImageConfig,
    privileged: bool,
) -> Result<(Vec<MountRule>, Vec<StorageRule>), PolicyError> {
    let mut declared: Vec<MountRule> = Vec::new();
    let mut storages: Vec<StorageRule> = Vec::new();
    let list_path = join(path, "volumeMounts");
    for (i, m) in get_array(c, "volumeMounts", path)?.iter().enumerate() {
        let m_path = index(&list_path, i);
        let m = as_obj(m, &m_path)?;
        check_known(m, &m_path, VOLUME_MOUNT_FIELDS)?;
        let name = require_str(m, "name", &m_path)?;
        let destination = clean_absolute(
            require_str(m, "mountPath", &m_path)?,
            &join(&m_path, "mountPath"),
        )?;
        let read_only = get_bool(m, "readOnly", &m_path)?.unwrap_or(false);
        let sub_path = get_str(m, "subPath", &m_path)?.filter(|s| !s.is_empty());
        let sub_path_expr = get_str(m, "subPathExpr", &m_path)?.filter(|s| !s.is_empty());
        let volume = pod.volumes.get(name).ok_or_else(|| {
            invalid(
                join(&m_path, "name"),
                format!("no volume named {name:?} in spec.volumes"),
            )
        })?;
        let propagation = mount_propagation(m, &m_path, volume, pod)?;
        if declared.iter().any(|d| d.destination == destination) {
            return Err(invalid(
                join(&m_path, "mountPath"),
                format!("another volume is mounted at {destination}"),
            ));
        }
        let rule = match volume {
            Volume::EmptyDir { memory } => {
                if sub_path_expr.is_some() {
                    return Err(unsupported(
                        join(&m_path, "subPathExpr"),
                        "an emptyDir subpath from variables is only known at run time; use subPath",
                    ));
                }
                let sub = match sub_path {
                    Some(s) => {
                        let relative = clean_absolute(&format!("/{s}"), &join(&m_path, "subPath"))?;
                        if s.split('/').any(|p| p == "..") || s.starts_with('/') {
                            return Err(invalid(
                                join(&m_path, "subPath"),
                                "must be a relative path without '..'",
                            ));
                        }
                        relative
                    }
                    None => String::new(),
                };
                if !*memory && pod.input.runtime.emptydir_mode == EmptyDirMode::BlockEncrypted {
                    if !sub.is_empty() {
                        return Err(unsupported(
                            join(&m_path, "subPath"),
                            "this platform's runtime gives each emptyDir mount a block device \
                             of its own, so a subpath of one is not supported; mount the whole \
                             volume",
                        ));
                    }
                    let (mount, storage) =
                        block_empty_dir(pod, &destination, read_only, storages.len())?;
                    storages.push(storage);
                    mount
                } else {
                    let (mount, storage) =
                        guest_empty_dir(name, *memory, destination, &sub, read_only, propagation);
                    if !storages
                        .iter()
                        .any(|s| s.mount_point == storage.mount_point)
                    {
                        storages.push(storage);
                    }
                    mount
                }
            }
            Volume::Copied => copied(destination, name, true, true),
            Volume::Claim {
                read_only: claim_ro,
            } => copied(destination, name, read_only || *claim_ro, true),
            Volume::Other { kind, path } => {
                return Err(unsupported(
                    path.clone(),
                    format!(
                        "{kind} volumes cannot be mounted into a confidential container: their \
                         content comes from the host unchecked (use emptyDir, configMap, secret, \
                         projected, downwardAPI or a persistentVolumeClaim; block devices via \
                         volumeDevices)"
                    ),
                ));
            }
        };
        declared.push(rule);
    }

    // What the runtime adds, unless the pod mounts something at the same place.
    let taken = |dest: &str| declared.iter().any(|d| d.destination == dest);
    let mut all: Vec<MountRule> = Vec::new();
    for (destination, kind, read_only) in kata::DEFAULT_MOUNTS {
        if taken(destination) {
            continue;
        }
        all.push(MountRule {
            destination: (*destination).to_owned(),
            mount_type: (*kind).to_owned(),
            source: format!("^{kind}$"),
            read_only: *read_only && !privileged,
            required: false,
            source_example: (*kind).to_owned(),
            block_options: Vec::new(),
            propagation: String::new(),
        });
    }
    if !taken("/dev/shm") {
        all.push(shm_mount());
    }
    let termination = get_str(c, "terminationMessagePath", path)?
        .filter(|p| !p.is_empty())
        .map(|p| clean_absolute(p, &join(path, "terminationMessagePath")))
        .transpose()?
        .unwrap_or_else(|| kata::DEFAULT_TERMINATION_MESSAGE_PATH.to_owned());
    let mut runtime_files = vec![
        ("/etc/hosts".to_owned(), "hosts", false),
        ("/etc/hostname".to_owned(), "hostname", false),
        ("/etc/resolv.conf".to_owned(), "resolv.conf", false),
        (termination, "termination-log", false),
    ];
    if pod.automount_token {
        runtime_files.push((
            kata::SERVICE_ACCOUNT_PATH.to_owned(),
            "serviceaccount",
            true,
        ));
    }
    for (i, volume) in config.volumes.iter().enumerate() {
        let destination =
            clean_absolute(volume, &format!("{path}.image (image config Volumes[{i}])"))?;
        runtime_files.push((destination, "volume", false));
    }
    for (destination, name, read_only) in runtime_files {
        if taken(&destination) || all.iter().any(|m| m.destination == destination) {
            continue;
        }
        all.push(copied(destination, name, read_only, false));
    }
    all.extend(declared);
    Ok((all, storages))
}

/// An emptyDir's mount and storage in a directory of the guest: a tmpfs the agent mounts
/// for a memory-backed one (`ephemeral`), else a directory the agent makes (`local`, the
/// runtime's `shared-fs` mode). The pod's containers that mount it share the one storage.
fn guest_empty_dir(
    name: &str,
    memory: bool,
    destination: String,
    sub: &str,
    read_only: bool,
    propagation: &str,
) -> (MountRule, StorageRule) {
    let (dir_regex, dir_example, mount_type, storage) = if memory {
        let dir = format!("{}/{name}", kata::EPHEMERAL_DIR);
        (
            regex_escape(&dir),
            dir.clone(),
            "bind",
            StorageRule {
                driver: "ephemeral".to_owned(),
                source: "tmpfs".to_owned(),
                fstype: "tmpfs".to_owned(),
                mount_point: format!("^{}$", regex_escape(&dir)),
                mount_point_example: dir,
                options_example: Vec::new(),
                block: None,
            },
        )
    } else {
        // Kata puts disk-backed emptyDirs below the sandbox's bundle: in its rootfs
        // (`rootfs/local`) or, for confidential guests, beside it.
        let dir_regex = format!(
            "{}/$(sid)/(rootfs/)?local/{}",
            regex_escape(kata::SHARED_DIR),
            regex_escape(name)
        );
        let dir = format!("{}/$(sid)/rootfs/local/{name}", kata::SHARED_DIR);
        (
            dir_regex.clone(),
            dir.clone(),
            "local",
            StorageRule {
                driver: "local".to_owned(),
                source: "local".to_owned(),
                fstype: "local".to_owned(),
                mount_point: format!("^{dir_regex}$"),
                mount_point_example: dir,
                options_example: vec!["mode=0777".to_owned()],
                block: None,
            },
        )
    };
    let mount = MountRule {
        destination,
        mount_type: mount_type.to_owned(),
        source: format!("^{dir_regex}{}$", regex_escape(sub)),
        read_only,
        required: true,
        source_example: format!("{dir_example}{sub}"),
        block_options: Vec::new(),
        propagation: propagation.to_owned(),
    };
    (mount, storage)
}

/// A disk-backed emptyDir's mount in the runtime's `block-encrypted` mode, and its storage:
/// the runtime gives each mount a block device of its own (one storage per mount, all
/// alike), which the agent formats under an ephemeral LUKS key, mounts at
/// `<sandbox storage>/<base64url of the device's address>` and binds into the container
/// (kata_agent.go `handleBlkOCIMounts`, as genpolicy's `emptyDir_encrypted` has it). Not
/// required: as genpolicy, a container may leave such a mount out. `index` numbers the
/// container's block storages, for the example addresses.
fn block_empty_dir(
    pod: &PodContext<'_>,
    destination: &str,
    read_only: bool,
    index: usize,
) -> Result<(MountRule, StorageRule), PolicyError> {
    let driver = pod.input.runtime.block_device_driver;
    let address = match driver {
        BlockDeviceDriver::VirtioScsi => format!("0:{}", 16 + index),
        BlockDeviceDriver::VirtioBlk => format!("{:02x}/00", 16 + index),
    };
    let mount_point = format!(
        "{}/{}",
        kata::SANDBOX_STORAGE_DIR,
        base64_url_padded(address.as_bytes())
    );
    let on_root_mismatch = get_str(pod.pod_sc, "fsGroupChangePolicy", "spec.securityContext")?
        == Some("OnRootMismatch");
    let fs_group = get_id(pod.pod_sc, "fsGroup", "spec.securityContext")?
        .filter(|gid| *gid > 0)
        .map(|group_id| FsGroupRule {
            group_id,
            group_change_policy: u32::from(on_root_mismatch),
        });
    let storage = StorageRule {
        driver: driver.agent_device_type().to_owned(),
        source: String::new(),
        fstype: "ext4".to_owned(),
        mount_point: String::new(),
        mount_point_example: mount_point.clone(),
        options_example: Vec::new(),
        block: Some(BlockStorageRule {
            driver_options: vec![
                "encryption_key=ephemeral".to_owned(),
                "create_filesystem".to_owned(),
            ],
            options: Vec::new(),
            mount_point_dir: kata::SANDBOX_STORAGE_DIR.to_owned(),
            fs_group,
            source_example: address,
        }),
    };
    let mount = MountRule {
        destination: destination.to_owned(),
        mount_type: "bind".to_owned(),
        source: String::new(),
        read_only,
        required: false,
        source_example: mount_point,
        block_options: ["rbind", "rprivate", if read_only { "ro" } else { "rw" }]
            .map(str::to_owned)
            .to_vec(),
        propagation: String::new(),
    };
    Ok((mount, storage))
}

/// RFC 4648 base64 with the URL and file name alphabet, padded: Go's
/// `base64.URLEncoding`, which the runtime names block storages' mount points with, and
/// Rego's `base64url.encode`.
fn base64_url_padded(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(data)
}

/// A mount of files the host copies into the guest.
fn copied(destination: String, name: &str, read_only: bool, required: bool) -> MountRule {
    MountRule {
        destination,
        mount_type: "bind".to_owned(),
        source: kata::COPIED_SOURCE.to_owned(),
        read_only,
        required,
        source_example: format!("{}{name}", kata::COPIED_EXAMPLE),
        block_options: Vec::new(),
        propagation: String::new(),
    }
}

fn shm_mount() -> MountRule {
    MountRule {
        destination: "/dev/shm".to_owned(),
        mount_type: "bind".to_owned(),
        source: format!("^{}$", regex_escape(kata::SANDBOX_SHM)),
        read_only: false,
        required: false,
        source_example: kata::SANDBOX_SHM.to_owned(),
        block_options: Vec::new(),
        propagation: String::new(),
    }
}

fn devices(pod: &PodContext<'_>, c: &Obj, path: &str) -> Result<Vec<String>, PolicyError> {
    let list_path = join(path, "volumeDevices");
    let mut out = Vec::new();
    for (i, d) in get_array(c, "volumeDevices", path)?.iter().enumerate() {
        let d_path = index(&list_path, i);
        let d = as_obj(d, &d_path)?;
        check_known(d, &d_path, VOLUME_DEVICE_FIELDS)?;
        let name = require_str(d, "name", &d_path)?;
        if !pod.volumes.contains_key(name) {
            return Err(invalid(
                join(&d_path, "name"),
                format!("no volume named {name:?} in spec.volumes"),
            ));
        }
        out.push(clean_absolute(
            require_str(d, "devicePath", &d_path)?,
            &join(&d_path, "devicePath"),
        )?);
    }
    Ok(out)
}

/// The extended resource of a whole GPU passed to a pod VM (the NVIDIA GPU operator's
/// sandbox device plugin; genpolicy's `pgpu_resource_keys`).
const GPU_RESOURCE: &str = "nvidia.com/pgpu";

/// How many GPUs the container's limits ask for (an extended resource is a whole number,
/// and its request, if given, equals the limit).
fn gpus(c: &Obj, path: &str) -> Result<u32, PolicyError> {
    let Some(resources) = get_obj(c, "resources", path)? else {
        return Ok(0);
    };
    let resources_path = join(path, "resources");
    let Some(limits) = get_obj(resources, "limits", &resources_path)? else {
        return Ok(0);
    };
    let field = format!("{resources_path}.limits[\"{GPU_RESOURCE}\"]");
    let count = match limits.get(GPU_RESOURCE) {
        None => return Ok(0),
        Some(serde_json::Value::String(s)) => s.parse::<u32>().ok(),
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Some(_) => None,
    };
    count.ok_or_else(|| invalid(field, "must be a whole number of GPUs"))
}

/// The commands of exec probes and exec lifecycle handlers: kubelet runs both through
/// the agent's ExecProcess.
fn exec_commands(c: &Obj, path: &str) -> Result<Vec<Vec<String>>, PolicyError> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut take = |handler: &Obj, handler_path: &str| -> Result<(), PolicyError> {
        if let Some(exec) = get_obj(handler, "exec", handler_path)? {
            let exec_path = join(handler_path, "exec");
            check_known(exec, &exec_path, EXEC_FIELDS)?;
            let command = get_str_list(exec, "command", &exec_path)?.ok_or_else(|| {
                invalid(
                    join(&exec_path, "command"),
                    "an exec handler needs a command",
                )
            })?;
            if !out.contains(&command) {
                out.push(command);
            }
        }
        Ok(())
    };
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = get_obj(c, probe, path)? {
            let p_path = join(path, probe);
            check_known(p, &p_path, PROBE_FIELDS)?;
            take(p, &p_path)?;
        }
    }
    if let Some(lifecycle) = get_obj(c, "lifecycle", path)? {
        let l_path = join(path, "lifecycle");
        check_known(lifecycle, &l_path, LIFECYCLE_FIELDS)?;
        for hook in ["postStart", "preStop"] {
            if let Some(h) = get_obj(lifecycle, hook, &l_path)? {
                let h_path = join(&l_path, hook);
                check_known(h, &h_path, HANDLER_FIELDS)?;
                take(h, &h_path)?;
            }
        }
    }
    Ok(out)
}

fn pause_rules(pod: &PodContext<'_>, host_network: bool) -> Result<PauseRules, PolicyError> {
    let mut mounts: Vec<MountRule> = kata::DEFAULT_MOUNTS
        .iter()
        .map(|(destination, kind, read_only)| MountRule {
            destination: (*destination).to_owned(),
            mount_type: (*kind).to_owned(),
            source: format!("^{kind}$"),
            read_only: *read_only,
            required: false,
            source_example: (*kind).to_owned(),
            block_options: Vec::new(),
            propagation: String::new(),
        })
        .collect();
    mounts.push(shm_mount());
    mounts.push(copied(
        "/etc/resolv.conf".to_owned(),
        "resolv.conf",
        false,
        false,
    ));
    // The pod's security context applies to the sandbox; no container's does.
    let pause_image = ImageConfig {
        user: kata::PAUSE_USER.to_owned(),
        ..ImageConfig::default()
    };
    let (uid, gids, additional_gids) = user(
        pod,
        &Obj::new(),
        "spec.securityContext",
        &pause_image,
        "the pause image",
    )?;
    Ok(PauseRules {
        args: kata::PAUSE_ARGS.iter().map(|a| (*a).to_owned()).collect(),
        env: vec![format!("PATH={}", kata::DEFAULT_PATH)],
        mounts,
        namespaces: kata::namespaces(!host_network),
        uid,
        gids,
        additional_gids,
    })
}
