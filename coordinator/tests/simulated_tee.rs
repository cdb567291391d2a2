//! `--simulated-tee` (CONTRAST_SIMULATED_TEE): `snp-tsm` makes a Coordinator in a pod VM
//! under QEMU take its report from the guest kernel's test TSM provider (the quickstart
//! on containerd runs it so). It is refused where it would let a host choose what the
//! report says: on a hardware platform, and together with a simulated HOST_DATA.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

/// The Coordinator's exit status and stderr for `args` (it must fail before serving).
fn refused(args: &[&str]) -> String {
    let store = contrast_testkit::TempDir::new("simulated-tee");
    let output = Command::new(common::COORDINATOR)
        .arg("--store-dir")
        .arg(store.path())
        .args(["--listen", "127.0.0.1"])
        .args(args)
        .env_remove("CONTRAST_SIMULATED_TEE")
        .env_remove("CONTRAST_SIMULATED_HOST_DATA")
        .output()
        .unwrap();
    assert!(!output.status.success(), "{args:?} was accepted");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn snp_tsm_is_refused_on_a_hardware_platform() {
    let said = refused(&["--platform", "Metal-QEMU-SNP", "--simulated-tee", "snp-tsm"]);
    assert!(
        said.contains("snp-tsm") && said.contains("is not for Metal-QEMU-SNP"),
        "{said}"
    );
    // Nor another simulated platform's TEE.
    let said = refused(&["--platform", "Sim-SNP", "--simulated-tee", "tdx"]);
    assert!(said.contains("is not for Sim-SNP"), "{said}");
}

#[test]
fn snp_tsm_with_a_simulated_host_data_is_refused() {
    let sim = contrast_testkit::shared_simulator_dir();
    let said = refused(&[
        "--platform",
        "Sim-SNP",
        "--simulator-dir",
        sim.to_str().unwrap(),
        "--simulated-tee",
        "snp-tsm",
        "--simulated-host-data",
        &"ab".repeat(32),
    ]);
    assert!(
        said.contains("CONTRAST_SIMULATED_HOST_DATA") && said.contains("HOST_DATA is the VM's"),
        "{said}"
    );
}

#[test]
fn an_unknown_simulated_tee_is_refused_naming_the_choices() {
    let said = refused(&["--platform", "Sim-SNP", "--simulated-tee", "sgx"]);
    assert!(
        said.contains("\"sgx\"") && said.contains("snp-tsm"),
        "{said}"
    );
}
