//! The Initializer attests the Coordinator before it trusts anything it sends: a
//! Coordinator under another policy, a plain TLS server, or initdata that the pod's own
//! evidence does not bind get nothing from it, and it writes nothing (no certificate, no
//! key, no workload secret, no done marker).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use contrast_api::meshapi::mesh_api_server::{MeshApi, MeshApiServer};
use contrast_api::meshapi::{
    NewMeshCertRequest, NewMeshCertResponse, RecoverRequest, RecoverResponse,
};
use contrast_testkit::{CoordinatorProcess, Deployment, TempDir, random_loopback, sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

const INITIALIZER: &str = env!("CARGO_BIN_EXE_initializer");

/// The pod's view: its initdata file and its HOST_DATA.
fn initializer(
    deployment: &Deployment,
    host: &str,
    host_data: [u8; 32],
    initdata: &Path,
    out: &Path,
) -> Child {
    Command::new(INITIALIZER)
        .env("COORDINATOR_HOST", host)
        .env("CONTRAST_SECRETS_DIR", out.join("contrast"))
        .env("CONTRAST_DONE_FILE", out.join("done"))
        .env("CONTRAST_RETRY_INTERVAL", "1")
        .env("CONTRAST_SIMULATOR_DIR", &deployment.simulator_dir)
        .env("CONTRAST_SIMULATED_HOST_DATA", hex::encode(host_data))
        .env("CONTRAST_INITDATA", initdata)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(out.join("initializer.log")).unwrap())
        .spawn()
        .unwrap()
}

/// Waits until the log says `needle` (at least twice: it keeps refusing on retry), then
/// stops the Initializer and checks that it wrote nothing at all.
fn refuses_and_writes_nothing(mut child: Child, out: &Path, needle: &str) -> String {
    let log_path = out.join("initializer.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = std::fs::read_to_string(&log_path).unwrap();
        if log.matches(needle).count() >= 2 {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the initializer exited ({status}) instead of refusing; files: {:?}\n{log}",
                listing(out)
            );
        }
        assert!(
            Instant::now() < deadline,
            "no refusal saying {needle:?} in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(
        listing(out),
        vec![PathBuf::from("initializer.log")],
        "the initializer wrote something:\n{log}"
    );
    log
}

/// Every file and directory under `dir`, relative.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
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

/// A Coordinator for `deployment` whose own HOST_DATA is `host_data`, with the manifest
/// set (so it would hand out certificates), and its store.
fn coordinator(
    deployment: &Deployment,
    host_data: Option<[u8; 32]>,
) -> (CoordinatorProcess, TempDir) {
    let store = TempDir::new("store");
    let binary = contrast_testkit::coordinator_binary(INITIALIZER);
    let extra: Vec<String> = match host_data {
        Some(h) => vec!["--simulated-host-data".into(), hex::encode(h)],
        None => Vec::new(),
    };
    let mut coordinator = CoordinatorProcess::start(
        &binary,
        deployment,
        &store.path().join("store"),
        random_loopback(),
        &extra,
    );
    coordinator.wait_probe("/probe/startup", 200, Duration::from_secs(60));
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(contrast_testkit::set_manifest(
            deployment,
            &coordinator.user_addr(),
        ))
        .unwrap();
    (coordinator, store)
}

#[test]
fn the_right_coordinator_gets_the_files_written() {
    let deployment = Deployment::new(&["web"]);
    let (coordinator, _store) = coordinator(&deployment, None);
    let out = TempDir::new("pod");
    let mut child = initializer(
        &deployment,
        &coordinator.ip.to_string(),
        deployment.policy_hash("web"),
        &deployment.initdata_file("web"),
        out.path(),
    );
    let status = wait_exit(&mut child, Duration::from_secs(30));
    let log = std::fs::read_to_string(out.path().join("initializer.log")).unwrap();
    assert!(status.success(), "{log}");
    for file in [
        "contrast/tls-config/mesh-ca.pem",
        "contrast/tls-config/certChain.pem",
        "contrast/tls-config/key.pem",
        "contrast/tls-config/coordinator-root-ca.pem",
        "contrast/secrets/workload-secret-seed",
        "done",
    ] {
        assert!(out.path().join(file).exists(), "{file} missing:\n{log}");
    }
}

