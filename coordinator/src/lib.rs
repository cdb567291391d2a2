//! The Coordinator: the deployment's attestation service and certificate authority
//! (docs/protocol.md §2–§8).
//!
//! * [`state`]: the state machine and the manifest history (the only place secrets and
//!   the history change);
//! * [`userapi`] (1313) and [`meshapi`] (7777): gRPC over aTLS;
//! * [`http`]: the attestation API (1314), probes and metrics (9102);
//! * [`transit`] (8200): the Vault-compatible transit engine;
//! * [`peers`]: finding ready Coordinator peers, and peer recovery.

pub mod error;
pub mod http;
pub mod meshapi;
pub mod metrics;
pub mod peers;
pub mod state;
pub mod transit;
pub mod userapi;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use contrast_api::meshapi::mesh_api_client::MeshApiClient;
use contrast_api::meshapi::mesh_api_server::MeshApiServer;
use contrast_api::userapi::user_api_server::UserApiServer;
use contrast_atls::server::AtlsServer;
use contrast_atls::{
    ClientOptions, IssuanceQueue, Issuer, ReferenceValidator, ServerOptions, ValidatorSet,
    Verifiers,
};
use contrast_attestation::snp::SnpTrustAnchor;
use contrast_collateral::{Collateral, CollateralSettings};
use contrast_evidence::DocumentIssuer;
use contrast_evidence::issuer::{
    Evidence, EvidenceIssuer, IssueError, IssuerSettings, SimulatedCertTable, SimulatedTee, select,
};
use contrast_evidence::snp_cert_table::{CertKind, CertTableEntry};
use contrast_history::{FsStore, Store};
use contrast_manifest::Manifest;
use contrast_platforms::{Platform, Tee};
use contrast_seedengine::SeedEngine;

pub use error::CoordinatorError;
use metrics::Metrics;
use peers::{KubernetesPeers, PeerDiscovery, StaticPeers};
use state::{ExpectedBy, ExpectedTransition, StateGuard, Status};

/// The Coordinator's allocator, installed by its binary and by the benchmarks that run it
/// in their process (`#[global_allocator] static A: Allocator = ALLOCATOR;`): mimalloc
/// serves the mesh API's short-lived, allocation-heavy handshakes with fewer cycles than
/// glibc's malloc (docs/dependencies.md §3 has the figures).
pub type Allocator = mimalloc::MiMalloc;
/// The value of [`Allocator`] to install.
pub const ALLOCATOR: Allocator = mimalloc::MiMalloc;

/// The Coordinator's shared parts.
#[derive(Debug)]
pub struct Coordinator {
    /// State and history.
    pub guard: Arc<StateGuard>,
    /// Our own evidence.
    pub issuer: Arc<dyn Issuer>,
    /// Where our evidence is issued: off the async workers, bounded, shared by the aTLS
    /// servers and the attestation API.
    pub issuance: Arc<IssuanceQueue>,
    /// Coordinator peers.
    pub peers: Arc<dyn PeerDiscovery>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Set once the listeners are up and the first peer recovery attempt ran.
    pub started: AtomicBool,
}

/// Ports the Coordinator listens on.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    /// UserAPI.
    pub user: u16,
    /// MeshAPI.
    pub mesh: u16,
    /// HTTP attestation API.
    pub http: u16,
    /// Probes and metrics.
    pub probes: u16,
    /// The transit engine.
    pub transit: u16,
}

impl Default for Ports {
    fn default() -> Self {
        use contrast_api::ports::*;
        Ports {
            user: USER_API,
            mesh: MESH_API,
            http: HTTP_ATTESTATION,
            probes: PROBES,
            transit: TRANSIT,
        }
    }
}

