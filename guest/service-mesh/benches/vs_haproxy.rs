//! The mesh proxy against haproxy 2.6 (OpenSSL 3.0), both terminating TLS 1.3 with
//! required client certificates, with the same mesh certificates, forwarding to the same
//! kind of plain upstream, measured in the same run with the rounds interleaved
//! (docs/environment.md §4).
//!
//! What is measured, per proxy process (schedstat run time summed over its threads,
//! cross-checked against utime + stime from `/proc/PID/stat`):
//! - CPU per full handshake: a rustls client does full TLS 1.3 mTLS handshakes (no
//!   resumption), sends one small request and reads the reply; the connection latencies
//!   of that phase come with it. The client offers X25519 only, the group OpenSSL 3.0
//!   picks, so both proxies do the same key exchange; a second phase uses the client's
//!   default groups (the mesh proxy then picks X25519MLKEM768, haproxy X25519).
//! - p50/p99 latency of small requests on an established connection, the two proxies
//!   taking turns request by request.
//! - CPU per GiB of bulk transfer through one connection, each direction.
//!
//! Besides, in this process: the server side of an in-memory handshake with the proxy's
//! own `ServerConfig`, split into its two flights, and the primitives it consists of
//! (aws-lc-rs), so a gap between the proxy's CPU and the crypto bound can be attributed;
//! without `--quick` also `openssl speed` for the baseline's primitives.
//!
//! `cargo bench -p contrast-service-mesh --bench vs_haproxy [-- --quick]`; needs
//! `haproxy` on PATH (skipped otherwise). Options: `--rounds N`, `--handshakes N`,
//! `--concurrency N`, `--bulk-mib N`, `--requests N`; `--only handshakes|default-groups|
//! requests|bulk` runs one phase (for profiling, the PIDs are printed);
//! `--mesh-workers N` sets the mesh proxy's TOKIO_WORKER_THREADS.

#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use contrast_ca::Ca;
use contrast_service_mesh::{ClientAuth, MeshTls};
use rcgen::PublicKeyData as _;
use rustls::client::Resumption;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::aws_lc_rs::kx_group;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Payload of a small request (and of its reply).
const SMALL: usize = 64;
/// Chunk the bulk client and the upstream read and write.
const CHUNK: usize = 256 * 1024;
const GIB: f64 = (1u64 << 30) as f64;
const MIB: f64 = (1u64 << 20) as f64;

#[derive(Debug, Clone)]
struct Settings {
    quick: bool,
    rounds: usize,
    handshakes: usize,
    default_group_handshakes: usize,
    concurrency: usize,
    bulk_bytes: u64,
    requests: usize,
    breakdown_handshakes: usize,
    /// Run only this phase (`handshakes`, `default-groups`, `requests`, `bulk`), and no
    /// in-process attribution: for profiling one phase with perf.
    only: Option<String>,
    /// TOKIO_WORKER_THREADS for the mesh proxy (default: tokio's, one per core).
    mesh_workers: Option<u64>,
}

impl Settings {
    fn from_args() -> Settings {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "--quick");
        let mut settings = if quick {
            Settings {
                quick,
                rounds: 3,
                handshakes: 200,
                default_group_handshakes: 100,
                concurrency: 4,
                bulk_bytes: 128 << 20,
                requests: 1000,
                breakdown_handshakes: 100,
                only: None,
                mesh_workers: None,
            }
        } else {
            Settings {
                quick,
                rounds: 3,
                handshakes: 1000,
                default_group_handshakes: 400,
                concurrency: 4,
                bulk_bytes: 1 << 30,
                requests: 5000,
                breakdown_handshakes: 300,
                only: None,
                mesh_workers: None,
            }
        };
        let mut i = 0;
        while i < args.len() {
            let value = || -> u64 {
                args.get(i + 1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{} needs a number", args[i]))
            };
            match args[i].as_str() {
                "--rounds" => settings.rounds = value() as usize,
                "--handshakes" => settings.handshakes = value() as usize,
                "--concurrency" => settings.concurrency = value() as usize,
                "--bulk-mib" => settings.bulk_bytes = value() << 20,
                "--requests" => settings.requests = value() as usize,
                "--only" => settings.only = args.get(i + 1).cloned(),
                "--mesh-workers" => settings.mesh_workers = Some(value()),
                // `cargo bench` passes --bench; anything else is ignored as well.
                _ => {
                    i += 1;
                    continue;
                }
            }
            i += 2;
        }
        settings
    }

    fn runs(&self, phase: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == phase)
    }
}

// ---------------------------------------------------------------------------------------
// CPU accounting

/// Clock ticks per second of `/proc/PID/stat` (USER_HZ).
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a whole process (threads that ended included), in seconds; tick
/// resolution, so only used as a cross-check of [`Counters`].
fn process_cpu_ticks(pid: &str, ticks: f64) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may contain spaces; the fields after it do not.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of proc(5), counted from the state (field 3).
    let utime: f64 = fields[11].parse().unwrap();
    let stime: f64 = fields[12].parse().unwrap();
    (utime + stime) / ticks
}

