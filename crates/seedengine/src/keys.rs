//! The keys the CLI keeps (docs/protocol.md §3.3) and P-384 encodings for the
//! certificate authority. The CLI writes key files with `contrast_atomic_file` (mode 0600).
//!
//! * [`WorkloadOwnerKey`]: ECDSA P-384, `workload-owner.pem` as PEM `EC PRIVATE KEY`
//!   (SEC1); its manifest digest is SHA-256 over the PKIX DER of the public key.
//! * [`SeedshareOwnerKey`]: RSA-4096, `seedshare-owner.pem` as PEM `RSA PRIVATE KEY`
//!   (PKCS#1); the manifest lists the hex of its PKCS#1 DER public key.
//! * [`seedshare_owner_public_key_hex`]: the manifest entry for a PEM key someone hands
//!   over (public or private).
//! * [`random_p384`], [`p384_pkcs8_der`], [`p384_to_sec1_pem`], [`p384_from_sec1_pem`]:
//!   the mesh CA key and the seed-derived keys in the forms rcgen and peer recovery use.
//!
//! PEM is read with RFC 7468's strict grammar (what Go's `pem.EncodeToMemory` and
//! OpenSSL write); text around the block is refused.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::{digest, rand, rsa as lc_rsa};
use p384::pkcs8::der::pem::{self, LineEnding};
use p384::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey, EncodeRsaPublicKey};
use zeroize::Zeroizing;

use crate::SeedEngineError;

const PEM_EC_PRIVATE_KEY: &str = "EC PRIVATE KEY";
const PEM_PRIVATE_KEY: &str = "PRIVATE KEY";
const PEM_RSA_PRIVATE_KEY: &str = "RSA PRIVATE KEY";
const PEM_PUBLIC_KEY: &str = "PUBLIC KEY";
const PEM_RSA_PUBLIC_KEY: &str = "RSA PUBLIC KEY";

const WORKLOAD_OWNER: &str = "workload owner key";
const SEEDSHARE_OWNER: &str = "seedshare owner key";
const P384_KEY: &str = "P-384 key";

/// The size of seedshare owner keys the CLI generates.
pub const SEEDSHARE_OWNER_KEY_BITS: usize = 4096;

/// Lowercase hex, the form of digests and keys in manifests.
pub fn lower_hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// A fresh random P-384 key from the system random number generator (the mesh CA key,
/// new workload owner keys).
pub fn random_p384() -> Result<p384::SecretKey, SeedEngineError> {
    // A uniform 384-bit string is ≥ n with probability < 2⁻¹⁹⁰; the bound only guards
    // against a broken generator returning the same invalid value forever.
    for _ in 0..8 {
        let mut bytes = Zeroizing::new([0u8; 48]);
        rand::fill(&mut bytes[..]).map_err(|_| SeedEngineError::Random)?;
        if let Ok(key) = p384::SecretKey::from_slice(&bytes[..]) {
            return Ok(key);
        }
    }
    Err(SeedEngineError::KeyGeneration { what: P384_KEY })
}

/// The PKCS#8 DER of a P-384 key (with its public key), as rcgen and rustls take it.
pub fn p384_pkcs8_der(key: &p384::SecretKey) -> Result<Zeroizing<Vec<u8>>, SeedEngineError> {
    key.to_pkcs8_der()
        .map(|doc| Zeroizing::new(doc.as_bytes().to_vec()))
        .map_err(|e| SeedEngineError::KeyEncode {
            what: P384_KEY,
            reason: e.to_string(),
        })
}

/// A P-384 key from PKCS#8 DER.
pub fn p384_from_pkcs8_der(der: &[u8]) -> Result<p384::SecretKey, SeedEngineError> {
    p384::SecretKey::from_pkcs8_der(der).map_err(|e| SeedEngineError::KeyDecode {
        what: P384_KEY,
        reason: format!("not a PKCS#8 P-384 private key ({e})"),
    })
}

