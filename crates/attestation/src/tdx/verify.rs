//! Verification of a TDX quote: the quote signature by the attestation key, the key's
//! binding through the QE report data, the QE report signature by the PCK, the quoting
//! enclave's identity (pinned: Intel's TDX QE), the PCK chain to the pinned root, and,
//! given collateral, the TCB status (through dcap-qvl, which also checks the QE identity
//! against Intel's signed QE identity).
//!
//! Signatures and chain are our own code (aws-lc-rs), so a quote can be checked without
//! collateral; the TCB evaluation against Intel's signed TCB info and QE identity is
//! dcap-qvl's (MIT; handles quote v5), which re-checks the chain with the same root.

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::quote::{INTEL_QE_VENDOR_ID, QeIdentity, QuoteError, TdxQuote};

/// The identity a quoting enclave must have: what Intel's QE identity collateral
/// (`TD_QE`) states, pinned in code so that it holds without collateral too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinnedQeIdentity {
    /// MRSIGNER: the hash of Intel's enclave signing key.
    pub mr_signer: [u8; 32],
    /// ISVPRODID of the TDX QE.
    pub isv_prod_id: u16,
    /// MISCSELECT under `misc_select_mask`.
    pub misc_select: u32,
    /// Which MISCSELECT bits are compared.
    pub misc_select_mask: u32,
    /// ATTRIBUTES under `attributes_mask`.
    pub attributes: [u8; 16],
    /// Which ATTRIBUTES bits are compared (DEBUG among them).
    pub attributes_mask: [u8; 16],
}

/// Intel's TDX quoting enclave, as Intel's PCS publishes its identity (`id: TD_QE`,
/// QE identity version 2; the same in every real quote of the test vectors).
pub const INTEL_TDX_QE: PinnedQeIdentity = PinnedQeIdentity {
    mr_signer: [
        0xdc, 0x9e, 0x2a, 0x7c, 0x6f, 0x94, 0x8f, 0x17, 0x47, 0x4e, 0x34, 0xa7, 0xfc, 0x43, 0xed,
        0x03, 0x0f, 0x7c, 0x15, 0x63, 0xf1, 0xba, 0xbd, 0xdf, 0x63, 0x40, 0xc8, 0x2e, 0x0e, 0x54,
        0xa8, 0xc5,
    ],
    isv_prod_id: 2,
    misc_select: 0,
    misc_select_mask: 0xffff_ffff,
    attributes: [0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    attributes_mask: [
        0xfb, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0,
    ],
};

impl PinnedQeIdentity {
    /// Checks `qe` against this identity; the error names the first field that differs.
    pub fn check(&self, qe: &QeIdentity) -> Result<(), TdxVerifyError> {
        let refuse = |field: &'static str, expected: String, actual: String| {
            Err(TdxVerifyError::QeIdentity {
                field,
                expected,
                actual,
            })
        };
        if qe.mr_signer != self.mr_signer {
            return refuse(
                "MRSIGNER",
                hex::encode(self.mr_signer),
                hex::encode(qe.mr_signer),
            );
        }
        if qe.isv_prod_id != self.isv_prod_id {
            return refuse(
                "ISVPRODID",
                self.isv_prod_id.to_string(),
                qe.isv_prod_id.to_string(),
            );
        }
        if qe.is_debug() {
            return refuse("ATTRIBUTES.DEBUG", "clear".into(), "set".into());
        }
        let masked: Vec<u8> = qe
            .attributes
            .iter()
            .zip(&self.attributes_mask)
            .map(|(a, m)| a & m)
            .collect();
        if masked != self.attributes {
            return refuse(
                "ATTRIBUTES",
                format!(
                    "{} under mask {}",
                    hex::encode(self.attributes),
                    hex::encode(self.attributes_mask)
                ),
                hex::encode(qe.attributes),
            );
        }
        if qe.misc_select & self.misc_select_mask != self.misc_select {
            return refuse(
                "MISCSELECT",
                format!(
                    "{:08x} under mask {:08x}",
                    self.misc_select, self.misc_select_mask
                ),
                format!("{:08x}", qe.misc_select),
            );
        }
        Ok(())
    }
}

