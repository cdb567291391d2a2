//! Shared scenarios of the QEMU tests and benchmarks.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub(crate) mod node;
pub(crate) mod peer;
pub(crate) mod pod;

/// The median of benchmark samples.
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A benchmark's `--<name> N` argument, else `default`.
pub(crate) fn bench_arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a.strip_prefix("--") == Some(name))
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use contrast_api::meshapi::NewMeshCertResponse;
use contrast_qemu_tests::{
    Console, GUEST_SIMULATOR_SETUP, Image, Vm, fake_tsm_module, profile_dir,
};
use contrast_testkit::{CoordinatorProcess, Deployment, TempDir, coordinator_binary};

const GUEST_SCRIPT: &str = r#"
fail() { echo "CONTRAST-TEST-FAIL $TEST: $*"; exit 1; }
TEST=$1
host_data=$(cat /sys/firmware/qemu_fw_cfg/by_name/opt/contrast/host_data/raw) || fail "no host data in fw_cfg"
insmod ./fake_tsm.ko host_data="$host_data" measurement="$MEASUREMENT" || fail "fake_tsm.ko did not load"
CONTRAST_SIMULATOR_DIR=/run/sim CONTRAST_SIMULATED_TEE=snp-tsm \
    initializer --coordinator-host 10.0.2.2 --initdata ./initdata.toml \
        --secrets-dir /run/contrast --done-file /run/done \
        --retry-interval 1 || fail "the initializer failed"
[ -e /run/done ] || fail "no done marker"
echo "CONTRAST-STEP initializer-done=$(cut -d' ' -f1 /proc/uptime)"
for file in mesh-ca.pem certChain.pem; do
    echo "CONTRAST-FILE-BEGIN $file"
    cat "/run/contrast/tls-config/$file"
    echo "CONTRAST-FILE-END $file"
done
[ "$(stat -c %a /run/contrast/tls-config/key.pem)" = 400 ] || fail "key.pem is not owner-read-only"
echo "CONTRAST-TEST-PASS $TEST"
"#;

/// A Coordinator (Sim-SNP) on the host and its state directory.
pub(crate) struct HostCoordinator {
    pub(crate) process: CoordinatorProcess,
    pub(crate) store: TempDir,
}

/// Starts a Coordinator for `deployment` on the host's 127.0.0.1 and sets its manifest:
/// QEMU's user network maps the guest's 10.0.2.2 there. It listens on Contrast's fixed
/// ports, so the tests that start one run one at a time (.config/nextest.toml).
pub(crate) fn host_coordinator(
    deployment: &Deployment,
    runtime: &tokio::runtime::Runtime,
) -> HostCoordinator {
    let store = TempDir::new("qemu-coordinator");
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let binary = coordinator_binary(
        &profile_dir()
            .unwrap()
            .join("qemu-guest-probe")
            .display()
            .to_string(),
    );
    let mut process = CoordinatorProcess::start(&binary, deployment, store.path(), ip, &[]);
    process.wait_probe("/probe/startup", 200, Duration::from_secs(60));
    runtime
        .block_on(contrast_testkit::set_manifest(
            deployment,
            &process.user_addr(),
        ))
        .unwrap();
    HostCoordinator { process, store }
}

/// The certificates of a PEM bundle, in order.
pub(crate) fn certificates(pem: &str) -> Vec<Vec<u8>> {
    rustls::pki_types::pem::PemObject::pem_slice_iter(pem.as_bytes())
        .map(|c: Result<rustls::pki_types::CertificateDer<'static>, _>| c.unwrap().to_vec())
        .collect()
}

/// Asserts that the first certificate of `chain_pem` is signed by the single certificate
/// of `ca_pem` (the mesh CA's P-384 key) and names `workload`.
pub(crate) fn assert_mesh_certificate(ca_pem: &str, chain_pem: &str, workload: &str) {
    use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};
    use x509_parser::prelude::{FromDer as _, X509Certificate};
    let chain = certificates(chain_pem);
    assert!(
        !chain.is_empty(),
        "no certificate in the chain:\n{chain_pem}"
    );
    let ca = certificates(ca_pem).remove(0);
    let (_, ca_cert) = X509Certificate::from_der(&ca).unwrap();
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    UnparsedPublicKey::new(
        &ECDSA_P384_SHA384_ASN1,
        ca_cert.public_key().subject_public_key.data.as_ref(),
    )
    .verify(
        leaf.tbs_certificate.as_ref(),
        leaf.signature_value.data.as_ref(),
    )
    .expect("the workload's certificate is signed by its mesh CA");
    let sans = format!("{:?}", leaf.subject_alternative_name());
    assert!(
        sans.contains(workload),
        "the certificate names {workload}: {sans}"
    );
}

/// What one boot of the initializer scenario gave.
pub(crate) struct InitializerRun {
    /// The guest console.
    pub(crate) console: Console,
    /// The Coordinator's log.
    pub(crate) coordinator_log: String,
    /// What the Coordinator handed a host-side workload of the same policy.
    pub(crate) host_side: Result<(String, NewMeshCertResponse), String>,
}

/// A Coordinator (Sim-SNP) on the host's 127.0.0.1 with a manifest for `web`; a guest whose
/// fake TSM provider carries `web`'s policy hash as HOST_DATA runs the initializer against
/// it (the guest's 10.0.2.2 is the host's 127.0.0.1) with `web`'s initdata, which names
/// that Coordinator.
pub(crate) fn initializer_boot(image: &Image) -> InitializerRun {
    let deployment = Deployment::new(&["web"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let HostCoordinator {
        process: mut coordinator,
        store: _store,
    } = host_coordinator(&deployment, &runtime);

    let host_data = hex::encode(deployment.policy_hash("web"));
    let measurement = &deployment.manifest.reference_values.snp[0]
        .trusted_measurement
        .0;
    let console = Vm::new(image, "initializer")
        .network()
        .fw_cfg_string("contrast/host_data", &host_data)
        .file("fake_tsm.ko", fake_tsm_module().unwrap())
        // The pod's initdata (its digest is the HOST_DATA above), naming the Coordinator.
        .content("initdata.toml", deployment.policies["web"].clone())
        .simulator(&deployment.simulator_dir)
        .unwrap()
        .script(&format!(
            "MEASUREMENT={measurement}\n{GUEST_SIMULATOR_SETUP}{GUEST_SCRIPT}"
        ))
        .boot()
        .unwrap();
    // What the Coordinator hands a workload of the same policy, asked from the host.
    let host_side = runtime.block_on(contrast_testkit::new_mesh_cert(
        &coordinator.mesh_addr(),
        deployment.issuer("web"),
    ));
    let coordinator_log = coordinator.log_text();
    coordinator.kill();
    InitializerRun {
        console,
        coordinator_log,
        host_side,
    }
}
