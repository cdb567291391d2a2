//! The `firmware-refs` binary: stdout carries only the result, errors go to stderr with a
//! failing status.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output};

use common::{DEBIAN_OVMF, data, debian_ovmf};
use contrast_reference_values::EMBEDDED_REFERENCE_VALUES;

fn firmware_refs(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_firmware-refs"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn snp_launch_digest_prints_the_digest_and_nothing_else() {
    let ovmf = debian_ovmf(DEBIAN_OVMF).display().to_string();
    let out = firmware_refs(&[
        "snp-launch-digest",
        "--ovmf",
        &ovmf,
        "--vcpus",
        "4",
        "--vcpu-type",
        "EPYC-Milan",
    ]);
    assert_eq!(
        stdout(&out),
        "e9c10ab98f8086bf4a4993dcdc1f768b1128bcb02301d1791f1d3274329e790db2d12a301d66d99a462a13b5d87e2840\n"
    );
    assert!(out.stderr.is_empty());

    let fixture = data("ovmf_AmdSev_suffix.bin").display().to_string();
    let out = firmware_refs(&[
        "snp-launch-digest",
        "--ovmf",
        &fixture,
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC-v4",
        "--kernel",
        "/dev/null",
        "--initrd",
        "/dev/null",
        "--append",
        "console=ttyS0 loglevel=7",
        "--guest-features",
        "0x21",
    ]);
    assert_eq!(
        stdout(&out),
        "803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977\n"
    );
}

#[test]
fn refusals_fail_with_a_message_on_stderr_only() {
    let ovmf = debian_ovmf(DEBIAN_OVMF).display().to_string();
    for (args, message) in [
        (vec!["--vcpus", "0", "--vcpu-type", "EPYC"], "vcpus is 0"),
        (
            vec!["--vcpus", "1", "--vcpu-type", "EPYC-Zen"],
            "known types: EPYC, ",
        ),
        (
            vec![
                "--vcpus",
                "1",
                "--vcpu-type",
                "EPYC",
                "--kernel",
                "/dev/null",
            ],
            "SNP_KERNEL_HASHES",
        ),
        (
            vec!["--vcpus", "1", "--vcpu-type", "EPYC", "--vmm-type", "kvm"],
            "QEMU, ec2 or gce",
        ),
    ] {
        let mut all = vec!["snp-launch-digest", "--ovmf", &ovmf];
        all.extend(args);
        let out = firmware_refs(&all);
        assert_eq!(out.status.code(), Some(1), "{all:?}");
        assert!(out.stdout.is_empty(), "{all:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(message), "{all:?}: {err}");
    }
    let code_4m = firmware_refs(&[
        "snp-launch-digest",
        "--ovmf",
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "--vcpus",
        "1",
        "--vcpu-type",
        "EPYC",
    ]);
    assert_eq!(code_4m.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&code_4m.stderr).contains("no SEV metadata"));
    // --initrd without --kernel is a usage error.
    let usage = firmware_refs(&[
        "snp-launch-digest",
        "--ovmf",
        &ovmf,
        "--vcpus",
        "1",
        "--initrd",
        "/dev/null",
    ]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn tdx_and_id_block_subcommands() {
    let ovmf = debian_ovmf(DEBIAN_OVMF).display().to_string();
    assert_eq!(
        stdout(&firmware_refs(&["tdx-mrtd", "--ovmf", &ovmf])).trim(),
        "acccbcc870a381adab0d3919d90a7f268ac3b0364771f202ed4bb4e892d045b33db3b32e6924cba830a724eed443f7e1"
    );
    let log = data("gotdxguest-cos113-ccel-data.dat")
        .display()
        .to_string();
    let table = data("gotdxguest-cos113-ccel-table.dat")
        .display()
        .to_string();
    let rtmrs = stdout(&firmware_refs(&[
        "replay-ccel",
        "--log",
        &log,
        "--table",
        &table,
    ]));
    assert_eq!(rtmrs.lines().count(), 4);
    assert!(rtmrs.starts_with("3fa2f61f395b7f5f"));

    let id = stdout(&firmware_refs(&[
        "snp-id-block",
        "--launch-digest",
        &"01".repeat(48),
    ]));
    assert!(id.contains("\"idKeyDigest\": \""), "{id}");
    let bad = firmware_refs(&["snp-id-block", "--launch-digest", "abc"]);
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn reference_values_writes_the_embedded_file() {
    let printed = stdout(&firmware_refs(&["reference-values"]));
    assert_eq!(printed, EMBEDDED_REFERENCE_VALUES);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("reference-values.json");
    let written = firmware_refs(&["reference-values", "--out", out.to_str().unwrap()]);
    assert!(stdout(&written).is_empty());
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        EMBEDDED_REFERENCE_VALUES
    );
    // Only the file is left in the directory: no temporary files.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn snp_id_blocks_of_an_image_directory_match_the_single_id_block_per_product() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        data("ovmf_AmdSev_suffix.bin"),
        dir.path().join("ovmf-snp.fd"),
    )
    .unwrap();
    std::fs::write(dir.path().join("kernel"), b"kernel bytes").unwrap();
    std::fs::write(dir.path().join("initrd"), b"initrd bytes").unwrap();
    std::fs::write(dir.path().join("cmdline"), b"console=ttyS0\n").unwrap();
    let image_dir = dir.path().to_str().unwrap();
    let json: serde_json::Value = serde_json::from_str(&stdout(&firmware_refs(&[
        "snp-id-blocks",
        "--image-dir",
        image_dir,
    ])))
    .unwrap();
    let values: serde_json::Value = serde_json::from_str(&stdout(&firmware_refs(&[
        "reference-values",
        "--image-dir",
        image_dir,
    ])))
    .unwrap();
    // Every SNP launch digest of the image's reference values has its ID block.
    let snp = values
        .as_object()
        .unwrap()
        .iter()
        .find(|(handler, _)| handler.contains("metal-qemu-snp"))
        .map(|(_, v)| v["snp"].as_array().unwrap().clone())
        .unwrap();
    assert_eq!(json.as_object().unwrap().len(), snp.len());
    for entry in snp {
        let product = entry["ProductName"].as_str().unwrap();
        let digest = entry["TrustedMeasurement"].as_str().unwrap();
        let single: serde_json::Value = serde_json::from_str(&stdout(&firmware_refs(&[
            "snp-id-block",
            "--launch-digest",
            digest,
        ])))
        .unwrap();
        assert_eq!(json[product], single, "{product}");
    }
    // Without an SNP firmware there is nothing to sign: a clear refusal.
    std::fs::remove_file(dir.path().join("ovmf-snp.fd")).unwrap();
    let refused = firmware_refs(&["snp-id-blocks", "--image-dir", image_dir]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("ovmf-snp.fd"));
}