/// Which certificate of the PCK chain an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PckCert {
    /// Intel SGX Root CA.
    Root,
    /// Intel SGX PCK Platform CA or Processor CA.
    Intermediate,
    /// The PCK certificate of the platform.
    Leaf,
}

impl std::fmt::Display for PckCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PckCert::Root => "root CA",
            PckCert::Intermediate => "PCK CA",
            PckCert::Leaf => "PCK",
        })
    }
}

/// Why a TDX quote was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TdxVerifyError {
    /// The quote is malformed.
    #[error(transparent)]
    Quote(#[from] QuoteError),
    /// Not Intel's quoting enclave.
    #[error("the quote's QE vendor ID is {0}, not Intel's")]
    QeVendor(String),
    /// The quote signature does not verify with the attestation key.
    #[error("the quote signature does not verify with its attestation key: the quote was changed")]
    QuoteSignature,
    /// The attestation key is not the one the QE vouched for.
    #[error(
        "the attestation key is not bound to the QE report (SHA-256 of key and auth data differs from the QE report data)"
    )]
    AttestationKeyBinding,
    /// The QE report signature does not verify with the PCK.
    #[error("the QE report signature does not verify with the PCK key")]
    QeReportSignature,
    /// The PCK signed the report of an enclave that is not Intel's TDX QE: a host can have
    /// any enclave with the provisioning key certified, and it would sign any TD report.
    #[error(
        "the quote was not made by Intel's TDX quoting enclave: the QE report's {field} is {actual}, expected {expected}"
    )]
    QeIdentity {
        /// The QE report field that differs.
        field: &'static str,
        /// What Intel's TDX QE has.
        expected: String,
        /// What the QE report says.
        actual: String,
    },
    /// The PCK chain is not leaf, intermediate, root.
    #[error("the PCK certificate chain has {0} certificates; expected 3 (PCK, PCK CA, root CA)")]
    ChainLength(usize),
    /// A certificate does not parse.
    #[error("the {which} certificate does not parse: {reason}")]
    CertificateParse {
        /// Which certificate.
        which: PckCert,
        /// The parser's words.
        reason: String,
    },
    /// The chain's root is not the trusted root.
    #[error(
        "the PCK chain's root is not the trusted root: its public key differs from the pinned key"
    )]
    UntrustedRoot,
    /// A certificate's signature does not verify, or its issuer is not its parent.
    #[error("the {which} certificate is not signed by the {issuer} certificate")]
    CertificateSignature {
        /// The certificate.
        which: PckCert,
        /// Its supposed issuer.
        issuer: PckCert,
    },
    /// A certificate outside its validity period.
    #[error(
        "the {which} certificate is valid from {not_before} to {not_after} (Unix time), not at {now}"
    )]
    CertificateValidity {
        /// Which certificate.
        which: PckCert,
        /// Start of validity.
        not_before: i64,
        /// End of validity.
        not_after: i64,
        /// The verification time.
        now: i64,
    },
    /// The collateral file is malformed.
    #[error("the collateral is not usable: {0}")]
    Collateral(String),
    /// The DCAP TCB evaluation refused the quote (including TCB status Revoked).
    #[error("TCB evaluation with the collateral failed: {0}")]
    TcbEvaluation(String),
    /// The TCB status is one the caller does not accept.
    #[error(
        "the platform's TCB status is {status}: its firmware or microcode has known vulnerabilities (advisories: {advisories}); update the host, or accept this status explicitly"
    )]
    TcbStatus {
        /// The status.
        status: String,
        /// Intel security advisories that apply.
        advisories: String,
    },
}

/// The root a verifier trusts for PCK chains and collateral.
#[derive(Debug, Clone)]
pub struct TdxTrustAnchor {
    root_der: Vec<u8>,
    simulated: bool,
}

