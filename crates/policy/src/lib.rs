//! Kata agent policies for confidential pods: our Rego rules, policy data from the pod
//! spec and image configs, and the initdata document that carries them.
//!
//! A pod's policy is the constant [`RULES`] followed by `policy_data := <JSON>`, the
//! data [`policy_rego`] derives from the pod spec (after `contrast generate`'s changes)
//! and the image configs ([`ImageConfig`]). The Kata agent in the pod's VM evaluates it
//! for every request the host sends (see [`evaluate`]). The policy travels in an
//! initdata document ([`initdata`]) whose SHA-256 is the policy hash: the manifest's key for the
//! workload and what the TEE reports as host data.
//!
//! # What a policy admits
//!
//! - **CreateContainer**: the pause container (the guest image's own pause bundle), and
//!   each container of the spec (init containers too) with exactly its image digest,
//!   command, working directory, user, environment, capabilities, privilege escalation
//!   setting, root file system mode and mounts. The image is pulled in the guest by a
//!   reference that must end in `@<digest>`, so the spec must pin images by digest. On
//!   the GPU platforms, a container gets as many GPUs as its `nvidia.com/pgpu` limit.
//! - **ExecProcess**: only the commands of exec probes and exec lifecycle handlers of the
//!   container the exec targets (the agent's state maps each created container ID to the
//!   policy's container), with its user, environment and working directory; no
//!   capabilities named (the runtime never names them; the agent then gives the exec the
//!   container's), no AppArmor or SELinux label, no user by string, no terminal unless
//!   the container has one, and NoNewPrivileges not set (the runtime never sets it, see
//!   docs/runtime.md §8).
//! - **CopyFile**: only the runtime's copies of host files below
//!   `/run/kata-containers/shared/containers/<container id>-<16 characters>-<name>`:
//!   regular files, directories, and symlinks below the top entry with a relative target
//!   that does not leave it.
//! - **SetPolicy** never, nor anything that would let the host change the guest's code,
//!   time, entropy, firewall or memory, or write into a container's stdin. Container
//!   output (`ReadStream`) is allowed: logs are host-visible by design.
//!
//! See `rules.rego` for every rule, and [`expected_requests`] for the requests a
//! faithful runtime sends for a pod.
//!
//! # Values known only at run time
//!
//! - Downward API fields: `metadata.name` (the pod name, or the name with the suffixes
//!   controllers add), `metadata.uid`, `spec.nodeName`, `status.podIP(s)`,
//!   `status.hostIP(s)`, labels and annotations, and `resourceFieldRef` are admitted by
//!   the shape of their values; `metadata.namespace` and `spec.serviceAccountName` are
//!   exact. The control plane sets them, and it is not trusted either way.
//! - Kubernetes service variables (`<SVC>_SERVICE_HOST`, `<SVC>_PORT_<n>_TCP`, …) are
//!   injected by kubelet for the services that exist when the container starts. They
//!   are admitted by pattern (names and value shapes), for every service when
//!   `enableServiceLinks` is true (the default), and only the API server's
//!   (`KUBERNETES_*`) when it is false. A variable the pod declares is never replaced
//!   by one of these. Disable service links if the application reads such names.
//! - `HOSTNAME` (set by the runtime) is admitted as the pod's hostname.
//!
//! # Users and groups
//!
//! The UID is `runAsUser`, else the image's numeric user (empty means root). An image
//! whose user is a name is refused unless `runAsUser` is set: resolving names needs
//! the image's `/etc/passwd`, and we do not read image layers. The primary GID is
//! `runAsGroup`, else the image's numeric group; where the runtime would look it up in
//! `/etc/passwd` (a numeric user without a group), 0 or the UID is admitted. The
//! supplementary GIDs may only be the primary one, `supplementalGroups` and `fsGroup`:
//! groups the runtime would add from the image's `/etc/group` are refused, so declare
//! them in `supplementalGroups` (or use `supplementalGroupsPolicy: Strict`).
//!
//! # State
//!
//! The agent keeps the policy's state (`data.pstate`) across a sandbox's requests
//! ([`AgentPolicy`]). The first CreateContainer records the sandbox's ID, name and
//! network namespace, which later ones must repeat; each records which of the policy's
//! containers its ID is, so an exec is held to that container's probes; RemoveContainer
//! forgets the ID.
//!
//! # Not covered
//!
//! The contents of files the host copies in (ConfigMaps, Secrets, /etc/hosts,
//! resolv.conf) and of persistent volumes are the host's; use the secure persistent
//! volume for data that must be protected. See docs/policy-fields.md for every field of
//! every request the agent acts on: checked, or why it is harmless to leave free.

