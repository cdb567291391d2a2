//! The Coordinator's state machine (docs/protocol.md §7): uninitialized, recovery,
//! ready, stale; manifest updates (§6.2, §8) and the reset/recovery algorithm (§7.2).
//!
//! Every change is optimistic: compute from the state read at the start, then
//! compare-and-swap the store's latest pointer, then the in-memory state. A loser is told
//! that another update came first, never silently merged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest::{SHA256, digest};
use contrast_atls::{ReferenceValidator, ValidatorSet, Verifiers};
use contrast_ca::Ca;
use contrast_history::{
    Continuation, History, HistoryError, LatestTransition, Store, ZERO_HASH, next_transition_hash,
};
use contrast_manifest::{HexString, Manifest, ManifestDocument, PolicyEntry};
use contrast_seedengine::{SeedEngine, SeedShareDocument, encrypt_seed_shares};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::CoordinatorError;

/// Everything a ready Coordinator serves from: secrets, the active manifest, its CA.
pub struct State {
    seed_engine: Arc<SeedEngine>,
    manifest: ManifestDocument,
    policies: BTreeMap<[u8; 32], PolicyEntry>,
    ca: Ca,
    latest: LatestTransition,
    generation: usize,
    stale: AtomicBool,
    mesh_validators: ValidatorSet,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("generation", &self.generation)
            .field("latest", &hex::encode(self.latest.transition_hash))
            .field("stale", &self.is_stale())
            .finish_non_exhaustive()
    }
}

impl State {
    fn new(
        seed_engine: Arc<SeedEngine>,
        manifest: ManifestDocument,
        ca: Ca,
        latest: LatestTransition,
        generation: usize,
        verifiers: &Verifiers,
    ) -> Self {
        let policies: BTreeMap<[u8; 32], PolicyEntry> = manifest
            .manifest()
            .policies
            .iter()
            .filter_map(|(hash, entry)| Some((policy_hash(hash)?, entry.clone())))
            .collect();
        let validator = ReferenceValidator::new(
            verifiers.clone(),
            manifest.manifest().reference_values.snp.clone(),
            manifest.manifest().reference_values.tdx.clone(),
            Some(policies.keys().copied().collect()),
        )
        .with_label(format!("generation {generation}: "));
        State {
            seed_engine,
            manifest,
            policies,
            ca,
            latest,
            generation,
            stale: AtomicBool::new(false),
            mesh_validators: ValidatorSet::new(vec![Arc::new(validator)]),
        }
    }

    /// The seed engine.
    pub fn seed_engine(&self) -> &Arc<SeedEngine> {
        &self.seed_engine
    }

    /// The active manifest.
    pub fn manifest(&self) -> &Manifest {
        self.manifest.manifest()
    }

    /// The active manifest's bytes as set (what its hash is over).
    pub fn manifest_bytes(&self) -> &[u8] {
        self.manifest.raw()
    }

    /// The active manifest with its bytes as set.
    pub fn manifest_document(&self) -> &ManifestDocument {
        &self.manifest
    }

    /// The policy entry for a host data value.
    pub fn policy(&self, host_data: &[u8; 32]) -> Option<&PolicyEntry> {
        self.policies.get(host_data)
    }

    /// The CA of this state.
    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// The signed latest transition.
    pub fn latest(&self) -> &LatestTransition {
        &self.latest
    }

    /// How many manifests the history holds.
    pub fn generation(&self) -> usize {
        self.generation
    }

    /// The validators for initializers (mesh API), built from this state's manifest.
    pub fn mesh_validators(&self) -> &ValidatorSet {
        &self.mesh_validators
    }

    /// Whether another Coordinator has moved the history on.
    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::SeqCst)
    }

    /// The label the mesh validators put before their verdicts, so a handler can tell
    /// which state a handshake was checked against.
    pub fn validator_label(&self) -> String {
        format!("generation {}: ", self.generation)
    }
}

