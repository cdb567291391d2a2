//! The aTLS certificate: self-signed, CN `Contrast`, valid two hours either side of now,
//! with the attestation document as the raw value of one extension (docs/protocol.md
//! §5.2). Also the server nonce's distinguished name.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA384_ASN1, ECDSA_P384_SHA256_ASN1, ECDSA_P384_SHA384_ASN1,
    RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_2048_8192_SHA384, RSA_PKCS1_2048_8192_SHA512,
    UnparsedPublicKey, VerificationAlgorithm,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use contrast_attestation::{der, oid};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate, X509Name};

use crate::{AtlsError, NONCE_LEN};

/// Every OID under which an attestation document may appear, real and simulated.
pub(crate) const ATTESTATION_OIDS: [&str; 4] = [
    oid::ATLS_SNP,
    oid::ATLS_TDX,
    oid::ATLS_SIMULATED_SNP,
    oid::ATLS_SIMULATED_TDX,
];

/// A self-signed certificate for `key` with the attestation document `document` under
/// `document_oid` (none for an unattested party).
pub(crate) fn build(
    key: &impl rcgen::SigningKey,
    document: Option<(&str, Vec<u8>)>,
) -> Result<CertificateDer<'static>, AtlsError> {
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Contrast");
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial)
        .map_err(|_| AtlsError::Build("the system random generator failed".into()))?;
    serial[0] &= 0x7f; // a positive INTEGER of at most 128 bits
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::hours(2);
    params.not_after = now + time::Duration::hours(2);
    if let Some((id, value)) = document {
        let arcs = oid_arcs(id).ok_or_else(|| AtlsError::Build(format!("bad OID {id}")))?;
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(&arcs, value));
    }
    let cert = params
        .self_signed(key)
        .map_err(|e| AtlsError::Build(e.to_string()))?;
    Ok(cert.der().clone())
}

fn oid_arcs(dotted: &str) -> Option<Vec<u64>> {
    dotted.split('.').map(|arc| arc.parse().ok()).collect()
}

/// A peer's certificate after its self-signature was checked.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    /// The SubjectPublicKeyInfo, DER (what report data binds).
    pub public_key_der: Vec<u8>,
    /// Attestation extensions: (dotted OID, raw document).
    pub documents: Vec<(String, Vec<u8>)>,
}

/// Parses `der`, checks that it is signed by its own key and lies within its validity
/// period at `now`, and returns its key and attestation extensions.
pub fn verify_self_signed(der: &[u8], now: i64) -> Result<PeerCertificate, AtlsError> {
    parse_and_verify(der, now)
}

pub(crate) fn parse_and_verify(der: &[u8], now: i64) -> Result<PeerCertificate, AtlsError> {
    let cert = match X509Certificate::from_der(der) {
        Ok(([], cert)) => cert,
        Ok(_) => return Err(AtlsError::Certificate("trailing bytes".into())),
        Err(e) => return Err(AtlsError::Certificate(e.to_string())),
    };
    let validity = cert.validity();
    if now < validity.not_before.timestamp() || now > validity.not_after.timestamp() {
        return Err(AtlsError::Certificate(format!(
            "outside its validity period ({} to {}); check both clocks",
            validity.not_before, validity.not_after
        )));
    }
    let algorithm = verification_algorithm(&cert)?;
    UnparsedPublicKey::new(
        algorithm,
        cert.public_key().subject_public_key.data.as_ref(),
    )
    .verify(
        cert.tbs_certificate.as_ref(),
        cert.signature_value.data.as_ref(),
    )
    .map_err(|_| AtlsError::Certificate("its self-signature does not verify".into()))?;
    Ok(PeerCertificate {
        public_key_der: cert.public_key().raw.to_vec(),
        documents: attestation_extensions(&cert),
    })
}

