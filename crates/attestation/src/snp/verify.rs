//! Verification of an SEV-SNP report: the AMD certificate chain (ARK → ASK → VCEK or
//! ARK → ASVK → VLEK), its validity periods, an optional CRL, the consistency of the VCEK's
//! TCB and hardware-ID extensions with the report, and the report signature over the
//! bytes as received.

use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, RSA_PSS_2048_8192_SHA384, UnparsedPublicKey};
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::revocation_list::CertificateRevocationList;

use crate::oid;

use super::report::{ReportError, SigningKey, SnpProduct, SnpReport, TcbVersion};

/// Which certificate of the chain an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainCert {
    /// AMD Root Key.
    Ark,
    /// AMD SEV Key (signs VCEKs) or AMD SEV VLEK Key (signs VLEKs).
    Ask,
    /// The VCEK or VLEK that signed the report.
    Vek,
}

impl std::fmt::Display for ChainCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChainCert::Ark => "ARK",
            ChainCert::Ask => "ASK/ASVK",
            ChainCert::Vek => "VCEK/VLEK",
        })
    }
}

/// Why an SEV-SNP report was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnpVerifyError {
    /// The report itself is malformed.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// A certificate does not parse.
    #[error("the {which} certificate does not parse: {reason}")]
    CertificateParse {
        /// Which certificate.
        which: ChainCert,
        /// The parser's words.
        reason: String,
    },
    /// No certificate for the key that signed the report.
    #[error("no {0} given; pass the certificate of the key that signed the report (--vcek)")]
    MissingVek(SigningKey),
    /// A VLEK report without the ASVK that certifies VLEKs.
    #[error(
        "a VLEK-signed report needs the ASVK of its product line (--cert-chain with ASVK and ARK)"
    )]
    MissingAsvk,
    /// The product line could not be found out.
    #[error(
        "cannot tell the product line: the report (version {version}) has no CPUID and the certificate names none"
    )]
    UnknownProduct {
        /// The report version.
        version: u32,
    },
    /// Two sources disagree about the product line.
    #[error("the report says {report} but the {which} certificate is for {cert}")]
    ProductMismatch {
        /// The product from the report's CPUID.
        report: SnpProduct,
        /// The certificate that disagrees.
        which: ChainCert,
        /// What the certificate says.
        cert: String,
    },
    /// No trusted root for the product line.
    #[error("no trusted ARK for {0}: this trust anchor does not cover that product line")]
    NoTrustedArk(SnpProduct),
    /// A given ARK differs from the pinned one.
    #[error(
        "the ARK given is not the trusted ARK for {0}: its public key differs from the pinned key"
    )]
    ArkNotTrusted(SnpProduct),
    /// A certificate's signature does not verify.
    #[error("the {which} certificate's signature does not verify with the {issuer} key")]
    CertificateSignature {
        /// The certificate signed.
        which: ChainCert,
        /// The certificate whose key should have signed it.
        issuer: ChainCert,
    },
    /// A certificate's issuer name is not its parent's subject, or a name is wrong.
    #[error("the {which} certificate's {what} is {actual:?}, expected {expected:?}")]
    CertificateName {
        /// Which certificate.
        which: ChainCert,
        /// "issuer" or "subject common name".
        what: &'static str,
        /// What it is.
        actual: String,
        /// What it must be.
        expected: String,
    },
    /// A certificate is not yet valid or has expired at the verification time.
    #[error(
        "the {which} certificate is valid from {not_before} to {not_after} (Unix time), not at {now}; check the clock or get a current certificate"
    )]
    CertificateValidity {
        /// Which certificate.
        which: ChainCert,
        /// Start of validity.
        not_before: i64,
        /// End of validity.
        not_after: i64,
        /// The verification time.
        now: i64,
    },
    /// A certificate's key is not of the kind AMD uses.
    #[error("the {which} certificate has an unexpected key or signature algorithm: {detail}")]
    CertificateAlgorithm {
        /// Which certificate.
        which: ChainCert,
        /// What is wrong.
        detail: String,
    },
    /// The VCEK's extensions do not match the report.
    #[error(
        "the {which} certificate's {field} is {cert}, but the report's {report_field} is {report}: the certificate is not for this chip or TCB"
    )]
    ExtensionMismatch {
        /// Which certificate.
        which: ChainCert,
        /// The extension.
        field: &'static str,
        /// Its value.
        cert: String,
        /// The report field it must equal.
        report_field: &'static str,
        /// The report's value.
        report: String,
    },
    /// An AMD extension is missing or malformed.
    #[error("the {which} certificate's {field} extension is missing or malformed")]
    Extension {
        /// Which certificate.
        which: ChainCert,
        /// The extension.
        field: &'static str,
    },
    /// The CRL is malformed, not signed by the ARK, or out of date.
    #[error("the CRL is not usable: {0}")]
    Crl(String),
    /// A certificate of the chain is revoked.
    #[error("the {which} certificate (serial {serial}) is revoked by the CRL")]
    Revoked {
        /// Which certificate.
        which: ChainCert,
        /// Its serial number, hex.
        serial: String,
    },
    /// The report signature does not verify.
    #[error(
        "the report signature does not verify with the {0} key: the report was changed or signed by another key"
    )]
    ReportSignature(SigningKey),
}

