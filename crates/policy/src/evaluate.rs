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

/// Evaluates `policy_rego` for one request, as the agent does, with what it printed.
/// An undefined result is a refusal, as in the agent.
pub fn evaluate_verbose(
    policy_rego: &str,
    request_name: &str,
    input: &serde_json::Value,
) -> Result<Evaluation, PolicyError> {
    check_request_name(request_name)?;
    LoadedPolicy::new(policy_rego, input)?.decide(request_name)
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

/// A policy and a request in one engine set up as the agent sets it up: the verdict, then
/// (for explanations) what rules of the policy computed, without parsing it again.
pub(crate) struct LoadedPolicy(regorus::Engine);

impl LoadedPolicy {
    pub(crate) fn new(policy_rego: &str, input: &serde_json::Value) -> Result<Self, PolicyError> {
        engine(policy_rego, input).map(LoadedPolicy)
    }

    /// The agent's verdict on the request ([`check_request_name`] first).
    pub(crate) fn decide(&mut self, request_name: &str) -> Result<Evaluation, PolicyError> {
        let engine = &mut self.0;
        let results = engine
            .eval_query(format!("data.agent_policy.{request_name}"), false)
            .map_err(evaluation_error)?;
        let prints = engine.take_prints().map_err(evaluation_error)?;
        let allowed = match results.result.as_slice() {
            [] => false,
            [one] => match one.expressions.as_slice() {
                [expression] => match &expression.value {
                    regorus::Value::Bool(b) => *b,
                    regorus::Value::Undefined => false,
                    other => {
                        return Err(evaluation_error(format!(
                            "data.agent_policy.{request_name} is {other}, not true or false"
                        )));
                    }
                },
                _ => return Err(evaluation_error("the query gave more than one expression")),
            },
            _ => return Err(evaluation_error("the query gave more than one result")),
        };
        Ok(Evaluation { allowed, prints })
    }

    /// The value of a Rego expression over the policy and request, as JSON; `None` when
    /// it is undefined.
    pub(crate) fn query(
        &mut self,
        expression: &str,
    ) -> Result<Option<serde_json::Value>, PolicyError> {
        let results = self
            .0
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

/// An engine set up as the agent sets it up, with the policy and the request loaded.
fn engine(policy_rego: &str, input: &serde_json::Value) -> Result<regorus::Engine, PolicyError> {
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
    engine
        .set_input_json(&input.to_string())
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
