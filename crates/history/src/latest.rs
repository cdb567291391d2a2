//! The signed latest pointer `transitions/latest` (contrast-protocol.md §2.3).

use p384::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p384::ecdsa::{DerSignature, SigningKey, VerifyingKey};

use crate::HistoryError;
use crate::transition::sha256;

/// The pointer to the newest transition, signed with the transaction signing key.
///
/// Binary form: the 32-byte transition hash, then the DER-encoded ECDSA P-384 signature.
/// The signature is over the 32 raw hash bytes used directly as the digest (Go's
/// `ecdsa.SignASN1(key, hash)`), not over a hash of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestTransition {
    /// The hash of the newest transition.
    pub transition_hash: [u8; 32],
    /// DER-encoded ECDSA P-384 signature over `transition_hash` as a prehashed digest.
    pub signature: Vec<u8>,
}

impl LatestTransition {
    /// Signs `transition_hash` with the transaction signing key.
    ///
    /// The signature is deterministic (RFC 6979); Go's signatures are randomised, and both
    /// verify the same way.
    pub fn sign(transition_hash: [u8; 32], key: &SigningKey) -> Result<Self, HistoryError> {
        let signature: DerSignature =
            key.sign_prehash(&transition_hash)
                .map_err(|source| HistoryError::Sign {
                    transition: hex::encode(transition_hash),
                    source,
                })?;
        Ok(Self {
            transition_hash,
            signature: signature.as_bytes().to_vec(),
        })
    }