impl TdxTrustAnchor {
    /// Intel's SGX Root CA (valid to 2049), compiled in.
    pub fn intel() -> Self {
        TdxTrustAnchor {
            root_der: include_bytes!("roots/intel-sgx-root-ca.der").to_vec(),
            simulated: false,
        }
    }

    /// A simulator's root CA (DER).
    pub fn simulated(root_der: Vec<u8>) -> Self {
        TdxTrustAnchor {
            root_der,
            simulated: true,
        }
    }

    /// Whether this is the simulator's root.
    pub fn is_simulated(&self) -> bool {
        self.simulated
    }
}

/// DCAP collateral: TCB info, QE identity, their issuer chains and signatures, CRLs.
#[derive(Debug, Clone)]
pub struct TdxCollateral(dcap_qvl::QuoteCollateralV3);

impl TdxCollateral {
    /// Reads the JSON form (as PCCS clients and dcap-qvl's samples write it): certificate
    /// chains and JSON bodies as strings, CRLs and signatures as hex.
    pub fn from_json(bytes: &[u8]) -> Result<Self, TdxVerifyError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| TdxVerifyError::Collateral(format!("not JSON: {e}")))?;
        let text = |key: &str| -> Result<String, TdxVerifyError> {
            value
                .get(key)
                .and_then(|v| v.as_str())
                .map(str::to_owned)
                .ok_or_else(|| TdxVerifyError::Collateral(format!("missing string field {key:?}")))
        };
        let bytes = |key: &str| -> Result<Vec<u8>, TdxVerifyError> {
            hex::decode(text(key)?)
                .map_err(|e| TdxVerifyError::Collateral(format!("field {key:?} is not hex: {e}")))
        };
        Ok(TdxCollateral(dcap_qvl::QuoteCollateralV3 {
            pck_crl_issuer_chain: text("pck_crl_issuer_chain")?,
            root_ca_crl: bytes("root_ca_crl")?,
            pck_crl: bytes("pck_crl")?,
            tcb_info_issuer_chain: text("tcb_info_issuer_chain")?,
            tcb_info: text("tcb_info")?,
            tcb_info_signature: bytes("tcb_info_signature")?,
            qe_identity_issuer_chain: text("qe_identity_issuer_chain")?,
            qe_identity: text("qe_identity")?,
            qe_identity_signature: bytes("qe_identity_signature")?,
            pck_certificate_chain: None,
        }))
    }
}

/// The TCB evaluation of a quote against collateral.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcbEvaluation {
    /// Intel's status name: `UpToDate`, `SWHardeningNeeded`, `ConfigurationNeeded`,
    /// `OutOfDate`, … (`Revoked` is always an error).
    pub status: String,
    /// Intel security advisories that apply to this platform.
    pub advisory_ids: Vec<String>,
}

impl TcbEvaluation {
    /// Whether the status is one a verifier refuses by default.
    pub fn is_refused_by_default(&self) -> bool {
        self.status.starts_with("OutOfDate") || self.status == "Revoked"
    }
}

/// A quote whose signatures and PCK chain verified.
#[derive(Debug, Clone)]
pub struct VerifiedTdxQuote {
    /// The quote.
    pub quote: TdxQuote,
    /// The PCK certificate (DER), for platform claims such as the PIID.
    pub pck_der: Vec<u8>,
    /// The TCB evaluation, when collateral was given.
    pub tcb: Option<TcbEvaluation>,
    /// Whether the trust anchor was the simulator's.
    pub simulated: bool,
}

fn parse_cert(der: &[u8], which: PckCert) -> Result<X509Certificate<'_>, TdxVerifyError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(TdxVerifyError::CertificateParse {
            which,
            reason: "trailing bytes after the certificate".into(),
        }),
        Err(e) => Err(TdxVerifyError::CertificateParse {
            which,
            reason: e.to_string(),
        }),
    }
}