fn policy_hash(hash: &HexString) -> Option<[u8; 32]> {
    hash.to_bytes()?.try_into().ok()
}

/// Where the Coordinator is in its life (docs/protocol.md §7.1).
#[derive(Debug, Clone)]
pub enum Status {
    /// No manifest was ever set.
    Uninitialized,
    /// A history exists but this Coordinator holds no (current) secrets.
    Recovery,
    /// Serving.
    Ready(Arc<State>),
}

/// A manifest update as the user API receives it.
#[derive(Debug, Default)]
pub struct SetManifestInput {
    /// The manifest bytes.
    pub manifest: Vec<u8>,
    /// The policy documents.
    pub policies: Vec<Vec<u8>>,
    /// The latest transition the caller expects, all zero for a first set (empty: no
    /// expectation, a Gen-1 client).
    pub previous_transition_hash: Vec<u8>,
    /// A detached signature of the next transition (empty: authorize by TLS key).
    pub signature: Vec<u8>,
    /// The signer's public key (PKIX DER) for a detached signature.
    pub signer_public_key: Vec<u8>,
    /// The caller's TLS public key (PKIX DER), if it sent a certificate.
    pub caller_public_key: Option<Vec<u8>>,
}

/// The result of a manifest update.
#[derive(Debug)]
pub struct SetManifestOutput {
    /// The root CA certificate (PEM).
    pub root_ca: String,
    /// The new mesh CA certificate (PEM).
    pub mesh_ca: String,
    /// Seed shares, on the first manifest only.
    pub seed_shares: Option<SeedShareDocument>,
    /// The new state.
    pub state: Arc<State>,
}

/// The ready state with its whole history, as GetManifests and the attestation API serve it.
#[derive(Debug)]
pub struct HistoryView {
    /// The active state.
    pub state: Arc<State>,
    /// Every manifest, oldest first.
    pub manifests: Arc<[Vec<u8>]>,
    /// Every policy any of them names (sorted by hash).
    pub policies: Arc<[Vec<u8>]>,
}

/// The history read for one latest transition. The history is content-addressed and only
/// grows, so it stays true until the latest transition moves.
#[derive(Debug)]
struct CachedHistory {
    transition_hash: [u8; 32],
    manifests: Arc<[Vec<u8>]>,
    policies: Arc<[Vec<u8>]>,
}

/// Holds the current state and the history; every transition goes through here.
#[derive(Debug)]
pub struct StateGuard {
    history: History<Arc<dyn Store>>,
    current: Mutex<Option<Arc<State>>>,
    /// Held from writing the store's latest pointer until the in-memory state follows, so
    /// the staleness check never mistakes our own update for another Coordinator's.
    /// Lock order: `updating`, then `current`.
    updating: Mutex<()>,
    verifiers: Verifiers,
    /// GetManifests and the attestation API are unauthenticated: they are served from
    /// here instead of walking the store on every call.
    history_view: Mutex<Option<Arc<CachedHistory>>>,
}

impl StateGuard {
    /// A guard over `store`; evidence of initializers and peers is checked with `verifiers`.
    pub fn new(store: Arc<dyn Store>, verifiers: Verifiers) -> Self {
        StateGuard {
            history: History::new(store),
            current: Mutex::new(None),
            updating: Mutex::new(()),
            verifiers,
            history_view: Mutex::new(None),
        }
    }

    /// The history.
    pub fn history(&self) -> &History<Arc<dyn Store>> {
        &self.history
    }

    /// The verifiers used for peers.
    pub fn verifiers(&self) -> &Verifiers {
        &self.verifiers
    }