/// A P-384 key as PEM `EC PRIVATE KEY` (SEC1 with curve OID and public key, as Go's
/// `x509.MarshalECPrivateKey`), LF line endings.
pub fn p384_to_sec1_pem(key: &p384::SecretKey) -> Result<Zeroizing<String>, SeedEngineError> {
    key.to_sec1_pem(LineEnding::LF)
        .map_err(|e| SeedEngineError::KeyEncode {
            what: P384_KEY,
            reason: e.to_string(),
        })
}

/// A P-384 key from PEM `EC PRIVATE KEY` (SEC1). Other labels and curves are refused.
pub fn p384_from_sec1_pem(pem_text: &[u8]) -> Result<p384::SecretKey, SeedEngineError> {
    let (label, der) = decode_pem(pem_text, P384_KEY)?;
    if label != PEM_EC_PRIVATE_KEY {
        return Err(wrong_label(P384_KEY, &label, "`EC PRIVATE KEY`"));
    }
    p384_from_sec1_der(&der, P384_KEY)
}

fn p384_from_sec1_der(der: &[u8], what: &'static str) -> Result<p384::SecretKey, SeedEngineError> {
    p384::SecretKey::from_sec1_der(der).map_err(|e| SeedEngineError::KeyDecode {
        what,
        reason: format!("not a SEC1 ECDSA P-384 private key ({e}); the key must be on P-384"),
    })
}

/// The workload owner key: ECDSA P-384. Its digest in the manifest's
/// `WorkloadOwnerKeyDigests` authorizes manifest updates; it is also the aTLS client key.
pub struct WorkloadOwnerKey {
    key: p384::SecretKey,
    public_key_der: Vec<u8>,
}

impl WorkloadOwnerKey {
    /// A new random key.
    pub fn generate() -> Result<WorkloadOwnerKey, SeedEngineError> {
        WorkloadOwnerKey::from_secret_key(random_p384()?)
    }

    /// Wraps a P-384 key.
    pub fn from_secret_key(key: p384::SecretKey) -> Result<WorkloadOwnerKey, SeedEngineError> {
        let public_key_der = key
            .public_key()
            .to_public_key_der()
            .map_err(|e| SeedEngineError::KeyEncode {
                what: WORKLOAD_OWNER,
                reason: e.to_string(),
            })?
            .into_vec();
        Ok(WorkloadOwnerKey {
            key,
            public_key_der,
        })
    }

    /// Reads `workload-owner.pem`: PEM `EC PRIVATE KEY` (SEC1, what Contrast writes) or
    /// `PRIVATE KEY` (PKCS#8, what `openssl genpkey` writes), on P-384.
    pub fn from_pem(pem_text: &[u8]) -> Result<WorkloadOwnerKey, SeedEngineError> {
        let (label, der) = decode_pem(pem_text, WORKLOAD_OWNER)?;
        let key = match label.as_str() {
            PEM_EC_PRIVATE_KEY => p384_from_sec1_der(&der, WORKLOAD_OWNER)?,
            PEM_PRIVATE_KEY => {
                p384::SecretKey::from_pkcs8_der(&der).map_err(|e| SeedEngineError::KeyDecode {
                    what: WORKLOAD_OWNER,
                    reason: format!(
                        "not a PKCS#8 ECDSA P-384 private key ({e}); workload owner keys \
                         are P-384"
                    ),
                })?
            }
            other => {
                return Err(wrong_label(
                    WORKLOAD_OWNER,
                    other,
                    "`EC PRIVATE KEY` (or `PRIVATE KEY`)",
                ));
            }
        };
        WorkloadOwnerKey::from_secret_key(key)
    }

    /// The key as `workload-owner.pem` holds it: PEM `EC PRIVATE KEY` (SEC1).
    pub fn to_pem(&self) -> Result<Zeroizing<String>, SeedEngineError> {
        p384_to_sec1_pem(&self.key)
    }

