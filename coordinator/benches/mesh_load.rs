//! Load generator for the mesh API: N concurrent simulated initializers request mesh
//! certificates over mutual aTLS on loopback from a Coordinator running in this process.
//!
//! It prints throughput and latency, and the crypto bound measured in the same run: every
//! public-key operation one request costs on both sides (signatures, verifications, key
//! generations and key agreements), each timed with aws-lc-rs before and after the load
//! (the mean of the fastest of 5 batches), summed, and turned into certificates per second
//! for the cores this process may use (client and server share them). The goal is a
//! throughput of at least 60 % of that bound.
//!
//! The simulated AMD's work (a fresh VCEK per report, signed with the RSA-4096 ASK, and the
//! report signature) runs on these cores, so it is counted, on both sides; the lines marked
//! `*` are what hardware evidence would not cost, and a second bound leaves them out.
//!
//! `--handshake-only` runs the same connections without HTTP/2, gRPC and the mesh
//! certificate (the handshake and the TLS close), against the bound without the
//! certificate's signature: the ratio the full request could reach if those cost nothing
//! (docs/performance.md §1).
//!
//! ```text
//! cargo bench -p contrast-coordinator --bench mesh_load -- --clients 16 --requests 2000
//! cargo bench -p contrast-coordinator --bench mesh_load -- --quick
//! cargo bench -p contrast-coordinator --bench mesh_load -- --handshake-only
//! ```

// A benchmark binary reports to the terminal and fails loudly on set-up errors.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING,
    ECDSA_P384_SHA384_FIXED, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
    RSA_PSS_2048_8192_SHA384, RSA_PSS_SHA384, RsaKeyPair, UnparsedPublicKey,
};
use contrast_atls::{ClientOptions, Issuer, ValidatorSet};
use contrast_attestation::snp::SnpVerifier;
use contrast_coordinator::Ports;
use contrast_testkit::{
    Deployment, TempDir, initializer_options, new_mesh_cert, random_loopback, set_manifest,
};
use rustls::crypto::SupportedKxGroup;

// The Coordinator binary's allocator: this process runs the Coordinator.
#[global_allocator]
static ALLOCATOR: contrast_coordinator::Allocator = contrast_coordinator::ALLOCATOR;

/// Command-line settings.
#[derive(Debug, Clone)]
struct Settings {
    clients: usize,
    requests: usize,
    warmup: usize,
    iterations: usize,
    tracing: bool,
    /// Only the aTLS handshake, as an initializer makes it, and the TLS close: no HTTP/2,
    /// no gRPC, no mesh certificate. What the ratio could reach if those were free.
    handshake_only: bool,
    /// Profiling aid: run one composite operation `requests` times instead of the load.
    spin: Option<String>,
}

impl Settings {
    fn parse() -> anyhow::Result<Self> {
        let mut settings = Settings {
            clients: 16,
            requests: 2000,
            warmup: 32,
            iterations: 200,
            tracing: false,
            handshake_only: false,
            spin: None,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> anyhow::Result<usize> {
                let value = args
                    .next()
                    .with_context(|| format!("{name} needs a number"))?;
                let n: usize = value
                    .parse()
                    .with_context(|| format!("{name} {value}: not a number"))?;
                if n == 0 {
                    bail!("{name} must be at least 1");
                }
                Ok(n)
            };
            match arg.as_str() {
                "--clients" => settings.clients = number("--clients")?,
                "--requests" => settings.requests = number("--requests")?,
                "--warmup" => settings.warmup = number("--warmup")?,
                "--iterations" => settings.iterations = number("--iterations")?,
                "--quick" => {
                    settings.clients = 4;
                    settings.requests = 200;
                    settings.warmup = 8;
                    settings.iterations = 40;
                }
                "--tracing" => settings.tracing = true,
                "--handshake-only" => settings.handshake_only = true,
                "--spin" => {
                    settings.spin = Some(args.next().context("--spin needs an operation")?);
                }
                // cargo bench passes --bench to harness-less targets.
                "--bench" => {}
                "-h" | "--help" => {
                    println!(
                        "mesh_load [--clients N] [--requests R] [--warmup W] [--iterations K] \
                         [--quick] [--tracing] [--handshake-only]\n  \
                         --clients     concurrent simulated initializers (16)\n  \
                         --requests    measured NewMeshCert requests (2000)\n  \
                         --warmup      requests before measuring (32)\n  \
                         --iterations  runs per crypto primitive, in 5 batches (200)\n  \
                         --quick       4 clients, 200 requests, 40 iterations\n  \
                         --tracing     log at info to a sink, as the coordinator binary does\n  \
                         --handshake-only  only the aTLS handshakes and TLS closes (no HTTP/2, \
                         gRPC or mesh certificate): the ceiling if those cost nothing\n  \
                         --spin OP     profiling aid: only run OP (evidence, snp-verify) \
                         --requests times, e.g. under perf record"
                    );
                    std::process::exit(0);
                }
                other => bail!("unknown argument {other}; see --help"),
            }
        }
        Ok(settings)
    }
}

