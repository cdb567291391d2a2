//! `evaluate` reads policies the way the Kata agent does: the deny-all policy of the
//! guest's initdata check, our rules in Rego v1 (the agent's) and v0, and every request
//! name the agent asks about.

#![allow(clippy::unwrap_used)]

mod common;

use contrast_initdata::agent_policy::{AGENT_REQUESTS, deny_all};
use serde_json::json;

#[test]
fn the_deny_all_policy_denies_everything_with_its_reason() {
    let policy = deny_all("initdata digest mismatch: \"x\"");
    for request in AGENT_REQUESTS {
        let e = contrast_policy::evaluate_verbose(&policy, request, &json!({})).unwrap();
        assert!(!e.allowed, "{request}");
        assert!(
            e.prints
                .iter()
                .any(|p| p.contains("initdata digest mismatch: \"x\"")),
            "{request}: {:?}",
            e.prints
        );
    }
    assert!(!contrast_policy::evaluate(&policy, "AllowRequestsFailingPolicy", &json!({})).unwrap());
}

#[test]
fn our_rules_decide_every_request_the_agent_asks_about() {
    // A request the policy leaves undefined is refused without a reason; each one the
    // agent asks about gets an explicit default.
    for request in AGENT_REQUESTS {
        assert!(
            contrast_policy::RULES.contains(&format!("\ndefault {request} := ")),
            "{request} has no default"
        );
    }
}

/// The agent's regorus reads Rego v1 (docs/runtime.md §8): a policy only Rego v0 accepts
/// (a rule body without `if`) does not load there, so `evaluate` refuses it too.
#[test]
fn evaluation_is_rego_v1_as_in_the_agent() {
    let v1 = "package agent_policy\n\ndefault CreateSandboxRequest := false\n\nCreateSandboxRequest if {\n\ttrue\n}\n";
    assert!(contrast_policy::evaluate(v1, "CreateSandboxRequest", &json!({})).unwrap());
    let v0_only = "package agent_policy\n\ndefault CreateSandboxRequest = false\n\nCreateSandboxRequest {\n\ttrue\n}\n";
    let err = contrast_policy::evaluate(v0_only, "CreateSandboxRequest", &json!({})).unwrap_err();
    assert!(err.to_string().contains("policy"), "{err}");
    // The same text is a valid Rego v0 module.
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(true);
    engine
        .add_policy("v0.rego".to_owned(), v0_only.to_owned())
        .unwrap();
}

#[test]
fn the_policy_is_valid_rego_v0_and_v1() {
    let case = common::Case::load("web.json");
    let policy = case.policy();
    let sandbox = &case.requests()[0].1;
    for v0 in [true, false] {
        let mut engine = regorus::Engine::new();
        engine.set_rego_v0(v0);
        engine
            .add_policy("policy.rego".to_owned(), policy.clone())
            .unwrap();
        engine.set_input_json(&sandbox.to_string()).unwrap();
        let allowed = engine
            .eval_bool_query(
                "data.agent_policy.CreateSandboxRequest.allowed".to_owned(),
                false,
            )
            .unwrap();
        assert!(allowed, "v0: {v0}");
        let denied = engine
            .eval_bool_query("data.agent_policy.SetPolicyRequest".to_owned(), false)
            .unwrap();
        assert!(!denied, "v0: {v0}");
    }
}