    /// The private key.
    pub fn secret_key(&self) -> &p384::SecretKey {
        &self.key
    }

    /// The private key as PKCS#8 DER (for a TLS client certificate).
    pub fn pkcs8_der(&self) -> Result<Zeroizing<Vec<u8>>, SeedEngineError> {
        p384_pkcs8_der(&self.key)
    }

    /// The PKIX (SubjectPublicKeyInfo) DER of the public key.
    pub fn public_key_der(&self) -> &[u8] {
        &self.public_key_der
    }

    /// The manifest digest: SHA-256 over the PKIX DER of the public key.
    pub fn digest(&self) -> [u8; 32] {
        sha256(&self.public_key_der)
    }

    /// [`WorkloadOwnerKey::digest`] in lowercase hex, as `WorkloadOwnerKeyDigests` holds it.
    pub fn digest_hex(&self) -> String {
        lower_hex(&self.digest())
    }

    /// A detached signature of `message` as Contrast's `sign` (and `openssl dgst -sha256
    /// -sign`) makes it: ECDSA P-384 over the message's SHA-256 digest, DER. p384's ECDSA
    /// makes it (RFC 6979 nonces): aws-lc-rs signs with P-384 only over SHA-384, and the
    /// protocol fixes SHA-256 (docs/dependencies.md §1).
    pub fn sign_sha256(&self, message: &[u8]) -> Result<Vec<u8>, SeedEngineError> {
        use p384::ecdsa::signature::hazmat::PrehashSigner as _;
        let key = p384::ecdsa::SigningKey::from(&self.key);
        let signature: p384::ecdsa::Signature =
            key.sign_prehash(&sha256(message))
                .map_err(|e| SeedEngineError::Signing {
                    what: WORKLOAD_OWNER,
                    reason: e.to_string(),
                })?;
        Ok(signature.to_der().as_bytes().to_vec())
    }
}

impl std::fmt::Debug for WorkloadOwnerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadOwnerKey")
            .field("digest", &self.digest_hex())
            .finish_non_exhaustive()
    }
}

/// A seedshare owner key: RSA (the CLI generates 4096 bits). Seed shares are encrypted to
/// its public key; it decrypts them and is the TLS client key of `contrast recover`.
pub struct SeedshareOwnerKey {
    pkcs1_der: Zeroizing<Vec<u8>>,
    public_key_pkcs1_der: Vec<u8>,
    decrypting_key: lc_rsa::OaepPrivateDecryptingKey,
}

impl SeedshareOwnerKey {
    /// A new random RSA-4096 key.
    pub fn generate() -> Result<SeedshareOwnerKey, SeedEngineError> {
        let key =
            lc_rsa::PrivateDecryptingKey::generate(lc_rsa::KeySize::Rsa4096).map_err(|_| {
                SeedEngineError::KeyGeneration {
                    what: SEEDSHARE_OWNER,
                }
            })?;
        let pkcs8 = key.as_der().map_err(|_| SeedEngineError::KeyEncode {
            what: SEEDSHARE_OWNER,
            reason: "aws-lc-rs could not serialize the new key as PKCS#8".into(),
        })?;
        SeedshareOwnerKey::from_pkcs8_der(pkcs8.as_ref())
    }

    /// Reads `seedshare-owner.pem`: PEM `RSA PRIVATE KEY` (PKCS#1, what Contrast writes)
    /// or `PRIVATE KEY` (PKCS#8).
    pub fn from_pem(pem_text: &[u8]) -> Result<SeedshareOwnerKey, SeedEngineError> {
        let (label, der) = decode_pem(pem_text, SEEDSHARE_OWNER)?;
        match label.as_str() {
            PEM_RSA_PRIVATE_KEY => SeedshareOwnerKey::from_pkcs1_der(&der),
            PEM_PRIVATE_KEY => SeedshareOwnerKey::from_pkcs8_der(&der),
            other => Err(wrong_label(
                SEEDSHARE_OWNER,
                other,
                "`RSA PRIVATE KEY` (or `PRIVATE KEY`)",
            )),
        }
    }

