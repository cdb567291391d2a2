//! An aTLS party's key, parsed once: it signs the handshake (through rustls) and its own
//! certificate (through rcgen). Parsing a PKCS#8 key checks it with a scalar
//! multiplication, so the one parse saves a client what two more would cost on every
//! connection. Keys are parsed from borrowed DER: no copy of a private key is made here
//! that would be freed without being zeroized (a fresh key's PKCS#8 document zeroizes
//! itself).

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use rustls::SignatureScheme;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::AtlsError;

/// The signature scheme each kind of key signs its certificate with, in rustls's and in
/// rcgen's terms: what rcgen chose when it parsed the key itself. These are the keys aTLS
/// peers accept (`cert::verification_algorithm`).
const SCHEMES: [(SignatureScheme, &rcgen::SignatureAlgorithm); 3] = [
    (
        SignatureScheme::ECDSA_NISTP256_SHA256,
        &rcgen::PKCS_ECDSA_P256_SHA256,
    ),
    (
        SignatureScheme::ECDSA_NISTP384_SHA384,
        &rcgen::PKCS_ECDSA_P384_SHA384,
    ),
    (SignatureScheme::RSA_PKCS1_SHA256, &rcgen::PKCS_RSA_SHA256),
];

/// A private key for TLS and for the certificate it presents.
#[derive(Debug)]
pub(crate) struct TlsKey {
    signing_key: Arc<dyn rustls::sign::SigningKey>,
    scheme: SignatureScheme,
    algorithm: &'static rcgen::SignatureAlgorithm,
    /// The subject public key (the BIT STRING's contents).
    public_key: Vec<u8>,
    /// The SubjectPublicKeyInfo, DER, as the certificate carries it.
    spki: Vec<u8>,
}

impl TlsKey {
    /// A fresh P-256 key.
    pub(crate) fn generate() -> Result<Self, AtlsError> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
                .map_err(|_| AtlsError::Build("generating a P-256 key failed".into()))?;
        Self::load(&PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            pkcs8.as_ref(),
        )))
    }

    /// `der` as a TLS key that can sign a certificate: ECDSA P-256 or P-384, or RSA. Read
    /// by the one crypto provider's own key loader (aws-lc-rs), which takes it borrowed.
    pub(crate) fn load(der: &PrivateKeyDer<'_>) -> Result<Self, AtlsError> {
        // ECDSA first: the provider's general loader tries RSA first, and aws-lc parses
        // and checks a whole EC key (a scalar multiplication) before it refuses it as RSA.
        let signing_key = rustls::crypto::aws_lc_rs::sign::any_ecdsa_type(der)
            .or_else(|_| rustls::crypto::aws_lc_rs::sign::any_supported_type(der))
            .map_err(|e| {
                AtlsError::Build(format!(
                    "the TLS key does not load ({e}); give an ECDSA P-256 or P-384 or an RSA \
                 private key (PKCS#8, SEC1 or PKCS#1)"
                ))
            })?;
        let unusable =
            |why: &str| AtlsError::Build(format!("the TLS key cannot sign certificates: {why}"));
        let (scheme, algorithm) = SCHEMES
            .into_iter()
            .find(|(scheme, _)| signing_key.choose_scheme(&[*scheme]).is_some())
            .ok_or_else(|| unusable("aTLS peers accept ECDSA P-256 or P-384 and RSA keys"))?;
        let public_key = {
            let spki = signing_key
                .public_key()
                .ok_or_else(|| unusable("its public key cannot be read"))?;
            match SubjectPublicKeyInfo::from_der(spki.as_ref()) {
                Ok(([], parsed)) => parsed.subject_public_key.data.to_vec(),
                _ => return Err(unusable("its public key does not parse")),
            }
        };
        let mut key = TlsKey {
            signing_key,
            scheme,
            algorithm,
            public_key,
            spki: Vec::new(),
        };
        // Encoded as rcgen encodes it into the certificate, which the peer's report-data
        // check reads back.
        key.spki = rcgen::PublicKeyData::subject_public_key_info(&key);
        Ok(key)
    }

    /// The SubjectPublicKeyInfo, DER (what report data binds).
    pub(crate) fn spki(&self) -> &[u8] {
        &self.spki
    }

    /// The key as rustls signs the handshake with it.
    pub(crate) fn signing_key(&self) -> Arc<dyn rustls::sign::SigningKey> {
        self.signing_key.clone()
    }
}

impl rcgen::PublicKeyData for TlsKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.algorithm
    }
}

impl rcgen::SigningKey for TlsKey {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let signer = self
            .signing_key
            .choose_scheme(&[self.scheme])
            .ok_or(rcgen::Error::RemoteKeyError)?;
        signer.sign(msg).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind of key signs a certificate that verifies under the key rcgen would have
    /// parsed from the same PKCS#8, with the same SubjectPublicKeyInfo.
    #[test]
    fn every_supported_key_signs_its_certificate_as_rcgen_would() {
        for algorithm in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_RSA_SHA256,
        ] {
            let pkcs8 = if *algorithm == rcgen::PKCS_RSA_SHA256 {
                // rcgen generates no RSA keys.
                use aws_lc_rs::encoding::AsDer as _;
                let rsa =
                    aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
                rsa.as_der().unwrap().as_ref().to_vec()
            } else {
                rcgen::KeyPair::generate_for(algorithm)
                    .unwrap()
                    .serialize_der()
            };
            let reference = rcgen::KeyPair::try_from(pkcs8.as_slice()).unwrap();
            let key = TlsKey::load(&PrivateKeyDer::try_from(pkcs8).unwrap()).unwrap();
            assert_eq!(
                key.spki(),
                rcgen::PublicKeyData::subject_public_key_info(&reference),
                "{algorithm:?}"
            );
            let der = crate::cert::build(&key, None).unwrap();
            let peer = crate::cert::verify_self_signed(&der, crate::unix_now()).unwrap();
            assert_eq!(peer.public_key_der, key.spki(), "{algorithm:?}");
        }
        let fresh = TlsKey::generate().unwrap();
        assert_eq!(fresh.scheme, SignatureScheme::ECDSA_NISTP256_SHA256);
    }

    #[test]
    fn keys_peers_refuse_and_bytes_that_are_no_key_are_refused() {
        let ed25519 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let err =
            TlsKey::load(&PrivateKeyDer::try_from(ed25519.serialize_der()).unwrap()).unwrap_err();
        assert!(err.to_string().contains("accept ECDSA"), "{err}");
        let err = TlsKey::load(&PrivateKeyDer::Pkcs8(
            vec![0x30, 0x03, 0x02, 0x01, 0x00].into(),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("does not load"), "{err}");
        assert!(err.to_string().contains("give an ECDSA"), "{err}");
    }
}