/// CPU time and context switches of a process, summed over its threads.
///
/// schedstat's run time is in nanoseconds (`/proc/PID/stat` has 10 ms ticks); threads that
/// end between two readings would be lost, but neither proxy starts or ends threads while
/// serving (tokio's blocking pool is unused without redirect rules).
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    cpu_ns: u64,
    switches: u64,
}

impl Counters {
    fn of(pid: &str) -> Counters {
        let mut total = Counters::default();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
            let task = task.unwrap().path();
            // A thread may end between listing and reading.
            let Ok(schedstat) = std::fs::read_to_string(task.join("schedstat")) else {
                continue;
            };
            let Ok(status) = std::fs::read_to_string(task.join("status")) else {
                continue;
            };
            total.cpu_ns += schedstat
                .split_whitespace()
                .next()
                .unwrap()
                .parse::<u64>()
                .unwrap();
            for line in status.lines() {
                if let Some(value) = line
                    .strip_prefix("voluntary_ctxt_switches:")
                    .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
                {
                    total.switches += value.trim().parse::<u64>().unwrap();
                }
            }
        }
        total
    }

    fn since(self, earlier: Counters) -> (f64, u64) {
        (
            (self.cpu_ns - earlier.cpu_ns) as f64 / 1e9,
            self.switches - earlier.switches,
        )
    }
}

// ---------------------------------------------------------------------------------------
// Mesh PKI (as the Coordinator and the Initializer make it)

struct Credentials {
    mesh_ca_pem: String,
    chain_pem: String,
    key_pem: String,
}

impl Credentials {
    fn chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }

    fn write_mesh_dir(&self, dir: &Path) {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join("mesh-ca.pem"), &self.mesh_ca_pem).unwrap();
        std::fs::write(dir.join("certChain.pem"), &self.chain_pem).unwrap();
        std::fs::write(dir.join("key.pem"), &self.key_pem).unwrap();
    }
}

fn workload(ca: &Ca, name: &str) -> Credentials {
    // The Initializer's workload key: ECDSA P-256 (docs/protocol.md §4.3).
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let chain_pem = ca
        .new_mesh_cert(
            &[name.to_owned(), "*".to_owned()],
            &[],
            None,
            &key.subject_public_key_info(),
        )
        .unwrap();
    Credentials {
        mesh_ca_pem: ca.mesh_ca_pem().to_owned(),
        chain_pem,
        key_pem: key.serialize_pem(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Groups {
    /// X25519 only: what OpenSSL 3.0 negotiates, so both proxies do the same.
    X25519,
    /// rustls' default list (X25519MLKEM768 first).
    Default,
}

fn client_config(client: &Credentials, groups: Groups) -> Arc<ClientConfig> {
    client_config_with(client, groups, false)
}

/// `aes128_only`: offer TLS13_AES_128_GCM_SHA256 alone (SHA-256 key schedule).
fn client_config_with(
    client: &Credentials,
    groups: Groups,
    aes128_only: bool,
) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    if groups == Groups::X25519 {
        provider.kx_groups = vec![kx_group::X25519];
    }
    if aes128_only {
        provider.cipher_suites =
            vec![rustls::crypto::aws_lc_rs::cipher_suite::TLS13_AES_128_GCM_SHA256];
    }
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(client.mesh_ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(client.chain(), client.key())
        .unwrap();
    // Every handshake is a full one.
    config.resumption = Resumption::disabled();
    Arc::new(config)
}

// ---------------------------------------------------------------------------------------
// Upstream: a plain TCP server speaking a 9-byte header protocol

/// Header: command byte, then a big-endian u64 length.
/// `E`: read `len` bytes, send them back (repeatable on one connection).
/// `D`: send `len` bytes.  `U`: read `len` bytes, answer with the count (8 bytes).
fn header(command: u8, len: u64) -> [u8; 9] {
    let mut h = [0u8; 9];
    h[0] = command;
    h[1..].copy_from_slice(&len.to_be_bytes());
    h
}

async fn serve_upstream(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = upstream_connection(stream).await;
        });
    }
}

async fn upstream_connection(mut stream: TcpStream) -> io::Result<()> {
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let mut h = [0u8; 9];
        match stream.read_exact(&mut h).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let len = u64::from_be_bytes(h[1..].try_into().unwrap());
        match h[0] {
            b'E' => {
                let n = usize::try_from(len).unwrap().min(CHUNK);
                stream.read_exact(&mut buffer[..n]).await?;
                stream.write_all(&buffer[..n]).await?;
            }
            b'D' => {
                let mut left = len;
                while left > 0 {
                    let n = left.min(CHUNK as u64) as usize;
                    stream.write_all(&buffer[..n]).await?;
                    left -= n as u64;
                }
            }
            b'U' => {
                let mut left = len;
                while left > 0 {
                    let n = stream
                        .read(&mut buffer[..left.min(CHUNK as u64) as usize])
                        .await?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    left -= n as u64;
                }
                stream.write_all(&len.to_be_bytes()).await?;
            }
            _ => return Err(io::Error::other("unknown command")),
        }
    }
}

async fn start_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(serve_upstream(listener));
    address
}

// ---------------------------------------------------------------------------------------
// The proxies

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Mesh,
    Haproxy,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Mesh => "mesh",
            Kind::Haproxy => "haproxy",
        }
    }
}

