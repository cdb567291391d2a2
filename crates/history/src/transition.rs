//! Transitions: one step of the manifest history (docs/protocol.md §2.2).

use sha2::{Digest, Sha256};

use crate::HistoryError;

/// The all-zero hash: the `previous` of the first transition, and where history walks stop.
pub const ZERO_HASH: [u8; 32] = [0; 32];

/// SHA-256, the hash of all content addressing in the history.
pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// One manifest update: the manifest that became active and the transition it followed.
///
/// Stored as exactly 64 bytes, `manifest_hash ‖ previous`, under
/// `transitions/<hex(SHA-256 of those bytes)>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transition {
    /// SHA-256 over the manifest bytes exactly as received.
    pub manifest_hash: [u8; 32],
    /// The hash of the transition before this one; [`ZERO_HASH`] for the first.
    pub previous: [u8; 32],
}

impl Transition {
    /// The transition that makes `manifest_bytes` active after `previous`.
    pub fn for_manifest(manifest_bytes: &[u8], previous: [u8; 32]) -> Self {
        Self {
            manifest_hash: sha256(manifest_bytes),
            previous,
        }
    }

    /// The 64-byte binary form: manifest hash, then previous transition hash.
    pub fn to_bytes(&self) -> [u8; 64] {
        let mut out = [0; 64];
        out[..32].copy_from_slice(&self.manifest_hash);
        out[32..].copy_from_slice(&self.previous);
        out
    }

    /// Parses the 64-byte binary form; any other length is refused.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HistoryError> {
        let bytes: &[u8; 64] = bytes
            .try_into()
            .map_err(|_| HistoryError::TransitionLength { len: bytes.len() })?;
        let (manifest_hash, previous) = bytes.split_at(32);
        let mut transition = Self {
            manifest_hash: ZERO_HASH,
            previous: ZERO_HASH,
        };
        transition.manifest_hash.copy_from_slice(manifest_hash);
        transition.previous.copy_from_slice(previous);
        Ok(transition)
    }

    /// The transition hash: SHA-256 of the 64-byte binary form.
    pub fn hash(&self) -> [u8; 32] {
        sha256(&self.to_bytes())
    }
}

/// The transition hash a Coordinator reaches after receiving `manifests` in order, starting
/// from an empty history ([`ZERO_HASH`] when there are none). This is the SDK's client-side
/// recomputation: the manifests must be the exact bytes that were set.
pub fn transition_hash_of<'a>(manifests: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    manifests.into_iter().fold(ZERO_HASH, |previous, manifest| {
        next_transition_hash(manifest, previous)
    })
}

/// How a history relates to the transition someone verified (or set, or holds) before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continuation {
    /// The history contains that transition (or none was known: [`ZERO_HASH`]).
    Extends,
    /// The history is shorter than that transition's generation: whoever controls the
    /// store put back an older signed latest pointer.
    RolledBack,
    /// The history does not contain it: replaced, or rolled back to an unknown depth.
    Replaced,
}

/// Whether a history of `generation` transitions with these `hashes` contains `expected`
/// (of `expected_generation`, when known). The one rule `contrast verify`, `contrast
/// recover` and peer recovery apply before trusting a history.
pub fn continuation(
    hashes: impl IntoIterator<Item = [u8; 32]>,
    generation: u64,
    expected: [u8; 32],
    expected_generation: Option<u64>,
) -> Continuation {
    if expected == ZERO_HASH || hashes.into_iter().any(|hash| hash == expected) {
        Continuation::Extends
    } else if expected_generation.is_some_and(|known| generation < known) {
        Continuation::RolledBack
    } else {
        Continuation::Replaced
    }
}

/// The hash of the transition that makes `manifest_bytes` active after `previous`.
pub fn next_transition_hash(manifest_bytes: &[u8], previous: [u8; 32]) -> [u8; 32] {
    Transition::for_manifest(manifest_bytes, previous).hash()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn continuation_accepts_extensions_and_names_rollbacks_and_replacements() {
        let chain = [[1; 32], [2; 32], [3; 32]];
        let at = |expected, generation| continuation(chain, 3, expected, generation);
        assert_eq!(at([2; 32], Some(2)), Continuation::Extends);
        assert_eq!(at(ZERO_HASH, None), Continuation::Extends);
        assert_eq!(at([4; 32], Some(4)), Continuation::RolledBack);
        assert_eq!(at([9; 32], Some(2)), Continuation::Replaced);
        assert_eq!(at([9; 32], None), Continuation::Replaced);
    }

    fn unhex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn round_trip() {
        let t = Transition {
            manifest_hash: [0xab; 32],
            previous: [0x01; 32],
        };
        let bytes = t.to_bytes();
        assert_eq!(&bytes[..32], &[0xab; 32]);
        assert_eq!(&bytes[32..], &[0x01; 32]);
        assert_eq!(Transition::from_bytes(&bytes).unwrap(), t);
    }

    #[test]
    fn refuses_other_lengths() {
        for len in [0, 1, 32, 63, 65, 128] {
            let err = Transition::from_bytes(&vec![0; len]).unwrap_err();
            assert!(
                matches!(err, HistoryError::TransitionLength { len: l } if l == len),
                "{err}"
            );
            assert!(err.to_string().contains("exactly 64 bytes"));
        }
    }

    // Known answers computed independently with Python's hashlib (tests/data/PROVENANCE.md).
    #[test]
    fn known_answer_chain() {
        let m0 = b"manifest-0\n";
        let m1 = b"manifest-1\n";
        let t0 = Transition::for_manifest(m0, ZERO_HASH);
        assert_eq!(
            t0.manifest_hash,
            unhex32("517d6afc3b5b06552f3c0b6e8bfab36a08c1e58379d41342475b835980f05cff")
        );
        let h0 = unhex32("cbb22d6e525573fd9bc9ae6354ff333efcb8b22d98dacc76c723a1a127cda493");
        assert_eq!(t0.hash(), h0);
        assert_eq!(next_transition_hash(m0, ZERO_HASH), h0);
        let h1 = unhex32("4acb393cc188a02c7b043ccbafd92b48d7b92cb3df9f12d5ab144e1640f68d46");
        assert_eq!(next_transition_hash(m1, h0), h1);
        assert_eq!(transition_hash_of([&m0[..], &m1[..]]), h1);
        assert_eq!(transition_hash_of([&m0[..]]), h0);
    }

    #[test]
    fn empty_history_is_zero() {
        assert_eq!(transition_hash_of(std::iter::empty()), ZERO_HASH);
    }

    #[test]
    fn order_matters() {
        let a = transition_hash_of([&b"a"[..], &b"b"[..]]);
        let b = transition_hash_of([&b"b"[..], &b"a"[..]]);
        assert_ne!(a, b);
    }
}
