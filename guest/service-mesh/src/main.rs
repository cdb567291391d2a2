//! `service-mesh`: the Contrast service-mesh sidecar.
//!
//! Reads `CONTRAST_INGRESS_PROXY_CONFIG`, `CONTRAST_EGRESS_PROXY_CONFIG` and
//! `CONTRAST_ADMIN_PORT`, starts the listeners, installs the TPROXY rules (IPv6 and IPv4),
//! removes the default-deny rules, writes the readiness file and serves until SIGTERM or
//! SIGINT.

use std::net::{Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use contrast_netfilter::{DefaultDeny, Iptables, KernelIpv6};
use contrast_service_mesh::config::{DEFAULT_INGRESS_NO_CLIENT_AUTH_PORT, DEFAULT_INGRESS_PORT};
use contrast_service_mesh::tls::DEFAULT_TLS_DIR;
use contrast_service_mesh::{
    DEFAULT_READY_FILE, IngressConfig, IngressUpstream, ProxyConfig, ProxyOptions, RedirectRules,
    TlsPaths, TproxyPorts,
};
use tracing::info;

/// How long open connections may take to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    name = "service-mesh",
    version,
    about = "The Contrast service-mesh sidecar"
)]
struct Args {
    /// Directory with mesh-ca.pem, certChain.pem and key.pem.
    #[arg(long, default_value = DEFAULT_TLS_DIR)]
    tls_dir: PathBuf,
    /// The readiness file written once everything is in place.
    #[arg(long, default_value = DEFAULT_READY_FILE)]
    ready_file: PathBuf,
    /// Install no iptables rules and leave the default-deny rules alone (the ingress
    /// listeners are then not transparent and IPv4 only).
    #[arg(long)]
    no_redirect: bool,
    /// The ingress port requiring client certificates.
    #[arg(long, default_value_t = DEFAULT_INGRESS_PORT)]
    ingress_port: u16,
    /// The ingress port for ports configured `false`.
    #[arg(long, default_value_t = DEFAULT_INGRESS_NO_CLIENT_AUTH_PORT)]
    ingress_no_client_auth_port: u16,
    /// Forward every ingress connection here instead of to its original destination (for
    /// tests and benchmarks without redirect rules).
    #[arg(long)]
    ingress_upstream: Option<SocketAddr>,
    /// The iptables binary.
    #[arg(long, default_value = "iptables")]
    iptables: PathBuf,
    /// The iptables-restore binary.
    #[arg(long, default_value = "iptables-restore")]
    iptables_restore: PathBuf,
    /// The ip6tables binary.
    #[arg(long, default_value = "ip6tables")]
    ip6tables: PathBuf,
    /// The ip6tables-restore binary.
    #[arg(long, default_value = "ip6tables-restore")]
    ip6tables_restore: PathBuf,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let config = ProxyConfig::from_env()?;
    info!(?config, "service mesh configuration");
    tokio::runtime::Runtime::new()
        .context("starting the async runtime")?
        .block_on(run(args, config))
}

async fn run(args: Args, config: ProxyConfig) -> anyhow::Result<()> {
    let redirect = !args.no_redirect;
    let ingress = config.ingress.clone();
    let ipv6 = KernelIpv6::probe();
    let mut options = ProxyOptions::new(config, TlsPaths::in_dir(&args.tls_dir));
    options.ingress_port = args.ingress_port;
    options.ingress_no_client_auth_port = args.ingress_no_client_auth_port;
    options.transparent = redirect;
    if redirect && ipv6 == KernelIpv6::Present {
        // The IPv6 TPROXY rules need IPv6 listeners on the same ports.
        options.ingress_ipv6 = Some(Ipv6Addr::UNSPECIFIED);
    }
    if let Some(upstream) = args.ingress_upstream {
        options.ingress_upstream = IngressUpstream::Fixed(upstream);
    }
    let proxy = contrast_service_mesh::start(options).await?;

    if redirect {
        let tools = Iptables {
            iptables: args.iptables,
            iptables_restore: args.iptables_restore,
            ip6tables: args.ip6tables,
            ip6tables_restore: args.ip6tables_restore,
        };
        let rules = match (
            &ingress,
            proxy.ingress_addr(),
            proxy.ingress_no_client_auth_addr(),
        ) {
            (IngressConfig::Redirect(entries), Some(mtls), Some(no_client_auth)) => {
                Some(RedirectRules::new(
                    entries,
                    TproxyPorts {
                        mtls: mtls.port(),
                        no_client_auth: no_client_auth.port(),
                    },
                ))
            }
            _ => None,
        };
        // Blocking for a few milliseconds at startup; nothing is being served yet that
        // the redirect would send here.
        let installed = tokio::task::spawn_blocking(move || {
            contrast_service_mesh::install(&tools, rules.as_ref(), ipv6)
        })
        .await
        .context("the iptables task failed")?
        .context("installing the redirect rules and removing the default-deny rules")?;
        if installed.redirect {
            info!("redirect rules installed");
        } else {
            info!("ingress disabled; no redirect rules");
        }
        match installed.default_deny.ipv6 {
            None => info!("kernel without IPv6; no ip6tables rules needed"),
            Some(DefaultDeny::Removed) => info!("IPv6 default-deny rule removed"),
            Some(DefaultDeny::NotPresent) => info!("IPv6 default-deny rule not present"),
        }
        match installed.default_deny.ipv4 {
            DefaultDeny::Removed => info!("default-deny rule removed"),
            DefaultDeny::NotPresent => info!("default-deny rule not present"),
        }
    }

    contrast_service_mesh::write_ready_file(&args.ready_file)
        .with_context(|| format!("writing the readiness file {}", args.ready_file.display()))?;
    info!(ready_file = %args.ready_file.display(), "ready");

    wait_for_termination().await?;
    info!("shutting down");
    proxy.shutdown(SHUTDOWN_GRACE).await;
    Ok(())
}

async fn wait_for_termination() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
