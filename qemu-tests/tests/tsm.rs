//! configfs-tsm on the real kernel: without a provider our issuers say "not running in a
//! confidential VM" (ENXIO); with the test-only provider module (built here with kbuild)
//! the client handles generation changes, a concurrent writer and cleanup, and the
//! `snp-tsm` issuer's evidence (body through the kernel, signature simulated) verifies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use contrast_qemu_tests::{
    GUEST_SIMULATOR_SETUP, PASS_MARKER, Vm, fake_tsm_module, image, profile_dir,
};

const HOST_DATA: &str = "5ca1ab1e000000000000000000000000000000000000000000000000c0ffee00";

#[test]
fn without_a_provider_the_issuers_say_not_in_a_confidential_vm() {
    let image = image().unwrap();
    let console = Vm::new(&image, "tsm-no-provider")
        .file(
            "qemu-guest-probe",
            profile_dir().unwrap().join("qemu-guest-probe"),
        )
        .script("./qemu-guest-probe tsm-no-provider\n")
        .boot()
        .unwrap();
    console.expect_pass().unwrap();
    assert!(
        console.contains("not running in a confidential VM"),
        "{}",
        console.text
    );
}

#[test]
fn with_the_fake_provider_the_client_handles_the_real_abi_and_the_evidence_verifies() {
    let image = image().unwrap();
    let script = format!(
        "{GUEST_SIMULATOR_SETUP}\
         insmod ./fake_tsm.ko host_data={HOST_DATA} measurement={zeros} || \
             {{ echo \"CONTRAST-TEST-FAIL $1: fake_tsm.ko did not load\"; exit 1; }}\n\
         ./qemu-guest-probe tsm-abi --host-data {HOST_DATA} && \
         ./qemu-guest-probe snp-tsm-issue --simulator-dir /run/sim --host-data {HOST_DATA} && \
         echo \"CONTRAST-TEST-PASS $1\"\n",
        zeros = "0".repeat(96),
    );
    let console = Vm::new(&image, "tsm-fake-provider")
        .file(
            "qemu-guest-probe",
            profile_dir().unwrap().join("qemu-guest-probe"),
        )
        .file("fake_tsm.ko", fake_tsm_module().unwrap())
        .simulator(&contrast_testkit::shared_simulator_dir())
        .unwrap()
        .script(&script)
        .boot()
        .unwrap();
    console.expect_pass().unwrap();
    let passed: Vec<&str> = console.marked(PASS_MARKER).collect();
    for step in ["tsm-abi", "snp-tsm-issue"] {
        assert!(
            passed.contains(&step),
            "{step} did not pass:\n{}",
            console.text
        );
    }
}
