//! The installer against a fake host root, with containerd 1.6 checking every
//! containerd configuration it writes.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};

use aws_lc_rs::digest;
use common::*;
use contrast_platforms::Platform;
use contrast_runtime_installer::{Action, ImagePullerConfig, InstallError, TargetConfig, install};

const SNP_KATA: &str = "configuration-qemu-snp.toml";

/// A hand-written version 2 configuration with settings that must survive.
const USER_V2: &str = r#"# Managed by the node team. Do not remove the mirror.
version = 2
oom_score = -999

[debug]
  level = "info"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.9"  # pinned

  [plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
    endpoint = ["https://mirror.example.com"]

  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = true

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.gvisor]
      runtime_type = "io.containerd.runsc.v1"
"#;

/// The runtime's files for a QEMU SNP node: some copied, one with SRI, one downloaded.
fn snp_files(node: &FakeNode, server: &str) -> Vec<contrast_runtime_installer::config::FileSpec> {
    let base = "/opt/edgeless/@@runtimeName@@";
    let kernel = vec![0x4b; 300_000];
    vec![
        spec(
            &node.image_file("shim", b"#!/bin/sh\necho shim\n"),
            &format!("{base}/bin/containerd-shim-contrast-cc-v2"),
            true,
            None,
        ),
        spec(
            &node.image_file("qemu", b"qemu binary"),
            &format!("{base}/snp/bin/qemu-system-x86_64"),
            true,
            Some(sri(&digest::SHA384, b"qemu binary")),
        ),
        spec(
            &node.image_file("ovmf", b"OVMF"),
            &format!("{base}/snp/share/OVMF.fd"),
            false,
            Some(sri(&digest::SHA512, b"OVMF")),
        ),
        spec(
            &node.image_file("kernel", &kernel),
            &format!("{base}/share/kata-kernel"),
            false,
            Some(sri(&digest::SHA256, &kernel)),
        ),
        spec(
            &format!("{server}/kata-containers.img"),
            &format!("{base}/share/kata-containers.img"),
            false,
            Some(sri(&digest::SHA256, b"erofs image")),
        ),
    ]
}

fn image_server() -> String {
    http_server(vec![
        ("/kata-containers.img", 200, b"erofs image".to_vec()),
        ("/corrupted.img", 200, b"erofs imagf".to_vec()),
        ("/gone.img", 404, Vec::new()),
    ])
}