/// How to run a Coordinator.
#[derive(Debug, Clone)]
pub struct Config {
    /// The history store directory (filesystem backend).
    pub store_dir: PathBuf,
    /// Where the history lives and how peers are found.
    pub backend: Backend,
    /// The address to listen on.
    pub listen: IpAddr,
    /// The ports.
    pub ports: Ports,
    /// The platform this Coordinator runs on (selects the evidence issuer).
    pub platform: Platform,
    /// The simulator's key directory (simulated platforms; also lets this Coordinator
    /// accept simulated evidence from initializers and peers on simulated platforms).
    pub simulator_dir: Option<PathBuf>,
    /// HOST_DATA / MRCONFIGID of the simulated VM (what the runtime would set from the
    /// Coordinator pod's policy).
    pub simulated_host_data: [u8; 32],
    /// The simulated TEE, when not the platform's simulated whole: on Sim-SNP in a pod VM
    /// under QEMU, `SnpTsm` — the report comes from the guest kernel's TSM provider (the
    /// test-only fake one, with the VM's HOST_DATA), signed by the simulator;
    /// `simulated_host_data` is then unused.
    pub simulated_tee: Option<SimulatedTee>,
    /// Peer mesh API addresses.
    pub peers: Vec<String>,
    /// How often to try peer recovery and to check for a newer history.
    pub recovery_interval: Duration,
    /// Serve `/metrics`.
    pub metrics: bool,
    /// How long the simulated TEE takes per evidence, blocking its caller as the guest
    /// firmware does (real SNP reports and TDX quotes take from milliseconds to seconds).
    pub simulated_issue_delay: Duration,
    /// Where AMD's and Intel's collateral comes from (kept in memory): for the evidence
    /// of workloads and peers, and for this Coordinator's own certificate table.
    pub collateral: CollateralSettings,
    /// What the simulated host puts into this Coordinator's SEV-SNP certificate table
    /// (simulated platforms only): what it leaves out comes from the KDS `collateral` names.
    pub simulated_cert_table: SimulatedCertTable,
}

/// Where the Coordinator keeps its history and finds its peers.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Files under `store_dir`; peers from `peers`.
    Filesystem,
    /// Kubernetes ConfigMaps; peers are the Ready pods of the Coordinator StatefulSet.
    Kubernetes(KubernetesBackend),
}

/// Settings of the Kubernetes backend.
#[derive(Debug, Clone)]
pub struct KubernetesBackend {
    /// A kubeconfig file; in-cluster configuration when absent.
    pub kubeconfig: Option<PathBuf>,
    /// The namespace; the service account's when absent.
    pub namespace: Option<String>,
    /// This pod's name (`HOSTNAME`): excluded from peers, and the pod whose StatefulSet
    /// owns the store's ConfigMaps.
    pub pod_name: String,
    /// Give the ConfigMaps an owner reference to the StatefulSet (garbage collection).
    pub owned: bool,
}

/// Opens the ConfigMap store.
async fn kubernetes_store(
    settings: &KubernetesBackend,
) -> anyhow::Result<Arc<contrast_kube_store::ConfigMapStore>> {
    use contrast_kube_store::{ConfigMapStore, Owner, StoreOptions};
    let kube_config = match &settings.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("reading the kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .with_context(|| format!("using the kubeconfig {}", path.display()))?
        }
        None => kube::Config::incluster()
            .context("no in-cluster Kubernetes configuration: run in a pod or give --kubeconfig")?,
    };
    let namespace = match &settings.namespace {
        Some(namespace) => namespace.clone(),
        None => contrast_kube_store::read_namespace(std::path::Path::new(
            contrast_kube_store::SERVICE_ACCOUNT_NAMESPACE_PATH,
        ))?,
    };
    let options = StoreOptions {
        owner: if settings.owned {
            Owner::OwnerOfPod(settings.pod_name.clone())
        } else {
            Owner::None
        },
        ..StoreOptions::default()
    };
    let store =
        tokio::task::spawn_blocking(move || ConfigMapStore::new(kube_config, &namespace, options))
            .await??;
    Ok(Arc::new(store))
}

