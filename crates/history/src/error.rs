//! The errors of the history stores ([`StoreError`]) and of the history on top of them
//! ([`HistoryError`]).

use std::io;
use std::path::PathBuf;

/// Errors of a key/value [`Store`](crate::Store).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Nothing is stored under the key.
    #[error("{key}: not found in the history store")]
    NotFound {
        /// The key that was read.
        key: String,
    },
    /// A compare-and-swap found a value other than the expected old one: someone else wrote
    /// the key in between. Re-read the key and retry.
    #[error("{key}: object has changed since last read; re-read it and retry the update")]
    Conflict {
        /// The key that was swapped.
        key: String,
    },
    /// The key is not `<class>/<name>` with both parts matching `[a-zA-Z0-9-]+`.
    #[error(
        "invalid history store key {key:?}: {reason}; keys are <class>/<name>, both parts made of a-z, A-Z, 0-9 and -"
    )]
    InvalidKey {
        /// The key as given.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A file system operation of [`FsStore`](crate::FsStore) failed.
    #[error(
        "history store: cannot {action} {}; check that the store directory exists, is writable and has free space",
        path.display()
    )]
    Io {
        /// What was being done (`read`, `rename`, …).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A remote store (Kubernetes ConfigMaps) failed or did not answer in time.
    #[error("history store: cannot {action} {key}")]
    Backend {
        /// What was being done (`reach the Kubernetes API for`, …).
        action: &'static str,
        /// The key concerned.
        key: String,
        /// The backend's error, which says what to check.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StoreError {
    /// Whether this is a [`StoreError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// Whether this is a [`StoreError::Conflict`] (a lost compare-and-swap race).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Conflict { .. })
    }
}

/// Errors of the [`History`](crate::History) and its binary formats.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The underlying store failed (missing key, lost compare-and-swap, I/O).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Content read from a content-addressed key does not hash to the key's name. The store
    /// is untrusted; this means it was modified. The bytes are never returned.
    #[error("{key}: hash mismatch: stored content hashes to {actual}; the store was modified")]
    HashMismatch {
        /// The key that was read (`manifests/<hex>`, `policies/<hex>`, `transitions/<hex>`).
        key: String,
        /// Lowercase hex SHA-256 of what the store returned.
        actual: String,
    },
    /// Bytes given as a transition are not exactly 64 bytes long.
    #[error(
        "transition: expected exactly 64 bytes (manifest hash then previous transition hash), got {len}"
    )]
    TransitionLength {
        /// The length that was given.
        len: usize,
    },
    /// A stored transition hashes correctly but is not 64 bytes long: whoever wrote it did
    /// not write a transition.
    #[error(
        "{key}: expected a 64-byte transition (manifest hash then previous transition hash), got {len} bytes; the store was modified"
    )]
    StoredTransitionLength {
        /// The key that was read.
        key: String,
        /// The length of the stored value.
        len: usize,
    },
    /// The latest pointer is too short to hold a transition hash and a signature.
    #[error(
        "transitions/latest: expected a 32-byte transition hash followed by a signed generation or a DER signature, got only {len} bytes; the store was modified"
    )]
    LatestTooShort {
        /// The length that was given.
        len: usize,
    },
    /// The byte after the latest pointer's transition hash names no known format.
    #[error(
        "transitions/latest: unknown pointer format {format:#04x} after the transition hash (expected 0x01, a signed generation, or 0x30, Contrast's DER signature); the store was modified"
    )]
    LatestFormat {
        /// The byte found.
        format: u8,
    },
    /// The generation signed in the latest pointer is not the length of the history it
    /// points to.
    #[error(
        "transitions/latest: the pointer to transition {transition} is signed as generation {signed}, but the history up to it has {walked} transitions; the store was modified"
    )]
    GenerationMismatch {
        /// Lowercase hex of the transition hash the pointer names.
        transition: String,
        /// The generation in the pointer.
        signed: u64,
        /// The number of transitions walked.
        walked: u64,
    },
    /// The latest pointer's signature is not a DER-encoded ECDSA P-384 signature.
    #[error(
        "transitions/latest: the signature for transition {transition} is not a DER ECDSA P-384 signature; the store was modified"
    )]
    LatestSignatureEncoding {
        /// Lowercase hex of the transition hash the pointer names.
        transition: String,
    },
    /// The latest pointer's signature does not verify with the transaction signing key.
    #[error(
        "transitions/latest: the signature over transition {transition} does not verify with the transaction signing key; the store was modified, or the key comes from another seed"
    )]
    LatestSignatureInvalid {
        /// Lowercase hex of the transition hash the pointer names.
        transition: String,
    },
    /// Signing the latest pointer failed (only possible with a broken key).
    #[error("cannot sign transition {transition} with the transaction signing key")]
    Sign {
        /// Lowercase hex of the transition hash.
        transition: String,
        /// The signer's error.
        #[source]
        source: p384::ecdsa::Error,
    },
    /// The latest pointer was to be set to a transition that is not stored.
    #[error(
        "cannot point transitions/latest at {transition}: transitions/{transition} is not stored; store the transition first"
    )]
    MissingTransition {
        /// Lowercase hex of the transition hash.
        transition: String,
    },
    /// A history walk reached a transition it had already visited.
    #[error(
        "transitions/{transition}: the history walk reached this transition twice (a cycle); the store was modified"
    )]
    HistoryCycle {
        /// Lowercase hex of the transition reached twice.
        transition: String,
    },
    /// A history walk did not reach the root within the limit.
    #[error(
        "the history walk from transition {start} did not reach the root within {limit} transitions; the store was modified, or raise the limit with History::with_walk_limit"
    )]
    HistoryTooLong {
        /// Lowercase hex of the transition the walk started at.
        start: String,
        /// The limit in force.
        limit: usize,
    },
}

impl HistoryError {
    /// Whether the underlying store reported a missing key.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_not_found())
    }

    /// Whether the underlying store reported a lost compare-and-swap race (a concurrent
    /// update of the latest pointer).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_conflict())
    }
}
