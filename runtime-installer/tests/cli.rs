//! The `runtime-installer` binary as the DaemonSet runs it (environment variables).

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::process::Command;

use aws_lc_rs::digest;
use common::*;
use contrast_platforms::Platform;

fn installer(node: &FakeNode) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_runtime-installer"));
    command
        .env_clear()
        .env("CONTRAST_HOST_ROOT", &node.host)
        .env(
            "CONTRAST_INSTALL_CONFIG",
            node.dir.path().join("contrast-node-install.json"),
        )
        .env(
            "CONTRAST_TARGET_CONFIG_DIR",
            node.dir.path().join("target-config"),
        )
        .env(
            "CONTRAST_IMAGEPULLER_CONFIG_DIR",
            node.dir.path().join("imagepuller-config"),
        );
    command
}

fn write_config(node: &FakeNode, json: &str) {
    fs::write(node.dir.path().join("contrast-node-install.json"), json).unwrap();
}

#[test]
fn unknown_platform_is_refused() {
    let node = FakeNode::new();
    write_config(&node, r#"{"files": []}"#);
    let output = installer(&node)
        .args(["--platform", "metal-qemu-sev"])
        .args(["--runtime-handler", "contrast-cc-metal-qemu-snp-1a2b3c4d"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("unknown platform \"metal-qemu-sev\""),
        "{stderr}"
    );
    assert!(node.host_files().is_empty());
}

#[test]
fn installs_from_environment_variables() {
    let node = FakeNode::new();
    let shim = node.image_file("shim", b"shim");
    write_config(
        &node,
        &format!(
            r#"{{"files": [{{"url": "{shim}", "path": "/opt/edgeless/@@runtimeName@@/bin/containerd-shim-contrast-cc-v2",
                "executable": true, "integrity": "{}"}}], "QemuExtraKernelParams": "console=hvc0"}}"#,
            sri(&digest::SHA256, b"shim")
        ),
    );
    // Restarts are turned off: this test must not touch the machine's systemd.
    let target = node.dir.path().join("target-config");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("restart-systemd-unit"), "false").unwrap();
    let config = node.host_file("/etc/containerd/config.toml", "version = 2\n");
    let handler = handler(Platform::MetalQemuSnp).to_string();

    let run = |extra: &[&str]| {
        let output = installer(&node)
            .env("CONTRAST_PLATFORM", "Metal-QEMU-SNP")
            .env("CONTRAST_RUNTIME_HANDLER", &handler)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };

    let dry = run(&["--dry-run"]);
    assert!(dry.contains("would install"), "{dry}");
    assert!(
        node.host_files() == ["etc/containerd/config.toml"],
        "dry run wrote files"
    );

    let first = run(&[]);
    let base = format!("/opt/edgeless/{handler}");
    assert!(
        first.contains(&format!(
            "installed {base}/bin/containerd-shim-contrast-cc-v2\n"
        )),
        "{first}"
    );
    assert!(
        first.ends_with("not restarting: no systemd unit configured\n"),
        "{first}"
    );
    assert_runtime(
        &containerd_dump(&config),
        CRI_V2,
        &handler,
        "configuration-qemu-snp.toml",
    );
    let kata =
        fs::read_to_string(node.local(&format!("{base}/etc/configuration-qemu-snp.toml"))).unwrap();
    assert!(kata.contains("kernel_params = \"console=hvc0\""), "{kata}");

    let second = run(&[]);
    assert!(
        !second.contains("installed") && !second.contains("patched"),
        "{second}"
    );
}

/// A file in the image puller Secret that is not UTF-8 text or is over the limit stops the
/// installer before anything on the host changes, and the message names the file.
#[test]
fn an_unusable_imagepuller_config_is_refused_naming_the_file() {
    let cases: [(&[u8], &str); 2] = [
        (
            b"[registries.\"ghcr.io.\"]\nauth = \"\xc3\x28\"\n",
            "not UTF-8",
        ),
        (&[b'#'; (1 << 20) + 1], "larger than 1048576 bytes"),
    ];
    for (content, message) in cases {
        let node = FakeNode::new();
        write_config(&node, r#"{"files": []}"#);
        let dir = node.dir.path().join("imagepuller-config");
        fs::create_dir(&dir).unwrap();
        let file = dir.join("contrast-imagepuller.toml");
        fs::write(&file, content).unwrap();
        let output = installer(&node)
            .args(["--platform", "Metal-QEMU-TDX"])
            .args([
                "--runtime-handler",
                &handler(Platform::MetalQemuTdx).to_string(),
            ])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&file.display().to_string()) && stderr.contains(message),
            "{stderr}"
        );
        assert!(node.host_files().is_empty(), "{:?}", node.host_files());
    }
}

/// `--imagepuller-config-dir` points the installer at the mounted Secret.
#[test]
fn the_imagepuller_config_dir_flag_is_read() {
    let node = FakeNode::new();
    write_config(&node, r#"{"files": []}"#);
    let target = node.dir.path().join("target-config");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("restart-systemd-unit"), "false").unwrap();
    let dir = node.dir.path().join("elsewhere");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("contrast-imagepuller.toml"), "[registries]\n").unwrap();
    let handler = handler(Platform::MetalQemuTdx).to_string();
    let output = installer(&node)
        .args([
            "--platform",
            "Metal-QEMU-TDX",
            "--runtime-handler",
            &handler,
        ])
        .arg("--imagepuller-config-dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let host_path = format!("/opt/edgeless/{handler}/etc/host-config/contrast-imagepuller.toml");
    assert!(
        stdout.contains(&format!("installed {host_path}\n")),
        "{stdout}"
    );
    assert_eq!(fs::read(node.local(&host_path)).unwrap(), b"[registries]\n");
    let kata = fs::read_to_string(node.local(&format!(
        "/opt/edgeless/{handler}/etc/configuration-qemu-tdx.toml"
    )))
    .unwrap();
    assert!(
        kata.contains(&format!("contrast_imagepuller_config = \"{host_path}\"")),
        "{kata}"
    );
}
