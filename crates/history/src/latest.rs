//! The signed latest pointer `transitions/latest` (docs/protocol.md §2.3).

use p384::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use p384::ecdsa::{DerSignature, SigningKey, VerifyingKey};

use crate::HistoryError;
use crate::transition::sha256;

/// The byte after the transition hash that marks a pointer with a signed generation.
/// Contrast's format has the DER signature there, which always starts with 0x30.
const GENERATION_FORMAT: u8 = 0x01;

/// The DER SEQUENCE tag every ECDSA signature starts with: Contrast's format.
const DER_SEQUENCE: u8 = 0x30;

/// Domain separation of the signed generation digest from Contrast's signature over the
/// bare transition hash.
const GENERATION_DOMAIN: &[u8] = b"contrast-rs latest transition with generation\0";

/// The pointer to the newest transition, signed with the transaction signing key.
///
/// Two binary forms:
/// - ours: the 32-byte transition hash, the byte 0x01, the generation (u64 big-endian),
///   then the DER ECDSA P-384 signature over
///   `SHA-256("contrast-rs latest transition with generation\0" ‖ hash ‖ generation)`
///   as a prehashed digest. The generation (the number of transitions up to this one) is
///   signed so that whoever reads a pointer learns how far the history had got, and an
///   older pointer replayed by the store's owner is recognisable as older.
/// - Contrast's (read only, from stores written before generations were signed): the
///   32-byte hash, then the DER signature over the 32 raw hash bytes used directly as the
///   digest (Go's `ecdsa.SignASN1(key, hash)`). Its generation is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatestTransition {
    /// The hash of the newest transition.
    pub transition_hash: [u8; 32],
    /// How many transitions the history holds up to this one, signed with the hash;
    /// `None` for a pointer in Contrast's format.
    pub generation: Option<u64>,
    /// DER-encoded ECDSA P-384 signature (see the type's documentation for over what).
    pub signature: Vec<u8>,
}

/// The digest a pointer with a generation is signed over.
fn generation_digest(transition_hash: &[u8; 32], generation: u64) -> [u8; 32] {
    let mut message = Vec::with_capacity(GENERATION_DOMAIN.len() + 40);
    message.extend_from_slice(GENERATION_DOMAIN);
    message.extend_from_slice(transition_hash);
    message.extend_from_slice(&generation.to_be_bytes());
    sha256(&message)
}

impl LatestTransition {
    /// Signs `transition_hash` and its `generation` with the transaction signing key.
    ///
    /// The signature is deterministic (RFC 6979); Go's signatures are randomised, and both
    /// verify the same way.
    pub fn sign(
        transition_hash: [u8; 32],
        generation: u64,
        key: &SigningKey,
    ) -> Result<Self, HistoryError> {
        let digest = generation_digest(&transition_hash, generation);
        let signature: DerSignature =
            key.sign_prehash(&digest)
                .map_err(|source| HistoryError::Sign {
                    transition: hex::encode(transition_hash),
                    source,
                })?;
        Ok(Self {
            transition_hash,
            generation: Some(generation),
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
        let digest = match self.generation {
            Some(generation) => generation_digest(&self.transition_hash, generation),
            None => self.transition_hash,
        };
        key.verify_prehash(&digest, &signature)
            .map_err(|_| HistoryError::LatestSignatureInvalid {
                transition: hex::encode(self.transition_hash),
            })
    }

    /// The binary form (see the type's documentation).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(41 + self.signature.len());
        out.extend_from_slice(&self.transition_hash);
        if let Some(generation) = self.generation {
            out.push(GENERATION_FORMAT);
            out.extend_from_slice(&generation.to_be_bytes());
        }
        out.extend_from_slice(&self.signature);
        out
    }

    /// Splits either binary form; a signature must follow. The signature is not checked
    /// here: call [`verify`](Self::verify).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HistoryError> {
        let Some((hash, rest)) = bytes.split_first_chunk::<32>() else {
            return Err(HistoryError::LatestTooShort { len: bytes.len() });
        };
        match rest.split_first() {
            None => Err(HistoryError::LatestTooShort { len: bytes.len() }),
            Some((&DER_SEQUENCE, _)) => Ok(Self {
                transition_hash: *hash,
                generation: None,
                signature: rest.to_vec(),
            }),
            Some((&GENERATION_FORMAT, tail)) => match tail.split_first_chunk::<8>() {
                Some((generation, signature)) if !signature.is_empty() => Ok(Self {
                    transition_hash: *hash,
                    generation: Some(u64::from_be_bytes(*generation)),
                    signature: signature.to_vec(),
                }),
                _ => Err(HistoryError::LatestTooShort { len: bytes.len() }),
            },
            Some((&format, _)) => Err(HistoryError::LatestFormat { format }),
        }
    }

