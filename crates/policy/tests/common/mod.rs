//! Loading test cases and evaluating requests.

#![allow(dead_code)]

use std::collections::BTreeMap;

use contrast_policy::{AgentPolicy, ImageConfig, PodInput};
use serde_json::Value;

/// A pod as `contrast generate` passes it.
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) namespace: String,
    pub(crate) spec: Value,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) runtime: contrast_platforms::kata::KataRuntime,
    pub(crate) images: BTreeMap<String, ImageConfig>,
    pub(crate) config_maps: Vec<Value>,
    pub(crate) secrets: Vec<Value>,
}

impl Case {
    pub(crate) fn load(file: &str) -> Case {
        let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        Case::from_value(doc)
    }

    pub(crate) fn from_value(doc: Value) -> Case {
        Case {
            name: doc["name"].as_str().unwrap().to_owned(),
            namespace: doc["namespace"].as_str().unwrap_or_default().to_owned(),
            spec: doc["spec"].clone(),
            labels: serde_json::from_value(doc["labels"].clone()).unwrap_or_default(),
            runtime: contrast_platforms::Platform::MetalQemuSnp.kata_runtime(),
            images: serde_json::from_value(doc["images"].clone()).unwrap(),
            config_maps: doc["config_maps"].as_array().cloned().unwrap_or_default(),
            secrets: doc["secrets"].as_array().cloned().unwrap_or_default(),
        }
    }

    pub(crate) fn input(&self) -> PodInput<'_> {
        PodInput {
            generate_name: false,
            name: &self.name,
            namespace: &self.namespace,
            pod_spec: &self.spec,
            labels: &self.labels,
            runtime: self.runtime,
            images: &self.images,
            config_maps: &self.config_maps,
            secrets: &self.secrets,
        }
    }

    pub(crate) fn policy(&self) -> String {
        contrast_policy::policy_rego(&self.input()).unwrap()
    }

    pub(crate) fn requests(&self) -> Vec<(String, Value)> {
        contrast_policy::expected_requests(&self.input()).unwrap()
    }

    /// The policy as the agent holds it once the sandbox and all its containers are
    /// created (each of those requests allowed): where an exec or a further container is
    /// decided.
    pub(crate) fn running(&self) -> AgentPolicy {
        running(&self.policy(), &self.requests())
    }
}

/// `policy` after the sandbox and container creations among `requests`, each allowed.
pub(crate) fn running(policy: &str, requests: &[(String, Value)]) -> AgentPolicy {
    let mut agent = AgentPolicy::new(policy).unwrap();
    for (name, request) in requests {
        if name == "CreateSandboxRequest" || name == "CreateContainerRequest" {
            let e = agent.decide(name, request).unwrap();
            assert!(
                e.allowed,
                "{name} denied: {:?}\ninput: {request:#}",
                e.prints
            );
        }
    }
    agent
}

/// `policy` after every request of `requests` before `stop`, each allowed: where `stop`
/// is decided in the sandbox's life.
pub(crate) fn before(policy: &str, requests: &[(String, Value)], stop: &Value) -> AgentPolicy {
    let mut agent = AgentPolicy::new(policy).unwrap();
    for (name, request) in requests {
        if request == stop {
            return agent;
        }
        let e = agent.decide(name, request).unwrap();
        assert!(
            e.allowed,
            "{name} denied: {:?}\ninput: {request:#}",
            e.prints
        );
    }
    panic!("the request is not among the requests")
}

/// A policy to decide one request with: its text (a fresh sandbox) or an [`AgentPolicy`]
/// at some point of a sandbox's life (a copy decides, the original is unchanged).
pub(crate) trait Decider {
    fn agent(&self) -> AgentPolicy;
}

impl Decider for str {
    fn agent(&self) -> AgentPolicy {
        AgentPolicy::new(self).unwrap()
    }
}

impl Decider for String {
    fn agent(&self) -> AgentPolicy {
        self.as_str().agent()
    }
}

impl Decider for AgentPolicy {
    fn agent(&self) -> AgentPolicy {
        self.clone()
    }
}

/// Whether the policy allows the request; on a surprise the assertion shows what the
/// policy printed.
pub(crate) fn decide<P: Decider + ?Sized>(policy: &P, name: &str, input: &Value) -> (bool, String) {
    let e = policy.agent().decide(name, input).unwrap();
    (e.allowed, e.prints.join("\n"))
}

pub(crate) fn assert_allowed<P: Decider + ?Sized>(policy: &P, name: &str, input: &Value) {
    let (allowed, prints) = decide(policy, name, input);
    assert!(allowed, "{name} denied: {prints}\ninput: {input:#}");
}

pub(crate) fn assert_denied<P: Decider + ?Sized>(policy: &P, name: &str, input: &Value, why: &str) {
    let (allowed, _) = decide(policy, name, input);
    assert!(!allowed, "{why}: {name} allowed\ninput: {input:#}");
}

/// Denied, and what the policy printed names the reason: `failing` is the list of
/// failed checks exactly as the policy prints it, or a part of another message.
pub(crate) fn assert_denied_by<P: Decider + ?Sized>(
    policy: &P,
    name: &str,
    input: &Value,
    why: &str,
    failing: &str,
) {
    let (allowed, prints) = decide(policy, name, input);
    assert!(!allowed, "{why}: {name} allowed\ninput: {input:#}");
    let listed = prints
        .lines()
        .any(|l| l.ends_with(&format!("fails these checks: {failing}")));
    let other = !prints.contains("fails these checks") && prints.contains(failing);
    assert!(listed || other, "{why}: expected {failing:?} in {prints:?}");
}

/// The CreateContainerRequest for the container named `name`.
pub(crate) fn create_request(requests: &[(String, Value)], name: &str) -> Value {
    requests
        .iter()
        .find(|(n, r)| {
            n == "CreateContainerRequest"
                && r["OCI"]["Annotations"]["io.kubernetes.cri.container-name"] == name
        })
        .map(|(_, r)| r.clone())
        .unwrap_or_else(|| panic!("no CreateContainerRequest for {name}"))
}

pub(crate) fn pause_request(requests: &[(String, Value)]) -> Value {
    requests
        .iter()
        .find(|(n, r)| {
            n == "CreateContainerRequest"
                && r["OCI"]["Annotations"]["io.kubernetes.cri.container-type"] == "sandbox"
        })
        .map(|(_, r)| r.clone())
        .unwrap()
}

/// `request` with `change` applied.
pub(crate) fn changed(request: &Value, change: impl FnOnce(&mut Value)) -> Value {
    let mut r = request.clone();
    change(&mut r);
    r
}

pub(crate) fn request_named<'a>(requests: &'a [(String, Value)], name: &str) -> Vec<&'a Value> {
    requests
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, r)| r)
        .collect()
}