/// Builds the Coordinator's own evidence issuer and the verifiers for its peers, with the
/// guest binaries' one selection: TEE hardware, or on a simulated platform the simulator.
fn evidence(config: &Config) -> anyhow::Result<(Arc<dyn Issuer>, Verifiers)> {
    let simulator_dir = if config.platform.is_simulated() {
        Some(config.simulator_dir.as_deref().with_context(|| {
            format!(
                "platform {} is simulated: give the simulator's key directory with \
                 --simulator-dir",
                config.platform
            )
        })?)
    } else {
        None
    };
    let tee = config.simulated_tee.unwrap_or(match config.platform.tee() {
        Tee::Snp => SimulatedTee::Snp,
        Tee::Tdx => SimulatedTee::Tdx,
    });
    let settings = IssuerSettings {
        simulator_dir: simulator_dir.map(Path::to_owned),
        simulated_tee: tee.name().to_owned(),
        // In the guest, the kernel's provider has the VM's HOST_DATA.
        simulated_host_data: (tee != SimulatedTee::SnpTsm)
            .then(|| hex::encode(config.simulated_host_data)),
        simulated_cert_table: config.simulated_cert_table,
    };
    let evidence: Arc<dyn EvidenceIssuer> = Arc::from(select(&settings)?);
    let verifiers = contrast_evidence::issuer::verifiers(simulator_dir)?;
    // Collateral for the evidence this Coordinator deals with: the vendors', or on a
    // simulated platform the simulated vendor's (whose KDS and PCS the URLs then name;
    // without a simulated PCS, simulated TDX evidence gets no TCB status).
    let (verifiers, collateral, anchor) = match simulator_dir {
        None => {
            let collateral = Arc::new(
                Collateral::new(config.collateral.clone())
                    .context("setting up collateral fetching")?,
            );
            let verifiers = verifiers.with_collateral(collateral.clone());
            (verifiers, collateral, SnpTrustAnchor::amd())
        }
        Some(dir) => {
            // Intel's PCS never serves collateral for simulated quotes: only a simulated
            // PCS's URL is used.
            let settings = CollateralSettings {
                pcs_url: config
                    .collateral
                    .pcs_url
                    .clone()
                    .filter(|url| url != contrast_collateral::DEFAULT_PCS_URL),
                ..config.collateral.clone()
            };
            let collateral =
                Arc::new(Collateral::new(settings).context("setting up collateral fetching")?);
            let (anchor, _) = contrast_attestation::simulated_anchors::load(dir)?;
            let verifiers = verifiers.with_simulated_collateral(collateral.clone());
            (verifiers, collateral, anchor)
        }
    };
    let evidence = Arc::new(WithCollateral {
        evidence,
        collateral,
        anchor,
    });
    let issuer: Arc<dyn Issuer> = Arc::new(DocumentIssuer::new(evidence));
    if simulator_dir.is_none() || config.simulated_issue_delay.is_zero() {
        return Ok((issuer, verifiers));
    }
    Ok((
        Arc::new(SlowIssuer {
            issuer,
            delay: config.simulated_issue_delay,
        }),
        verifiers,
    ))
}

/// The Coordinator's own SEV-SNP evidence with what its host left out of the certificate
/// table (the VCEK and its chain on many bare-metal hosts, AMD's CRL on most) added from
/// KDS, so that clients verify it without reaching AMD themselves. When KDS cannot be had,
/// the evidence goes out as the host made it, and clients fetch what they need.
struct WithCollateral {
    evidence: Arc<dyn EvidenceIssuer>,
    collateral: Arc<Collateral>,
    /// The roots the completed table is checked under (AMD's, or the simulator's).
    anchor: SnpTrustAnchor,
}

impl std::fmt::Debug for WithCollateral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithCollateral")
            .field("evidence", &self.evidence.name())
            .finish_non_exhaustive()
    }
}

impl EvidenceIssuer for WithCollateral {
    fn issue(&self, report_data: &[u8; 64]) -> Result<Evidence, IssueError> {
        let mut evidence = self.evidence.issue(report_data)?;
        if evidence.tee != Tee::Snp {
            return Ok(evidence);
        }
        let carried = evidence.snp_endorsements();
        let now = contrast_atls::unix_now();
        match self
            .collateral
            .complete_snp(&evidence.raw, carried.clone(), &self.anchor, now)
        {
            Ok(completed) => add_missing_certificates(&mut evidence, &carried, completed),
            // Said once when the outage began.
            Err(e @ contrast_collateral::CollateralError::RecentlyFailed { .. }) => {
                tracing::debug!(error = %e, "certificate table not completed");
            }
            Err(e) => tracing::warn!(
                error = %contrast_platforms::error_chain(&e),
                "cannot complete this Coordinator's certificate table from KDS: clients fetch \
                 what it lacks themselves"
            ),
        }
        Ok(evidence)
    }

    fn name(&self) -> &'static str {
        self.evidence.name()
    }

    fn local_report(
        &self,
        report_data: &[u8; 64],
    ) -> Result<contrast_evidence::issuer::LocalReport, IssueError> {
        self.evidence.local_report(report_data)
    }
}