    fn current(&self) -> Option<Arc<State>> {
        self.current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Where the Coordinator stands. Reads the store only when there is no state.
    pub fn status(&self) -> Result<Status, CoordinatorError> {
        match self.current() {
            Some(state) if !state.is_stale() => Ok(Status::Ready(state)),
            Some(_) => Ok(Status::Recovery),
            None => match self.history.get_latest_unverified()? {
                Some(_) => Ok(Status::Recovery),
                None => Ok(Status::Uninitialized),
            },
        }
    }

    /// The ready state if this Coordinator holds one, without reading the store (for work
    /// on behalf of callers not yet authenticated).
    pub fn active(&self) -> Option<Arc<State>> {
        self.current().filter(|state| !state.is_stale())
    }

    /// The ready state, or why there is none.
    pub fn ready(&self) -> Result<Arc<State>, CoordinatorError> {
        match self.status()? {
            Status::Ready(state) => Ok(state),
            Status::Recovery => Err(CoordinatorError::RecoveryMode),
            Status::Uninitialized => Err(CoordinatorError::NotInitialized),
        }
    }

    /// Marks the current state stale if the store's latest pointer is neither it nor one
    /// of its ancestors (another Coordinator set a manifest). Returns whether it did.
    pub fn check_staleness(&self) -> Result<bool, CoordinatorError> {
        let _updating = self
            .updating
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(state) = self.current() else {
            return Ok(false);
        };
        if state.is_stale() {
            return Ok(false);
        }
        let Some(latest) = self.history.get_latest_unverified()? else {
            return Ok(false);
        };
        if latest.transition_hash == state.latest.transition_hash {
            return Ok(false);
        }
        let ancestors = self.history.walk(state.latest.transition_hash)?;
        if ancestors
            .iter()
            .any(|(hash, _)| *hash == latest.transition_hash)
        {
            return Ok(false);
        }
        tracing::warn!(
            ours = %hex::encode(state.latest.transition_hash),
            theirs = %hex::encode(latest.transition_hash),
            "another Coordinator set a manifest; this one is stale and needs recovery"
        );
        state.stale.store(true, Ordering::SeqCst);
        Ok(true)
    }

    /// SetManifest (docs/protocol.md §6.2, §8).
    pub fn set_manifest(
        &self,
        input: SetManifestInput,
    ) -> Result<SetManifestOutput, CoordinatorError> {
        let before = match self.status()? {
            Status::Recovery => return Err(CoordinatorError::RecoveryMode),
            Status::Uninitialized => None,
            Status::Ready(state) => Some(state),
        };
        // Kept with the bytes as received: they are what is hashed and stored.
        let document = ManifestDocument::parse(input.manifest.clone())
            .map_err(|e| CoordinatorError::InvalidArgument(format!("manifest: {e}")))?;
        let manifest = document.manifest();
        manifest
            .validate()
            .map_err(|e| CoordinatorError::InvalidArgument(format!("manifest: {e}")))?;

        check_previous(before.as_deref(), &input.previous_transition_hash)?;
        if let Some(state) = &before {
            authorize_update(state, manifest, &input)?;
        }
        let policies = check_policies(manifest, &input.policies)?;

        let (seed_engine, seed_shares) = match &before {
            Some(state) => (state.seed_engine.clone(), None),
            None => {
                let engine = SeedEngine::generate()
                    .map_err(|e| CoordinatorError::Internal(format!("generating the seed: {e}")))?;
                let owners: Vec<&str> = manifest
                    .seedshare_owner_pub_keys
                    .iter()
                    .flatten()
                    .map(HexString::as_str)
                    .collect();
                let shares =
                    encrypt_seed_shares(engine.seed(), engine.salt(), &owners).map_err(|e| {
                        CoordinatorError::InvalidArgument(format!("SeedshareOwnerPubKeys: {e}"))
                    })?;
                (Arc::new(engine), Some(shares))
            }
        };

        for policy in &policies {
            self.history.set_policy(policy)?;
        }
        // Everything that can fail comes before the pointer moves: once the store has the
        // new manifest, memory must follow.
        let mesh_key = contrast_ca::generate_mesh_key()?;
        let ca = Ca::new(seed_engine.root_ca_key(), &mesh_key)?;
        let _updating = self
            .updating
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old_latest = before.as_ref().map(|s| &s.latest);
        let latest = self
            .history
            .append_manifest(
                document.raw(),
                old_latest,
                seed_engine.transaction_signing_key(),
            )
            .map_err(|e| self.conflict_or(e))?;
        let generation = before.as_ref().map_or(0, |s| s.generation) + 1;
        let state = Arc::new(State::new(
            seed_engine,
            document,
            ca,
            latest,
            generation,
            &self.verifiers,
        ));
        self.swap(before.as_ref(), state.clone());
        tracing::info!(generation, "manifest set");
        Ok(SetManifestOutput {
            root_ca: state.ca.root_ca_pem().to_string(),
            mesh_ca: state.ca.mesh_ca_pem().to_string(),
            seed_shares,
            state,
        })
    }

    /// A lost compare-and-swap on the latest pointer becomes a "concurrent update" with the
    /// generation that won; other history errors stay as they are.
    fn conflict_or(&self, e: HistoryError) -> CoordinatorError {
        if e.is_conflict() {
            let winner = self
                .history
                .get_latest_unverified()
                .ok()
                .flatten()
                .map(|l| hex::encode(l.transition_hash))
                .unwrap_or_else(|| "unknown".into());
            CoordinatorError::ConcurrentUpdate(winner)
        } else {
            e.into()
        }
    }

    /// Replaces the in-memory state. The store's compare-and-swap already ordered the
    /// updates, so the newest generation wins here too.
    fn swap(&self, _before: Option<&Arc<State>>, new: Arc<State>) {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let newer = current
            .as_ref()
            .is_none_or(|c| c.is_stale() || c.generation < new.generation);
        if newer {
            *current = Some(new);
        }
    }

    /// The history from the first manifest to the active one, with all their policies,
    /// read from the store once per latest transition.
    pub fn manifests(&self) -> Result<HistoryView, CoordinatorError> {
        let state = self.ready()?;
        let transition_hash = state.latest.transition_hash;
        let cached = self
            .history_view
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .filter(|c| c.transition_hash == transition_hash);
        let cached = match cached {
            Some(cached) => cached,
            None => {
                let read = Arc::new(self.read_history(transition_hash)?);
                *self
                    .history_view
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(read.clone());
                read
            }
        };
        Ok(HistoryView {
            state,
            manifests: cached.manifests.clone(),
            policies: cached.policies.clone(),
        })
    }

    /// Walks the history from `transition_hash` back to the first manifest.
    fn read_history(&self, transition_hash: [u8; 32]) -> Result<CachedHistory, CoordinatorError> {
        let chain = self.history.walk(transition_hash)?;
        let mut manifests = Vec::with_capacity(chain.len());
        let mut policy_hashes = std::collections::BTreeSet::new();
        for (_, transition) in chain.iter().rev() {
            let bytes = self.history.get_manifest(transition.manifest_hash)?;
            let manifest = Manifest::decode(&bytes).map_err(|e| {
                CoordinatorError::Internal(format!("stored manifest does not decode: {e}"))
            })?;
            policy_hashes.extend(manifest.policies.keys().filter_map(policy_hash));
            manifests.push(bytes);
        }
        let policies = policy_hashes
            .into_iter()
            .map(|hash| self.history.get_policy(hash))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(CachedHistory {
            transition_hash,
            manifests: manifests.into(),
            policies: policies.into(),
        })
    }

    /// The reset algorithm (docs/protocol.md §7.2): with secrets from a user or a peer,
    /// load the latest manifest, let `authorize` check the secrets' source against it,
    /// verify the latest pointer with the derived signing key, and become ready.
    pub fn recover(
        &self,
        seed_engine: Arc<SeedEngine>,
        mesh_key: p384::SecretKey,
        authorize: impl FnOnce(&Manifest, &[u8]) -> Result<(), CoordinatorError>,
    ) -> Result<Arc<State>, CoordinatorError> {
        self.recover_expecting(seed_engine, mesh_key, None, authorize)
    }

    /// [`recover`](Self::recover), refused unless the stored history contains `expected`
    /// (the transition the user last verified): the store's owner can put back an older
    /// pointer, validly signed with the same seed-derived key, and recovery must not make
    /// its older manifest active again.
    pub fn recover_expecting(
        &self,
        seed_engine: Arc<SeedEngine>,
        mesh_key: p384::SecretKey,
        expected: Option<ExpectedTransition>,
        authorize: impl FnOnce(&Manifest, &[u8]) -> Result<(), CoordinatorError>,
    ) -> Result<Arc<State>, CoordinatorError> {
        let before = match self.status()? {
            Status::Ready(_) => return Err(CoordinatorError::AlreadyRecovered),
            Status::Uninitialized => return Err(CoordinatorError::NoStateToRecover),
            Status::Recovery => self.current(),
        };
        let unverified = self
            .history
            .get_latest_unverified()?
            .ok_or(CoordinatorError::NoStateToRecover)?;
        let transition = self.history.get_transition(unverified.transition_hash)?;
        let manifest_bytes = self.history.get_manifest(transition.manifest_hash)?;
        let document = ManifestDocument::parse(manifest_bytes).map_err(|e| {
            CoordinatorError::Internal(format!("the latest stored manifest does not decode: {e}"))
        })?;
        authorize(document.manifest(), document.raw())?;
        let verifying_key = seed_engine.transaction_signing_key().verifying_key();
        let latest = match self.history.get_latest(verifying_key) {
            Ok(Some(latest)) => latest,
            Ok(None) => return Err(CoordinatorError::NoStateToRecover),
            Err(HistoryError::LatestSignatureInvalid { .. }) => {
                return Err(CoordinatorError::PermissionDenied(
                    "the seed does not belong to this deployment: the history's latest \
                     transition is not signed with its key (wrong seed share, or the store \
                     was tampered with)"
                        .into(),
                ));
            }
            Err(e) => return Err(e.into()),
        };
        if latest.transition_hash != unverified.transition_hash {
            return Err(CoordinatorError::ConcurrentUpdate(hex::encode(
                latest.transition_hash,
            )));
        }
        let chain = self.history.verified_chain(&latest)?;
        let generation = chain.len();
        if let Some(expected) = expected {
            expected.check(&chain, &latest)?;
        }
        let ca = Ca::new(seed_engine.root_ca_key(), &mesh_key)?;
        let state = Arc::new(State::new(
            seed_engine,
            document,
            ca,
            latest,
            generation,
            &self.verifiers,
        ));
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let unchanged = match (&*current, &before) {
            (None, None) => true,
            (Some(c), Some(b)) => Arc::ptr_eq(c, b),
            _ => false,
        };
        if !unchanged {
            return Err(CoordinatorError::AlreadyRecovered);
        }
        *current = Some(state.clone());
        tracing::info!(generation, "recovered");
        Ok(state)
    }
}

/// The transition a recovered history must contain: the one the user last verified, or a
/// peer's latest.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedTransition {
    /// The transition hash.
    pub hash: [u8; 32],
    /// Its generation, if known (only for the message).
    pub generation: Option<u64>,
    /// Who expects it: the messages differ.
    pub source: ExpectedBy,
}