struct Proxy {
    kind: Kind,
    child: Child,
    address: SocketAddr,
}

impl Proxy {
    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn counters(&self) -> Counters {
        Counters::of(&self.pid())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on now (a leftover haproxy with SO_REUSEPORT would make
/// this bind fail, so it is seen here rather than silently sharing the port).
fn free_port() -> u16 {
    StdTcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until_listening(proxy: &mut Proxy, log: &Path, ready_file: Option<&Path>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = proxy.child.try_wait().unwrap() {
            panic!(
                "{} exited ({status}) before listening:\n{}",
                proxy.kind.name(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        let ready = ready_file.is_none_or(Path::exists);
        if ready && std::net::TcpStream::connect(proxy.address).is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} did not listen on {}",
            proxy.kind.name(),
            proxy.address
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn start_mesh(dir: &Path, upstream: SocketAddr, workers: Option<u64>) -> Proxy {
    let port = free_port();
    let ready = dir.join("ready");
    let log = dir.join("service-mesh.log");
    let mut command = Command::new(env!("CARGO_BIN_EXE_service-mesh"));
    if let Some(workers) = workers {
        command.env("TOKIO_WORKER_THREADS", workers.to_string());
    }
    let child = command
        .args(["--no-redirect", "--ingress-port", &port.to_string()])
        .args(["--ingress-no-client-auth-port", "0"])
        .args(["--ingress-upstream", &upstream.to_string()])
        .arg("--tls-dir")
        .arg(dir)
        .arg("--ready-file")
        .arg(&ready)
        .env_remove("CONTRAST_INGRESS_PROXY_CONFIG")
        .env_remove("CONTRAST_EGRESS_PROXY_CONFIG")
        .env_remove("CONTRAST_ADMIN_PORT")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut proxy = Proxy {
        kind: Kind::Mesh,
        child,
        address: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    wait_until_listening(&mut proxy, &log, Some(&ready));
    proxy
}

fn start_haproxy(dir: &Path, server: &Credentials, upstream: SocketAddr) -> Proxy {
    std::fs::create_dir_all(dir).unwrap();
    let crt = dir.join("server.pem");
    std::fs::write(&crt, format!("{}{}", server.chain_pem, server.key_pem)).unwrap();
    let ca = dir.join("mesh-ca.pem");
    std::fs::write(&ca, &server.mesh_ca_pem).unwrap();
    let port = free_port();
    let config = format!(
        "global\n  nbthread 2\n  maxconn 4096\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n\
         frontend mtls\n  bind 127.0.0.1:{port} ssl crt {crt} ca-file {ca} verify required ssl-min-ver TLSv1.3\n  \
         default_backend upstream\n\
         backend upstream\n  server up {upstream}\n",
        crt = crt.display(),
        ca = ca.display(),
    );
    let config_file = dir.join("haproxy.cfg");
    std::fs::write(&config_file, config).unwrap();
    let log = dir.join("haproxy.log");
    // -db: foreground, no fork, so the child's PID is the one doing the work.
    let child = Command::new("haproxy")
        .arg("-db")
        .arg("-f")
        .arg(&config_file)
        .stdin(Stdio::null())
        .stdout(File::create(dir.join("haproxy.out")).unwrap())
        .stderr(File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut proxy = Proxy {
        kind: Kind::Haproxy,
        child,
        address: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    wait_until_listening(&mut proxy, &log, None);
    proxy
}

// ---------------------------------------------------------------------------------------
// Clients

async fn tls_connect(
    address: SocketAddr,
    config: Arc<ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(address).await?;
    tcp.set_nodelay(true)?;
    TlsConnector::from(config)
        .connect(ServerName::try_from("server").unwrap(), tcp)
        .await
}

/// Sends one small request on an established connection and checks the reply.
async fn small_request(tls: &mut TlsStream<TcpStream>, tag: u8) -> io::Result<()> {
    let mut request = [tag; 9 + SMALL];
    request[..9].copy_from_slice(&header(b'E', SMALL as u64));
    tls.write_all(&request).await?;
    tls.flush().await?;
    let mut reply = [0u8; SMALL];
    tls.read_exact(&mut reply).await?;
    if reply != [tag; SMALL] {
        return Err(io::Error::other("wrong reply"));
    }
    Ok(())
}

/// Connect, full handshake, one small request; returns the time to the reply.
async fn one_connection(address: SocketAddr, config: Arc<ClientConfig>) -> io::Result<Duration> {
    let start = Instant::now();
    let mut tls = tls_connect(address, config).await?;
    small_request(&mut tls, 0x5a).await?;
    let elapsed = start.elapsed();
    let _ = tls.shutdown().await;
    Ok(elapsed)
}

/// What was negotiated, for the record.
async fn negotiated(address: SocketAddr, config: Arc<ClientConfig>) -> String {
    let mut tls = tls_connect(address, config).await.unwrap();
    small_request(&mut tls, 1).await.unwrap();
    let (_, connection) = tls.get_ref();
    let text = format!(
        "{:?}, {:?}, group {:?}",
        connection.protocol_version().unwrap(),
        connection.negotiated_cipher_suite().unwrap().suite(),
        connection
            .negotiated_key_exchange_group()
            .map(|g| g.name())
            .unwrap(),
    );
    let _ = tls.shutdown().await;
    text
}

struct Measured {
    /// The proxy's CPU seconds.
    proxy_cpu: f64,
    /// The proxy's context switches.
    proxy_switches: u64,
    /// This process's CPU seconds (client and upstream).
    bench_cpu: f64,
    wall: f64,
}

/// Runs `work`, measuring the proxy's and this process's CPU and the wall time.
async fn measured<F: std::future::Future<Output = T>, T>(proxy: &Proxy, work: F) -> (Measured, T) {
    let proxy_before = proxy.counters();
    let bench_before = Counters::of("self");
    let start = Instant::now();
    let output = work.await;
    let wall = start.elapsed().as_secs_f64();
    let (proxy_cpu, proxy_switches) = proxy.counters().since(proxy_before);
    let (bench_cpu, _) = Counters::of("self").since(bench_before);
    let measured = Measured {
        proxy_cpu,
        proxy_switches,
        bench_cpu,
        wall,
    };
    (measured, output)
}

async fn handshakes(
    address: SocketAddr,
    config: Arc<ClientConfig>,
    count: usize,
    concurrency: usize,
) -> Vec<Duration> {
    let tickets = Arc::new(AtomicUsize::new(count));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let tickets = tickets.clone();
        let config = config.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while tickets
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| t.checked_sub(1))
                .is_ok()
            {
                latencies.push(one_connection(address, config.clone()).await.unwrap());
            }
            latencies
        }));
    }
    let mut all = Vec::with_capacity(count);
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all
}

/// Small requests on one established connection per proxy, the proxies taking turns
/// request by request (first one, then the other, alternating who goes first), so the
/// machine's other load hits both alike. Returns the latencies per proxy, in `proxies`'
/// order.
async fn request_latencies(
    proxies: &[&Proxy],
    config: Arc<ClientConfig>,
    count: usize,
) -> Vec<Vec<Duration>> {
    let mut connections = Vec::new();
    for proxy in proxies {
        let mut tls = tls_connect(proxy.address, config.clone()).await.unwrap();
        for _ in 0..100 {
            small_request(&mut tls, 2).await.unwrap();
        }
        connections.push(tls);
    }
    let mut latencies = vec![Vec::with_capacity(count); proxies.len()];
    for i in 0..count {
        let turn: Vec<usize> = if i % 2 == 0 {
            (0..proxies.len()).collect()
        } else {
            (0..proxies.len()).rev().collect()
        };
        for p in turn {
            let start = Instant::now();
            small_request(&mut connections[p], (i % 251) as u8)
                .await
                .unwrap();
            latencies[p].push(start.elapsed());
        }
    }
    for mut tls in connections {
        let _ = tls.shutdown().await;
    }
    latencies
}

async fn bulk(address: SocketAddr, config: Arc<ClientConfig>, download: bool, len: u64) {
    let mut tls = tls_connect(address, config).await.unwrap();
    let mut buffer = vec![0u8; CHUNK];
    if download {
        tls.write_all(&header(b'D', len)).await.unwrap();
        tls.flush().await.unwrap();
        let mut left = len;
        while left > 0 {
            let n = tls.read(&mut buffer).await.unwrap();
            assert!(n > 0, "download ended {left} bytes early");
            left -= n as u64;
        }
    } else {
        tls.write_all(&header(b'U', len)).await.unwrap();
        let mut left = len;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            tls.write_all(&buffer[..n]).await.unwrap();
            left -= n as u64;
        }
        tls.flush().await.unwrap();
        let mut count = [0u8; 8];
        tls.read_exact(&mut count).await.unwrap();
        assert_eq!(u64::from_be_bytes(count), len, "upload count");
    }
    let _ = tls.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Statistics

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Results by metric, then proxy: one value per round.
#[derive(Default)]
struct Results(BTreeMap<&'static str, BTreeMap<Kind, Vec<f64>>>);

impl Results {
    fn add(&mut self, metric: &'static str, kind: Kind, value: f64) {
        self.0
            .entry(metric)
            .or_default()
            .entry(kind)
            .or_default()
            .push(value);
    }

    fn values(&self, metric: &str, kind: Kind) -> &[f64] {
        self.0
            .get(metric)
            .and_then(|m| m.get(&kind))
            .map_or(&[], Vec::as_slice)
    }

    /// Median over the rounds of the per-round ratio mesh/haproxy (paired, so drift of the
    /// machine's load between rounds cancels).
    fn paired_ratio(&self, metric: &str) -> Option<f64> {
        let mesh = self.values(metric, Kind::Mesh);
        let haproxy = self.values(metric, Kind::Haproxy);
        if mesh.is_empty() || mesh.len() != haproxy.len() {
            return None;
        }
        let ratios: Vec<f64> = mesh.iter().zip(haproxy).map(|(m, h)| m / h).collect();
        Some(median(&ratios))
    }
}

// ---------------------------------------------------------------------------------------
// In-process attribution: the proxy's handshake without sockets, and its primitives

struct FlightCosts {
    /// Creating the ServerConnection.
    setup: f64,
    /// ClientHello in, ServerHello … Finished out (key exchange, key schedule, signature).
    first: f64,
    /// Client Certificate, CertificateVerify, Finished in (chain and signature check),
    /// session tickets out.
    second: f64,
}

fn median_us(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    us(samples[samples.len() / 2])
}

/// One in-memory handshake; the server side's durations of: creating the connection,
/// flight 1, flight 2.
fn server_steps(server: &Arc<ServerConfig>, client: &Arc<ClientConfig>) -> [Duration; 3] {
    let name = ServerName::try_from("server").unwrap();
    let mut c: rustls::Connection = rustls::ClientConnection::new(client.clone(), name)
        .unwrap()
        .into();
    let t0 = Instant::now();
    let mut s: rustls::Connection = rustls::ServerConnection::new(server.clone())
        .unwrap()
        .into();
    let setup = t0.elapsed();
    let mut hello = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut hello).unwrap();
    }
    let t1 = Instant::now();
    let mut slice = hello.as_slice();
    while !slice.is_empty() {
        s.read_tls(&mut slice).unwrap();
        s.process_new_packets().unwrap();
    }
    let mut flight = Vec::new();
    while s.wants_write() {
        s.write_tls(&mut flight).unwrap();
    }
    let first = t1.elapsed();
    let mut slice = flight.as_slice();
    while !slice.is_empty() {
        c.read_tls(&mut slice).unwrap();
        c.process_new_packets().unwrap();
    }
    let mut answer = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut answer).unwrap();
    }
    let t2 = Instant::now();
    let mut slice = answer.as_slice();
    while !slice.is_empty() {
        s.read_tls(&mut slice).unwrap();
        s.process_new_packets().unwrap();
    }
    let mut tickets = Vec::new();
    while s.wants_write() {
        s.write_tls(&mut tickets).unwrap();
    }
    let second = t2.elapsed();
    assert!(!s.is_handshaking() && !c.is_handshaking());
    [setup, first, second]
}

/// Server side of in-memory handshakes for each variant, the variants taking turns so
/// the machine's changing load affects them alike: median µs per step.
///
/// Medians of wall time: a step the machine's other load preempts is an outlier, not a
/// shift (thread CPU clocks from /proc lag by up to a scheduler tick).
fn server_flights(
    variants: &[(Arc<ServerConfig>, Arc<ClientConfig>)],
    n: usize,
) -> Vec<FlightCosts> {
    let mut samples = vec![[Vec::new(), Vec::new(), Vec::new()]; variants.len()];
    for round in 0..n + 10 {
        for ((server, client), samples) in variants.iter().zip(&mut samples) {
            let steps = server_steps(server, client);
            // The first rounds warm up.
            if round >= 10 {
                for (step, sample) in steps.into_iter().zip(samples.iter_mut()) {
                    sample.push(step);
                }
            }
        }
    }
    samples
        .into_iter()
        .map(|[setup, first, second]| FlightCosts {
            setup: median_us(setup),
            first: median_us(first),
            second: median_us(second),
        })
        .collect()
}

/// Median µs per call of `op` over batches of 10 calls (`n` calls in all).
fn cost(n: usize, mut op: impl FnMut()) -> f64 {
    let batches = (n / 10).max(5);
    let mut samples = Vec::with_capacity(batches);
    for _ in 0..batches {
        let start = Instant::now();
        for _ in 0..10 {
            op();
        }
        samples.push(start.elapsed() / 10);
    }
    median_us(samples)
}

/// A client-certificate verifier that remembers the last chain it accepted: a sketch of
/// the proposed cache, to measure what skipping the chain check saves (a real one would
/// key by hash, keep several entries, re-check validity times and live in `MeshTls`, so a
/// reload empties it). The CertificateVerify signature is still checked every time.
#[derive(Debug)]
struct CachingVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    accepted: Mutex<Vec<u8>>,
}

impl ClientCertVerifier for CachingVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let mut key = end_entity.to_vec();
        for cert in intermediates {
            key.extend_from_slice(cert);
        }
        if *self.accepted.lock().unwrap() == key {
            return Ok(ClientCertVerified::assertion());
        }
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        *self.accepted.lock().unwrap() = key;
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The proxy's server configuration (same provider, versions, verifier, certificate),
/// with the chain check behind [`CachingVerifier`].
fn caching_server_config(server: &Credentials) -> Arc<ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(server.mesh_ca_pem.as_bytes()).unwrap())
        .unwrap();
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let verifier = Arc::new(CachingVerifier {
        inner,
        accepted: Mutex::new(Vec::new()),
    });
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(server.chain(), server.key())
        .unwrap();
    Arc::new(config)
}