/// Adds to `evidence`'s certificate table what `completed` has and `carried` had not.
fn add_missing_certificates(
    evidence: &mut Evidence,
    carried: &contrast_attestation::snp::SnpEndorsements,
    completed: contrast_attestation::snp::SnpEndorsements,
) {
    // KDS serves VCEKs only (a VLEK comes from the host, so a fetched key is a VCEK).
    for (kind, had, got) in [
        (CertKind::Vcek, &carried.vek, completed.vek),
        (CertKind::Ask, &carried.ask, completed.ask),
        (CertKind::Ark, &carried.ark, completed.ark),
        (CertKind::Crl, &carried.crl, completed.crl),
    ] {
        if let (None, Some(der)) = (had, got) {
            evidence.certificates.push(CertTableEntry { kind, der });
        }
    }
}

/// A simulated TEE as slow as hardware can be: it blocks for `delay` per evidence.
#[derive(Debug)]
struct SlowIssuer {
    issuer: Arc<dyn Issuer>,
    delay: Duration,
}

impl Issuer for SlowIssuer {
    fn issue(
        &self,
        report_data: &[u8; 64],
    ) -> Result<(&'static str, Vec<u8>), contrast_atls::AtlsError> {
        std::thread::sleep(self.delay);
        self.issuer.issue(report_data)
    }
}

/// Resolves once `rx` says stop.
pub(crate) async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Runs the Coordinator until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (store, peers, kube_store): (Arc<dyn Store>, Arc<dyn PeerDiscovery>, _) =
        match &config.backend {
            Backend::Filesystem => (
                Arc::new(FsStore::open(&config.store_dir).with_context(|| {
                    format!("opening the store at {}", config.store_dir.display())
                })?),
                Arc::new(StaticPeers {
                    peers: config.peers.clone(),
                    probe_port: config.ports.probes,
                }),
                None,
            ),
            Backend::Kubernetes(settings) => {
                let store = kubernetes_store(settings).await?;
                (
                    store.clone(),
                    Arc::new(KubernetesPeers {
                        store: store.clone(),
                        pod_name: settings.pod_name.clone(),
                        mesh_port: config.ports.mesh,
                    }),
                    Some(store),
                )
            }
        };
    let (issuer, verifiers) = evidence(&config)?;
    let coordinator = Arc::new(Coordinator {
        guard: Arc::new(StateGuard::new(store, verifiers)),
        issuer: issuer.clone(),
        issuance: Arc::new(IssuanceQueue::default()),
        peers,
        metrics: Arc::new(Metrics::default()),
        started: AtomicBool::new(false),
    });
    let addr = |port| SocketAddr::new(config.listen, port);
    let bind = |port| {
        let address = addr(port);
        async move {
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("listening on {address}"))
        }
    };
    let user_listener = bind(config.ports.user).await?;
    let mesh_listener = bind(config.ports.mesh).await?;
    let http_listener = bind(config.ports.http).await?;
    let transit_listener = bind(config.ports.transit).await?;
    // Served from a runtime of its own (see http::serve_probes).
    let probe_listener = bind(config.ports.probes)
        .await?
        .into_std()
        .context("handing the probe listener to its thread")?;

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_tx = Arc::new(stop_tx);

    let user_server = Arc::new(AtlsServer::new(
        ServerOptions::new(Some(issuer.clone())).with_issuance(coordinator.issuance.clone()),
    )?);
    let user_incoming = contrast_atls::grpc::incoming(user_listener, user_server, None);
    let user = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(15)))
        .layer(metrics::GrpcMetricsLayer::new(
            coordinator.metrics.clone(),
            userapi::SERVICE,
            userapi::METHODS,
        ))
        .add_service(UserApiServer::new(userapi::UserApiService(
            coordinator.clone(),
        )))
        .serve_with_incoming_shutdown(user_incoming, stopped(stop_rx.clone()));

    let mesh_server = Arc::new(AtlsServer::new(
        ServerOptions::new(Some(issuer.clone()))
            .with_issuance(coordinator.issuance.clone())
            .with_validators(Arc::new(meshapi::MeshValidators(coordinator.guard.clone())))
            .with_deferred_refusal(),
    )?);
    let metrics = coordinator.metrics.clone();
    let on_failure: contrast_atls::grpc::FailureHook =
        Arc::new(move |_| metrics.attestation_failed());
    let mesh_incoming = contrast_atls::grpc::incoming(mesh_listener, mesh_server, Some(on_failure));
    let mesh = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(15)))
        .layer(metrics::GrpcMetricsLayer::new(
            coordinator.metrics.clone(),
            meshapi::SERVICE,
            meshapi::METHODS,
        ))
        .add_service(MeshApiServer::new(meshapi::MeshApiService(
            coordinator.clone(),
        )))
        .serve_with_incoming_shutdown(mesh_incoming, stopped(stop_rx.clone()));

    let http = axum::serve(
        http::LimitedListener::new(http_listener, http::HTTP_CONNECTION_LIMITS),
        http::attestation_router(coordinator.clone()),
    )
    .with_graceful_shutdown(stopped(stop_rx.clone()));
    let transit = axum::serve(
        transit::TransitListener::new(transit_listener, coordinator.guard.clone())?,
        transit::router(coordinator.clone())
            .into_make_service_with_connect_info::<transit::TransitPeer>(),
    )
    .with_graceful_shutdown(stopped(stop_rx.clone()));
    let probes = http::serve_probes(
        probe_listener,
        http::probes_router(coordinator.clone(), config.metrics),
        stop_rx.clone(),
    )?;

    let background = tokio::spawn(maintain(coordinator.clone(), config.recovery_interval));
    let watcher = kube_store.map(|store| tokio::spawn(watch_history(coordinator.clone(), store)));
    let stop_on_shutdown = stop_tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_on_shutdown.send(true);
    });
    tracing::info!(
        listen = %config.listen,
        platform = %config.platform,
        backend = ?config.backend,
        "coordinator listening"
    );
    let result = tokio::try_join!(
        async { user.await.context("user API") },
        async { mesh.await.context("mesh API") },
        async { http.await.context("HTTP API") },
        async { transit.await.context("transit engine") },
        async {
            probes
                .await
                .context("the probes' thread ended without a word")?
                .context("probes")
        },
    );
    // The probes run on their own thread: stop them when anything else ended.
    let _ = stop_tx.send(true);
    background.abort();
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    result.map(|_| ())
}

