//! Secret material (docs/protocol.md §3).
//!
//! * [`det_keygen`]: C2SP deterministic ECDSA key generation (the seed-derived P-384 keys).
//! * [`SeedEngine`]: the seed and salt, the HKDF-SHA256 derivations from them (pod state,
//!   history, transaction signing and root CA seeds, workload secrets) and the two
//!   seed-derived P-384 keys (root CA, transaction signing).
//! * [`seedshare`]: the seed encrypted to each seedshare owner (RSA-OAEP-SHA256, label
//!   `seedshare`) and the CLI's `seed-shares.json`.
//! * [`keys`]: the keys the CLI keeps (`workload-owner.pem`, `seedshare-owner.pem`) and
//!   P-384 encodings for the CA.

pub mod det_keygen;
mod engine;
mod error;
pub mod keys;
pub mod seedshare;

pub use engine::{MIN_SEED_LEN, SALT_LEN, SEED_LEN, SeedEngine};
pub use error::SeedEngineError;
pub use seedshare::{SeedShare, SeedShareDocument, decrypt_seed_share, encrypt_seed_shares};
