//! Test support for cross-component tests: a simulated deployment in a temporary
//! workspace (simulator roots, owner keys, policies, resources, manifest) and Coordinator
//! processes on their own loopback address.
//!
//! Only tests use this crate; it panics on set-up failures, which fail the test that
//! called it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

pub mod ha;
pub mod kds;
pub mod pcs;
pub mod pod_case;
pub mod registry;
pub mod serve;

pub use pod_case::{PodCase, pod_case, pod_case_of, single_container_pod};

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use contrast_api::meshapi::mesh_api_client::MeshApiClient;
use contrast_api::meshapi::{NewMeshCertRequest, NewMeshCertResponse};
use contrast_atls::{ClientOptions, Issuer, ValidatorSet};
use contrast_attestation::snp::{SnpProduct, SnpTrustAnchor, verify_report};
use contrast_evidence::DocumentIssuer;
use contrast_evidence::issuer::{simulated_snp, simulated_tdx};
use contrast_manifest::{HexString, Manifest, PolicyEntry, SnpReferenceValues, TdxReferenceValues};
use contrast_platforms::{Platform, Tee};
use contrast_seedengine::keys::{SeedshareOwnerKey, WorkloadOwnerKey};
use contrast_simulator::{SimulatedAmd, SimulatedIntel, Simulator, SnpReportSpec, TdxQuoteSpec};

use contrast_initdata::INITDATA_ANNOTATION;

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new empty directory whose name contains `name`.
    pub fn new(name: &str) -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "contrast-test-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Every file below it, at any depth.
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.0, &mut out);
        out
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The simulator's key directory shared by all tests of this user: generating the RSA-4096
/// roots takes seconds, so it happens once, under a file lock.
pub fn shared_simulator_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "contrast-rs-testkit-simulator-{}",
        std::env::var("USER").unwrap_or_default()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let lock = std::fs::File::create(dir.with_extension("lock")).unwrap();
    lock.lock().unwrap();
    Simulator::open(&dir).unwrap();
    drop(lock);
    dir
}

/// A loopback address of its own (127.0.0.0/8), so each test's Coordinator can use the
/// fixed Contrast ports without clashing with other tests.
pub fn random_loopback() -> IpAddr {
    let mut bytes = [0u8; 3];
    aws_lc_rs::rand::fill(&mut bytes).unwrap();
    IpAddr::V4(Ipv4Addr::new(
        127,
        bytes[0].max(1),
        bytes[1],
        bytes[2].clamp(2, 254),
    ))
}