mod env;
mod evaluate;
mod explain;
mod json;
mod kata;
mod model;
mod requests;
mod spec;

use std::collections::BTreeMap;

use contrast_initdata::write::{GeneratedInitdata, InitdataError, InitdataWriter};

pub use evaluate::{AgentPolicy, Evaluation, evaluate, evaluate_verbose};
pub use explain::{Explanation, FailedCheck, explain};
pub use requests::expected_requests;

/// The rules every policy starts with (package `agent_policy`). A policy is these
/// rules, a blank line, and `policy_data := <JSON>`.
pub const RULES: &str = include_str!("rules.rego");

/// The initdata document for a policy of ours (`contrast_initdata`'s writer, with the
/// [`RULES`] every such policy starts with escaped and compressed once).
pub fn initdata(policy_rego: &str) -> GeneratedInitdata {
    initdata_writer().document(policy_rego)
}

/// [`initdata`] with further `[data]` entries after the policy, in key order.
pub fn initdata_with_data(
    policy_rego: &str,
    data: &BTreeMap<String, String>,
) -> Result<GeneratedInitdata, InitdataError> {
    initdata_writer().document_with_data(policy_rego, data)
}

fn initdata_writer() -> &'static InitdataWriter {
    static WRITER: std::sync::OnceLock<InitdataWriter> = std::sync::OnceLock::new();
    WRITER.get_or_init(|| InitdataWriter::new(RULES))
}

