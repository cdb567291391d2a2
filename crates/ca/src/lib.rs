//! The Coordinator's certificate authority (docs/protocol.md §4).
//!
//! [`Ca::new`] builds, for one Coordinator state, three certificates:
//! - the **root CA**, self-signed with the seed-derived root key (the same key across
//!   manifest updates and recovery, so workloads can trust it across generations);
//! - the **intermediate CA**, the mesh key certified by the root;
//! - the **mesh CA**, the same subject and mesh key, self-signed: the trust anchor of one
//!   manifest generation.
//!
//! [`Ca::new_mesh_cert`] issues workload certificates under the mesh key; they chain to the
//! mesh CA directly, and to the root through the intermediate (same subject, same key).

mod san;
mod signer;
mod subject_key;

use aws_lc_rs::encoding::AsBigEndian as _;
use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair};
use contrast_attestation::claims::Claim;
use contrast_attestation::{der, oid};
use rcgen::string::PrintableString;
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyUsagePurpose, SerialNumber,
};
use time::{Date, Month, OffsetDateTime};

use crate::signer::P384Signer;
use crate::subject_key::SubjectKey;

/// Subject CN of the root CA certificate.
pub const ROOT_CA_COMMON_NAME: &str = "system:coordinator:root";
/// Subject CN of the intermediate and the mesh CA certificate.
pub const INTERMEDIATE_COMMON_NAME: &str = "system:coordinator:intermediate";

/// Extensions the certificate itself writes (SKID, key usage, SAN, basic constraints,
/// AKID, extended key usage); a claim with one of these OIDs would duplicate it.
const RESERVED_EXTENSIONS: [&[u64]; 6] = [
    &[2, 5, 29, 14],
    &[2, 5, 29, 15],
    &[2, 5, 29, 17],
    &[2, 5, 29, 19],
    &[2, 5, 29, 35],
    &[2, 5, 29, 37],
];

/// Why the CA could not be built or could not issue a certificate.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A P-384 key could not be imported for signing.
    #[error("the {key} could not be imported as a P-384 signing key: {reason}")]
    KeyImport {
        /// Which key ("root key", "mesh key").
        key: &'static str,
        /// The underlying library's words.
        reason: String,
    },
    /// The system random number generator failed.
    #[error(
        "the system random number generator failed while generating the {purpose}; \
         check that the kernel's entropy source (getrandom) is available"
    )]
    Random {
        /// What the randomness was for.
        purpose: &'static str,
    },
    /// A validity date is out of the representable range (the system clock is far off).
    #[error(
        "the {certificate} certificate's validity end is not a representable date; check the system clock"
    )]
    Validity {
        /// Which certificate.
        certificate: &'static str,
    },
    /// rcgen refused to build or sign a certificate.
    #[error("building the {certificate} certificate failed")]
    Certificate {
        /// Which certificate.
        certificate: &'static str,
        /// rcgen's error.
        #[source]
        source: rcgen::Error,
    },
    /// The SAN list has no DNS name, so the certificate has no subject CN.
    #[error(
        "the policy's SANs contain no DNS name; a mesh certificate's subject CN is its first \
         DNS SAN, so add a DNS name (e.g. the workload's name or \"*\") to the policy's SANs in \
         the manifest"
    )]
    NoDnsSan,
    /// A SAN entry is empty.
    #[error(
        "SAN entry {index} of the policy is empty; remove it from the policy's SANs in the manifest"
    )]
    EmptySan {
        /// Position in the policy's SAN list.
        index: usize,
    },
    /// A DNS or URI SAN is not ASCII, which X.509 (IA5String) cannot carry.
    #[error(
        "the SAN {san:?} is not ASCII, which an X.509 DNS or URI name cannot carry; \
         write it in ASCII (punycode for DNS names, percent-encoding for URIs)"
    )]
    NonAsciiSan {
        /// The SAN entry.
        san: String,
    },
    /// The subject public key is not a supported DER SubjectPublicKeyInfo.
    #[error("the subject public key is not usable for a mesh certificate: {reason}")]
    SubjectPublicKey {
        /// What is wrong with it.
        reason: String,
    },
    /// A claim's OID cannot be encoded (fewer than two arcs, or first arcs out of range).
    #[error(
        "claim extension OID {oid} is not a valid OID (it needs two arcs or more, the first \
         at most 2, the second below 40 unless the first is 2)"
    )]
    InvalidClaimOid {
        /// The OID's arcs, dotted.
        oid: String,
    },
    /// Two extensions would have the same OID, which X.509 forbids.
    #[error(
        "extension {oid} would appear twice in the mesh certificate; claims must have \
         distinct OIDs, outside the standard extensions and the workload secret ID"
    )]
    DuplicateExtension {
        /// The OID, dotted.
        oid: String,
    },
}

