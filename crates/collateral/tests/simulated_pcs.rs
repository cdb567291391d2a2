//! The simulated Intel's PCS (`contrast_simulator::pcs`) against the real PCS client and
//! verifier: a simulated quote's TCB status is evaluated with the same code as a real one.

#![allow(clippy::unwrap_used)]

use contrast_atls::unix_now as now;
use contrast_attestation::tdx::verify_quote;
use contrast_collateral::{Pcs, RetryPolicy};
use contrast_simulator::pcs::SimulatedPcs;
use contrast_simulator::{Simulator, TdxQuoteSpec};
use contrast_testkit::TempDir;
use contrast_testkit::serve::Background;

#[tokio::test]
async fn a_simulated_quote_gets_its_tcb_status_from_the_simulated_pcs() {
    let dir = TempDir::new("sim-pcs");
    let simulator = Simulator::open(dir.path()).unwrap();
    let quote = simulator.intel.quote(&TdxQuoteSpec::default()).unwrap();
    let anchor = simulator.intel.trust_anchor();
    // The PCS of another process that opened the same directory.
    let intel = Simulator::open(dir.path()).unwrap().intel;
    let server = Background::serve(SimulatedPcs::new(intel.collateral(now()).unwrap()).router());

    let pcs = Pcs::new(
        server.url(),
        RetryPolicy {
            attempts: 1,
            ..Default::default()
        },
        None,
    )
    .unwrap();
    let collateral = pcs
        .tdx_collateral(&quote, &anchor, now())
        .await
        .unwrap_or_else(|e| panic!("{}", contrast_platforms::error_chain(&e)));
    let verified = verify_quote(&quote, &anchor, Some(&collateral), now()).unwrap();
    let tcb = verified.tcb.unwrap();
    assert_eq!(tcb.status, "UpToDate");
    assert!(verified.simulated);
}

/// The verifiers' seam: a source naming the simulated PCS hands the collateral over (and
/// keeps it: the PCS gone, memory answers); one without a PCS says it has none.
#[test]
fn the_source_serves_the_simulated_collateral_and_one_without_a_pcs_serves_none() {
    let dir = TempDir::new("sim-pcs");
    let simulator = Simulator::open(dir.path()).unwrap();
    let quote = simulator.intel.quote(&TdxQuoteSpec::default()).unwrap();
    let anchor = simulator.intel.trust_anchor();
    let mut server =
        Background::serve(SimulatedPcs::new(simulator.intel.collateral(now()).unwrap()).router());
    let source = |pcs_url: Option<String>| {
        contrast_collateral::Collateral::new(contrast_collateral::CollateralSettings {
            pcs_url,
            ..Default::default()
        })
        .unwrap()
    };
    let with_pcs = source(Some(server.url().to_owned()));
    let collateral = with_pcs.tdx(&quote, &anchor, now()).unwrap().unwrap();
    let verified = verify_quote(&quote, &anchor, Some(&collateral), now()).unwrap();
    assert_eq!(verified.tcb.unwrap().status, "UpToDate");
    server.stop();
    assert!(with_pcs.tdx(&quote, &anchor, now() + 60).unwrap().is_some());

    assert!(source(None).tdx(&quote, &anchor, now()).unwrap().is_none());
}
