//! `--lift-default-deny` (set by the shipped StatefulSet): in a network namespace holding
//! the pod VM's default-deny rules (IPv4 and IPv6, as the image's init installs them), the
//! Coordinator removes both before it serves, and its probe port answers from inside the
//! namespace; without the flag it leaves the packet filter alone and stays unreachable.
//!
//! Needs root, `ip` (iproute2), iptables and python3 (the HTTP client in the namespace).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use contrast_netfilter::DEFAULT_DENY_RULE;
use contrast_testkit::{Deployment, TempDir};

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} (install iproute2 and iptables): {e}"))
}

/// A network namespace of its own with `lo` up; deleted on drop.
struct Netns(String);

impl Netns {
    fn create(label: &str) -> Netns {
        let name = format!("coord-{}-{label}", std::process::id());
        let output = run("ip", &["netns", "add", &name]);
        assert!(
            output.status.success(),
            "cannot create network namespace {name} (this test needs root and iproute2): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let netns = Netns(name);
        assert!(
            netns
                .exec("ip", &["link", "set", "lo", "up"])
                .status
                .success()
        );
        netns
    }

    fn exec(&self, program: &str, args: &[&str]) -> Output {
        let mut all = vec!["netns", "exec", &self.0, program];
        all.extend(args);
        run("ip", &all)
    }

    /// `iptables` or `ip6tables` with `action` (`-A`, `-C`) on the default-deny rule.
    fn default_deny(&self, tool: &str, action: &str) -> bool {
        let mut args = vec!["--wait", "-t", "filter", action, "INPUT"];
        args.extend(DEFAULT_DENY_RULE);
        self.exec(tool, &args).status.success()
    }

    /// Whether the Coordinator's startup probe answers 200 from inside.
    fn probe_answers(&self) -> bool {
        self.exec(
            "python3",
            &[
                "-c",
                "import urllib.request; \
                 urllib.request.urlopen('http://127.0.0.1:9102/probe/startup', timeout=2)",
            ],
        )
        .status
        .success()
    }

    fn spawn_coordinator(&self, deployment: &Deployment, store: &Path, extra: &[&str]) -> Child {
        let log = std::fs::File::create(store.with_extension("log")).unwrap();
        Command::new("ip")
            .args(["netns", "exec", &self.0, common::COORDINATOR])
            .arg("--store-dir")
            .arg(store)
            .args(["--platform", "Sim-SNP", "--simulator-dir"])
            .arg(&deployment.simulator_dir)
            .arg("--simulated-host-data")
            .arg(hex::encode(deployment.policy_hash("coordinator")))
            .args(["--listen", "127.0.0.1", "--recovery-interval", "1"])
            .args(extra)
            .env("CONTRAST_LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = run("ip", &["netns", "del", &self.0]);
    }
}

/// Waits until `log` contains `line`, or fails with the log.
fn wait_for_log(log: &Path, line: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains(line) {
            return;
        }
        assert!(Instant::now() < deadline, "no {line:?} in the log:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_coordinator_lifts_its_pods_default_deny_rules_only_when_told() {
    let deployment = Deployment::new(&[]);
    for lift in [false, true] {
        let netns = Netns::create(if lift { "lift" } else { "keep" });
        for tool in ["iptables", "ip6tables"] {
            assert!(netns.default_deny(tool, "-A"), "{tool}: adding the rule");
        }
        assert!(
            !netns.probe_answers(),
            "nothing answers before the Coordinator"
        );
        let store = TempDir::new("store");
        let flag: &[&str] = if lift { &["--lift-default-deny"] } else { &[] };
        let mut coordinator = netns.spawn_coordinator(&deployment, store.path(), flag);
        let log = store.path().with_extension("log");
        wait_for_log(&log, "coordinator listening");
        let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
        if lift {
            assert!(
                log_text().contains("default-deny rules lifted"),
                "{}",
                log_text()
            );
            let deadline = Instant::now() + Duration::from_secs(60);
            while !netns.probe_answers() {
                assert!(
                    Instant::now() < deadline,
                    "probe unreachable:\n{}",
                    log_text()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        } else {
            // Listening, but new connections are dropped.
            assert!(
                !netns.probe_answers(),
                "reachable through the rule:\n{}",
                log_text()
            );
        }
        for tool in ["iptables", "ip6tables"] {
            assert_eq!(
                netns.default_deny(tool, "-C"),
                !lift,
                "{tool}: the rule after a start with lift = {lift}:\n{}",
                log_text()
            );
        }
        let _ = coordinator.kill();
        let _ = coordinator.wait();
    }
}

/// Told to lift the rule but without iptables (or NET_ADMIN), a Coordinator in a pod VM
/// would be unreachable: it stops at once and says what it needs.
#[test]
fn without_iptables_the_coordinator_refuses_to_start_naming_what_it_needs() {
    let deployment = Deployment::new(&[]);
    let store = TempDir::new("store");
    let empty = TempDir::new("no-tools");
    let mut coordinator = Command::new(common::COORDINATOR)
        .arg("--store-dir")
        .arg(store.path())
        .args(["--platform", "Sim-SNP", "--simulator-dir"])
        .arg(&deployment.simulator_dir)
        .args(["--listen", "127.0.0.1", "--lift-default-deny"])
        .env("PATH", empty.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A Coordinator that started anyway would serve until killed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while coordinator.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = coordinator.kill();
            panic!("the Coordinator started without lifting the rules");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = coordinator.wait_with_output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for needed in ["--lift-default-deny", "iptables", "NET_ADMIN"] {
        assert!(stderr.contains(needed), "{needed}: {stderr}");
    }
    assert!(!stderr.contains("coordinator listening"), "{stderr}");
}
