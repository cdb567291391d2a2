//! The `service-mesh` binary without redirect rules: configuration errors, readiness,
//! SIGTERM.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::MeshPki;

const BINARY: &str = env!("CARGO_BIN_EXE_service-mesh");

fn sidecar(tls_dir: &Path, ready: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command
        .args([
            "--no-redirect",
            "--ingress-port",
            "0",
            "--ingress-no-client-auth-port",
            "0",
        ])
        .arg("--tls-dir")
        .arg(tls_dir)
        .arg("--ready-file")
        .arg(ready)
        .env_remove("CONTRAST_INGRESS_PROXY_CONFIG")
        .env_remove("CONTRAST_EGRESS_PROXY_CONFIG")
        .env_remove("CONTRAST_ADMIN_PORT")
        .stdin(Stdio::null());
    command
}

#[test]
fn a_bad_entry_is_refused_by_name_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let output = sidecar(dir.path(), &ready)
        .env(
            "CONTRAST_EGRESS_PROXY_CONFIG",
            "ok#127.0.0.1:8081#svc:80##emoji#10.0.0.1:8081#emoji-svc:8080",
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "CONTRAST_EGRESS_PROXY_CONFIG: entry 2 \"emoji#10.0.0.1:8081#emoji-svc:8080\": the listen \
             address 10.0.0.1 is outside 127.0.0.0/8"
        ),
        "{stderr}"
    );
    assert!(!ready.exists());
}

#[test]
fn missing_credentials_are_refused_before_ready() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let output = sidecar(&dir.path().join("absent"), &ready)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("mesh-ca.pem"), "{stderr}");
    assert!(!ready.exists());
}

#[test]
fn writes_the_ready_file_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    MeshPki::new().workload("server").write_to(dir.path());
    let ready = dir.path().join("ready");
    let mut child = sidecar(dir.path(), &ready)
        .env("CONTRAST_INGRESS_PROXY_CONFIG", "web#8080#false")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.exists() {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!("no readiness file; status {:?}", child.wait().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(std::fs::read(&ready).unwrap(), b"");

    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not stop on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
