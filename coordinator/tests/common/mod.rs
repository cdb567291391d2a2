//! Shared set-up of the process-level Coordinator tests (crash, tampering, concurrency):
//! the `coordinator` binary on its own loopback address, UserAPI clients that attest it,
//! manifest variants, and reading the history straight from the store directory.

// Each test file uses a different part of this module.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use contrast_api::userapi::user_api_client::UserApiClient;
use contrast_api::userapi::{
    GetManifestsRequest, GetManifestsResponse, RecoverRequest, SetManifestRequest,
};
use contrast_atls::{AtlsError, ClientOptions, ReferenceValidator, ValidatorSet, Verifiers};
use contrast_history::{FsStore, History, HistoryError, LatestTransition, Transition};
use contrast_manifest::{HexString, Manifest};
use contrast_seedengine::{SeedEngine, SeedShare, SeedShareDocument};
use contrast_testkit::{CoordinatorProcess, Deployment, random_loopback, sha256};
use rustls::pki_types::PrivateKeyDer;
use tonic::transport::Channel;

/// The binary under test.
pub(crate) const COORDINATOR: &str = env!("CARGO_BIN_EXE_coordinator");

/// Starts a Coordinator on `store` without waiting for it.
pub(crate) fn start(deployment: &Deployment, store: &Path) -> CoordinatorProcess {
    CoordinatorProcess::start(
        Path::new(COORDINATOR),
        deployment,
        store,
        random_loopback(),
        &[],
    )
}

/// Starts a Coordinator on `store` and waits for its startup probe.
pub(crate) fn start_up(deployment: &Deployment, store: &Path) -> CoordinatorProcess {
    let mut process = start(deployment, store);
    process.wait_probe("/probe/startup", 200, Duration::from_secs(60));
    process
}

/// Validators that accept the Coordinator of `deployment` only: the simulator's roots, the
/// manifest's SNP reference values, HOST_DATA = the Coordinator's policy hash (what
/// `contrast set` checks).
pub(crate) fn coordinator_validators(deployment: &Deployment) -> ValidatorSet {
    let simulator = contrast_simulator::Simulator::open(&deployment.simulator_dir).unwrap();
    let verifiers = Verifiers::real()
        .with_simulated(simulator.amd.trust_anchor(), simulator.intel.trust_anchor());
    let validator = ReferenceValidator::new(
        verifiers,
        deployment.manifest.reference_values.snp.clone(),
        deployment.manifest.reference_values.tdx.clone(),
        Some(vec![deployment.policy_hash("coordinator")]),
    );
    ValidatorSet::new(vec![Arc::new(validator)])
}

/// The workload owner key as TLS client key.
pub(crate) fn owner_key(deployment: &Deployment) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(deployment.owner_key.pkcs8_der().unwrap().to_vec().into())
}

/// The seed share owner key as TLS client key.
pub(crate) fn seedshare_owner_key(deployment: &Deployment) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs1(deployment.seedshare_key.pkcs1_der().to_vec().into())
}