/// Who holds the transition a recovered history must contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedBy {
    /// The user's workspace (`contrast recover`).
    User,
    /// The peer Coordinator the secrets come from (peer recovery).
    Peer,
}

impl ExpectedTransition {
    /// Refuses a history (`chain`, newest first, ending at `latest`) that does not contain
    /// this transition.
    fn check(
        &self,
        chain: &[([u8; 32], contrast_history::Transition)],
        latest: &LatestTransition,
    ) -> Result<(), CoordinatorError> {
        let stored = chain.len() as u64;
        let continuation = contrast_history::continuation(
            chain.iter().map(|(hash, _)| *hash),
            stored,
            self.hash,
            self.generation,
        );
        if continuation == Continuation::Extends {
            return Ok(());
        }
        let theirs = hex::encode(latest.transition_hash);
        let ours = hex::encode(self.hash);
        if self.source == ExpectedBy::Peer {
            return Err(CoordinatorError::UnexpectedHistory(format!(
                "the history was rolled back or replaced: the store's latest pointer is \
                 generation {stored} (transition {theirs}), but the peer Coordinator is at {}\
                 transition {ours}, which this store's history does not contain; whoever \
                 controls the store put back an older signed pointer. Refusing to recover \
                 from the peer",
                self.generation
                    .map(|g| format!("generation {g}, "))
                    .unwrap_or_default()
            )));
        }
        Err(CoordinatorError::UnexpectedHistory(
            match (continuation, self.generation) {
                (Continuation::RolledBack, Some(verified)) => format!(
                    "the history was rolled back: the store's latest pointer is generation \
                 {stored} (transition {theirs}), older than generation {verified} \
                 (transition {ours}) that you verified last; whoever controls the store put \
                 back an older signed pointer. Refusing to recover: restore \
                 transitions/latest to your verified transition"
                ),
                (_, verified) => format!(
                    "the store's history (generation {stored}, transition {theirs}) does not \
                 contain the transition you verified last ({}transition {ours}): it was \
                 rolled back or replaced. Refusing to recover",
                    verified
                        .map(|g| format!("generation {g}, "))
                        .unwrap_or_default()
                ),
            },
        ))
    }
}