/// The first peer-recovery attempt, then every `interval`: recover from a peer while in
/// recovery mode, and notice when another Coordinator moved the history on.
async fn maintain(coordinator: Arc<Coordinator>, interval: Duration) {
    let first = tokio::time::timeout(Duration::from_secs(15), try_peers(&coordinator)).await;
    if first.is_err() {
        tracing::warn!("the first peer recovery attempt timed out");
    }
    coordinator.started.store(true, Ordering::SeqCst);
    loop {
        tokio::time::sleep(interval).await;
        let guard = coordinator.guard.clone();
        match tokio::task::spawn_blocking(move || guard.check_staleness()).await {
            Ok(Err(e)) => tracing::warn!(
                error = %contrast_platforms::error_chain(&e),
                "checking the history for updates"
            ),
            Err(e) => tracing::warn!(error = %e, "checking the history for updates"),
            Ok(Ok(_)) => {}
        }
        try_peers(&coordinator).await;
    }
}

/// Reacts at once when another replica moves the history on: this one turns stale, then
/// recovers from a ready peer.
async fn watch_history(
    coordinator: Arc<Coordinator>,
    store: Arc<contrast_kube_store::ConfigMapStore>,
) {
    let mut latest = store.watch_latest();
    while latest.next().await.is_some() {
        let guard = coordinator.guard.clone();
        if let Ok(Err(e)) = tokio::task::spawn_blocking(move || guard.check_staleness()).await {
            tracing::warn!(
                error = %contrast_platforms::error_chain(&e),
                "checking the history after a change"
            );
        }
        try_peers(&coordinator).await;
    }
}

async fn try_peers(coordinator: &Arc<Coordinator>) {
    let guard = coordinator.guard.clone();
    if !matches!(
        tokio::task::spawn_blocking(move || guard.status()).await,
        Ok(Ok(Status::Recovery))
    ) {
        return;
    }
    for peer in coordinator.peers.peers().await {
        match recover_from_peer(coordinator, &peer).await {
            Ok(generation) => {
                tracing::info!(%peer, generation, "recovered from a peer");
                coordinator.metrics.set_generation(generation);
                return;
            }
            Err(e) => tracing::info!(%peer, error = %format!("{e:#}"), "peer recovery failed"),
        }
    }
}