    /// Checks the signature with the transaction signing key's public half.
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), HistoryError> {
        let signature = DerSignature::from_bytes(&self.signature).map_err(|_| {
            HistoryError::LatestSignatureEncoding {
                transition: hex::encode(self.transition_hash),
            }
        })?;
        key.verify_prehash(&self.transition_hash, &signature)
            .map_err(|_| HistoryError::LatestSignatureInvalid {
                transition: hex::encode(self.transition_hash),
            })
    }

    /// The binary form: transition hash, then the DER signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.signature.len());
        out.extend_from_slice(&self.transition_hash);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Splits the binary form; it must be longer than 32 bytes. The signature is not
    /// checked here: call [`verify`](Self::verify).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HistoryError> {
        match bytes.split_first_chunk::<32>() {
            Some((hash, signature)) if !signature.is_empty() => Ok(Self {
                transition_hash: *hash,
                signature: signature.to_vec(),
            }),
            _ => Err(HistoryError::LatestTooShort { len: bytes.len() }),
        }
    }

    /// SHA-256 over the binary form (hash ‖ signature), Contrast's `Digest()` of the
    /// latest transition (contrast-protocol.md §16 item 3 on where it is used).
    pub fn digest(&self) -> [u8; 32] {
        sha256(&self.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use p384::ecdsa::signature::{Signer, Verifier};

    use super::*;

    /// The P-384 key OpenSSL generated for the known-answer vectors
    /// (tests/data/PROVENANCE.md).
    const OPENSSL_KEY: &str = "0e2dfb9308b0d6a23c98932e786b342c25778700838641870905\
                               1bda33d4c3c34287b2cb88b7adc946859f8c53e25931";
    const OPENSSL_PUBLIC: &str = "04dd81f0a1809d006fffa3d326dd272b61a07f94a96287bf509011ba88f0\
                                  bbab408b1aed4e85bbb3542abdfb64e5f9b3e4cc7389d64f3baebb494ec0\
                                  a21b08067a957ff573bdd8afc5d29bcf673098db537b4a849a70437b045a\
                                  33e2966a695e95";
    /// transition_hash_of(["manifest-0\n", "manifest-1\n"]).
    const HASH: &str = "4acb393cc188a02c7b043ccbafd92b48d7b92cb3df9f12d5ab144e1640f68d46";
    /// `openssl pkeyutl -sign` over the 32 hash bytes: the raw bytes are the digest, as
    /// with Go's `ecdsa.SignASN1`.
    const OPENSSL_PREHASH_SIG: &str = "3066023100f58620e3105e6288dd10bc4f9cb73475f165e6f2e38364\
        e29da394931b8dcb194e12de6cb7337072914b7d53da498402023100b4f0114f6bada35ceb7d437968a53a\
        0b65355d881d2464954cbc3bfdda0aab9fb3bb2dc5a6ba2b0c9ecb9e65330e154a";
    /// `openssl dgst -sha384 -sign` over the same 32 bytes: hash-then-sign.
    const OPENSSL_HASHED_SIG: &str = "306602310099eabc859fc81b1f1c086ba238f1c6bb214cd200a07bf0\
        32c5abf69a01b8e497811c792f42017d14235c64519b7356df023100dc5c0c715d568d5ec344ef01b3810b\
        3b7a445d3a5894b0ff7ec30b5f59a0af78b26706b0decaaf89f69516973995a7d1";

    /// Our RFC 6979 signature of HASH with the OpenSSL key; `openssl pkeyutl -verify` and
    /// Python cryptography's `Prehashed(SHA256)` accepted it.
    const RFC6979_SIG: &str = "306502307fb6537dc7d673cc8800706350151c494b0de45e4e1f0f890a1824\
        5ef3d36ee9a74c2def6ed5f11757d9dcdbd13bb8a6023100d3ebc837c04d795abfdd12bfb8ec40a922fe51\
        2a9dbbe0d5d90402d640e4f77f7cfd8df11cf767d65b075162eaef4a95";

    fn key() -> SigningKey {
        SigningKey::from_slice(&hex::decode(OPENSSL_KEY).unwrap()).unwrap()
    }

    fn hash() -> [u8; 32] {
        hex::decode(HASH).unwrap().try_into().unwrap()
    }

    fn other_key() -> SigningKey {
        SigningKey::from_slice(&[7; 48]).unwrap()
    }

    #[test]
    fn openssl_key_matches_public_key() {
        let public = VerifyingKey::from_sec1_bytes(&hex::decode(OPENSSL_PUBLIC).unwrap()).unwrap();
        assert_eq!(key().verifying_key(), &public);
    }

    #[test]
    fn sign_then_verify() {
        let latest = LatestTransition::sign(hash(), &key()).unwrap();
        latest.verify(key().verifying_key()).unwrap();
        assert_eq!(latest.transition_hash, hash());
    }

    #[test]
    fn signature_known_answer() {
        // Deterministic signing, so the bytes are fixed; OpenSSL verified them as a
        // prehashed-digest signature.
        let latest = LatestTransition::sign(hash(), &key()).unwrap();
        assert_eq!(hex::encode(&latest.signature), RFC6979_SIG);
    }

    #[test]
    fn verifies_openssl_prehash_signature() {
        let latest = LatestTransition {
            transition_hash: hash(),
            signature: hex::decode(OPENSSL_PREHASH_SIG).unwrap(),
        };
        latest.verify(key().verifying_key()).unwrap();
    }

    #[test]
    fn refuses_openssl_hash_then_sign_signature() {
        let signature = hex::decode(OPENSSL_HASHED_SIG).unwrap();
        // The vector is a valid hash-then-sign (SHA-384) signature of the hash bytes ...
        let der = DerSignature::from_bytes(&signature).unwrap();
        key().verifying_key().verify(&hash(), &der).unwrap();
        // ... and the latest pointer refuses it: only prehash semantics are accepted.
        let latest = LatestTransition {
            transition_hash: hash(),
            signature,
        };
        let err = latest.verify(key().verifying_key()).unwrap_err();
        assert!(
            matches!(err, HistoryError::LatestSignatureInvalid { .. }),
            "{err}"
        );
    }

    #[test]
    fn refuses_own_hash_then_sign_signature() {
        let der: DerSignature = key().sign(&hash());
        let latest = LatestTransition {
            transition_hash: hash(),
            signature: der.as_bytes().to_vec(),
        };
        assert!(latest.verify(key().verifying_key()).is_err());
    }

    #[test]
    fn refuses_other_key() {
        let latest = LatestTransition::sign(hash(), &key()).unwrap();
        let err = latest.verify(other_key().verifying_key()).unwrap_err();
        assert!(err.to_string().contains(HASH), "{err}");
        assert!(err.to_string().contains("does not verify"), "{err}");
    }

    #[test]
    fn refuses_every_flipped_byte() {
        let latest = LatestTransition::sign(hash(), &key()).unwrap();
        let bytes = latest.to_bytes();
        for i in 0..bytes.len() {
            for mask in [0x01, 0x80] {
                let mut tampered = bytes.clone();
                tampered[i] ^= mask;
                let parsed = LatestTransition::from_bytes(&tampered).unwrap();
                assert!(
                    parsed.verify(key().verifying_key()).is_err(),
                    "byte {i} mask {mask:#x} accepted"
                );
            }
        }
    }

    #[test]
    fn refuses_appended_and_truncated_signature() {
        let latest = LatestTransition::sign(hash(), &key()).unwrap();
        let mut longer = latest.clone();
        longer.signature.push(0);
        assert!(matches!(
            longer.verify(key().verifying_key()),
            Err(HistoryError::LatestSignatureEncoding { .. })
        ));
        let mut shorter = latest;
        shorter.signature.pop();
        assert!(shorter.verify(key().verifying_key()).is_err());
    }

    #[test]
    fn round_trip() {
        let latest = LatestTransition::sign(hash(), &key()).unwrap();
        let bytes = latest.to_bytes();
        assert_eq!(&bytes[..32], &hash());
        assert_eq!(&bytes[32..], latest.signature.as_slice());
        assert_eq!(LatestTransition::from_bytes(&bytes).unwrap(), latest);
    }

    #[test]
    fn from_bytes_needs_more_than_32_bytes() {
        for len in [0, 1, 31, 32] {
            let err = LatestTransition::from_bytes(&vec![1; len]).unwrap_err();
            assert!(
                matches!(err, HistoryError::LatestTooShort { len: l } if l == len),
                "{err}"
            );
        }
        let parsed = LatestTransition::from_bytes(&[1; 33]).unwrap();
        assert_eq!(parsed.signature, vec![1]);
    }

    #[test]
    fn digest_is_sha256_of_binary_form() {
        let latest = LatestTransition::sign(hash(), &key()).unwrap();
        assert_eq!(latest.digest(), sha256(&latest.to_bytes()));
    }
}