/// Does the history end where the caller expects it to (`expected`: 32 bytes, all zero for
/// a first set)? Checked on both authorisation paths, before either: a first set that
/// meets an existing history must not land as a later generation, where the caller would
/// get no seed shares and an attacker's first manifest would stay in the history. An empty
/// `expected` (a Gen-1 client, which cannot send one) is not checked.
fn check_previous(before: Option<&State>, expected: &[u8]) -> Result<(), CoordinatorError> {
    if expected.is_empty() {
        tracing::info!("SetManifest without PreviousTransitionHash: the history is not checked");
        return Ok(());
    }
    let expected: [u8; 32] = expected.try_into().map_err(|_| {
        CoordinatorError::InvalidArgument(format!(
            "PreviousTransitionHash: expected 32 bytes (all zero for a first set), got {}",
            expected.len()
        ))
    })?;
    match before {
        None if expected == ZERO_HASH => Ok(()),
        None => Err(CoordinatorError::UnexpectedHistory(format!(
            "this Coordinator has no manifest history, but the request expects latest \
             transition {}: it is a new deployment, not the one you verified; for a new \
             deployment set without an expected transition (contrast set: remove \
             verify/latest-transition)",
            hex::encode(expected)
        ))),
        Some(state) if expected == ZERO_HASH => Err(CoordinatorError::UnexpectedHistory(format!(
            "the request expected no manifest history (a first set), but the Coordinator \
             already has {} manifest(s) (latest transition {}): someone set a manifest \
             before you; do not use this deployment, inspect it with contrast verify",
            state.generation,
            hex::encode(state.latest.transition_hash)
        ))),
        Some(state) if expected != state.latest.transition_hash => Err(
            CoordinatorError::ConcurrentUpdate(hex::encode(state.latest.transition_hash)),
        ),
        Some(_) => Ok(()),
    }
}

