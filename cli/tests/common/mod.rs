//! Helpers the CLI's process tests share: running `contrast` in a deployment's workspace
//! and starting a Coordinator for it.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::print_stderr)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use contrast_testkit::{CoordinatorProcess, Deployment, TempDir, random_loopback};

pub const CONTRAST: &str = env!("CARGO_BIN_EXE_contrast");

pub fn contrast(deployment: &Deployment, args: &[&str]) -> Output {
    run_logged(
        Command::new(CONTRAST)
            .current_dir(deployment.workspace.path())
            .env("CONTRAST_SIMULATOR_DIR", &deployment.simulator_dir),
        args,
    )
}

/// `contrast` in the deployment's workspace with its collateral cache in `cache` (a cache
/// of the test's own: the simulated vendors' FMSPC and chips are real ones' names).
pub fn contrast_with_cache(deployment: &Deployment, cache: &TempDir, args: &[&str]) -> Output {
    run_logged(
        Command::new(CONTRAST)
            .current_dir(deployment.workspace.path())
            .env("CONTRAST_SIMULATOR_DIR", &deployment.simulator_dir)
            .env("CONTRAST_CACHE_DIR", cache.path()),
        args,
    )
}

/// Runs `command` (contrast, set up) with `args`, and logs what it printed, so a failing
/// test shows it.
pub fn run_logged(command: &mut Command, args: &[&str]) -> Output {
    let output = command.args(args).output().unwrap();
    eprintln!(
        "contrast {}: {}\nstdout: {}\nstderr: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn refused(output: &Output, needles: &[&str]) {
    assert!(
        !output.status.success(),
        "expected a refusal, got success:\n{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needle in needles {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
}

pub fn start(deployment: &Deployment, store: &Path) -> CoordinatorProcess {
    start_with(deployment, store, &[])
}

/// [`start`] with `extra` arguments for the Coordinator.
pub fn start_with(deployment: &Deployment, store: &Path, extra: &[String]) -> CoordinatorProcess {
    let binary = contrast_testkit::coordinator_binary(CONTRAST);
    let mut process =
        CoordinatorProcess::start(&binary, deployment, store, random_loopback(), extra);
    process.wait_probe("/probe/startup", 200, Duration::from_secs(60));
    process
}
