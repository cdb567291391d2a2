//! The subject public key of a mesh certificate: an arbitrary SubjectPublicKeyInfo.
//!
//! The key comes from the workload's TLS client certificate (P-256 from our initializer,
//! but any key Go's x509 accepts is possible). rcgen re-encodes the SPKI from an algorithm
//! and the key bits, so a key is accepted only if that re-encoding gives back exactly the
//! bytes received: the certificate then certifies the very key the workload presented.

use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use rcgen::{PublicKeyData, SignatureAlgorithm};

use crate::CaError;

/// A subject public key, checked to be well formed.
#[derive(Debug, Clone)]
pub(crate) struct SubjectKey {
    algorithm: &'static SignatureAlgorithm,
    /// The content of the SPKI's BIT STRING (without the unused-bits octet).
    key_bits: Vec<u8>,
}

/// The key types accepted, each with the aws-lc-rs algorithm that checks its key bits.
fn candidates() -> [(
    &'static SignatureAlgorithm,
    &'static dyn VerificationAlgorithm,
); 5] {
    [
        (
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &signature::ECDSA_P256_SHA256_ASN1,
        ),
        (
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &signature::ECDSA_P384_SHA384_ASN1,
        ),
        (
            &rcgen::PKCS_ECDSA_P521_SHA512,
            &signature::ECDSA_P521_SHA512_ASN1,
        ),
        (
            &rcgen::PKCS_RSA_SHA256,
            &signature::RSA_PKCS1_2048_8192_SHA256,
        ),
        (&rcgen::PKCS_ED25519, &signature::ED25519),
    ]
}

impl SubjectKey {
    /// Parses a DER SubjectPublicKeyInfo.
    pub(crate) fn from_spki_der(spki: &[u8]) -> Result<Self, CaError> {
        let refuse = |reason: &str| CaError::SubjectPublicKey {
            reason: reason.to_owned(),
        };
        let (tag, body, rest) = read_tlv(spki).ok_or_else(|| refuse("not DER"))?;
        if tag != 0x30 || !rest.is_empty() {
            return Err(refuse("not a single DER SEQUENCE"));
        }
        let (tag, _, after_algorithm) =
            read_tlv(body).ok_or_else(|| refuse("the AlgorithmIdentifier is not DER"))?;
        if tag != 0x30 {
            return Err(refuse("the AlgorithmIdentifier is not a SEQUENCE"));
        }
        let (tag, bit_string, rest) = read_tlv(after_algorithm)
            .ok_or_else(|| refuse("the subjectPublicKey BIT STRING is not DER"))?;
        if tag != 0x03 || !rest.is_empty() {
            return Err(refuse(
                "the subjectPublicKey is not a BIT STRING ending the SPKI",
            ));
        }
        let key_bits = match bit_string.split_first() {
            Some((0, bits)) if !bits.is_empty() => bits,
            _ => {
                return Err(refuse(
                    "the subjectPublicKey BIT STRING is empty or not octet-aligned",
                ));
            }
        };

        for (algorithm, verification) in candidates() {
            let key = Self {
                algorithm,
                key_bits: key_bits.to_vec(),
            };
            if key.subject_public_key_info() != spki {
                continue;
            }
            ParsedPublicKey::new(verification, key_bits).map_err(|e| {
                CaError::SubjectPublicKey {
                    reason: format!("the key bits are not a valid key of their algorithm: {e}"),
                }
            })?;
            return Ok(key);
        }
        Err(refuse(
            "its algorithm is none of ECDSA P-256, P-384, P-521 (namedCurve), RSA (rsaEncryption) or Ed25519",
        ))
    }
}

impl PublicKeyData for SubjectKey {
    fn der_bytes(&self) -> &[u8] {
        &self.key_bits
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.algorithm
    }
}