/// May `input` replace the active manifest of `state`? Either the caller's TLS key or a
/// detached signature's key must be a workload owner of the active manifest, and the seed
/// share owners must stay as they are.
fn authorize_update(
    state: &State,
    manifest: &Manifest,
    input: &SetManifestInput,
) -> Result<(), CoordinatorError> {
    let owners: Vec<String> = state
        .manifest()
        .workload_owner_key_digests
        .iter()
        .flatten()
        .map(|d| d.as_str().to_ascii_lowercase())
        .collect();
    if owners.is_empty() {
        return Err(CoordinatorError::PermissionDenied(
            "setting manifest is disabled: the active manifest has no WorkloadOwnerKeyDigests \
             (an immutable deployment)"
                .into(),
        ));
    }
    let listed = |public_key_der: &[u8]| {
        let digest = hex::encode(digest(&SHA256, public_key_der));
        owners.contains(&digest)
    };
    if input.signature.is_empty() {
        let Some(caller) = &input.caller_public_key else {
            return Err(CoordinatorError::PermissionDenied(
                "validating peer: no client certificate; present a workload owner key".into(),
            ));
        };
        if !listed(caller) {
            return Err(CoordinatorError::PermissionDenied(
                "validating peer: the client key is not a workload owner key of the active \
                 manifest"
                    .into(),
            ));
        }
    } else {
        if input.signer_public_key.is_empty() {
            return Err(CoordinatorError::InvalidArgument(
                "a signature needs the signer's public key (SignerPublicKey)".into(),
            ));
        }
        if !listed(&input.signer_public_key) {
            return Err(CoordinatorError::PermissionDenied(
                "the signing key is not a workload owner key of the active manifest".into(),
            ));
        }
        let previous = state.latest.transition_hash;
        let next = hex::encode(next_transition_hash(&input.manifest, previous));
        verify_owner_signature(&input.signer_public_key, next.as_bytes(), &input.signature)?;
    }
    let sorted = |m: &Manifest| {
        let mut keys: Vec<String> = m
            .seedshare_owner_pub_keys
            .iter()
            .flatten()
            .map(|k| k.as_str().to_ascii_lowercase())
            .collect();
        keys.sort();
        keys
    };
    if sorted(state.manifest()) != sorted(manifest) {
        return Err(CoordinatorError::InvalidArgument(
            "SeedshareOwnerPubKeys changed: the seed share owners cannot change after the \
             first manifest (keep the list of the active manifest)"
                .into(),
        ));
    }
    Ok(())
}

