//! The quickstart: the whole Contrast lifecycle on one machine with the simulated SEV-SNP
//! platform. Each step prints what it proves; any failure ends the run with a non-zero
//! exit status.
//!
//! By default the Coordinator (filesystem store) and the workloads run as local processes:
//! each pod is an Initializer (its simulated evidence carries the pod's policy hash as
//! HOST_DATA, as the Kata runtime would set it), a service-mesh proxy without redirect
//! rules (its ingress forwards to the app), and the shop's app (`shop-app`).
//!
//! With `--containerd` the Coordinator and the pods run as a node runs them: containerd →
//! our shim → a VM per pod with the measured image → our agent, the containers' images
//! pulled in the guest, the Coordinator's history in the node's API server (see
//! `containerd.rs`).

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{IpAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use contrast_manifest::Manifest;
use contrast_testkit::registry::{Registry, RegistrySetup};

mod containerd;

/// Ports of the apps behind the proxies, and of the proxies' ingress listeners.
struct Pod {
    name: &'static str,
    /// The app's port in its pod (examples/shop.yml's containerPort).
    port: u16,
    app_port: u16,
    ingress_port: u16,
    ingress_open_port: u16,
    egress: &'static str,
    ingress: &'static str,
}

impl Pod {
    /// Where the app asks the next service: its mesh egress listener (the annotation's
    /// `#`-separated second field), if it has one.
    fn next_service(&self) -> Option<&'static str> {
        self.egress.split('#').nth(1).filter(|l| !l.is_empty())
    }
}

const PODS: [Pod; 3] = [
    Pod {
        name: "web",
        port: 8080,
        app_port: 18080,
        ingress_port: 18006,
        ingress_open_port: 18007,
        egress: "api#127.137.0.1:8081#127.0.0.1:18106",
        ingress: "web#8080#false",
    },
    Pod {
        name: "api",
        port: 8081,
        app_port: 18081,
        ingress_port: 18106,
        ingress_open_port: 18107,
        egress: "db#127.137.0.2:8082#127.0.0.1:18206",
        ingress: "",
    },
    Pod {
        name: "db",
        port: 8082,
        app_port: 18082,
        ingress_port: 18206,
        ingress_open_port: 18207,
        egress: "",
        ingress: "",
    },
];

struct Quickstart {
    bin: PathBuf,
    work: PathBuf,
    simulator: PathBuf,
    /// Where the Coordinator listens (on containerd: the pod network's gateway).
    ip: IpAddr,
    children: Vec<(String, Child)>,
    step: usize,
    /// The simulated vendor's KDS, once started.
    kds: Option<contrast_testkit::serve::Background>,
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[allow(clippy::print_stdout)]
fn say(text: &str) {
    println!("{text}");
}

impl Quickstart {
    fn step(&mut self, title: &str) {
        self.step += 1;
        say(&format!("\n==> {:>2}. {title}", self.step));
    }

    fn proved(&self, text: &str) {
        say(&format!("    ✔ {text}"));
    }