fn main() -> anyhow::Result<()> {
    let settings = Settings::parse()?;
    if settings.tracing {
        // What the coordinator binary installs, minus the terminal: formatting cost only.
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_writer(std::io::sink)
            .init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(settings))
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "mesh_load: {} clients, {} requests ({} warm-up), {} iterations per primitive, \
         {cores} cores, tracing {}, load average before: {}{}",
        settings.clients,
        settings.requests,
        settings.warmup,
        settings.iterations,
        if settings.tracing { "on" } else { "off" },
        load_average(),
        if settings.handshake_only {
            ", handshake only (no HTTP/2, gRPC or mesh certificate)"
        } else {
            ""
        }
    );

    let deployment = Arc::new(
        tokio::task::spawn_blocking(|| Deployment::new(&["web"]))
            .await
            .context("creating the simulated deployment")?,
    );
    if let Some(op) = &settings.spin {
        return spin(&deployment, op, settings.requests);
    }
    let store = TempDir::new("mesh-load-store");
    let ip = random_loopback();
    let ports = Ports::default();
    let config = common::sim_snp_config(&deployment, store.path(), ip, Duration::ZERO);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let coordinator = tokio::spawn(contrast_coordinator::run(config, async {
        let _ = stop_rx.await;
    }));
    let user_addr = format!("{ip}:{}", ports.user);
    let mesh_addr = format!("{ip}:{}", ports.mesh);
    if let Err(e) = set_manifest(&deployment, &user_addr).await {
        // A Coordinator that could not start says why better than the client does.
        if coordinator.is_finished() {
            coordinator.await??;
        }
        bail!(e);
    }

    let issuer = deployment.issuer("web");
    let fresh_vcek = issues_fresh_vcek(issuer.as_ref())?;
    let handshake = probe_handshake(&mesh_addr, issuer.clone()).await?;
    println!(
        "handshake: {:?}, {:?}, key exchange {:?}",
        handshake.version, handshake.suite, handshake.group_name
    );

    let before = {
        let deployment = deployment.clone();
        let iterations = settings.iterations;
        let group = handshake.group;
        tokio::task::spawn_blocking(move || measure_primitives(&deployment, group, iterations))
            .await??
    };

    // Warm-up: connections, allocator, caches.
    let _ = load(&mesh_addr, &issuer, &settings, settings.warmup).await;
    let cpu_start = process_cpu_time();
    let started = Instant::now();
    let outcome = load(&mesh_addr, &issuer, &settings, settings.requests).await;
    let wall = started.elapsed();
    let cpu = process_cpu_time().saturating_sub(cpu_start);

    let after = {
        let deployment = deployment.clone();
        let iterations = settings.iterations;
        let group = handshake.group;
        tokio::task::spawn_blocking(move || measure_primitives(&deployment, group, iterations))
            .await??
    };
    let _ = stop_tx.send(());
    coordinator
        .await
        .context("the coordinator task")?
        .context("the coordinator")?;

    let measured = Measured {
        outcome: &outcome,
        wall,
        cpu,
        before: &before,
        after: &after,
    };
    report(&settings, cores, fresh_vcek, &measured);
    if let Some(error) = &outcome.first_error {
        bail!("{} requests failed; the first: {error}", outcome.failures);
    }
    Ok(())
}

