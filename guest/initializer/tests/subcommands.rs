//! Contrast's Initializer subcommands: `report` writes this pod's attestation document
//! (base64), which verifies against the simulator's root with all-zero report data and
//! the launch's HOST_DATA; `cryptsetup` names the workload secret file it needs and what
//! failed. Its working path (real dm-crypt) runs in the QEMU guest
//! (`qemu-tests/tests/luks.rs`).

#![allow(clippy::unwrap_used)]

use std::process::Command;

use base64::Engine as _;
use contrast_testkit::{Deployment, TempDir};

const INITIALIZER: &str = env!("CARGO_BIN_EXE_initializer");

#[test]
fn report_writes_the_pods_evidence_as_base64() {
    let deployment = Deployment::new(&["web"]);
    let host_data = deployment.policy_hash("web");
    // No COORDINATOR_HOST: a subcommand does not need one.
    let output = Command::new(INITIALIZER)
        .arg("report")
        .env_remove("COORDINATOR_HOST")
        .env("CONTRAST_SIMULATOR_DIR", &deployment.simulator_dir)
        .env("CONTRAST_SIMULATED_HOST_DATA", hex::encode(host_data))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        !output.stdout.ends_with(b"\n"),
        "no line break, as Contrast's"
    );
    let document = base64::engine::general_purpose::STANDARD
        .decode(&output.stdout)
        .unwrap();
    let verified = contrast_testkit::verify_snp_document(&deployment.amd, &document);
    assert_eq!(verified.report.report_data(), [0; 64]);
    assert_eq!(verified.report.host_data(), host_data);
}

#[test]
fn cryptsetup_names_the_secret_it_needs_and_what_failed() {
    let dir = TempDir::new("initializer-cryptsetup");
    let device = dir.path().join("csi0.img");
    std::fs::write(&device, vec![0u8; 1 << 20]).unwrap();
    let run = || {
        Command::new(INITIALIZER)
            .args(["cryptsetup", "-d"])
            .arg(&device)
            .arg("-m")
            .arg(dir.path().join("state"))
            .env_remove("COORDINATOR_HOST")
            .env("CONTRAST_SECRETS_DIR", dir.path().join("contrast"))
            .output()
            .unwrap()
    };
    // Before the Initializer ran: no secret.
    let output = run();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("contrast/secrets/workload-secret-seed"),
        "{stderr}"
    );
    // With the secret, on a file that is no block device: the volume step fails, saying so.
    let secrets = dir.path().join("contrast/secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("workload-secret-seed"), "ab".repeat(64)).unwrap();
    let output = run();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("setting up the encrypted volume on"),
        "{stderr}"
    );
}

#[test]
fn the_initializer_itself_still_needs_its_coordinator() {
    let output = Command::new(INITIALIZER)
        .env_remove("COORDINATOR_HOST")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--coordinator-host"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
