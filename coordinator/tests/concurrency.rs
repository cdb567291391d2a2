//! Concurrent manifest updates against one Coordinator: the history stays one linear chain
//! holding every update that was answered with success, and every loser is told that a
//! concurrent update came first — with the workload owner key as TLS key, and with
//! detached signatures made against the same latest transition (exactly one wins).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::sync::Arc;

use common::StoredHistory;
use contrast_api::userapi::SetManifestRequest;
use contrast_api::userapi::user_api_client::UserApiClient;
use contrast_atls::ValidatorSet;
use contrast_history::next_transition_hash;
use contrast_testkit::{CoordinatorProcess, Deployment, TempDir};
use p384::ecdsa::signature::hazmat::PrehashSigner;
use p384::ecdsa::{DerSignature, SigningKey};
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Clients racing in each round.
const CLIENTS: usize = 6;

/// What one racing client sent and got.
struct Attempt {
    manifest: Vec<u8>,
    result: Result<(), Status>,
}

/// A Coordinator with a first manifest set.
struct Setup {
    process: CoordinatorProcess,
    deployment: Deployment,
    validators: ValidatorSet,
    store: TempDir,
    secrets: common::Secrets,
}

impl Drop for Setup {
    fn drop(&mut self) {
        // Stop the Coordinator before its store goes; its log lives beside the store and
        // stays when the test failed.
        self.process.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.process.log);
        }
    }
}

async fn setup() -> Setup {
    let deployment = Deployment::new(&["web"]);
    let validators = common::coordinator_validators(&deployment);
    let store = TempDir::new("concurrency-store");
    let process = common::start_up(&deployment, store.path());
    let mut owner = common::client(
        &process.user_addr(),
        &validators,
        Some(common::owner_key(&deployment)),
    )
    .await;
    let first = common::manifest_variant(&deployment, "first");
    let secrets = common::first_set(&mut owner, &deployment, &first).await;
    Setup {
        process,
        deployment,
        validators,
        store,
        secrets,
    }
}

impl Setup {
    async fn owner_client(&self) -> UserApiClient<Channel> {
        common::client(
            &self.process.user_addr(),
            &self.validators,
            Some(common::owner_key(&self.deployment)),
        )
        .await
    }

    /// A client without an owner key: only a detached signature can authorize its sets.
    async fn anonymous_client(&self) -> UserApiClient<Channel> {
        common::client(&self.process.user_addr(), &self.validators, None).await
    }

    fn stored(&self) -> StoredHistory {
        common::read_store(self.store.path(), self.secrets.verifying_key()).unwrap()
    }

    /// GetManifests and the store agree; returns the store's view.
    async fn served(&self) -> StoredHistory {
        let mut client = self.anonymous_client().await;
        let served = common::get_manifests(&mut client).await.unwrap();
        let stored = self.stored();
        common::assert_served_history(&served, &stored);
        stored
    }
}

/// Sends every request on its own connection, all released at once.
async fn race(
    clients: Vec<UserApiClient<Channel>>,
    requests: Vec<SetManifestRequest>,
) -> Vec<Attempt> {
    let barrier = Arc::new(tokio::sync::Barrier::new(clients.len()));
    let mut tasks = Vec::new();
    for (mut client, request) in clients.into_iter().zip(requests) {
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            let manifest = request.manifest.clone();
            barrier.wait().await;
            let result = client.set_manifest(request).await.map(|response| {
                assert!(
                    response.into_inner().seed_shares_doc.is_none(),
                    "seed shares only on the first manifest"
                );
            });
            Attempt { manifest, result }
        }));
    }
    let mut attempts = Vec::new();
    for task in tasks {
        attempts.push(task.await.unwrap());
    }
    attempts
}

/// The transition hash a "concurrent update" refusal names as the latest one.
fn named_latest(status: &Status) -> [u8; 32] {
    let (_, rest) = status
        .message()
        .split_once("latest transition is now ")
        .unwrap_or_else(|| panic!("no latest transition named: {status:?}"));
    hex::decode(&rest[..64]).unwrap().try_into().unwrap()
}

