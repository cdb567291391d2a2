//! `coordinator`: runs the Coordinator with a store directory and a platform.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use contrast_coordinator::{Backend, Config, KubernetesBackend, Ports};
use contrast_evidence::issuer::SimulatedTee;
use contrast_platforms::Platform;

#[global_allocator]
static ALLOCATOR: contrast_coordinator::Allocator = contrast_coordinator::ALLOCATOR;

/// The Contrast Coordinator: attestation service and certificate authority of a
/// confidential deployment.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Directory of the manifest history (manifests, policies, transitions).
    #[arg(
        long,
        env = "CONTRAST_STORE_DIR",
        default_value = "/var/lib/contrast/store"
    )]
    store_dir: PathBuf,
    /// The platform this Coordinator runs on, e.g. Metal-QEMU-SNP or Sim-SNP.
    #[arg(long, env = "CONTRAST_PLATFORM")]
    platform: Platform,
    /// The simulator's key directory (required on Sim-SNP and Sim-TDX).
    #[arg(long, env = "CONTRAST_SIMULATOR_DIR")]
    simulator_dir: Option<PathBuf>,
    /// HOST_DATA of the simulated VM, 64 hex characters (the Coordinator's policy hash).
    #[arg(long, env = "CONTRAST_SIMULATED_HOST_DATA")]
    simulated_host_data: Option<String>,
    /// The address to listen on.
    #[arg(long, env = "CONTRAST_LISTEN", default_value = "0.0.0.0")]
    listen: IpAddr,
    /// A peer Coordinator's mesh API address (host:port); repeat for more.
    #[arg(long = "peer", env = "CONTRAST_PEERS", value_delimiter = ',')]
    peers: Vec<String>,
    /// The simulated TEE (simulated platforms): the platform's, simulated whole (snp on
    /// Sim-SNP, tdx on Sim-TDX; the default), or `snp-tsm` in a pod VM under QEMU (the guest
    /// kernel's test TSM provider's report, signed by the simulator). The guest binaries'
    /// variable.
    #[arg(long, env = "CONTRAST_SIMULATED_TEE")]
    simulated_tee: Option<String>,
    /// Milliseconds the simulated TEE takes per evidence (Sim-SNP and Sim-TDX only), to
    /// model slow firmware.
    #[arg(long, env = "CONTRAST_SIMULATED_ISSUE_DELAY_MS", default_value_t = 0)]
    simulated_issue_delay_ms: u64,
    /// Seconds between peer recovery attempts.
    #[arg(long, env = "CONTRAST_RECOVERY_INTERVAL", default_value_t = 15)]
    recovery_interval: u64,
    /// Where the history lives: `filesystem` (--store-dir) or `kubernetes` (ConfigMaps in
    /// the pod's namespace; peers are then found through the API server).
    #[arg(long, env = "CONTRAST_STORE", default_value = "filesystem")]
    store: String,
    /// A kubeconfig for the kubernetes store (default: the in-cluster configuration).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// The namespace of the kubernetes store (default: the service account's).
    #[arg(long, env = "CONTRAST_NAMESPACE")]
    namespace: Option<String>,
    /// This pod's name (Kubernetes sets HOSTNAME to it).
    #[arg(long, env = "HOSTNAME", default_value = "")]
    pod_name: String,
    /// Owner of the store's ConfigMaps: `statefulset` (deleted with the Coordinator's
    /// StatefulSet) or `none`.
    #[arg(long, env = "CONTRAST_STORE_OWNER", default_value = "statefulset")]
    store_owner: String,
    /// AMD's KDS (or a mirror): where the VCEK, its chain and AMD's CRL are fetched when
    /// evidence comes without them. On Sim-SNP: the simulated vendor's KDS.
    #[arg(long, env = "CONTRAST_KDS_URL", default_value = contrast_collateral::DEFAULT_KDS_URL)]
    kds_url: String,
    /// Intel's PCS (or a PCCS): where a TDX quote's TCB info, QE identity and CRLs are
    /// fetched. On Sim-TDX: the simulated vendor's PCS.
    #[arg(long, env = "CONTRAST_PCS_URL", default_value = contrast_collateral::DEFAULT_PCS_URL)]
    pcs_url: String,
    /// What the simulated host puts into the SEV-SNP certificate table (Sim-SNP only):
    /// full, chain (no CRL) or none; the rest comes from the KDS --kds-url names.
    #[arg(
        long,
        env = "CONTRAST_SIMULATED_CERT_TABLE",
        value_enum,
        default_value_t = contrast_evidence::issuer::SimulatedCertTable::Full
    )]
    simulated_cert_table: contrast_evidence::issuer::SimulatedCertTable,
    /// Log format: text or json.
    #[arg(long, env = "CONTRAST_LOG_FORMAT", default_value = "text")]
    log_format: String,
    /// Lift the pod VM's default-deny rules (IPv4, and IPv6 unless the kernel has none)
    /// before serving: the Coordinator owns its pod's network (docs/protocol.md §11.2).
    /// The shipped StatefulSet sets it; never set it on a host, whose packet filter is not
    /// the pod VM's.
    #[arg(long, env = "CONTRAST_LIFT_DEFAULT_DENY")]
    lift_default_deny: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("CONTRAST_LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format.as_str() {
        "json" => subscriber.json().init(),
        "text" => subscriber.init(),
        other => anyhow::bail!("--log-format {other}: use text or json"),
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if args.platform.is_simulated() && !cfg!(feature = "simulated") {
        anyhow::bail!(
            "platform {} is simulated, but this Coordinator is built without the simulator \
             (feature `simulated`): it runs on TEE hardware only; use a hardware platform",
            args.platform
        );
    }
    // Checked before anything changes: a refused start leaves the pod VM's rules alone.
    let simulated_tee = match args.simulated_tee.as_deref() {
        None => None,
        Some(name) => {
            let tee: SimulatedTee = name.parse()?;
            let fits = match args.platform.tee() {
                contrast_platforms::Tee::Snp => tee != SimulatedTee::Tdx,
                contrast_platforms::Tee::Tdx => tee == SimulatedTee::Tdx,
            };
            if !args.platform.is_simulated() || !fits {
                anyhow::bail!(
                    "--simulated-tee {name} (CONTRAST_SIMULATED_TEE) is not for {}: it names a \
                     simulated platform's TEE (snp or, in a pod VM under QEMU, snp-tsm on \
                     Sim-SNP; tdx on Sim-TDX); unset it",
                    args.platform
                );
            }
            if tee == SimulatedTee::SnpTsm && args.simulated_host_data.is_some() {
                anyhow::bail!(
                    "--simulated-host-data (CONTRAST_SIMULATED_HOST_DATA) is not used with \
                     --simulated-tee snp-tsm: HOST_DATA is the VM's; unset it"
                );
            }
            Some(tee)
        }
    };
    if args.lift_default_deny {
        let lifted = contrast_netfilter::Iptables::default()
            .lift_default_deny(contrast_netfilter::KernelIpv6::probe())
            .context(
                "lifting the pod VM's default-deny rules (--lift-default-deny): the \
                 Coordinator's container needs iptables and NET_ADMIN",
            )?;
        tracing::info!(ipv4 = ?lifted.ipv4, ipv6 = ?lifted.ipv6, "default-deny rules lifted");
    }
    let simulated_host_data = match &args.simulated_host_data {
        None => [0; 32],
        Some(text) => hex::decode(text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .context("--simulated-host-data must be 64 hex characters")?,
    };
    if args.simulated_issue_delay_ms > 0 && !args.platform.is_simulated() {
        anyhow::bail!(
            "--simulated-issue-delay-ms is for simulated platforms; {} issues real evidence",
            args.platform
        );
    }
    let backend = match args.store.as_str() {
        "filesystem" => Backend::Filesystem,
        "kubernetes" => Backend::Kubernetes(KubernetesBackend {
            kubeconfig: args.kubeconfig,
            namespace: args.namespace,
            pod_name: args.pod_name,
            owned: match args.store_owner.as_str() {
                "statefulset" => true,
                "none" => false,
                other => anyhow::bail!("--store-owner {other}: use statefulset or none"),
            },
        }),
        other => anyhow::bail!("--store {other}: use filesystem or kubernetes"),
    };
    let config = Config {
        store_dir: args.store_dir,
        backend,
        listen: args.listen,
        ports: Ports::default(),
        platform: args.platform,
        simulator_dir: args.simulator_dir,
        simulated_host_data,
        simulated_tee,
        peers: args.peers,
        recovery_interval: Duration::from_secs(args.recovery_interval.max(1)),
        metrics: std::env::var_os("CONTRAST_METRICS").is_some(),
        simulated_issue_delay: Duration::from_millis(args.simulated_issue_delay_ms),
        collateral: contrast_collateral::CollateralSettings {
            kds_url: args.kds_url,
            pcs_url: Some(args.pcs_url),
            ..Default::default()
        },
        simulated_cert_table: args.simulated_cert_table,
    };
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        // Kubernetes stops pods with SIGTERM; a terminal with SIGINT.
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("installing the SIGTERM handler")?;
        contrast_coordinator::run(config, async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            tracing::info!("shutting down");
        })
        .await
    })
}