/// Checks an ECDSA signature (DER, SHA-256 over `message`, as `openssl dgst -sha256 -sign`
/// makes it) with a P-384 or P-256 public key in PKIX DER.
fn verify_owner_signature(
    public_key_der: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), CoordinatorError> {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P384_SHA256_ASN1, UnparsedPublicKey};
    let spki = match SubjectPublicKeyInfo::from_der(public_key_der) {
        Ok(([], spki)) => spki,
        _ => {
            return Err(CoordinatorError::InvalidArgument(
                "SignerPublicKey is not a PKIX DER public key".into(),
            ));
        }
    };
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    let algorithm = match curve.as_deref() {
        Some("1.3.132.0.34") => &ECDSA_P384_SHA256_ASN1,
        Some("1.2.840.10045.3.1.7") => &ECDSA_P256_SHA256_ASN1,
        _ => {
            return Err(CoordinatorError::InvalidArgument(
                "SignerPublicKey must be an ECDSA P-384 (or P-256) key".into(),
            ));
        }
    };
    UnparsedPublicKey::new(algorithm, spki.subject_public_key.data.as_ref())
        .verify(message, signature)
        .map_err(|_| {
            CoordinatorError::PermissionDenied(
                "the signature does not verify: it must sign the next transition hash \
                 computed against the Coordinator's latest transition"
                    .into(),
            )
        })
}

/// Every policy the manifest names must come with its document; only those are stored.
fn check_policies(
    manifest: &Manifest,
    uploaded: &[Vec<u8>],
) -> Result<Vec<Vec<u8>>, CoordinatorError> {
    let by_hash: BTreeMap<String, &Vec<u8>> = uploaded
        .iter()
        .map(|p| (hex::encode(digest(&SHA256, p)), p))
        .collect();
    manifest
        .policies
        .keys()
        .map(|hash| {
            by_hash
                .get(&hash.as_str().to_ascii_lowercase())
                .map(|p| (*p).clone())
                .ok_or_else(|| {
                    CoordinatorError::InvalidArgument(format!(
                        "no policy provided for hash {}: send every policy document the \
                         manifest names (contrast set reads them from your resources)",
                        hash.as_str()
                    ))
                })
        })
        .collect()
}

