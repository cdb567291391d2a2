//! The simulator's public roots on disk: what a verifier that does not link the simulator
//! (the CLI) reads to accept its evidence on the simulated platforms.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use contrast_attestation::simulated_anchors::{self, TDX_ROOT_FILE};
use contrast_attestation::snp::{SnpEndorsements, SnpProduct, verify_report};
use contrast_simulator::{Simulator, SnpReportSpec};

const NOW: i64 = 1_780_272_000; // 2026-06-01

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sim-anchors-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn anchors_read_from_the_directory_verify_the_simulators_evidence() {
    let dir = scratch("verify");
    let simulator = Simulator::open(&dir).unwrap();
    let (snp, tdx) = simulated_anchors::load(&dir).unwrap();
    assert!(tdx.is_simulated());

    let mut spec = SnpReportSpec::new(SnpProduct::Genoa);
    spec.report_data = [0x5a; 64];
    let r = simulator.amd.report(&spec).unwrap();
    let endorsements = SnpEndorsements {
        vek: Some(r.vcek_der.clone()),
        ask: Some(r.ask_der.clone()),
        ark: Some(r.ark_der.clone()),
        crl: None,
    };
    let verified = verify_report(&r.report, &endorsements, &snp, NOW).unwrap();
    assert!(verified.simulated);

    // A second opening (certificates issued anew for the same keys) keeps the files and
    // still verifies under them: roots are pinned by key.
    let again = Simulator::open(&dir).unwrap();
    let r = again.amd.report(&spec).unwrap();
    let endorsements = SnpEndorsements {
        vek: Some(r.vcek_der.clone()),
        ask: Some(r.ask_der.clone()),
        ark: Some(r.ark_der.clone()),
        crl: None,
    };
    verify_report(&r.report, &endorsements, &snp, NOW).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_directory_without_anchors_is_refused_naming_the_file() {
    let dir = scratch("missing");
    std::fs::create_dir_all(&dir).unwrap();
    let err = simulated_anchors::load(&dir).unwrap_err();
    assert!(err.path.starts_with(&dir), "{err}");
    assert!(err.to_string().contains("simulated Coordinator"), "{err}");

    // A directory the simulator opened before the anchors existed gets them at the next
    // opening.
    Simulator::open(&dir).unwrap();
    std::fs::remove_file(dir.join(TDX_ROOT_FILE)).unwrap();
    assert!(simulated_anchors::load(&dir).is_err());
    Simulator::open(&dir).unwrap();
    simulated_anchors::load(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