    /// From the PKCS#1 DER of an RSA private key (2048 to 8192 bits).
    pub fn from_pkcs1_der(der: &[u8]) -> Result<SeedshareOwnerKey, SeedEngineError> {
        let key = rsa::PrivateKey::from_pkcs1_der(der).map_err(|e| SeedEngineError::KeyDecode {
            what: SEEDSHARE_OWNER,
            reason: format!("not a PKCS#1 RSA private key ({e})"),
        })?;
        let pkcs8 = key.to_pkcs8_der().map_err(|e| SeedEngineError::KeyEncode {
            what: SEEDSHARE_OWNER,
            reason: e.to_string(),
        })?;
        let decrypting_key = lc_rsa::PrivateDecryptingKey::from_pkcs8(pkcs8.as_bytes())
            .map_err(|e| format!("RSA key refused ({e}); use 2048 to 8192 bits"))
            .and_then(|k| {
                lc_rsa::OaepPrivateDecryptingKey::new(k)
                    .map_err(|_| "RSA key refused for OAEP".to_string())
            })
            .map_err(|reason| SeedEngineError::KeyDecode {
                what: SEEDSHARE_OWNER,
                reason,
            })?;
        let public_key_pkcs1_der = key
            .to_public_key()
            .to_pkcs1_der()
            .map_err(|e| SeedEngineError::KeyEncode {
                what: SEEDSHARE_OWNER,
                reason: e.to_string(),
            })?
            .into_vec();
        Ok(SeedshareOwnerKey {
            pkcs1_der: Zeroizing::new(der.to_vec()),
            public_key_pkcs1_der,
            decrypting_key,
        })
    }

    /// From the PKCS#8 DER of an RSA private key.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SeedshareOwnerKey, SeedEngineError> {
        let info = p384::pkcs8::PrivateKeyInfoRef::try_from(der).map_err(|e| {
            SeedEngineError::KeyDecode {
                what: SEEDSHARE_OWNER,
                reason: format!("not a PKCS#8 private key ({e})"),
            }
        })?;
        if info.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
            return Err(SeedEngineError::KeyDecode {
                what: SEEDSHARE_OWNER,
                reason: format!(
                    "the PKCS#8 key is not an RSA key (algorithm {}); seedshare owner keys \
                     are RSA",
                    info.algorithm.oid
                ),
            });
        }
        // PKCS#8's privateKey of an rsaEncryption key is the PKCS#1 RSAPrivateKey.
        SeedshareOwnerKey::from_pkcs1_der(info.private_key.as_bytes())
    }

    /// The key as `seedshare-owner.pem` holds it: PEM `RSA PRIVATE KEY` (PKCS#1).
    pub fn to_pem(&self) -> Result<Zeroizing<String>, SeedEngineError> {
        pem::encode_string(PEM_RSA_PRIVATE_KEY, LineEnding::LF, &self.pkcs1_der)
            .map(Zeroizing::new)
            .map_err(|e| SeedEngineError::KeyEncode {
                what: SEEDSHARE_OWNER,
                reason: e.to_string(),
            })
    }

    /// The private key as PKCS#1 DER (`RSAPrivateKey`; rustls takes it as a client key).
    pub fn pkcs1_der(&self) -> &[u8] {
        &self.pkcs1_der
    }

    /// The PKCS#1 DER (`RSAPublicKey`) of the public key.
    pub fn public_key_pkcs1_der(&self) -> &[u8] {
        &self.public_key_pkcs1_der
    }

    /// The hex of [`SeedshareOwnerKey::public_key_pkcs1_der`]: the manifest's
    /// `SeedshareOwnerPubKeys` entry and the `PublicKey` of its seed share.
    pub fn public_key_hex(&self) -> String {
        lower_hex(&self.public_key_pkcs1_der)
    }

    /// RSA-OAEP (SHA-256, MGF1-SHA-256) decryption with `label`.
    pub(crate) fn decrypt_oaep(
        &self,
        ciphertext: &[u8],
        label: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, SeedEngineError> {
        let mut plaintext = Zeroizing::new(vec![0u8; self.decrypting_key.min_output_size()]);
        let len = self
            .decrypting_key
            .decrypt(
                &lc_rsa::OAEP_SHA256_MGF1SHA256,
                ciphertext,
                &mut plaintext,
                Some(label),
            )
            .map_err(|_| SeedEngineError::SeedShareDecrypt)?
            .len();
        plaintext.truncate(len);
        Ok(plaintext)
    }
}