/// One certificate in both encodings.
#[derive(Debug, Clone)]
struct EncodedCert {
    der: Vec<u8>,
    pem: String,
}

impl EncodedCert {
    fn new(cert: &rcgen::Certificate) -> Self {
        Self {
            der: cert.der().to_vec(),
            pem: cert.pem(),
        }
    }
}

/// The Coordinator's CA for one state: root, intermediate and mesh CA certificates and the
/// mesh key that issues workload certificates.
pub struct Ca {
    root: EncodedCert,
    intermediate: EncodedCert,
    mesh_ca: EncodedCert,
    mesh_key: p384::SecretKey,
    /// The mesh CA as issuer: its subject, key identifier method and the mesh key.
    mesh_issuer: Issuer<'static, P384Signer>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("root_ca_pem", &self.root.pem)
            .field("intermediate_pem", &self.intermediate.pem)
            .field("mesh_ca_pem", &self.mesh_ca.pem)
            .field("mesh_key", &"[secret]")
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Builds the root CA (self-signed with `root_key`), the intermediate CA (`mesh_key`
    /// certified by the root) and the mesh CA (`mesh_key`, self-signed).
    ///
    /// The root key is used only here; the CA keeps the mesh key.
    pub fn new(root_key: &p384::SecretKey, mesh_key: &p384::SecretKey) -> Result<Ca, CaError> {
        let now = OffsetDateTime::now_utc();
        let root_signer = P384Signer::new(root_key, "root key")?;
        let mesh_signer = P384Signer::new(mesh_key, "mesh key")?;

        let root_params = ca_params(ROOT_CA_COMMON_NAME, now, "root CA")?;
        let root_cert = root_params
            .self_signed(&root_signer)
            .map_err(cert_error("root CA"))?;
        let root_issuer = Issuer::new(root_params, root_signer);

        let mut intermediate_params = ca_params(INTERMEDIATE_COMMON_NAME, now, "intermediate CA")?;
        intermediate_params.use_authority_key_identifier_extension = true;
        let intermediate_cert = intermediate_params
            .signed_by(&mesh_signer, &root_issuer)
            .map_err(cert_error("intermediate CA"))?;

        let mesh_params = ca_params(INTERMEDIATE_COMMON_NAME, now, "mesh CA")?;
        let mesh_cert = mesh_params
            .self_signed(&mesh_signer)
            .map_err(cert_error("mesh CA"))?;

        Ok(Ca {
            root: EncodedCert::new(&root_cert),
            intermediate: EncodedCert::new(&intermediate_cert),
            mesh_ca: EncodedCert::new(&mesh_cert),
            mesh_key: mesh_key.clone(),
            mesh_issuer: Issuer::new(mesh_params, mesh_signer),
        })
    }

    /// The root CA certificate, PEM.
    pub fn root_ca_pem(&self) -> &str {
        &self.root.pem
    }

    /// The root CA certificate, DER.
    pub fn root_ca_der(&self) -> &[u8] {
        &self.root.der
    }

    /// The intermediate CA certificate (mesh key signed by the root), PEM.
    pub fn intermediate_pem(&self) -> &str {
        &self.intermediate.pem
    }

    /// The intermediate CA certificate, DER.
    pub fn intermediate_der(&self) -> &[u8] {
        &self.intermediate.der
    }

    /// The mesh CA certificate (mesh key, self-signed), PEM.
    pub fn mesh_ca_pem(&self) -> &str {
        &self.mesh_ca.pem
    }

    /// The mesh CA certificate, DER.
    pub fn mesh_ca_der(&self) -> &[u8] {
        &self.mesh_ca.der
    }

    /// The mesh CA private key (peer recovery hands it to the next Coordinator).
    pub fn mesh_key(&self) -> &p384::SecretKey {
        &self.mesh_key
    }

    /// Issues a workload (mesh) certificate for `subject_public_key_spki_der` and returns
    /// the PEM chain: the leaf, then the intermediate CA.
    ///
    /// `sans` are the policy's SANs (IP, URI or DNS each; the first DNS name is the subject
    /// CN, so one is required). Every claim becomes a non-critical extension with the
    /// claim's value as extnValue; a non-empty `workload_secret_id` adds extension
    /// `1.3.9901.3.1` with the DER OCTET STRING of its UTF-8 bytes.
    pub fn new_mesh_cert(
        &self,
        sans: &[String],
        claims: &[Claim],
        workload_secret_id: Option<&str>,
        subject_public_key_spki_der: &[u8],
    ) -> Result<String, CaError> {
        let split = san::split(sans)?;
        let subject_key = SubjectKey::from_spki_der(subject_public_key_spki_der)?;
        let extensions = extensions(claims, workload_secret_id)?;

        let now = OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        params.serial_number = Some(random_serial()?);
        params.not_before = now - time::Duration::HOUR;
        params.not_after = add_years(now, 1).ok_or(CaError::Validity {
            certificate: "mesh",
        })?;
        params.distinguished_name = common_name(&split.common_name);
        params.subject_alt_names = split.sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.custom_extensions = extensions;

        let leaf = params
            .signed_by(&subject_key, &self.mesh_issuer)
            .map_err(cert_error("mesh"))?;
        Ok(format!("{}{}", leaf.pem(), self.intermediate.pem))
    }
}

/// Generates a random P-384 key (a new mesh key on SetManifest and user recovery).
pub fn generate_mesh_key() -> Result<p384::SecretKey, CaError> {
    let random = || CaError::Random {
        purpose: "mesh key",
    };
    let key_pair = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING).map_err(|_| random())?;
    // The big-endian scalar buffer is wiped on drop by aws-lc-rs.
    let scalar = key_pair.private_key().as_be_bytes().map_err(|_| random())?;
    p384::SecretKey::from_slice(scalar.as_ref()).map_err(|e| CaError::KeyImport {
        key: "generated mesh key",
        reason: e.to_string(),
    })
}

