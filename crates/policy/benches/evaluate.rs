//! Policy evaluation of one CreateContainerRequest as the Kata agent does it (our rules,
//! the sandbox's state after its pause container), beside the engine's floor: the same
//! request against a one-rule policy that allows it, measured in the same run. Report the
//! ratio floor time / evaluation time. Each iteration decides on a copy of the engine (the
//! copy is made outside the timing), as the agent decides each request once.
//!
//! `cargo bench -p contrast-policy --bench evaluate`

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing benchmark

use std::collections::BTreeMap;
use std::hint::black_box;

use contrast_policy::{AgentPolicy, ImageConfig, PodInput};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use serde_json::Value;

const WEB: &str = include_str!("../tests/data/web.json");

const FLOOR: &str = "package agent_policy\n\nCreateContainerRequest := true\n";

fn evaluation(c: &mut Criterion) {
    let doc: Value = serde_json::from_str(WEB).unwrap();
    let images: BTreeMap<String, ImageConfig> =
        serde_json::from_value(doc["images"].clone()).unwrap();
    let labels = BTreeMap::new();
    let config_maps = doc["config_maps"].as_array().cloned().unwrap_or_default();
    let secrets = doc["secrets"].as_array().cloned().unwrap_or_default();
    let input = PodInput {
        name: doc["name"].as_str().unwrap(),
        generate_name: false,
        namespace: doc["namespace"].as_str().unwrap_or_default(),
        pod_spec: &doc["spec"],
        labels: &labels,
        runtime: contrast_platforms::Platform::MetalQemuSnp.kata_runtime(),
        images: &images,
        config_maps: &config_maps,
        secrets: &secrets,
    };
    let policy = contrast_policy::policy_rego(&input).unwrap();
    let requests = contrast_policy::expected_requests(&input).unwrap();
    // The sandbox and its pause container, then the first application container.
    let mut running = AgentPolicy::new(&policy).unwrap();
    for (name, request) in &requests[..2] {
        assert!(running.decide(name, request).unwrap().allowed);
    }
    let (name, container) = &requests[2];
    assert_eq!(name, "CreateContainerRequest");
    assert!(running.clone().decide(name, container).unwrap().allowed);
    let floor = AgentPolicy::new(FLOOR).unwrap();
    assert!(floor.clone().decide(name, container).unwrap().allowed);

    let mut group = c.benchmark_group("create_container");
    group.bench_function("one_rule_floor", |b| {
        b.iter_batched(
            || floor.clone(),
            |mut agent| black_box(agent.decide(name, black_box(container)).unwrap()),
            BatchSize::SmallInput,
        );
    });
    group.bench_function("our_rules", |b| {
        b.iter_batched(
            || running.clone(),
            |mut agent| black_box(agent.decide(name, black_box(container)).unwrap()),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, evaluation);
criterion_main!(benches);