/// The attestation extensions of `cert`: (dotted OID, raw document) for every OID in
/// Contrast's SNP/TDX arcs and our simulated ones.
///
/// OIDs are compared in their encoded form: x509-parser's dotted rendering splits a first
/// subidentifier of 80 or more wrongly (2.999 would read as 26.39).
pub fn attestation_extensions(cert: &X509Certificate<'_>) -> Vec<(String, Vec<u8>)> {
    cert.extensions()
        .iter()
        .filter_map(|ext| {
            let id = ATTESTATION_OIDS
                .iter()
                .find(|id| der::oid(id).get(2..) == Some(ext.oid.as_bytes()))?;
            Some(((*id).to_string(), ext.value.to_vec()))
        })
        .collect()
}

/// The algorithm that checks a self-signed certificate: ECDSA P-256/P-384 with SHA-256 or
/// SHA-384, or RSA PKCS#1 v1.5 (seed share owner keys are RSA).
fn verification_algorithm(
    cert: &X509Certificate<'_>,
) -> Result<&'static dyn VerificationAlgorithm, AtlsError> {
    const ECDSA_SHA256: &str = "1.2.840.10045.4.3.2";
    const ECDSA_SHA384: &str = "1.2.840.10045.4.3.3";
    const RSA_SHA256: &str = "1.2.840.113549.1.1.11";
    const RSA_SHA384: &str = "1.2.840.113549.1.1.12";
    const RSA_SHA512: &str = "1.2.840.113549.1.1.13";
    const P256: &str = "1.2.840.10045.3.1.7";
    const P384: &str = "1.3.132.0.34";
    let signature = cert.signature_algorithm.algorithm.to_id_string();
    let curve = cert
        .public_key()
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|o| o.to_id_string());
    let algorithm: &'static dyn VerificationAlgorithm = match (signature.as_str(), curve.as_deref())
    {
        (ECDSA_SHA256, Some(P256)) => &ECDSA_P256_SHA256_ASN1,
        (ECDSA_SHA384, Some(P256)) => &ECDSA_P256_SHA384_ASN1,
        (ECDSA_SHA256, Some(P384)) => &ECDSA_P384_SHA256_ASN1,
        (ECDSA_SHA384, Some(P384)) => &ECDSA_P384_SHA384_ASN1,
        (RSA_SHA256, _) => &RSA_PKCS1_2048_8192_SHA256,
        (RSA_SHA384, _) => &RSA_PKCS1_2048_8192_SHA384,
        (RSA_SHA512, _) => &RSA_PKCS1_2048_8192_SHA512,
        (other, curve) => {
            return Err(AtlsError::Certificate(format!(
                "unsupported signature algorithm {other} (key curve {curve:?}); \
                     aTLS peers use ECDSA P-256/P-384 or RSA keys"
            )));
        }
    };
    Ok(algorithm)
}

/// The distinguished name that carries a server nonce: one CN, the nonce in standard base64.
pub(crate) fn nonce_name(nonce: &[u8; NONCE_LEN]) -> Vec<u8> {
    der::name(&[(oid::CN, &STANDARD.encode(nonce))])
}

/// The server nonce from the CertificateRequest's distinguished names: the CN of the first
/// name whose CN is the base64 of exactly [`NONCE_LEN`] bytes.
pub(crate) fn nonce_from_names(names: &[&[u8]]) -> Option<[u8; NONCE_LEN]> {
    names.iter().find_map(|raw| {
        let (_, name) = X509Name::from_der(raw).ok()?;
        let cn = name.iter_common_name().next()?.as_str().ok()?;
        STANDARD.decode(cn).ok()?.try_into().ok()
    })
}