    fn binary(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    fn coordinator_addr(&self, port: u16) -> String {
        format!("{}:{port}", self.ip)
    }

    /// Runs `contrast` in the workspace; fails with its output when it fails.
    fn contrast(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.contrast_output(args)?;
        if !output.status.success() {
            bail!(
                "contrast {} failed:\n{}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn contrast_output(&self, args: &[&str]) -> anyhow::Result<Output> {
        say(&format!("    $ contrast {}", args.join(" ")));
        Command::new(self.binary("contrast"))
            .args(args)
            .current_dir(&self.work)
            .env("CONTRAST_SIMULATOR_DIR", &self.simulator)
            .output()
            .context("running contrast")
    }

    fn spawn(&mut self, name: &str, command: &mut Command) -> anyhow::Result<()> {
        let log = std::fs::File::create(self.work.join(format!("{name}.log")))?;
        let child = command
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        self.children.push((name.to_owned(), child));
        Ok(())
    }

    fn stop(&mut self, name: &str) {
        if let Some(index) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.children.remove(index);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.work.join(format!("{name}.log"))).unwrap_or_default()
    }

    fn start_coordinator(&mut self, host_data: &str) -> anyhow::Result<()> {
        let store = self.work.join("coordinator-store");
        let mut command = Command::new(self.binary("coordinator"));
        command
            .arg("--store-dir")
            .arg(&store)
            .args(["--platform", "Sim-SNP", "--simulated-host-data", host_data])
            .arg("--simulator-dir")
            .arg(&self.simulator)
            .args(["--listen", &self.ip.to_string()]);
        // Its simulated host hands over no certificate table, as many bare-metal hosts:
        // the Coordinator completes it from the simulated vendor's KDS.
        if let Some(kds) = &self.kds {
            command
                .args(["--kds-url", kds.url()])
                .args(["--simulated-cert-table", "none"]);
        }
        self.spawn("coordinator", &mut command)?;
        wait_until(
            Duration::from_secs(60),
            "the Coordinator's startup probe",
            || probe(&self.coordinator_addr(9102), "/probe/startup") == Some(200),
        )
        .with_context(|| self.log("coordinator"))
    }

    /// Runs a pod's Initializer to completion (it exits once its files are written). It
    /// reads the pod's initdata from the generated YAML, as the guest's initdata check
    /// would leave it, and checks the Coordinator it names.
    fn run_initializer(&self, pod: &str, policy_hash: &str) -> anyhow::Result<PathBuf> {
        let secrets = self.work.join("pods").join(pod).join("contrast");
        let done = self.work.join("pods").join(pod).join("done");
        let _ = std::fs::remove_file(&done);
        std::fs::create_dir_all(&secrets)?;
        let initdata = self.work.join("pods").join(pod).join("initdata.toml");
        std::fs::write(&initdata, initdata_of(&self.work.join("resources"), pod)?)?;
        let output = Command::new(self.binary("initializer"))
            .env("COORDINATOR_HOST", self.coordinator_addr(7777))
            .env("CONTRAST_INITDATA", &initdata)
            .env("CONTRAST_SECRETS_DIR", &secrets)
            .env("CONTRAST_DONE_FILE", &done)
            .env("CONTRAST_RETRY_INTERVAL", "1")
            .env("CONTRAST_SIMULATOR_DIR", &self.simulator)
            .env("CONTRAST_SIMULATED_HOST_DATA", policy_hash)
            // Its host hands over the VCEK chain but no CRL, as most hosts: the Coordinator
            // fetches the CRL from the simulated KDS.
            .env("CONTRAST_SIMULATED_CERT_TABLE", "chain")
            .output()
            .context("running the initializer")?;
        ensure!(
            output.status.success() && done.exists(),
            "the initializer of {pod} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(secrets)
    }
}

fn probe(addr: &str, path: &str) -> Option<u16> {
    contrast_testkit::http_get(addr, path).map(|(status, _)| status)
}

fn wait_until(
    timeout: Duration,
    what: &str,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !ready() {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A TLS client that trusts the mesh CA; with `client_cert` it presents a mesh certificate.
fn mesh_request(
    addr: &str,
    server_name: &str,
    mesh_ca: &Path,
    client: Option<&Path>,
) -> anyhow::Result<String> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(mesh_ca)? {
        roots.add(cert?)?;
    }
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        Some(dir) => {
            let chain = CertificateDer::pem_file_iter(dir.join("certChain.pem"))?
                .collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_file(dir.join("key.pem"))?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    let name = ServerName::try_from(server_name.to_owned())?;
    let connection = rustls::ClientConnection::new(Arc::new(config), name)?;
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    tls.write_all(b"GET /\n")?;
    let mut reply = String::new();
    BufReader::new(tls).read_line(&mut reply)?;
    ensure!(!reply.is_empty(), "the connection closed without an answer");
    Ok(reply.trim_end().to_owned())
}

/// A request to the Coordinator's transit engine (port 8200) with the mesh credentials in
/// `tls_config` (an Initializer's `contrast/tls-config`): `POST
/// /v1/transit/<action>/<key>` with the JSON `body`. Returns the status and the JSON answer.
fn transit(
    coordinator: &str,
    tls_config: &Path,
    action: &str,
    key: &str,
    body: &serde_json::Value,
) -> anyhow::Result<(u16, serde_json::Value)> {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject as _};
    use std::io::Read as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(tls_config.join("mesh-ca.pem"))? {
        roots.add(cert?)?;
    }
    let chain = CertificateDer::pem_file_iter(tls_config.join("certChain.pem"))?
        .collect::<Result<Vec<_>, _>>()?;
    let key_der = PrivateKeyDer::from_pem_file(tls_config.join("key.pem"))?;
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key_der)?;
    let connection =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("coordinator")?)?;
    let tcp = TcpStream::connect(coordinator)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let body = body.to_string();
    // Vault's key names are path segments: the ID's slashes travel percent-encoded.
    let key = key.replace('/', "%2F");
    write!(
        tls,
        "POST /v1/transit/{action}/{key} HTTP/1.1\r\nHost: coordinator\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = Vec::new();
    // The server closes after answering; a TLS close without close_notify is fine here.
    if let Err(e) = tls.read_to_end(&mut response)
        && response.is_empty()
    {
        return Err(e.into());
    }
    let response = String::from_utf8_lossy(&response);
    let status = response
        .get(9..12)
        .and_then(|code| code.parse().ok())
        .context("no HTTP status line in the answer")?;
    let json = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .unwrap_or_default();
    Ok((status, serde_json::from_str(json).unwrap_or_default()))
}

/// The documents named `name` in the YAML under `resources`, as JSON.
fn documents_named(resources: &Path, name: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(resources)? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        for document in contrast_kube_resources::parse_documents(&text)? {
            let json = document.to_json();
            if json["metadata"]["name"] == name {
                found.push(json);
            }
        }
    }
    Ok(found)
}

/// The initdata document of workload `name` in the YAML under `resources`: what the Kata
/// runtime hands the pod's VM.
fn initdata_of(resources: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    for json in documents_named(resources, name)? {
        if let Some(value) = json["spec"]["template"]["metadata"]["annotations"]
            [contrast_initdata::INITDATA_ANNOTATION]
            .as_str()
        {
            return Ok(contrast_initdata::decode_annotation_value(value)?);
        }
    }
    bail!(
        "no initdata annotation for {name} in {}",
        resources.display()
    )
}

fn policy_hash_of(manifest: &Manifest, name: &str) -> anyhow::Result<String> {
    manifest
        .policies
        .iter()
        .find(|(_, entry)| {
            entry
                .sans
                .as_ref()
                .is_some_and(|s| s.first().is_some_and(|n| n == name))
        })
        .map(|(hash, _)| hash.as_str().to_owned())
        .with_context(|| format!("no policy for {name} in the manifest"))
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// The pods as processes: per workload, the Initializer to completion, the shop's app and
/// the mesh proxy in front of it.
fn start_process_pods(q: &mut Quickstart, manifest: &Manifest) -> anyhow::Result<()> {
    q.step("Start the pods: Initializer, mesh proxy and app per workload");
    for pod in &PODS {
        let hash = policy_hash_of(manifest, pod.name)?;
        let secrets = q.run_initializer(pod.name, &hash)?;
        let next = pod.next_service();
        let mut app = Command::new(q.binary("shop-app"));
        app.arg(pod.name).arg(format!("127.0.0.1:{}", pod.app_port));
        if let Some(next) = next {
            app.arg(next);
        }
        q.spawn(&format!("app-{}", pod.name), &mut app)?;
        let ready = q.work.join("pods").join(pod.name).join("ready");
        let mut command = Command::new(q.binary("service-mesh"));
        command
            .arg("--tls-dir")
            .arg(secrets.join("tls-config"))
            .arg("--ready-file")
            .arg(&ready)
            .arg("--no-redirect")
            .args(["--ingress-port", &pod.ingress_port.to_string()])
            .args([
                "--ingress-no-client-auth-port",
                &pod.ingress_open_port.to_string(),
            ])
            .args(["--ingress-upstream", &format!("127.0.0.1:{}", pod.app_port)])
            .env("CONTRAST_INGRESS_PROXY_CONFIG", pod.ingress)
            .env("CONTRAST_EGRESS_PROXY_CONFIG", pod.egress);
        q.spawn(&format!("mesh-{}", pod.name), &mut command)?;
        let log_name = format!("mesh-{}", pod.name);
        wait_until(Duration::from_secs(20), "the mesh proxy", || ready.exists())
            .with_context(|| q.log(&log_name))?;
        say(&format!(
            "      {}: certificate for policy {}…, proxy ready",
            pod.name,
            &hash[..16]
        ));
    }
    q.proved(
        "each Initializer attested the Coordinator its initdata names, proved its pod's policy \
         to it and got a mesh certificate",
    );
    Ok(())
}

fn main() -> std::process::ExitCode {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let containerd = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--containerd") => true,
        Some(other) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!(
                    "quickstart: unknown argument {other:?}; usage: quickstart [--containerd]"
                );
            }
            return std::process::ExitCode::from(2);
        }
    };
    match run(containerd) {
        Ok(()) => {
            say(
                "\nThe whole lifecycle worked. Everything above ran on this machine with a simulated TEE.",
            );
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("\nquickstart failed: {e:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(on_containerd: bool) -> anyhow::Result<()> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("repo root")?
        .to_owned();
    let bin = std::env::current_exe()?
        .parent()
        .context("binary dir")?
        .to_owned();
    let work = std::env::temp_dir().join(format!("contrast-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let mut q = Quickstart {
        bin,
        work: work.clone(),
        // The pod VMs sign with the shared simulator's keys (the node's guests and the
        // Initializer's image carry them).
        simulator: if on_containerd {
            contrast_testkit::shared_simulator_dir()
        } else {
            work.join("simulator")
        },
        ip: contrast_testkit::random_loopback(),
        children: Vec::new(),
        step: 0,
        kds: None,
    };
    say(&format!(
        "Contrast quickstart — working in {}",
        work.display()
    ));

    q.step("Build the binaries");
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(["build", "--quiet", "--workspace", "--bins"])
        .current_dir(&repo)
        .status()?;
    ensure!(status.success(), "cargo build failed");
    for name in [
        "contrast",
        "coordinator",
        "initializer",
        "service-mesh",
        "shop-app",
    ] {
        ensure!(
            q.binary(name).exists(),
            "{} was not built",
            q.binary(name).display()
        );
    }
    q.proved(
        "the workspace's binaries are built: contrast, coordinator, initializer, service-mesh, …",
    );

    let version = env!("CARGO_PKG_VERSION");
    let mut cluster = None;
    // Process mode's registry (the node has its own, on the pod network's gateway).
    let mut registry = None;
    let registry_host;
    if on_containerd {
        q.step(
            "Prepare the node: a pod network with its API server, the simulated vendor's KDS, \
             and a registry with the images the pods run",
        );
        let node = containerd::Cluster::prepare()?;
        let kds = start_kds(&q.simulator, node.gateway().parse()?)?;
        let replacements = node.push_images(&q.bin, version, kds.url())?;
        say(&format!(
            "      on the gateway {}: the API server at {}, the KDS at {}",
            node.gateway(),
            node.api_url(),
            kds.url()
        ));
        q.kds = Some(kds);
        let text: String = replacements
            .iter()
            .map(|(original, pushed)| format!("{original}={pushed}\n"))
            .collect();
        std::fs::write(work.join("image-replacements.txt"), text)?;
        registry_host = node.registry_host();
        q.proved(&format!(
            "registry {registry_host} holds the Coordinator, the Initializer, the mesh proxy \
             and the shop's apps (this build's binaries); the guests pull them from there by \
             digest"
        ));
        cluster = Some(node);
    } else {
        q.step("Start a local OCI registry with the example images");
        let started = Registry::start(RegistrySetup::default());
        let scratch = work.join("images");
        let mut replacements = String::new();
        for (original, repo_name, entrypoint) in [
            (
                "ghcr.io/contrast-rs/examples/web:v1".to_owned(),
                "examples/web",
                "/bin/web",
            ),
            (
                "ghcr.io/contrast-rs/examples/api:v1".to_owned(),
                "examples/api",
                "/bin/api",
            ),
            (
                "ghcr.io/contrast-rs/examples/db:v1".to_owned(),
                "examples/db",
                "/bin/db",
            ),
            (
                format!("ghcr.io/contrast-rs/initializer:v{version}"),
                "contrast/initializer",
                "/bin/initializer",
            ),
            (
                format!("ghcr.io/contrast-rs/service-mesh-proxy:v{version}"),
                "contrast/service-mesh-proxy",
                "/bin/service-mesh",
            ),
            (
                format!("ghcr.io/contrast-rs/coordinator:v{version}"),
                "contrast/coordinator",
                "/bin/coordinator",
            ),
        ] {
            let section = format!(
                r#"{{"Env":["PATH=/usr/bin:/bin"],"Entrypoint":["{entrypoint}"],"WorkingDir":"/"}}"#
            );
            let pushed = started.push_image(&scratch, repo_name, &section);
            replacements.push_str(&format!("{original}={pushed}\n"));
        }
        std::fs::write(work.join("image-replacements.txt"), replacements)?;
        registry_host = started.host();
        q.proved(&format!(
            "registry {registry_host} holds 6 images; generate resolves them to digests"
        ));
        registry = Some(started);
    }

    q.step("contrast generate: policies, Initializer, service mesh and the manifest");
    copy_dir(&repo.join("examples"), &work.join("resources"))?;
    let host = registry_host.clone();
    let mut generate = vec![
        "generate",
        "--reference-values",
        "sim-snp",
        "--insecure-registry",
        &host,
        "--image-replacements",
        "image-replacements.txt",
    ];
    if on_containerd {
        // Each pod's VM memory from its images and limits, as a pod-level limit (which
        // containerd 1.6 does not pass on to the runtime: the VMs keep the default size).
        generate.push("--calculate-pod-memory");
    }
    generate.push("resources/");
    let out = q.contrast(&generate)?;
    for line in out.lines() {
        say(&format!("      {line}"));
    }
    let manifest = Manifest::decode(&std::fs::read(work.join("manifest.json"))?)?;
    let coordinator_hash = manifest
        .coordinator_policy_hashes()
        .next()
        .context("no coordinator policy")?
        .as_str()
        .to_owned();
    q.proved("every pod now has a Kata agent policy; manifest.json lists their hashes and the Sim-SNP reference values");

    if let Some(cluster) = cluster.as_mut() {
        let handler = runtime_handler_of(&work.join("resources"), "coordinator")?;
        cluster.start_node(&handler)?;
        q.step("Start the Coordinator as a pod: its own VM, its history in the node's API server");
        say(&format!(
            "      containerd runs runtime handler {handler} with our shim; pods on {}.0/24",
            cluster.gateway().trim_end_matches(".1")
        ));
        q.ip = start_coordinator_pod(cluster, &work.join("resources"))?;
        q.proved(&format!(
            "the Coordinator runs in a VM at {} whose HOST_DATA is its initdata digest, policy \
             {}; the guest's TSM gives its report",
            q.ip,
            &coordinator_hash[..16]
        ));
    } else {
        q.step("Start the simulated vendor's KDS (AMD's paths: VCEKs, certificate chains, CRLs)");
        let kds = start_kds(&q.simulator, IpAddr::from([127, 0, 0, 1]))?;
        q.proved(&format!(
            "the KDS serves at {}: the Coordinator fetches what hosts leave out of their certificate tables",
            kds.url()
        ));
        q.kds = Some(kds);

        q.step("Start the Coordinator (simulated SEV-SNP, filesystem store)");
        q.start_coordinator(&coordinator_hash)?;
        q.proved(&format!(
            "the Coordinator runs on {} with HOST_DATA = its policy hash {}",
            q.ip,
            &coordinator_hash[..16]
        ));
    }

    q.step("contrast set: attest the Coordinator, then hand it the manifest");
    let user_api = q.coordinator_addr(1313);
    q.contrast(&["set", "-c", &user_api, "resources/"])?;
    q.proved("the CLI verified the Coordinator's evidence against manifest.json before sending it");

    // Where a client reaches web's and api's ingress.
    let (web, api) = if let Some(cluster) = cluster.as_mut() {
        q.step(
            "Start the pods on containerd: a VM per pod, the Initializer, mesh proxy and app in it",
        );
        let coordinator = (
            q.ip.to_string(),
            vec![
                "coordinator".to_owned(),
                contrast_kube_resources::mutate::COORDINATOR_READY_HOST.to_owned(),
            ],
        );
        let started = Instant::now();
        let addresses = cluster.start_pods(
            &work.join("resources"),
            &["db", "api", "web"],
            &[coordinator],
        )?;
        for (workload, ip) in &addresses {
            say(&format!(
                "      {workload}: pod at {ip}, policy {}…: Initializer done, proxy ready, app started",
                &policy_hash_of(&manifest, workload)?[..16]
            ));
        }
        say(&format!(
            "      {} VMs, all pods running after {:.0?}",
            cluster.vm_count(),
            started.elapsed()
        ));
        q.proved(
            "each pod's VM was launched with HOST_DATA = its initdata digest; each Initializer \
             attested the Coordinator its initdata names, proved its pod's policy to it and \
             got a mesh certificate; the agent admitted only what the policy allows",
        );
        let ip_of = |name: &str| {
            addresses
                .iter()
                .find(|(w, _)| w == name)
                .map(|(_, ip)| ip.clone())
                .unwrap_or_default()
        };
        (
            format!("{}:8080", ip_of("web")),
            format!("{}:8081", ip_of("api")),
        )
    } else {
        start_process_pods(&mut q, &manifest)?;
        (
            format!("127.0.0.1:{}", PODS[0].ingress_open_port),
            format!("127.0.0.1:{}", PODS[1].ingress_port),
        )
    };

    q.step("contrast verify: what a data owner checks");
    q.contrast(&["verify", "-c", &user_api])?;
    let mut listing: Vec<String> = std::fs::read_dir(work.join("verify"))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    listing.sort();
    for name in &listing {
        say(&format!("      verify/{name}"));
    }
    q.proved("the Coordinator's manifest history ends in our manifest; verify/ holds its CAs and policies");

    q.step("A request through the mesh: client → web → api → db");
    let mesh_ca = work.join("verify").join("mesh-ca.pem");
    let reply = mesh_request(&web, "web", &mesh_ca, None)?;
    say(&format!("      reply: {reply}"));
    ensure!(
        reply == "web -> api -> db: 42 items in stock",
        "unexpected reply {reply:?}"
    );
    q.proved("TLS to web checked against the mesh CA; web→api and api→db went over mutual TLS with mesh certificates");

    q.step("A client without a mesh certificate is refused");
    match mesh_request(&api, "api", &mesh_ca, None) {
        Ok(reply) => bail!("api answered a client without a certificate: {reply}"),
        Err(e) => say(&format!("      refused: {e}")),
    }
    if let Some(cluster) = cluster.as_mut() {
        q.proved("api's ingress requires a certificate from the mesh CA");
        q.step("The node cannot read a pod's key: kubectl exec into db is refused by its policy");
        match cluster.exec("db", "db", &["cat", "/contrast/tls-config/key.pem"]) {
            Ok(out) => bail!("the node read db's key: {out}"),
            Err(refusal) => {
                ensure!(
                    refusal.contains("ExecProcessRequest is blocked by policy"),
                    "exec into db failed, but not by policy: {refusal}"
                );
                say(&format!("      refused: {}", first_line(&refusal)));
            }
        }
        q.proved(
            "the agent in db's VM refused the exec the node asked for: the policy allows no exec \
             in db, and the key never leaves the VM",
        );
        return finish_on_containerd(&mut q, cluster, &web, &mesh_ca);
    }
    let web_secrets = work.join("pods/web/contrast/tls-config");
    let reply = mesh_request(&api, "api", &mesh_ca, Some(&web_secrets))?;
    say(&format!("      with web's certificate: {reply}"));
    q.proved("api's ingress requires a certificate from the mesh CA");

    q.step("The Coordinator's transit engine: db encrypts under a key only db can use");
    let transit_addr = q.coordinator_addr(8200);
    let db_tls = work.join("pods/db/contrast/tls-config");
    let disk_key = "the key of db's encrypted disk";
    let encrypt = serde_json::json!({ "plaintext": STANDARD.encode(disk_key) });
    let (status, answer) = transit(&transit_addr, &db_tls, "encrypt", "shop/db", &encrypt)?;
    ensure!(status == 200, "encrypting failed ({status}): {answer}");
    let sealed = answer["data"]["ciphertext"]
        .as_str()
        .context("no ciphertext in the answer")?
        .to_owned();
    say(&format!(
        "      db's ciphertext: {}…",
        &sealed[..sealed.len().min(40)]
    ));
    let (status, answer) = transit(&transit_addr, &web_secrets, "encrypt", "shop/db", &encrypt)?;
    ensure!(status == 403, "web used db's key ({status}): {answer}");
    say(&format!(
        "      web asking for db's key: {status} {}",
        answer["errors"][0].as_str().unwrap_or_default()
    ));
    q.proved(
        "Vault's transit API over mutual TLS with mesh certificates (OpenBao can auto-unseal \
         from it); a key belongs to the workload whose certificate names its workload secret ID",
    );

    let db_secret = std::fs::read(work.join("pods/db/contrast/secrets/workload-secret-seed"))
        .context("db has no workload secret")?;

    restart_coordinator(&mut q, &coordinator_hash)?;

    q.step("contrast recover: the seed share owner brings it back");
    q.contrast(&["recover", "-c", &user_api])?;
    for pod in &PODS {
        q.run_initializer(pod.name, &policy_hash_of(&manifest, pod.name)?)?;
    }
    let secrets = work.join("pods/db/contrast");
    let secret = std::fs::read(secrets.join("secrets/workload-secret-seed"))?;
    ensure!(
        secret == db_secret,
        "db's workload secret changed across recovery"
    );
    let decrypt = serde_json::json!({ "ciphertext": sealed });
    let (status, answer) = transit(&transit_addr, &db_tls, "decrypt", "shop/db", &decrypt)?;
    ensure!(
        status == 200,
        "decrypting after recovery failed ({status}): {answer}"
    );
    let opened = STANDARD.decode(answer["data"]["plaintext"].as_str().unwrap_or_default())?;
    ensure!(
        opened == disk_key.as_bytes(),
        "the transit key changed across recovery"
    );
    q.proved(
        "recovered from seed-shares.json; all three pods got certificates again, db the same \
         workload secret and transit key (its encrypted data stays readable)",
    );

    rotate_mesh_ca(&mut q, &user_api)?;
    drop(registry);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// A signed manifest update: the mesh CA rotates.
fn rotate_mesh_ca(q: &mut Quickstart, user_api: &str) -> anyhow::Result<()> {
    q.step("A signed manifest update rotates the mesh CA");
    let old_ca = std::fs::read(q.work.join("mesh-ca.pem"))?;
    q.contrast(&["set", "-c", user_api, "--dry-run", "resources/"])?;
    say("    $ openssl dgst -sha256 -sign workload-owner.pem -out transition.sig next-transition");
    let status = Command::new("openssl")
        .args([
            "dgst",
            "-sha256",
            "-sign",
            "workload-owner.pem",
            "-out",
            "transition.sig",
            "next-transition",
        ])
        .current_dir(&q.work)
        .status()?;
    ensure!(status.success(), "openssl failed");
    q.contrast(&["set", "-c", user_api, "-s", "transition.sig", "resources/"])?;
    let new_ca = std::fs::read(q.work.join("mesh-ca.pem"))?;
    ensure!(old_ca != new_ca, "the mesh CA did not change");
    q.proved(
        "the update was authorised by a detached signature; every update issues a new mesh CA",
    );

    Ok(())
}

/// The steps after the mesh's on containerd: recovery with the pods running, the manifest
/// update, and the pods' teardown.
fn finish_on_containerd(
    q: &mut Quickstart,
    cluster: &mut containerd::Cluster,
    web: &str,
    mesh_ca: &Path,
) -> anyhow::Result<()> {
    q.step("Restart the Coordinator: its pod is deleted and made again, in recovery mode");
    cluster.remove_pod("coordinator")?;
    q.ip = start_coordinator_pod(cluster, &q.work.join("resources"))?;
    check_recovery_mode(q)?;
    let user_api = q.coordinator_addr(1313);
    let user_api = user_api.as_str();
    q.step("contrast recover: the seed share owner brings it back");
    q.contrast(&["recover", "-c", user_api])?;
    let reply = mesh_request(web, "web", mesh_ca, None)?;
    say(&format!("      reply: {reply}"));
    ensure!(
        reply == "web -> api -> db: 42 items in stock",
        "unexpected reply {reply:?}"
    );
    q.proved(
        "recovered from seed-shares.json with the same mesh CA: the pods' certificates still \
         chain to it, and the shop answers through the mesh",
    );
    rotate_mesh_ca(q, user_api)?;
    q.step("Stop the pods as the kubelet does");
    let vms = cluster.vm_count();
    cluster.stop_pods()?;
    q.proved(&format!(
        "{vms} VMs stopped; no QEMU, shim, mount, network namespace or sandbox state is left"
    ));
    let _ = std::fs::remove_dir_all(&q.work);
    Ok(())
}

/// The Coordinator restarted: it comes back in recovery mode.
fn restart_coordinator(q: &mut Quickstart, coordinator_hash: &str) -> anyhow::Result<()> {
    q.step("Restart the Coordinator: it comes back in recovery mode");
    q.stop("coordinator");
    q.start_coordinator(coordinator_hash)?;
    check_recovery_mode(q)
}

/// A restarted Coordinator fails its readiness probe until it is recovered.
fn check_recovery_mode(q: &Quickstart) -> anyhow::Result<()> {
    let readiness = probe(&q.coordinator_addr(9102), "/probe/readiness");
    ensure!(
        readiness.is_some_and(|status| status != 200),
        "a restarted Coordinator must fail its readiness probe before recovery, got {readiness:?}"
    );
    q.proved(&format!(
        "the history survived in the store, but without the seed the Coordinator cannot \
         sign: readiness answers {}",
        readiness.unwrap_or_default()
    ));
    Ok(())
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// The simulated vendor's KDS (AMD's paths: VCEKs, certificate chains, CRLs) on `ip`.
fn start_kds(
    simulator_dir: &Path,
    ip: IpAddr,
) -> anyhow::Result<contrast_testkit::serve::Background> {
    let simulator = contrast_simulator::Simulator::open(simulator_dir)?;
    let kds = contrast_simulator::kds::SimulatedKds::new(Arc::new(simulator.amd));
    Ok(contrast_testkit::serve::Background::serve_on(
        kds.router(),
        ip,
    ))
}

/// The Coordinator's StatefulSet's pod on the node: its address once its startup probe
/// passed.
fn start_coordinator_pod(
    cluster: &mut containerd::Cluster,
    resources: &Path,
) -> anyhow::Result<IpAddr> {
    let started = Instant::now();
    let addresses = cluster.start_pods(resources, &["coordinator"], &[])?;
    let ip = addresses
        .first()
        .map(|(_, ip)| ip.clone())
        .context("no Coordinator pod")?;
    say(&format!(
        "      coordinator-0 at {ip}: started after {:.0?}",
        started.elapsed()
    ));
    Ok(ip.parse()?)
}

/// The runtime handler generate put into workload `name`'s runtimeClassName.
fn runtime_handler_of(resources: &Path, name: &str) -> anyhow::Result<String> {
    documents_named(resources, name)?
        .iter()
        .find_map(|json| json["spec"]["template"]["spec"]["runtimeClassName"].as_str())
        .map(str::to_owned)
        .with_context(|| format!("no runtimeClassName for {name} in {}", resources.display()))
}
