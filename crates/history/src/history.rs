//! The history on top of an untrusted store (docs/protocol.md §2).

use std::collections::HashSet;

use p384::ecdsa::{SigningKey, VerifyingKey};

use crate::latest::LatestTransition;
use crate::store::Store;
use crate::transition::{Transition, ZERO_HASH, sha256};
use crate::{HistoryError, StoreError};

/// The key of the latest pointer, the only key that changes.
pub const LATEST_KEY: &str = "transitions/latest";

/// How many transitions a history walk follows by default before it gives up. Manifest
/// updates are rare; this only stops a hostile store from keeping a walk busy.
pub const DEFAULT_WALK_LIMIT: usize = 1 << 20;

/// Content-address class names.
const MANIFESTS: &str = "manifests";
const POLICIES: &str = "policies";
const TRANSITIONS: &str = "transitions";

/// The manifest history: manifests, policies and transitions under their SHA-256, and the
/// signed pointer to the newest transition.
///
/// The store is untrusted. Every content-addressed read re-hashes what the store returned
/// and fails with [`HistoryError::HashMismatch`] rather than return unverified bytes;
/// [`get_latest`](Self::get_latest) checks the pointer's signature. Together they pin the
/// whole chain: a transition hash commits to its manifest and to every earlier transition.
#[derive(Debug)]
pub struct History<S> {
    store: S,
    walk_limit: usize,
}

fn content_key(class: &str, hash: &[u8; 32]) -> String {
    format!("{class}/{}", hex::encode(hash))
}

impl<S: Store> History<S> {
    /// A history in `store`.
    pub fn new(store: S) -> Self {
        Self {
            store,
            walk_limit: DEFAULT_WALK_LIMIT,
        }
    }

