//! `/metrics` (port 9102, with `CONTRAST_METRICS`) under Contrast's names: the gRPC
//! server metrics per method and status code with a latency histogram
//! (`contrast_grpc_server_*`, go-grpc-prometheus's names), the manifest generation, the
//! mesh API's attestation failures.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use contrast_api::userapi::GetManifestsRequest;
use contrast_testkit::{Deployment, TempDir};

/// The value of the sample `name` whose labels include every one of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .find(|line| {
            labels
                .iter()
                .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_calls_are_counted_by_method_and_code_with_their_latency() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let process = common::start_up(&deployment, store.path());
    let validators = common::coordinator_validators(&deployment);
    let mut client = common::client(&process.user_addr(), &validators, None).await;

    // Two refusals and one success of SetManifest, one GetManifests, one NewMeshCert.
    let manifest = std::fs::read(deployment.path("manifest.json")).unwrap();
    assert!(client.get_manifests(GetManifestsRequest {}).await.is_err());
    let mut incomplete = common::set_request(&deployment, &manifest);
    incomplete.policies.pop();
    assert!(client.set_manifest(incomplete).await.is_err());
    client
        .set_manifest(common::set_request(&deployment, &manifest))
        .await
        .unwrap();
    client.get_manifests(GetManifestsRequest {}).await.unwrap();
    contrast_testkit::new_mesh_cert(&process.mesh_addr(), deployment.issuer("web"))
        .await
        .unwrap();

    let (status, text) = contrast_testkit::http_get(&process.probe_addr(), "/metrics").unwrap();
    assert_eq!(status, 200, "{text}");
    let user = "edgelesssys.contrast.userapi.UserAPI";
    let call = |method: &'static str| {
        vec![
            ("grpc_type", "unary"),
            ("grpc_service", user),
            ("grpc_method", method),
        ]
    };
    let with_code = |method: &'static str, code: &'static str| {
        let mut labels = call(method);
        labels.push(("grpc_code", code));
        labels
    };
    let value = |name: &str, labels: &[(&str, &str)]| {
        sample(&text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
    };
    assert_eq!(
        value("contrast_grpc_server_started_total", &call("SetManifest")),
        2.0
    );
    assert_eq!(
        value(
            "contrast_grpc_server_handled_total",
            &with_code("SetManifest", "OK")
        ),
        1.0
    );
    assert_eq!(
        value(
            "contrast_grpc_server_handled_total",
            &with_code("SetManifest", "InvalidArgument")
        ),
        1.0
    );
    assert_eq!(
        value(
            "contrast_grpc_server_handled_total",
            &with_code("GetManifests", "FailedPrecondition")
        ),
        1.0
    );
    assert_eq!(
        value(
            "contrast_grpc_server_handled_total",
            &with_code("GetManifests", "OK")
        ),
        1.0
    );
    assert_eq!(
        value(
            "contrast_grpc_server_handling_seconds_count",
            &call("SetManifest")
        ),
        2.0
    );
    assert!(
        sample(
            &text,
            "contrast_grpc_server_handling_seconds_bucket",
            &[("grpc_method", "SetManifest"), ("le", "10.0")]
        )
        .is_some(),
        "{text}"
    );
    assert_eq!(
        value(
            "contrast_grpc_server_handled_total",
            &[
                ("grpc_service", "meshapi.MeshAPI"),
                ("grpc_method", "NewMeshCert"),
                ("grpc_code", "OK")
            ]
        ),
        1.0
    );
    assert_eq!(value("contrast_coordinator_manifest_generation", &[]), 1.0);
    assert_eq!(
        value("contrast_meshapi_attestation_failures_total", &[]),
        0.0
    );
}