fn check_signed_by(
    cert: &X509Certificate<'_>,
    which: PckCert,
    issuer: &X509Certificate<'_>,
    issuer_which: PckCert,
) -> Result<(), TdxVerifyError> {
    let error = TdxVerifyError::CertificateSignature {
        which,
        issuer: issuer_which,
    };
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return Err(error);
    }
    UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_ASN1,
        issuer.public_key().subject_public_key.data.as_ref(),
    )
    .verify(
        cert.tbs_certificate.as_ref(),
        cert.signature_value.data.as_ref(),
    )
    .map_err(|_| error)
}

fn p256_point(raw_xy: &[u8; 64]) -> [u8; 65] {
    let mut point = [0x04; 65];
    point[1..].copy_from_slice(raw_xy);
    point
}

/// Verifies a quote against `anchor` at Unix time `now`; with `collateral`, also evaluates
/// the platform's TCB status. Refusing an out-of-date TCB is the caller's decision
/// ([`TcbEvaluation::is_refused_by_default`]); a revoked one is always refused.
pub fn verify_quote(
    bytes: &[u8],
    anchor: &TdxTrustAnchor,
    collateral: Option<&TdxCollateral>,
    now: i64,
) -> Result<VerifiedTdxQuote, TdxVerifyError> {
    let quote = TdxQuote::parse(bytes)?;
    let chain = verify_pck_chain(&quote.pck_chain_pem, anchor)?;
    finish(bytes, quote, &chain, anchor, collateral, now)
}

/// A verifier that remembers verified PCK chains (one per platform), so a quote from a
/// known platform costs the two ECDSA P-256 verifications of the quote and QE report. The
/// validity periods are checked for every quote.
#[derive(Debug)]
pub struct TdxVerifier {
    anchor: TdxTrustAnchor,
    chains: crate::chain_cache::ChainCache<VerifiedPckChain>,
}

impl TdxVerifier {
    /// A verifier for `anchor`.
    pub fn new(anchor: TdxTrustAnchor) -> Self {
        TdxVerifier {
            anchor,
            chains: Default::default(),
        }
    }

    /// The trust anchor.
    pub fn anchor(&self) -> &TdxTrustAnchor {
        &self.anchor
    }

    /// As [`verify_quote`], with the PCK chain taken from the cache when seen before.
    pub fn verify(
        &self,
        bytes: &[u8],
        collateral: Option<&TdxCollateral>,
        now: i64,
    ) -> Result<VerifiedTdxQuote, TdxVerifyError> {
        let quote = TdxQuote::parse(bytes)?;
        let mut key = [0; 32];
        key.copy_from_slice(digest(&SHA256, &quote.pck_chain_pem).as_ref());
        let chain = self
            .chains
            .get_or_verify(key, || verify_pck_chain(&quote.pck_chain_pem, &self.anchor))?;
        finish(bytes, quote, &chain, &self.anchor, collateral, now)
    }
}

/// What a verified PCK chain establishes, independent of time and quote.
#[derive(Debug, Clone)]
struct VerifiedPckChain {
    pck_der: Vec<u8>,
    /// The PCK's public key, an uncompressed P-256 point.
    pck_point: Vec<u8>,
    validity: [(PckCert, i64, i64); 3],
}