impl std::fmt::Debug for SeedshareOwnerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeedshareOwnerKey")
            .field("bits", &self.decrypting_key.key_size_bits())
            .finish_non_exhaustive()
    }
}

/// The PKIX DER public key of a workload owner key PEM: a private key (as
/// [`WorkloadOwnerKey::from_pem`] reads it) or a `PUBLIC KEY`, which must be P-384 (the
/// HSM/KMS flow: the private key never leaves the HSM). A public key is kept as given, so
/// its digest is the one the Coordinator computes over the key `set` sends.
pub fn workload_owner_public_key_der(pem_text: &[u8]) -> Result<Vec<u8>, SeedEngineError> {
    let (label, der) = decode_pem(pem_text, WORKLOAD_OWNER)?;
    if label == PEM_PUBLIC_KEY {
        p384::PublicKey::from_public_key_der(&der).map_err(|e| SeedEngineError::KeyDecode {
            what: WORKLOAD_OWNER,
            reason: format!(
                "the `PUBLIC KEY` is not an ECDSA P-384 key ({e}); workload owner keys are P-384"
            ),
        })?;
        return Ok(der.to_vec());
    }
    Ok(WorkloadOwnerKey::from_pem(pem_text)?
        .public_key_der()
        .to_vec())
}

/// The `WorkloadOwnerKeyDigests` entry for a PKIX DER public key: SHA-256, lowercase hex.
pub fn workload_owner_key_digest_hex(public_key_der: &[u8]) -> String {
    lower_hex(&sha256(public_key_der))
}

/// The `SeedshareOwnerPubKeys` entry (hex of the PKCS#1 DER public key) for a PEM key:
/// `PUBLIC KEY` (PKIX; also PKCS#1 bytes under that label, which Contrast takes as-is),
/// `RSA PUBLIC KEY` (PKCS#1), or a private key (`RSA PRIVATE KEY`, `PRIVATE KEY`). The key
/// must be usable for seed shares (RSA, 2048 to 8192 bits).
pub fn seedshare_owner_public_key_hex(pem_text: &[u8]) -> Result<String, SeedEngineError> {
    let (label, der) = decode_pem(pem_text, SEEDSHARE_OWNER)?;
    let pkcs1 = match label.as_str() {
        PEM_PUBLIC_KEY => match rsa::PublicKey::from_public_key_der(&der) {
            Ok(key) => key.to_pkcs1_der().map(|d| d.into_vec()).map_err(|e| {
                SeedEngineError::KeyEncode {
                    what: SEEDSHARE_OWNER,
                    reason: e.to_string(),
                }
            })?,
            Err(spki_err) => {
                if rsa::PublicKey::from_pkcs1_der(&der).is_err() {
                    return Err(SeedEngineError::KeyDecode {
                        what: SEEDSHARE_OWNER,
                        reason: format!("the `PUBLIC KEY` is not an RSA public key ({spki_err})"),
                    });
                }
                der.to_vec()
            }
        },
        PEM_RSA_PUBLIC_KEY => der.to_vec(),
        PEM_RSA_PRIVATE_KEY | PEM_PRIVATE_KEY => {
            let key = SeedshareOwnerKey::from_pem(pem_text)?;
            key.public_key_pkcs1_der().to_vec()
        }
        other => {
            return Err(wrong_label(
                SEEDSHARE_OWNER,
                other,
                "`PUBLIC KEY`, `RSA PUBLIC KEY` or `RSA PRIVATE KEY`",
            ));
        }
    };
    oaep_public_key(&pkcs1).map_err(|reason| SeedEngineError::KeyDecode {
        what: SEEDSHARE_OWNER,
        reason,
    })?;
    Ok(lower_hex(&pkcs1))
}

