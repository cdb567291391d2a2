//! High availability under load: simulated initializers keep getting mesh certificates
//! from three Coordinator replicas (Kubernetes store on the fake API server) while one
//! replica is killed and restarted. Clients reach the replicas the way the
//! `coordinator-ready` Service routes them — to a pod whose Ready condition holds, as the
//! kubelet last saw it — and retry a failed attempt like the initializer does. No request
//! may fail after its retries; the restarted replica recovers from a peer and serves again;
//! every certificate chains to the one mesh CA key.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ECDSA_P384_SHA384_ASN1, UnparsedPublicKey};
use contrast_api::meshapi::NewMeshCertResponse;
use contrast_atls::Issuer;
use contrast_testkit::ha::{Cluster, Replica};
use contrast_testkit::{Deployment, new_mesh_cert, random_loopback};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Concurrent simulated initializers.
const CLIENTS: usize = 6;
/// Attempts per certificate before a request counts as failed.
const ATTEMPTS: usize = 20;
/// The pause before a retry (the initializer's retry interval, shortened for the test).
const RETRY_INTERVAL: Duration = Duration::from_millis(100);
/// How often the kubelet probes readiness and the Service's endpoints follow.
const KUBELET_PERIOD: Duration = Duration::from_millis(100);
/// Certificates the restarted replica must serve before the load stops.
const SERVED_AFTER_RESTART: usize = 5;

/// The `coordinator-ready` Service: the mesh API addresses of the pods that were Ready at
/// the kubelet's last probe, picked round robin.
#[derive(Default)]
struct Service {
    endpoints: RwLock<Vec<String>>,
    next: AtomicUsize,
}

impl Service {
    fn route(&self) -> Option<String> {
        let endpoints = self.endpoints.read().unwrap();
        if endpoints.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
        Some(endpoints[i].clone())
    }
}

/// What the load saw.
#[derive(Default)]
struct Counts {
    attempts: AtomicUsize,
    successes: AtomicUsize,
    /// Attempts that failed and were retried.
    retried_failures: AtomicUsize,
    /// Requests that failed on every attempt.
    failed_after_retries: AtomicUsize,
    /// Certificates from the restarted replica's address, on attempts begun after the old
    /// process was gone.
    served_by_restarted: AtomicUsize,
    /// Certificates per replica address.
    per_replica: Mutex<BTreeMap<String, usize>>,
    /// The mesh CA public keys and root CA public keys seen.
    mesh_ca_keys: Mutex<BTreeSet<Vec<u8>>>,
    root_ca_keys: Mutex<BTreeSet<Vec<u8>>>,
    /// The distinct errors, with how often each occurred.
    errors: Mutex<BTreeMap<String, usize>>,
}

fn certificates(pem: &[u8]) -> Vec<Vec<u8>> {
    contrast_attestation::pem::decode_all(std::str::from_utf8(pem).unwrap(), "CERTIFICATE").unwrap()
}

fn public_key(der: &[u8]) -> Vec<u8> {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.public_key().subject_public_key.data.to_vec()
}

/// Checks a response the way a workload relies on it: the leaf is signed by the mesh CA
/// key the response hands out. Returns the mesh CA and root CA public keys.
fn check_response(response: &NewMeshCertResponse) -> (Vec<u8>, Vec<u8>) {
    let mesh_ca = certificates(&response.mesh_ca_cert).remove(0);
    let root_ca = certificates(&response.root_ca_cert).remove(0);
    let chain = certificates(&response.cert_chain);
    assert!(!chain.is_empty(), "an empty certificate chain");
    let mesh_key = public_key(&mesh_ca);
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    UnparsedPublicKey::new(&ECDSA_P384_SHA384_ASN1, &mesh_key)
        .verify(
            leaf.tbs_certificate.as_ref(),
            leaf.signature_value.data.as_ref(),
        )
        .expect("the workload certificate is signed by the mesh CA key");
    (mesh_key, public_key(&root_ca))
}