/// Whether the simulator signs every report with a new VCEK (then each request pays for
/// the VCEK's key and certificate, and the Coordinator's chain cache misses).
fn issues_fresh_vcek(issuer: &dyn Issuer) -> anyhow::Result<bool> {
    let vcek = || -> anyhow::Result<Option<Vec<u8>>> {
        let (_, document) = issuer.issue(&[0; 64])?;
        Ok(contrast_attestation::document::decode_snp(&document)?.1.vek)
    };
    Ok(vcek()? != vcek()?)
}

/// Runs one composite operation `count` times and prints its mean duration.
fn spin(deployment: &Deployment, op: &str, count: usize) -> anyhow::Result<()> {
    let issuer = deployment.issuer("web");
    let verifier = SnpVerifier::new(deployment.amd.trust_anchor());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let documents: Vec<Vec<u8>> = match op {
        "evidence" => Vec::new(),
        "snp-verify" => (0..count)
            .map(|_| issuer.issue(&[7; 64]).map(|(_, d)| d))
            .collect::<Result<_, _>>()?,
        other => bail!("--spin {other}: use evidence or snp-verify"),
    };
    let start = Instant::now();
    if documents.is_empty() {
        for _ in 0..count {
            black_box(issuer.issue(&[7; 64])?);
        }
    }
    for document in &documents {
        let (report, endorsements) = contrast_attestation::document::decode_snp(document)?;
        black_box(verifier.verify(&report, &endorsements, now)?);
    }
    println!(
        "{op}: {count} runs, mean {:.1} µs",
        start.elapsed().as_secs_f64() * 1e6 / count as f64
    );
    Ok(())
}

/// What the mesh API's handshake negotiates.
struct Handshake {
    version: Option<rustls::ProtocolVersion>,
    suite: Option<rustls::CipherSuite>,
    group_name: Option<rustls::NamedGroup>,
    group: &'static dyn SupportedKxGroup,
}

/// One mutual aTLS handshake as an initializer makes it, to learn the key-exchange group.
async fn probe_handshake(mesh_addr: &str, issuer: Arc<dyn Issuer>) -> anyhow::Result<Handshake> {
    let options = ClientOptions::new(ValidatorSet::none()).with_issuer(issuer);
    let (stream, _) = contrast_atls::client::connect(mesh_addr, &options)
        .await
        .context("a probe handshake with the mesh API")?;
    let connection = stream.get_ref().1;
    let group = connection
        .negotiated_key_exchange_group()
        .context("the handshake negotiated no key-exchange group")?;
    Ok(Handshake {
        version: connection.protocol_version(),
        suite: connection.negotiated_cipher_suite().map(|s| s.suite()),
        group_name: Some(group.name()),
        group,
    })
}

/// The results of a load run.
#[derive(Debug, Default)]
struct Outcome {
    latencies: Vec<Duration>,
    failures: usize,
    first_error: Option<String>,
}

/// `requests` NewMeshCert calls from `settings.clients` concurrent initializers, each a
/// fresh P-256 key and a fresh mutual aTLS connection (as the initializer makes it); with
/// `settings.handshake_only`, only the connections.
async fn load(
    mesh_addr: &str,
    issuer: &Arc<dyn Issuer>,
    settings: &Settings,
    requests: usize,
) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(settings.clients);
    for _ in 0..settings.clients {
        let next = next.clone();
        let issuer = issuer.clone();
        let mesh_addr = mesh_addr.to_string();
        let handshake_only = settings.handshake_only;
        tasks.push(tokio::spawn(async move {
            let mut outcome = Outcome::default();
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let start = Instant::now();
                if handshake_only {
                    match handshake(&mesh_addr, issuer.clone()).await {
                        Ok(()) => outcome.latencies.push(start.elapsed()),
                        Err(e) => outcome.fail(e),
                    }
                    continue;
                }
                match new_mesh_cert(&mesh_addr, issuer.clone()).await {
                    Ok((_, response)) if !response.cert_chain.is_empty() => {
                        outcome.latencies.push(start.elapsed());
                    }
                    Ok(_) => outcome.fail("an empty certificate chain".into()),
                    Err(e) => outcome.fail(e),
                }
            }
            outcome
        }));
    }
    let mut total = Outcome::default();
    for task in tasks {
        match task.await {
            Ok(outcome) => {
                total.latencies.extend(outcome.latencies);
                total.failures += outcome.failures;
                if total.first_error.is_none() {
                    total.first_error = outcome.first_error;
                }
            }
            Err(e) => total.fail(format!("a client task: {e}")),
        }
    }
    total.latencies.sort();
    total
}

