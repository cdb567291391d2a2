//! Liveness probe latency (port 9102) while unauthenticated clients flood the aTLS ports
//! with ClientHellos and stall, against the same probe on the idle Coordinator in the same
//! run. Each hanging ClientHello costs the Coordinator an evidence issuance (simulated
//! SEV-SNP: a VCEK signed with RSA-4096 and a signed report) before the client has proven
//! anything.
//!
//! ```text
//! cargo bench -p contrast-coordinator --bench probe_flood -- --clients 64 --samples 300 --issue-delay-ms 100
//! ```

// A benchmark binary reports to the terminal and fails loudly on set-up errors.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use contrast_coordinator::Ports;
use contrast_testkit::{
    Deployment, TempDir, hanging_client_hellos, http_get, random_loopback, set_manifest,
};

// The Coordinator binary's allocator: this process runs the Coordinator.
#[global_allocator]
static ALLOCATOR: contrast_coordinator::Allocator = contrast_coordinator::ALLOCATOR;

/// Command-line settings.
#[derive(Debug, Clone, Copy)]
struct Settings {
    /// Hanging clients per aTLS port (user API and mesh API).
    clients: usize,
    /// Probes per phase.
    samples: usize,
    /// Milliseconds the simulated TEE takes per evidence (hardware: milliseconds to
    /// seconds; the simulator alone: about 80 µs).
    issue_delay_ms: u64,
}

impl Settings {
    fn parse() -> anyhow::Result<Self> {
        let mut settings = Settings {
            clients: 64,
            samples: 300,
            issue_delay_ms: 100,
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> anyhow::Result<usize> {
                let value = args
                    .next()
                    .with_context(|| format!("{name} needs a number"))?;
                value
                    .parse()
                    .with_context(|| format!("{name} {value}: not a number"))
            };
            match arg.as_str() {
                "--clients" => settings.clients = number("--clients")?,
                "--samples" => settings.samples = number("--samples")?.max(1),
                "--issue-delay-ms" => settings.issue_delay_ms = number("--issue-delay-ms")? as u64,
                // cargo bench passes --bench to harness-less targets.
                "--bench" => {}
                other => bail!(
                    "unknown argument {other}; use --clients N --samples S --issue-delay-ms D"
                ),
            }
        }
        Ok(settings)
    }
}

/// `samples` liveness probes 10 ms apart, each over a fresh connection: sorted latencies.
fn probe(addr: &str, samples: usize) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        let answer = http_get(addr, "/probe/liveness");
        let elapsed = start.elapsed();
        match answer {
            Some((200, _)) => latencies.push(elapsed),
            other => bail!("the liveness probe answered {other:?} after {elapsed:?}"),
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    latencies.sort();
    Ok(latencies)
}

/// Nearest rank: the smallest value with at least p % of the samples at or below it.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() -> anyhow::Result<()> {
    let settings = Settings::parse()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(settings))
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let deployment = tokio::task::spawn_blocking(|| Deployment::new(&["web"]))
        .await
        .context("creating the simulated deployment")?;
    let store = TempDir::new("probe-flood-store");
    let ip = random_loopback();
    let ports = Ports::default();
    let config = common::sim_snp_config(
        &deployment,
        store.path(),
        ip,
        Duration::from_millis(settings.issue_delay_ms),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let coordinator = tokio::spawn(contrast_coordinator::run(config, async {
        let _ = stop_rx.await;
    }));
    let user_addr = format!("{ip}:{}", ports.user);
    let mesh_addr = format!("{ip}:{}", ports.mesh);
    let probe_addr = format!("{ip}:{}", ports.probes);
    if let Err(e) = set_manifest(&deployment, &user_addr).await {
        if coordinator.is_finished() {
            coordinator.await??;
        }
        bail!(e);
    }

    let idle = {
        let addr = probe_addr.clone();
        tokio::task::spawn_blocking(move || probe(&addr, settings.samples)).await??
    };

    // The flood lasts as long as the probes take, plus a margin to build up first.
    let duration = Duration::from_millis(settings.samples as u64 * 15 + 2000);
    let until = Instant::now() + duration;
    let addrs = vec![user_addr.clone(), mesh_addr.clone()];
    let clients = settings.clients;
    let flood = tokio::spawn(async move {
        hanging_client_hellos(&addrs, clients, Duration::from_millis(300), until).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flooded = {
        let addr = probe_addr.clone();
        tokio::task::spawn_blocking(move || probe(&addr, settings.samples)).await??
    };
    let sent = flood.await.context("the flood")?;
    let _ = stop_tx.send(());
    coordinator
        .await
        .context("the coordinator task")?
        .context("the coordinator")?;

    println!(
        "probe_flood: {cores} cores, {} hanging clients on each of 1313 and 7777 \
         (ClientHello, stall 300 ms, reconnect), evidence takes {} ms, {} probes per phase",
        settings.clients, settings.issue_delay_ms, settings.samples
    );
    println!(
        "  ClientHellos sent during the flood: {sent} ({:.0}/s)",
        sent as f64 / duration.as_secs_f64()
    );
    for (name, sorted) in [("idle", &idle), ("flooded", &flooded)] {
        println!(
            "  {name:8} liveness p50 {:7.2} ms  p99 {:7.2} ms  max {:7.2} ms",
            ms(percentile(sorted, 50)),
            ms(percentile(sorted, 99)),
            ms(sorted[sorted.len() - 1]),
        );
    }
    println!(
        "  p99 flooded / idle: {:.2}",
        ms(percentile(&flooded, 99)) / ms(percentile(&idle, 99)).max(1e-3)
    );
    Ok(())
}
