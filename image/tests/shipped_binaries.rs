//! The binaries that ship (the measured image's, the Coordinator's and the
//! port-forwarder's), built as they ship, hold no simulator and no fake-TSM-provider code,
//! and refuse simulated platforms with a message that says why.
//!
//! `cargo xtask test` builds them before the tests (the same command, so the build here is
//! a no-op there); run alone, this test builds them itself, into `<target>/release`.

use std::path::{Path, PathBuf};
use std::process::Command;

use contrast_image::GUEST_BINARIES;

mod common;
use common::{cargo, shipped, target_dir};

/// Byte strings only simulator or fake-provider code puts into a binary: the simulator
/// crate's symbol and source path prefixes, the fake TSM provider's issuance, and the
/// shim's simulated launch (HOST_DATA for the fake provider through fw_cfg).
const MARKERS: [&str; 5] = [
    "contrast_simulator",
    "crates/simulator/src",
    "issue_from_fake_test_provider",
    "not the test-only fake provider",
    "opt/contrast-host-data",
];

fn markers_in(binary: &Path) -> Vec<&'static str> {
    let bytes = std::fs::read(binary).unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    MARKERS
        .into_iter()
        .filter(|marker| {
            bytes
                .windows(marker.len())
                .any(|window| window == marker.as_bytes())
        })
        .collect()
}

#[test]
fn shipped_binaries_hold_no_simulator_code() {
    let release = shipped();
    for name in GUEST_BINARIES.into_iter().chain([
        "coordinator",
        "port-forwarder",
        "runtime-installer",
        "containerd-shim-contrast-cc-v2",
    ]) {
        let found = markers_in(&release.join(name));
        assert!(
            found.is_empty(),
            "{name} (release build, default features) holds simulator code: {found:?}"
        );
    }
}

/// The markers do find simulator code: a build with the `simulated` feature (the tests'
/// own binaries, built by `cargo build --workspace --bins` as the test command does) holds
/// it.
#[test]
fn the_markers_find_the_simulator_in_a_simulated_build() {
    let target = target_dir();
    let status = Command::new(cargo())
        .args(["build", "--workspace", "--bins", "--locked", "--quiet"])
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("running cargo build");
    assert!(
        status.success(),
        "building the workspace's binaries: {status}"
    );
    for name in ["coordinator", "initializer", "initdata-check"] {
        let found = markers_in(&target.join("debug").join(name));
        assert!(
            found.contains(&"contrast_simulator"),
            "{name} of the simulated build: markers found {found:?}"
        );
    }
    let shim = markers_in(&target.join("debug/containerd-shim-contrast-cc-v2"));
    assert!(
        shim.contains(&"opt/contrast-host-data"),
        "the shim of the simulated build: markers found {shim:?}"
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("shipped-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

#[test]
fn the_shipped_coordinator_refuses_a_simulated_platform() {
    let dir = scratch("coordinator");
    for platform in ["sim-snp", "Sim-TDX"] {
        let out = Command::new(shipped().join("coordinator"))
            .args(["--platform", platform, "--simulator-dir"])
            .arg(dir.join("simulator"))
            .arg("--store-dir")
            .arg(dir.join("store"))
            .output()
            .expect("running the coordinator");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{platform}: {stderr}");
        assert!(
            stderr.contains("built without the simulator"),
            "{platform}: {stderr}"
        );
    }
    assert!(
        !dir.join("simulator").exists(),
        "no simulator keys are made"
    );
    std::fs::remove_dir_all(&dir).expect("cleaning up");
}

#[test]
fn the_shipped_guest_binaries_refuse_a_simulator() {
    let dir = scratch("guest");
    let out = Command::new(shipped().join("initializer"))
        .args(["--coordinator-host", "127.0.0.1:1", "--simulator-dir"])
        .arg(dir.join("simulator"))
        .arg("--secrets-dir")
        .arg(dir.join("secrets"))
        .output()
        .expect("running the initializer");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "initializer: {stderr}");
    assert!(
        stderr.contains("this build has no simulator"),
        "initializer: {stderr}"
    );

    // The initdata check refuses by installing the deny-all policy with the reason.
    let policy = dir.join("policy.rego");
    let initdata = dir.join("initdata.toml");
    std::fs::write(&initdata, "version = \"0.1.0\"\nalgorithm = \"sha256\"\n").expect("write");
    let out = Command::new(shipped().join("initdata-check"))
        .arg("--initdata")
        .arg(&initdata)
        .arg("--policy-out")
        .arg(&policy)
        .arg("--initdata-out")
        .arg(dir.join("initdata-out.toml"))
        .arg("--simulator-dir")
        .arg(dir.join("simulator"))
        .output()
        .expect("running the initdata check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "initdata-check: {stderr}");
    let installed = std::fs::read_to_string(&policy).expect("a deny-all policy is installed");
    assert!(
        installed.contains("this build has no simulator"),
        "{installed}"
    );
    assert!(!dir.join("initdata-out.toml").exists());
    assert!(
        !dir.join("simulator").exists(),
        "no simulator keys are made"
    );
    std::fs::remove_dir_all(&dir).expect("cleaning up");
}