fn attribution(server: &Credentials, client: &Credentials, settings: &Settings) -> String {
    let mut out = String::new();
    let mesh = MeshTls::from_pem(
        server.mesh_ca_pem.as_bytes(),
        server.chain_pem.as_bytes(),
        server.key_pem.as_bytes(),
    )
    .unwrap();
    let server_config = mesh.server_config(ClientAuth::Required);
    let n = settings.breakdown_handshakes;
    writeln!(
        out,
        "in-process server side of a full mTLS handshake with the proxy's own ServerConfig \
         (median µs of {n} handshakes):"
    )
    .unwrap();
    let mut no_tickets = (*server_config).clone();
    no_tickets.send_tls13_tickets = 0;
    let no_tickets = Arc::new(no_tickets);
    let x25519 = client_config(client, Groups::X25519);
    let variants = [
        ("X25519", server_config.clone(), x25519.clone()),
        ("X25519, no tickets", no_tickets, x25519.clone()),
        (
            "X25519, chain cached",
            caching_server_config(server),
            x25519.clone(),
        ),
        (
            "X25519, AES-128/SHA-256",
            server_config.clone(),
            client_config_with(client, Groups::X25519, true),
        ),
        (
            "X25519MLKEM768",
            server_config.clone(),
            client_config(client, Groups::Default),
        ),
    ];
    let configs: Vec<_> = variants
        .iter()
        .map(|(_, server, client)| (server.clone(), client.clone()))
        .collect();
    for ((label, _, _), f) in variants.iter().zip(server_flights(&configs, n)) {
        writeln!(
            out,
            "  {label:<24} new {:>5.1}  flight 1 (ClientHello→Finished) {:>6.1}  \
             flight 2 (client cert…Finished, tickets) {:>6.1}  sum {:>6.1}",
            f.setup,
            f.first,
            f.second,
            f.setup + f.first + f.second
        )
        .unwrap();
    }
    // The primitives the server side consists of.
    let rng = SystemRandom::new();
    let message = [7u8; 130];
    let p256 = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        server.key().secret_der(),
    )
    .unwrap();
    let p256_sig = p256.sign(&rng, &message).unwrap();
    let p256_public = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_ASN1,
        p256.public_key().as_ref().to_vec(),
    );
    let p384_doc =
        EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P384_SHA384_ASN1_SIGNING, &rng).unwrap();
    let p384 = EcdsaKeyPair::from_pkcs8(
        &signature::ECDSA_P384_SHA384_ASN1_SIGNING,
        p384_doc.as_ref(),
    )
    .unwrap();
    let p384_sig = p384.sign(&rng, &message).unwrap();
    let p384_public = signature::UnparsedPublicKey::new(
        &signature::ECDSA_P384_SHA384_ASN1,
        p384.public_key().as_ref().to_vec(),
    );
    let peer_x25519 = kx_group::X25519.start().unwrap().pub_key().to_vec();
    let peer_hybrid = kx_group::X25519MLKEM768.start().unwrap().pub_key().to_vec();
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(client.mesh_ca_pem.as_bytes()).unwrap())
        .unwrap();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
    )
    .build()
    .unwrap();
    let chain = client.chain();
    let now = UnixTime::now();
    let m = n.max(100);
    let x25519 = cost(m, || {
        kx_group::X25519.start_and_complete(&peer_x25519).unwrap();
    });
    let hybrid = cost(m, || {
        kx_group::X25519MLKEM768
            .start_and_complete(&peer_hybrid)
            .unwrap();
    });
    let sign = cost(m, || {
        p256.sign(&rng, &message).unwrap();
    });
    let verify256 = cost(m, || {
        p256_public.verify(&message, p256_sig.as_ref()).unwrap()
    });
    let verify384 = cost(m, || {
        p384_public.verify(&message, p384_sig.as_ref()).unwrap()
    });
    let chain_check = cost(m, || {
        verifier
            .verify_client_cert(&chain[0], &chain[1..], now)
            .unwrap();
    });
    writeln!(
        out,
        "aws-lc-rs primitives (median µs): X25519 server share+agree {x25519:.1}, \
         X25519MLKEM768 server side {hybrid:.1}, P-256 sign {sign:.1}, P-256 verify \
         {verify256:.1}, P-384 verify {verify384:.1}, client chain check (webpki, one P-384 \
         verify) {chain_check:.1}"
    )
    .unwrap();
    writeln!(
        out,
        "  crypto bound of the server side (X25519 + P-256 sign + P-256 verify + chain check): \
         {:.1} µs",
        x25519 + sign + verify256 + chain_check
    )
    .unwrap();
    out
}