#[test]
fn installs_then_a_second_run_changes_nothing() {
    let node = FakeNode::new();
    let config_path = node.host_file("/etc/containerd/config.toml", USER_V2);
    fs::set_permissions(&config_path, fs::Permissions::from_mode(0o640)).unwrap();
    let server = image_server();
    let installation = node.installation(Platform::MetalQemuSnp, snp_files(&node, &server));
    let handler = installation.handler.to_string();
    let base = format!("/opt/edgeless/{handler}");

    let mut runner = Recorder::default();
    let actions = install(&installation, &mut runner).unwrap();
    let lines: Vec<String> = actions.iter().map(ToString::to_string).collect();
    for file in [
        "bin/containerd-shim-contrast-cc-v2",
        "snp/bin/qemu-system-x86_64",
        "snp/share/OVMF.fd",
        "share/kata-kernel",
        "share/kata-containers.img",
    ] {
        assert!(
            lines.contains(&format!("installed {base}/{file}")),
            "{lines:#?}"
        );
    }
    assert!(lines.contains(&format!("wrote Kata configuration {base}/etc/{SNP_KATA}")));
    assert!(
        lines.iter().any(|l| l.starts_with(
            "patched containerd configuration /etc/containerd/config.toml (previous content in /etc/containerd/config.toml."
        )),
        "{lines:#?}"
    );
    assert_eq!(lines.last().unwrap(), "restarted containerd.service");
    assert_eq!(
        runner.restarts(),
        ["nsenter --target 1 --mount -- systemctl restart containerd.service"]
    );

    // Content and modes.
    let local = |path: &str| node.local(&format!("{base}/{path}"));
    let mode = |path: &std::path::Path| fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(
        fs::read(local("share/kata-containers.img")).unwrap(),
        b"erofs image"
    );
    assert_eq!(mode(&local("bin/containerd-shim-contrast-cc-v2")), 0o755);
    assert_eq!(mode(&local("share/kata-kernel")), 0o644);
    assert_eq!(mode(&config_path), 0o640, "the file keeps its mode");
    let backups: Vec<_> = node
        .host_files()
        .into_iter()
        .filter(|f| f.ends_with(".bak"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(
        fs::read_to_string(node.host.join(&backups[0])).unwrap(),
        USER_V2
    );
    assert_eq!(mode(&node.host.join(&backups[0])), 0o600);
    let kata = fs::read_to_string(local(&format!("etc/{SNP_KATA}"))).unwrap();
    assert!(
        kata.contains(&format!(
            "kernel_params = \"{}\"",
            contrast_runtime_installer::kata::DEFAULT_KERNEL_PARAMS
        )),
        "{kata}"
    );
    assert!(actions.contains(&Action::NoSnpIdBlock));

    // containerd reads our runtime, keeps the user's settings, and still has runc.
    let dump = containerd_dump(&config_path);
    assert_runtime(&dump, CRI_V2, &handler, SNP_KATA);
    let cri = &dump["plugins"][CRI_V2];
    assert_eq!(
        strings(&cri["registry"]["mirrors"]["docker.io"]["endpoint"]),
        ["https://mirror.example.com"]
    );
    assert_eq!(
        cri["sandbox_image"].as_str(),
        Some("registry.k8s.io/pause:3.9")
    );
    assert_eq!(
        runtime(&dump, CRI_V2, "runc")["options"]["SystemdCgroup"].as_bool(),
        Some(true)
    );
    assert_eq!(
        runtime(&dump, CRI_V2, "gvisor")["runtime_type"].as_str(),
        Some("io.containerd.runsc.v1")
    );
    assert_eq!(dump["oom_score"].as_integer(), Some(-999));
    assert_eq!(dump["debug"]["level"].as_str(), Some("info"));
    // And the text: comments and layout of the user's part unchanged.
    let written = fs::read_to_string(&config_path).unwrap();
    assert!(written.starts_with(USER_V2), "{written}");

    // The second run: nothing rewritten (same inodes and times), nothing restarted.
    let before = node.snapshot();
    let actions = install(&installation, &mut runner).unwrap();
    let lines: Vec<String> = actions.iter().map(ToString::to_string).collect();
    assert!(
        lines.iter().all(|l| l.starts_with("unchanged ")
            || l.starts_with("warning: ")
            || l.starts_with("note: ")
            || l == "nothing to restart"),
        "{lines:#?}"
    );
    assert_eq!(lines.last().unwrap(), "nothing to restart");
    assert_eq!(node.snapshot(), before);
    assert_eq!(runner.restarts().len(), 1);
}

#[test]
fn a_corrupted_download_is_refused_and_nothing_is_half_written() {
    let node = FakeNode::new();
    node.host_file("/etc/containerd/config.toml", USER_V2);
    let server = image_server();
    let expected = sri(&digest::SHA256, b"erofs image");
    let installation = node.installation(
        Platform::MetalQemuSnp,
        vec![spec(
            &format!("{server}/corrupted.img"),
            "/opt/edgeless/@@runtimeName@@/share/kata-containers.img",
            false,
            Some(expected.clone()),
        )],
    );
    let before = node.host_files();
    let mut runner = Recorder::default();
    let err = install(&installation, &mut runner).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, InstallError::IntegrityMismatch { .. }),
        "{message}"
    );
    assert!(message.contains("kata-containers.img"), "{message}");
    assert!(message.contains(&expected), "{message}");
    assert!(
        message.contains(&sri(&digest::SHA256, b"erofs imagf")),
        "{message}"
    );
    // No target, no temporary file, containerd untouched, no restart.
    assert_eq!(node.host_files(), before);
    assert_eq!(
        fs::read_to_string(node.local("/etc/containerd/config.toml")).unwrap(),
        USER_V2
    );
    assert!(runner.commands.is_empty());
}