/// What [`new_mesh_cert`] does up to its request: a fresh P-256 key, a mutual aTLS
/// handshake; then the TLS close.
async fn handshake(mesh_addr: &str, issuer: Arc<dyn Issuer>) -> Result<(), String> {
    use tokio::io::AsyncWriteExt as _;
    let (_key, options) = initializer_options(issuer);
    let (mut stream, _) = contrast_atls::client::connect(mesh_addr, &options)
        .await
        .map_err(|e| e.to_string())?;
    stream.shutdown().await.map_err(|e| e.to_string())
}

impl Outcome {
    fn fail(&mut self, error: String) {
        self.failures += 1;
        self.first_error.get_or_insert(error);
    }

    fn percentile(&self, p: usize) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        // Nearest rank: the smallest value with at least p % of the samples at or below it.
        let rank = (self.latencies.len() * p).div_ceil(100).max(1);
        self.latencies[rank - 1]
    }
}

/// The public-key primitives one request uses, each the mean of the fastest batch.
#[derive(Debug, Clone, Copy)]
struct Primitives {
    p256_keygen: Duration,
    p256_sign: Duration,
    p256_verify: Duration,
    p384_keygen: Duration,
    p384_sign: Duration,
    p384_verify: Duration,
    rsa4096_pss_sign: Duration,
    rsa4096_pss_verify: Duration,
    kx_client: Duration,
    kx_server: Duration,
    /// Not counted: composite operations that show where time beyond the primitives goes.
    info: Composite,
}

/// Whole operations as the code performs them (informational).
#[derive(Debug, Clone, Copy)]
struct Composite {
    rcgen_p256_keygen: Duration,
    p256_pkcs8_load_twice: Duration,
    atls_cert_build: Duration,
    simulated_evidence: Duration,
    snp_verify_uncached: Duration,
    snp_verify_cached: Duration,
}

/// Batches of runs per measurement; the fastest batch's mean counts, so a batch in which
/// another process took the core does not inflate the bound.
const BATCHES: usize = 5;
/// aws-lc renews an RSA key's blinding values every 32 private-key operations: batches of
/// RSA signing are longer than that, so the mean includes the renewal.
const RSA_BATCH: usize = 64;

/// The mean duration of `op` in the fastest of `batches` batches of `size` runs (after one
/// untimed run). Means, not medians: throughput pays for occasional slow runs too.
fn per_op(batches: usize, size: usize, mut op: impl FnMut()) -> Duration {
    per_op_with(batches, size, || (), |()| op())
}

/// As [`per_op`], with an untimed `setup` before every run.
fn per_op_with<T>(
    batches: usize,
    size: usize,
    mut setup: impl FnMut() -> T,
    mut op: impl FnMut(T),
) -> Duration {
    op(setup());
    let size = size.max(1);
    (0..batches.max(1))
        .map(|_| {
            let mut total = Duration::ZERO;
            for _ in 0..size {
                let input = setup();
                let start = Instant::now();
                op(input);
                total += start.elapsed();
            }
            total / size as u32
        })
        .min()
        .unwrap_or_default()
}