fn assert_concurrent_update(status: &Status) {
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains("concurrent update"),
        "the loser is not told why: {status:?}"
    );
}

/// The history is one chain: the first manifest, then exactly the successful sets, each
/// once; no refused manifest in it; every refusal named a transition of the chain.
fn assert_linear(history: &StoredHistory, first: &[u8], attempts: &[Attempt]) {
    let succeeded: Vec<&[u8]> = attempts
        .iter()
        .filter(|a| a.result.is_ok())
        .map(|a| a.manifest.as_slice())
        .collect();
    assert_eq!(history.manifests.len(), 1 + succeeded.len());
    assert_eq!(history.manifests[0], first);
    for manifest in &succeeded {
        assert_eq!(
            history.manifests.iter().filter(|m| m == manifest).count(),
            1,
            "a successful set is not in the history exactly once"
        );
    }
    for attempt in attempts.iter().filter(|a| a.result.is_err()) {
        assert!(
            !history.manifests.contains(&attempt.manifest),
            "a refused set is in the history"
        );
        let named = named_latest(attempt.result.as_ref().unwrap_err());
        assert!(
            history.chain.iter().any(|(hash, _)| *hash == named),
            "the refusal names a transition outside the history"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_sets_by_owner_key_form_one_chain() {
    let setup = setup().await;
    let first = setup.stored().manifests[0].clone();
    let mut attempts = Vec::new();
    for round in 0..5 {
        let mut clients = Vec::new();
        let mut requests = Vec::new();
        for client in 0..CLIENTS {
            clients.push(setup.owner_client().await);
            let manifest = common::manifest_variant(
                &setup.deployment,
                &format!("round-{round}-client-{client}"),
            );
            requests.push(common::set_request(&setup.deployment, &manifest));
        }
        let round_attempts = race(clients, requests).await;
        // The first compare-and-swap of a round starts from the latest state: someone wins.
        assert!(
            round_attempts.iter().any(|a| a.result.is_ok()),
            "round {round}: nobody won"
        );
        for attempt in &round_attempts {
            if let Err(status) = &attempt.result {
                assert_concurrent_update(status);
            }
        }
        attempts.extend(round_attempts);
    }
    let history = setup.served().await;
    assert_linear(&history, &first, &attempts);
    let won = attempts.iter().filter(|a| a.result.is_ok()).count();
    eprintln!(
        "{} sets: {won} succeeded, {} lost to a concurrent update",
        attempts.len(),
        attempts.len() - won
    );
}

/// What `openssl dgst -sha256 -sign workload-owner.pem` makes of the next transition hash
/// in lowercase hex: ECDSA P-384 over its SHA-256, DER. (aws-lc-rs pairs P-384 only with
/// SHA-384 for signing, hence the prehashed RustCrypto signer.)
fn sign_transition(setup: &Setup, manifest: &[u8], latest: [u8; 32]) -> Vec<u8> {
    let key = SigningKey::from(setup.deployment.owner_key.secret_key());
    let message = hex::encode(next_transition_hash(manifest, latest));
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message.as_bytes());
    let signature: DerSignature = key.sign_prehash(digest.as_ref()).unwrap();
    signature.as_bytes().to_vec()
}

/// Signed requests for `CLIENTS` new manifests, each signed against `latest`.
fn signed_requests(
    setup: &Setup,
    label: &str,
    latest: [u8; 32],
    with_previous: bool,
) -> Vec<SetManifestRequest> {
    (0..CLIENTS)
        .map(|client| {
            let manifest =
                common::manifest_variant(&setup.deployment, &format!("{label}-{client}"));
            SetManifestRequest {
                signature: sign_transition(setup, &manifest, latest),
                signer_public_key: setup.deployment.owner_key.public_key_der().to_vec(),
                previous_transition_hash: if with_previous {
                    latest.to_vec()
                } else {
                    Vec::new()
                },
                ..common::set_request(&setup.deployment, &manifest)
            }
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_signed_sets_against_one_latest_have_one_winner() {
    let setup = setup().await;
    let first = setup.stored().manifests[0].clone();
    let mut chain = vec![first];
    let mut refusals = std::collections::BTreeMap::<String, usize>::new();
    for round in 0..4 {
        // Signed against the latest transition GetManifests shows, as `contrast set
        // --dry-run` does; even rounds also name it as PreviousTransitionHash.
        let latest = setup.served().await.latest.transition_hash;
        let with_previous = round % 2 == 0;
        let requests = signed_requests(&setup, &format!("signed-{round}"), latest, with_previous);
        let mut clients = Vec::new();
        for _ in 0..CLIENTS {
            clients.push(setup.anonymous_client().await);
        }
        let round_attempts = race(clients, requests).await;
        let winners: Vec<&Attempt> = round_attempts.iter().filter(|a| a.result.is_ok()).collect();
        assert_eq!(
            winners.len(),
            1,
            "round {round}: exactly one signed set wins"
        );
        let winner = next_transition_hash(&winners[0].manifest, latest);
        for attempt in &round_attempts {
            let Err(status) = &attempt.result else {
                continue;
            };
            *refusals.entry(format!("{:?}", status.code())).or_default() += 1;
            if with_previous || status.code() == Code::FailedPrecondition {
                // Stale PreviousTransitionHash, or a lost compare-and-swap: the refusal
                // names the transition that won.
                assert_concurrent_update(status);
                assert_eq!(named_latest(status), winner, "{status:?}");
            } else {
                // Without PreviousTransitionHash, a request that arrives after the winner
                // is checked against the new latest transition, which it did not sign.
                assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
                assert!(
                    status.message().contains("signature does not verify")
                        && status.message().contains("latest transition"),
                    "{status:?}"
                );
            }
        }
        chain.push(winners[0].manifest.clone());
        let history = setup.served().await;
        assert_eq!(history.latest.transition_hash, winner);
        // One chain: the winners in round order, no loser.
        assert_eq!(history.manifests, chain, "round {round}");
    }
    eprintln!("4 rounds of {CLIENTS} signed sets: one winner each; refusals {refusals:?}");
}

/// Sustained load: clients set manifests back to back for a while, so that the
/// Coordinator's periodic staleness check (every second) runs while its own updates are
/// between the store's compare-and-swap and the in-memory swap. A single Coordinator must
/// never take its own update for another Coordinator's and fall into recovery mode.
/// Six seconds span six staleness checks; before the fix (the update lock in
/// `StateGuard`) this failed in about half of the 20-second runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sustained_concurrent_sets_never_report_recovery_mode() {
    let setup = setup().await;
    let first = setup.stored().manifests[0].clone();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(6);
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let mut owner = setup.owner_client().await;
        let deployment_policies = setup.deployment.policy_documents();
        let manifests: Vec<Vec<u8>> = (0..400)
            .map(|i| common::manifest_variant(&setup.deployment, &format!("load-{client}-{i}")))
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut attempts = Vec::new();
            for manifest in manifests {
                if std::time::Instant::now() > deadline {
                    break;
                }
                let request = SetManifestRequest {
                    manifest: manifest.clone(),
                    policies: deployment_policies.clone(),
                    ..Default::default()
                };
                let result = owner.set_manifest(request).await.map(|_| ());
                attempts.push(Attempt { manifest, result });
            }
            attempts
        }));
    }
    let mut attempts = Vec::new();
    for task in tasks {
        attempts.extend(task.await.unwrap());
    }
    let refusals: Vec<String> = attempts
        .iter()
        .filter_map(|a| a.result.as_ref().err())
        .filter(|s| !s.message().contains("concurrent update"))
        .map(|s| format!("{:?}: {}", s.code(), s.message()))
        .collect();
    let won = attempts.iter().filter(|a| a.result.is_ok()).count();
    eprintln!(
        "{} sets: {won} succeeded; other refusals: {refusals:#?}",
        attempts.len()
    );
    assert!(refusals.is_empty(), "refusals other than concurrent update");
    assert!(
        !setup
            .process
            .log_text()
            .contains("another Coordinator set a manifest"),
        "the Coordinator took its own update for another's:\n{}",
        setup.process.log_text()
    );
    let history = setup.served().await;
    assert_linear(&history, &first, &attempts);
}
