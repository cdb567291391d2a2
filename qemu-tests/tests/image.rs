//! The image build itself: the same inputs give the same bytes, and the reference values
//! computed from the artifacts agree with an independent tool.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use contrast_firmware_refs::reference_values::{ImageArtifacts, image_entries};
use contrast_platforms::Platform;
use contrast_qemu_tests::{image, profile_dir, tempdir};

const ARTIFACTS: [&str; 6] = [
    "kernel",
    "vmlinux",
    "initrd",
    "rootfs.img",
    "cmdline",
    "manifest.json",
];

#[test]
fn two_builds_from_the_same_inputs_are_byte_identical() {
    // The shared image has built the binaries; two more builds in fresh directories.
    let shared = image().unwrap();
    let dirs = [tempdir("image-a").unwrap(), tempdir("image-b").unwrap()];
    let manifests: Vec<_> = dirs
        .iter()
        .map(|dir| {
            contrast_image::build(&contrast_image::BuildConfig {
                binaries: profile_dir().unwrap(),
                out: dir.clone(),
                system_root: PathBuf::from("/"),
            })
            .unwrap()
        })
        .collect();
    assert_eq!(manifests[0], manifests[1]);
    assert_eq!(manifests[0], shared.manifest, "the cached image is stale");
    for name in ARTIFACTS {
        let (a, b) = (
            std::fs::read(dirs[0].join(name)).unwrap(),
            std::fs::read(dirs[1].join(name)).unwrap(),
        );
        assert!(a == b, "{name} differs between two builds");
    }
    // The manifest names every artifact with its digest, and the command line carries the
    // root hash.
    for name in ["kernel", "vmlinux", "initrd", "rootfs.img", "cmdline"] {
        let digest = contrast_testkit::sha256(&std::fs::read(dirs[0].join(name)).unwrap());
        assert_eq!(manifests[0].sha256[name], hex::encode(digest), "{name}");
    }
    assert!(manifests[0].cmdline.contains(&format!(
        "contrast.verity.root_hash={}",
        manifests[0].root_hash
    )));
    for dir in dirs {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

fn firmware_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../firmware-refs/tests/data")
        .join(name)
}

/// Debian ships no OVMF with the SNP kernel-hashes table, so the SNP values use the
/// AmdSevX64 fixture of the `sev` crate (firmware-refs/tests/data/PROVENANCE.md); TDX uses
/// Debian's OVMF.fd.
#[test]
fn reference_values_of_the_image_match_sev_snp_measure_and_name_the_runtime() {
    let image = image().unwrap();
    let dir = tempdir("image-refs").unwrap();
    for name in ["kernel", "initrd", "cmdline"] {
        std::fs::copy(image.path(name), dir.join(name)).unwrap();
    }
    std::fs::copy(
        firmware_fixture("ovmf_AmdSev_suffix.bin"),
        dir.join("ovmf-snp.fd"),
    )
    .unwrap();
    std::fs::copy("/usr/share/ovmf/OVMF.fd", dir.join("ovmf-tdx.fd")).unwrap();
    let entries = image_entries(&ImageArtifacts { dir: dir.clone() }).unwrap();
    let platforms: Vec<Platform> = entries.iter().map(|(h, _)| h.platform()).collect();
    for platform in [
        Platform::MetalQemuSnp,
        Platform::K3sQemuSnp,
        Platform::MetalQemuTdx,
        Platform::K3sQemuTdx,
    ] {
        assert!(
            platforms.contains(&platform),
            "{platform:?} missing: {platforms:?}"
        );
    }

    // The SNP launch digest of this kernel, initrd and command line, computed by
    // sev-snp-measure from the same files.
    let (_, snp) = entries
        .iter()
        .find(|(h, _)| h.platform() == Platform::MetalQemuSnp)
        .unwrap();
    let milan = snp.snp.iter().find(|v| v.product_name == "Milan").unwrap();
    let cmdline = std::fs::read_to_string(dir.join("cmdline")).unwrap();
    let output = Command::new(contrast_testkit::python_tool("sev-snp-measure"))
        .args(["--mode", "snp", "--vcpus", "1", "--vcpu-type", "EPYC-Milan"])
        .args(["--vmm-type", "QEMU", "--guest-features", "0x1"])
        .arg("--ovmf")
        .arg(dir.join("ovmf-snp.fd"))
        .arg("--kernel")
        .arg(dir.join("kernel"))
        .arg("--initrd")
        .arg(dir.join("initrd"))
        .arg("--append")
        .arg(cmdline.trim_end())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let theirs = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(milan.trusted_measurement.0.to_lowercase(), theirs);

    // The TDX values carry RTMR1 (the kernel) and RTMR2 (command line, initrd) of this
    // image; RTMR3 stays zero (nothing extends it at boot).
    let (_, tdx) = entries
        .iter()
        .find(|(h, _)| h.platform() == Platform::MetalQemuTdx)
        .unwrap();
    let zero = "0".repeat(96);
    assert!(
        tdx.tdx[0].rtmrs[1..3].iter().all(|r| r.0 != zero),
        "{:?}",
        tdx.tdx[0].rtmrs
    );

    // The handler derives from the artifacts: a changed command line is another runtime.
    let handlers: Vec<String> = entries.iter().map(|(h, _)| h.to_string()).collect();
    std::fs::write(dir.join("cmdline"), format!("{} x", cmdline.trim_end())).unwrap();
    let changed = image_entries(&ImageArtifacts { dir: dir.clone() }).unwrap();
    for (handler, (new_handler, new_values)) in handlers.iter().zip(&changed) {
        assert_ne!(handler, &new_handler.to_string());
        if new_handler.platform() == Platform::MetalQemuSnp {
            assert_ne!(
                new_values.snp[0].trusted_measurement,
                snp.snp[0].trusted_measurement
            );
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}