#[test]
fn coordinator_with_another_policy_is_refused_and_nothing_written() {
    let deployment = Deployment::new(&["web"]);
    // A real Coordinator with the deployment's manifest, but launched with another
    // policy: what a host would run to collect the workloads' secrets.
    let (impostor, _store) = coordinator(&deployment, Some(sha256(b"another coordinator policy")));
    let out = TempDir::new("pod");
    let child = initializer(
        &deployment,
        &impostor.ip.to_string(),
        deployment.policy_hash("web"),
        &deployment.initdata_file("web"),
        out.path(),
    );
    let log = refuses_and_writes_nothing(child, out.path(), "refusing the Coordinator");
    assert!(
        log.contains("HOST_DATA"),
        "the log says what differs:\n{log}"
    );
}

/// A MeshAPI that hands out whatever it likes, over TLS with a self-signed certificate
/// and no evidence.
#[derive(Debug)]
struct PlainMeshApi;

#[tonic::async_trait]
impl MeshApi for PlainMeshApi {
    async fn new_mesh_cert(
        &self,
        _: tonic::Request<NewMeshCertRequest>,
    ) -> Result<tonic::Response<NewMeshCertResponse>, tonic::Status> {
        let ca = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["mesh".into()])
            .unwrap()
            .self_signed(&ca)
            .unwrap()
            .pem();
        Ok(tonic::Response::new(NewMeshCertResponse {
            mesh_ca_cert: cert.clone().into_bytes(),
            cert_chain: cert.clone().into_bytes(),
            root_ca_cert: cert.into_bytes(),
            workload_secret: vec![0x42; 64],
        }))
    }

    async fn recover(
        &self,
        _: tonic::Request<RecoverRequest>,
    ) -> Result<tonic::Response<RecoverResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("recover"))
    }
}

/// A server-side TLS stream tonic can serve.
struct TlsConnection(tokio_rustls::server::TlsStream<tokio::net::TcpStream>);

impl Connected for TlsConnection {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Serves [`PlainMeshApi`] over TLS (rustls, self-signed, h2) on a loopback port.
fn plain_tls_mesh_api(runtime: &tokio::runtime::Runtime) -> SocketAddr {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec!["coordinator".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind((random_loopback(), 7777)))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    runtime.spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = tx.send(Ok::<_, std::io::Error>(TlsConnection(tls))).await;
                }
            });
        }
    });
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(MeshApiServer::new(PlainMeshApi))
            .serve_with_incoming(tokio_stream::wrappers::ReceiverStream::new(rx)),
    );
    addr
}

#[test]
fn plain_tls_server_is_refused_and_nothing_written() {
    let deployment = Deployment::new(&["web"]);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let addr = plain_tls_mesh_api(&runtime);
    let out = TempDir::new("pod");
    let child = initializer(
        &deployment,
        &addr.to_string(),
        deployment.policy_hash("web"),
        &deployment.initdata_file("web"),
        out.path(),
    );
    let log = refuses_and_writes_nothing(child, out.path(), "refusing the Coordinator");
    assert!(log.contains("not attested"), "the log says why:\n{log}");
}

#[test]
fn initdata_not_bound_by_the_evidence_is_refused_and_nothing_written() {
    let deployment = Deployment::new(&["web"]);
    // The right Coordinator, and the pod's real HOST_DATA; but the initdata file is
    // another document (here: one naming another Coordinator), which the launch did not
    // measure.
    let (coordinator, _store) = coordinator(&deployment, None);
    let mut attacker = deployment.manifest.clone();
    attacker.policies = [(
        contrast_manifest::HexString::from_bytes(&sha256(b"attacker's Coordinator")),
        contrast_manifest::PolicyEntry {
            role: contrast_manifest::ROLE_COORDINATOR.into(),
            ..Default::default()
        },
    )]
    .into();
    let document = contrast_testkit::workload_initdata(
        "package agent_policy\n# workload web\n",
        &contrast_testkit::coordinator_trust_entry(&attacker),
    );
    let initdata = TempDir::new("initdata");
    let initdata = initdata.path().join("initdata.toml");
    std::fs::write(&initdata, &document).unwrap();
    let out = TempDir::new("pod");
    let child = initializer(
        &deployment,
        &coordinator.ip.to_string(),
        deployment.policy_hash("web"),
        &initdata,
        out.path(),
    );
    let log = refuses_and_writes_nothing(child, out.path(), "digest mismatch");
    assert!(log.contains("HOST_DATA"), "the log names the field:\n{log}");
}