#[test]
fn a_corrupted_local_file_is_refused_and_the_old_target_stays() {
    let node = FakeNode::new();
    let installation = node.installation(
        Platform::MetalQemuTdx,
        vec![spec(
            &node.image_file("kernel", b"tampered kernel"),
            "/opt/edgeless/@@runtimeName@@/share/kata-kernel",
            false,
            Some(sri(&digest::SHA512, b"kernel")),
        )],
    );
    let target = node.host_file(
        &format!("/opt/edgeless/{}/share/kata-kernel", installation.handler),
        "previous kernel",
    );
    let err = install(&installation, &mut Recorder::default()).unwrap_err();
    assert!(
        matches!(err, InstallError::IntegrityMismatch { .. }),
        "{err}"
    );
    assert_eq!(fs::read_to_string(&target).unwrap(), "previous kernel");
    assert_eq!(
        fs::read_dir(target.parent().unwrap()).unwrap().count(),
        1,
        "no temporary file left"
    );
}

#[test]
fn an_http_error_status_is_an_error() {
    let node = FakeNode::new();
    let server = image_server();
    let installation = node.installation(
        Platform::MetalQemuSnp,
        vec![spec(
            &format!("{server}/gone.img"),
            "/opt/edgeless/@@runtimeName@@/share/kata-containers.img",
            false,
            Some(sri(&digest::SHA256, b"x")),
        )],
    );
    let err = install(&installation, &mut Recorder::default()).unwrap_err();
    assert!(err.to_string().contains("HTTP status 404"), "{err}");
}

#[test]
fn version_3_layout() {
    let node = FakeNode::new();
    let user =
        "version = 3\n\n[plugins.\"io.containerd.cri.v1.images\"]\n  snapshotter = \"overlayfs\"\n";
    let path = node.host_file("/etc/containerd/config.toml", user);
    let installation = node.installation(Platform::MetalQemuTdx, Vec::new());
    let handler = installation.handler.to_string();
    install(&installation, &mut Recorder::default()).unwrap();

    // containerd 1.6 accepts a version 3 file but ignores its CRI part entirely
    // (docs/environment.md §3), so the dump cannot show our runtime: the version 3 output is
    // checked by parsing it back. containerd still has to accept the file.
    containerd_dump(&path);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(user), "{text}");
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    assert_runtime(&doc, CRI_V3, &handler, "configuration-qemu-tdx.toml");
    assert_eq!(
        doc["plugins"]["io.containerd.cri.v1.images"]["snapshotter"].as_str(),
        Some("overlayfs")
    );
    assert!(doc["plugins"].get(CRI_V2).is_none());
}

#[test]
fn k3s_template_is_written_from_the_rendered_file() {
    let node = FakeNode::new();
    let rendered_path = "/var/lib/rancher/k3s/agent/etc/containerd/config.toml";
    let rendered = r#"# File generated by k3s. DO NOT EDIT. Use config.toml.tmpl instead.
version = 2

[plugins."io.containerd.internal.v1.opt"]
  path = "/var/lib/rancher/k3s/agent/containerd"
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  enable_selinux = false
  sandbox_image = "rancher/mirrored-pause:3.6"

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
  SystemdCgroup = true
"#;
    let rendered_local = node.host_file(rendered_path, rendered);
    let installation = node.installation(Platform::K3sQemuSnp, Vec::new());
    let handler = installation.handler.to_string();
    let mut runner = Recorder {
        loaded: vec!["k3s-agent.service".into()],
        ..Recorder::default()
    };
    let actions = install(&installation, &mut runner).unwrap();
    let template = node.local(&format!("{rendered_path}.tmpl"));
    assert!(actions.contains(&Action::ContainerdPatched {
        path: format!("{rendered_path}.tmpl"),
        backup: None,
    }));
    assert_eq!(
        fs::read_to_string(&rendered_local).unwrap(),
        rendered,
        "k3s renders that file itself"
    );
    assert_eq!(
        runner.restarts(),
        ["nsenter --target 1 --mount -- systemctl restart k3s-agent.service"]
    );
    let dump = containerd_dump(&template);
    assert_runtime(&dump, CRI_V2, &handler, SNP_KATA);
    assert_eq!(
        dump["plugins"][CRI_V2]["containerd"]["snapshotter"].as_str(),
        Some("overlayfs")
    );

    // k3s restarts and renders the template; the next run finds everything in place.
    fs::copy(&template, &rendered_local).unwrap();
    let before = node.snapshot();
    let actions = install(&installation, &mut runner).unwrap();
    assert_eq!(actions.last(), Some(&Action::NothingToRestart));
    assert_eq!(node.snapshot(), before);
    assert_eq!(runner.restarts().len(), 1);
}

