//! A refusal explained: each failed check of the rules, with what the policy expects and
//! what the request carries; an allowed request has no failed checks.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use contrast_policy::explain;
use serde_json::{Value, json};

#[test]
fn an_allowed_request_has_no_failed_checks() {
    let case = Case::load("web.json");
    let mut agent = contrast_policy::AgentPolicy::new(&case.policy()).unwrap();
    for (name, request) in case.requests() {
        let e = agent.explain(&name, &request).unwrap();
        assert!(e.evaluation.allowed, "{name}");
        assert!(e.failed.is_empty(), "{name}: {:?}", e.failed);
    }
}

#[test]
fn each_failed_check_names_the_expected_and_the_actual_value() {
    let case = Case::load("web.json");
    let policy = case.policy();
    let requests = case.requests();
    let web = create_request(&requests, "web");
    let mut attacked = web.clone();
    attacked["OCI"]["Process"]["Args"] = json!(["/bin/sh", "-c", "cat /secrets"]);
    attacked["OCI"]["Process"]["Cwd"] = json!("/root");

    let e = explain(&policy, "CreateContainerRequest", &attacked).unwrap();
    assert!(!e.evaluation.allowed);
    assert_eq!(e.target.as_deref(), Some("container web"));
    let checks: Vec<&str> = e.failed.iter().map(|f| f.check.as_str()).collect();
    assert_eq!(checks, ["args", "cwd"], "{:?}", e.failed);
    let args = &e.failed[0];
    assert_eq!(args.actual, json!(["/bin/sh", "-c", "cat /secrets"]));
    assert_eq!(args.expected, web["OCI"]["Process"]["Args"]);
    assert_eq!(e.failed[1].actual, json!("/root"));
    assert_eq!(e.failed[1].expected, web["OCI"]["Process"]["Cwd"]);
    // The agent's own message names the same checks.
    assert!(
        e.evaluation.prints.iter().any(|p| p.contains("args, cwd")),
        "{:?}",
        e.evaluation.prints
    );
}

#[test]
fn a_container_the_policy_does_not_have_is_said_without_checks() {
    let case = Case::load("web.json");
    let policy = case.policy();
    let mut other = create_request(&case.requests(), "web");
    other["OCI"]["Annotations"]["io.kubernetes.cri.container-name"] = Value::from("intruder");
    let e = explain(&policy, "CreateContainerRequest", &other).unwrap();
    assert!(!e.evaluation.allowed);
    assert_eq!(e.target, None);
    assert!(e.failed.is_empty());
    assert!(
        e.evaluation.prints.iter().any(|p| p.contains("intruder")),
        "{:?}",
        e.evaluation.prints
    );
}