/// Kubernetes' own schemas accept `files` (kubernetes-validate, strict: unknown fields are
/// errors), for Kubernetes `version` (e.g. "1.33.0").
pub fn kubernetes_validate<P: AsRef<std::path::Path>>(files: &[P], version: &str) {
    let output = std::process::Command::new(python_tool("kubernetes-validate"))
        .args(["--strict", "--quiet", "-k", version])
        .args(files.iter().map(AsRef::as_ref))
        .output()
        .expect("running kubernetes-validate");
    assert!(
        output.status.success(),
        "kubernetes-validate {version}:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A program from the Python tools `cargo xtask test` installs from PyPI
/// (`$CONTRAST_PYTHON_TOOLS`, the `bin` of their virtual environment), else from PATH.
/// Never skipped: a missing tool fails the test.
pub fn python_tool(name: &str) -> PathBuf {
    let from_env =
        std::env::var_os("CONTRAST_PYTHON_TOOLS").map(|dir| PathBuf::from(dir).join(name));
    let from_path = || {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    from_env
        .filter(|p| p.is_file())
        .or_else(from_path)
        .unwrap_or_else(|| {
            panic!(
                "{name} not found in $CONTRAST_PYTHON_TOOLS or PATH: run `cargo xtask test`, \
                 which installs the Python tools from PyPI and sets CONTRAST_PYTHON_TOOLS"
            )
        })
}

/// base64(gzip(data)): how an initdata annotation carries a policy document.
pub fn initdata_annotation(document: &[u8]) -> String {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(document).unwrap();
    STANDARD.encode(encoder.finish().unwrap())
}

/// SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data).as_ref());
    out
}

/// A simulated deployment: a Coordinator policy and `workloads` policies, owner keys,
/// a manifest and Kubernetes YAML with the policy annotations, in a workspace directory.
#[derive(Debug)]
pub struct Deployment {
    /// The workspace (manifest.json, keys, resources/).
    pub workspace: TempDir,
    /// The simulator's keys.
    pub simulator_dir: PathBuf,
    /// The simulated AMD.
    pub amd: Arc<SimulatedAmd>,
    /// The simulated Intel.
    pub intel: Arc<SimulatedIntel>,
    /// Where the Coordinator and the workloads run: Sim-SNP or Sim-TDX.
    pub platform: Platform,
    /// Policy documents by name (`coordinator`, `web`, ...).
    pub policies: BTreeMap<String, Vec<u8>>,
    /// The workload owner key (also in workload-owner.pem).
    pub owner_key: WorkloadOwnerKey,
    /// The seed share owner key (also in seedshare-owner.pem).
    pub seedshare_key: SeedshareOwnerKey,
    /// The manifest as written to manifest.json.
    pub manifest: Manifest,
}

impl Deployment {
    /// A deployment on Sim-SNP with a Coordinator and the workloads `names`.
    pub fn new(names: &[&str]) -> Self {
        Self::on(Platform::SimSnp, names)
    }

    /// A deployment on `platform` (Sim-SNP or Sim-TDX) with a Coordinator and the
    /// workloads `names`: the manifest has that platform's reference values only.
    pub fn on(platform: Platform, names: &[&str]) -> Self {
        assert!(
            platform.is_simulated(),
            "{platform:?}: a deployment runs on a simulated platform"
        );
        let workspace = TempDir::new("workspace");
        let simulator_dir = shared_simulator_dir();
        let simulator = Simulator::open(&simulator_dir).unwrap();
        let amd = Arc::new(simulator.amd);
        let intel = Arc::new(simulator.intel);
        let mut policies = BTreeMap::new();
        policies.insert(
            "coordinator".to_string(),
            format!(
                "version = \"0.1.0\"\n# coordinator {}\n",
                workspace.0.display()
            )
            .into_bytes(),
        );
        let mut manifest = Manifest::default();
        // Before the trust entry below, which carries the reference values.
        match platform.tee() {
            Tee::Snp => manifest.reference_values.snp = vec![snp_reference_values(&amd)],
            Tee::Tdx => manifest.reference_values.tdx = vec![tdx_reference_values(&intel)],
        }
        manifest.policies.insert(
            HexString::from_bytes(&sha256(&policies["coordinator"])),
            PolicyEntry {
                sans: Some(vec!["coordinator".to_string(), "*".to_string()]),
                role: "coordinator".to_string(),
                ..Default::default()
            },
        );
        // Each workload's initdata names the Coordinator, as contrast generate writes it.
        let trust = coordinator_trust_entry(&manifest);
        for name in names {
            policies.insert(
                (*name).to_string(),
                workload_initdata(
                    &format!("package agent_policy\n# workload {name}\n"),
                    &trust,
                ),
            );
        }
        let owner_key = WorkloadOwnerKey::generate().unwrap();
        let seedshare_key = seedshare_owner_key();
        for (name, document) in &policies {
            manifest
                .policies
                .insert(HexString::from_bytes(&sha256(document)), policy_entry(name));
        }
        manifest.workload_owner_key_digests = Some(vec![HexString(owner_key.digest_hex())]);
        manifest.seedshare_owner_pub_keys = Some(vec![HexString(seedshare_key.public_key_hex())]);
        let deployment = Deployment {
            workspace,
            simulator_dir,
            amd,
            intel,
            platform,
            policies,
            owner_key,
            seedshare_key,
            manifest,
        };
        deployment.write_keys();
        deployment.write_resources();
        deployment.write_manifest(&deployment.manifest.clone());
        deployment
    }

    /// Adds the workload `name` with its initdata `document` (name it with
    /// [`coordinator_trust_entry`] for an Initializer) to the manifest, and rewrites
    /// manifest.json and the resources.
    pub fn add_workload(&mut self, name: &str, document: Vec<u8>) {
        self.manifest.policies.insert(
            HexString::from_bytes(&sha256(&document)),
            policy_entry(name),
        );
        self.policies.insert(name.to_owned(), document);
        self.write_resources();
        self.write_manifest(&self.manifest.clone());
    }

    /// A path in the workspace.
    pub fn path(&self, name: &str) -> PathBuf {
        self.workspace.0.join(name)
    }

    fn write_keys(&self) {
        std::fs::write(
            self.path("workload-owner.pem"),
            self.owner_key.to_pem().unwrap().as_bytes(),
        )
        .unwrap();
        std::fs::write(
            self.path("seedshare-owner.pem"),
            self.seedshare_key.to_pem().unwrap().as_bytes(),
        )
        .unwrap();
    }

    /// Writes resources/<name>.yml for every policy.
    pub fn write_resources(&self) {
        let dir = self.path("resources");
        std::fs::create_dir_all(&dir).unwrap();
        for (name, document) in &self.policies {
            let yaml = format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  template:\n    metadata:\n      annotations:\n        {INITDATA_ANNOTATION}: {}\n    spec:\n      runtimeClassName: contrast-cc\n",
                initdata_annotation(document)
            );
            std::fs::write(dir.join(format!("{name}.yml")), yaml).unwrap();
        }
    }

    /// Writes `manifest` to manifest.json and returns its bytes.
    pub fn write_manifest(&self, manifest: &Manifest) -> Vec<u8> {
        let bytes = manifest.encode();
        std::fs::write(self.path("manifest.json"), &bytes).unwrap();
        bytes
    }

    /// The policy hash of `name`.
    pub fn policy_hash(&self, name: &str) -> [u8; 32] {
        sha256(&self.policies[name])
    }

    /// Writes the initdata document of `name` into the workspace (as the guest's
    /// initdata check leaves it for the Initializer) and returns its path.
    pub fn initdata_file(&self, name: &str) -> PathBuf {
        let path = self.path(&format!("initdata-{name}.toml"));
        std::fs::write(&path, &self.policies[name]).unwrap();
        path
    }

    /// The policy documents in manifest order.
    pub fn policy_documents(&self) -> Vec<Vec<u8>> {
        self.policies.values().cloned().collect()
    }

    /// An issuer of the platform's simulated evidence for `name`: HOST_DATA (SEV-SNP) or
    /// the first 32 bytes of MRCONFIGID (TDX) is its policy hash.
    pub fn issuer(&self, name: &str) -> Arc<dyn Issuer> {
        match self.platform.tee() {
            Tee::Snp => {
                let mut spec = SnpReportSpec::new(SnpProduct::Milan);
                spec.host_data = self.policy_hash(name);
                Arc::new(DocumentIssuer::new(Arc::new(simulated_snp(
                    self.amd.clone(),
                    spec,
                ))))
            }
            Tee::Tdx => {
                let mut spec = TdxQuoteSpec::default();
                spec.mr_config_id[..32].copy_from_slice(&self.policy_hash(name));
                Arc::new(DocumentIssuer::new(Arc::new(simulated_tdx(
                    self.intel.clone(),
                    spec,
                ))))
            }
        }
    }

    /// The simulated Intel's PCS with collateral current from now (name its URL with
    /// `--pcs-url`): without one, simulated TDX quotes are checked without a TCB status.
    pub fn simulated_pcs(&self) -> serve::Background {
        let collateral = self.intel.collateral(contrast_atls::unix_now()).unwrap();
        serve::Background::serve(contrast_simulator::pcs::SimulatedPcs::new(collateral).router())
    }
}

/// The manifest entry of the policy `name`: the Coordinator's role for `coordinator`,
/// else a workload named `name` with a workload secret.
fn policy_entry(name: &str) -> PolicyEntry {
    let coordinator = name == "coordinator";
    PolicyEntry {
        sans: Some(vec![name.to_owned(), "*".to_owned()]),
        workload_secret_id: if coordinator {
            String::new()
        } else {
            format!("apps/v1/Deployment/default/{name}")
        },
        role: if coordinator {
            "coordinator".to_owned()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

/// The `[data]` entry that names the Coordinator of `manifest`: (key, value).
pub fn coordinator_trust_entry(manifest: &Manifest) -> (String, String) {
    let trust = manifest
        .coordinator_trust()
        .expect("the manifest names a Coordinator");
    (
        contrast_manifest::COORDINATOR_INITDATA_KEY.to_string(),
        String::from_utf8(trust.encode()).unwrap(),
    )
}

/// A workload's initdata document with `policy` and the Coordinator `entry`.
pub fn workload_initdata(policy: &str, entry: &(String, String)) -> Vec<u8> {
    let data = BTreeMap::from([entry.clone()]);
    contrast_policy::initdata_with_data(policy, &data)
        .unwrap()
        .as_bytes()
        .to_vec()
}

/// A new seed share owner key (RSA-4096).
fn seedshare_owner_key() -> SeedshareOwnerKey {
    SeedshareOwnerKey::generate().unwrap()
}

/// Decodes an SNP attestation document (as aTLS carries it) and verifies its report
/// against `amd`'s root, now.
pub fn verify_snp_document(
    amd: &SimulatedAmd,
    document: &[u8],
) -> contrast_attestation::snp::VerifiedSnpReport {
    let (report, endorsements) = contrast_attestation::document::decode_snp(document).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    contrast_attestation::snp::verify_report(&report, &endorsements, &amd.trust_anchor(), now)
        .unwrap()
}

/// Reference values that accept the simulator's default TDX quote (any MRCONFIGID).
pub fn tdx_reference_values(intel: &SimulatedIntel) -> TdxReferenceValues {
    let quote = intel.quote(&TdxQuoteSpec::default()).unwrap();
    let verified = contrast_attestation::tdx::verify_quote(
        &quote,
        &intel.trust_anchor(),
        None,
        contrast_atls::unix_now(),
    )
    .unwrap();
    contrast_attestation::tdx::suggested_tdx_reference_values(&verified)
}

/// Reference values that accept the simulator's default Milan report.
pub fn snp_reference_values(amd: &SimulatedAmd) -> SnpReferenceValues {
    let report = amd.report(&SnpReportSpec::new(SnpProduct::Milan)).unwrap();
    let endorsements = contrast_attestation::snp::SnpEndorsements {
        vek: Some(report.vcek_der),
        ask: Some(report.ask_der),
        ark: Some(report.ark_der),
        crl: None,
    };
    let anchor: SnpTrustAnchor = amd.trust_anchor();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let verified = verify_report(&report.report, &endorsements, &anchor, now).unwrap();
    contrast_attestation::snp::suggested_reference_values(&verified)
}

/// A Coordinator process on its own loopback address.
#[derive(Debug)]
pub struct CoordinatorProcess {
    child: Option<Child>,
    /// The address it listens on.
    pub ip: IpAddr,
    /// Its log file.
    pub log: PathBuf,
}

/// The `coordinator` binary next to the test's binaries (cargo builds it for the
/// workspace's tests).
pub fn coordinator_binary(sibling_binary: &str) -> PathBuf {
    let path = Path::new(sibling_binary).with_file_name("coordinator");
    assert!(
        path.exists(),
        "{} is missing: build it with cargo build -p contrast-coordinator",
        path.display()
    );
    path
}

impl CoordinatorProcess {
    /// Starts `binary` for `deployment` with its store in `store`, listening on `ip`,
    /// with `extra` arguments.
    pub fn start(
        binary: &Path,
        deployment: &Deployment,
        store: &Path,
        ip: IpAddr,
        extra: &[String],
    ) -> Self {
        let log = store.with_extension(format!("{ip}.log"));
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut command = Command::new(binary);
        if !extra.iter().any(|a| a == "--simulated-host-data") {
            command
                .arg("--simulated-host-data")
                .arg(hex::encode(deployment.policy_hash("coordinator")));
        }
        let child = command
            .arg("--store-dir")
            .arg(store)
            .arg("--platform")
            .arg(deployment.platform.name())
            .arg("--simulator-dir")
            .arg(&deployment.simulator_dir)
            .arg("--listen")
            .arg(ip.to_string())
            .arg("--recovery-interval")
            .arg("1")
            .args(extra)
            .env("CONTRAST_METRICS", "1")
            .env("CONTRAST_LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap();
        CoordinatorProcess {
            child: Some(child),
            ip,
            log,
        }
    }

    /// host:1313.
    pub fn user_addr(&self) -> String {
        format!("{}:{}", self.ip, contrast_api::ports::USER_API)
    }

    /// host:7777.
    pub fn mesh_addr(&self) -> String {
        format!("{}:{}", self.ip, contrast_api::ports::MESH_API)
    }

    /// host:1314.
    pub fn http_addr(&self) -> String {
        format!("{}:{}", self.ip, contrast_api::ports::HTTP_ATTESTATION)
    }

    /// host:9102.
    pub fn probe_addr(&self) -> String {
        format!("{}:{}", self.ip, contrast_api::ports::PROBES)
    }

    /// Waits until `path` on the probe port answers `status`.
    pub fn wait_probe(&mut self, path: &str, status: u16, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(exit)) = child.try_wait()
            {
                panic!(
                    "the coordinator exited ({exit}); log:\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if http_get(&self.probe_addr(), path).is_some_and(|(code, _)| code == status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{path} did not answer {status} within {timeout:?}; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to 5 s for `needle` in the log (a refused handshake is logged shortly
    /// after the client gave up); panics with the log if it does not come.
    pub fn wait_for_log(&self, needle: &str) {
        for _ in 0..100 {
            if self.log_text().contains(needle) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{needle:?} not in the log:\n{}", self.log_text());
    }
}

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal HTTP/1.0 GET: the status code and body.
pub fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::Read as _;
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let code = response.get(9..12)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// A simulated initializer: a P-256 key, mutual aTLS with `issuer`, NewMeshCert. Returns
/// the key (PKCS#8 PEM) and the response.
pub async fn new_mesh_cert(
    mesh_addr: &str,
    issuer: Arc<dyn Issuer>,
) -> Result<(String, NewMeshCertResponse), String> {
    let (key, options) = initializer_options(issuer);
    let (channel, _) = contrast_atls::grpc::channel(mesh_addr, options)
        .await
        .map_err(|e| e.to_string())?;
    let response = MeshApiClient::new(channel)
        .new_mesh_cert(NewMeshCertRequest {})
        .await
        .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?
        .into_inner();
    Ok((key.serialize_pem(), response))
}

/// How a simulated Initializer dials the mesh API: a fresh P-256 key (returned for its
/// PEM) and its evidence from `issuer`, the Coordinator not checked.
pub fn initializer_options(issuer: Arc<dyn Issuer>) -> (rcgen::KeyPair, ClientOptions) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let options = ClientOptions::new(ValidatorSet::none())
        .with_issuer(issuer)
        .with_client_key(der);
    (key, options)
}

/// The first SetManifest with the deployment's manifest.json and policy documents, as
/// `contrast set` sends it but without checking the Coordinator's evidence (load
/// generators and benchmarks set up, they do not test the UserAPI). Retries connecting for
/// 30 s while the Coordinator starts listening.
pub async fn set_manifest(deployment: &Deployment, user_addr: &str) -> Result<(), String> {
    use contrast_api::userapi::SetManifestRequest;
    use contrast_api::userapi::user_api_client::UserApiClient;
    let manifest = std::fs::read(deployment.path("manifest.json")).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let options = ClientOptions::new(ValidatorSet::none());
        match contrast_atls::grpc::channel(user_addr, options).await {
            Ok((channel, _)) => {
                return UserApiClient::new(channel)
                    .set_manifest(SetManifestRequest {
                        manifest,
                        policies: deployment.policy_documents(),
                        ..Default::default()
                    })
                    .await
                    .map(|_| ())
                    .map_err(|s| format!("SetManifest: {:?}: {}", s.code(), s.message()));
            }
            Err(e) if Instant::now() > deadline => {
                return Err(format!(
                    "the Coordinator did not answer on {user_addr}: {e}"
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The bytes of a real aTLS ClientHello with `nonce` in ALPN, as an initializer sends it
/// first: what a client that then stalls costs a server.
pub fn atls_client_hello(nonce: [u8; 32]) -> Vec<u8> {
    let mut config = rustls::ClientConfig::builder_with_provider(contrast_atls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    config.alpn_protocols = vec![
        format!("{}{}", contrast_atls::ALPN_NONCE_PREFIX, hex::encode(nonce)).into_bytes(),
        contrast_atls::ALPN_H2.to_vec(),
    ];
    let name = rustls::pki_types::ServerName::try_from("contrast-atls").unwrap();
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut hello = Vec::new();
    connection.write_tls(&mut hello).unwrap();
    hello
}

/// `clients` connections to each of `addrs` that send a ClientHello with a fresh nonce,
/// stall for `hold`, close, and start again, until `until`. Returns how many ClientHellos
/// were sent.
pub async fn hanging_client_hellos(
    addrs: &[String],
    clients: usize,
    hold: Duration,
    until: Instant,
) -> usize {
    use tokio::io::AsyncWriteExt as _;
    let mut tasks = Vec::new();
    for addr in addrs {
        for _ in 0..clients {
            let addr = addr.clone();
            tasks.push(tokio::spawn(async move {
                let mut sent = 0;
                while Instant::now() < until {
                    let mut nonce = [0; 32];
                    aws_lc_rs::rand::fill(&mut nonce).unwrap();
                    // A starved server's backlog fills up: connecting then waits for long.
                    let left = until.saturating_duration_since(Instant::now());
                    let connect = tokio::net::TcpStream::connect(&addr);
                    if let Ok(Ok(mut stream)) = tokio::time::timeout(left, connect).await
                        && stream.write_all(&atls_client_hello(nonce)).await.is_ok()
                    {
                        sent += 1;
                        tokio::time::sleep(
                            hold.min(until.saturating_duration_since(Instant::now())),
                        )
                        .await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                sent
            }));
        }
    }
    let mut sent = 0;
    for task in tasks {
        sent += task.await.unwrap_or(0);
    }
    sent
}
