//! Keyslot check cost: our profile (PBKDF2-SHA256, 1000 iterations) against argon2id,
//! reported as ratios.
//!
//! `cargo bench -p contrast-luks --bench keyslot_check` (rounds: `BENCH_ROUNDS`, default 5).
//!
//! Three headers with hmac(sha256) integrity (made as in tests/support): ours, Contrast's
//! (argon2id, 10 MiB, benchmarked by libcryptsetup to 2 s on this machine, up to 4
//! threads) and cryptsetup's default (argon2id, up to 1 GiB and 4 threads, 2 s). Each
//! round checks keyslot 0 of each (libcryptsetup, no activation), interleaved so that load
//! from other jobs hits all alike; our full `check` (header copy, load, validate, keyslot)
//! runs beside them. Wall time and process CPU time (utime + stime of all threads, from
//! /proc/self/stat) per check; medians.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    unreachable_pub
)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use contrast_luks::WorkloadSecret;
use libcryptsetup_rs::CryptInit;
use libcryptsetup_rs::consts::flags::CryptActivate;
use libcryptsetup_rs::consts::vals::EncryptionFormat;
use support::{Image, Kind};

/// Process CPU time (all threads), from /proc/self/stat fields 14 and 15 (USER_HZ = 100).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn keyslot_check(path: &Path, passphrase: &[u8]) {
    let mut cd = CryptInit::init(path).unwrap();
    cd.context_handle()
        .load::<()>(Some(EncryptionFormat::Luks2), None)
        .unwrap();
    cd.activate_handle()
        .activate_by_passphrase(None, Some(0), passphrase, CryptActivate::empty())
        .unwrap();
}

struct Series {
    name: &'static str,
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl Series {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            wall: Vec::new(),
            cpu: Vec::new(),
        }
    }

    /// Runs `op` `reps` times and records the per-call averages.
    fn measure(&mut self, reps: u32, mut op: impl FnMut()) {
        let (w0, c0) = (Instant::now(), cpu_time());
        for _ in 0..reps {
            op();
        }
        self.wall.push(w0.elapsed() / reps);
        self.cpu.push((cpu_time() - c0) / reps);
    }

    fn median(v: &[Duration]) -> Duration {
        let mut v = v.to_vec();
        v.sort();
        v[v.len() / 2]
    }

    fn wall(&self) -> Duration {
        Self::median(&self.wall)
    }

    fn cpu(&self) -> Duration {
        Self::median(&self.cpu)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    contrast_luks::cryptsetup::init_logging();
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let secret = WorkloadSecret::from_bytes([7u8; 64]);

    let ours = Image::empty(4 << 20);
    let derived = secret
        .keyslot_passphrase(ours.path.to_str().unwrap())
        .unwrap();
    support::synthesize(&ours.path, Kind::Ours, derived.as_bytes());
    let hex = secret.contrast_passphrase();
    println!("formatting the argon2id headers (libcryptsetup benchmarks each for ~2 s)...");
    let contrast = support::image(Kind::ContrastBenchmarked, hex.as_bytes());
    let default = support::image(Kind::CryptsetupDefault, hex.as_bytes());
    for (name, img) in [("contrast", &contrast), ("default", &default)] {
        let kdf = &support::read_metadata(&img.path)["keyslots"]["0"]["kdf"];
        println!("{name} keyslot kdf: {kdf}");
    }
    let base = ours.header_base();

    let mut s_ours = Series::new("ours (pbkdf2-sha256, 1000 iterations)");
    let mut s_check = Series::new("ours, full check (copy, load, validate, keyslot)");
    let mut s_contrast = Series::new("Contrast's (argon2id, 10 MiB, benchmarked 2 s)");
    let mut s_default = Series::new("cryptsetup default (argon2id, <= 1 GiB, 2 s)");
    for round in 0..rounds {
        s_ours.measure(50, || keyslot_check(&ours.path, derived.as_bytes()));
        s_check.measure(20, || {
            contrast_luks::check(&ours.path, &secret, &base).unwrap();
        });
        s_contrast.measure(1, || keyslot_check(&contrast.path, hex.as_bytes()));
        s_default.measure(1, || keyslot_check(&default.path, hex.as_bytes()));
        println!("round {}/{rounds} done", round + 1);
    }

    println!();
    println!(
        "{:<52} {:>12} {:>12}",
        "keyslot check (median)", "wall ms", "CPU ms"
    );
    for s in [&s_ours, &s_check, &s_contrast, &s_default] {
        println!(
            "{:<52} {:>12.2} {:>12.2}",
            s.name,
            ms(s.wall()),
            ms(s.cpu())
        );
    }
    println!();
    for s in [&s_contrast, &s_default] {
        println!(
            "{} / ours: wall x{:.0}, CPU x{:.0}",
            s.name,
            s.wall().as_secs_f64() / s_ours.wall().as_secs_f64(),
            s.cpu().as_secs_f64() / s_ours.cpu().as_secs_f64().max(1e-6),
        );
    }
}
