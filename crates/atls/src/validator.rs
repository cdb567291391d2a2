//! The other side's attestation: validators that verify an attestation document and check
//! it against a manifest's reference values.

use std::fmt::Debug;
use std::sync::Arc;

use contrast_attestation::claims::{Claim, snp_claims, tdx_claims};
use contrast_attestation::collateral::CollateralSource;
use contrast_attestation::snp::{
    SnpExpectations, SnpTrustAnchor, SnpVerifier, check_snp_reference_values,
};
use contrast_attestation::tdx::{
    TdxExpectations, TdxTrustAnchor, TdxVerifier, check_tdx_reference_values,
};
use contrast_attestation::{document, oid};
use contrast_manifest::{Manifest, SnpReferenceValues, TdxReferenceValues};

use crate::AtlsError;

/// What a validator established about a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAttestation {
    /// Which validator accepted, e.g. `snp[0]` or `tdx[1]`.
    pub validator: String,
    /// SNP HOST_DATA or TDX MRCONFIGID[0..32]: the hash of the peer's policy.
    pub host_data: [u8; 32],
    /// The certificate claims of the verified evidence (docs/attestation.md §4).
    pub claims: Vec<Claim>,
    /// Whether the evidence came from the simulator.
    pub simulated: bool,
}

/// Why a validator refused an attestation document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What is wrong and what to do.
    pub reason: String,
    /// The evidence verified, but its host data (SNP HOST_DATA, TDX MRCONFIGID[0..32]: the
    /// hash of the peer's policy) is none of the accepted policy hashes: the peer runs
    /// another policy than the manifest names.
    pub policy_mismatch: bool,
}

impl From<String> for Rejection {
    fn from(reason: String) -> Self {
        Rejection {
            reason,
            policy_mismatch: false,
        }
    }
}

impl From<&str> for Rejection {
    fn from(reason: &str) -> Self {
        Rejection::from(reason.to_owned())
    }
}

/// Checks one attestation document bound to `report_data`.
pub trait Validator: Send + Sync + Debug {
    /// Whether this validator reads documents under `oid`.
    fn accepts_oid(&self, oid: &str) -> bool;
    /// Verifies `document` (found under `oid`) and checks it against what is expected.
    fn validate(
        &self,
        oid: &str,
        document: &[u8],
        report_data: &[u8; 64],
    ) -> Result<PeerAttestation, Rejection>;
}

/// The validators of one side of a handshake; empty means "do not attest the peer".
#[derive(Debug, Clone, Default)]
pub struct ValidatorSet(Vec<Arc<dyn Validator>>);

impl ValidatorSet {
    /// A set of `validators`.
    pub fn new(validators: Vec<Arc<dyn Validator>>) -> Self {
        ValidatorSet(validators)
    }

    /// No validators: the peer is not attested.
    pub fn none() -> Self {
        ValidatorSet(Vec::new())
    }

    /// Whether the peer is left unattested.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Tries every validator on every attestation extension; the first success wins.
    pub fn validate(
        &self,
        documents: &[(String, Vec<u8>)],
        report_data: &[u8; 64],
        nonce: &[u8],
    ) -> Result<PeerAttestation, AtlsError> {
        if documents.is_empty() {
            return Err(AtlsError::NoAttestation);
        }
        let mut reasons = Vec::new();
        let mut policy_mismatch = false;
        let mut matched = false;
        for (id, doc) in documents {
            for validator in self.0.iter().filter(|v| v.accepts_oid(id)) {
                matched = true;
                match validator.validate(id, doc, report_data) {
                    Ok(peer) => return Ok(peer),
                    Err(rejection) => {
                        policy_mismatch |= rejection.policy_mismatch;
                        reasons.push(rejection.reason);
                    }
                }
            }
        }
        if !matched {
            return Err(AtlsError::NoMatchingValidator {
                oids: documents.iter().map(|(id, _)| id.clone()).collect(),
            });
        }
        Err(AtlsError::Refused {
            nonce_hex: hex::encode(nonce),
            reasons,
            policy_mismatch,
        })
    }
}

/// The evidence verifiers, shared so their certificate-chain caches live as long as the
/// process: the real vendors' roots always, the simulator's only when configured; and
/// where the collateral the evidence does not carry comes from.
///
/// An SEV-SNP report is accepted only with a current CRL of AMD's (carried, or from the
/// collateral source), unless [`Verifiers::accept_snp_without_crl`] says otherwise. A TDX
/// quote's TCB status is evaluated whenever the collateral source serves TDX collateral,
/// and a quote whose collateral cannot be had is then refused; without one (a guest that
/// cannot reach Intel, a simulated platform whose PCS is not named) the status is not
/// evaluated.
#[derive(Debug, Clone)]
pub struct Verifiers {
    snp: Arc<SnpVerifier>,
    tdx: Arc<TdxVerifier>,
    simulated_snp: Option<Arc<SnpVerifier>>,
    simulated_tdx: Option<Arc<TdxVerifier>>,
    collateral: Option<Arc<dyn CollateralSource>>,
    simulated_collateral: Option<Arc<dyn CollateralSource>>,
    require_snp_crl: bool,
}