#[test]
fn refusals() {
    let err = contrast_policy::evaluate(
        "package agent_policy\nx := {",
        "CreateContainerRequest",
        &json!({}),
    )
    .unwrap_err();
    assert!(
        err.to_string().starts_with("evaluating the policy: "),
        "{err}"
    );
    let err = contrast_policy::evaluate(contrast_policy::RULES, "x; true", &json!({})).unwrap_err();
    assert!(err.to_string().contains("not a request name"), "{err}");
    let err = contrast_policy::evaluate(contrast_policy::RULES, "", &json!({})).unwrap_err();
    assert!(err.to_string().contains("not a request name"), "{err}");
    // A result that is neither a boolean nor an {allowed, ops} answer is not a decision.
    let err = contrast_policy::evaluate(
        "package agent_policy\nCreateContainerRequest := \"allowed\"\n",
        "CreateContainerRequest",
        &json!({}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("not true, false or"), "{err}");
    // Undefined is a refusal.
    assert!(
        !contrast_policy::evaluate(
            "package agent_policy\n",
            "CreateContainerRequest",
            &json!({})
        )
        .unwrap()
    );
}

#[test]
fn long_lines_are_read_as_the_agent_reads_them() {
    // regorus's default limit is 1024 columns; the agent raises it, and so do we.
    let value = "x".repeat(5000);
    let policy =
        format!("package agent_policy\nCreateContainerRequest := input.v == \"{value}\"\n");
    assert!(
        contrast_policy::evaluate(&policy, "CreateContainerRequest", &json!({"v": value})).unwrap()
    );
}

/// A policy that records which name each container ID was created with, and lets an exec
/// run only in a container created before it, the way the agent keeps state (`{allowed,
/// ops}` answers patch `data.pstate`).
const STATEFUL: &str = r#"package agent_policy

default CreateContainerRequest := false

CreateContainerRequest := {"allowed": input.allow, "ops": [{"op": "add", "path": concat("/", ["", "pstate", input.id]), "value": input.name}]}

default ExecProcessRequest := false

ExecProcessRequest if data.pstate[input.id] == "web"

default RemoveContainerRequest := false

RemoveContainerRequest := {"allowed": true, "ops": [{"op": "remove", "path": concat("/", ["", "pstate", input.id])}]}
"#;

#[test]
fn state_changes_of_allowed_requests_are_kept_in_order() {
    let mut policy = contrast_policy::AgentPolicy::new(STATEFUL).unwrap();
    let exec = |id: &str| json!({"id": id});
    assert!(
        !policy
            .decide("ExecProcessRequest", &exec("a"))
            .unwrap()
            .allowed
    );
    let create = json!({"allow": true, "id": "a", "name": "web"});
    assert!(
        policy
            .decide("CreateContainerRequest", &create)
            .unwrap()
            .allowed
    );
    assert_eq!(policy.state().unwrap(), json!({"a": "web"}));
    assert!(
        policy
            .decide("ExecProcessRequest", &exec("a"))
            .unwrap()
            .allowed
    );
    assert!(
        policy
            .decide("RemoveContainerRequest", &exec("a"))
            .unwrap()
            .allowed
    );
    assert!(
        !policy
            .decide("ExecProcessRequest", &exec("a"))
            .unwrap()
            .allowed
    );
    // A one-request evaluation starts from empty state, as a fresh sandbox does.
    assert!(!contrast_policy::evaluate(STATEFUL, "ExecProcessRequest", &exec("a")).unwrap());
}

#[test]
fn state_changes_of_refused_requests_are_dropped() {
    let mut policy = contrast_policy::AgentPolicy::new(STATEFUL).unwrap();
    let create = json!({"allow": false, "id": "b", "name": "web"});
    assert!(
        !policy
            .decide("CreateContainerRequest", &create)
            .unwrap()
            .allowed
    );
    assert_eq!(policy.state().unwrap(), json!({}));
    assert!(
        !policy
            .decide("ExecProcessRequest", &json!({"id": "b"}))
            .unwrap()
            .allowed
    );
}

#[test]
fn state_changes_that_cannot_be_applied_fail_the_request() {
    // The agent fails a request whose patch does not apply (here: removing what is not
    // there), and keeps its state as it was.
    let mut policy = contrast_policy::AgentPolicy::new(STATEFUL).unwrap();
    let err = policy
        .decide("RemoveContainerRequest", &json!({"id": "c"}))
        .unwrap_err();
    assert!(err.to_string().contains("state changes"), "{err}");
    assert_eq!(policy.state().unwrap(), json!({}));
    let answer = "package agent_policy\n\nCreateContainerRequest := {\"allowed\": \"yes\"}\n";
    let err = contrast_policy::evaluate(answer, "CreateContainerRequest", &json!({})).unwrap_err();
    assert!(err.to_string().contains("allowed"), "{err}");
}
