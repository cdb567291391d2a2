//! Crash injection: a Coordinator killed with SIGKILL before, during or after a SetManifest
//! leaves a history that is exactly the one before the update or the one after it — signed,
//! walkable, every blob intact — and a new Coordinator recovers it and serves it.
//!
//! Each run is what happens in a cluster: a Coordinator starts on the store, the user
//! recovers it, sets a new manifest, and the node dies at some moment. The kill delays are
//! random (the seed is printed; set `CONTRAST_CRASH_SEED` to replay a sequence) and spread
//! over 0 to 1.5 times a measured SetManifest round trip, with some kills right after the
//! request goes out and some after the answer came back.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{StoredHistory, manifest_hash};
use contrast_testkit::{Deployment, TempDir};

/// Kill runs in total.
const RUNS: usize = 200;
/// Every this many runs, the recovered Coordinator must also become ready and serve the
/// stored history through GetManifests.
const SERVE_CHECK_EVERY: usize = 20;

/// xorshift64*: enough to spread kill delays, and replayable from the printed seed.
struct Rng(u64);

impl Rng {
    fn new() -> Self {
        let seed = match std::env::var("CONTRAST_CRASH_SEED") {
            Ok(text) => text.parse().expect("CONTRAST_CRASH_SEED is a u64"),
            Err(_) => {
                let mut bytes = [0u8; 8];
                aws_lc_rs::rand::fill(&mut bytes).unwrap();
                u64::from_le_bytes(bytes) | 1
            }
        };
        eprintln!("kill delays from CONTRAST_CRASH_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, max].
    fn duration(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos() as u64;
        Duration::from_nanos(self.next() % (nanos + 1))
    }
}

/// When a run's kill lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kill {
    /// As soon as the request was handed to the client.
    Immediately,
    /// After this long.
    After(Duration),
    /// After the Coordinator answered.
    AfterResponse,
}

fn kill_for(run: usize, rng: &mut Rng, set_duration: Duration) -> Kill {
    match run % 10 {
        0 => Kill::AfterResponse,
        1 => Kill::Immediately,
        2 => Kill::After(rng.duration(set_duration / 10)),
        _ => Kill::After(rng.duration(set_duration * 3 / 2)),
    }
}

fn median(durations: &[Duration]) -> Duration {
    let mut sorted = durations.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// Whether a killed writer left a temporary file (a kill in the middle of a store write).
fn has_temp_files(store: &Path) -> bool {
    std::fs::read_dir(store).unwrap().any(|class| {
        let class = class.unwrap().path();
        class.is_dir()
            && std::fs::read_dir(&class).unwrap().any(|f| {
                f.unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(".tmp-")
            })
    })
}

#[derive(Debug, Default)]
struct Tally {
    old: usize,
    new: usize,
    answered: usize,
    temp_files: usize,
}

#[test]
fn sigkill_around_set_manifest_keeps_the_history_consistent() {
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let deployment = Deployment::new(&["web"]);
    let validators = common::coordinator_validators(&deployment);
    let store = TempDir::new("crash-store");

    // Manifest A, then a few updates whose round trips calibrate the kill delays.
    let mut process = common::start(&deployment, store.path());
    let addr = process.user_addr();
    let (secrets, mut set_durations) = runtime.block_on(async {
        let mut owner =
            common::client(&addr, &validators, Some(common::owner_key(&deployment))).await;
        let first = common::manifest_variant(&deployment, "a");
        let secrets = common::first_set(&mut owner, &deployment, &first).await;
        let mut durations = Vec::new();
        for i in 0..5 {
            let request = common::set_request(
                &deployment,
                &common::manifest_variant(&deployment, &format!("calibrate-{i}")),
            );
            let start = Instant::now();
            owner.set_manifest(request).await.unwrap();
            durations.push(start.elapsed());
        }
        (secrets, durations)
    });
    process.kill();
    let _ = std::fs::remove_file(&process.log);
    let mut expected = common::read_store(store.path(), secrets.verifying_key()).unwrap();
    assert_eq!(expected.manifests.len(), 6);
    eprintln!(
        "set round trips {set_durations:?}; setup took {:?}",
        started.elapsed()
    );

    let mut rng = Rng::new();
    let mut tally = Tally::default();
    for run in 0..RUNS {
        let mut process = common::start(&deployment, store.path());
        let addr = process.user_addr();
        let serve_check = run % SERVE_CHECK_EVERY == 0;
        let mut owner = runtime.block_on(async {
            common::recover(&addr, &validators, &deployment, &secrets)
                .await
                .unwrap_or_else(|s| panic!("run {run}: recover: {s:?}\n{}", process.log_text()));
            let mut owner =
                common::client(&addr, &validators, Some(common::owner_key(&deployment))).await;
            if serve_check {
                let served = common::get_manifests(&mut owner).await.unwrap();
                common::assert_served_history(&served, &expected);
            }
            owner
        });
        if serve_check {
            process.wait_probe("/probe/readiness", 200, Duration::from_secs(10));
        }

        let variant = common::manifest_variant(&deployment, &format!("run-{run}"));
        let request = common::set_request(&deployment, &variant);
        let kill = kill_for(run, &mut rng, median(&set_durations));
        let sent = Instant::now();
        let set = runtime.spawn(async move {
            let result = owner.set_manifest(request).await;
            (result, sent.elapsed())
        });
        match kill {
            Kill::Immediately => {}
            Kill::After(delay) => std::thread::sleep(delay),
            Kill::AfterResponse => {
                while !set.is_finished() {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        process.kill();
        let (result, elapsed) = runtime
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), set).await })
            .expect("the client notices the killed Coordinator")
            .unwrap();
        let answered = match result {
            Ok(_) => {
                set_durations.push(elapsed);
                true
            }
            Err(_) => false,
        };
        assert!(
            answered || kill != Kill::AfterResponse,
            "run {run}: the set failed without a kill: {result:?}\n{}",
            process.log_text()
        );

        if has_temp_files(store.path()) {
            tally.temp_files += 1;
        }
        let after = common::read_store(store.path(), secrets.verifying_key())
            .unwrap_or_else(|e| panic!("run {run} ({kill:?}): the history is damaged: {e}"));
        let landed = check_outcome(run, kill, &expected, &after, &variant);
        assert!(
            landed || !answered,
            "run {run}: the Coordinator answered the set, but the store does not have it"
        );
        if landed {
            tally.new += 1;
        } else {
            tally.old += 1;
        }
        tally.answered += usize::from(answered);
        expected = after;
        let _ = std::fs::remove_file(&process.log);
    }

    // The last history is recovered and served like every other.
    let mut process = common::start(&deployment, store.path());
    let addr = process.user_addr();
    runtime.block_on(async {
        common::recover(&addr, &validators, &deployment, &secrets)
            .await
            .unwrap();
        let mut client = common::client(&addr, &validators, None).await;
        let served = common::get_manifests(&mut client).await.unwrap();
        common::assert_served_history(&served, &expected);
    });
    process.wait_probe("/probe/readiness", 200, Duration::from_secs(10));
    process.kill();
    let _ = std::fs::remove_file(&process.log);

    eprintln!(
        "{RUNS} kills: {} kept the old manifest, {} the new one ({} answered before the \
         kill); {} left a temporary file; median set {:?}; {:?} in all",
        tally.old,
        tally.new,
        tally.answered,
        tally.temp_files,
        median(&set_durations),
        started.elapsed()
    );
    assert_eq!(tally.old + tally.new, RUNS);
    assert!(tally.old >= 5, "too few kills before the update: {tally:?}");
    assert!(tally.new >= 5, "too few kills after the update: {tally:?}");
    assert_eq!(expected.manifests.len(), 6 + tally.new);
}

/// The store after a kill must hold exactly the history before the run (`false`), or that
/// history with `variant` appended (`true`).
fn check_outcome(
    run: usize,
    kill: Kill,
    before: &StoredHistory,
    after: &StoredHistory,
    variant: &[u8],
) -> bool {
    if after.latest_manifest() == variant {
        assert_eq!(
            after.chain.len(),
            before.chain.len() + 1,
            "run {run} ({kill:?}): the new manifest is one transition on"
        );
        assert_eq!(
            after.chain[1..],
            before.chain[..],
            "run {run}: an older part changed"
        );
        assert_eq!(after.chain[0].1.manifest_hash, manifest_hash(variant));
        assert_eq!(after.chain[0].1.previous, before.latest.transition_hash);
        assert_eq!(
            after.manifests[..before.manifests.len()],
            before.manifests[..],
            "run {run}"
        );
        true
    } else {
        assert!(
            after == before,
            "run {run} ({kill:?}): the latest manifest is neither the previous nor the new one:\n{}",
            String::from_utf8_lossy(after.latest_manifest())
        );
        false
    }
}