impl Verifiers {
    /// AMD's and Intel's roots only.
    pub fn real() -> Self {
        Verifiers {
            snp: Arc::new(SnpVerifier::new(SnpTrustAnchor::amd())),
            tdx: Arc::new(TdxVerifier::new(TdxTrustAnchor::intel())),
            simulated_snp: None,
            simulated_tdx: None,
            collateral: None,
            simulated_collateral: None,
            require_snp_crl: true,
        }
    }

    /// Complete the vendors' evidence from `source` (AMD's KDS, Intel's PCS).
    pub fn with_collateral(mut self, source: Arc<dyn CollateralSource>) -> Self {
        self.collateral = Some(source);
        self
    }

    /// Complete the simulator's evidence from `source` (the simulated vendor's KDS and
    /// PCS).
    pub fn with_simulated_collateral(mut self, source: Arc<dyn CollateralSource>) -> Self {
        self.simulated_collateral = Some(source);
        self
    }

    /// Accept an SEV-SNP report whose revocation cannot be checked (no CRL carried or
    /// fetched): for a KDS mirror that serves none. Off by default.
    pub fn accept_snp_without_crl(mut self, accept: bool) -> Self {
        self.require_snp_crl = !accept;
        self
    }

    /// Also accept evidence under the simulated OIDs, checked against these roots. The
    /// reference-value check still refuses simulated evidence for a real platform's entry.
    pub fn with_simulated(mut self, snp: SnpTrustAnchor, tdx: TdxTrustAnchor) -> Self {
        self.simulated_snp = Some(Arc::new(SnpVerifier::new(snp)));
        self.simulated_tdx = Some(Arc::new(TdxVerifier::new(tdx)));
        self
    }
}

/// Verifies evidence and checks it against a manifest's reference values, and its host
/// data against a set of policy hashes.
#[derive(Debug, Clone)]
pub struct ReferenceValidator {
    verifiers: Verifiers,
    snp: Vec<SnpReferenceValues>,
    tdx: Vec<TdxReferenceValues>,
    host_data: Option<Vec<[u8; 32]>>,
    allow_debug: bool,
    label: String,
}

impl ReferenceValidator {
    /// Evidence must match one of `snp`/`tdx` and carry one of `host_data` (all host data
    /// when `None`).
    pub fn new(
        verifiers: Verifiers,
        snp: Vec<SnpReferenceValues>,
        tdx: Vec<TdxReferenceValues>,
        host_data: Option<Vec<[u8; 32]>>,
    ) -> Self {
        ReferenceValidator {
            verifiers,
            snp,
            tdx,
            host_data,
            allow_debug: false,
            label: String::new(),
        }
    }

    /// Accepts the Coordinator of `manifest`, as every client that attests it does
    /// (`contrast set`/`verify`/`recover`, the Initializer): evidence that matches one of
    /// the manifest's reference values and carries one of its policy hashes with role
    /// `coordinator`. `None` when the manifest names no Coordinator policy.
    pub fn for_coordinator(verifiers: Verifiers, manifest: &Manifest) -> Option<Self> {
        let policy_hashes: Vec<[u8; 32]> = manifest
            .coordinator_policy_hashes()
            .filter_map(|h| h.to_bytes()?.try_into().ok())
            .collect();
        if policy_hashes.is_empty() {
            return None;
        }
        Some(ReferenceValidator::new(
            verifiers,
            manifest.reference_values.snp.clone(),
            manifest.reference_values.tdx.clone(),
            Some(policy_hashes),
        ))
    }

    /// Put `label` before the accepting entry's name in [`PeerAttestation::validator`]
    /// (the Coordinator names the manifest generation a handshake was checked against).
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    /// Accept guests launched with debugging allowed (testing only).
    pub fn allow_debug(mut self, allow: bool) -> Self {
        self.allow_debug = allow;
        self
    }

    /// Whether `host_data` is none of the accepted policy hashes (never when all are
    /// accepted).
    fn refuses_host_data(&self, host_data: &[u8; 32]) -> bool {
        self.host_data
            .as_ref()
            .is_some_and(|accepted| !accepted.contains(host_data))
    }