fn cert_error(certificate: &'static str) -> impl FnOnce(rcgen::Error) -> CaError {
    move |source| CaError::Certificate {
        certificate,
        source,
    }
}

/// The parameters shared by the three CA certificates.
fn ca_params(
    cn: &str,
    now: OffsetDateTime,
    certificate: &'static str,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.serial_number = Some(random_serial()?);
    params.not_before = now - time::Duration::HOUR;
    params.not_after = add_years(now, 10).ok_or(CaError::Validity { certificate })?;
    params.distinguished_name = common_name(cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    Ok(params)
}

/// A subject with only a CN, encoded as Go does: PrintableString when every character
/// allows it, UTF8String otherwise (e.g. the wildcard `*`).
fn common_name(cn: &str) -> DistinguishedName {
    let value = match PrintableString::try_from(cn) {
        Ok(printable) => DnValue::PrintableString(printable),
        Err(_) => DnValue::Utf8String(cn.to_owned()),
    };
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, value);
    name
}

/// A serial number uniformly random in [0, 2^128), as Go's `rand.Int(rand.Reader, 2^128)`;
/// rcgen writes it as a positive DER INTEGER.
fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| CaError::Random {
        purpose: "certificate serial number",
    })?;
    Ok(SerialNumber::from_slice(&bytes))
}

/// `at` plus `years` calendar years, normalised like Go's `AddDate` (29 February becomes
/// 1 March in a non-leap year).
fn add_years(at: OffsetDateTime, years: i32) -> Option<OffsetDateTime> {
    let year = at.year().checked_add(years)?;
    let date = Date::from_calendar_date(year, at.month(), at.day())
        .or_else(|_| Date::from_calendar_date(year, Month::March, 1))
        .ok()?;
    Some(at.replace_date(date))
}

