//! The crate's error type.

/// Everything that can go wrong with secret material. Messages name the input and say
/// what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeedEngineError {
    /// A det-keygen seed below the specification's minimum.
    #[error(
        "deterministic key generation needs a seed of at least {min} bytes, got {len}; \
         pass a seed derived by the seed engine"
    )]
    DetKeygenSeedTooShort {
        /// The length given.
        len: usize,
        /// The minimum (16).
        min: usize,
    },
    /// det-keygen produced 0 or a value ≥ the group order: cryptographically negligible,
    /// so it points to a hardware or implementation fault.
    #[error(
        "deterministic {curve} key generation produced a scalar out of range; this points \
         to a hardware or implementation fault, retry on another machine"
    )]
    DetKeygenOutOfRange {
        /// The curve (`P-384`).
        curve: &'static str,
    },
    /// The seed is shorter than 32 bytes.
    #[error(
        "the secret seed is {len} bytes; it must be at least {min} bytes (a Coordinator \
         generates 64) — check that the seed was decrypted from the right seed share"
    )]
    SeedTooShort {
        /// The length given.
        len: usize,
        /// The minimum (32).
        min: usize,
    },
    /// The seed is longer than HKDF-SHA256 can derive a same-length secret from.
    #[error(
        "the secret seed is {len} bytes; HKDF-SHA256 derives at most {max} bytes, so the \
         seed must not be longer (a Coordinator generates 64)"
    )]
    SeedTooLong {
        /// The length given.
        len: usize,
        /// The maximum (8160).
        max: usize,
    },
    /// The salt is not 32 bytes.
    #[error(
        "the salt is {len} bytes; it must be exactly 32 bytes (the `salt` of \
         seed-shares.json)"
    )]
    SaltLength {
        /// The length given.
        len: usize,
    },
    /// A workload secret was requested for an empty ID.
    #[error("the workload secret ID is empty; give the workload's secret ID")]
    EmptyWorkloadSecretId,
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed; check the kernel's entropy source")]
    Random,
    /// HKDF refused the output length (cannot happen after the seed length check).
    #[error("HKDF-SHA256 cannot derive {len} bytes")]
    Hkdf {
        /// The requested length.
        len: usize,
    },
    /// An entry of the seedshare owner list is not hex.
    #[error(
        "seedshare owner key {index} is not hex ({reason}); SeedshareOwnerPubKeys entries \
         are the hex of a PKCS#1 DER RSA public key"
    )]
    OwnerKeyNotHex {
        /// The entry's index in the owner list.
        index: usize,
        /// What is wrong with the hex.
        reason: String,
    },
    /// An entry of the seedshare owner list is not a usable RSA public key.
    #[error(
        "seedshare owner key {index} is not a usable PKCS#1 DER RSA public key ({reason}); \
         `contrast generate` writes the right form from seedshare-owner.pem"
    )]
    OwnerKeyInvalid {
        /// The entry's index in the owner list.
        index: usize,
        /// Why it was refused.
        reason: String,
    },
    /// RSA-OAEP encryption to an owner failed.
    #[error("encrypting the seed to seedshare owner key {index} failed")]
    SeedShareEncrypt {
        /// The entry's index in the owner list.
        index: usize,
    },
    /// No share in the document is for the given owner key.
    #[error(
        "none of the {shares} seed shares is for this seedshare owner key (public key \
         {public_key_prefix}…); use the seedshare owner key whose public key is in the \
         manifest's SeedshareOwnerPubKeys, or the seed-shares.json of this deployment"
    )]
    NoMatchingSeedShare {
        /// How many shares the document has.
        shares: usize,
        /// The start of the owner key's public key hex.
        public_key_prefix: String,
    },
    /// RSA-OAEP decryption of the matching share failed.
    #[error(
        "decrypting the seed share failed: its EncryptedSeed does not decrypt under this \
         seedshare owner key with RSA-OAEP-SHA256 and label `seedshare` (corrupted file?)"
    )]
    SeedShareDecrypt,
    /// `seed-shares.json` is malformed.
    #[error("seed shares document: {reason}")]
    SeedShareJson {
        /// What is wrong, with the JSON path or position.
        reason: String,
    },
    /// A key could not be read.
    #[error("{what}: {reason}")]
    KeyDecode {
        /// Which key (`seedshare owner key`, `workload owner key`, …).
        what: &'static str,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// A key could not be encoded (cannot happen for a valid key).
    #[error("encoding the {what} failed: {reason}")]
    KeyEncode {
        /// Which key.
        what: &'static str,
        /// The encoder's error.
        reason: String,
    },
    /// Signing failed.
    #[error("signing with the {what} failed: {reason}")]
    Signing {
        /// Which key.
        what: &'static str,
        /// The signer's error.
        reason: String,
    },
    /// Key generation failed.
    #[error("generating the {what} failed; check the system random number generator")]
    KeyGeneration {
        /// Which key.
        what: &'static str,
    },
}