fn measure_primitives(
    deployment: &Deployment,
    group: &'static dyn SupportedKxGroup,
    iterations: usize,
) -> anyhow::Result<Primitives> {
    let rng = SystemRandom::new();
    // Messages of the sizes signed in a request: a TLS 1.3 CertificateVerify input, the
    // signed part of an SNP report (0x2A0 bytes), a certificate's TBS.
    let certificate_verify = [0x20u8; 130];
    let report = [0x5au8; 0x2A0];
    let tbs = [0xa5u8; 1500];

    let p256 = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING)?;
    let p256_signature = p256.sign(&rng, &certificate_verify)?;
    let p256_public =
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, p256.public_key().as_ref().to_vec());
    let p384 = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING)?;
    let p384_signature = p384.sign(&rng, &report)?;
    let p384_public = UnparsedPublicKey::new(
        &ECDSA_P384_SHA384_FIXED,
        p384.public_key().as_ref().to_vec(),
    );
    let p384_ca = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_ASN1_SIGNING)?;
    // The simulated AMD's ASK: RSA-4096, the key that signs every fresh VCEK.
    let ask_pkcs8 = std::fs::read(deployment.simulator_dir.join("snp-milan-ask.p8"))
        .context("reading the simulator's Milan ASK key")?;
    let ask = RsaKeyPair::from_pkcs8(&ask_pkcs8).context("the simulator's ASK key")?;
    let mut rsa_signature = vec![0; ask.public_modulus_len()];
    ask.sign(&RSA_PSS_SHA384, &rng, &tbs, &mut rsa_signature)?;
    let rsa_public = UnparsedPublicKey::new(
        &RSA_PSS_2048_8192_SHA384,
        ask.public_key().as_ref().to_vec(),
    );

    let p256_keygen = per_op(BATCHES, iterations / BATCHES, || {
        black_box(EcdsaKeyPair::generate(&ECDSA_P256_SHA256_ASN1_SIGNING).unwrap());
    });
    let p256_sign = per_op(BATCHES, iterations / BATCHES, || {
        black_box(p256.sign(&rng, &certificate_verify).unwrap());
    });
    let p256_verify = per_op(BATCHES, iterations / BATCHES, || {
        p256_public
            .verify(&certificate_verify, p256_signature.as_ref())
            .unwrap();
    });
    let p384_keygen = per_op(BATCHES, iterations / BATCHES, || {
        black_box(EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap());
    });
    let p384_sign = per_op(BATCHES, iterations / BATCHES, || {
        black_box(p384_ca.sign(&rng, &tbs).unwrap());
    });
    let p384_verify = per_op(BATCHES, iterations / BATCHES, || {
        p384_public
            .verify(&report, p384_signature.as_ref())
            .unwrap();
    });
    let rsa4096_pss_sign = per_op(2, RSA_BATCH, || {
        let mut signature = vec![0; ask.public_modulus_len()];
        ask.sign(&RSA_PSS_SHA384, &rng, &tbs, &mut signature)
            .unwrap();
        black_box(signature);
    });
    let rsa4096_pss_verify = per_op(BATCHES, iterations / BATCHES, || {
        rsa_public.verify(&tbs, &rsa_signature).unwrap();
    });
    let (kx_client, kx_server) = measure_key_exchange(group, iterations)?;

    // Composite operations, as the code under test performs them.
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let rcgen_p256_keygen = per_op(BATCHES, iterations / BATCHES, || {
        black_box(rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap());
    });
    let client_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let client_der = rustls::pki_types::PrivateKeyDer::Pkcs8(client_key.serialize_der().into());
    let p256_pkcs8_load_twice = per_op(BATCHES, iterations / BATCHES, || {
        // What the aTLS client does with a given key: rcgen's copy and rustls's copy.
        black_box(rcgen::KeyPair::try_from(&client_der).unwrap());
        black_box(
            provider
                .key_provider
                .load_private_key(client_der.clone_key())
                .unwrap(),
        );
    });
    let issuer = deployment.issuer("web");
    let (_, document) = issuer.issue(&[7; 64])?;
    let atls_cert_build = per_op(BATCHES, iterations / BATCHES, || {
        let mut params = rcgen::CertificateParams::default();
        params
            .custom_extensions
            .push(rcgen::CustomExtension::from_oid_content(
                &[1, 3, 9901, 2, 1],
                document.clone(),
            ));
        black_box(params.self_signed(&client_key).unwrap());
    });
    let simulated_evidence = per_op(2, RSA_BATCH, || {
        black_box(issuer.issue(&[7; 64]).unwrap());
    });
    let verifier = SnpVerifier::new(deployment.amd.trust_anchor());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let decode = |document: &[u8]| contrast_attestation::document::decode_snp(document).unwrap();
    let snp_verify_uncached = per_op_with(
        2,
        RSA_BATCH,
        || decode(&issuer.issue(&[7; 64]).unwrap().1),
        |(report, endorsements)| {
            black_box(verifier.verify(&report, &endorsements, now).unwrap());
        },
    );
    let (report_bytes, endorsements) = decode(&document);
    let snp_verify_cached = per_op(BATCHES, iterations / BATCHES, || {
        black_box(verifier.verify(&report_bytes, &endorsements, now).unwrap());
    });

    Ok(Primitives {
        p256_keygen,
        p256_sign,
        p256_verify,
        p384_keygen,
        p384_sign,
        p384_verify,
        rsa4096_pss_sign,
        rsa4096_pss_verify,
        kx_client,
        kx_server,
        info: Composite {
            rcgen_p256_keygen,
            p256_pkcs8_load_twice,
            atls_cert_build,
            simulated_evidence,
            snp_verify_uncached,
            snp_verify_cached,
        },
    })
}

