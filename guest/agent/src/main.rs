//! `contrast-agent`: the pod VM's agent. The image's init starts it after the initdata
//! check has installed the pod's policy.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use contrast_agent::{Agent, AgentConfig, PolicyGate, RUN_DIR, serve};

/// Serves the Kata agent API; every request is decided by the pod's policy first.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The policy the initdata check installed.
    #[arg(
        long,
        env = "CONTRAST_AGENT_POLICY",
        default_value = "/run/measured-cfg/policy.rego"
    )]
    policy: PathBuf,
    /// The initdata document the initdata check verified; when present, every workload
    /// container gets it read-only at the same path.
    #[arg(long, default_value = contrast_agent::container::spec::INITDATA_MOUNT)]
    initdata: PathBuf,
    /// Where to listen: `vsock://CID:PORT` or `unix:///path`.
    #[arg(long, default_value = serve::DEFAULT_LISTEN)]
    listen: String,
    /// The containers' bundles (`<dir>/<container ID>/rootfs`).
    #[arg(long, default_value = RUN_DIR)]
    run_dir: PathBuf,
    /// The OCI runtime.
    #[arg(long, default_value = "/usr/bin/crun")]
    crun: PathBuf,
    /// A static busybox, the pause container's program.
    #[arg(long, default_value = "/bin/busybox")]
    pause: PathBuf,
    /// The only root certificates for HTTPS registries (a PEM bundle; the image's).
    #[arg(long, default_value = "/etc/ssl/certs/ca-certificates.crt")]
    registry_roots: PathBuf,
    /// Registries (`host:port`) pulled from over plain HTTP; every layer is still hashed
    /// against the digest the policy pins. Comma-separated.
    #[arg(
        long,
        env = "CONTRAST_AGENT_INSECURE_REGISTRIES",
        value_delimiter = ','
    )]
    insecure_registry: Vec<String>,
    /// Registry credentials and trust for pulls: the image puller config the guest's init
    /// copies from the runtime's device (unmeasured; images stay pinned by digest).
    #[arg(long, default_value = contrast_initdata::disk::GUEST_IMAGEPULLER_CONFIG)]
    imagepuller_config: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal, and not when NO_COLOR asks for none (the VM's
        // console is a terminal whose text is read back by tools).
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .init();
    let args = Args::parse();
    let gate = PolicyGate::from_file(&args.policy)?;
    tracing::info!(policy = %args.policy.display(), source = ?gate.source(), "policy loaded");
    // Registries are reached over rustls with aws-lc-rs, the one provider.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = AgentConfig {
        run_dir: args.run_dir.clone(),
        registry: contrast_registry::ResolverOptions {
            insecure_registries: args.insecure_registry.clone(),
            root_certificates: Some(args.registry_roots.clone()),
            ..contrast_registry::ResolverOptions::default()
        },
        puller_config: Some(args.imagepuller_config.clone()),
        crun: args.crun.clone(),
        pause: args.pause.clone(),
        initdata: args.initdata.is_file().then(|| args.initdata.clone()),
        ..AgentConfig::default()
    };
    let agent = Agent::new(gate, config);
    let mut server = serve::server(&args.listen, agent.clone())
        .with_context(|| format!("listening on {}", args.listen))?;
    server
        .start()
        .await
        .with_context(|| format!("serving on {}", args.listen))?;
    tracing::info!(
        listen = %args.listen,
        "{}",
        contrast_agent_protocol::AGENT_SERVING_LOG
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        () = agent.destroyed() => tracing::info!("the sandbox was destroyed; stopping"),
        _ = terminate.recv() => tracing::info!("SIGTERM; stopping"),
        result = tokio::signal::ctrl_c() => {
            result.context("waiting for SIGINT")?;
            tracing::info!("SIGINT; stopping");
        }
    }
    // Answers in flight (DestroySandbox's own) are sent before the connections close.
    server.shutdown().await.context("shutting down")?;
    Ok(())
}