/// Dotted form of an OID, for error messages.
fn dotted(oid: &[u64]) -> String {
    oid.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

/// The claim extensions plus the workload secret ID extension, checked to be encodable
/// and distinct.
fn extensions(
    claims: &[Claim],
    workload_secret_id: Option<&str>,
) -> Result<Vec<CustomExtension>, CaError> {
    let mut out: Vec<CustomExtension> = Vec::with_capacity(claims.len() + 1);
    let mut push = |oid: &[u64], value: Vec<u8>| {
        let encodable = match oid {
            [first, second, ..] => {
                *first <= 2 && (*first == 2 || *second < 40) && *second < u64::MAX - 80
            }
            _ => false,
        };
        if !encodable {
            return Err(CaError::InvalidClaimOid { oid: dotted(oid) });
        }
        let duplicate = RESERVED_EXTENSIONS.contains(&oid)
            || out
                .iter()
                .any(|ext| ext.oid_components().eq(oid.iter().copied()));
        if duplicate {
            return Err(CaError::DuplicateExtension { oid: dotted(oid) });
        }
        out.push(CustomExtension::from_oid_content(oid, value));
        Ok(())
    };
    for claim in claims {
        push(&claim.oid, claim.value.clone())?;
    }
    if let Some(id) = workload_secret_id.filter(|id| !id.is_empty()) {
        push(&workload_secret_id_oid(), der::octet_string(id.as_bytes()))?;
    }
    Ok(out)
}

/// The arcs of [`oid::WORKLOAD_SECRET_ID`].
fn workload_secret_id_oid() -> Vec<u64> {
    oid::WORKLOAD_SECRET_ID
        .split('.')
        .filter_map(|arc| arc.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn workload_secret_id_oid_arcs() {
        assert_eq!(workload_secret_id_oid(), vec![1, 3, 9901, 3, 1]);
    }

    #[test]
    fn add_years_normalises_leap_day_like_go() {
        let leap = OffsetDateTime::from_unix_timestamp(1_709_208_000).unwrap(); // 2024-02-29 12:00
        assert_eq!((leap.month(), leap.day()), (Month::February, 29));
        let next = add_years(leap, 1).unwrap();
        assert_eq!(
            (next.year(), next.month(), next.day()),
            (2025, Month::March, 1)
        );
        assert_eq!(next.time(), leap.time());
        let ordinary = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let later = add_years(ordinary, 10).unwrap();
        assert_eq!(
            (later.year(), later.month(), later.day(), later.time()),
            (
                ordinary.year() + 10,
                ordinary.month(),
                ordinary.day(),
                ordinary.time()
            )
        );
    }

    #[test]
    fn common_name_uses_printable_string_when_possible() {
        let printable = common_name(ROOT_CA_COMMON_NAME);
        assert!(matches!(
            printable.get(&DnType::CommonName),
            Some(DnValue::PrintableString(_))
        ));
        let wildcard = common_name("*");
        assert!(matches!(
            wildcard.get(&DnType::CommonName),
            Some(DnValue::Utf8String(s)) if s == "*"
        ));
    }

    #[test]
    fn serials_differ_and_fit_in_128_bits() {
        let a = random_serial().unwrap().to_bytes();
        let b = random_serial().unwrap().to_bytes();
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }

    #[test]
    fn extensions_refuse_bad_and_duplicate_oids() {
        let claim = |oid: &[u64]| Claim {
            oid: oid.to_vec(),
            value: vec![0x05, 0x00],
        };
        for bad in [&[][..], &[1], &[3, 1], &[1, 40], &[0, 40, 1]] {
            let err = extensions(&[claim(bad)], None).unwrap_err();
            assert!(
                matches!(err, CaError::InvalidClaimOid { .. }),
                "{bad:?}: {err}"
            );
        }
        let err = extensions(
            &[claim(&[1, 3, 9901, 2, 1, 1]), claim(&[1, 3, 9901, 2, 1, 1])],
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&err, CaError::DuplicateExtension { oid } if oid == "1.3.9901.2.1.1"),
            "{err}"
        );
        let err = extensions(&[claim(&[2, 5, 29, 17])], None).unwrap_err();
        assert!(matches!(err, CaError::DuplicateExtension { .. }), "{err}");
        let err = extensions(&[claim(&[1, 3, 9901, 3, 1])], Some("id")).unwrap_err();
        assert!(matches!(err, CaError::DuplicateExtension { .. }), "{err}");
        // 2.x allows a second arc of 40 or more.
        assert_eq!(extensions(&[claim(&[2, 999, 1])], None).unwrap().len(), 1);
    }

    #[test]
    fn empty_workload_secret_id_adds_no_extension() {
        assert!(extensions(&[], Some("")).unwrap().is_empty());
        assert!(extensions(&[], None).unwrap().is_empty());
        let ext = extensions(&[], Some("my-secret")).unwrap();
        assert_eq!(ext.len(), 1);
        assert_eq!(ext[0].content(), der::octet_string(b"my-secret"));
        assert!(!ext[0].criticality());
    }
}