/// The negotiated group through rustls's own provider: the client's key generation plus
/// completion, and the server's key generation, encapsulation and agreement in one; each
/// the mean of the fastest of [`BATCHES`] batches.
fn measure_key_exchange(
    group: &'static dyn SupportedKxGroup,
    iterations: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let size = (iterations / BATCHES).max(1);
    let once = || -> anyhow::Result<(Duration, Duration)> {
        let t0 = Instant::now();
        let ours = group.start()?;
        let t1 = Instant::now();
        let theirs = group.start_and_complete(ours.pub_key())?;
        let t2 = Instant::now();
        black_box(ours.complete(&theirs.pub_key)?);
        let t3 = Instant::now();
        Ok(((t1 - t0) + (t3 - t2), t2 - t1))
    };
    once()?;
    let mut client = Duration::MAX;
    let mut server = Duration::MAX;
    for _ in 0..BATCHES {
        let (mut c, mut s) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..size {
            let (dc, ds) = once()?;
            c += dc;
            s += ds;
        }
        client = client.min(c / size as u32);
        server = server.min(s / size as u32);
    }
    Ok((client, server))
}

/// Why an operation is part of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The protocol itself: the initializer, the handshake, the Coordinator.
    Protocol,
    /// The simulated AMD signing a report (on hardware: the AMD secure processor).
    SimulatedReport,
    /// Only because the simulator makes a new VCEK for every report: its key, the ASK's
    /// signature over it, and the Coordinator's chain verification that then misses the
    /// cache. Hardware (and a simulator keeping one VCEK per chip and TCB) does neither.
    FreshVcek,
}

impl Origin {
    fn mark(self) -> &'static str {
        match self {
            Origin::Protocol => " ",
            Origin::SimulatedReport => "+",
            Origin::FreshVcek => "*",
        }
    }
}

/// One line of the per-request crypto account.
struct Term {
    side: &'static str,
    what: &'static str,
    count: u32,
    cost: fn(&Primitives) -> Duration,
    origin: Origin,
}

const fn term(
    side: &'static str,
    what: &'static str,
    count: u32,
    cost: fn(&Primitives) -> Duration,
) -> Term {
    Term {
        side,
        what,
        count,
        cost,
        origin: Origin::Protocol,
    }
}

/// The one operation of a request that comes after the handshake.
const MESH_CERTIFICATE_SIGNATURE: &str = "P-384 sign (mesh certificate, mesh CA key)";

