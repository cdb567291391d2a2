//! Evaluating a policy the way the Kata agent does (docs/runtime.md §8): one regorus
//! engine, Rego v1 (the default of the agent's pinned regorus, which the agent keeps),
//! builtin errors not strict, prints gathered, data seeded with
//! `{"pstate": {}}`, the request as `input`, and the query
//! `data.agent_policy.<RequestName>`. The agent raises regorus's policy length limits
//! (64 KiB per line, 16 MiB, 200,000 lines); so does this.

use std::num::{NonZeroU32, NonZeroUsize};

use regorus::utils::limits::PolicyLengthConfig;

use crate::PolicyError;

/// The outcome of evaluating one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    /// Whether the agent would serve the request.
    pub allowed: bool,
    /// What the policy printed while deciding (the agent puts this into its refusal).
    pub prints: Vec<String>,
}

fn evaluation_error(message: impl std::fmt::Display) -> PolicyError {
    PolicyError::Evaluation {
        message: message.to_string(),
    }
}

/// Evaluates `policy_rego` for one request, as the agent does as the first request of a
/// sandbox (empty state), with what it printed. An undefined result is a refusal, as in the
/// agent. [`AgentPolicy`] decides a sequence of requests.
pub fn evaluate_verbose(
    policy_rego: &str,
    request_name: &str,
    input: &serde_json::Value,
) -> Result<Evaluation, PolicyError> {
    check_request_name(request_name)?;
    AgentPolicy::new(policy_rego)?.decide(request_name, input)
}

/// A request name is a Rego rule name of the policy; nothing else goes into the query.
pub(crate) fn check_request_name(request_name: &str) -> Result<(), PolicyError> {
    if request_name.is_empty() || !request_name.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(evaluation_error(format!(
            "{request_name:?} is not a request name (such as CreateContainerRequest)"
        )));
    }
    Ok(())
}

/// A policy as the Kata agent holds it for the life of a sandbox: one engine, set up as the
/// agent sets it up, that decides the sandbox's requests in order. A rule may answer
/// `{"allowed": …, "ops": [JSON Patch]}` instead of a boolean; when it allows, the agent
/// applies `ops` to the engine's data (the policy's state, `data.pstate`) before the next
/// request, so later verdicts can depend on earlier requests (which container an ID names,
/// the sandbox's namespace). This does the same. A clone is a snapshot of the state: what
/// each of several requests would do at one point of a sandbox's life.
#[derive(Debug, Clone)]
pub struct AgentPolicy {
    engine: regorus::Engine,
}

/// A rule's answer with state changes, as the agent reads it.
#[derive(serde::Deserialize)]
struct StatefulAnswer {
    allowed: bool,
    ops: Option<json_patch::Patch>,
}

impl AgentPolicy {
    /// Loads `policy_rego` into a fresh engine with empty state (`{"pstate": {}}`).
    pub fn new(policy_rego: &str) -> Result<Self, PolicyError> {
        engine(policy_rego).map(|engine| AgentPolicy { engine })
    }

    /// The agent's verdict on `input` as a `request_name` request (such as
    /// `CreateContainerRequest`). An undefined result is a refusal; an answer the agent
    /// could not read, or state changes it could not apply, are errors (the agent fails
    /// the request). State changes of an allowed request are kept.
    pub fn decide(
        &mut self,
        request_name: &str,
        input: &serde_json::Value,
    ) -> Result<Evaluation, PolicyError> {
        check_request_name(request_name)?;
        self.engine
            .set_input_json(&input.to_string())
            .map_err(evaluation_error)?;
        let results = self
            .engine
            .eval_query(format!("data.agent_policy.{request_name}"), false)
            .map_err(evaluation_error)?;
        let prints = self.engine.take_prints().map_err(evaluation_error)?;
        let value = match results.result.as_slice() {
            [] => regorus::Value::Undefined,
            [one] => match one.expressions.as_slice() {
                [expression] => expression.value.clone(),
                _ => return Err(evaluation_error("the query gave more than one expression")),
            },
            _ => return Err(evaluation_error("the query gave more than one result")),
        };
        let allowed = match value {
            regorus::Value::Bool(b) => b,
            regorus::Value::Undefined => false,
            regorus::Value::Object(_) => {
                let json = value.to_json_str().map_err(evaluation_error)?;
                let answer: StatefulAnswer = serde_json::from_str(&json).map_err(|e| {
                    evaluation_error(format!(
                        "data.agent_policy.{request_name} is not {{\"allowed\": bool, \"ops\": [JSON Patch]}}: {e}"
                    ))
                })?;
                if answer.allowed
                    && let Some(ops) = answer.ops
                {
                    self.apply(&ops)?;
                }
                answer.allowed
            }
            other => {
                return Err(evaluation_error(format!(
                    "data.agent_policy.{request_name} is {other}, not true, false or {{allowed, ops}}"
                )));
            }
        };
        Ok(Evaluation { allowed, prints })
    }

