//! Policy first: every request is serialised as the Kata agent serialises it and decided by
//! the pod's policy before the agent acts on it.

use std::path::Path;
use std::sync::Mutex;

use contrast_initdata::agent_policy::deny_all;
use contrast_policy::AgentPolicy;
use protobuf::MessageFull;
use serde::Serialize;
use ttrpc::Code;

use crate::status;

use crate::proto::agent::{CopyFileRequest, SetPolicyRequest};

/// Where the policy the agent enforces came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicySource {
    /// The policy file the initdata check installed: the verified initdata's policy, or
    /// the deny-all policy that carries why the initdata was refused. Never replaced.
    Initdata,
    /// No policy file: the agent installed a deny-all policy that says so.
    Missing,
}

/// The pod's policy as the agent holds it for the sandbox's life.
#[derive(Debug)]
pub struct PolicyGate {
    policy: Mutex<AgentPolicy>,
    source: PolicySource,
}

/// Why the agent could not set up any policy (it then does not serve).
#[derive(Debug, thiserror::Error)]
pub enum PolicyLoadError {
    /// The policy file exists but is not a policy regorus can load.
    #[error("the agent policy at {path} does not load (the initdata check installs it)")]
    Invalid {
        /// The policy file.
        path: String,
        /// What regorus said.
        #[source]
        source: contrast_policy::PolicyError,
    },
    /// Even the deny-all policy does not load: a bug.
    #[error("the agent's deny-all policy does not load")]
    DenyAll(#[source] contrast_policy::PolicyError),
}

impl PolicyGate {
    /// The policy at `path`, as the initdata check installed it. Without a file every
    /// request is refused, with the reason in each refusal: the agent must not serve
    /// before the initdata check has installed a policy.
    pub fn from_file(path: &Path) -> Result<Self, PolicyLoadError> {
        match std::fs::read_to_string(path) {
            Ok(text) => AgentPolicy::new(&text)
                .map(|policy| PolicyGate::new(policy, PolicySource::Initdata))
                .map_err(|source| PolicyLoadError::Invalid {
                    path: path.display().to_string(),
                    source,
                }),
            Err(e) => {
                let reason = format!(
                    "no agent policy at {}: {e}; the initdata check did not run or did not finish",
                    path.display()
                );
                AgentPolicy::new(&deny_all(&reason))
                    .map(|policy| PolicyGate::new(policy, PolicySource::Missing))
                    .map_err(PolicyLoadError::DenyAll)
            }
        }
    }

    /// A gate around `policy`.
    pub fn new(policy: AgentPolicy, source: PolicySource) -> Self {
        PolicyGate {
            policy: Mutex::new(policy),
            source,
        }
    }

    /// Where the policy came from.
    pub fn source(&self) -> PolicySource {
        self.source
    }

    /// Decides `request` as the Kata agent does: the query is the message's name, the
    /// input its serde JSON.
    pub fn check<R: MessageFull + Serialize>(&self, request: &R) -> ttrpc::Result<()> {
        let name = R::descriptor().name().to_owned();
        let input = serde_json::to_value(request).map_err(|e| {
            internal(
                &name,
                &format!("serialising the request for the policy: {e}"),
            )
        })?;
        self.decide(&name, &input)
    }

    /// Decides a `CopyFileRequest` on what the Kata agent hands its policy for it: the
    /// request without its data, with the file type read from `file_mode` and, for a
    /// symlink, its target. A symlink target that is not UTF-8 is refused before the
    /// policy, as in the Kata agent.
    pub fn check_copy_file(&self, request: &CopyFileRequest) -> ttrpc::Result<()> {
        let input = copy_file_input(request)?;
        self.decide("CopyFileRequest", &input)
    }

    /// Decides a `SetPolicyRequest`. A policy the initdata check installed is the one the
    /// pod's evidence binds (HOST_DATA), so it is never replaced. Otherwise, as in the
    /// Kata agent, the current policy decides `{"policy": <new text>}`, and an allowed new
    /// policy replaces it with fresh state.
    pub fn set_policy(&self, request: &SetPolicyRequest) -> ttrpc::Result<()> {
        const NAME: &str = "SetPolicyRequest";
        if self.source == PolicySource::Initdata {
            return Err(status(
                Code::PERMISSION_DENIED,
                format!(
                    "{NAME} is blocked by policy: the pod's policy came from its verified \
                     initdata and is never replaced"
                ),
            ));
        }
        self.decide(NAME, &serde_json::json!({ "policy": request.policy }))?;
        let new = AgentPolicy::new(&request.policy).map_err(|e| {
            status(
                Code::INVALID_ARGUMENT,
                format!("{NAME}: the new policy does not load: {e}"),
            )
        })?;
        *self.lock(NAME)? = new;
        Ok(())
    }

    fn decide(&self, name: &str, input: &serde_json::Value) -> ttrpc::Result<()> {
        let evaluation = self
            .lock(name)?
            .decide(name, input)
            .map_err(|e| internal(name, &contrast_platforms::error_chain(&e)))?;
        if evaluation.allowed {
            return Ok(());
        }
        tracing::warn!(request = name, prints = ?evaluation.prints, "refused by policy");
        Err(status(
            Code::PERMISSION_DENIED,
            format!(
                "{name} is blocked by policy: {}",
                evaluation.prints.join(" ")
            ),
        ))
    }

    fn lock(&self, name: &str) -> ttrpc::Result<std::sync::MutexGuard<'_, AgentPolicy>> {
        self.policy
            .lock()
            .map_err(|_| internal(name, "the policy lock was poisoned by an earlier failure"))
    }
}

fn internal(name: &str, message: &str) -> ttrpc::Error {
    status(Code::INTERNAL, format!("{name}: internal error: {message}"))
}

/// The policy input of a `CopyFileRequest` (the Kata agent's `PolicyCopyFileRequest`).
pub fn copy_file_input(request: &CopyFileRequest) -> ttrpc::Result<serde_json::Value> {
    contrast_agent_protocol::policy_input::copy_file_input(request)
        .map_err(|e| status(Code::INVALID_ARGUMENT, e.to_string()))
}