/// Every public-key operation of one NewMeshCert request, both sides; the fresh-VCEK work
/// only when the simulator makes a new VCEK per report.
fn account(fresh_vcek_per_report: bool, handshake_only: bool) -> Vec<Term> {
    let fresh_vcek = |mut t: Term| {
        t.origin = Origin::FreshVcek;
        t
    };
    let simulated = |mut t: Term| {
        t.origin = Origin::SimulatedReport;
        t
    };
    let terms = vec![
        term("client", "P-256 keygen (initializer TLS key)", 1, |p| {
            p.p256_keygen
        }),
        fresh_vcek(term(
            "client",
            "sim AMD: P-384 keygen (fresh VCEK)",
            1,
            |p| p.p384_keygen,
        )),
        fresh_vcek(term(
            "client",
            "sim AMD: RSA-4096 PSS sign (ASK signs VCEK)",
            1,
            |p| p.rsa4096_pss_sign,
        )),
        simulated(term("client", "sim AMD: P-384 sign (report)", 1, |p| {
            p.p384_sign
        })),
        term("client", "P-256 sign (aTLS cert self-signature)", 1, |p| {
            p.p256_sign
        }),
        term("client", "key exchange, client half", 1, |p| p.kx_client),
        term(
            "client",
            "P-256 verify (server cert self-signature)",
            1,
            |p| p.p256_verify,
        ),
        term(
            "client",
            "P-256 verify (server CertificateVerify)",
            1,
            |p| p.p256_verify,
        ),
        term("client", "P-256 sign (client CertificateVerify)", 1, |p| {
            p.p256_sign
        }),
        fresh_vcek(term(
            "server",
            "sim AMD: P-384 keygen (fresh VCEK)",
            1,
            |p| p.p384_keygen,
        )),
        fresh_vcek(term(
            "server",
            "sim AMD: RSA-4096 PSS sign (ASK signs VCEK)",
            1,
            |p| p.rsa4096_pss_sign,
        )),
        simulated(term("server", "sim AMD: P-384 sign (report)", 1, |p| {
            p.p384_sign
        })),
        term("server", "P-256 sign (aTLS cert self-signature)", 1, |p| {
            p.p256_sign
        }),
        term("server", "key exchange, server half", 1, |p| p.kx_server),
        term("server", "P-256 sign (server CertificateVerify)", 1, |p| {
            p.p256_sign
        }),
        term(
            "server",
            "P-256 verify (client cert self-signature)",
            1,
            |p| p.p256_verify,
        ),
        term(
            "server",
            "P-256 verify (client CertificateVerify)",
            1,
            |p| p.p256_verify,
        ),
        fresh_vcek(term(
            "server",
            "RSA-4096 PSS verify (ARK, ASK, VCEK; chain cache miss)",
            3,
            |p| p.rsa4096_pss_verify,
        )),
        term("server", "P-384 verify (SNP report signature)", 1, |p| {
            p.p384_verify
        }),
        term("server", MESH_CERTIFICATE_SIGNATURE, 1, |p| p.p384_sign),
    ];
    // A simulator that keeps its VCEK does none of the fresh-VCEK work; handshakes alone
    // issue no mesh certificate.
    terms
        .into_iter()
        .filter(|t| fresh_vcek_per_report || t.origin != Origin::FreshVcek)
        .filter(|t| !handshake_only || t.what != MESH_CERTIFICATE_SIGNATURE)
        .collect()
}

/// What the load run and the primitive measurements gave.
struct Measured<'a> {
    outcome: &'a Outcome,
    wall: Duration,
    cpu: Duration,
    before: &'a Primitives,
    after: &'a Primitives,
}