/// A UserAPI client that attested the Coordinator at `addr`, presenting `key` (a fresh key
/// when `None`). Retries while the Coordinator is not listening yet.
pub(crate) async fn client(
    addr: &str,
    validators: &ValidatorSet,
    key: Option<PrivateKeyDer<'static>>,
) -> UserApiClient<Channel> {
    let mut options = ClientOptions::new(validators.clone());
    if let Some(key) = key {
        options = options.with_client_key(key);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match contrast_atls::grpc::channel(addr, options.clone()).await {
            Ok((channel, _)) => return UserApiClient::new(channel),
            Err(AtlsError::Io(_) | AtlsError::Timeout { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => panic!("connecting to {addr}: {e}"),
        }
    }
}

/// The deployment's manifest with `label` added to the web workload's SANs: a valid
/// manifest with the same policies and keys, different bytes for every label.
pub(crate) fn manifest_variant(deployment: &Deployment, label: &str) -> Vec<u8> {
    let mut manifest: Manifest = deployment.manifest.clone();
    let web = HexString::from_bytes(&deployment.policy_hash("web"));
    let entry = manifest.policies.get_mut(&web).unwrap();
    entry
        .sans
        .get_or_insert_with(Vec::new)
        .push(format!("{label}.web.default"));
    manifest.validate().unwrap();
    manifest.encode()
}

/// SetManifest with `manifest` and every policy document of the deployment.
pub(crate) fn set_request(deployment: &Deployment, manifest: &[u8]) -> SetManifestRequest {
    SetManifestRequest {
        manifest: manifest.to_vec(),
        policies: deployment.policy_documents(),
        ..Default::default()
    }
}

/// The seed and salt a first SetManifest handed out, decrypted with the seed share owner
/// key.
pub(crate) struct Secrets {
    pub(crate) seed: Vec<u8>,
    pub(crate) salt: Vec<u8>,
    pub(crate) engine: SeedEngine,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").finish_non_exhaustive()
    }
}

impl Secrets {
    /// The key the latest pointer is signed with.
    pub(crate) fn verifying_key(&self) -> &p384::ecdsa::VerifyingKey {
        self.engine.transaction_signing_key().verifying_key()
    }

    /// A Recover request with these secrets.
    pub(crate) fn recover_request(&self) -> RecoverRequest {
        RecoverRequest {
            seed: self.seed.clone(),
            salt: self.salt.clone(),
            force: false,
            ..Default::default()
        }
    }
}

/// Sets the first manifest and decrypts the seed share it returns.
pub(crate) async fn first_set(
    client: &mut UserApiClient<Channel>,
    deployment: &Deployment,
    manifest: &[u8],
) -> Secrets {
    let response = client
        .set_manifest(set_request(deployment, manifest))
        .await
        .unwrap()
        .into_inner();
    let doc = response
        .seed_shares_doc
        .expect("the first SetManifest returns seed shares");
    let doc = SeedShareDocument {
        seed_shares: doc
            .seed_shares
            .into_iter()
            .map(|share| SeedShare {
                public_key: share.public_key,
                encrypted_seed: share.encrypted_seed,
            })
            .collect(),
        salt: doc.salt,
    };
    let (seed, salt) = contrast_seedengine::decrypt_seed_share(&doc, &deployment.seedshare_key)
        .expect("the seed share decrypts with the seed share owner key");
    let engine = SeedEngine::new(&seed, &salt).unwrap();
    Secrets {
        seed: seed.to_vec(),
        salt,
        engine,
    }
}

/// Connects with the seed share owner key and recovers the Coordinator at `addr`.
pub(crate) async fn recover(
    addr: &str,
    validators: &ValidatorSet,
    deployment: &Deployment,
    secrets: &Secrets,
) -> Result<(), tonic::Status> {
    let mut client = client(addr, validators, Some(seedshare_owner_key(deployment))).await;
    client.recover(secrets.recover_request()).await.map(|_| ())
}

/// GetManifests.
pub(crate) async fn get_manifests(
    client: &mut UserApiClient<Channel>,
) -> Result<GetManifestsResponse, tonic::Status> {
    client
        .get_manifests(GetManifestsRequest {})
        .await
        .map(tonic::Response::into_inner)
}

/// The history as the store holds it, checked the way a Coordinator checks it: the latest
/// pointer's signature, every transition and blob against its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredHistory {
    /// The signed latest pointer.
    pub(crate) latest: LatestTransition,
    /// The transitions, newest first, with their hashes.
    pub(crate) chain: Vec<([u8; 32], Transition)>,
    /// The manifests, oldest first.
    pub(crate) manifests: Vec<Vec<u8>>,
    /// Every policy the manifests name, sorted by hash.
    pub(crate) policies: Vec<Vec<u8>>,
}

impl StoredHistory {
    /// The active manifest.
    pub(crate) fn latest_manifest(&self) -> &[u8] {
        self.manifests.last().unwrap()
    }
}

/// Reads and checks the history in `dir`. Opening the store also removes a killed writer's
/// temporary files, as the Coordinator does on start.
pub(crate) fn read_store(
    dir: &Path,
    key: &p384::ecdsa::VerifyingKey,
) -> Result<StoredHistory, HistoryError> {
    let history = History::new(FsStore::open(dir)?);
    let latest = history
        .get_latest(key)?
        .expect("a history with a latest pointer");
    let chain = history.walk(latest.transition_hash)?;
    let mut manifests = Vec::new();
    let mut policy_hashes = std::collections::BTreeSet::new();
    for (_, transition) in chain.iter().rev() {
        let bytes = history.get_manifest(transition.manifest_hash)?;
        let manifest = Manifest::decode(&bytes).expect("a stored manifest decodes");
        policy_hashes.extend(
            manifest
                .policies
                .keys()
                .map(|h| <[u8; 32]>::try_from(h.to_bytes().unwrap()).unwrap()),
        );
        manifests.push(bytes);
    }
    let policies = policy_hashes
        .into_iter()
        .map(|hash| history.get_policy(hash))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(StoredHistory {
        latest,
        chain,
        manifests,
        policies,
    })
}

/// Checks a GetManifests answer against the stored history: same manifests in the same
/// order, same policies, same signed latest pointer, and the manifests chain up to it.
pub(crate) fn assert_served_history(response: &GetManifestsResponse, stored: &StoredHistory) {
    assert_eq!(
        response.manifests, stored.manifests,
        "GetManifests manifests"
    );
    assert_eq!(response.policies, stored.policies, "GetManifests policies");
    let latest = response.latest_transition.as_ref().unwrap();
    assert_eq!(latest.transition_hash, stored.latest.transition_hash);
    assert_eq!(latest.signature, stored.latest.signature);
    assert_eq!(
        contrast_history::transition_hash_of(response.manifests.iter().map(Vec::as_slice)),
        stored.latest.transition_hash,
        "the served manifests chain up to the latest transition"
    );
}

/// SHA-256 of a manifest (its content address).
pub(crate) fn manifest_hash(manifest: &[u8]) -> [u8; 32] {
    sha256(manifest)
}
