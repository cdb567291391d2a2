//! Coordinator peers sharing one history: automatic peer recovery after a restart and
//! after a manifest update elsewhere, and `contrast recover` refused while a ready peer
//! exists unless forced.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{CONTRAST, contrast};
use contrast_testkit::{CoordinatorProcess, Deployment, TempDir, http_get, random_loopback};

fn start(
    deployment: &Deployment,
    store: &Path,
    ip: std::net::IpAddr,
    peer: std::net::IpAddr,
    extra: &[&str],
) -> CoordinatorProcess {
    let binary = contrast_testkit::coordinator_binary(CONTRAST);
    let mut args = vec!["--peer".to_string(), format!("{peer}:7777")];
    args.extend(extra.iter().map(|s| (*s).to_string()));
    let mut process = CoordinatorProcess::start(&binary, deployment, store, ip, &args);
    process.wait_probe("/probe/startup", 200, Duration::from_secs(60));
    process
}

/// Waits until the readiness probe reports `generation`.
fn wait_generation(process: &CoordinatorProcess, generation: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let want = format!("ready, generation {generation}");
    loop {
        if let Some((200, body)) = http_get(&process.probe_addr(), "/probe/readiness")
            && body.contains(&want)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {want:?} within 30 s; log:\n{}",
            process.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn mesh_ca_key(pem: &[u8]) -> Vec<u8> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let der = contrast_attestation::pem::decode_all(&String::from_utf8_lossy(pem), "CERTIFICATE")
        .unwrap()
        .remove(0);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    cert.public_key().raw.to_vec()
}

#[test]
fn peers_recover_each_other_and_follow_updates() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("shared-store");
    let (ip_a, ip_b) = (random_loopback(), random_loopback());
    let a = start(&deployment, store.path(), ip_a, ip_b, &[]);
    let mut b = start(&deployment, store.path(), ip_b, ip_a, &[]);
    assert!(
        contrast(&deployment, &["set", "-c", &a.user_addr(), "resources"])
            .status
            .success()
    );
    wait_generation(&a, 1);

    // B finds the history, attests A and takes over seed and mesh CA key.
    wait_generation(&b, 1);
    assert!(
        contrast(&deployment, &["verify", "-c", &b.user_addr()])
            .status
            .success()
    );
    let mesh_a = std::fs::read(deployment.path("mesh-ca.pem")).unwrap();
    let mesh_b = std::fs::read(deployment.path("verify/mesh-ca.pem")).unwrap();
    assert_eq!(
        mesh_ca_key(&mesh_a),
        mesh_ca_key(&mesh_b),
        "peer recovery keeps the mesh key"
    );

    // A restarted B recovers on its own.
    b.kill();
    let b = start(&deployment, store.path(), ip_b, ip_a, &[]);
    wait_generation(&b, 1);

    // An update through A makes B stale; B recovers the new state from A.
    assert!(
        contrast(&deployment, &["set", "-c", &a.user_addr(), "resources"])
            .status
            .success()
    );
    wait_generation(&a, 2);
    wait_generation(&b, 2);
    assert!(
        contrast(&deployment, &["verify", "-c", &b.user_addr()])
            .status
            .success()
    );
    assert!(b.log_text().contains("stale"), "{}", b.log_text());
}

#[test]
fn user_recovery_is_refused_while_a_ready_peer_exists_unless_forced() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("shared-store");
    let (ip_a, ip_c) = (random_loopback(), random_loopback());
    let a = start(&deployment, store.path(), ip_a, ip_c, &[]);
    assert!(
        contrast(&deployment, &["set", "-c", &a.user_addr(), "resources"])
            .status
            .success()
    );
    wait_generation(&a, 1);

    // C runs a workload policy, so A never hands it the secrets: it stays in recovery.
    let web = hex::encode(deployment.policy_hash("web"));
    let c = {
        let binary = contrast_testkit::coordinator_binary(CONTRAST);
        let args = vec![
            "--peer".to_string(),
            format!("{ip_a}:7777"),
            "--simulated-host-data".to_string(),
            web.clone(),
        ];
        let mut process =
            CoordinatorProcess::start(&binary, &deployment, store.path(), ip_c, &args);
        process.wait_probe("/probe/startup", 200, Duration::from_secs(60));
        process
    };
    let mut c = c;
    c.wait_probe("/probe/readiness", 503, Duration::from_secs(5));
    let args = [
        "recover",
        "-c",
        &c.user_addr(),
        "--coordinator-policy-hash",
        &web,
    ];
    let refused = contrast(&deployment, &args);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("ready Coordinator peer exists"), "{stderr}");

    let mut forced = args.to_vec();
    forced.push("--force");
    assert!(contrast(&deployment, &forced).status.success());
    c.wait_probe("/probe/readiness", 200, Duration::from_secs(10));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Whoever controls a replica's store can put back an older, validly signed latest pointer
/// (here: the store as it was at generation 1; the same manifest was set again since, so
/// the manifest bytes the peer sends match). A replica recovering from a peer must not come
/// up at the older generation: the peer names its latest transition, and the replica's
/// history must contain it.
#[test]
fn peer_recovery_from_a_replayed_older_pointer_refused() {
    let deployment = Deployment::new(&["web"]);
    let store_a = TempDir::new("store-a");
    let store_b = TempDir::new("store-b-replayed");
    let (ip_a, ip_b) = (random_loopback(), random_loopback());
    let a = start(&deployment, store_a.path(), ip_a, ip_b, &[]);
    assert!(
        contrast(&deployment, &["set", "-c", &a.user_addr(), "resources"])
            .status
            .success()
    );
    wait_generation(&a, 1);
    copy_dir(store_a.path(), store_b.path());
    assert!(
        contrast(&deployment, &["set", "-c", &a.user_addr(), "resources"])
            .status
            .success()
    );
    wait_generation(&a, 2);

    let b = start(&deployment, store_b.path(), ip_b, ip_a, &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !b.log_text().contains("rolled back") {
        assert!(
            Instant::now() < deadline,
            "no refusal within 30 s; log:\n{}",
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        http_get(&b.probe_addr(), "/probe/readiness").map(|(status, _)| status),
        Some(503),
        "{}",
        b.log_text()
    );
    assert!(b.log_text().contains("generation 2"), "{}", b.log_text());
}
