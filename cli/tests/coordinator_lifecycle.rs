//! The whole Coordinator lifecycle through the real binaries on loopback, with simulated
//! TEEs: set, workload certificates, verify, restart, recover, updates (by key and by
//! detached signature) and the refusals users meet.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::{CONTRAST, contrast, ok, refused, start};
use contrast_manifest::{HexString, Manifest};
use contrast_testkit::{CoordinatorProcess, Deployment, TempDir, new_mesh_cert, random_loopback};
use x509_parser::prelude::{FromDer, X509Certificate};

fn root_public_key(pem: &[u8]) -> Vec<u8> {
    let der = contrast_attestation::pem::decode_all(&String::from_utf8_lossy(pem), "CERTIFICATE")
        .unwrap()
        .remove(0);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    cert.public_key().raw.to_vec()
}

#[tokio::test(flavor = "multi_thread")]
async fn set_certificates_verify_restart_recover() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let mut coordinator = start(&deployment, store.path());
    let addr = coordinator.user_addr();
    coordinator.wait_probe("/probe/readiness", 503, Duration::from_secs(5));

    ok(&contrast(&deployment, &["set", "-c", &addr, "resources"]));
    coordinator.wait_probe("/probe/readiness", 200, Duration::from_secs(10));
    let root_ca = std::fs::read(deployment.path("coordinator-root-ca.pem")).unwrap();
    let mesh_ca = std::fs::read(deployment.path("mesh-ca.pem")).unwrap();
    let shares = deployment.path("seed-shares.json");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&shares).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(!std::fs::read(&shares).unwrap().ends_with(b"\n"));

    // A simulated initializer of the web workload gets its certificate and secret.
    let (_, cert) = new_mesh_cert(&coordinator.mesh_addr(), deployment.issuer("web"))
        .await
        .unwrap();
    assert_eq!(cert.mesh_ca_cert, mesh_ca);
    assert_eq!(cert.root_ca_cert, root_ca);
    assert_eq!(cert.workload_secret.len(), 64);
    let chain = String::from_utf8(cert.cert_chain).unwrap();
    assert_eq!(chain.matches("BEGIN CERTIFICATE").count(), 2);

    ok(&contrast(&deployment, &["verify", "-c", &addr]));
    let verify = deployment.path("verify");
    assert_eq!(
        std::fs::read(verify.join("manifest.0.json")).unwrap(),
        std::fs::read(deployment.path("manifest.json")).unwrap()
    );
    assert_eq!(std::fs::read(verify.join("mesh-ca.pem")).unwrap(), mesh_ca);
    for name in deployment.policies.keys() {
        let hash = hex::encode(deployment.policy_hash(name));
        assert!(
            verify.join(format!("policy.{hash}.rego")).exists(),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read(verify.join("latest-transition"))
            .unwrap()
            .len(),
        64
    );

    // Restart: the history is there, the secrets are not.
    coordinator.kill();
    let mut coordinator = start(&deployment, store.path());
    let addr = coordinator.user_addr();
    coordinator.wait_probe("/probe/readiness", 503, Duration::from_secs(5));
    let err = new_mesh_cert(&coordinator.mesh_addr(), deployment.issuer("web"))
        .await
        .unwrap_err();
    assert!(err.contains("recovery mode"), "{err}");
    refused(
        &contrast(&deployment, &["verify", "-c", &addr]),
        &["recovery mode"],
    );

    ok(&contrast(&deployment, &["recover", "-c", &addr]));
    coordinator.wait_probe("/probe/readiness", 200, Duration::from_secs(10));
    refused(
        &contrast(&deployment, &["recover", "-c", &addr]),
        &["already recovered"],
    );
    ok(&contrast(&deployment, &["verify", "-c", &addr]));
    let verify_root = std::fs::read(verify.join("coordinator-root-ca.pem")).unwrap();
    let verify_mesh = std::fs::read(verify.join("mesh-ca.pem")).unwrap();
    assert_eq!(
        root_public_key(&verify_root),
        root_public_key(&root_ca),
        "same root key"
    );
    assert_ne!(verify_mesh, mesh_ca, "a new mesh CA after user recovery");
    let (_, cert) = new_mesh_cert(&coordinator.mesh_addr(), deployment.issuer("web"))
        .await
        .unwrap();
    assert_eq!(cert.mesh_ca_cert, verify_mesh);
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_by_key_and_by_signature_rotate_the_mesh_ca() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let coordinator = start(&deployment, store.path());
    let addr = coordinator.user_addr();
    ok(&contrast(&deployment, &["set", "-c", &addr, "resources"]));
    let first_mesh = std::fs::read(deployment.path("mesh-ca.pem")).unwrap();

    // The same manifest again: a certificate rotation.
    ok(&contrast(&deployment, &["set", "-c", &addr, "resources"]));
    let second_mesh = std::fs::read(deployment.path("mesh-ca.pem")).unwrap();
    assert_ne!(first_mesh, second_mesh);

    // A signed update: verify, dry run, openssl signs, set with the signature and the
    // public key only.
    ok(&contrast(&deployment, &["verify", "-c", &addr]));
    let mut manifest = deployment.manifest.clone();
    let web = HexString::from_bytes(&deployment.policy_hash("web"));
    manifest.policies.get_mut(&web).unwrap().sans = Some(vec!["web".into(), "web.default".into()]);
    deployment.write_manifest(&manifest);
    ok(&contrast(&deployment, &["set", "--dry-run", "resources"]));
    let next = std::fs::read_to_string(deployment.path("next-transition")).unwrap();
    assert_eq!(next.len(), 64);
    let sign = Command::new("openssl")
        .current_dir(deployment.workspace.path())
        .args([
            "dgst",
            "-sha256",
            "-sign",
            "workload-owner.pem",
            "-out",
            "transition.sig",
            "next-transition",
        ])
        .status()
        .unwrap();
    assert!(sign.success());
    let public = Command::new("openssl")
        .current_dir(deployment.workspace.path())
        .args([
            "ec",
            "-in",
            "workload-owner.pem",
            "-pubout",
            "-out",
            "owner.pub",
        ])
        .status()
        .unwrap();
    assert!(public.success());
    std::fs::rename(
        deployment.path("workload-owner.pem"),
        deployment.path("hsm-only.pem"),
    )
    .unwrap();
    ok(&contrast(
        &deployment,
        &[
            "set",
            "-c",
            &addr,
            "-s",
            "transition.sig",
            "-w",
            "owner.pub",
            "resources",
        ],
    ));
    assert_ne!(
        std::fs::read(deployment.path("mesh-ca.pem")).unwrap(),
        second_mesh
    );
    ok(&contrast(&deployment, &["verify", "-c", &addr]));
    assert!(deployment.path("verify/manifest.2.json").exists());

    // The same signature again is stale now: the latest transition moved on.
    refused(
        &contrast(
            &deployment,
            &[
                "set",
                "-c",
                &addr,
                "-s",
                "transition.sig",
                "-w",
                "owner.pub",
                "resources",
            ],
        ),
        &[
            "PermissionDenied",
            "corresponds to the latest transition hash",
        ],
    );
    // Contrast's spelling: `sign --prepare` writes the same blob as `set --dry-run`, and
    // `sign` makes a signature the Coordinator accepts (the key given by path, relative
    // to where the command runs, as the user typed it).
    let mut rotated = manifest.clone();
    rotated.policies.get_mut(&web).unwrap().sans = Some(vec!["web".into()]);
    deployment.write_manifest(&rotated);
    ok(&contrast(&deployment, &["set", "--dry-run", "resources"]));
    ok(&contrast(
        &deployment,
        &["sign", "--prepare", "--out", "prepared-transition"],
    ));
    assert_eq!(
        std::fs::read(deployment.path("prepared-transition")).unwrap(),
        std::fs::read(deployment.path("next-transition")).unwrap(),
        "sign --prepare and set --dry-run disagree"
    );
    let signed = contrast(
        &deployment,
        &[
            "sign",
            "--workload-owner-key",
            "hsm-only.pem",
            "--out",
            "sign.sig",
        ],
    );
    ok(&signed);
    assert!(String::from_utf8_lossy(&signed.stdout).contains("sign.sig"));
    ok(&contrast(
        &deployment,
        &[
            "set",
            "-c",
            &addr,
            "-s",
            "sign.sig",
            "-w",
            "owner.pub",
            "resources",
        ],
    ));
    ok(&contrast(&deployment, &["verify", "-c", &addr]));
    assert!(deployment.path("verify/manifest.3.json").exists());
    // Signing needs the private key: a public one is refused with the reason.
    refused(
        &contrast(
            &deployment,
            &[
                "sign",
                "--workload-owner-key",
                "owner.pub",
                "--out",
                "x.sig",
            ],
        ),
        &["owner.pub", "not a workload owner key"],
    );
    deployment.write_manifest(&manifest);

    // Without any key file: told to give one.
    refused(
        &contrast(&deployment, &["set", "-c", &addr, "resources"]),
        &["PermissionDenied", "--workload-owner-key"],
    );
    // With a key that is not an owner.
    let stranger = contrast_seedengine::keys::WorkloadOwnerKey::generate().unwrap();
    std::fs::write(
        deployment.path("stranger.pem"),
        stranger.to_pem().unwrap().as_bytes(),
    )
    .unwrap();
    refused(
        &contrast(
            &deployment,
            &["set", "-c", &addr, "-w", "stranger.pem", "resources"],
        ),
        &["PermissionDenied", "trusted workload owner key"],
    );
    std::fs::rename(
        deployment.path("hsm-only.pem"),
        deployment.path("workload-owner.pem"),
    )
    .unwrap();

    // Changed seed share owners are refused.
    let mut changed = manifest.clone();
    changed.seedshare_owner_pub_keys = Some(Vec::new());
    deployment.write_manifest(&changed);
    refused(
        &contrast(&deployment, &["set", "-c", &addr, "resources"]),
        &["SeedshareOwnerPubKeys"],
    );

    // Dropping the owner keys makes the deployment immutable.
    let mut immutable = manifest.clone();
    immutable.workload_owner_key_digests = Some(Vec::new());
    deployment.write_manifest(&immutable);
    ok(&contrast(&deployment, &["set", "-c", &addr, "resources"]));
    deployment.write_manifest(&manifest);
    refused(
        &contrast(&deployment, &["set", "-c", &addr, "resources"]),
        &["setting manifest is disabled"],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn refusals_of_evidence_policies_and_seeds() {
    let deployment = Deployment::new(&["web"]);
    let store = TempDir::new("store");
    let mut coordinator = start(&deployment, store.path());
    let addr = coordinator.user_addr();
    ok(&contrast(&deployment, &["set", "-c", &addr, "resources"]));

    // A pod whose policy is not in the manifest. The initializer only sees the connection
    // fail (TLS 1.3 reports a refused client certificate after its side is done); the
    // Coordinator logs why.
    let outsider = Deployment::new(&["intruder"]);
    if new_mesh_cert(&coordinator.mesh_addr(), outsider.issuer("intruder"))
        .await
        .is_ok()
    {
        panic!("a pod outside the manifest got a certificate");
    }
    coordinator.wait_for_log("HOST_DATA differs");

    // Evidence with another measurement.
    let mut spec =
        contrast_simulator::SnpReportSpec::new(contrast_attestation::snp::SnpProduct::Milan);
    spec.host_data = deployment.policy_hash("web");
    spec.measurement = [0x42; 48];
    let issuer = std::sync::Arc::new(contrast_evidence::DocumentIssuer::new(std::sync::Arc::new(
        contrast_evidence::issuer::simulated_snp(deployment.amd.clone(), spec),
    )));
    if new_mesh_cert(&coordinator.mesh_addr(), issuer)
        .await
        .is_ok()
    {
        panic!("evidence with another measurement got a certificate");
    }
    coordinator.wait_for_log("MEASUREMENT (TrustedMeasurement) differs");

    // Simulated evidence is not accepted for a real platform's reference values.
    let mut real = deployment.manifest.clone();
    for entry in &mut real.reference_values.snp {
        entry.platform = "Metal-QEMU-SNP".into();
    }
    deployment.write_manifest(&real);
    refused(
        &contrast(&deployment, &["verify", "-c", &addr]),
        &["simulat"],
    );
    deployment.write_manifest(&deployment.manifest);

    // A wrong seed share: another deployment's owner key and seed.
    coordinator.kill();
    let mut coordinator = start(&deployment, store.path());
    let addr = coordinator.user_addr();
    let other = Deployment::new(&["web"]);
    let other_store = TempDir::new("other-store");
    let other_coordinator = start(&other, other_store.path());
    ok(&contrast(
        &other,
        &["set", "-c", &other_coordinator.user_addr(), "resources"],
    ));
    std::fs::copy(
        other.path("seed-shares.json"),
        deployment.path("other-shares.json"),
    )
    .unwrap();
    std::fs::copy(
        other.path("seedshare-owner.pem"),
        deployment.path("other-owner.pem"),
    )
    .unwrap();
    refused(
        &contrast(
            &deployment,
            &[
                "recover",
                "-c",
                &addr,
                "--seed",
                "other-shares.json",
                "--seedshare-owner-key",
                "other-owner.pem",
            ],
        ),
        &["PermissionDenied", "seed share owner"],
    );
    // The right owner with someone else's seed.
    let mut forged = contrast_seedengine::SeedShareDocument::from_json(
        &std::fs::read(other.path("seed-shares.json")).unwrap(),
    )
    .unwrap();
    let (seed, salt) =
        contrast_seedengine::decrypt_seed_share(&forged, &other.seedshare_key).unwrap();
    forged = contrast_seedengine::encrypt_seed_shares(
        &seed,
        &salt,
        &[deployment.seedshare_key.public_key_hex()],
    )
    .unwrap();
    std::fs::write(deployment.path("forged-shares.json"), forged.to_json()).unwrap();
    refused(
        &contrast(
            &deployment,
            &["recover", "-c", &addr, "--seed", "forged-shares.json"],
        ),
        &["does not belong to this deployment"],
    );
    coordinator.wait_probe("/probe/readiness", 503, Duration::from_secs(5));
    ok(&contrast(&deployment, &["recover", "-c", &addr]));
}

#[test]
fn manifest_round_trip_keeps_the_testkit_manifest_valid() {
    let deployment = Deployment::new(&["web"]);
    let bytes = std::fs::read(deployment.path("manifest.json")).unwrap();
    let manifest = Manifest::decode(&bytes).unwrap();
    manifest.validate().unwrap();
}

#[test]
fn waits_for_the_coordinator_with_a_progress_line_and_gives_up_at_the_timeout() {
    let deployment = Deployment::new(&["web"]);
    let ip = random_loopback();
    let addr = format!("{ip}:1313");
    // Nothing listens: bounded by --timeout, with the reason.
    let output = contrast(&deployment, &["verify", "-c", &addr, "--timeout", "1"]);
    refused(
        &output,
        &[
            "Waiting for the Coordinator",
            "connecting to the Coordinator",
        ],
    );

    // The Coordinator comes up while the CLI waits.
    let workspace = deployment.workspace.path().to_path_buf();
    let simulator = deployment.simulator_dir.clone();
    let waiting_addr = addr.clone();
    let waiting = std::thread::spawn(move || {
        Command::new(CONTRAST)
            .args(["set", "-c", &waiting_addr, "--timeout", "60", "resources"])
            .current_dir(workspace)
            .env("CONTRAST_SIMULATOR_DIR", simulator)
            .output()
            .unwrap()
    });
    std::thread::sleep(Duration::from_millis(1500));
    let store = TempDir::new("store");
    let binary = contrast_testkit::coordinator_binary(CONTRAST);
    let _coordinator = CoordinatorProcess::start(&binary, &deployment, store.path(), ip, &[]);
    let output = waiting.join().unwrap();
    ok(&output);
    assert!(String::from_utf8_lossy(&output.stderr).contains("Waiting for the Coordinator"));
}

#[test]
fn set_refuses_resources_that_do_not_match_the_manifest() {
    let deployment = Deployment::new(&["web"]);
    let addr = format!("{}:1313", random_loopback());
    // Checked before any connection: a policy of the manifest missing from the resources.
    std::fs::rename(
        deployment.path("resources/web.yml"),
        deployment.path("web.yml.off"),
    )
    .unwrap();
    refused(
        &contrast(
            &deployment,
            &["set", "-c", &addr, "--timeout", "1", "resources"],
        ),
        &["is not in the resources given"],
    );
    std::fs::rename(
        deployment.path("web.yml.off"),
        deployment.path("resources/web.yml"),
    )
    .unwrap();
    // A policy in the resources that the manifest does not name.
    let extra = format!(
        "metadata:\n  annotations:\n    {}: {}\n",
        contrast_initdata::INITDATA_ANNOTATION,
        contrast_testkit::initdata_annotation(b"version = \"0.1.0\"\n# extra\n")
    );
    std::fs::write(deployment.path("resources/extra.yml"), extra).unwrap();
    refused(
        &contrast(
            &deployment,
            &["set", "-c", &addr, "--timeout", "1", "resources"],
        ),
        &["policy count mismatch"],
    );
}