    /// The policy's state (`data.pstate`) as JSON.
    pub fn state(&self) -> Result<serde_json::Value, PolicyError> {
        let data = self.engine.get_data();
        let json = data["pstate"].to_json_str().map_err(evaluation_error)?;
        serde_json::from_str(&json).map_err(evaluation_error)
    }

    /// Applies state changes to the engine's data, all or none.
    fn apply(&mut self, ops: &json_patch::Patch) -> Result<(), PolicyError> {
        let json = self
            .engine
            .get_data()
            .to_json_str()
            .map_err(evaluation_error)?;
        let mut data: serde_json::Value = serde_json::from_str(&json).map_err(evaluation_error)?;
        json_patch::patch(&mut data, ops)
            .map_err(|e| evaluation_error(format!("the policy's state changes: {e}")))?;
        let data = regorus::Value::from_json_str(&data.to_string()).map_err(evaluation_error)?;
        self.engine.clear_data();
        self.engine.add_data(data).map_err(evaluation_error)
    }

    /// The value of a Rego expression over the policy, its state and the last request, as
    /// JSON; `None` when it is undefined.
    pub(crate) fn query(
        &mut self,
        expression: &str,
    ) -> Result<Option<serde_json::Value>, PolicyError> {
        let results = self
            .engine
            .eval_query(expression.to_owned(), false)
            .map_err(evaluation_error)?;
        let Some(value) = results
            .result
            .first()
            .and_then(|r| r.expressions.first())
            .map(|e| &e.value)
        else {
            return Ok(None);
        };
        if *value == regorus::Value::Undefined {
            return Ok(None);
        }
        let json = value.to_json_str().map_err(evaluation_error)?;
        serde_json::from_str(&json)
            .map(Some)
            .map_err(evaluation_error)
    }
}

/// An engine set up as the agent sets it up, with the policy loaded.
fn engine(policy_rego: &str) -> Result<regorus::Engine, PolicyError> {
    let mut engine = regorus::Engine::new();
    // The agent never calls set_rego_v0, and its pinned regorus defaults to v1: a v0-only
    // policy is refused there, so it is refused here.
    engine.set_rego_v0(false);
    engine.set_strict_builtin_errors(false);
    engine.set_gather_prints(true);
    engine.set_policy_length_config(PolicyLengthConfig {
        max_col: NonZeroU32::new(64 * 1024).unwrap_or(NonZeroU32::MIN),
        max_file_bytes: NonZeroUsize::new(16 * 1024 * 1024).unwrap_or(NonZeroUsize::MIN),
        max_lines: NonZeroUsize::new(200_000).unwrap_or(NonZeroUsize::MIN),
    });
    engine
        .add_data(regorus::Value::from_json_str(r#"{"pstate": {}}"#).map_err(evaluation_error)?)
        .map_err(evaluation_error)?;
    engine
        .add_policy("policy.rego".to_owned(), policy_rego.to_owned())
        .map_err(evaluation_error)?;
    Ok(engine)
}

/// Evaluates `policy_rego` for one request, as the agent does: true if it would serve
/// the request.
pub fn evaluate(
    policy_rego: &str,
    request_name: &str,
    input: &serde_json::Value,
) -> Result<bool, PolicyError> {
    evaluate_verbose(policy_rego, request_name, input).map(|e| e.allowed)
}