fn report(settings: &Settings, cores: usize, fresh_vcek: bool, measured_run: &Measured<'_>) {
    let Measured {
        outcome,
        wall,
        cpu,
        before,
        after,
    } = *measured_run;
    // The faster of the two measurements of each primitive: the bound stays an upper bound
    // when other processes share the machine during one of them.
    let fastest = |f: fn(&Primitives) -> Duration| f(before).min(f(after));
    let terms = account(fresh_vcek, settings.handshake_only);
    let micros = |d: Duration| d.as_secs_f64() * 1e6;

    println!(
        "\nper-request public-key operations (mean of the fastest batch, faster of before/after \
         the load; * fresh-VCEK work, + simulated report signature):"
    );
    if !fresh_vcek {
        println!("  (the simulator reuses its VCEK: no fresh-VCEK work, the chain cache hits)");
    }
    println!(
        "  {:<6} {:<58} {:>3} {:>10} {:>10}",
        "side", "operation", "n", "each µs", "total µs"
    );
    let mut total = Duration::ZERO;
    let mut fixed_vcek = Duration::ZERO;
    let mut hardware = Duration::ZERO;
    for t in &terms {
        let each = fastest(t.cost);
        let sum = each * t.count;
        total += sum;
        if t.origin != Origin::FreshVcek {
            fixed_vcek += sum;
        }
        if t.origin == Origin::Protocol {
            hardware += sum;
        }
        let mark = t.origin.mark();
        println!(
            "  {:<6} {:<58} {:>3} {:>10.1} {:>10.1}{mark}",
            t.side,
            t.what,
            t.count,
            micros(each),
            micros(sum)
        );
    }
    let cores_f = cores as f64;
    let bound = cores_f / total.as_secs_f64();
    let bound_fixed_vcek = cores_f / fixed_vcek.as_secs_f64();
    let bound_hardware = cores_f / hardware.as_secs_f64();
    let measured = outcome.latencies.len() as f64 / wall.as_secs_f64();
    let cpu_per_request = cpu.as_secs_f64() / outcome.latencies.len().max(1) as f64;

    println!("\ncomposite operations as the code performs them (informational, not in the bound):");
    let info = |f: fn(&Composite) -> Duration| micros(f(&before.info).min(f(&after.info)));
    println!(
        "  rcgen P-256 KeyPair::generate_for              {:>10.1} µs",
        info(|c| c.rcgen_p256_keygen)
    );
    println!(
        "  P-256 PKCS#8 load, rcgen + rustls (client)     {:>10.1} µs",
        info(|c| c.p256_pkcs8_load_twice)
    );
    println!(
        "  rcgen self-signed aTLS cert with document      {:>10.1} µs",
        info(|c| c.atls_cert_build)
    );
    println!(
        "  simulated SNP evidence (DocumentIssuer::issue) {:>10.1} µs",
        info(|c| c.simulated_evidence)
    );
    println!(
        "  SnpVerifier::verify, a new report each time   {:>10.1} µs",
        info(|c| c.snp_verify_uncached)
    );
    println!(
        "  SnpVerifier::verify, the same report again     {:>10.1} µs",
        info(|c| c.snp_verify_cached)
    );

    println!("\nresults:");
    println!("  N (concurrent clients)      {}", settings.clients);
    println!(
        "  requests                    {} ok, {} failed",
        outcome.latencies.len(),
        outcome.failures
    );
    println!("  wall time                   {:.2} s", wall.as_secs_f64());
    println!("  certs/s                     {measured:.1}");
    println!(
        "  latency p50 / p99           {:.1} / {:.1} ms",
        outcome.percentile(50).as_secs_f64() * 1e3,
        outcome.percentile(99).as_secs_f64() * 1e3
    );
    println!(
        "  crypto cost per request     {:.0} µs (all operations above, both sides)",
        micros(total)
    );
    let busy = cpu.as_secs_f64() / (wall.as_secs_f64() * cores_f);
    println!(
        "  CPU time per request        {:.0} µs (process user+system; {:.0} % of {cores} cores busy)",
        cpu_per_request * 1e6,
        100.0 * busy
    );
    println!(
        "  crypto share of CPU time    {:.1} % (crypto cost / CPU time per request: the ratio \
         this run would reach with {cores} idle cores it kept busy)",
        100.0 * total.as_secs_f64() / cpu_per_request
    );
    println!("  bound certs/s               {bound:.1} (= {cores} cores / crypto cost)");
    println!(
        "  ratio                       {:.1} % (goal >= 60 %)",
        100.0 * measured / bound
    );
    if fresh_vcek {
        println!(
            "  without the * lines         {:.0} µs per request, bound {bound_fixed_vcek:.1} \
             certs/s (a simulator keeping one VCEK per chip and TCB; the chain cache hits)",
            micros(fixed_vcek),
        );
    }
    println!(
        "  without the * and + lines   {:.0} µs per request, bound {bound_hardware:.1} certs/s \
         (hardware evidence: no simulated AMD on these cores)",
        micros(hardware),
    );
    if busy < 0.9 {
        println!(
            "  note: the cores were not kept busy ({:.0} %): other processes shared them \
             (load average) or too few clients; the ratio understates the code",
            100.0 * busy
        );
    }
    // The same account with each run's own measurements: how much the machine drifted.
    let cost_of = |p: &Primitives| {
        terms
            .iter()
            .map(|t| (t.cost)(p) * t.count)
            .sum::<Duration>()
    };
    println!(
        "  crypto cost before / after  {:.0} / {:.0} µs per request (load average now {})",
        micros(cost_of(before)),
        micros(cost_of(after)),
        load_average()
    );
}

/// The process's user plus system CPU time, from /proc (Linux; zero elsewhere).
fn process_cpu_time() -> Duration {
    // Fields 14 and 15 of /proc/self/stat, in clock ticks of 1/100 s (USER_HZ on Linux).
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    let Some((_, after_name)) = stat.rsplit_once(')') else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}