/// The keys a verifier trusts as ARKs (and the ASKs it knows), per product line.
///
/// [`SnpTrustAnchor::amd`] pins AMD's roots; a simulated anchor holds the simulator's
/// locally generated roots. The verification code is the same for both.
#[derive(Debug, Clone)]
pub struct SnpTrustAnchor {
    roots: Vec<ProductRoots>,
    simulated: bool,
}

#[derive(Debug, Clone)]
struct ProductRoots {
    product: SnpProduct,
    ark_der: Vec<u8>,
    /// The ASK (VCEK signer), used when the evidence carries none.
    ask_der: Option<Vec<u8>>,
}

/// A compiled-in PEM certificate; the files are tested, so an empty result is a defect
/// that the anchor's tests catch.
fn pem_to_der(pem: &str) -> Vec<u8> {
    crate::pem::decode_all(pem, "CERTIFICATE")
        .ok()
        .and_then(|blocks| blocks.into_iter().next())
        .unwrap_or_default()
}

impl SnpTrustAnchor {
    /// AMD's ARKs and ASKs for Milan, Genoa and Turin, as published by AMD's KDS
    /// (`/vcek/v1/<product>/cert_chain`), compiled in.
    pub fn amd() -> Self {
        let roots = [
            (
                SnpProduct::Milan,
                include_str!("roots/milan-ark.pem"),
                include_str!("roots/milan-ask.pem"),
            ),
            (
                SnpProduct::Genoa,
                include_str!("roots/genoa-ark.pem"),
                include_str!("roots/genoa-ask.pem"),
            ),
            (
                SnpProduct::Turin,
                include_str!("roots/turin-ark.pem"),
                include_str!("roots/turin-ask.pem"),
            ),
        ]
        .into_iter()
        .map(|(product, ark, ask)| ProductRoots {
            product,
            ark_der: pem_to_der(ark),
            ask_der: Some(pem_to_der(ask)),
        })
        .collect();
        SnpTrustAnchor {
            roots,
            simulated: false,
        }
    }

    /// A simulator's roots: one ARK (and optionally ASK) per product line.
    pub fn simulated(roots: Vec<(SnpProduct, Vec<u8>, Option<Vec<u8>>)>) -> Self {
        SnpTrustAnchor {
            roots: roots
                .into_iter()
                .map(|(product, ark_der, ask_der)| ProductRoots {
                    product,
                    ark_der,
                    ask_der,
                })
                .collect(),
            simulated: true,
        }
    }

    /// Whether this anchor is the simulator's (only accepted on simulated platforms).
    pub fn is_simulated(&self) -> bool {
        self.simulated
    }

    fn for_product(&self, product: SnpProduct) -> Option<&ProductRoots> {
        self.roots.iter().find(|r| r.product == product)
    }
}

/// Certificates and revocation data that come with a report.
#[derive(Debug, Clone, Default)]
pub struct SnpEndorsements {
    /// The VCEK or VLEK (DER).
    pub vek: Option<Vec<u8>>,
    /// The ASK or ASVK (DER); the trust anchor's ASK is used for VCEKs when absent.
    pub ask: Option<Vec<u8>>,
    /// The ARK (DER); must equal the trust anchor's when given.
    pub ark: Option<Vec<u8>>,
    /// AMD's CRL for the product line (DER), checked when given.
    pub crl: Option<Vec<u8>>,
}

