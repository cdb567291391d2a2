//! Peer recovery time: three `coordinator` processes (the release binary) share the
//! history through a fake Kubernetes API server; each iteration kills one replica, starts
//! it again and measures, from the process start, when it
//!
//! * **listens**: its probe port answers (the process is up, its listeners bound; no
//!   recovery yet) — the anchor: what any start costs, recovery or not;
//! * **started**: the startup probe answers 200 (after the first peer-recovery attempt);
//! * **ready**: the readiness probe answers 200 (it recovered seed, salt, mesh CA key and
//!   manifest from a ready peer over mutual aTLS and checked the history).
//!
//! The replica restarted rotates, so every replica recovers from the other two. A second
//! anchor is the first start of the three replicas, before any manifest: start to
//! startup 200 with nothing to recover (the first attempt finds no ready peer).
//! The goal is ready < 2 s after the process start.
//!
//! ```text
//! cargo bench -p contrast-coordinator --bench ha_recovery -- --iterations 10
//! ```

// A benchmark binary reports to the terminal and fails loudly on set-up errors.
#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use contrast_testkit::ha::{Cluster, Replica};
use contrast_testkit::{Deployment, http_get, random_loopback, set_manifest};

/// The goal of the issue: a restarted replica ready within 2 s of its start.
const GOAL: Duration = Duration::from_secs(2);
/// How often the probes are polled while timing.
const POLL: Duration = Duration::from_millis(2);

fn parse_iterations() -> anyhow::Result<usize> {
    let mut iterations = 10;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--iterations" => {
                let value = args.next().context("--iterations needs a number")?;
                iterations = value
                    .parse()
                    .with_context(|| format!("--iterations {value}: not a number"))?;
                if iterations == 0 {
                    bail!("--iterations must be at least 1");
                }
            }
            // cargo bench passes --bench to harness-less targets.
            "--bench" => {}
            "-h" | "--help" => {
                println!("ha_recovery [--iterations N]   restarts measured (10)");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other}; see --help"),
        }
    }
    Ok(iterations)
}

/// When a replica passed each stage, from its process start.
#[derive(Debug, Clone, Copy)]
struct Timing {
    listening: Duration,
    started: Duration,
    ready: Duration,
}

/// Polls `replica`'s probes from `spawned` until it is ready (30 s at most).
fn time_start(replica: &Replica, spawned: Instant) -> anyhow::Result<Timing> {
    let probe = replica.process.probe_addr();
    let deadline = spawned + Duration::from_secs(30);
    let mut listening = None;
    let mut started = None;
    loop {
        if listening.is_none() {
            match http_get(&probe, "/probe/startup") {
                Some((200, _)) => {
                    listening = Some(spawned.elapsed());
                    started = listening;
                }
                Some(_) => listening = Some(spawned.elapsed()),
                None => {}
            }
        } else if started.is_none()
            && http_get(&probe, "/probe/startup").is_some_and(|(code, _)| code == 200)
        {
            started = Some(spawned.elapsed());
        }
        if let (Some(listening), Some(started)) = (listening, started)
            && replica.ready()
        {
            return Ok(Timing {
                listening,
                started,
                ready: spawned.elapsed(),
            });
        }
        if Instant::now() > deadline {
            bail!(
                "{} not ready within 30 s; log:\n{}",
                replica.name,
                replica.process.log_text()
            );
        }
        std::thread::sleep(POLL);
    }
}

/// The replicas as a slice of references, as the cluster helpers take them.
fn all(replicas: &[Replica]) -> Vec<&Replica> {
    replicas.iter().collect()
}

/// Median, min and max in milliseconds.
fn summary(mut samples: Vec<Duration>) -> String {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = if samples.len() % 2 == 1 {
        samples[samples.len() / 2]
    } else {
        (samples[samples.len() / 2 - 1] + samples[samples.len() / 2]) / 2
    };
    format!(
        "median {:>7.1} ms   min {:>7.1} ms   max {:>7.1} ms",
        ms(median),
        ms(samples[0]),
        ms(samples[samples.len() - 1])
    )
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn main() -> anyhow::Result<()> {
    let iterations = parse_iterations()?;
    let binary = Path::new(env!("CARGO_BIN_EXE_coordinator"));
    println!(
        "ha_recovery: {iterations} restarts of one of three replicas, {} cores, load average \
         before: {}",
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let cluster = Cluster::start();
    let deployment = Deployment::new(&["web"]);

    // First starts: nothing to recover.
    let mut first_starts = Vec::new();
    let mut replicas = Vec::new();
    for i in 0..3 {
        let spawned = Instant::now();
        let mut replica = cluster.spawn(
            binary,
            &deployment,
            &format!("coordinator-{i}"),
            random_loopback(),
        );
        replica
            .process
            .wait_probe("/probe/startup", 200, Duration::from_secs(30));
        first_starts.push(spawned.elapsed());
        replicas.push(replica);
    }
    runtime
        .block_on(set_manifest(&deployment, &replicas[0].process.user_addr()))
        .map_err(anyhow::Error::msg)?;
    cluster.wait(&all(&replicas), "three ready replicas", || {
        replicas.iter().all(Replica::ready)
    });

    let mut timings = Vec::with_capacity(iterations);
    for iteration in 0..iterations {
        let index = iteration % replicas.len();
        let (name, ip) = cluster.kill(replicas.remove(index));
        let spawned = Instant::now();
        let replica = cluster.spawn(binary, &deployment, &name, ip);
        let timing = time_start(&replica, spawned)?;
        println!(
            "  {iteration:>2} {name}: listening {:>7.1} ms, started {:>7.1} ms, ready {:>7.1} ms",
            timing.listening.as_secs_f64() * 1e3,
            timing.started.as_secs_f64() * 1e3,
            timing.ready.as_secs_f64() * 1e3
        );
        timings.push(timing);
        replicas.insert(index, replica);
        // The kubelet marks the pod Ready again before the next restart.
        cluster.sync_pods(&all(&replicas));
    }

    println!("\nfrom the process start ({iterations} restarts, peer recovery):");
    println!(
        "  listening (anchor)        {}",
        summary(timings.iter().map(|t| t.listening).collect())
    );
    println!(
        "  startup probe 200         {}",
        summary(timings.iter().map(|t| t.started).collect())
    );
    println!(
        "  ready                     {}",
        summary(timings.iter().map(|t| t.ready).collect())
    );
    println!(
        "  ready - listening         {}   (the recovery itself)",
        summary(timings.iter().map(|t| t.ready - t.listening).collect())
    );
    println!(
        "first start, nothing to recover: start to startup probe 200 (anchor, 3 starts)\n  \
                                    {}",
        summary(first_starts)
    );
    let worst = timings.iter().map(|t| t.ready).max().unwrap_or_default();
    println!(
        "goal: ready < {GOAL:?} after the start: {} (slowest {:.1} ms); load average after: {}",
        if worst < GOAL { "met" } else { "NOT met" },
        worst.as_secs_f64() * 1e3,
        load_average()
    );
    Ok(())
}
