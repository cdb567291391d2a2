//! Why a policy refuses a request, in terms a user can act on: for a CreateContainerRequest,
//! each check of the rules that failed, with what the policy expects and what the request
//! carries (Contrast's agent only says "blocked by policy").
//!
//! The verdict is the agent's (as [`crate::evaluate_verbose`] gives it); the checks come from the
//! rules' own `create_container_target`, so the explanation cannot disagree with them.
//! Expected values are read from the policy data the policy carries, actual ones from
//! the request.

use serde_json::{Value, json};

use crate::evaluate::{AgentPolicy, check_request_name};
use crate::{Evaluation, PolicyError};

/// One failed check.
#[derive(Debug, Clone, PartialEq)]
pub struct FailedCheck {
    /// The check's name in the rules (`args`, `env`, `mounts`, …).
    pub check: String,
    /// What the policy admits (from its policy data), `null` where it admits nothing or
    /// the check is not about one field.
    pub expected: Value,
    /// What the request carries.
    pub actual: Value,
}

/// A verdict with its reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The agent's verdict and what the policy printed.
    pub evaluation: Evaluation,
    /// For a refused CreateContainerRequest: what the checks were about
    /// (`container web`, `the pause container`), if the policy has such a container.
    pub target: Option<String>,
    /// The failed checks, in the rules' order.
    pub failed: Vec<FailedCheck>,
}

/// Evaluates `request` (`request_name`, such as `CreateContainerRequest`) against the
/// policy as the first request of a sandbox and, when it is refused, explains the refusal.
/// [`AgentPolicy::explain`] explains a request later in a sandbox's life.
pub fn explain(
    policy_rego: &str,
    request_name: &str,
    request: &Value,
) -> Result<Explanation, PolicyError> {
    AgentPolicy::new(policy_rego)?.explain(request_name, request)
}

impl AgentPolicy {
    /// Decides `request` as [`AgentPolicy::decide`] does (keeping the state changes of an
    /// allowed request) and, when it is refused, explains the refusal.
    pub fn explain(
        &mut self,
        request_name: &str,
        request: &Value,
    ) -> Result<Explanation, PolicyError> {
        explain_in(self, request_name, request)
    }
}

fn explain_in(
    loaded: &mut AgentPolicy,
    request_name: &str,
    request: &Value,
) -> Result<Explanation, PolicyError> {
    check_request_name(request_name)?;
    // One engine for the verdict and the explanation: the policy is parsed once.
    let evaluation = loaded.decide(request_name, request)?;
    let mut explanation = Explanation {
        evaluation,
        target: None,
        failed: Vec::new(),
    };
    if explanation.evaluation.allowed || request_name != "CreateContainerRequest" {
        return Ok(explanation);
    }
    let Some(target) = loaded.query("data.agent_policy.create_container_target")? else {
        return Ok(explanation);
    };
    explanation.target = target
        .get("what")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let policy_data = loaded
        .query("data.agent_policy.policy_data")?
        .unwrap_or(Value::Null);
    let pause = explanation.target.as_deref() == Some("the pause container");
    let state = loaded.state()?;
    let name = pointer(request, "/OCI/Annotations/io.kubernetes.cri.container-name");
    let container = policy_data
        .get("containers")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c.get("name") == Some(&name)))
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(checks) = target.get("checks").and_then(Value::as_object) {
        for (check, ok) in checks {
            if ok == &Value::Bool(true) {
                continue;
            }
            let (expected, actual) = if pause {
                pause_fields(check, &policy_data, &state, request)
            } else {
                container_fields(check, &container, &policy_data, &state, request)
            };
            explanation.failed.push(FailedCheck {
                check: check.clone(),
                expected,
                actual,
            });
        }
    }
    Ok(explanation)
}

/// The value at a JSON pointer (`~1` for `/` in keys), `null` when absent.
fn pointer(value: &Value, path: &str) -> Value {
    value.pointer(path).cloned().unwrap_or(Value::Null)
}