    /// Sets how many transitions [`walk`](Self::walk) follows at most.
    #[must_use]
    pub fn with_walk_limit(mut self, limit: usize) -> Self {
        self.walk_limit = limit;
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    fn set_content(&self, class: &str, bytes: &[u8]) -> Result<[u8; 32], HistoryError> {
        let hash = sha256(bytes);
        self.store.set(&content_key(class, &hash), bytes)?;
        Ok(hash)
    }

    fn get_content(&self, class: &str, hash: &[u8; 32]) -> Result<Vec<u8>, HistoryError> {
        let key = content_key(class, hash);
        let bytes = self.store.get(&key)?;
        let actual = sha256(&bytes);
        if &actual != hash {
            return Err(HistoryError::HashMismatch {
                key,
                actual: hex::encode(actual),
            });
        }
        Ok(bytes)
    }

    /// Stores manifest bytes (exactly as received) under `manifests/<hex(SHA-256)>`; returns
    /// the manifest hash.
    pub fn set_manifest(&self, bytes: &[u8]) -> Result<[u8; 32], HistoryError> {
        self.set_content(MANIFESTS, bytes)
    }

    /// The manifest with this hash, checked against it.
    pub fn get_manifest(&self, hash: [u8; 32]) -> Result<Vec<u8>, HistoryError> {
        self.get_content(MANIFESTS, &hash)
    }

    /// Stores a policy document under `policies/<hex(SHA-256)>`; returns its hash.
    pub fn set_policy(&self, bytes: &[u8]) -> Result<[u8; 32], HistoryError> {
        self.set_content(POLICIES, bytes)
    }

    /// The policy document with this hash, checked against it.
    pub fn get_policy(&self, hash: [u8; 32]) -> Result<Vec<u8>, HistoryError> {
        self.get_content(POLICIES, &hash)
    }

    /// Stores a transition under `transitions/<hex(transition hash)>`; returns the hash.
    pub fn set_transition(&self, transition: &Transition) -> Result<[u8; 32], HistoryError> {
        self.set_content(TRANSITIONS, &transition.to_bytes())
    }

    /// The transition with this hash, checked against it.
    pub fn get_transition(&self, hash: [u8; 32]) -> Result<Transition, HistoryError> {
        let bytes = self.get_content(TRANSITIONS, &hash)?;
        Transition::from_bytes(&bytes).map_err(|_| HistoryError::StoredTransitionLength {
            key: content_key(TRANSITIONS, &hash),
            len: bytes.len(),
        })
    }

    /// The latest pointer without checking its signature (`None` for an empty history).
    /// Only for finding out which manifest to recover against (docs/protocol.md §7.2
    /// step 1); everything else uses [`get_latest`](Self::get_latest).
    pub fn get_latest_unverified(&self) -> Result<Option<LatestTransition>, HistoryError> {
        match self.store.get(LATEST_KEY) {
            Ok(bytes) => LatestTransition::from_bytes(&bytes).map(Some),
            Err(StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The latest pointer, its signature checked with the transaction signing key (`None`
    /// for an empty history).
    pub fn get_latest(&self, key: &VerifyingKey) -> Result<Option<LatestTransition>, HistoryError> {
        let latest = self.get_latest_unverified()?;
        if let Some(latest) = &latest {
            latest.verify(key)?;
        }
        Ok(latest)
    }

    /// Signs `new_hash` as `generation` and swaps it in as the latest pointer if the
    /// pointer is still `old` (`None`: no pointer yet). The transition must be stored
    /// already. A concurrent update gives a [`StoreError::Conflict`]
    /// ([`HistoryError::is_conflict`]).
    pub fn set_latest(
        &self,
        old: Option<&LatestTransition>,
        new_hash: [u8; 32],
        generation: u64,
        key: &SigningKey,
    ) -> Result<LatestTransition, HistoryError> {
        // A pointer to a missing transition would leave the history unwalkable.
        if !self.store.has(&content_key(TRANSITIONS, &new_hash))? {
            return Err(HistoryError::MissingTransition {
                transition: hex::encode(new_hash),
            });
        }
        let new = LatestTransition::sign(new_hash, generation, key)?;
        let old_bytes = old.map(LatestTransition::to_bytes).unwrap_or_default();
        self.store
            .compare_and_swap(LATEST_KEY, &old_bytes, &new.to_bytes())?;
        Ok(new)
    }

    /// Makes `manifest_bytes` the active manifest after `old` (`None`: the first manifest):
    /// stores the manifest and the transition, then swaps the latest pointer, signed with
    /// the next generation.
    pub fn append_manifest(
        &self,
        manifest_bytes: &[u8],
        old: Option<&LatestTransition>,
        key: &SigningKey,
    ) -> Result<LatestTransition, HistoryError> {
        let generation = match old {
            None => 1,
            Some(old) => self.generation_of(old)?.saturating_add(1),
        };
        let manifest_hash = self.set_manifest(manifest_bytes)?;
        let transition = Transition {
            manifest_hash,
            previous: old.map_or(ZERO_HASH, |latest| latest.transition_hash),
        };
        let hash = self.set_transition(&transition)?;
        self.set_latest(old, hash, generation, key)
    }

    /// The generation of a pointer: the signed one, or for a pointer in Contrast's format
    /// (no generation) the length of its history.
    fn generation_of(&self, latest: &LatestTransition) -> Result<u64, HistoryError> {
        match latest.generation {
            Some(generation) => Ok(generation),
            None => Ok(self.walk(latest.transition_hash)?.len() as u64),
        }
    }

    /// The history up to `latest` (newest first, as [`walk`](Self::walk)), refused if the
    /// pointer's signed generation is not its length. Check the pointer's signature first
    /// ([`get_latest`](Self::get_latest)).
    pub fn verified_chain(
        &self,
        latest: &LatestTransition,
    ) -> Result<Vec<([u8; 32], Transition)>, HistoryError> {
        let chain = self.walk(latest.transition_hash)?;
        let walked = chain.len() as u64;
        match latest.generation {
            Some(signed) if signed != walked => Err(HistoryError::GenerationMismatch {
                transition: hex::encode(latest.transition_hash),
                signed,
                walked,
            }),
            _ => Ok(chain),
        }
    }

    /// The transitions from `latest_hash` back to the first, newest first, each with its
    /// hash. The zero hash gives an empty list. Every transition is checked against its
    /// hash; cycles and walks longer than the limit are refused.
    pub fn walk(&self, latest_hash: [u8; 32]) -> Result<Vec<([u8; 32], Transition)>, HistoryError> {
        walk_chain(latest_hash, self.walk_limit, |hash| {
            self.get_transition(hash)
        })
    }
}

/// Follows `previous` links from `start` to the zero hash, reading each transition with
/// `fetch`. Separate from the store so that the cycle check, which content addressing makes
/// unreachable short of a SHA-256 collision, can be tested.
fn walk_chain(
    start: [u8; 32],
    limit: usize,
    mut fetch: impl FnMut([u8; 32]) -> Result<Transition, HistoryError>,
) -> Result<Vec<([u8; 32], Transition)>, HistoryError> {
    let mut chain = Vec::new();
    let mut seen = HashSet::new();
    let mut hash = start;
    while hash != ZERO_HASH {
        if chain.len() >= limit {
            return Err(HistoryError::HistoryTooLong {
                start: hex::encode(start),
                limit,
            });
        }
        if !seen.insert(hash) {
            return Err(HistoryError::HistoryCycle {
                transition: hex::encode(hash),
            });
        }
        let transition = fetch(hash)?;
        chain.push((hash, transition));
        hash = transition.previous;
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;
    use crate::MemStore;
    use crate::transition::transition_hash_of;

    fn key() -> SigningKey {
        SigningKey::from_slice(&[0x42; 48]).unwrap()
    }

    fn history() -> History<MemStore> {
        History::new(MemStore::new())
    }

    #[test]
    fn manifest_and_policy_round_trip() {
        let h = history();
        let m = h.set_manifest(b"{\"Policies\":{}}\n").unwrap();
        assert_eq!(m, sha256(b"{\"Policies\":{}}\n"));
        assert_eq!(h.get_manifest(m).unwrap(), b"{\"Policies\":{}}\n");
        assert!(
            h.store()
                .has(&format!("manifests/{}", hex::encode(m)))
                .unwrap()
        );
        let p = h.set_policy(b"policy").unwrap();
        assert_eq!(h.get_policy(p).unwrap(), b"policy");
        assert!(
            h.store()
                .has(&format!("policies/{}", hex::encode(p)))
                .unwrap()
        );
        // Manifests and policies are separate classes.
        assert!(h.get_policy(m).unwrap_err().is_not_found());
        assert!(h.get_manifest(p).unwrap_err().is_not_found());
    }

    #[test]
    fn missing_content_is_not_found() {
        let h = history();
        let err = h.get_manifest([1; 32]).unwrap_err();
        assert!(err.is_not_found());
        assert!(
            err.to_string()
                .contains(&format!("manifests/{}", hex::encode([1; 32])))
        );
        assert!(h.get_transition([1; 32]).unwrap_err().is_not_found());
    }

    #[test]
    fn transition_round_trip() {
        let h = history();
        let t = Transition {
            manifest_hash: [3; 32],
            previous: ZERO_HASH,
        };
        let hash = h.set_transition(&t).unwrap();
        assert_eq!(hash, t.hash());
        assert_eq!(h.get_transition(hash).unwrap(), t);
        assert_eq!(
            h.store()
                .get(&format!("transitions/{}", hex::encode(hash)))
                .unwrap(),
            t.to_bytes()
        );
    }

    #[test]
    fn tampered_content_is_refused_with_the_key_named() {
        let h = history();
        let m = h.set_manifest(b"manifest").unwrap();
        let key = format!("manifests/{}", hex::encode(m));
        h.store().modify(&key, |v| v[0] ^= 1);
        let err = h.get_manifest(m).unwrap_err();
        let expected = format!(
            "{key}: hash mismatch: stored content hashes to {}; the store was modified",
            hex::encode(sha256(b"lanifest"))
        );
        assert_eq!(err.to_string(), expected);
    }

    #[test]
    fn swapped_content_is_refused() {
        let h = history();
        let a = h.set_manifest(b"a").unwrap();
        let b = h.set_manifest(b"b").unwrap();
        let key_a = format!("manifests/{}", hex::encode(a));
        h.store().set(&key_a, b"b").unwrap();
        assert!(matches!(
            h.get_manifest(a),
            Err(HistoryError::HashMismatch { .. })
        ));
        assert_eq!(h.get_manifest(b).unwrap(), b"b");
    }

    #[test]
    fn stored_transition_of_wrong_length_is_refused() {
        let h = history();
        // Content that hashes correctly but is no transition.
        let bytes = b"not 64 bytes";
        let hash = sha256(bytes);
        h.store()
            .set(&format!("transitions/{}", hex::encode(hash)), bytes)
            .unwrap();
        let err = h.get_transition(hash).unwrap_err();
        assert!(
            matches!(&err, HistoryError::StoredTransitionLength { len: 12, .. }),
            "{err}"
        );
        assert!(err.to_string().contains(&hex::encode(hash)));
    }

    #[test]
    fn empty_history() {
        let h = history();
        assert!(h.get_latest_unverified().unwrap().is_none());
        assert!(h.get_latest(key().verifying_key()).unwrap().is_none());
        assert!(h.walk(ZERO_HASH).unwrap().is_empty());
    }

    #[test]
    fn append_walk_and_client_recomputation_agree() {
        let h = history();
        let manifests: [&[u8]; 3] = [b"m0", b"m1", b"m2"];
        let mut latest = None;
        for m in manifests {
            latest = Some(h.append_manifest(m, latest.as_ref(), &key()).unwrap());
        }
        let latest = latest.unwrap();
        assert_eq!(latest.transition_hash, transition_hash_of(manifests));
        assert_eq!(
            h.get_latest(key().verifying_key()).unwrap(),
            Some(latest.clone())
        );
        let walk = h.walk(latest.transition_hash).unwrap();
        assert_eq!(walk.len(), 3);
        // Newest first, each linked to the next older one, ending at the root.
        for (i, (hash, t)) in walk.iter().enumerate() {
            assert_eq!(*hash, t.hash());
            assert_eq!(t.manifest_hash, sha256(manifests[2 - i]));
            assert_eq!(h.get_manifest(t.manifest_hash).unwrap(), manifests[2 - i]);
            let expected_previous = walk.get(i + 1).map_or(ZERO_HASH, |(h, _)| *h);
            assert_eq!(t.previous, expected_previous);
        }
    }

    #[test]
    fn append_signs_consecutive_generations() {
        let h = history();
        let mut latest = None;
        for (i, m) in [&b"m0"[..], b"m1", b"m2"].into_iter().enumerate() {
            let next = h.append_manifest(m, latest.as_ref(), &key()).unwrap();
            assert_eq!(next.generation, Some(i as u64 + 1));
            assert_eq!(h.verified_chain(&next).unwrap().len(), i + 1);
            latest = Some(next);
        }
        assert_eq!(
            h.get_latest(key().verifying_key()).unwrap(),
            latest,
            "the stored pointer carries the generation"
        );
    }

    #[test]
    fn contrast_format_pointer_is_read_and_continued() {
        // A store written before generations were signed: Contrast's pointer format.
        use p384::ecdsa::signature::hazmat::PrehashSigner;
        let h = history();
        let mut previous = ZERO_HASH;
        for m in [&b"m0"[..], b"m1"] {
            let hash = h
                .set_transition(&Transition::for_manifest(m, previous))
                .unwrap();
            h.set_manifest(m).unwrap();
            previous = hash;
        }
        let signature: p384::ecdsa::DerSignature = key().sign_prehash(&previous).unwrap();
        let contrast = LatestTransition {
            transition_hash: previous,
            generation: None,
            signature: signature.as_bytes().to_vec(),
        };
        h.store()
            .compare_and_swap(LATEST_KEY, b"", &contrast.to_bytes())
            .unwrap();
        let read = h.get_latest(key().verifying_key()).unwrap().unwrap();
        assert_eq!(read, contrast);
        assert_eq!(h.verified_chain(&read).unwrap().len(), 2);
        // The next manifest is generation 3, counted from the walked history.
        let next = h.append_manifest(b"m2", Some(&read), &key()).unwrap();
        assert_eq!(next.generation, Some(3));
    }

    #[test]
    fn pointer_signed_with_a_wrong_generation_refused() {
        let h = history();
        let first = h.append_manifest(b"m0", None, &key()).unwrap();
        let second = h.append_manifest(b"m1", Some(&first), &key()).unwrap();
        // Validly signed, but the generation is not the history's length.
        let wrong = LatestTransition::sign(second.transition_hash, 5, &key()).unwrap();
        let err = h.verified_chain(&wrong).unwrap_err();
        assert!(
            matches!(
                err,
                HistoryError::GenerationMismatch {
                    signed: 5,
                    walked: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("generation 5"), "{err}");
    }

    #[test]
    fn set_latest_is_compare_and_swap() {
        let h = history();
        let first = h.append_manifest(b"m0", None, &key()).unwrap();
        // A second "first" manifest loses: the pointer exists.
        let err = h.append_manifest(b"other", None, &key()).unwrap_err();
        assert!(err.is_conflict(), "{err}");
        let second = h.append_manifest(b"m1", Some(&first), &key()).unwrap();
        // Updating from the stale pointer loses.
        let err = h.append_manifest(b"m2", Some(&first), &key()).unwrap_err();
        assert!(err.is_conflict(), "{err}");
        assert!(err.to_string().contains("transitions/latest"), "{err}");
        assert_eq!(h.get_latest(key().verifying_key()).unwrap(), Some(second));
    }

    #[test]
    fn set_latest_refuses_a_missing_transition() {
        let h = history();
        let err = h.set_latest(None, [9; 32], 1, &key()).unwrap_err();
        assert!(
            matches!(err, HistoryError::MissingTransition { .. }),
            "{err}"
        );
        assert!(h.get_latest_unverified().unwrap().is_none());
    }

    #[test]
    fn get_latest_checks_the_signature() {
        let h = history();
        h.append_manifest(b"m0", None, &key()).unwrap();
        let other = SigningKey::from_slice(&[0x43; 48]).unwrap();
        let err = h.get_latest(other.verifying_key()).unwrap_err();
        assert!(
            matches!(err, HistoryError::LatestSignatureInvalid { .. }),
            "{err}"
        );
        // A pointer moved to another stored transition without re-signing is refused.
        let t = h
            .set_transition(&Transition::for_manifest(b"evil", ZERO_HASH))
            .unwrap();
        h.store()
            .modify(LATEST_KEY, |v| v[..32].copy_from_slice(&t));
        assert!(h.get_latest(key().verifying_key()).is_err());
        // The unverified read still returns it: that is what it is for.
        assert_eq!(
            h.get_latest_unverified().unwrap().unwrap().transition_hash,
            t
        );
    }

    #[test]
    fn short_latest_pointer_is_refused() {
        let h = history();
        h.store().set(LATEST_KEY, &[0x30; 32]).unwrap();
        assert!(matches!(
            h.get_latest_unverified(),
            Err(HistoryError::LatestTooShort { len: 32 })
        ));
    }

    #[test]
    fn walk_refuses_tampered_and_missing_links() {
        let h = history();
        let mut latest = None;
        for m in [&b"m0"[..], b"m1", b"m2"] {
            latest = Some(h.append_manifest(m, latest.as_ref(), &key()).unwrap());
        }
        let head = latest.unwrap().transition_hash;
        let walk = h.walk(head).unwrap();
        let middle = format!("transitions/{}", hex::encode(walk[1].0));
        h.store().modify(&middle, |v| v[40] ^= 0x10);
        let err = h.walk(head).unwrap_err();
        assert!(matches!(err, HistoryError::HashMismatch { ref key, .. } if *key == middle));
        h.store().remove(&middle);
        assert!(h.walk(head).unwrap_err().is_not_found());
    }

    #[test]
    fn walk_limit() {
        let h = history().with_walk_limit(2);
        let mut latest = None;
        for m in [&b"m0"[..], b"m1"] {
            latest = Some(h.append_manifest(m, latest.as_ref(), &key()).unwrap());
        }
        assert_eq!(
            h.walk(latest.as_ref().unwrap().transition_hash)
                .unwrap()
                .len(),
            2
        );
        let latest = h.append_manifest(b"m2", latest.as_ref(), &key()).unwrap();
        let err = h.walk(latest.transition_hash).unwrap_err();
        assert!(
            matches!(err, HistoryError::HistoryTooLong { limit: 2, .. }),
            "{err}"
        );
    }

    #[test]
    fn walk_refuses_a_cycle() {
        // Two transitions naming each other, served without the hash check.
        let a = [0xa; 32];
        let b = [0xb; 32];
        let fetch = |hash: [u8; 32]| {
            Ok(Transition {
                manifest_hash: [1; 32],
                previous: if hash == a { b } else { a },
            })
        };
        let err = walk_chain(a, DEFAULT_WALK_LIMIT, fetch).unwrap_err();
        assert!(
            matches!(&err, HistoryError::HistoryCycle { transition } if *transition == hex::encode(a)),
            "{err}"
        );
        // A transition naming itself.
        let err = walk_chain(a, DEFAULT_WALK_LIMIT, |_| {
            Ok(Transition {
                manifest_hash: [1; 32],
                previous: a,
            })
        })
        .unwrap_err();
        assert!(matches!(err, HistoryError::HistoryCycle { .. }), "{err}");
    }

    #[test]
    fn works_over_a_shared_dyn_store() {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let h = History::new(Arc::clone(&store));
        let latest = h.append_manifest(b"m0", None, &key()).unwrap();
        let other = History::new(store);
        assert_eq!(
            other.get_latest(key().verifying_key()).unwrap(),
            Some(latest)
        );
    }
}