/// The key a caller authenticated with, as compared with `SeedshareOwnerPubKeys`: RSA keys
/// as PKCS#1 DER, others as PKIX DER.
pub fn seedshare_owner_form(public_key_der: &[u8]) -> Vec<u8> {
    match SubjectPublicKeyInfo::from_der(public_key_der) {
        Ok((_, spki)) if spki.algorithm.algorithm.to_id_string() == "1.2.840.113549.1.1.1" => {
            spki.subject_public_key.data.to_vec()
        }
        _ => public_key_der.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::AtomicUsize;

    use contrast_history::{MemStore, StoreError};
    use contrast_testkit::Deployment;

    use super::*;

    /// A store that counts its reads.
    #[derive(Debug, Default)]
    struct CountingStore {
        inner: MemStore,
        reads: AtomicUsize,
    }

    impl Store for CountingStore {
        fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.get(key)
        }
        fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
            self.inner.set(key, value)
        }
        fn has(&self, key: &str) -> Result<bool, StoreError> {
            self.reads.fetch_add(1, Ordering::SeqCst);
            self.inner.has(key)
        }
        fn compare_and_swap(&self, key: &str, old: &[u8], new: &[u8]) -> Result<(), StoreError> {
            self.inner.compare_and_swap(key, old, new)
        }
    }

    fn set(guard: &StateGuard, deployment: &Deployment, manifest: &Manifest, owner: &[u8]) {
        guard
            .set_manifest(SetManifestInput {
                manifest: manifest.encode(),
                policies: deployment.policy_documents(),
                caller_public_key: Some(owner.to_vec()),
                ..SetManifestInput::default()
            })
            .unwrap();
    }

    /// GetManifests and /attest are unauthenticated: a long history is read from the
    /// store once per latest transition, not walked again on every call.
    #[test]
    fn long_history_rewalk_per_call_refused() {
        let deployment = Deployment::new(&["web"]);
        let store = Arc::new(CountingStore::default());
        let guard = StateGuard::new(store.clone(), Verifiers::real());
        let owner = deployment.owner_key.public_key_der().to_vec();
        let mut manifest = deployment.manifest.clone();
        for generation in 0..40 {
            manifest.workload_owner_key_digests = Some(vec![
                HexString(deployment.owner_key.digest_hex()),
                HexString(format!("{generation:064x}")),
            ]);
            set(&guard, &deployment, &manifest, &owner);
        }

        let first = guard.manifests().unwrap();
        assert_eq!(first.manifests.len(), 40);
        let before = store.reads.load(Ordering::SeqCst);
        for _ in 0..100 {
            let view = guard.manifests().unwrap();
            assert_eq!(view.manifests.len(), 40);
        }
        assert_eq!(
            store.reads.load(Ordering::SeqCst) - before,
            0,
            "100 calls on an unchanged history read the store"
        );

        // A new transition: read again, once.
        manifest.workload_owner_key_digests =
            Some(vec![HexString(deployment.owner_key.digest_hex())]);
        set(&guard, &deployment, &manifest, &owner);
        let after_update = store.reads.load(Ordering::SeqCst);
        let view = guard.manifests().unwrap();
        assert_eq!(view.manifests.len(), 41);
        assert_eq!(view.manifests.last().unwrap(), &manifest.encode());
        assert!(store.reads.load(Ordering::SeqCst) > after_update);
        let reread = store.reads.load(Ordering::SeqCst);
        guard.manifests().unwrap();
        assert_eq!(store.reads.load(Ordering::SeqCst), reread);
    }
}
