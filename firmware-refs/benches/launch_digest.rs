//! SNP launch digest of OVMF + kernel + initrd: ours, against aws-lc-rs SHA-384 over the
//! same bytes and against sev-snp-measure 0.0.13, interleaved in one run.
//!
//! `CONTRAST_PYTHON_TOOLS=<dir> cargo bench -p contrast-firmware-refs --bench launch_digest`
//! (`-- --rounds N` to change the rounds). Several input sizes; the firmware is an image
//! ending in the AmdSev suffix fixture (it has the kernel hashes section), kernel and
//! initrd are generated. Every timed call reads its files (page cache). Also timed: the
//! `firmware-refs` binary as a process, against the Python tool's process.

#![allow(clippy::print_stdout, clippy::print_stderr, clippy::unwrap_used)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{Context, SHA384};
use contrast_firmware_refs::{DirectBootFiles, SnpLaunchConfig, VcpuType, snp_launch_digest_files};

const APPEND: &str = "console=hvc0 root=/dev/vda1 rootflags=ro quiet panic=1";

/// The files of one measurement.
struct Inputs {
    ovmf: PathBuf,
    /// Kernel and initrd, for measured direct boot.
    boot: Option<(PathBuf, PathBuf)>,
}

impl Inputs {
    fn files(&self) -> Vec<&Path> {
        let mut out = vec![self.ovmf.as_path()];
        if let Some((k, i)) = &self.boot {
            out.extend([k.as_path(), i.as_path()]);
        }
        out
    }
}

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().unwrap())
}

fn python_tool() -> PathBuf {
    let from_env = std::env::var_os("CONTRAST_PYTHON_TOOLS")
        .map(|d| PathBuf::from(d).join("sev-snp-measure"))
        .filter(|p| p.is_file());
    from_env
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join("sev-snp-measure"))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            eprintln!(
                "sev-snp-measure not found in $CONTRAST_PYTHON_TOOLS or PATH: run `cargo xtask test` to install it"
            );
            std::process::exit(1)
        })
}

fn ours(inputs: &Inputs) -> String {
    let boot = inputs
        .boot
        .as_ref()
        .map(|(kernel, initrd)| DirectBootFiles {
            kernel,
            initrd: Some(initrd),
            append: Some(APPEND),
        });
    let config = SnpLaunchConfig::qemu(4, VcpuType::GENOA);
    hex::encode(snp_launch_digest_files(&inputs.ovmf, boot, &config).unwrap())
}

fn sha384_of_files(files: &[&Path]) -> String {
    let mut ctx = Context::new(&SHA384);
    let mut buf = vec![0u8; 1 << 20];
    for path in files {
        let mut f = std::fs::File::open(path).unwrap();
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
    }
    hex::encode(ctx.finish())
}

/// sev-snp-measure, or our binary, with the same arguments.
fn process(tool: &Path, inputs: &Inputs) -> String {
    let mut cmd = Command::new(tool);
    if tool.ends_with("sev-snp-measure") {
        cmd.args(["--mode", "snp"]);
    } else {
        cmd.arg("snp-launch-digest");
    }
    cmd.args(["--vcpus", "4", "--vcpu-type", "EPYC-Genoa", "--ovmf"])
        .arg(&inputs.ovmf);
    if let Some((kernel, initrd)) = &inputs.boot {
        cmd.arg("--kernel")
            .arg(kernel)
            .arg("--initrd")
            .arg(initrd)
            .args(["--append", APPEND]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn filler(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // cargo bench passes --bench; everything else is ours.
    let rounds = arg("--rounds", 7);
    let tool = python_tool();
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_firmware-refs"));
    let dir = std::env::temp_dir().join(format!("firmware-refs-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let suffix = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/ovmf_AmdSev_suffix.bin"),
    )
    .unwrap();
    println!(
        "SNP launch digest, 4 vCPUs EPYC-Genoa; median of {rounds} interleaved rounds per call"
    );
    println!(
        "{:<20} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8}",
        "OVMF+kernel+initrd",
        "ours",
        "SHA-384",
        "python",
        "our bin",
        "ours/sha",
        "py/ours",
        "py/bin"
    );
    for (ovmf_mib, boot) in [
        (2, None),
        (4, None),
        (2, Some((8, 4))),
        (4, Some((12, 16))),
        (4, Some((12, 64))),
    ] {
        let ovmf = dir.join("OVMF.fd");
        let mut image = filler((ovmf_mib << 20) - suffix.len(), 1);
        image.extend_from_slice(&suffix);
        std::fs::write(&ovmf, &image).unwrap();
        let boot_files = boot.map(|(kernel_mib, initrd_mib): (usize, usize)| {
            let (kernel, initrd) = (dir.join("vmlinuz"), dir.join("initrd"));
            std::fs::write(&kernel, filler(kernel_mib << 20, 2)).unwrap();
            std::fs::write(&initrd, filler(initrd_mib << 20, 3)).unwrap();
            (kernel, initrd)
        });
        let inputs = Inputs {
            ovmf,
            boot: boot_files,
        };

        let expected = process(&tool, &inputs);
        assert_eq!(ours(&inputs), expected, "digests differ");
        assert_eq!(process(&binary, &inputs), expected, "binary differs");

        let mut times: [Vec<Duration>; 4] = Default::default();
        let time = |f: &dyn Fn() -> String| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        };
        for _ in 0..rounds {
            times[0].push(time(&|| ours(&inputs)));
            times[1].push(time(&|| sha384_of_files(&inputs.files())));
            times[2].push(time(&|| process(&tool, &inputs)));
            times[3].push(time(&|| process(&binary, &inputs)));
        }
        let [o, s, p, b] = times.map(|mut t| median(&mut t));
        let label = match boot {
            Some((k, i)) => format!("{ovmf_mib}+{k}+{i} MiB"),
            None => format!("{ovmf_mib} MiB, no kernel"),
        };
        println!(
            "{label:<20} {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}ms {:>7.2}x {:>7.1}x {:>7.1}x",
            ms(o),
            ms(s),
            ms(p),
            ms(b),
            o.as_secs_f64() / s.as_secs_f64(),
            p.as_secs_f64() / o.as_secs_f64(),
            p.as_secs_f64() / b.as_secs_f64(),
        );
    }
    println!(
        "ours = library call (files read; firmware pages, kernel and initrd hashed on their own threads);"
    );
    println!(
        "SHA-384 = aws-lc-rs over the same files, one thread; python = sev-snp-measure 0.0.13 process;"
    );
    println!("our bin = firmware-refs process; goals: ours/sha <= 1.5, py/ours >= 10");
    std::fs::remove_dir_all(&dir).unwrap();
}
