//! The initializer in the guest gets its mesh certificate from a Coordinator on the host
//! (Sim-SNP). Its evidence travels through the real kernel's configfs-tsm: the test-only
//! provider puts the VM's host data (the workload's policy hash, given to QEMU with
//! `-fw_cfg` as the hypervisor would set HOST_DATA at launch) into an SNP report body; only
//! the signature is simulated, in userspace.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use common::{InitializerRun, assert_mesh_certificate, initializer_boot};
use contrast_qemu_tests::image;

fn file_from_console<'a>(console: &'a str, name: &str) -> &'a str {
    let begin = format!("CONTRAST-FILE-BEGIN {name}\n");
    let end = format!("CONTRAST-FILE-END {name}");
    let start = console.find(&begin).expect(name) + begin.len();
    let stop = start + console[start..].find(&end).expect(name);
    &console[start..stop]
}

#[test]
fn the_initializer_in_the_guest_gets_a_mesh_certificate_from_the_host_coordinator() {
    let image = image().unwrap();
    let InitializerRun {
        console,
        coordinator_log: log,
        host_side,
    } = initializer_boot(&image);
    if let Err(e) = console.expect_pass() {
        panic!("{e}\n----- coordinator log -----\n{log}");
    }
    let (_, host_side) = host_side.unwrap();

    // The guest's mesh CA is the Coordinator's, and its certificate is signed by it.
    let guest_ca = file_from_console(&console.text, "mesh-ca.pem");
    assert_mesh_certificate(
        guest_ca,
        file_from_console(&console.text, "certChain.pem"),
        "web",
    );
    assert_eq!(
        guest_ca.as_bytes(),
        host_side.mesh_ca_cert.as_slice(),
        "the guest got another mesh CA than the Coordinator's"
    );
    let uptime: f64 = console
        .step_value("initializer-done")
        .unwrap()
        .parse()
        .unwrap();
    eprintln!(
        "guest uptime at initializer done: {uptime:.2} s (boot wall time {:?})",
        console.elapsed
    );
}