/// What the image config (the `config` section of the OCI image config JSON) says;
/// filled in by the caller from the registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ImageConfig {
    /// The manifest digest, `sha256:<64 hex digits>`.
    pub digest: String,
    /// `Env`: `NAME=value` entries.
    pub env: Vec<String>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd`.
    pub cmd: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: String,
    /// `User` as the config has it: `""`, `"1000"`, `"1000:1000"`, `"name"`, …
    pub user: String,
    /// `Volumes`: the paths.
    pub volumes: Vec<String>,
}

/// One pod (or pod template) to generate a policy for.
#[derive(Debug, Clone, Copy)]
pub struct PodInput<'a> {
    /// The pod's name, or the name of the workload that owns the template; with
    /// `generate_name`, the prefix Kubernetes completes.
    pub name: &'a str,
    /// `name` is `metadata.generateName`: Kubernetes appends five random characters.
    pub generate_name: bool,
    /// The namespace; empty when the resource names none: Kubernetes puts it where it is
    /// applied, so the policy admits any namespace, the same for every container of the
    /// sandbox (the first fixes it).
    pub namespace: &'a str,
    /// The PodSpec object, after `contrast generate`'s changes.
    pub pod_spec: &'a serde_json::Value,
    /// The pod's (or template's) `metadata.labels`: a downward-API variable of a label
    /// listed here must carry its value.
    pub labels: &'a BTreeMap<String, String>,
    /// The platform's Kata runtime settings (`Platform::kata_runtime`): what the
    /// requests it sends look like.
    pub runtime: contrast_platforms::kata::KataRuntime,
    /// Image configs, keyed by the image string exactly as the container spec has it.
    pub images: &'a BTreeMap<String, ImageConfig>,
    /// Whole ConfigMap documents, for `env` and `envFrom` references.
    pub config_maps: &'a [serde_json::Value],
    /// Whole Secret documents (`data` base64, `stringData`), for `env` and `envFrom`.
    pub secrets: &'a [serde_json::Value],
}

/// Why no policy could be generated, or a policy could not be evaluated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The pod spec has a field contrast does not know.
    #[error(
        "{path}: unknown field: contrast cannot tell whether it changes what the container \
         runs, so it generates no policy (remove the field, or report it if Kubernetes \
         accepts it)"
    )]
    UnknownField {
        /// The field's path, such as `spec.containers[0].foo`.
        path: String,
    },
    /// A field that changes what the agent must admit in a way a policy cannot express.
    #[error("{path}: {reason}")]
    Unsupported {
        /// The field's path.
        path: String,
        /// Why, and what to do instead.
        reason: String,
    },
    /// A value of the wrong type or shape.
    #[error("{path}: {reason}")]
    Invalid {
        /// The field's path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The caller gave no image config for an image.
    #[error("{path}: no image config for {image:?} (it must be resolved in the registry first)")]
    MissingImageConfig {
        /// The field's path.
        path: String,
        /// The image reference.
        image: String,
    },
    /// The image reference does not pin a digest.
    #[error(
        "{path}: image {image:?} is not pinned by digest: the policy admits only the image \
         it was made for, so reference it as {image}@{digest} (its current digest)"
    )]
    ImageNotPinned {
        /// The field's path.
        path: String,
        /// The image reference.
        image: String,
        /// The digest the registry reported.
        digest: String,
    },
    /// The digest in the reference is not the image config's.
    #[error(
        "{path}: image {image:?} pins {pinned}, but its image config is for {config_digest}: \
         resolve the image again"
    )]
    DigestMismatch {
        /// The field's path.
        path: String,
        /// The image reference.
        image: String,
        /// The digest in the reference.
        pinned: String,
        /// The digest of the image config given.
        config_digest: String,
    },
    /// A ConfigMap or Secret a container reads its environment from was not given.
    #[error(
        "{path}: {kind} {name:?} in namespace {namespace:?} is not among the resources \
         given: add its YAML to the files contrast generate reads, or mark the reference \
         optional"
    )]
    MissingObject {
        /// The reference's path.
        path: String,
        /// `ConfigMap` or `Secret`.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// The pod's namespace.
        namespace: String,
    },
    /// A ConfigMap or Secret lacks a key a container reads.
    #[error("{path}: {kind} {name:?} has no key {key:?}: add it, or mark the reference optional")]
    MissingKey {
        /// The reference's path.
        path: String,
        /// `ConfigMap` or `Secret`.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// The key.
        key: String,
    },
    /// The image runs as a user or group name, which needs the image's /etc/passwd.
    #[error(
        "{path}: the image runs as user {user:?}, a name: contrast does not read image \
         layers to look it up, so set securityContext.runAsUser and runAsGroup to the \
         numeric IDs"
    )]
    NonNumericUser {
        /// The container's image path.
        path: String,
        /// The image config's user.
        user: String,
    },
    /// The policy could not be evaluated.
    #[error("evaluating the policy: {message}")]
    Evaluation {
        /// The engine's explanation.
        message: String,
    },
}

/// The policy for a pod: [`RULES`], then `policy_data := <JSON>` with what the pod spec
/// and image configs allow. Deterministic: the same input gives the same text.
pub fn policy_rego(input: &PodInput<'_>) -> Result<String, PolicyError> {
    let data = spec::resolve(input)?;
    let json = serde_json::to_string_pretty(&data).map_err(|e| PolicyError::Invalid {
        path: "spec".to_owned(),
        reason: format!("the policy data cannot be written: {e}"),
    })?;
    let mut policy = String::with_capacity(RULES.len() + json.len() + 32);
    policy.push_str(RULES);
    policy.push_str("\npolicy_data := ");
    policy.push_str(&json);
    policy.push('\n');
    Ok(policy)
}
