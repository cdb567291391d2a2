//! The deny-all policy in the engine the Kata agent uses (regorus), evaluated the way
//! the agent evaluates it (docs/runtime.md §8): every request is `false`, the
//! reason is among the prints gathered for each refusal, and the debug escape hatch is
//! off. In Rego v1 (the agent's pinned regorus, docs/runtime.md §8) and v0.

#![allow(clippy::unwrap_used)]

use contrast_initdata_check::policy::{AGENT_REQUESTS, deny_all};
use regorus::{Engine, Value};

const REASON: &str = "initdata digest mismatch: \"quoted\"\nsecond line \\ backslash";

fn agent_engine(rego_v0: bool, policy: &str) -> Engine {
    let mut engine = Engine::new();
    engine.set_rego_v0(rego_v0);
    engine.set_strict_builtin_errors(false);
    engine.set_gather_prints(true);
    engine
        .add_data(Value::from_json_str(r#"{"pstate": {}}"#).unwrap())
        .unwrap();
    engine
        .add_policy("agent_policy".to_owned(), policy.to_owned())
        .unwrap();
    engine
}

fn evaluate(engine: &mut Engine, request: &str) -> (Option<Value>, String) {
    engine.set_input_json("{}").unwrap();
    let results = engine
        .eval_query(format!("data.agent_policy.{request}"), false)
        .unwrap();
    let prints = engine.take_prints().unwrap().join(" ");
    let value = match results.result.as_slice() {
        [] => None,
        [one] => Some(one.expressions[0].value.clone()),
        more => panic!("{request}: {} results", more.len()),
    };
    (value, prints)
}

#[test]
fn every_request_is_refused_with_the_reason() {
    for rego_v0 in [true, false] {
        let mut engine = agent_engine(rego_v0, &deny_all(REASON));
        for request in AGENT_REQUESTS {
            let (value, prints) = evaluate(&mut engine, request);
            assert_eq!(value, Some(Value::Bool(false)), "{request} (v0: {rego_v0})");
            assert!(
                prints.contains(&format!("Contrast initdata check failed: {REASON}")),
                "{request} (v0: {rego_v0}): {prints:?}"
            );
        }
        let (value, prints) = evaluate(&mut engine, "AllowRequestsFailingPolicy");
        assert_eq!(value, Some(Value::Bool(false)), "v0: {rego_v0}");
        assert!(prints.is_empty(), "{prints:?}");
    }
}

#[test]
fn a_request_the_policy_does_not_name_is_undefined_which_the_agent_refuses() {
    let mut engine = agent_engine(true, &deny_all(REASON));
    let (value, _) = evaluate(&mut engine, "SomeFutureRequest");
    assert_eq!(value, None);
}

#[test]
fn the_same_engine_allows_what_an_allowing_policy_allows() {
    // Guards the harness: a policy that allows is seen to allow.
    let policy = "package agent_policy\ndefault CreateContainerRequest := true\n";
    let mut engine = agent_engine(true, policy);
    assert_eq!(
        evaluate(&mut engine, "CreateContainerRequest").0,
        Some(Value::Bool(true))
    );
}