fn verify_pck_chain(
    chain_pem: &[u8],
    anchor: &TdxTrustAnchor,
) -> Result<VerifiedPckChain, TdxVerifyError> {
    let pem_text = String::from_utf8_lossy(chain_pem);
    let chain = crate::pem::decode_all(&pem_text, "CERTIFICATE").map_err(|e| {
        TdxVerifyError::CertificateParse {
            which: PckCert::Leaf,
            reason: e.to_string(),
        }
    })?;
    let [leaf_der, intermediate_der, root_der] = chain.as_slice() else {
        return Err(TdxVerifyError::ChainLength(chain.len()));
    };
    let leaf = parse_cert(leaf_der, PckCert::Leaf)?;
    let intermediate = parse_cert(intermediate_der, PckCert::Intermediate)?;
    let root = parse_cert(root_der, PckCert::Root)?;
    let trusted_root = parse_cert(&anchor.root_der, PckCert::Root)?;
    if root.public_key().raw != trusted_root.public_key().raw {
        return Err(TdxVerifyError::UntrustedRoot);
    }
    // Check with the pinned certificate, not the copy in the quote.
    check_signed_by(&trusted_root, PckCert::Root, &trusted_root, PckCert::Root)?;
    check_signed_by(
        &intermediate,
        PckCert::Intermediate,
        &trusted_root,
        PckCert::Root,
    )?;
    check_signed_by(&leaf, PckCert::Leaf, &intermediate, PckCert::Intermediate)?;
    let validity = [
        (PckCert::Root, &trusted_root),
        (PckCert::Intermediate, &intermediate),
        (PckCert::Leaf, &leaf),
    ]
    .map(|(which, cert)| {
        (
            which,
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        )
    });
    Ok(VerifiedPckChain {
        pck_der: leaf_der.clone(),
        pck_point: leaf.public_key().subject_public_key.data.to_vec(),
        validity,
    })
}

/// The per-quote checks: times, quote signature, key binding, QE report signature, TCB.
fn finish(
    bytes: &[u8],
    quote: TdxQuote,
    chain: &VerifiedPckChain,
    anchor: &TdxTrustAnchor,
    collateral: Option<&TdxCollateral>,
    now: i64,
) -> Result<VerifiedTdxQuote, TdxVerifyError> {
    if quote.qe_vendor_id != INTEL_QE_VENDOR_ID {
        return Err(TdxVerifyError::QeVendor(hex::encode(quote.qe_vendor_id)));
    }
    for (which, not_before, not_after) in chain.validity {
        if now < not_before || now > not_after {
            return Err(TdxVerifyError::CertificateValidity {
                which,
                not_before,
                not_after,
                now,
            });
        }
    }

    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, p256_point(&quote.attestation_key))
        .verify(quote.signed_bytes(), &quote.signature)
        .map_err(|_| TdxVerifyError::QuoteSignature)?;

    let mut bound = quote.attestation_key.to_vec();
    bound.extend_from_slice(&quote.qe_auth_data);
    let qe_report_data = quote.qe_report_data();
    if digest(&SHA256, &bound).as_ref() != &qe_report_data[..32]
        || qe_report_data[32..].iter().any(|b| *b != 0)
    {
        return Err(TdxVerifyError::AttestationKeyBinding);
    }

    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &chain.pck_point)
        .verify(&quote.qe_report, &quote.qe_report_signature)
        .map_err(|_| TdxVerifyError::QeReportSignature)?;
    // The PCK signs the report of any enclave that holds the provisioning key; only
    // Intel's QE is trusted to put a genuine TD report into a quote.
    INTEL_TDX_QE.check(&quote.qe_identity())?;

    let tcb = match collateral {
        None => None,
        Some(collateral) => Some(evaluate_tcb(bytes, &anchor.root_der, collateral, now)?),
    };

    Ok(VerifiedTdxQuote {
        pck_der: chain.pck_der.clone(),
        quote,
        tcb,
        simulated: anchor.is_simulated(),
    })
}

fn evaluate_tcb(
    bytes: &[u8],
    root_der: &[u8],
    collateral: &TdxCollateral,
    now: i64,
) -> Result<TcbEvaluation, TdxVerifyError> {
    let now =
        u64::try_from(now).map_err(|_| TdxVerifyError::TcbEvaluation("time before 1970".into()))?;
    // Debug TDs are our reference-value check's business, which explains them.
    let verifier =
        dcap_qvl::verify::QuoteVerifier::<dcap_qvl::configs::RustCryptoConfig>::new_with_config(
            root_der.to_vec(),
        )
        .allow_debug(true);
    let report = verifier
        .verify(bytes, &collateral.0, now)
        .map_err(|e| TdxVerifyError::TcbEvaluation(format!("{e:#}")))?;
    Ok(TcbEvaluation {
        status: report.status,
        advisory_ids: report.advisory_ids,
    })
}
