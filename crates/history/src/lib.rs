//! The Coordinator's manifest history (docs/protocol.md §2).
//!
//! Manifests, policies and transitions are stored under their SHA-256 in an untrusted
//! key/value [`Store`]; the only mutable key, `transitions/latest`, holds a
//! [`LatestTransition`] signed with the transaction signing key. [`History`] re-hashes
//! everything it reads and checks the pointer's signature, so a modified store is detected,
//! never believed.
//!
//! Stores: [`FsStore`] (a directory, crash-safe and safe across processes) and [`MemStore`]
//! (tests). The Kubernetes ConfigMap store implements the same [`Store`] trait elsewhere.

mod error;
mod fs;
mod history;
mod latest;
mod mem;
mod store;
mod transition;

pub use error::{HistoryError, StoreError};
pub use fs::FsStore;
pub use history::{DEFAULT_WALK_LIMIT, History, LATEST_KEY};
pub use latest::LatestTransition;
pub use mem::MemStore;
pub use store::{Store, check_compare_and_swap_semantics, validate_key};
pub use transition::{
    Continuation, Transition, ZERO_HASH, continuation, next_transition_hash, transition_hash_of,
};