    fn validate_snp(
        &self,
        verifier: &SnpVerifier,
        collateral: Option<&Arc<dyn CollateralSource>>,
        doc: &[u8],
        report_data: &[u8; 64],
    ) -> Result<PeerAttestation, Rejection> {
        let (report, carried) =
            document::decode_snp(doc).map_err(|e| format!("SNP attestation document: {e}"))?;
        let now = crate::unix_now();
        let endorsements = match collateral {
            Some(source) => source
                .snp_endorsements(&report, carried, verifier.anchor(), now)
                .map_err(|e| {
                    format!(
                        "SNP collateral: {}",
                        contrast_platforms::error_chain(e.as_ref())
                    )
                })?,
            None => carried,
        };
        if endorsements.crl.is_none() && self.verifiers.require_snp_crl {
            return Err(Rejection::from(
                "SNP report: it comes without AMD's CRL and none could be fetched, so its \
                 revocation cannot be checked: give the verifier access to AMD's KDS (or a \
                 mirror), or have the host put the CRL into its certificate table",
            ));
        }
        let verified = verifier
            .verify(&report, &endorsements, now)
            .map_err(|e| format!("SNP report: {e}"))?;
        let expect = SnpExpectations {
            report_data: Some(*report_data),
            host_data: self.host_data.clone(),
            allow_debug: self.allow_debug,
            ..Default::default()
        };
        let index =
            check_snp_reference_values(&verified, &self.snp, &expect).map_err(|refusal| {
                Rejection {
                    reason: refusal.to_string(),
                    policy_mismatch: self.refuses_host_data(&verified.report.host_data()),
                }
            })?;
        Ok(PeerAttestation {
            validator: format!("{}snp[{index}]", self.label),
            host_data: verified.report.host_data(),
            claims: snp_claims(&verified),
            simulated: verified.simulated,
        })
    }

    fn validate_tdx(
        &self,
        verifier: &TdxVerifier,
        collateral: Option<&Arc<dyn CollateralSource>>,
        doc: &[u8],
        report_data: &[u8; 64],
    ) -> Result<PeerAttestation, Rejection> {
        let quote =
            document::decode_tdx(doc).map_err(|e| format!("TDX attestation document: {e}"))?;
        let now = crate::unix_now();
        let collateral = collateral
            .map(|source| source.tdx_collateral(&quote, verifier.anchor(), now))
            .transpose()
            .map(Option::flatten)
            .map_err(|e| {
                format!(
                    "TDX collateral (the TCB status cannot be evaluated without it): {}",
                    contrast_platforms::error_chain(e.as_ref())
                )
            })?;
        let verified = verifier
            .verify(&quote, collateral.as_ref(), now)
            .map_err(|e| format!("TDX quote: {e}"))?;
        let expect = TdxExpectations {
            report_data: Some(*report_data),
            host_data: self.host_data.clone(),
            allow_debug: self.allow_debug,
            allow_out_of_date: false,
        };
        let mut host_data = [0; 32];
        host_data.copy_from_slice(&verified.quote.td_report.mr_config_id[..32]);
        let index =
            check_tdx_reference_values(&verified, &self.tdx, &expect).map_err(|refusal| {
                Rejection {
                    reason: refusal.to_string(),
                    policy_mismatch: self.refuses_host_data(&host_data),
                }
            })?;
        Ok(PeerAttestation {
            validator: format!("{}tdx[{index}]", self.label),
            host_data,
            claims: tdx_claims(&verified),
            simulated: verified.simulated,
        })
    }
}

impl Validator for ReferenceValidator {
    fn accepts_oid(&self, id: &str) -> bool {
        match id {
            oid::ATLS_SNP | oid::ATLS_TDX => true,
            oid::ATLS_SIMULATED_SNP => self.verifiers.simulated_snp.is_some(),
            oid::ATLS_SIMULATED_TDX => self.verifiers.simulated_tdx.is_some(),
            _ => false,
        }
    }

    fn validate(
        &self,
        id: &str,
        doc: &[u8],
        report_data: &[u8; 64],
    ) -> Result<PeerAttestation, Rejection> {
        match id {
            oid::ATLS_SNP => self.validate_snp(
                &self.verifiers.snp,
                self.verifiers.collateral.as_ref(),
                doc,
                report_data,
            ),
            oid::ATLS_TDX => self.validate_tdx(
                &self.verifiers.tdx,
                self.verifiers.collateral.as_ref(),
                doc,
                report_data,
            ),
            oid::ATLS_SIMULATED_SNP => match &self.verifiers.simulated_snp {
                Some(v) => self.validate_snp(
                    v,
                    self.verifiers.simulated_collateral.as_ref(),
                    doc,
                    report_data,
                ),
                None => Err("simulated SNP evidence is accepted only on Sim-SNP".into()),
            },
            oid::ATLS_SIMULATED_TDX => match &self.verifiers.simulated_tdx {
                Some(v) => self.validate_tdx(
                    v,
                    self.verifiers.simulated_collateral.as_ref(),
                    doc,
                    report_data,
                ),
                None => Err("simulated TDX evidence is accepted only on Sim-TDX".into()),
            },
            other => Err(format!("no validator for OID {other}").into()),
        }
    }
}
