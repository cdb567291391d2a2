//! The simulated vendor's KDS (`contrast_simulator::kds`) against the real KDS client: the
//! simulated platforms fetch with the same code as real ones. Its VCEKs are the ones the
//! simulator signs with in any process that opens the same directory.

#![allow(clippy::unwrap_used)]

use contrast_atls::unix_now as now;
use std::sync::Arc;

use contrast_attestation::snp::{SnpEndorsements, SnpProduct};
use contrast_collateral::{Collateral, CollateralError, CollateralSettings, Kds, RetryPolicy};
use contrast_simulator::kds::SimulatedKds;
use contrast_simulator::{Simulator, SnpReportSpec};
use contrast_testkit::TempDir;
use contrast_testkit::serve::Background;

fn retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 1,
        ..Default::default()
    }
}

/// A report signed in one process, its KDS served by another (a second load of the same
/// simulator directory), for each product line.
#[tokio::test]
async fn a_report_with_no_certificate_table_verifies_with_what_the_simulated_kds_serves() {
    let dir = TempDir::new("sim-kds");
    let signer = Simulator::open(dir.path()).unwrap();
    let kds = SimulatedKds::new(Arc::new(Simulator::open(dir.path()).unwrap().amd));
    let server = Background::serve(kds.router());
    for product in [SnpProduct::Milan, SnpProduct::Genoa, SnpProduct::Turin] {
        let report = signer
            .amd
            .report(&SnpReportSpec::new(product))
            .unwrap()
            .report;
        let got = Kds::new(server.url(), retry(), None)
            .unwrap()
            .snp_endorsements(&report, &signer.amd.trust_anchor(), now())
            .await
            .unwrap_or_else(|e| panic!("{product}: {}", contrast_platforms::error_chain(&e)));
        assert!(got.crl.is_some(), "{product}: the CRL is served");
    }
}

#[test]
fn a_vcek_the_simulated_kds_revokes_is_refused() {
    let dir = TempDir::new("sim-kds");
    let simulator = Simulator::open(dir.path()).unwrap();
    let signed = simulator
        .amd
        .report(&SnpReportSpec::new(SnpProduct::Milan))
        .unwrap();
    let anchor = simulator.amd.trust_anchor();
    let kds = SimulatedKds::new(Arc::new(simulator.amd));
    let server = Background::serve(kds.router());
    let source = Collateral::new(CollateralSettings {
        kds_url: server.url().to_owned(),
        retry: retry(),
        ..Default::default()
    })
    .unwrap();
    // The host carried the chain, not the CRL.
    let carried = SnpEndorsements {
        vek: Some(signed.vcek_der),
        ask: Some(signed.ask_der),
        ark: Some(signed.ark_der),
        crl: None,
    };
    let completed = source
        .complete_snp(&signed.report, carried.clone(), &anchor, now())
        .unwrap();
    assert!(completed.crl.is_some());

    kds.revoke(&[0]);
    let fresh = Collateral::new(CollateralSettings {
        kds_url: server.url().to_owned(),
        retry: retry(),
        ..Default::default()
    })
    .unwrap();
    let err = fresh
        .complete_snp(&signed.report, carried, &anchor, now())
        .unwrap_err();
    let text = contrast_platforms::error_chain(&err);
    assert!(matches!(err, CollateralError::Rejected { .. }), "{text}");
    assert!(text.contains("revoked"), "{text}");
}

/// Evidence from a peer not yet authenticated can name any chip: reports of ever new chips
/// make the source ask KDS only as often as its budget allows, then refuse at once, naming
/// the wait; what memory holds is still served without spending it.
#[test]
fn new_chips_past_the_fetch_budget_are_refused_at_once_and_memory_still_serves() {
    let dir = TempDir::new("sim-kds");
    let simulator = Simulator::open(dir.path()).unwrap();
    let anchor = simulator.amd.trust_anchor();
    let report_of = |chip: u8| {
        let mut spec = SnpReportSpec::new(SnpProduct::Milan);
        spec.chip_id = [chip; 64];
        simulator.amd.report(&spec).unwrap().report
    };
    let reports: Vec<Vec<u8>> = (1..=4).map(report_of).collect();
    let kds = SimulatedKds::new(Arc::new(Simulator::open(dir.path()).unwrap().amd));
    let server = Background::serve(kds.router());
    let source = Collateral::new(CollateralSettings {
        kds_url: server.url().to_owned(),
        retry: retry(),
        budget: contrast_collateral::FetchBudget {
            burst: 2,
            refill: std::time::Duration::from_secs(3600),
        },
        ..Default::default()
    })
    .unwrap();
    let complete =
        |report: &[u8]| source.complete_snp(report, SnpEndorsements::default(), &anchor, now());
    complete(&reports[0]).unwrap();
    complete(&reports[1]).unwrap();
    for report in &reports[2..] {
        let err = complete(report).unwrap_err();
        assert!(matches!(err, CollateralError::OverBudget { .. }), "{err:?}");
        assert!(err.to_string().contains("allowed again in"), "{err}");
    }
    // The first chips are remembered: no fetch, no budget.
    complete(&reports[0]).unwrap();
    complete(&reports[1]).unwrap();
}