/// One DER TLV: (tag, content, rest). Single-byte tags, definite lengths of at most four
/// length octets, minimal encoding.
fn read_tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f {
        return None;
    }
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (octets, after) = rest.split_at(count);
        rest = after;
        if octets[0] == 0 {
            return None;
        }
        let len = octets
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 {
            return None;
        }
        len
    };
    if rest.len() < len {
        return None;
    }
    let (content, rest) = rest.split_at(len);
    Some((tag, content, rest))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::rsa::{KeySize, PrivateDecryptingKey};
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
        Ed25519KeyPair, KeyPair as _,
    };

    use super::*;

    fn ec_spki(alg: &'static signature::EcdsaSigningAlgorithm) -> Vec<u8> {
        let key = EcdsaKeyPair::generate(alg).unwrap();
        key.public_key().as_der().unwrap().as_ref().to_vec()
    }

    #[test]
    fn accepts_p256_p384_rsa_ed25519_and_reencodes_exactly() {
        let rsa = PrivateDecryptingKey::generate(KeySize::Rsa2048).unwrap();
        let ed = Ed25519KeyPair::generate().unwrap();
        let cases = [
            ("P-256", ec_spki(&ECDSA_P256_SHA256_ASN1_SIGNING)),
            ("P-384", ec_spki(&ECDSA_P384_SHA384_ASN1_SIGNING)),
            ("RSA", rsa.public_key().as_der().unwrap().as_ref().to_vec()),
            (
                "Ed25519",
                ed.public_key().as_der().unwrap().as_ref().to_vec(),
            ),
        ];
        for (name, spki) in cases {
            let key = SubjectKey::from_spki_der(&spki).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(key.subject_public_key_info(), spki, "{name}");
        }
    }

    #[test]
    fn refuses_trailing_bytes() {
        let mut spki = ec_spki(&ECDSA_P256_SHA256_ASN1_SIGNING);
        spki.push(0);
        let err = SubjectKey::from_spki_der(&spki).unwrap_err();
        assert!(err.to_string().contains("single DER SEQUENCE"), "{err}");
    }

    #[test]
    fn refuses_truncation_and_garbage() {
        let spki = ec_spki(&ECDSA_P256_SHA256_ASN1_SIGNING);
        for len in [0, 1, 2, 10, spki.len() - 1] {
            assert!(
                SubjectKey::from_spki_der(&spki[..len]).is_err(),
                "length {len}"
            );
        }
        assert!(SubjectKey::from_spki_der(b"not a key").is_err());
    }

    #[test]
    fn refuses_a_point_not_on_the_curve() {
        let mut spki = ec_spki(&ECDSA_P256_SHA256_ASN1_SIGNING);
        let last = spki.len() - 1;
        spki[last] ^= 1;
        let err = SubjectKey::from_spki_der(&spki).unwrap_err();
        assert!(err.to_string().contains("not a valid key"), "{err}");
    }

    #[test]
    fn refuses_an_unknown_algorithm() {
        // The P-256 SPKI with the curve OID changed to secp256k1 (1.3.132.0.10).
        let spki = ec_spki(&ECDSA_P256_SHA256_ASN1_SIGNING);
        let p256_curve = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        let at = spki
            .windows(p256_curve.len())
            .position(|w| w == p256_curve)
            .unwrap();
        let mut body = Vec::new();
        body.extend_from_slice(&[0x30, 0x10, 0x06, 0x07]);
        body.extend_from_slice(&spki[6..13]); // id-ecPublicKey
        body.extend_from_slice(&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a]);
        body.extend_from_slice(&spki[at + p256_curve.len()..]);
        let mut changed = vec![0x30, body.len() as u8];
        changed.extend_from_slice(&body);
        let err = SubjectKey::from_spki_der(&changed).unwrap_err();
        assert!(err.to_string().contains("none of"), "{err}");
    }

    #[test]
    fn refuses_a_bit_string_with_unused_bits() {
        let mut spki = ec_spki(&ECDSA_P256_SHA256_ASN1_SIGNING);
        // 30 59 | 30 13 ... | 03 42 00 04 ...: the unused-bits octet follows 03 42.
        let at = spki.windows(2).position(|w| w == [0x03, 0x42]).unwrap();
        spki[at + 2] = 1;
        let err = SubjectKey::from_spki_der(&spki).unwrap_err();
        assert!(err.to_string().contains("octet-aligned"), "{err}");
    }

    #[test]
    fn read_tlv_refuses_non_minimal_lengths() {
        assert!(read_tlv(&[0x04, 0x81, 0x01, 0x00]).is_none());
        assert!(read_tlv(&[0x04, 0x82, 0x00, 0x80]).is_none());
        assert!(read_tlv(&[0x04, 0x80]).is_none());
        assert_eq!(
            read_tlv(&[0x04, 0x01, 0xaa, 0xbb]),
            Some((0x04, &[0xaa][..], &[0xbb][..]))
        );
    }
}
