//! SetManifest, GetManifests and Recover refusals that the lifecycle tests do not reach:
//! each with its gRPC code and a message that says what to do.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use contrast_api::userapi::GetManifestsRequest;
use contrast_testkit::{Deployment, TempDir};
use tonic::Code;

fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needle: &str) {
    let status = result.expect_err("expected a refusal");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(needle),
        "{needle:?} not in {:?}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_or_incomplete_requests_are_refused() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let process = common::start_up(&deployment, store.path());
    let validators = common::coordinator_validators(&deployment);
    let mut client = common::client(&process.user_addr(), &validators, None).await;

    // Nothing set yet.
    refused(
        client.get_manifests(GetManifestsRequest {}).await,
        Code::FailedPrecondition,
        "not initialized",
    );
    let recover = contrast_api::userapi::RecoverRequest {
        seed: vec![7; 64],
        salt: vec![7; 32],
        force: true,
        ..Default::default()
    };
    let mut owner_client = common::client(
        &process.user_addr(),
        &validators,
        Some(common::seedshare_owner_key(&deployment)),
    )
    .await;
    refused(
        owner_client.recover(recover).await,
        Code::FailedPrecondition,
        "no state to recover",
    );

    // Not a manifest.
    let mut request = common::set_request(&deployment, b"{\"Policies\": 3}");
    refused(
        client.set_manifest(request.clone()).await,
        Code::InvalidArgument,
        "manifest",
    );

    // A policy the manifest names but the request does not carry.
    let manifest = std::fs::read(deployment.path("manifest.json")).unwrap();
    request = common::set_request(&deployment, &manifest);
    request.policies.pop();
    refused(
        client.set_manifest(request).await,
        Code::InvalidArgument,
        "no policy provided for hash",
    );

    // Nothing was stored by the refused requests: the first complete set still works.
    client
        .set_manifest(common::set_request(&deployment, &manifest))
        .await
        .unwrap();

    // A signature without the signer's public key.
    let mut signed = common::set_request(&deployment, &manifest);
    signed.signature = vec![0x30, 0x00];
    refused(
        client.set_manifest(signed).await,
        Code::InvalidArgument,
        "SignerPublicKey",
    );
}