/// An RSA-OAEP encryption key from the PKCS#1 DER of a public key; the error says why not.
pub(crate) fn oaep_public_key(pkcs1_der: &[u8]) -> Result<lc_rsa::OaepPublicEncryptingKey, String> {
    let key = rsa::PublicKey::from_pkcs1_der(pkcs1_der)
        .map_err(|e| format!("not a PKCS#1 DER RSA public key: {e}"))?;
    // aws-lc-rs reads public keys as SubjectPublicKeyInfo.
    let spki = key
        .to_public_key_der()
        .map_err(|e| format!("cannot re-encode the key: {e}"))?;
    lc_rsa::PublicEncryptingKey::from_der(spki.as_bytes())
        .map_err(|e| format!("RSA key refused ({e}); use 2048 to 8192 bits"))
        .and_then(|k| {
            lc_rsa::OaepPublicEncryptingKey::new(k)
                .map_err(|_| "RSA key refused for OAEP".to_string())
        })
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = digest::digest(&digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Decodes one PEM block; the DER is wiped on drop (it may be a private key).
fn decode_pem(
    pem_text: &[u8],
    what: &'static str,
) -> Result<(String, Zeroizing<Vec<u8>>), SeedEngineError> {
    pem::decode_vec(pem_text)
        .map(|(label, der)| (label.to_string(), Zeroizing::new(der)))
        .map_err(|e| SeedEngineError::KeyDecode {
            what,
            reason: format!("not a PEM file with exactly one block ({e})"),
        })
}

fn wrong_label(what: &'static str, found: &str, expected: &str) -> SeedEngineError {
    SeedEngineError::KeyDecode {
        what,
        reason: format!("the PEM block is `{found}`, expected {expected}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_workload_owner_public_key_gives_the_private_keys_digest() {
        let key = WorkloadOwnerKey::generate().unwrap();
        let public_pem = p384::PublicKey::from_public_key_der(key.public_key_der())
            .unwrap()
            .to_public_key_pem(p384::pkcs8::LineEnding::LF)
            .unwrap();
        let from_public = workload_owner_public_key_der(public_pem.as_bytes()).unwrap();
        let from_private = workload_owner_public_key_der(key.to_pem().unwrap().as_bytes()).unwrap();
        assert_eq!(from_public, from_private);
        assert_eq!(
            workload_owner_key_digest_hex(&from_public),
            key.digest_hex()
        );
    }

    #[test]
    fn the_transition_signature_verifies_as_the_coordinator_checks_it() {
        let key = WorkloadOwnerKey::generate().unwrap();
        let message = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let signature = key.sign_sha256(message).unwrap();
        // The SubjectPublicKeyInfo ends with the uncompressed point (0x04, X, Y).
        let spki = key.public_key_der();
        let point = &spki[spki.len() - 97..];
        assert_eq!(point[0], 4);
        let public = aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::ECDSA_P384_SHA256_ASN1,
            point,
        );
        public.verify(message, &signature).unwrap();
        // Another message, or the SHA-384 variant, does not verify.
        assert!(public.verify(b"another transition", &signature).is_err());
        assert!(
            aws_lc_rs::signature::UnparsedPublicKey::new(
                &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1,
                point,
            )
            .verify(message, &signature)
            .is_err()
        );
    }

    #[test]
    fn a_public_key_that_is_not_p384_is_refused_saying_so() {
        use aws_lc_rs::encoding::AsDer as _;
        use aws_lc_rs::signature::KeyPair as _;
        let p256 = aws_lc_rs::signature::EcdsaKeyPair::generate(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        )
        .unwrap();
        let spki = p256.public_key().as_der().unwrap();
        let pem = pem::encode_string("PUBLIC KEY", LineEnding::LF, spki.as_ref()).unwrap();
        let err = workload_owner_public_key_der(pem.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("P-384"), "{err}");
    }

    #[test]
    fn p384_pem_round_trip_and_refusals() {
        let key = random_p384().unwrap();
        let pem_text = p384_to_sec1_pem(&key).unwrap();
        assert!(pem_text.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
        assert!(pem_text.ends_with("-----END EC PRIVATE KEY-----\n"));
        let back = p384_from_sec1_pem(pem_text.as_bytes()).unwrap();
        assert_eq!(back.to_bytes(), key.to_bytes());

        let pkcs8 = p384_pkcs8_der(&key).unwrap();
        assert_eq!(
            p384_from_pkcs8_der(&pkcs8).unwrap().to_bytes(),
            key.to_bytes()
        );
        let pkcs8_pem = pem::encode_string(PEM_PRIVATE_KEY, LineEnding::LF, &pkcs8).unwrap();
        let err = p384_from_sec1_pem(pkcs8_pem.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("`PRIVATE KEY`"), "{err}");
        assert!(p384_from_sec1_pem(b"not pem").is_err());
        assert!(p384_from_pkcs8_der(&[0x30, 0x00]).is_err());
    }

    #[test]
    fn p384_pkcs8_is_accepted_by_aws_lc_rs() {
        // rcgen (aws_lc_rs backend) loads the CA keys through this path.
        let key = random_p384().unwrap();
        let pkcs8 = p384_pkcs8_der(&key).unwrap();
        aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING,
            &pkcs8,
        )
        .unwrap();
    }

    #[test]
    fn random_p384_keys_differ() {
        assert_ne!(
            random_p384().unwrap().to_bytes(),
            random_p384().unwrap().to_bytes()
        );
    }

    #[test]
    fn workload_owner_key_round_trip() {
        let key = WorkloadOwnerKey::generate().unwrap();
        let pem_text = key.to_pem().unwrap();
        let back = WorkloadOwnerKey::from_pem(pem_text.as_bytes()).unwrap();
        assert_eq!(back.digest(), key.digest());
        assert_eq!(back.digest_hex().len(), 64);
        assert_eq!(back.digest_hex(), back.digest_hex().to_lowercase());
        let debug = format!("{key:?}");
        assert!(debug.contains(&key.digest_hex()));
        assert!(!debug.contains(&hex::encode(key.secret_key().to_bytes())));
        // PKCS#8 PEM is read too.
        let pkcs8 = key.pkcs8_der().unwrap();
        let pkcs8_pem = pem::encode_string(PEM_PRIVATE_KEY, LineEnding::LF, &pkcs8).unwrap();
        let again = WorkloadOwnerKey::from_pem(pkcs8_pem.as_bytes()).unwrap();
        assert_eq!(again.digest(), key.digest());
    }

    #[test]
    fn workload_owner_key_refusals() {
        let err = WorkloadOwnerKey::from_pem(b"").unwrap_err();
        assert!(err.to_string().contains("workload owner key"), "{err}");
        let cert = pem::encode_string("CERTIFICATE", LineEnding::LF, &[0x30, 0x00]).unwrap();
        let err = WorkloadOwnerKey::from_pem(cert.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("`CERTIFICATE`"), "{err}");
        let junk = pem::encode_string(PEM_EC_PRIVATE_KEY, LineEnding::LF, &[0x30, 0x00]).unwrap();
        assert!(WorkloadOwnerKey::from_pem(junk.as_bytes()).is_err());
    }
}
