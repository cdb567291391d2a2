//! The pods of `crates/policy/tests/data`: their generated policy and the agent requests a
//! faithful Kata runtime sends for them, for tests outside the policy crate (the agent on
//! the host and in the guest).

use std::collections::BTreeMap;

use contrast_policy::{ImageConfig, PodInput};
use serde_json::Value;

/// One pod's policy and the requests of a faithful runtime, in order (as
/// `contrast_policy::expected_requests` gives them: request name and policy input).
#[derive(Debug, Clone)]
pub struct PodCase {
    /// The generated Rego policy.
    pub policy: String,
    /// `(request name, request JSON)` in the order the runtime sends them.
    pub requests: Vec<(String, Value)>,
}

impl PodCase {
    /// The first request named `name`.
    pub fn request(&self, name: &str) -> &Value {
        self.nth_request(name, 0)
    }

    /// The `n`th (from 0) request named `name`.
    pub fn nth_request(&self, name: &str, n: usize) -> &Value {
        self.requests
            .iter()
            .filter(|(r, _)| r == name)
            .nth(n)
            .map(|(_, v)| v)
            .unwrap_or_else(|| panic!("no {name} number {n} among the pod's requests"))
    }
}

/// The pod `file` of `crates/policy/tests/data` (`web.json`, `mesh.json`) on Metal-QEMU-SNP.
pub fn pod_case(file: &str) -> PodCase {
    let path = format!(
        "{}/../../crates/policy/tests/data/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    pod_case_of(&doc, &path)
}

/// A pod in the format of `crates/policy/tests/data` (`name`, `namespace`, `spec`,
/// `images`, …), `what` naming it in panics.
pub fn pod_case_of(doc: &Value, what: &str) -> PodCase {
    let path = what;
    let labels: BTreeMap<String, String> =
        serde_json::from_value(doc["labels"].clone()).unwrap_or_default();
    let images: BTreeMap<String, ImageConfig> = serde_json::from_value(doc["images"].clone())
        .unwrap_or_else(|e| panic!("{path}: images: {e}"));
    let config_maps = doc["config_maps"].as_array().cloned().unwrap_or_default();
    let secrets = doc["secrets"].as_array().cloned().unwrap_or_default();
    let input = PodInput {
        generate_name: false,
        name: doc["name"].as_str().unwrap_or_default(),
        namespace: doc["namespace"].as_str().unwrap_or_default(),
        pod_spec: &doc["spec"],
        labels: &labels,
        runtime: contrast_platforms::Platform::MetalQemuSnp.kata_runtime(),
        images: &images,
        config_maps: &config_maps,
        secrets: &secrets,
    };
    PodCase {
        policy: contrast_policy::policy_rego(&input)
            .unwrap_or_else(|e| panic!("{path}: policy: {e}")),
        requests: contrast_policy::expected_requests(&input)
            .unwrap_or_else(|e| panic!("{path}: requests: {e}")),
    }
}

/// A one-container pod (`app`, namespace `default`) running `reference`, an image whose
/// manifest digest is `digest` and whose entrypoint is `entrypoint`: its policy and the
/// requests of a faithful runtime.
pub fn single_container_pod(reference: &str, digest: &str, entrypoint: &[&str]) -> PodCase {
    let doc = serde_json::json!({
        "name": "app",
        "namespace": "default",
        "spec": {
            "runtimeClassName": "contrast-cc-metal-qemu-snp-0123abcd",
            "containers": [{"name": "app", "image": reference}],
        },
        "images": {
            reference: {
                "digest": digest,
                "env": ["PATH=/usr/bin:/bin"],
                "entrypoint": entrypoint,
                "cmd": [],
                "working_dir": "",
                "user": "",
                "volumes": [],
            }
        }
    });
    pod_case_of(&doc, "the single-container pod")
}
