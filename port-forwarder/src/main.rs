//! `port-forwarder --listen ADDR --to HOST:PORT`: accepts TCP connections on `ADDR` and
//! relays each, byte for byte in both directions, to `HOST:PORT`, resolved anew for every
//! connection (a Service name follows its endpoints). It replaces Contrast's socat pod: one
//! small memory-safe binary without a TLS library, run as a non-root user.
//!
//! At most [`MAX_CONNECTIONS`] connections are relayed at a time; more wait in the
//! listen backlog. A connection the target refuses is closed at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Connections relayed at a time.
const MAX_CONNECTIONS: usize = 256;

/// How long connecting to the target may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Relay TCP connections to a target.
#[derive(Debug, Parser)]
#[command(name = "port-forwarder", version, about)]
struct Args {
    /// The address to listen on, e.g. 0.0.0.0:1313.
    #[arg(long)]
    listen: SocketAddr,
    /// Where to relay each connection, HOST:PORT, e.g. coordinator:1313.
    #[arg(long)]
    to: String,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CONTRAST_LOG_LEVEL")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(listen = %args.listen, to = %args.to, "relaying");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let target: Arc<str> = Arc::from(args.to);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    loop {
        let slot = tokio::select! {
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            slot = slots.clone().acquire_owned() => slot.context("the connection limit closed")?,
        };
        let (client, peer) = tokio::select! {
            _ = terminate.recv() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and similar: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let target = target.clone();
        tokio::spawn(async move {
            let _slot = slot;
            if let Err(e) = relay(client, &target).await {
                tracing::info!(%peer, error = %format!("{e:#}"), "connection ended");
            }
        });
    }
    tracing::info!("shutting down");
    Ok(())
}

async fn relay(mut client: TcpStream, target: &str) -> anyhow::Result<()> {
    let mut upstream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
        .await
        .with_context(|| format!("connecting to {target} timed out"))?
        .with_context(|| format!("connecting to {target}"))?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream)
        .await
        .with_context(|| format!("relaying to {target}"))?;
    Ok(())
}
