//! `service-mesh`: the Contrast service-mesh sidecar.
//!
//! Reads `CONTRAST_INGRESS_PROXY_CONFIG`, `CONTRAST_EGRESS_PROXY_CONFIG` and
//! `CONTRAST_ADMIN_PORT`, starts the listeners, installs the TPROXY rules, removes the
//! default-deny rule, writes the readiness file and serves until SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use contrast_service_mesh::config::{DEFAULT_INGRESS_NO_CLIENT_AUTH_PORT, DEFAULT_INGRESS_PORT};
use contrast_service_mesh::tls::DEFAULT_TLS_DIR;
use contrast_service_mesh::{
    DEFAULT_READY_FILE, DefaultDeny, IngressConfig, IngressUpstream, Iptables, ProxyConfig,
    ProxyOptions, RedirectRules, TlsPaths, TproxyPorts,
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
    /// Install no iptables rules and leave the default-deny rule alone (the ingress
    /// listeners are then not transparent).
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
    let mut options = ProxyOptions::new(config, TlsPaths::in_dir(&args.tls_dir));
    options.ingress_port = args.ingress_port;
    options.ingress_no_client_auth_port = args.ingress_no_client_auth_port;
    options.transparent = redirect;
    if let Some(upstream) = args.ingress_upstream {
        options.ingress_upstream = IngressUpstream::Fixed(upstream);
    }
    let proxy = contrast_service_mesh::start(options).await?;

    if redirect {
        let tools = Iptables {
            iptables: args.iptables,
            iptables_restore: args.iptables_restore,
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
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            match rules {
                Some(rules) => {
                    tools
                        .apply(&rules)
                        .context("installing the redirect rules")?;
                    info!("redirect rules installed");
                }
                None => info!("ingress disabled; no redirect rules"),
            }
            // Only now: inbound traffic is either still denied or goes through the proxy.
            match tools
                .remove_default_deny()
                .context("removing the default-deny rule")?
            {
                DefaultDeny::Removed => info!("default-deny rule removed"),
                DefaultDeny::NotPresent => info!("default-deny rule not present"),
            }
            Ok(())
        })
        .await
        .context("the iptables task failed")??;
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