    /// SHA-256 over the binary form, Contrast's `Digest()` of the latest transition
    /// (docs/protocol.md §2.3 on where it is used).
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

    /// A pointer in Contrast's format, as a store written before generations holds it.
    fn contrast_format(signature: &str) -> LatestTransition {
        LatestTransition {
            transition_hash: hash(),
            generation: None,
            signature: hex::decode(signature).unwrap(),
        }
    }

    #[test]
    fn openssl_key_matches_public_key() {
        let public = VerifyingKey::from_sec1_bytes(&hex::decode(OPENSSL_PUBLIC).unwrap()).unwrap();
        assert_eq!(key().verifying_key(), &public);
    }

    #[test]
    fn sign_then_verify() {
        let latest = LatestTransition::sign(hash(), 7, &key()).unwrap();
        latest.verify(key().verifying_key()).unwrap();
        assert_eq!(latest.transition_hash, hash());
        assert_eq!(latest.generation, Some(7));
    }

    #[test]
    fn signs_the_domain_separated_generation_digest() {
        let latest = LatestTransition::sign(hash(), 2, &key()).unwrap();
        let mut message = b"contrast-rs latest transition with generation\0".to_vec();
        message.extend_from_slice(&hash());
        message.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2]);
        let der = DerSignature::from_bytes(&latest.signature).unwrap();
        key()
            .verifying_key()
            .verify_prehash(&sha256(&message), &der)
            .unwrap();
    }

    #[test]
    fn relabelled_generation_refused() {
        // An older pointer claiming a newer generation (or the reverse) does not verify:
        // the generation is signed with the hash.
        let older = LatestTransition::sign(hash(), 1, &key()).unwrap();
        for generation in [0, 2, u64::MAX] {
            let relabelled = LatestTransition {
                generation: Some(generation),
                ..older.clone()
            };
            let err = relabelled.verify(key().verifying_key()).unwrap_err();
            assert!(
                matches!(err, HistoryError::LatestSignatureInvalid { .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn generation_stripped_to_contrast_format_refused() {
        // Dropping the generation (a downgrade to Contrast's format) leaves a signature
        // that is not over the bare hash.
        let ours = LatestTransition::sign(hash(), 3, &key()).unwrap();
        let stripped = LatestTransition {
            generation: None,
            ..ours
        };
        assert!(stripped.verify(key().verifying_key()).is_err());
        let parsed = LatestTransition::from_bytes(&stripped.to_bytes()).unwrap();
        assert_eq!(parsed.generation, None);
        assert!(parsed.verify(key().verifying_key()).is_err());
        // Nor does a Contrast-format signature pass for a pointer with a generation.
        let contrast = contrast_format(RFC6979_SIG);
        contrast.verify(key().verifying_key()).unwrap();
        for generation in [0, 1] {
            let upgraded = LatestTransition {
                generation: Some(generation),
                ..contrast.clone()
            };
            assert!(upgraded.verify(key().verifying_key()).is_err());
        }
    }

    #[test]
    fn verifies_own_contrast_format_signature() {
        // Our RFC 6979 signature over the bare hash, as earlier versions wrote it: a store
        // from then still reads.
        let latest = contrast_format(RFC6979_SIG);
        latest.verify(key().verifying_key()).unwrap();
        let digest: [u8; 32] = hash();
        let signature: DerSignature = key().sign_prehash(&digest).unwrap();
        assert_eq!(hex::encode(signature.as_bytes()), RFC6979_SIG);
    }

    #[test]
    fn verifies_openssl_prehash_signature() {
        contrast_format(OPENSSL_PREHASH_SIG)
            .verify(key().verifying_key())
            .unwrap();
    }

    #[test]
    fn refuses_openssl_hash_then_sign_signature() {
        let signature = hex::decode(OPENSSL_HASHED_SIG).unwrap();
        // The vector is a valid hash-then-sign (SHA-384) signature of the hash bytes ...
        let der = DerSignature::from_bytes(&signature).unwrap();
        key().verifying_key().verify(&hash(), &der).unwrap();
        // ... and the latest pointer refuses it: only prehash semantics are accepted.
        let err = contrast_format(OPENSSL_HASHED_SIG)
            .verify(key().verifying_key())
            .unwrap_err();
        assert!(
            matches!(err, HistoryError::LatestSignatureInvalid { .. }),
            "{err}"
        );
    }

    #[test]
    fn refuses_own_hash_then_sign_signature() {
        let der: DerSignature = key().sign(&hash());
        let latest = contrast_format(&hex::encode(der.as_bytes()));
        assert!(latest.verify(key().verifying_key()).is_err());
    }

    #[test]
    fn refuses_other_key() {
        let latest = LatestTransition::sign(hash(), 1, &key()).unwrap();
        let err = latest.verify(other_key().verifying_key()).unwrap_err();
        assert!(err.to_string().contains(HASH), "{err}");
        assert!(err.to_string().contains("does not verify"), "{err}");
    }

    #[test]
    fn refuses_every_flipped_byte() {
        for latest in [
            LatestTransition::sign(hash(), 2, &key()).unwrap(),
            contrast_format(RFC6979_SIG),
        ] {
            let bytes = latest.to_bytes();
            for i in 0..bytes.len() {
                for mask in [0x01, 0x80] {
                    let mut tampered = bytes.clone();
                    tampered[i] ^= mask;
                    // Either the format no longer parses, or the signature fails.
                    let accepted = LatestTransition::from_bytes(&tampered)
                        .is_ok_and(|parsed| parsed.verify(key().verifying_key()).is_ok());
                    assert!(!accepted, "byte {i} mask {mask:#x} accepted");
                }
            }
        }
    }

    #[test]
    fn refuses_appended_and_truncated_signature() {
        let latest = LatestTransition::sign(hash(), 1, &key()).unwrap();
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
        let latest = LatestTransition::sign(hash(), 0x0102, &key()).unwrap();
        let bytes = latest.to_bytes();
        assert_eq!(&bytes[..32], &hash());
        assert_eq!(bytes[32], 0x01);
        assert_eq!(&bytes[33..41], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&bytes[41..], latest.signature.as_slice());
        assert_eq!(LatestTransition::from_bytes(&bytes).unwrap(), latest);
        let contrast = contrast_format(RFC6979_SIG);
        let bytes = contrast.to_bytes();
        assert_eq!(&bytes[32..], contrast.signature.as_slice());
        assert_eq!(LatestTransition::from_bytes(&bytes).unwrap(), contrast);
    }

    #[test]
    fn from_bytes_needs_a_signature_after_the_hash() {
        for len in [0, 1, 31, 32] {
            let err = LatestTransition::from_bytes(&vec![0x30; len]).unwrap_err();
            assert!(
                matches!(err, HistoryError::LatestTooShort { len: l } if l == len),
                "{err}"
            );
        }
        let parsed = LatestTransition::from_bytes(&[0x30; 33]).unwrap();
        assert_eq!(parsed.signature, vec![0x30]);
        assert_eq!(parsed.generation, None);
        // With the generation marker: eight generation bytes, then at least one more.
        let mut ours = vec![1; 32];
        ours.push(0x01);
        ours.extend_from_slice(&[0; 8]);
        assert!(matches!(
            LatestTransition::from_bytes(&ours),
            Err(HistoryError::LatestTooShort { len: 41 })
        ));
        ours.push(0x30);
        let parsed = LatestTransition::from_bytes(&ours).unwrap();
        assert_eq!(parsed.generation, Some(0));
        assert_eq!(parsed.signature, vec![0x30]);
    }

    #[test]
    fn unknown_format_byte_refused() {
        let mut bytes = vec![1; 32];
        bytes.extend_from_slice(&[0x02; 20]);
        let err = LatestTransition::from_bytes(&bytes).unwrap_err();
        assert!(
            matches!(err, HistoryError::LatestFormat { format: 0x02 }),
            "{err}"
        );
        assert!(err.to_string().contains("0x02"), "{err}");
    }

    #[test]
    fn digest_is_sha256_of_binary_form() {
        let latest = LatestTransition::sign(hash(), 1, &key()).unwrap();
        assert_eq!(latest.digest(), sha256(&latest.to_bytes()));
    }
}