/// Peer recovery (docs/protocol.md §7.3): attest the peer against the latest stored
/// manifest's Coordinator policy, prove ourselves to it, receive seed and mesh CA key.
async fn recover_from_peer(coordinator: &Arc<Coordinator>, peer: &str) -> anyhow::Result<usize> {
    let guard = coordinator.guard.clone();
    let manifest = tokio::task::spawn_blocking(move || -> anyhow::Result<Manifest> {
        let history = guard.history();
        let latest = history
            .get_latest_unverified()?
            .context("no history to recover")?;
        let transition = history.get_transition(latest.transition_hash)?;
        let bytes = history.get_manifest(transition.manifest_hash)?;
        Ok(Manifest::decode(&bytes)?)
    })
    .await??;
    let coordinator_policies: Vec<[u8; 32]> = manifest
        .coordinator_policy_hashes()
        .filter_map(|h| h.to_bytes()?.try_into().ok())
        .collect();
    let validator = ReferenceValidator::new(
        coordinator.guard.verifiers().clone(),
        manifest.reference_values.snp.clone(),
        manifest.reference_values.tdx.clone(),
        Some(coordinator_policies),
    );
    let options = ClientOptions::new(ValidatorSet::new(vec![Arc::new(validator)]))
        .with_issuer(coordinator.issuer.clone());
    let (channel, _) = contrast_atls::grpc::channel(peer, options).await?;
    let response = MeshApiClient::new(channel)
        .recover(contrast_api::meshapi::RecoverRequest {})
        .await?
        .into_inner();
    let engine = SeedEngine::new(&response.seed, &response.salt)?;
    let mesh_key = contrast_seedengine::keys::p384_from_sec1_pem(&response.mesh_ca_key)?;
    // A peer of ours names its latest transition; Contrast's peers do not.
    let expected = <[u8; 32]>::try_from(response.latest_transition_hash.as_slice())
        .ok()
        .map(|hash| ExpectedTransition {
            hash,
            generation: (response.generation != 0).then_some(response.generation),
            source: ExpectedBy::Peer,
        });
    let guard = coordinator.guard.clone();
    let state = tokio::task::spawn_blocking(move || {
        guard.recover_expecting(Arc::new(engine), mesh_key, expected, |_, stored| {
            if stored == response.latest_manifest.as_slice() {
                Ok(())
            } else {
                Err(CoordinatorError::ConcurrentUpdate(
                    "the peer's manifest differs from the stored latest one".into(),
                ))
            }
        })
    })
    .await??;
    Ok(state.generation())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use contrast_collateral::{CrlPolicy, RetryPolicy};
    use contrast_testkit::kds::{Fault, LocalKds, REPORT, VCEK};

    /// A bare-metal host whose certificate table is empty: the report alone.
    struct BareHost;

    impl EvidenceIssuer for BareHost {
        fn issue(&self, _report_data: &[u8; 64]) -> Result<Evidence, IssueError> {
            Ok(Evidence {
                tee: Tee::Snp,
                raw: REPORT.to_vec(),
                certificates: Vec::new(),
                simulated: false,
            })
        }

        fn name(&self) -> &'static str {
            "bare-host"
        }
    }

    fn with_collateral(kds: &LocalKds) -> WithCollateral {
        let settings = CollateralSettings {
            kds_url: kds.url().to_owned(),
            // The local KDS serves AMD's real certificates, and no AMD-signed CRL can be
            // made here.
            crl: CrlPolicy::IfServed,
            retry: RetryPolicy {
                attempts: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        WithCollateral {
            evidence: Arc::new(BareHost),
            collateral: Arc::new(Collateral::new(settings).unwrap()),
            anchor: SnpTrustAnchor::amd(),
        }
    }

    #[test]
    fn own_evidence_gets_the_certificates_its_host_left_out() {
        let kds = LocalKds::start(Fault::None);
        let evidence = with_collateral(&kds).issue(&[0; 64]).unwrap();
        let kinds: Vec<_> = evidence.certificates.iter().map(|c| c.kind).collect();
        assert_eq!(kinds, [CertKind::Vcek, CertKind::Ask, CertKind::Ark]);
        assert_eq!(evidence.certificates[0].der, VCEK);
    }

    /// And during the outage, later evidence does not wait for KDS again.
    #[test]
    fn own_evidence_goes_out_as_the_host_made_it_when_kds_cannot_be_had() {
        let kds = LocalKds::start(Fault::ServerError);
        let issuer = with_collateral(&kds);
        let evidence = issuer.issue(&[0; 64]).unwrap();
        assert!(evidence.certificates.is_empty());
        assert_eq!(evidence.raw, REPORT);
        let asked = kds.requests();
        assert!(asked > 0);
        let again = issuer.issue(&[1; 64]).unwrap();
        assert!(again.certificates.is_empty());
        assert_eq!(kds.requests(), asked, "KDS is left alone during the pause");
    }
}