/// The client nonce from ALPN (`atls:v1:nonce:<hex>`), or from the server name (standard
/// base64, Contrast's first protocol) when ALPN carries none. An `atls` ALPN entry of
/// another version is an error.
pub(crate) fn client_nonce<'a>(
    alpn: impl IntoIterator<Item = &'a [u8]>,
    server_name: Option<&str>,
) -> Result<[u8; NONCE_LEN], AtlsError> {
    for protocol in alpn {
        if !protocol.starts_with(b"atls") {
            continue;
        }
        let Some(hex_nonce) = protocol.strip_prefix(crate::ALPN_NONCE_PREFIX.as_bytes()) else {
            return Err(AtlsError::Nonce(format!(
                "unsupported aTLS protocol {:?}; this server speaks {}<hex>",
                String::from_utf8_lossy(protocol),
                crate::ALPN_NONCE_PREFIX
            )));
        };
        let bytes = hex::decode(hex_nonce)
            .map_err(|_| AtlsError::Nonce("the ALPN nonce is not hex".into()))?;
        return bytes
            .try_into()
            .map_err(|_| AtlsError::Nonce(format!("the ALPN nonce must be {NONCE_LEN} bytes")));
    }
    if let Some(name) = server_name
        && let Ok(bytes) = STANDARD.decode(name)
        && let Ok(nonce) = bytes.try_into()
    {
        return Ok(nonce);
    }
    Err(AtlsError::Nonce(
        "the client sent no aTLS nonce (ALPN atls:v1:nonce:<hex>); is it an aTLS client?".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_certificate_verifies_and_carries_its_document() {
        let key = rcgen::KeyPair::generate().unwrap();
        let der = build(&key, Some((oid::ATLS_SIMULATED_SNP, b"doc".to_vec()))).unwrap();
        let peer = parse_and_verify(&der, crate::unix_now()).unwrap();
        assert_eq!(
            peer.public_key_der,
            rcgen::PublicKeyData::subject_public_key_info(&key)
        );
        assert_eq!(
            peer.documents,
            vec![(oid::ATLS_SIMULATED_SNP.to_string(), b"doc".to_vec())]
        );
    }

    #[test]
    fn a_tampered_or_expired_certificate_is_refused() {
        let key = rcgen::KeyPair::generate().unwrap();
        let der = build(&key, Some((oid::ATLS_SNP, b"document".to_vec()))).unwrap();
        let mut tampered = der.to_vec();
        let at = tampered.windows(8).position(|w| w == b"document").unwrap();
        tampered[at] ^= 1;
        let err = parse_and_verify(&tampered, crate::unix_now()).unwrap_err();
        assert!(err.to_string().contains("self-signature"), "{err}");
        let err = parse_and_verify(&der, crate::unix_now() + 3 * 3600).unwrap_err();
        assert!(err.to_string().contains("validity"), "{err}");
        let err = parse_and_verify(&der, crate::unix_now() - 3 * 3600).unwrap_err();
        assert!(err.to_string().contains("validity"), "{err}");
    }

    #[test]
    fn nonces_round_trip_through_names_and_alpn() {
        let nonce = [7u8; NONCE_LEN];
        let name = nonce_name(&nonce);
        assert_eq!(nonce_from_names(&[b"\x30\x00", &name]), Some(nonce));
        assert_eq!(nonce_from_names(&[b"\x30\x00"]), None);
        let alpn = format!("{}{}", crate::ALPN_NONCE_PREFIX, hex::encode(nonce));
        let got = client_nonce([alpn.as_bytes(), b"h2".as_slice()], None).unwrap();
        assert_eq!(got, nonce);
        let sni = STANDARD.encode(nonce);
        assert_eq!(client_nonce([b"h2".as_slice()], Some(&sni)).unwrap(), nonce);
    }

    #[test]
    fn bad_client_nonces_are_refused() {
        for (alpn, why) in [
            ("atls:v2:nonce:00", "unsupported aTLS protocol"),
            ("atls:v1:nonce:zz", "not hex"),
            ("atls:v1:nonce:0011", "must be 32 bytes"),
        ] {
            let err = client_nonce([alpn.as_bytes()], None).unwrap_err();
            assert!(err.to_string().contains(why), "{alpn}: {err}");
        }
        let err = client_nonce([b"h2".as_slice()], Some("example.com")).unwrap_err();
        assert!(err.to_string().contains("no aTLS nonce"), "{err}");
    }
}
