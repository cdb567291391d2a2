//! Image build time and guest boot to "initializer done", each against an anchor measured
//! in the same run (the machines are noisy: compare ratios, not seconds).
//!
//! - Build: `contrast_image::build` into a fresh directory, against the anchor of hashing
//!   the same artifacts' bytes with `sha256sum` (the build's unavoidable I/O and hashing).
//! - Boot: the guest's uptime when the initializer has its certificate (attested through
//!   configfs-tsm to a Coordinator on the host), against the uptime at which a plain boot of
//!   the same image reaches its test script (the anchor: kernel, initramfs, dm-verity).
//!
//! `cargo bench -p contrast-qemu-tests --bench image_and_boot [-- --iterations N]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use contrast_qemu_tests::{Vm, image, profile_dir, tempdir};

fn main() {
    let iterations = common::bench_arg("iterations", 3);
    let image = image().unwrap();

    let (mut builds, mut anchors) = (Vec::new(), Vec::new());
    for _ in 0..iterations {
        let out = tempdir("bench-image").unwrap();
        let started = Instant::now();
        contrast_image::build(&contrast_image::BuildConfig {
            binaries: profile_dir().unwrap(),
            out: out.clone(),
            system_root: PathBuf::from("/"),
        })
        .unwrap();
        builds.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let status = Command::new("sha256sum")
            .args(["kernel", "vmlinux", "initrd", "rootfs.img"])
            .current_dir(&out)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        anchors.push(started.elapsed().as_secs_f64());
        std::fs::remove_dir_all(out).unwrap();
    }
    let (build, anchor) = (common::median(builds), common::median(anchors));
    println!(
        "image build: median {build:.2} s; anchor sha256sum of its artifacts {anchor:.3} s; \
         ratio {:.1}x",
        build / anchor
    );

    let (mut ready, mut done) = (Vec::new(), Vec::new());
    for _ in 0..iterations {
        let plain = Vm::new(&image, "plain-boot")
            .script("echo \"CONTRAST-STEP uptime=$(cut -d' ' -f1 /proc/uptime)\"\necho \"CONTRAST-TEST-PASS $1\"\n")
            .timeout(Duration::from_secs(120))
            .boot()
            .unwrap();
        plain.expect_pass().unwrap();
        ready.push(plain.step_value("uptime").unwrap().parse::<f64>().unwrap());
        let run = common::initializer_boot(&image);
        run.console.expect_pass().unwrap();
        done.push(
            run.console
                .step_value("initializer-done")
                .unwrap()
                .parse::<f64>()
                .unwrap(),
        );
    }
    let (ready, done) = (common::median(ready), common::median(done));
    println!(
        "guest uptime: test script reached {ready:.2} s (anchor); initializer done {done:.2} s; \
         ratio {:.2}x; the initializer itself {:.2} s",
        done / ready,
        done - ready
    );
}