/// The image storages the runtime asked the agent to pull.
fn guest_pulls(request: &Value) -> Value {
    Value::Array(
        request
            .get("storages")
            .and_then(Value::as_array)
            .map(|storages| {
                storages
                    .iter()
                    .filter(|s| s.get("driver").and_then(Value::as_str) == Some("image_guest_pull"))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default(),
    )
}

/// What a check of an application container compares.
fn container_fields(
    check: &str,
    container: &Value,
    policy_data: &Value,
    state: &Value,
    request: &Value,
) -> (Value, Value) {
    let field = |name: &str| pointer(container, &format!("/{name}"));
    let oci = |path: &str| pointer(request, &format!("/OCI{path}"));
    match check {
        "args" => (field("args"), oci("/Process/Args")),
        "capabilities" => (
            json!({"capabilities": field("capabilities"), "privileged": field("privileged")}),
            oci("/Process/Capabilities"),
        ),
        "cwd" => (field("cwd"), oci("/Process/Cwd")),
        "devices" => (
            field("devices"),
            json!({"devices": pointer(request, "/devices"), "OCI.Linux.Devices": oci("/Linux/Devices")}),
        ),
        "gpus" => {
            let cdi: serde_json::Map<String, Value> = oci("/Annotations")
                .as_object()
                .map(|a| {
                    a.iter()
                        .filter(|(k, _)| k.starts_with("cdi.k8s.io/"))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            (
                json!({"gpus": field("gpus")}),
                json!({"devices": pointer(request, "/devices"), "CDI annotations": cdi}),
            )
        }
        "env" => (
            json!({
                "env": field("env"),
                "env_patterns": field("env_patterns"),
                "optional": pointer(policy_data, "/pod/optional_env"),
            }),
            oci("/Process/Env"),
        ),
        "image" => (
            json!({"image": field("image"), "digest": field("image_digest")}),
            guest_pulls(request),
        ),
        "masked_paths" => (field("require_masked_paths"), oci("/Linux/MaskedPaths")),
        "mounts" => (field("mounts"), oci("/Mounts")),
        "rootfs_propagation" => (
            json!({"one of": ["", expected_rootfs_propagation(&field("mounts"))]}),
            oci("/Linux/RootfsPropagation"),
        ),
        "no_new_privileges" => (field("no_new_privileges"), oci("/Process/NoNewPrivileges")),
        "root" => (field("read_only_root"), oci("/Root")),
        "storages" => (field("storages"), pointer(request, "/storages")),
        "user" => (
            json!({"uid": field("uid"), "gids": field("gids"), "additional_gids": field("additional_gids")}),
            oci("/Process/User"),
        ),
        "container_id" => (
            json!({"created as": pointer(state, &format!("/containers/{}", pointer(request, "/container_id").as_str().unwrap_or_default()))}),
            json!({"container_id": pointer(request, "/container_id"), "name": field("name")}),
        ),
        _ => shared_fields(check, policy_data, state, request),
    }
}

/// The root propagation containerd derives from a container's mount rules, as
/// `expected_rootfs_propagation` in rules.rego: `rshared` with a Bidirectional mount,
/// else `rslave` with a HostToContainer one, else none.
fn expected_rootfs_propagation(mounts: &Value) -> &'static str {
    let has = |p: &str| {
        mounts
            .as_array()
            .is_some_and(|m| m.iter().any(|r| r.get("propagation") == Some(&json!(p))))
    };
    if has("rshared") {
        "rshared"
    } else if has("rslave") {
        "rslave"
    } else {
        ""
    }
}

/// What a check of the pause container compares.
fn pause_fields(
    check: &str,
    policy_data: &Value,
    state: &Value,
    request: &Value,
) -> (Value, Value) {
    let oci = |path: &str| pointer(request, &format!("/OCI{path}"));
    match check {
        "args" => (pointer(policy_data, "/pause/args"), oci("/Process/Args")),
        "env" => (pointer(policy_data, "/pause/env"), oci("/Process/Env")),
        "mounts" => (pointer(policy_data, "/pause/mounts"), oci("/Mounts")),
        "user" => (
            json!({
                "uid": pointer(policy_data, "/pause/uid"),
                "gids": pointer(policy_data, "/pause/gids"),
                "additional_gids": pointer(policy_data, "/pause/additional_gids"),
            }),
            oci("/Process/User"),
        ),
        "devices" => (
            json!([]),
            json!({"devices": pointer(request, "/devices"), "OCI.Linux.Devices": oci("/Linux/Devices"), "OCI.Linux.Resources.Devices": oci("/Linux/Resources/Devices")}),
        ),
        "image" | "storages" => (
            json!("one image_guest_pull storage of the sandbox's bundle"),
            pointer(request, "/storages"),
        ),
        "root" => (json!(false), oci("/Root")),
        _ => shared_fields(check, policy_data, state, request),
    }
}

/// Checks every container shares.
fn shared_fields(
    check: &str,
    policy_data: &Value,
    state: &Value,
    request: &Value,
) -> (Value, Value) {
    let oci = |path: &str| pointer(request, &format!("/OCI{path}"));
    match check {
        "hooks" => (Value::Null, oci("/Hooks")),
        "ids" => (
            json!("64 lowercase hex characters each"),
            json!({
                "container_id": pointer(request, "/container_id"),
                "sandbox_id": oci("/Annotations/io.kubernetes.cri.sandbox-id"),
            }),
        ),
        "namespaces" => (
            json!(
                "ipc, uts and mount (a host-network pod's pause container: ipc and mount), each without a Path (network and cgroup aside)"
            ),
            oci("/Linux/Namespaces"),
        ),
        "network_namespace" => (
            json!({"at most one": true, "the sandbox's": pointer(state, "/network_namespace")}),
            oci("/Linux/Namespaces"),
        ),
        "sandbox_state" => (
            json!({"sandbox_id": pointer(state, "/sandbox_id"), "sandbox_name": pointer(state, "/sandbox_name")}),
            json!({
                "sandbox_id": oci("/Annotations/io.kubernetes.cri.sandbox-id"),
                "sandbox_name": oci("/Annotations/io.kubernetes.cri.sandbox-name"),
            }),
        ),
        "seccomp" => (Value::Null, oci("/Linux/Seccomp")),
        "security_labels" => (
            json!({"SelinuxLabel": "", "MountLabel": "", "ApparmorProfile": ["", "cri-containerd.apparmor.d"]}),
            json!({
                "SelinuxLabel": oci("/Process/SelinuxLabel"),
                "MountLabel": oci("/Linux/MountLabel"),
                "ApparmorProfile": oci("/Process/ApparmorProfile"),
            }),
        ),
        "id_mappings" => (
            json!({"UIDMappings": [], "GIDMappings": [], "Username": ""}),
            json!({
                "UIDMappings": oci("/Linux/UIDMappings"),
                "GIDMappings": oci("/Linux/GIDMappings"),
                "Username": oci("/Process/User/Username"),
            }),
        ),
        "rootfs_propagation" => (json!(""), oci("/Linux/RootfsPropagation")),
        "resources" => (
            json!({"BlockIO": null, "Network": null, "Pids": null, "IntelRdt": null}),
            json!({
                "BlockIO": oci("/Linux/Resources/BlockIO"),
                "Network": oci("/Linux/Resources/Network"),
                "Pids": oci("/Linux/Resources/Pids"),
                "IntelRdt": oci("/Linux/IntelRdt"),
            }),
        ),
        "request_fields" => (
            json!({"shared_mounts": [], "string_user": null, "Solaris": null, "Windows": null}),
            json!({
                "shared_mounts": pointer(request, "/shared_mounts"),
                "string_user": pointer(request, "/string_user"),
                "Solaris": oci("/Solaris"),
                "Windows": oci("/Windows"),
            }),
        ),
        "pid_namespace" => (
            pointer(policy_data, "/pod/share_process_namespace"),
            pointer(request, "/sandbox_pidns"),
        ),
        "sandbox" => (
            json!({"namespace": pointer(policy_data, "/pod/namespace"), "name": pointer(policy_data, "/pod/name_regex")}),
            json!({
                "namespace": oci("/Annotations/io.kubernetes.cri.sandbox-namespace"),
                "name": oci("/Annotations/io.kubernetes.cri.sandbox-name"),
            }),
        ),
        "sysctls" => (pointer(policy_data, "/pod/sysctls"), oci("/Linux/Sysctl")),
        _ => (Value::Null, Value::Null),
    }
}