/// A report whose signature and certificate chain verified.
#[derive(Debug, Clone)]
pub struct VerifiedSnpReport {
    /// The report.
    pub report: SnpReport,
    /// Whether it came wrapped in an Azure HCL report.
    pub from_hcl: bool,
    /// The product line.
    pub product: SnpProduct,
    /// The key kind that signed it.
    pub signing_key: SigningKey,
    /// CURRENT_TCB, decoded.
    pub current_tcb: TcbVersion,
    /// REPORTED_TCB, decoded (equals the VCEK's TCB).
    pub reported_tcb: TcbVersion,
    /// COMMITTED_TCB, decoded.
    pub committed_tcb: TcbVersion,
    /// LAUNCH_TCB, decoded.
    pub launch_tcb: TcbVersion,
    /// Whether the trust anchor was the simulator's.
    pub simulated: bool,
}

fn parse_cert(der: &[u8], which: ChainCert) -> Result<X509Certificate<'_>, SnpVerifyError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(SnpVerifyError::CertificateParse {
            which,
            reason: "trailing bytes after the certificate".into(),
        }),
        Err(e) => Err(SnpVerifyError::CertificateParse {
            which,
            reason: e.to_string(),
        }),
    }
}

fn common_name(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Checks that `issuer` signed `cert` with RSA-PSS SHA-384, AMD's only certificate
/// signature algorithm.
fn check_rsa_pss_signature(
    cert: &X509Certificate<'_>,
    which: ChainCert,
    issuer: &X509Certificate<'_>,
    issuer_which: ChainCert,
) -> Result<(), SnpVerifyError> {
    let algorithm = cert.signature_algorithm.algorithm.to_id_string();
    if algorithm != oid::RSASSA_PSS {
        return Err(SnpVerifyError::CertificateAlgorithm {
            which,
            detail: format!(
                "signature algorithm {algorithm}, expected RSASSA-PSS ({})",
                oid::RSASSA_PSS
            ),
        });
    }
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(SnpVerifyError::CertificateName {
            which,
            what: "issuer",
            actual: cert.issuer().to_string(),
            expected: issuer.subject().to_string(),
        });
    }
    let key = UnparsedPublicKey::new(
        &RSA_PSS_2048_8192_SHA384,
        issuer.public_key().subject_public_key.data.as_ref(),
    );
    key.verify(
        cert.tbs_certificate.as_ref(),
        cert.signature_value.data.as_ref(),
    )
    .map_err(|_| SnpVerifyError::CertificateSignature {
        which,
        issuer: issuer_which,
    })
}

fn extension<'a>(cert: &'a X509Certificate<'_>, oid: &str) -> Option<&'a [u8]> {
    cert.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == oid)
        .map(|e| e.value)
}

/// A DER INTEGER from 0 to 255 (AMD encodes SPLs ≥ 128 with a leading zero byte).
fn der_u8(value: &[u8]) -> Option<u8> {
    match value {
        [0x02, 1, v] if *v < 0x80 => Some(*v),
        [0x02, 2, 0, v] if *v >= 0x80 => Some(*v),
        _ => None,
    }
}

fn extension_spl(
    cert: &X509Certificate<'_>,
    oid: &str,
    field: &'static str,
) -> Result<u8, SnpVerifyError> {
    extension(cert, oid)
        .and_then(der_u8)
        .ok_or(SnpVerifyError::Extension {
            which: ChainCert::Vek,
            field,
        })
}

/// The product name extension: a DER IA5String.
fn extension_product_name(cert: &X509Certificate<'_>) -> Option<String> {
    match extension(cert, oid::AMD_PRODUCT_NAME)? {
        [0x16, len, name @ ..] if usize::from(*len) == name.len() && *len < 0x80 => {
            std::str::from_utf8(name).ok().map(str::to_owned)
        }
        _ => None,
    }
}

/// The product named by the leaf's issuer (`SEV-Milan`, `SEV-VLEK-Genoa`).
fn product_from_issuer(cert: &X509Certificate<'_>) -> Option<SnpProduct> {
    let cn = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?;
    let name = cn
        .strip_prefix("SEV-VLEK-")
        .or_else(|| cn.strip_prefix("SEV-"))?;
    SnpProduct::from_name(name)
}

/// Verifies `evidence` (a raw report or an Azure HCL report) with its endorsements against
/// `anchor` at Unix time `now`.
pub fn verify_report(
    evidence: &[u8],
    endorsements: &SnpEndorsements,
    anchor: &SnpTrustAnchor,
    now: i64,
) -> Result<VerifiedSnpReport, SnpVerifyError> {
    let (report, from_hcl) = SnpReport::from_bytes_or_hcl(evidence)?;
    let chain = verify_chain(&report, endorsements, anchor)?;
    chain.check_report(report, from_hcl, now)
}