#[test]
fn a_template_without_a_rendered_file_is_refused() {
    let node = FakeNode::new();
    let installation = node.installation(Platform::Rke2QemuTdx, Vec::new());
    let err = install(&installation, &mut Recorder::default()).unwrap_err();
    assert!(
        matches!(err, InstallError::TemplateWithoutRendered { .. }),
        "{err}"
    );
    assert!(node.host_files().is_empty(), "nothing written");
}

#[test]
fn a_missing_configuration_is_created() {
    let node = FakeNode::new();
    let installation = node.installation(Platform::MetalQemuSnp, Vec::new());
    let handler = installation.handler.to_string();
    let actions = install(&installation, &mut Recorder::default()).unwrap();
    assert!(actions.contains(&Action::ContainerdPatched {
        path: "/etc/containerd/config.toml".into(),
        backup: None,
    }));
    let path = node.local("/etc/containerd/config.toml");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
        0o644
    );
    let dump = containerd_dump(&path);
    assert_runtime(&dump, CRI_V2, &handler, SNP_KATA);
}

#[test]
fn aks_gets_its_snapshotter_and_clh_configuration() {
    let node = FakeNode::new();
    let path = node.host_file("/etc/containerd/config.toml", "version = 2\n");
    let installation = node.installation(Platform::AksClhSnp, Vec::new());
    let handler = installation.handler.to_string();
    install(&installation, &mut Recorder::default()).unwrap();
    let dump = containerd_dump(&path);
    assert_runtime(&dump, CRI_V2, &handler, "configuration-clh-snp.toml");
    // containerd 1.6 has no per-runtime snapshotter (1.7+; dropped by the dump), but it
    // knows the proxy plugin.
    let proxy = &dump["proxy_plugins"][&format!("tardev-{handler}")];
    assert_eq!(proxy["type"].as_str(), Some("snapshot"));
    assert_eq!(
        proxy["address"].as_str(),
        Some(format!("/run/containerd/tardev-snapshotter-{handler}.sock").as_str())
    );
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(&format!("snapshotter = \"tardev-{handler}\"")));
}

#[test]
fn target_config_redirects_and_disables_the_restart() {
    let node = FakeNode::new();
    let path = node.host_file("/srv/containerd.toml", "version = 2\n");
    let dir = node.dir.path().join("target-config");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("containerd-config-path"), "srv/containerd.toml").unwrap();
    fs::write(dir.join("systemd-unit-name"), "").unwrap();
    let mut installation = node.installation(Platform::MetalQemuSnp, Vec::new());
    installation.target = TargetConfig::load(&dir, Platform::MetalQemuSnp).unwrap();
    let mut runner = Recorder::default();
    let actions = install(&installation, &mut runner).unwrap();
    assert_eq!(actions.last(), Some(&Action::RestartDisabled));
    assert!(runner.commands.is_empty());
    assert_runtime(
        &containerd_dump(&path),
        CRI_V2,
        &installation.handler.to_string(),
        SNP_KATA,
    );
}

const IMAGEPULLER_TOML: &str = "# registry credentials\n[registries.\"ghcr.io.\"]\n\
auth = \"dXNlcjpwYXNzd29yZA==\"\ninsecure-skip-verify = true\nca-certs = \"\"\"\n\
-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n\"\"\"\n";

/// The Secret as the kubelet mounts it: the key is a link into `..data`.
fn imagepuller_secret(node: &FakeNode, content: &[u8]) -> std::path::PathBuf {
    let dir = node.dir.path().join("imagepuller-config");
    let data = dir.join("..2025_01_01_00_00_00.000000000");
    fs::create_dir_all(&data).unwrap();
    fs::write(data.join("contrast-imagepuller.toml"), content).unwrap();
    symlink(data.file_name().unwrap(), dir.join("..data")).unwrap();
    symlink(
        "..data/contrast-imagepuller.toml",
        dir.join("contrast-imagepuller.toml"),
    )
    .unwrap();
    dir
}

fn qemu_key(kata: &str) -> Option<String> {
    let doc: toml_edit::DocumentMut = kata.parse().unwrap();
    doc["hypervisor"]["qemu"]
        .get("contrast_imagepuller_config")
        .map(|v| v.as_str().unwrap().to_owned())
}

