//! Flags spelled and refused as Contrast's CLI spells and refuses them.

#![allow(clippy::unwrap_used)]

use std::process::Command;

const CONTRAST: &str = env!("CARGO_BIN_EXE_contrast");

fn contrast(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(CONTRAST)
        .args(args)
        .current_dir(dir)
        .env_remove("CONTRAST_LOG_LEVEL")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_invalid_log_level_is_an_error_naming_the_levels() {
    let dir = contrast_testkit::TempDir::new("flags");
    let (ok, stderr) = contrast(
        dir.path(),
        &["--log-level", "chatty", "runtime", "--platform", "Sim-SNP"],
    );
    assert!(!ok);
    assert!(stderr.contains("chatty"), "{stderr}");
    assert!(stderr.contains("debug"), "{stderr}");
    let (ok, stderr) = contrast(
        dir.path(),
        &["--log-level", "DEBUG", "runtime", "--platform", "Sim-SNP"],
    );
    assert!(ok, "{stderr}");
}

#[test]
fn add_workload_owner_key_and_disable_updates_exclude_each_other() {
    let dir = contrast_testkit::TempDir::new("flags");
    let (ok, stderr) = contrast(
        dir.path(),
        &[
            "generate",
            "-w",
            "other.pem",
            "--disable-updates",
            "resources",
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}

#[test]
fn recover_accepts_and_ignores_a_workload_owner_key() {
    let dir = contrast_testkit::TempDir::new("flags");
    let (ok, stderr) = contrast(
        dir.path(),
        &[
            "recover",
            "--workload-owner-key",
            "workload-owner.pem",
            "-c",
            "127.0.0.1:1",
        ],
    );
    // It fails for want of a manifest, not because of the flag.
    assert!(!ok);
    assert!(!stderr.contains("unexpected argument"), "{stderr}");
    assert!(stderr.contains("manifest"), "{stderr}");
}
