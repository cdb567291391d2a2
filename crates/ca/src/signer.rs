//! P-384 signing keys for rcgen, backed by aws-lc-rs.
//!
//! rcgen's own `KeyPair` keeps a copy of the PKCS#8 document that is never wiped, so the
//! CA keys go through this wrapper instead: the key lives only inside aws-lc-rs (which
//! cleanses it on free) and in the caller's zeroizing `p384::SecretKey`.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
use p384::pkcs8::EncodePrivateKey as _;
use rcgen::{PKCS_ECDSA_P384_SHA384, PublicKeyData, SignatureAlgorithm, SigningKey};

use crate::CaError;

/// An ECDSA P-384 key that signs certificates with ecdsa-with-SHA384.
pub(crate) struct P384Signer {
    key_pair: EcdsaKeyPair,
}

impl P384Signer {
    /// Imports `key`; `which` names the key in errors ("root key", "mesh key").
    pub(crate) fn new(key: &p384::SecretKey, which: &'static str) -> Result<Self, CaError> {
        // The PKCS#8 document is a `SecretDocument`, wiped when it goes out of scope.
        let pkcs8 = key.to_pkcs8_der().map_err(|e| CaError::KeyImport {
            key: which,
            reason: e.to_string(),
        })?;
        let key_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_ASN1_SIGNING, pkcs8.as_bytes())
            .map_err(|e| CaError::KeyImport {
                key: which,
                reason: e.to_string(),
            })?;
        Ok(Self { key_pair })
    }
}

impl std::fmt::Debug for P384Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("P384Signer")
            .field("public_key", &self.key_pair.public_key())
            .finish_non_exhaustive()
    }
}

impl PublicKeyData for P384Signer {
    fn der_bytes(&self) -> &[u8] {
        // The uncompressed SEC1 point, the content of the SPKI's BIT STRING.
        self.key_pair.public_key().as_ref()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P384_SHA384
    }
}

impl SigningKey for P384Signer {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.key_pair
            .sign(&SystemRandom::new(), msg)
            .map(|signature| signature.as_ref().to_vec())
            .map_err(|_| rcgen::Error::RingUnspecified)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};

    use super::*;

    #[test]
    fn public_key_is_the_p384_public_key() {
        let secret = crate::generate_mesh_key().unwrap();
        let signer = P384Signer::new(&secret, "test key").unwrap();
        let expected = secret.public_key().to_sec1_bytes();
        assert_eq!(signer.der_bytes(), &expected[..]);
    }

    #[test]
    fn signatures_verify_under_the_public_key() {
        let secret = crate::generate_mesh_key().unwrap();
        let signer = P384Signer::new(&secret, "test key").unwrap();
        let signature = signer.sign(b"message").unwrap();
        let public = UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, signer.der_bytes());
        public.verify(b"message", &signature).unwrap();
        assert!(public.verify(b"other message", &signature).is_err());
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let secret = crate::generate_mesh_key().unwrap();
        let signer = P384Signer::new(&secret, "test key").unwrap();
        let debug = format!("{signer:?}");
        let secret_hex: String = secret
            .to_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(!debug.to_lowercase().contains(&secret_hex));
    }
}
