//! The `luks-helper` binary: `check` on image files (format-or-open needs device-mapper
//! and runs in the QEMU tests).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::Command;

use contrast_luks::WorkloadSecret;
use support::{Image, Kind};

const HELPER: &str = env!("CARGO_BIN_EXE_luks-helper");

fn secret(seed: u8) -> WorkloadSecret {
    let mut bytes = [seed; 64];
    bytes[0] = 0x42;
    WorkloadSecret::from_bytes(bytes)
}

fn secret_file(img: &Image, name: &str, s: &WorkloadSecret) -> std::path::PathBuf {
    let path = img.dir.path().join(name);
    std::fs::write(&path, s.contrast_passphrase().as_bytes()).unwrap();
    path
}

fn run_check(img: &Image, secret_file: &std::path::Path) -> std::process::Output {
    Command::new(HELPER)
        .arg("check")
        .arg("--device")
        .arg(&img.path)
        .arg("--secret-file")
        .arg(secret_file)
        .arg("--header-dir")
        .arg(img.header_base())
        .env("CONTRAST_LOG_LEVEL", "warn")
        .output()
        .unwrap()
}

#[test]
fn check_accepts_the_right_secret_and_refuses_another() {
    let s = secret(1);
    let img = Image::empty(4 << 20);
    let passphrase = s.keyslot_passphrase(img.path.to_str().unwrap()).unwrap();
    support::synthesize(&img.path, Kind::Ours, passphrase.as_bytes());

    let right = secret_file(&img, "right", &s);
    let out = run_check(&img, &right);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("ok: "), "{stdout}");
    assert!(stdout.contains("contrast-luks"), "{stdout}");

    let wrong = secret_file(&img, "wrong", &secret(2));
    let out = run_check(&img, &wrong);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("does not open"), "{stderr}");
}

#[test]
fn check_refuses_a_malformed_secret_file() {
    let img = Image::empty(4 << 20);
    let path = img.dir.path().join("seed");
    std::fs::write(&path, "abc\n").unwrap();
    let out = run_check(&img, &path);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("128 lowercase hex characters"), "{stderr}");
}

#[test]
fn check_says_an_empty_device_is_not_formatted() {
    let s = secret(3);
    let img = Image::empty(4 << 20);
    let seed = secret_file(&img, "seed", &s);
    let out = run_check(&img, &seed);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("has no LUKS header"), "{stderr}");
}