#[test]
fn imagepuller_config_is_copied_and_named_in_the_kata_configuration() {
    for (platform, kata_file) in [
        (Platform::MetalQemuSnp, SNP_KATA),
        (Platform::MetalQemuTdx, "configuration-qemu-tdx.toml"),
    ] {
        let node = FakeNode::new();
        let dir = imagepuller_secret(&node, IMAGEPULLER_TOML.as_bytes());
        let mut installation = node.installation(platform, Vec::new());
        installation.target.systemd_units.clear();
        installation.imagepuller_config = ImagePullerConfig::load(&dir).unwrap();
        let base = format!("/opt/edgeless/{}", installation.handler);
        let host_path = format!("{base}/etc/host-config/contrast-imagepuller.toml");

        let actions = install(&installation, &mut Recorder::default()).unwrap();
        assert!(
            actions.contains(&Action::Installed(host_path.clone())),
            "{platform}: {actions:#?}"
        );
        assert!(
            !actions.contains(&Action::NoImagePullerConfig),
            "{platform}"
        );
        let local = node.local(&host_path);
        assert_eq!(
            fs::read(&local).unwrap(),
            IMAGEPULLER_TOML.as_bytes(),
            "{platform}: byte for byte"
        );
        assert_eq!(
            fs::symlink_metadata(&local).unwrap().permissions().mode() & 0o7777,
            0o600,
            "{platform}: credentials readable by root only"
        );
        let kata = fs::read_to_string(node.local(&format!("{base}/etc/{kata_file}"))).unwrap();
        assert_eq!(qemu_key(&kata), Some(host_path.clone()), "{platform}");

        // A second run rewrites nothing.
        let before = node.snapshot();
        let actions = install(&installation, &mut Recorder::default()).unwrap();
        assert!(
            actions.contains(&Action::Unchanged(host_path.clone())),
            "{platform}: {actions:#?}"
        );
        assert_eq!(node.snapshot(), before, "{platform}");

        // A changed Secret replaces the file; the Kata configuration stays.
        let mut changed = installation.clone();
        changed.imagepuller_config = Some(ImagePullerConfig {
            source: dir.join("contrast-imagepuller.toml"),
            text: "[registries.\"quay.io.\"]\nusername = \"u\"\npassword = \"p\"\n".into(),
        });
        let actions = install(&changed, &mut Recorder::default()).unwrap();
        assert!(
            actions.contains(&Action::Installed(host_path.clone())),
            "{platform}: {actions:#?}"
        );
        assert!(
            actions.contains(&Action::KataConfigUnchanged(format!(
                "{base}/etc/{kata_file}"
            ))),
            "{platform}: {actions:#?}"
        );
        assert!(
            fs::read_to_string(&local).unwrap().contains("quay.io."),
            "{platform}"
        );
    }
}

#[test]
fn without_imagepuller_config_the_key_is_omitted_and_a_stale_copy_removed() {
    let node = FakeNode::new();
    let mut installation = node.installation(Platform::MetalQemuSnp, Vec::new());
    installation.target.systemd_units.clear();
    let base = format!("/opt/edgeless/{}", installation.handler);
    let host_path = format!("{base}/etc/host-config/contrast-imagepuller.toml");
    let kata_path = node.local(&format!("{base}/etc/{SNP_KATA}"));

    // An earlier run with the Secret.
    installation.imagepuller_config =
        ImagePullerConfig::load(&imagepuller_secret(&node, IMAGEPULLER_TOML.as_bytes())).unwrap();
    install(&installation, &mut Recorder::default()).unwrap();
    assert!(node.local(&host_path).exists());
    assert_eq!(
        qemu_key(&fs::read_to_string(&kata_path).unwrap()),
        Some(host_path.clone())
    );

    // The Secret was deleted: the mount is an empty directory.
    let empty = node.dir.path().join("empty-imagepuller-config");
    fs::create_dir(&empty).unwrap();
    installation.imagepuller_config = ImagePullerConfig::load(&empty).unwrap();
    assert_eq!(installation.imagepuller_config, None);

    let mut dry = installation.clone();
    dry.dry_run = true;
    let before = node.snapshot();
    let actions = install(&dry, &mut Recorder::default()).unwrap();
    assert!(
        actions.contains(&Action::WouldRemove(host_path.clone())),
        "{actions:#?}"
    );
    assert_eq!(node.snapshot(), before, "a dry run removes nothing");

    let actions = install(&installation, &mut Recorder::default()).unwrap();
    assert!(
        actions.contains(&Action::NoImagePullerConfig),
        "{actions:#?}"
    );
    assert!(
        actions.contains(&Action::Removed(host_path.clone())),
        "{actions:#?}"
    );
    assert!(
        actions.contains(&Action::KataConfigWritten(format!("{base}/etc/{SNP_KATA}"))),
        "{actions:#?}"
    );
    assert!(!node.local(&host_path).exists());
    let kata = fs::read_to_string(&kata_path).unwrap();
    assert_eq!(qemu_key(&kata), None, "{kata}");
    assert!(!kata.contains("imagepuller"), "{kata}");

    // Nothing left to remove.
    let actions = install(&installation, &mut Recorder::default()).unwrap();
    assert!(
        !actions.iter().any(|a| matches!(a, Action::Removed(_))),
        "{actions:#?}"
    );
}