/// A verifier that remembers verified certificate chains, so a report whose VCEK it has
/// seen costs one ECDSA verification and a few comparisons. The time checks are redone
/// for every report.
#[derive(Debug)]
pub struct SnpVerifier {
    anchor: SnpTrustAnchor,
    chains: crate::chain_cache::ChainCache<VerifiedChain>,
}

impl SnpVerifier {
    /// A verifier for `anchor`.
    pub fn new(anchor: SnpTrustAnchor) -> Self {
        SnpVerifier {
            anchor,
            chains: Default::default(),
        }
    }

    /// The trust anchor.
    pub fn anchor(&self) -> &SnpTrustAnchor {
        &self.anchor
    }

    /// As [`verify_report`], with the chain taken from the cache when it was verified before.
    pub fn verify(
        &self,
        evidence: &[u8],
        endorsements: &SnpEndorsements,
        now: i64,
    ) -> Result<VerifiedSnpReport, SnpVerifyError> {
        let (report, from_hcl) = SnpReport::from_bytes_or_hcl(evidence)?;
        let key = chain_cache_key(&report, endorsements)?;
        let chain = self
            .chains
            .get_or_verify(key, || verify_chain(&report, endorsements, &self.anchor))?;
        chain.check_report(report, from_hcl, now)
    }
}

/// What a chain verification depends on: the certificates and CRL, and the two report
/// fields that select the product line and the signer's kind.
fn chain_cache_key(
    report: &SnpReport,
    endorsements: &SnpEndorsements,
) -> Result<[u8; 32], SnpVerifyError> {
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for part in [
        &endorsements.vek,
        &endorsements.ask,
        &endorsements.ark,
        &endorsements.crl,
    ] {
        match part {
            Some(bytes) => {
                context.update(&(bytes.len() as u64 + 1).to_le_bytes());
                context.update(bytes);
            }
            None => context.update(&0u64.to_le_bytes()),
        }
    }
    let signer = match report.signing_key()? {
        SigningKey::Vcek => 0,
        SigningKey::Vlek => 1,
    };
    let product = report.product_from_cpuid().map_or(0, |p| p as u8 + 1);
    context.update(&[signer, product]);
    let mut key = [0; 32];
    key.copy_from_slice(context.finish().as_ref());
    Ok(key)
}

/// The facts a verified chain establishes, independent of the time and the report's body.
#[derive(Debug, Clone)]
struct VerifiedChain {
    product: SnpProduct,
    signing_key: SigningKey,
    /// The VEK's public key, an uncompressed P-384 point.
    vek_point: Vec<u8>,
    /// The TCB in the VEK's extensions.
    vek_tcb: TcbVersion,
    /// The VCEK's hardware ID (none for a VLEK).
    hw_id: Option<Vec<u8>>,
    /// Each certificate's validity period.
    validity: [(ChainCert, i64, i64); 3],
    /// The CRL's thisUpdate and nextUpdate, when a CRL was checked.
    crl_window: Option<(i64, Option<i64>)>,
    simulated: bool,
}

impl VerifiedChain {
    fn check_report(
        &self,
        report: SnpReport,
        from_hcl: bool,
        now: i64,
    ) -> Result<VerifiedSnpReport, SnpVerifyError> {
        for (which, not_before, not_after) in self.validity {
            if now < not_before || now > not_after {
                return Err(SnpVerifyError::CertificateValidity {
                    which,
                    not_before,
                    not_after,
                    now,
                });
            }
        }
        if let Some((this_update, next_update)) = self.crl_window {
            if this_update > now {
                return Err(SnpVerifyError::Crl(
                    "issued after the verification time".into(),
                ));
            }
            if next_update.is_some_and(|next| next < now) {
                return Err(SnpVerifyError::Crl(
                    "out of date (past its next update): fetch a current CRL".into(),
                ));
            }
        }
        let product = self.product;
        let signing_key = self.signing_key;

        // The VEK must be for this report's TCB (and, for a VCEK, this chip).
        let reported_tcb = TcbVersion::from_bytes(report.reported_tcb_raw(), product);
        if self.vek_tcb != reported_tcb {
            return Err(SnpVerifyError::ExtensionMismatch {
                which: ChainCert::Vek,
                field: "TCB",
                cert: self.vek_tcb.to_string(),
                report_field: "REPORTED_TCB",
                report: reported_tcb.to_string(),
            });
        }
        if let Some(hw_id) = &self.hw_id {
            let chip_id = report.chip_id();
            let expected = &chip_id[..product.hw_id_len()];
            if hw_id.as_slice() != expected {
                return Err(SnpVerifyError::ExtensionMismatch {
                    which: ChainCert::Vek,
                    field: "hwID",
                    cert: hex::encode(hw_id),
                    report_field: "CHIP_ID",
                    report: hex::encode(expected),
                });
            }
        }

        // Finally the report signature, over the bytes as received.
        let signature = report
            .signature_fixed()
            .ok_or(SnpVerifyError::ReportSignature(signing_key))?;
        UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, &self.vek_point)
            .verify(report.signed_bytes(), &signature)
            .map_err(|_| SnpVerifyError::ReportSignature(signing_key))?;