/// One simulated initializer: certificates until `stop`, each through the Service with up
/// to [`ATTEMPTS`] attempts.
async fn initializer(
    service: Arc<Service>,
    counts: Arc<Counts>,
    issuer: Arc<dyn Issuer>,
    restarted_addr: String,
    old_process_gone: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) {
    while !stop.load(Ordering::SeqCst) {
        let mut obtained = false;
        for attempt in 1..=ATTEMPTS {
            let after_kill = old_process_gone.load(Ordering::SeqCst);
            counts.attempts.fetch_add(1, Ordering::Relaxed);
            let result = match service.route() {
                None => Err("no ready endpoint".to_owned()),
                Some(addr) => tokio::time::timeout(
                    Duration::from_secs(10),
                    new_mesh_cert(&addr, issuer.clone()),
                )
                .await
                .unwrap_or_else(|_| Err("timed out".to_owned()))
                .map(|(_, response)| (addr, response)),
            };
            match result {
                Ok((addr, response)) => {
                    let (mesh_key, root_key) = check_response(&response);
                    counts.mesh_ca_keys.lock().unwrap().insert(mesh_key);
                    counts.root_ca_keys.lock().unwrap().insert(root_key);
                    *counts
                        .per_replica
                        .lock()
                        .unwrap()
                        .entry(addr.clone())
                        .or_default() += 1;
                    if after_kill && addr == restarted_addr {
                        counts.served_by_restarted.fetch_add(1, Ordering::SeqCst);
                    }
                    counts.successes.fetch_add(1, Ordering::Relaxed);
                    obtained = true;
                    break;
                }
                Err(e) => {
                    *counts.errors.lock().unwrap().entry(e).or_default() += 1;
                    if attempt < ATTEMPTS {
                        counts.retried_failures.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(RETRY_INTERVAL).await;
                    }
                }
            }
        }
        if !obtained {
            counts.failed_after_retries.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The kubelet and the endpoints controller: probes the replicas, updates the pods' Ready
/// conditions and the Service's endpoints.
fn kubelet_tick(cluster: &Cluster, service: &Service, replicas: &[&Replica]) {
    let ready = cluster.sync_pods(replicas);
    *service.endpoints.write().unwrap() = replicas
        .iter()
        .zip(ready)
        .filter(|(_, ready)| *ready)
        .map(|(replica, _)| replica.process.mesh_addr())
        .collect();
}

/// Runs the kubelet every [`KUBELET_PERIOD`] until `condition` holds (60 s at most).
fn run_until(
    cluster: &Cluster,
    service: &Service,
    replicas: &[&Replica],
    what: &str,
    condition: impl Fn() -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        kubelet_tick(cluster, service, replicas);
        if condition() {
            return;
        }
        if Instant::now() > deadline {
            for replica in replicas {
                eprintln!("--- {} ---\n{}", replica.name, replica.process.log_text());
            }
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(KUBELET_PERIOD);
    }
}

#[test]
fn initializers_keep_getting_certificates_while_a_replica_restarts() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let cluster = Cluster::start();
    let deployment = Deployment::new(&["web"]);
    let binary = Path::new(common::COORDINATOR);
    let start = |name: &str| cluster.start_replica(binary, &deployment, name, random_loopback());
    let a = start("coordinator-0");
    let b = start("coordinator-1");
    let c = start("coordinator-2");

    // The user sets the manifest on one replica; the others recover it from that one.
    runtime.block_on(async {
        let validators = common::coordinator_validators(&deployment);
        let mut client = common::client(
            &a.process.user_addr(),
            &validators,
            Some(common::owner_key(&deployment)),
        )
        .await;
        common::first_set(&mut client, &deployment, &deployment.manifest.encode()).await;
    });
    let service = Arc::new(Service::default());
    run_until(
        &cluster,
        &service,
        &[&a, &b, &c],
        "three ready replicas",
        || service.endpoints.read().unwrap().len() == 3,
    );

    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let old_process_gone = Arc::new(AtomicBool::new(false));
    let restarted_addr = b.process.mesh_addr();
    let issuer = deployment.issuer("web");
    let load_started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            runtime.spawn(initializer(
                service.clone(),
                counts.clone(),
                issuer.clone(),
                restarted_addr.clone(),
                old_process_gone.clone(),
                stop.clone(),
            ))
        })
        .collect();

    // Load on three replicas, then the kill: the kubelet notices at its next probe, until
    // then the Service still routes to the dead pod.
    run_until(
        &cluster,
        &service,
        &[&a, &b, &c],
        "load on every replica",
        || {
            counts.per_replica.lock().unwrap().len() == 3
                && counts.successes.load(Ordering::Relaxed) >= 2 * CLIENTS
        },
    );
    let before_kill = counts.successes.load(Ordering::Relaxed);
    let (name, ip) = cluster.kill(b);
    old_process_gone.store(true, Ordering::SeqCst);
    let killed = Instant::now();
    run_until(
        &cluster,
        &service,
        &[&a, &c],
        "load on two replicas",
        || killed.elapsed() > Duration::from_secs(1),
    );

    // The restart: the replica recovers from a peer, turns ready, and the Service routes
    // to it again.
    let restarted = Instant::now();
    let b = cluster.spawn(binary, &deployment, &name, ip);
    run_until(
        &cluster,
        &service,
        &[&a, &b, &c],
        "the restarted replica ready",
        || b.ready(),
    );
    let recovery = restarted.elapsed();
    run_until(
        &cluster,
        &service,
        &[&a, &b, &c],
        "certificates from the restarted replica",
        || counts.served_by_restarted.load(Ordering::SeqCst) >= SERVED_AFTER_RESTART,
    );
    stop.store(true, Ordering::SeqCst);
    runtime.block_on(async {
        for client in clients {
            client.await.unwrap();
        }
    });
    let wall = load_started.elapsed();

    let load = |n: &AtomicUsize| n.load(Ordering::SeqCst);
    eprintln!(
        "{CLIENTS} initializers for {wall:.2?}: {} attempts, {} certificates ({before_kill} \
         before the kill), {} failed attempts retried, {} requests failed after {ATTEMPTS} \
         attempts; the restarted replica was ready {recovery:.2?} after its start and served \
         {} certificates",
        load(&counts.attempts),
        load(&counts.successes),
        load(&counts.retried_failures),
        load(&counts.failed_after_retries),
        load(&counts.served_by_restarted),
    );
    eprintln!("per replica: {:?}", counts.per_replica.lock().unwrap());
    eprintln!("errors: {:#?}", counts.errors.lock().unwrap());

    assert_eq!(
        load(&counts.failed_after_retries),
        0,
        "no request fails after its retries"
    );
    assert!(load(&counts.served_by_restarted) >= SERVED_AFTER_RESTART);
    assert_eq!(
        load(&counts.attempts),
        load(&counts.successes) + load(&counts.retried_failures),
        "every attempt either succeeded or was retried"
    );
    assert_eq!(
        counts.mesh_ca_keys.lock().unwrap().len(),
        1,
        "every certificate chains to the same mesh CA key"
    );
    assert_eq!(
        counts.root_ca_keys.lock().unwrap().len(),
        1,
        "every response names the same root CA key"
    );
}