#[test]
fn aks_does_not_install_the_imagepuller_config() {
    let node = FakeNode::new();
    node.host_file("/etc/containerd/config.toml", "version = 2\n");
    let mut installation = node.installation(Platform::AksClhSnp, Vec::new());
    installation.target.systemd_units.clear();
    installation.imagepuller_config =
        ImagePullerConfig::load(&imagepuller_secret(&node, IMAGEPULLER_TOML.as_bytes())).unwrap();
    let base = format!("/opt/edgeless/{}", installation.handler);
    let actions = install(&installation, &mut Recorder::default()).unwrap();
    assert!(
        actions.contains(&Action::ImagePullerConfigIgnored(Platform::AksClhSnp)),
        "{actions:#?}"
    );
    assert!(
        !node
            .local(&format!("{base}/etc/host-config/contrast-imagepuller.toml"))
            .exists()
    );
    let kata =
        fs::read_to_string(node.local(&format!("{base}/etc/configuration-clh-snp.toml"))).unwrap();
    assert!(!kata.contains("imagepuller"), "{kata}");

    // Without the Secret there is nothing to note: AKS never pulls in the guest.
    installation.imagepuller_config = None;
    let actions = install(&installation, &mut Recorder::default()).unwrap();
    assert!(
        !actions.iter().any(|a| matches!(
            a,
            Action::NoImagePullerConfig | Action::ImagePullerConfigIgnored(_)
        )),
        "{actions:#?}"
    );
}

#[test]
fn dry_run_changes_nothing() {
    let node = FakeNode::new();
    node.host_file("/etc/containerd/config.toml", USER_V2);
    let server = image_server();
    let mut installation = node.installation(Platform::MetalQemuSnp, snp_files(&node, &server));
    installation.dry_run = true;
    let before = node.snapshot();
    let mut runner = Recorder::default();
    let actions = install(&installation, &mut runner).unwrap();
    assert_eq!(node.snapshot(), before);
    assert!(runner.commands.is_empty());
    assert!(matches!(actions.last(), Some(Action::WouldRestart(_))));
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::WouldInstall(_)))
            .count(),
        6,
        "five files and the Kata configuration: {actions:#?}"
    );
}

#[test]
fn kernel_params_come_from_the_flag_then_the_config() {
    let node = FakeNode::new();
    let mut installation = node.installation(Platform::MetalQemuTdx, Vec::new());
    installation.config.qemu_extra_kernel_params = Some("from config".into());
    let kata = node.local(&format!(
        "/opt/edgeless/{}/etc/configuration-qemu-tdx.toml",
        installation.handler
    ));
    install(&installation, &mut Recorder::default()).unwrap();
    assert!(
        fs::read_to_string(&kata)
            .unwrap()
            .contains("kernel_params = \"from config\"")
    );
    installation.kernel_params = Some("from flag".into());
    let actions = install(&installation, &mut Recorder::default()).unwrap();
    assert!(
        fs::read_to_string(&kata)
            .unwrap()
            .contains("kernel_params = \"from flag\"")
    );
    // Only the Kata configuration changed: containerd is not restarted for it.
    assert_eq!(actions.last(), Some(&Action::NothingToRestart));
}

