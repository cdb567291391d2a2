//! The history a request expects: SetManifest's PreviousTransitionHash is enforced on both
//! authorisation paths (all zero: only a first set), and Recover's ExpectedTransitionHash
//! refuses a store whose latest pointer was rolled back to an older signed one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use contrast_api::userapi::SetManifestRequest;
use contrast_history::{FsStore, LATEST_KEY, ZERO_HASH, next_transition_hash};
use contrast_testkit::{Deployment, TempDir};
use p384::ecdsa::signature::hazmat::PrehashSigner;
use p384::ecdsa::{DerSignature, SigningKey};
use tonic::Code;

fn refused<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, needles: &[&str]) {
    let status = result.expect_err("expected a refusal");
    assert_eq!(status.code(), code, "{}", status.message());
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "{needle:?} not in {:?}",
            status.message()
        );
    }
}

fn expecting(request: SetManifestRequest, previous: [u8; 32]) -> SetManifestRequest {
    SetManifestRequest {
        previous_transition_hash: previous.to_vec(),
        ..request
    }
}

/// A detached signature of the transition after `previous`, as `openssl dgst -sha256
/// -sign workload-owner.pem next-transition` makes it.
fn signed(deployment: &Deployment, manifest: &[u8], previous: [u8; 32]) -> SetManifestRequest {
    let key = SigningKey::from(deployment.owner_key.secret_key());
    let message = hex::encode(next_transition_hash(manifest, previous));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message.as_bytes());
    let signature: DerSignature = key.sign_prehash(digest.as_ref()).unwrap();
    SetManifestRequest {
        signature: signature.as_bytes().to_vec(),
        signer_public_key: deployment.owner_key.public_key_der().to_vec(),
        ..expecting(common::set_request(deployment, manifest), previous)
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn set_expecting_another_history_refused_on_both_paths() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let process = common::start_up(&deployment, store.path());
    let validators = common::coordinator_validators(&deployment);
    let addr = process.user_addr();
    let mut owner = common::client(&addr, &validators, Some(common::owner_key(&deployment))).await;
    let m0 = common::manifest_variant(&deployment, "m0");
    let m1 = common::manifest_variant(&deployment, "m1");

    // Uninitialized: a request expecting some history is not a first set.
    refused(
        owner
            .set_manifest(expecting(common::set_request(&deployment, &m0), [5; 32]))
            .await,
        Code::FailedPrecondition,
        &["has no manifest history", &hex::encode([5; 32])],
    );
    let mut short = common::set_request(&deployment, &m0);
    short.previous_transition_hash = vec![0; 31];
    refused(
        owner.set_manifest(short).await,
        Code::InvalidArgument,
        &["PreviousTransitionHash", "32 bytes"],
    );

    // The first set, expecting no history, gets the seed shares.
    let first = owner
        .set_manifest(expecting(common::set_request(&deployment, &m0), ZERO_HASH))
        .await
        .unwrap()
        .into_inner();
    assert!(first.seed_shares_doc.is_some());
    let t1 = next_transition_hash(&m0, ZERO_HASH);

    // Another first set, by owner key and by signature: refused, naming the history.
    let t1_hex = hex::encode(t1);
    let first_set_needles = [
        "expected no manifest history",
        "1 manifest",
        t1_hex.as_str(),
    ];
    refused(
        owner
            .set_manifest(expecting(common::set_request(&deployment, &m1), ZERO_HASH))
            .await,
        Code::FailedPrecondition,
        &first_set_needles,
    );
    let mut anonymous = common::client(&addr, &validators, None).await;
    refused(
        anonymous
            .set_manifest(signed(&deployment, &m1, ZERO_HASH))
            .await,
        Code::FailedPrecondition,
        &first_set_needles,
    );

    // An update against a transition that is not the latest, on both paths.
    refused(
        owner
            .set_manifest(expecting(common::set_request(&deployment, &m1), [9; 32]))
            .await,
        Code::FailedPrecondition,
        &["concurrent update", &t1_hex],
    );
    refused(
        anonymous
            .set_manifest(signed(&deployment, &m1, [9; 32]))
            .await,
        Code::FailedPrecondition,
        &["concurrent update", &t1_hex],
    );

    // Against the latest: accepted on both paths.
    let second = owner
        .set_manifest(expecting(common::set_request(&deployment, &m1), t1))
        .await
        .unwrap()
        .into_inner();
    assert!(second.seed_shares_doc.is_none());
    let t2 = next_transition_hash(&m1, t1);
    anonymous
        .set_manifest(signed(&deployment, &m0, t2))
        .await
        .unwrap();

    // A Gen-1 client sends no expectation and is not checked.
    owner
        .set_manifest(common::set_request(&deployment, &m1))
        .await
        .unwrap();
    let served = common::get_manifests(&mut owner).await.unwrap();
    assert_eq!(served.manifests, vec![m0.clone(), m1.clone(), m0, m1]);
    assert_eq!(served.latest_transition.unwrap().generation, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn recovery_from_a_replayed_older_pointer_refused() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let validators = common::coordinator_validators(&deployment);
    let mut process = common::start_up(&deployment, store.path());
    let mut owner = common::client(
        &process.user_addr(),
        &validators,
        Some(common::owner_key(&deployment)),
    )
    .await;
    let manifest = common::manifest_variant(&deployment, "m");
    let secrets = common::first_set(&mut owner, &deployment, &manifest).await;
    let pointer = FsStore::open(store.path())
        .unwrap()
        .path_of(LATEST_KEY)
        .unwrap();
    let generation_1 = std::fs::read(&pointer).unwrap();
    owner
        .set_manifest(common::set_request(&deployment, &manifest))
        .await
        .unwrap();
    let served = common::get_manifests(&mut owner).await.unwrap();
    let latest = served.latest_transition.unwrap();
    assert_eq!(latest.generation, 2);
    process.kill();

    // The store's owner puts the generation 1 pointer back: validly signed, older.
    std::fs::write(&pointer, &generation_1).unwrap();
    let process = common::start_up(&deployment, store.path());
    let addr = process.user_addr();
    let mut seedshare_owner = common::client(
        &addr,
        &validators,
        Some(common::seedshare_owner_key(&deployment)),
    )
    .await;
    let mut request = secrets.recover_request();
    request.expected_transition_hash = latest.transition_hash.clone();
    request.expected_generation = 2;
    let verified = hex::encode(&latest.transition_hash);
    refused(
        seedshare_owner.recover(request.clone()).await,
        Code::FailedPrecondition,
        &["rolled back", "generation 1", "generation 2", &verified],
    );
    // Without the generation, the transition alone is enough to refuse.
    request.expected_generation = 0;
    refused(
        seedshare_owner.recover(request.clone()).await,
        Code::FailedPrecondition,
        &[
            "does not contain the transition you verified last",
            &verified,
        ],
    );
    assert_eq!(std::fs::read(&pointer).unwrap(), generation_1);

    // Expecting generation 1 (what the store holds) recovers, and says where it is.
    request.expected_transition_hash = next_transition_hash(&manifest, ZERO_HASH).to_vec();
    request.expected_generation = 1;
    let recovered = seedshare_owner.recover(request).await.unwrap().into_inner();
    assert_eq!(recovered.generation, 1);
    assert_eq!(
        recovered.transition_hash,
        next_transition_hash(&manifest, ZERO_HASH).to_vec()
    );
}
