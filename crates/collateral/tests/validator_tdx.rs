//! The aTLS validators with a collateral source, on the simulated TDX platform: a quote's
//! TCB status is evaluated with collateral from the simulated PCS (accepted: UpToDate),
//! and a quote whose collateral cannot be had is refused, saying so.

#![allow(clippy::unwrap_used)]

use contrast_atls::unix_now as now;
use std::sync::Arc;

use contrast_atls::{Issuer, ReferenceValidator, Validator, Verifiers};
use contrast_attestation::tdx::{suggested_tdx_reference_values, verify_quote};
use contrast_collateral::{Collateral, CollateralSettings, RetryPolicy};
use contrast_evidence::DocumentIssuer;
use contrast_evidence::issuer::simulated_tdx;
use contrast_simulator::pcs::SimulatedPcs;
use contrast_simulator::{Simulator, TdxQuoteSpec};
use contrast_testkit::TempDir;
use contrast_testkit::serve::Background;

/// What the validator says about the document of a TD of the simulator in `dir`, with
/// collateral from `pcs_url`.
fn validate(dir: &TempDir, pcs_url: &str) -> Result<String, String> {
    let simulator = Simulator::open(dir.path()).unwrap();
    let intel = Arc::new(Simulator::open(dir.path()).unwrap().intel);
    let report_data = [9; 64];
    let issuer = DocumentIssuer::new(Arc::new(simulated_tdx(intel, TdxQuoteSpec::default())));
    let (oid, document) = issuer.issue(&report_data).unwrap();

    let quote = simulator.intel.quote(&TdxQuoteSpec::default()).unwrap();
    let verified = verify_quote(&quote, &simulator.intel.trust_anchor(), None, now()).unwrap();
    let mut reference = suggested_tdx_reference_values(&verified);
    reference.platform = "Sim-TDX".to_owned();

    let source = Collateral::new(CollateralSettings {
        pcs_url: Some(pcs_url.to_owned()),
        retry: RetryPolicy {
            attempts: 1,
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap();
    let verifiers = Verifiers::real()
        .with_simulated(simulator.amd.trust_anchor(), simulator.intel.trust_anchor())
        .with_simulated_collateral(Arc::new(source));
    ReferenceValidator::new(verifiers, Vec::new(), vec![reference], None)
        .validate(oid, &document, &report_data)
        .map(|peer| peer.validator)
        .map_err(|rejection| rejection.reason)
}

#[test]
fn a_simulated_td_is_accepted_with_its_tcb_status_from_the_simulated_pcs() {
    let dir = TempDir::new("sim-tdx");
    let simulator = Simulator::open(dir.path()).unwrap();
    let pcs =
        Background::serve(SimulatedPcs::new(simulator.intel.collateral(now()).unwrap()).router());
    assert_eq!(validate(&dir, pcs.url()).unwrap(), "tdx[0]");
}

#[test]
fn a_simulated_td_whose_collateral_cannot_be_had_is_refused_saying_so() {
    let dir = TempDir::new("sim-tdx");
    let simulator = Simulator::open(dir.path()).unwrap();
    let mut pcs =
        Background::serve(SimulatedPcs::new(simulator.intel.collateral(now()).unwrap()).router());
    let url = pcs.url().to_owned();
    pcs.stop();
    let reason = validate(&dir, &url).unwrap_err();
    assert!(
        reason.contains("TDX collateral (the TCB status cannot be evaluated without it)"),
        "{reason}"
    );
}