        Ok(VerifiedSnpReport {
            current_tcb: TcbVersion::from_bytes(report.current_tcb_raw(), product),
            committed_tcb: TcbVersion::from_bytes(report.committed_tcb_raw(), product),
            launch_tcb: TcbVersion::from_bytes(report.launch_tcb_raw(), product),
            reported_tcb,
            report,
            from_hcl,
            product,
            signing_key,
            simulated: self.simulated,
        })
    }
}

/// Verifies the chain that should have signed `report`: names, signatures, CRL, and the
/// VEK's extensions read out for the per-report checks.
fn verify_chain(
    report: &SnpReport,
    endorsements: &SnpEndorsements,
    anchor: &SnpTrustAnchor,
) -> Result<VerifiedChain, SnpVerifyError> {
    let signing_key = report.signing_key()?;

    let vek_der = endorsements
        .vek
        .as_deref()
        .ok_or(SnpVerifyError::MissingVek(signing_key))?;
    let vek = parse_cert(vek_der, ChainCert::Vek)?;

    // Product line: the report's CPUID (v3+), the VEK's product name, its issuer's name.
    let cert_product = extension_product_name(&vek)
        .as_deref()
        .and_then(SnpProduct::from_name)
        .or_else(|| product_from_issuer(&vek));
    let product = match (report.product_from_cpuid(), cert_product) {
        (Some(from_report), Some(from_cert)) if from_report != from_cert => {
            return Err(SnpVerifyError::ProductMismatch {
                report: from_report,
                which: ChainCert::Vek,
                cert: from_cert.to_string(),
            });
        }
        (Some(product), _) | (None, Some(product)) => product,
        (None, None) => {
            return Err(SnpVerifyError::UnknownProduct {
                version: report.version(),
            });
        }
    };

    let roots = anchor
        .for_product(product)
        .ok_or(SnpVerifyError::NoTrustedArk(product))?;
    let ark = parse_cert(&roots.ark_der, ChainCert::Ark)?;
    if let Some(given_ark) = &endorsements.ark {
        let given = parse_cert(given_ark, ChainCert::Ark)?;
        if given.public_key().raw != ark.public_key().raw {
            return Err(SnpVerifyError::ArkNotTrusted(product));
        }
    }
    let ask_der = match (&endorsements.ask, signing_key) {
        (Some(ask), _) => ask.as_slice(),
        (None, SigningKey::Vcek) => roots
            .ask_der
            .as_deref()
            .ok_or(SnpVerifyError::NoTrustedArk(product))?,
        (None, SigningKey::Vlek) => return Err(SnpVerifyError::MissingAsvk),
    };
    let ask = parse_cert(ask_der, ChainCert::Ask)?;

    // Names: which key kind each certificate is for.
    let (expected_ask_cn, expected_vek_cn) = match signing_key {
        SigningKey::Vcek => (format!("SEV-{product}"), "SEV-VCEK"),
        SigningKey::Vlek => (format!("SEV-VLEK-{product}"), "SEV-VLEK"),
    };
    for (cert, which, expected) in [
        (&ark, ChainCert::Ark, format!("ARK-{product}")),
        (&ask, ChainCert::Ask, expected_ask_cn),
        (&vek, ChainCert::Vek, expected_vek_cn.to_owned()),
    ] {
        let actual = common_name(cert);
        if actual != expected {
            return Err(SnpVerifyError::CertificateName {
                which,
                what: "subject common name",
                actual,
                expected,
            });
        }
    }

    // Signatures: ARK self-signed, ARK → ASK, ASK → VEK.
    check_rsa_pss_signature(&ark, ChainCert::Ark, &ark, ChainCert::Ark)?;
    check_rsa_pss_signature(&ask, ChainCert::Ask, &ark, ChainCert::Ark)?;
    check_rsa_pss_signature(&vek, ChainCert::Vek, &ask, ChainCert::Ask)?;
    let validity = [
        (ChainCert::Ark, &ark),
        (ChainCert::Ask, &ask),
        (ChainCert::Vek, &vek),
    ]
    .map(|(which, cert)| {
        (
            which,
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        )
    });

    let crl_window = match &endorsements.crl {
        Some(crl) => Some(check_crl(
            crl,
            &ark,
            &[(&ask, ChainCert::Ask), (&vek, ChainCert::Vek)],
        )?),
        None => None,
    };

    let vek_tcb = TcbVersion {
        fmc: match product {
            SnpProduct::Turin => Some(extension_spl(&vek, oid::AMD_FMC_SPL, "fmcSPL")?),
            _ => None,
        },
        bootloader: extension_spl(&vek, oid::AMD_BL_SPL, "blSPL")?,
        tee: extension_spl(&vek, oid::AMD_TEE_SPL, "teeSPL")?,
        snp: extension_spl(&vek, oid::AMD_SNP_SPL, "snpSPL")?,
        microcode: extension_spl(&vek, oid::AMD_UCODE_SPL, "ucodeSPL")?,
    };
    let hw_id = match signing_key {
        SigningKey::Vcek => Some(
            extension(&vek, oid::AMD_HW_ID)
                .ok_or(SnpVerifyError::Extension {
                    which: ChainCert::Vek,
                    field: "hwID",
                })?
                .to_vec(),
        ),
        SigningKey::Vlek => None,
    };
    if vek.public_key().algorithm.algorithm.to_id_string() != oid::EC_PUBLIC_KEY {
        return Err(SnpVerifyError::CertificateAlgorithm {
            which: ChainCert::Vek,
            detail: "the key is not an EC key".into(),
        });
    }
    Ok(VerifiedChain {
        product,
        signing_key,
        vek_point: vek.public_key().subject_public_key.data.to_vec(),
        vek_tcb,
        hw_id,
        validity,
        crl_window,
        simulated: anchor.is_simulated(),
    })
}

