//! The initializer binary against a real Coordinator on loopback (Sim-SNP, and Sim-TDX with
//! the simulated PCS), with initdata that names it: the files, their contents and modes,
//! retrying while the Coordinator is down, and a refusal that the initializer's log
//! explains.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contrast_platforms::{Platform, Tee};
use contrast_testkit::{CoordinatorProcess, Deployment, TempDir, random_loopback, sha256};

const INITIALIZER: &str = env!("CARGO_BIN_EXE_initializer");

/// The Initializer of a pod on the deployment's platform whose initdata is `initdata`
/// (HOST_DATA, or MRCONFIGID on TDX: its digest).
fn initializer(deployment: &Deployment, host: &str, initdata: &[u8], out: &Path) -> Child {
    let path = out.join("initdata.toml");
    std::fs::write(&path, initdata).unwrap();
    let tee = match deployment.platform.tee() {
        Tee::Snp => "snp",
        Tee::Tdx => "tdx",
    };
    Command::new(INITIALIZER)
        .env("CONTRAST_SIMULATED_TEE", tee)
        .env("COORDINATOR_HOST", host)
        .env("CONTRAST_INITDATA", &path)
        .env("CONTRAST_SECRETS_DIR", out.join("contrast"))
        .env("CONTRAST_DONE_FILE", out.join("done"))
        .env("CONTRAST_RETRY_INTERVAL", "1")
        .env("CONTRAST_SIMULATOR_DIR", &deployment.simulator_dir)
        .env(
            "CONTRAST_SIMULATED_HOST_DATA",
            hex::encode(sha256(initdata)),
        )
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(out.join("initializer.log")).unwrap())
        .spawn()
        .unwrap()
}

fn set_manifest(deployment: &Deployment, coordinator: &CoordinatorProcess) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let options = contrast_atls::ClientOptions::new(contrast_atls::ValidatorSet::none());
        let (channel, _) = contrast_atls::grpc::channel(&coordinator.user_addr(), options)
            .await
            .unwrap();
        contrast_api::userapi::user_api_client::UserApiClient::new(channel)
            .set_manifest(contrast_api::userapi::SetManifestRequest {
                manifest: std::fs::read(deployment.path("manifest.json")).unwrap(),
                policies: deployment.policy_documents(),
                ..Default::default()
            })
            .await
            .unwrap();
    });
}

fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the initializer did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn writes_the_files_after_waiting_for_the_coordinator() {
    let deployment = Deployment::new(&["web"]);
    let out = TempDir::new("pod");
    let ip = random_loopback();
    // Started first: it retries until the Coordinator is up and has a manifest.
    let mut child = initializer(
        &deployment,
        &ip.to_string(),
        &deployment.policies["web"],
        out.path(),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let store = TempDir::new("store");
    let binary = contrast_testkit::coordinator_binary(INITIALIZER);
    let mut coordinator = CoordinatorProcess::start(&binary, &deployment, store.path(), ip, &[]);
    coordinator.wait_probe("/probe/startup", 200, Duration::from_secs(60));
    set_manifest(&deployment, &coordinator);
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let log = std::fs::read_to_string(out.path().join("initializer.log")).unwrap();
    assert!(status.success(), "{log}");
    // It said why it had to wait.
    assert!(log.contains("connecting to the Coordinator"), "{log}");

    let tls = out.path().join("contrast/tls-config");
    for (name, expected_mode) in [
        ("mesh-ca.pem", 0o444),
        ("certChain.pem", 0o444),
        ("key.pem", 0o400),
        ("coordinator-root-ca.pem", 0o444),
    ] {
        assert_eq!(mode(&tls.join(name)), expected_mode, "{name}");
    }
    let secret = out.path().join("contrast/secrets/workload-secret-seed");
    assert_eq!(mode(&secret), 0o400);
    let hex_secret = std::fs::read_to_string(&secret).unwrap();
    assert_eq!(hex_secret.len(), 128);
    assert!(
        hex_secret
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    assert_eq!(mode(&out.path().join("done")), 0o644);
    assert!(
        std::fs::read_to_string(tls.join("key.pem"))
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    let chain = std::fs::read_to_string(tls.join("certChain.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);

    // The chain verifies under the mesh CA with OpenSSL, and the key matches the leaf.
    let leaf_end =
        chain.find("-----END CERTIFICATE-----").unwrap() + "-----END CERTIFICATE-----\n".len();
    std::fs::write(out.path().join("leaf.pem"), &chain[..leaf_end]).unwrap();
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(tls.join("mesh-ca.pem"))
        .arg(out.path().join("leaf.pem"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let pubkey = |args: &[&str], file: &Path| {
        Command::new("openssl")
            .args(args)
            .arg(file)
            .output()
            .unwrap()
            .stdout
    };
    assert_eq!(
        pubkey(
            &["x509", "-noout", "-pubkey", "-in"],
            &out.path().join("leaf.pem")
        ),
        pubkey(&["pkey", "-pubout", "-in"], &tls.join("key.pem"))
    );
    drop(coordinator);
}

/// A TD on Sim-TDX: the Initializer attests the Coordinator's quote against the TDX
/// reference values its initdata carries, and the Coordinator evaluates the TD's quote
/// with the simulated PCS's collateral before it issues.
#[test]
fn a_td_gets_its_files_from_a_sim_tdx_coordinator() {
    let deployment = Deployment::on(Platform::SimTdx, &["web"]);
    let pcs = deployment.simulated_pcs();
    let out = TempDir::new("pod");
    let store = TempDir::new("store");
    let binary = contrast_testkit::coordinator_binary(INITIALIZER);
    let mut coordinator = CoordinatorProcess::start(
        &binary,
        &deployment,
        store.path(),
        random_loopback(),
        &["--pcs-url".to_owned(), pcs.url().to_owned()],
    );
    coordinator.wait_probe("/probe/startup", 200, Duration::from_secs(60));
    set_manifest(&deployment, &coordinator);
    let mut child = initializer(
        &deployment,
        &coordinator.ip.to_string(),
        &deployment.policies["web"],
        out.path(),
    );
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let log = std::fs::read_to_string(out.path().join("initializer.log")).unwrap();
    assert!(status.success(), "{log}");
    let tls = out.path().join("contrast/tls-config");
    let chain = std::fs::read_to_string(tls.join("certChain.pem")).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);
    // The certificate carries the TD's claims, not a VM's (docs/attestation.md §4): MRTD
    // (TDX claim 14), not the SNP measurement (SNP claim 22).
    let leaf = contrast_attestation::pem::decode_all(&chain, "CERTIFICATE")
        .unwrap()
        .remove(0);
    let has = |arc: &[u64], claim: u64| {
        let dotted: Vec<String> = arc.iter().chain([&claim]).map(u64::to_string).collect();
        let oid = contrast_attestation::der::oid(&dotted.join("."));
        leaf.windows(oid.len()).any(|w| w == oid)
    };
    use contrast_attestation::claims::{SNP_ARC, TDX_ARC};
    assert!(has(&TDX_ARC, 14));
    assert!(!has(&SNP_ARC, 22));
}

#[test]
fn a_pod_outside_the_manifest_is_told_why() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let binary = contrast_testkit::coordinator_binary(INITIALIZER);
    let mut coordinator =
        CoordinatorProcess::start(&binary, &deployment, store.path(), random_loopback(), &[]);
    coordinator.wait_probe("/probe/startup", 200, Duration::from_secs(60));
    set_manifest(&deployment, &coordinator);
    let out = TempDir::new("pod");
    // Initdata that names the right Coordinator, but whose policy the manifest lacks.
    let outsider = contrast_testkit::workload_initdata(
        "package agent_policy\n# not in the manifest\n",
        &contrast_testkit::coordinator_trust_entry(&deployment.manifest),
    );
    let mut child = initializer(
        &deployment,
        &coordinator.ip.to_string(),
        &outsider,
        out.path(),
    );
    let log_path = out.path().join("initializer.log");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::fs::read_to_string(&log_path)
        .unwrap()
        .contains("HOST_DATA differs")
    {
        assert!(
            Instant::now() < deadline,
            "no explanation in the log:\n{}",
            std::fs::read_to_string(&log_path).unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(!out.path().join("done").exists());
    assert!(
        !out.path()
            .join("contrast/tls-config/certChain.pem")
            .exists()
    );
}

/// secure-pv on this machine, which has no device-mapper (docs/environment.md §5): the
/// certificate files are written, the volume cannot be set up, the initializer says why and
/// exits non-zero, and the done marker is not written (the pod must not start without its
/// volume). The working path runs in the QEMU guest.
#[test]
fn secure_pv_failure_is_reported_and_blocks_the_done_marker() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let binary = contrast_testkit::coordinator_binary(INITIALIZER);
    let mut coordinator =
        CoordinatorProcess::start(&binary, &deployment, store.path(), random_loopback(), &[]);
    coordinator.wait_probe("/probe/startup", 200, Duration::from_secs(60));
    set_manifest(&deployment, &coordinator);
    let out = TempDir::new("pod");
    let device = out.path().join("csi0.img");
    std::fs::write(&device, vec![0u8; 32 << 20]).unwrap();
    let mut command = Command::new(INITIALIZER);
    command
        .env("COORDINATOR_HOST", coordinator.ip.to_string())
        .env("CONTRAST_INITDATA", deployment.initdata_file("web"))
        .env("CONTRAST_SECRETS_DIR", out.path().join("contrast"))
        .env("CONTRAST_DONE_FILE", out.path().join("done"))
        .env("CONTRAST_STATE_DIR", out.path().join("state"))
        .env("CRYPTSETUP_DEVICE", &device)
        .env("CONTRAST_SIMULATOR_DIR", &deployment.simulator_dir)
        .env(
            "CONTRAST_SIMULATED_HOST_DATA",
            hex::encode(deployment.policy_hash("web")),
        );
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains("setting up the encrypted volume on"),
        "{stderr}"
    );
    assert!(
        out.path()
            .join("contrast/tls-config/certChain.pem")
            .exists()
    );
    assert!(!out.path().join("done").exists());
}