/// `openssl speed` for the baseline's primitives (divides by user CPU, so load matters
/// little); µs per operation.
fn openssl_speed() -> Option<String> {
    let output = Command::new("openssl")
        .args([
            "speed",
            "-seconds",
            "1",
            "ecdsap256",
            "ecdsap384",
            "ecdhx25519",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let numbers = |needle: &str| -> Option<Vec<f64>> {
        let line = text.lines().find(|l| l.contains(needle))?;
        Some(
            line.split_whitespace()
                .rev()
                .map_while(|w| w.parse::<f64>().ok())
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect(),
        )
    };
    let p256 = numbers("(nistp256)")?;
    let p384 = numbers("(nistp384)")?;
    let x25519 = numbers("(X25519)")?;
    let (sign256, verify256) = (1e6 / p256[0], 1e6 / p256[1]);
    let verify384 = 1e6 / p384[1];
    let derive = 1e6 / x25519[0];
    Some(format!(
        "OpenSSL 3.0 primitives (openssl speed, µs): X25519 derive {derive:.1}, P-256 sign \
         {sign256:.1}, P-256 verify {verify256:.1}, P-384 sign {:.1}, P-384 verify \
         {verify384:.1}\n  crypto bound of haproxy's server side (2×X25519 + P-256 sign + \
         P-256 verify + P-384 verify): {:.1} µs",
        1e6 / p384[0],
        2.0 * derive + sign256 + verify256 + verify384
    ))
}

// ---------------------------------------------------------------------------------------

fn main() {
    let settings = Settings::from_args();
    let Ok(version) = Command::new("haproxy").arg("-vv").output() else {
        println!("vs_haproxy: haproxy not found on PATH; skipped (apt-get install haproxy)");
        return;
    };
    let version = String::from_utf8_lossy(&version.stdout);
    for line in version
        .lines()
        .filter(|l| l.starts_with("HAProxy version") || l.starts_with("Running on OpenSSL version"))
    {
        println!("{line}");
    }
    println!("settings: {settings:?}");
    let ticks = clock_ticks();
    let started = Instant::now();

    let root_key = contrast_ca::generate_mesh_key().unwrap();
    let ca = Ca::new(&root_key, &contrast_ca::generate_mesh_key().unwrap()).unwrap();
    let server = workload(&ca, "server");
    let client = workload(&ca, "client");
    let dir = tempfile::tempdir().unwrap();
    let mesh_dir = dir.path().join("mesh");
    server.write_mesh_dir(&mesh_dir);
    let haproxy_dir: PathBuf = dir.path().join("haproxy");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // One upstream per proxy, so neither runs short of ports to its upstream.
    let (mesh_upstream, haproxy_upstream) =
        runtime.block_on(async { (start_upstream().await, start_upstream().await) });
    let mesh = start_mesh(&mesh_dir, mesh_upstream, settings.mesh_workers);
    let haproxy = start_haproxy(&haproxy_dir, &server, haproxy_upstream);
    let proxies = [&mesh, &haproxy];

    let x25519 = client_config(&client, Groups::X25519);
    let default_groups = client_config(&client, Groups::Default);

    runtime.block_on(async {
        for proxy in proxies {
            for (label, config) in [
                ("X25519 client", &x25519),
                ("default client", &default_groups),
            ] {
                println!(
                    "{:<8} {label:<15}: {}",
                    proxy.kind.name(),
                    negotiated(proxy.address, config.clone()).await
                );
            }
            // Warm-up: allocators, thread pools, page cache.
            handshakes(proxy.address, x25519.clone(), 50, settings.concurrency).await;
            bulk(proxy.address, x25519.clone(), true, 16 << 20).await;
            bulk(proxy.address, x25519.clone(), false, 16 << 20).await;
        }
    });

    for proxy in proxies {
        println!("{:<8} PID {}", proxy.kind.name(), proxy.pid());
    }
    println!();
    if settings.only.is_none() {
        print!("{}", attribution(&server, &client, &settings));
    }
    if !settings.quick
        && settings.only.is_none()
        && let Some(speed) = openssl_speed()
    {
        println!("{speed}");
    }
    println!();

    let cross_check: Vec<(f64, Counters)> = proxies
        .iter()
        .map(|p| (process_cpu_ticks(&p.pid(), ticks), p.counters()))
        .collect();
    let mut results = Results::default();
    for round in 0..settings.rounds {
        // A B, then B A: neither proxy always goes first.
        let order: Vec<&Proxy> = if round % 2 == 0 {
            proxies.to_vec()
        } else {
            proxies.iter().rev().copied().collect()
        };
        runtime.block_on(async {
            if settings.runs("handshakes") {
                for proxy in &order {
                    let kind = proxy.kind;
                    let n = settings.handshakes;
                    let (m, mut latencies) = measured(
                        proxy,
                        handshakes(proxy.address, x25519.clone(), n, settings.concurrency),
                    )
                    .await;
                    latencies.sort();
                    let cpu = m.proxy_cpu / n as f64 * 1e3;
                    results.add("handshake CPU ms", kind, cpu);
                    results.add("handshakes/s", kind, n as f64 / m.wall);
                    results.add("connection p50 ms", kind, ms(percentile(&latencies, 0.5)));
                    results.add("connection p99 ms", kind, ms(percentile(&latencies, 0.99)));
                    let switches = m.proxy_switches as f64 / n as f64;
                    results.add("handshake context switches", kind, switches);
                    println!(
                        "round {} {:<8} handshakes (X25519): {cpu:.3} ms CPU each, {:.0}/s, \
                         {switches:.1} context switches each, connect+handshake+request p50 \
                         {:.2} ms p99 {:.2} ms; client+upstream {:.3} ms CPU each",
                        round + 1,
                        kind.name(),
                        n as f64 / m.wall,
                        ms(percentile(&latencies, 0.5)),
                        ms(percentile(&latencies, 0.99)),
                        m.bench_cpu / n as f64 * 1e3,
                    );
                }
            }
            if settings.runs("default-groups") {
                for proxy in &order {
                    let kind = proxy.kind;
                    let n = settings.default_group_handshakes;
                    let (m, _) = measured(
                        proxy,
                        handshakes(
                            proxy.address,
                            default_groups.clone(),
                            n,
                            settings.concurrency,
                        ),
                    )
                    .await;
                    let cpu = m.proxy_cpu / n as f64 * 1e3;
                    results.add("handshake CPU ms, default client groups", kind, cpu);
                    println!(
                        "round {} {:<8} handshakes (client default groups): {cpu:.3} ms CPU each",
                        round + 1,
                        kind.name(),
                    );
                }
            }
            if settings.runs("requests") {
                let n = settings.requests;
                let before: Vec<Counters> = order.iter().map(|p| p.counters()).collect();
                let all = request_latencies(&order, x25519.clone(), n).await;
                for ((proxy, mut latencies), before) in order.iter().zip(all).zip(before) {
                    let kind = proxy.kind;
                    let (cpu, switches) = proxy.counters().since(before);
                    latencies.sort();
                    let (p50, p99, p999) = (
                        us(percentile(&latencies, 0.5)),
                        us(percentile(&latencies, 0.99)),
                        us(percentile(&latencies, 0.999)),
                    );
                    // The connection set-up is in the CPU too: one handshake in n + 100
                    // requests.
                    let cpu = cpu / n as f64 * 1e6;
                    let switches = switches as f64 / n as f64;
                    results.add("request p50 µs", kind, p50);
                    results.add("request p99 µs", kind, p99);
                    results.add("request CPU µs", kind, cpu);
                    results.add("request context switches", kind, switches);
                    println!(
                        "round {} {:<8} small requests (taking turns): p50 {p50:.0} µs p99 \
                         {p99:.0} µs p99.9 {p999:.0} µs, {cpu:.1} µs CPU and {switches:.2} \
                         context switches each",
                        round + 1,
                        kind.name(),
                    );
                }
            }
            if settings.runs("bulk") {
                for (direction, download) in [("download", true), ("upload", false)] {
                    for proxy in &order {
                        let kind = proxy.kind;
                        let len = settings.bulk_bytes;
                        let (m, ()) =
                            measured(proxy, bulk(proxy.address, x25519.clone(), download, len)).await;
                        let gib = len as f64 / GIB;
                        let per_gib = m.proxy_cpu / gib;
                        let rate = len as f64 / MIB / m.wall;
                        let (cpu_metric, rate_metric) = if download {
                            ("download CPU s/GiB", "download MiB/s")
                        } else {
                            ("upload CPU s/GiB", "upload MiB/s")
                        };
                        results.add(cpu_metric, kind, per_gib);
                        results.add(rate_metric, kind, rate);
                        println!(
                            "round {} {:<8} bulk {direction}: {per_gib:.3} CPU-s/GiB, {rate:.0} MiB/s; \
                             client+upstream {:.3} CPU-s/GiB",
                            round + 1,
                            kind.name(),
                            m.bench_cpu / gib,
                        );
                    }
                }
            }
        });
    }

    println!();
    println!(
        "{:<40} {:>10} {:>10} {:>14} {:>14}",
        "median over rounds", "mesh", "haproxy", "ratio of med.", "paired ratio"
    );
    for (metric, by_kind) in &results.0 {
        let mesh_median = median(by_kind.get(&Kind::Mesh).map_or(&[][..], Vec::as_slice));
        let haproxy_median = median(by_kind.get(&Kind::Haproxy).map_or(&[][..], Vec::as_slice));
        println!(
            "{metric:<40} {mesh_median:>10.3} {haproxy_median:>10.3} {:>14.3} {:>14.3}",
            mesh_median / haproxy_median,
            results.paired_ratio(metric).unwrap_or(f64::NAN),
        );
    }
    let quietest = |kind| {
        results
            .values("request p99 µs", kind)
            .iter()
            .copied()
            .fold(f64::INFINITY, f64::min)
    };
    if settings.runs("requests") {
        // Whichever proxy shares a core with a busy neighbour in a round gets ms-scale
        // tails; the quietest round shows the proxies' own tails.
        println!(
            "request p99 µs in each proxy's quietest round: mesh {:.0}, haproxy {:.0}",
            quietest(Kind::Mesh),
            quietest(Kind::Haproxy)
        );
    }
    println!();
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    if let Some(handshake) = results.paired_ratio("handshake CPU ms") {
        println!(
            "goal: CPU per handshake ≤ 1/3 of haproxy's: ratio {handshake:.3} → {}",
            verdict(handshake <= 1.0 / 3.0)
        );
    }
    for metric in ["download CPU s/GiB", "upload CPU s/GiB"] {
        if let Some(ratio) = results.paired_ratio(metric) {
            println!(
                "goal: {metric} ≤ haproxy's: ratio {ratio:.3} → {}",
                verdict(ratio <= 1.0)
            );
        }
    }
    for (proxy, (ticks_before, counters_before)) in proxies.iter().zip(&cross_check) {
        let (schedstat, _) = proxy.counters().since(*counters_before);
        println!(
            "cross-check {:<8} CPU over the rounds: schedstat {schedstat:.2} s, /proc/PID/stat \
             {:.2} s",
            proxy.kind.name(),
            process_cpu_ticks(&proxy.pid(), ticks) - ticks_before
        );
    }
    println!("total time {:.0} s", started.elapsed().as_secs_f64());
    drop(mesh);
    drop(haproxy);
}