/// Checks AMD's CRL: signed by the ARK, current, and revoking none of `certs`.
fn check_crl(
    crl_der: &[u8],
    ark: &X509Certificate<'_>,
    certs: &[(&X509Certificate<'_>, ChainCert)],
) -> Result<(i64, Option<i64>), SnpVerifyError> {
    let crl = match CertificateRevocationList::from_der(crl_der) {
        Ok(([], crl)) => crl,
        Ok(_) => return Err(SnpVerifyError::Crl("trailing bytes after the CRL".into())),
        Err(e) => return Err(SnpVerifyError::Crl(format!("does not parse: {e}"))),
    };
    if crl.issuer().as_raw() != ark.subject().as_raw() {
        return Err(SnpVerifyError::Crl(format!(
            "issued by {}, not by the ARK {}",
            crl.issuer(),
            ark.subject()
        )));
    }
    if crl.signature_algorithm.algorithm.to_id_string() != oid::RSASSA_PSS {
        return Err(SnpVerifyError::Crl("not signed with RSASSA-PSS".into()));
    }
    UnparsedPublicKey::new(
        &RSA_PSS_2048_8192_SHA384,
        ark.public_key().subject_public_key.data.as_ref(),
    )
    .verify(
        crl.tbs_cert_list.as_ref(),
        crl.signature_value.data.as_ref(),
    )
    .map_err(|_| SnpVerifyError::Crl("its signature does not verify with the ARK key".into()))?;
    for (cert, which) in certs {
        if crl
            .iter_revoked_certificates()
            .any(|revoked| revoked.raw_serial() == cert.raw_serial())
        {
            return Err(SnpVerifyError::Revoked {
                which: *which,
                serial: hex::encode(cert.raw_serial()),
            });
        }
    }
    Ok((
        crl.last_update().timestamp(),
        crl.next_update().map(|t| t.timestamp()),
    ))
}
