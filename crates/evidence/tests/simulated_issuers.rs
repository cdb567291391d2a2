//! The simulated issuers produce evidence that the real verifiers accept under the
//! simulator's roots, bound to the caller's report data.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::sync::Arc;

use contrast_attestation::snp::{SnpProduct, verify_report};
use contrast_attestation::tdx::verify_quote;
use contrast_evidence::issuer::{EvidenceIssuer, Tee, simulated_snp, simulated_tdx};
use contrast_simulator::{
    SimulatedAmd, SimulatedIntel, SimulatedPlatform, SnpReportSpec, TdxQuoteSpec,
};

const NOW: i64 = 1_780_272_000;

#[test]
fn simulated_snp_evidence_verifies_with_its_own_certificates() {
    let amd = Arc::new(SimulatedAmd::generate(&[SnpProduct::Genoa]).unwrap());
    let template = SnpReportSpec {
        host_data: [0x21; 32],
        ..SnpReportSpec::new(SnpProduct::Genoa)
    };
    let issuer = simulated_snp(Arc::clone(&amd), template);
    let evidence = issuer.issue(&[0x42; 64]).unwrap();
    assert_eq!(
        (evidence.tee, evidence.simulated, issuer.name()),
        (Tee::Snp, true, "simulated-snp")
    );
    let endorsements = evidence.snp_endorsements();
    assert!(
        endorsements.crl.is_some(),
        "the simulated host carries the CRL"
    );
    // The CRL is current from an hour before issuance.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let verified = verify_report(&evidence.raw, &endorsements, &amd.trust_anchor(), now).unwrap();
    assert_eq!(verified.report.report_data(), [0x42; 64]);
    assert_eq!(verified.report.host_data(), [0x21; 32]);
}

#[test]
fn simulated_tdx_evidence_verifies() {
    let intel = Arc::new(SimulatedIntel::generate(SimulatedPlatform::default()).unwrap());
    let issuer = simulated_tdx(
        Arc::clone(&intel),
        TdxQuoteSpec {
            version: 5,
            ..Default::default()
        },
    );
    let evidence = issuer.issue(&[0x17; 64]).unwrap();
    assert_eq!(evidence.tee, Tee::Tdx);
    let verified = verify_quote(&evidence.raw, &intel.trust_anchor(), None, NOW).unwrap();
    assert_eq!(verified.quote.td_report.report_data, [0x17; 64]);
}
