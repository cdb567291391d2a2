//! Evidence as the aTLS certificate carries it: an attestation document under the OID
//! that says what it is.
//!
//! Here rather than in `contrast-atls` so that aTLS, which the CLI links to verify, does
//! not link the hardware issuers (and their FFI crate).

use std::fmt::Debug;
use std::sync::Arc;

use contrast_atls::{AtlsError, Issuer};
use contrast_attestation::document;
use contrast_attestation::oid;

use crate::issuer::{EvidenceIssuer, Tee};

/// An aTLS [`Issuer`] over the evidence's evidence seam: configfs-tsm, `/dev/sev-guest` or the
/// simulator. SNP evidence becomes a go-sev-guest `Attestation` with the host's
/// certificates, TDX evidence a go-tdx-guest `QuoteV4`; simulated evidence gets the
/// simulated OIDs so no real verifier ever takes it for hardware evidence.
#[derive(Clone)]
pub struct DocumentIssuer {
    evidence: Arc<dyn EvidenceIssuer>,
}

impl Debug for DocumentIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DocumentIssuer")
            .field("evidence", &self.evidence.name())
            .finish()
    }
}

impl DocumentIssuer {
    /// Wraps an evidence issuer.
    pub fn new(evidence: Arc<dyn EvidenceIssuer>) -> Self {
        DocumentIssuer { evidence }
    }
}

impl Issuer for DocumentIssuer {
    fn issue(&self, report_data: &[u8; 64]) -> Result<(&'static str, Vec<u8>), AtlsError> {
        let evidence = self.evidence.issue(report_data).map_err(|e| {
            AtlsError::Issue(format!(
                "{}: {}",
                self.evidence.name(),
                contrast_platforms::error_chain(&e)
            ))
        })?;
        let encoded = match evidence.tee {
            Tee::Snp => document::encode_snp(&evidence.raw, &evidence.snp_endorsements(), None),
            Tee::Tdx => document::encode_tdx(&evidence.raw),
        }
        .map_err(|e| AtlsError::Issue(e.to_string()))?;
        let id = match (evidence.tee, evidence.simulated) {
            (Tee::Snp, false) => oid::ATLS_SNP,
            (Tee::Tdx, false) => oid::ATLS_TDX,
            (Tee::Snp, true) => oid::ATLS_SIMULATED_SNP,
            (Tee::Tdx, true) => oid::ATLS_SIMULATED_TDX,
        };
        Ok((id, encoded))
    }
}
