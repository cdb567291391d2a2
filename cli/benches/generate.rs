//! `contrast generate` on a generated fixture of many workloads, against a real local
//! registry (Debian's docker-registry): a cold run (empty image cache) and warm runs (the
//! cache from the cold run), interleaved with an anchor run of the same binary that does
//! no generation (`contrast runtime`), so figures can be read as ratios on a noisy machine.
//!
//! `cargo bench -p contrast-cli --bench generate -- [--workloads N] [--images N] [--rounds N]`

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use contrast_testkit::TempDir;
use contrast_testkit::registry::{Registry, RegistrySetup};

const CONTRAST: &str = env!("CARGO_BIN_EXE_contrast");

fn section(repo: &str) -> String {
    format!(
        r#"{{"Env":["PATH=/usr/bin:/bin","APP={repo}"],"Entrypoint":["/bin/{repo}"],"Cmd":["serve"],"WorkingDir":"/srv"}}"#
    )
}

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().unwrap())
}

/// `workloads` Deployments over `images` images in files of 100, every third with a mesh.
fn fixture(dir: &Path, registry: &str, workloads: usize, images: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for file in 0..workloads.div_ceil(100) {
        let mut text = String::new();
        for i in file * 100..((file + 1) * 100).min(workloads) {
            let mesh = if i % 3 == 0 {
                "  annotations:\n    contrast.edgeless.systems/servicemesh-ingress: \"app#8080#false\"\n"
            } else {
                ""
            };
            let _ = write!(
                text,
                "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: app-{i}\n{mesh}spec:\n  selector:\n    matchLabels: {{app: app-{i}}}\n  template:\n    metadata:\n      labels: {{app: app-{i}}}\n    spec:\n      runtimeClassName: contrast-cc\n      containers:\n        - name: app\n          image: {registry}/bench/app-{}:v1\n          args: [\"--id\", \"{i}\"]\n          env:\n            - {{name: INDEX, value: \"{i}\"}}\n          ports:\n            - containerPort: 8080\n",
                i % images
            );
        }
        std::fs::write(dir.join(format!("apps-{file:02}.yml")), text).unwrap();
    }
}

fn run(workspace: &Path, args: &[&str]) -> Duration {
    let started = Instant::now();
    let output = Command::new(CONTRAST)
        .args(args)
        .current_dir(workspace)
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(
        output.status.success(),
        "contrast {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    elapsed
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let workloads = arg(&args, "--workloads", 1000);
    let images = arg(&args, "--images", 50);
    let rounds = arg(&args, "--rounds", 5);

    let registry = Registry::start(RegistrySetup::default());
    let scratch = TempDir::new("bench-images");
    for i in 0..images {
        let repo = format!("bench/app-{i}");
        registry.push_image(scratch.path(), &repo, &section(&repo));
    }
    let initializer = registry.push_image(
        scratch.path(),
        "contrast/initializer",
        &section("contrast/initializer"),
    );
    let mesh = registry.push_image(
        scratch.path(),
        "contrast/service-mesh-proxy",
        &section("contrast/service-mesh-proxy"),
    );
    let coordinator = registry.push_image(
        scratch.path(),
        "contrast/coordinator",
        &section("contrast/coordinator"),
    );
    let workspace = TempDir::new("bench-generate");
    let version = env!("CARGO_PKG_VERSION");
    std::fs::write(
        workspace.path().join("replacements.txt"),
        format!(
            "ghcr.io/contrast-rs/initializer:v{version}={initializer}\n\
             ghcr.io/contrast-rs/service-mesh-proxy:v{version}={mesh}\n\
             ghcr.io/contrast-rs/coordinator:v{version}={coordinator}\n"
        ),
    )
    .unwrap();
    // Owner keys exist already (RSA-4096 generation is not what is measured).
    let host = registry.host();
    let generate = [
        "generate",
        "--reference-values",
        "sim-snp",
        "--insecure-registry",
        &host,
        "--image-replacements",
        "replacements.txt",
        "resources/",
    ];
    let resources = workspace.path().join("resources");
    let reset = || {
        let _ = std::fs::remove_dir_all(&resources);
        let _ = std::fs::remove_file(workspace.path().join("manifest.json"));
        fixture(&resources, &host, workloads, images);
        let output = Command::new(CONTRAST)
            .args(["coordinator", "--platform", "sim-snp"])
            .output()
            .unwrap();
        std::fs::write(resources.join("coordinator.yml"), output.stdout).unwrap();
    };
    reset();
    run(workspace.path(), &generate); // creates the keys
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    let mut anchor = Vec::new();
    for _ in 0..rounds {
        reset();
        let _ = std::fs::remove_file(workspace.path().join("layers-cache.json"));
        cold.push(run(workspace.path(), &generate));
        anchor.push(run(workspace.path(), &["runtime", "--platform", "sim-snp"]));
        reset();
        warm.push(run(workspace.path(), &generate));
        anchor.push(run(workspace.path(), &["runtime", "--platform", "sim-snp"]));
    }
    let (cold, warm, anchor) = (median(cold), median(warm), median(anchor));
    println!(
        "generate, {workloads} workloads, {} images (+3 of our own), {rounds} rounds, medians:",
        images.min(workloads)
    );
    println!(
        "  warm cache:              {:>8.1} ms  (goal < 2000 ms)",
        warm.as_secs_f64() * 1e3
    );
    println!(
        "  cold (local registry):   {:>8.1} ms",
        cold.as_secs_f64() * 1e3
    );
    println!(
        "  anchor (contrast runtime): {:>6.1} ms",
        anchor.as_secs_f64() * 1e3
    );
    println!(
        "  warm / anchor = {:.1}x, cold / warm = {:.2}x, per workload (warm) = {:.3} ms",
        warm.as_secs_f64() / anchor.as_secs_f64(),
        cold.as_secs_f64() / warm.as_secs_f64(),
        warm.as_secs_f64() * 1e3 / workloads as f64
    );
}