mod refusals {
    use super::*;

    fn refused(
        files: Vec<contrast_runtime_installer::config::FileSpec>,
    ) -> (FakeNode, InstallError) {
        let node = FakeNode::new();
        node.host_file("/etc/containerd/config.toml", USER_V2);
        let mut all = vec![spec(
            &node.image_file("ok", b"fine"),
            "/opt/edgeless/@@runtimeName@@/share/ok",
            false,
            None,
        )];
        all.extend(files);
        let installation = node.installation(Platform::MetalQemuSnp, all);
        let before = node.host_files();
        let mut runner = Recorder::default();
        let err = install(&installation, &mut runner).unwrap_err();
        // Checked before anything is written, also the valid entry before the bad one.
        assert_eq!(node.host_files(), before, "{err}");
        assert!(runner.commands.is_empty());
        (node, err)
    }

    #[test]
    fn relative_path() {
        let (_, err) = refused(vec![spec("file:///x", "opt/edgeless/x", false, None)]);
        assert!(matches!(err, InstallError::RelativePath { .. }), "{err}");
    }

    #[test]
    fn dotdot_escape() {
        let (_, err) = refused(vec![spec(
            "file:///x",
            "/opt/edgeless/@@runtimeName@@/../../../etc/shadow",
            false,
            None,
        )]);
        assert!(
            matches!(err, InstallError::PathEscapesHostRoot { .. }),
            "{err}"
        );
    }

    #[test]
    fn symlink_escape() {
        let node = FakeNode::new();
        fs::create_dir_all(node.local("/opt")).unwrap();
        symlink("../../../..", node.local("/opt/edgeless")).unwrap();
        let installation = node.installation(
            Platform::MetalQemuSnp,
            vec![spec(
                &node.image_file("f", b"f"),
                "/opt/edgeless/x/f",
                false,
                None,
            )],
        );
        let err = install(&installation, &mut Recorder::default()).unwrap_err();
        assert!(
            matches!(err, InstallError::PathEscapesHostRoot { .. }),
            "{err}"
        );
        assert!(!node.dir.path().join("x").exists());
    }

    #[test]
    fn http_without_integrity() {
        let (_, err) = refused(vec![spec(
            "https://example.com/image",
            "/opt/edgeless/@@runtimeName@@/share/image",
            false,
            None,
        )]);
        assert!(
            matches!(err, InstallError::MissingIntegrity { index: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn malformed_sri() {
        let (_, err) = refused(vec![spec(
            "https://example.com/image",
            "/opt/edgeless/@@runtimeName@@/share/image",
            false,
            Some("sha256:abc".into()),
        )]);
        assert!(
            matches!(err, InstallError::MalformedIntegrity { index: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn containerd_version_1() {
        let node = FakeNode::new();
        let v1 = "[plugins.cri.containerd]\n  snapshotter = \"overlayfs\"\n";
        node.host_file("/etc/containerd/config.toml", v1);
        let installation = node.installation(
            Platform::MetalQemuSnp,
            vec![spec(
                &node.image_file("f", b"f"),
                "/opt/edgeless/@@runtimeName@@/f",
                false,
                None,
            )],
        );
        let mut runner = Recorder::default();
        let err = install(&installation, &mut runner).unwrap_err();
        assert!(
            matches!(err, InstallError::ContainerdVersion1 { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("version = 2"), "{err}");
        assert_eq!(node.host_files(), ["etc/containerd/config.toml"]);
        assert!(runner.commands.is_empty());
    }

    #[test]
    fn handler_of_another_platform() {
        let node = FakeNode::new();
        let mut installation = node.installation(Platform::MetalQemuSnp, Vec::new());
        installation.handler = handler(Platform::MetalQemuTdx);
        let err = install(&installation, &mut Recorder::default()).unwrap_err();
        assert!(
            matches!(err, InstallError::HandlerPlatformMismatch { .. }),
            "{err}"
        );
    }

    #[test]
    fn simulated_platform() {
        let node = FakeNode::new();
        let installation = node.installation(Platform::SimSnp, Vec::new());
        let err = install(&installation, &mut Recorder::default()).unwrap_err();
        assert!(
            matches!(err, InstallError::UnsupportedPlatform { .. }),
            "{err}"
        );
        assert!(node.host_files().is_empty());
    }
}
