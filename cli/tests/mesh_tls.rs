//! What workloads and outside verifiers see: a workload certificate that OpenSSL accepts
//! under verify/mesh-ca.pem (and under the root via the intermediate) but not under another
//! deployment's CA, and the HTTP attestation API whose evidence binds nonce, history and CAs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use contrast_testkit::{CoordinatorProcess, Deployment, TempDir, new_mesh_cert, random_loopback};

const CONTRAST: &str = env!("CARGO_BIN_EXE_contrast");

fn set_up(deployment: &Deployment, store: &Path) -> CoordinatorProcess {
    let binary = contrast_testkit::coordinator_binary(CONTRAST);
    let mut coordinator =
        CoordinatorProcess::start(&binary, deployment, store, random_loopback(), &[]);
    coordinator.wait_probe("/probe/startup", 200, Duration::from_secs(60));
    let addr = coordinator.user_addr();
    for command in [
        vec!["set", "-c", &addr, "resources"],
        vec!["verify", "-c", &addr],
    ] {
        let output = Command::new(CONTRAST)
            .args(&command)
            .current_dir(deployment.workspace.path())
            .env("CONTRAST_SIMULATOR_DIR", &deployment.simulator_dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    coordinator
}

/// Runs `openssl s_client` against `port` with `ca_file`; true if verification succeeded.
fn s_client_verifies(port: u16, ca_file: &Path) -> (bool, String) {
    let output = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-verify_return_error",
            "-brief",
        ])
        .arg("-CAfile")
        .arg(ca_file)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (
        output.status.success() && text.contains("Verification: OK"),
        text,
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread")]
async fn openssl_accepts_a_workload_certificate_only_under_its_deployments_ca() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let coordinator = set_up(&deployment, store.path());
    let (key_pem, response) = new_mesh_cert(&coordinator.mesh_addr(), deployment.issuer("web"))
        .await
        .unwrap();
    let dir = TempDir::new("tls");
    let chain = String::from_utf8(response.cert_chain).unwrap();
    let split = chain.find("-----BEGIN CERTIFICATE-----\n").unwrap();
    let second = chain[split + 1..]
        .find("-----BEGIN CERTIFICATE-----")
        .unwrap()
        + split
        + 1;
    std::fs::write(dir.path().join("leaf.pem"), &chain[..second]).unwrap();
    std::fs::write(dir.path().join("intermediate.pem"), &chain[second..]).unwrap();
    std::fs::write(dir.path().join("key.pem"), key_pem).unwrap();

    // Another deployment's CAs.
    let other = Deployment::new(&["web"]);
    let other_store = TempDir::new("other-store");
    let _other_coordinator = set_up(&other, other_store.path());

    let cases = [
        (deployment.path("verify/mesh-ca.pem"), true),
        (deployment.path("verify/coordinator-root-ca.pem"), true),
        (other.path("verify/mesh-ca.pem"), false),
        (other.path("verify/coordinator-root-ca.pem"), false),
    ];
    for (ca_file, expected) in cases {
        let port = free_port();
        let mut server = Command::new("openssl")
            .args(["s_server", "-quiet", "-accept", &port.to_string()])
            .arg("-cert")
            .arg(dir.path().join("leaf.pem"))
            .arg("-cert_chain")
            .arg(dir.path().join("intermediate.pem"))
            .arg("-key")
            .arg(dir.path().join("key.pem"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "s_server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        let (verified, text) = s_client_verifies(port, &ca_file);
        let _ = server.kill();
        let _ = server.wait();
        assert_eq!(verified, expected, "{}:\n{text}", ca_file.display());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_http_attestation_api_binds_nonce_history_and_cas() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let coordinator = set_up(&deployment, store.path());
    let nonce = [0x5au8; 32];
    let body = format!("{{\"nonce\":\"{}\"}}", STANDARD.encode(nonce));
    let post = |path: &str, content_type: &str, body: &str| {
        let mut stream = std::net::TcpStream::connect(coordinator.http_addr()).unwrap();
        write!(
            stream,
            "POST {path} HTTP/1.0\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let status: u16 = response[9..12].parse().unwrap();
        let body = response.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    };
    let (status, text) = post("/attest", "application/json", &body);
    assert_eq!(status, 200, "{text}");
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let b64 = |v: &serde_json::Value| STANDARD.decode(v.as_str().unwrap()).unwrap();
    let manifests: Vec<Vec<u8>> = json["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(b64)
        .collect();
    let root_ca = b64(&json["root_ca"]);
    let mesh_ca = b64(&json["mesh_ca"]);
    assert_eq!(
        manifests.last().unwrap(),
        &std::fs::read(deployment.path("manifest.json")).unwrap()
    );
    assert_eq!(
        json["attestation_type"],
        serde_json::json!([2, 999, 1313, 1])
    );

    let document = b64(&json["raw_attestation_doc"]);
    let verified = contrast_testkit::verify_snp_document(&deployment.amd, &document);
    let transition = contrast_history::transition_hash_of(manifests.iter().map(Vec::as_slice));
    let expected =
        contrast_coordinator::http::report_data(&nonce, &transition, &root_ca, &mesh_ca, None);
    assert_eq!(verified.report.report_data(), expected);
    assert_eq!(
        verified.report.host_data(),
        deployment.policy_hash("coordinator")
    );

    // Refusals: wrong content type, wrong nonce length, wrong method.
    assert_eq!(post("/attest", "text/plain", &body).0, 415);
    assert_eq!(
        post("/attest", "application/json", "{\"nonce\":\"AAAA\"}").0,
        400
    );
    assert_eq!(
        contrast_testkit::http_get(&coordinator.http_addr(), "/attest")
            .unwrap()
            .0,
        405
    );
}
