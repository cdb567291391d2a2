//! A release against a real registry (Debian's docker-registry on loopback): the
//! Coordinator's, Initializer's, service-mesh proxy's, port-forwarder's and node
//! installer's images, built twice from the shipped binaries (and a guest image built from
//! them), have the same digests; pulled back by digest with our registry client and
//! unpacked, each runs its entrypoint from its own root (chroot), and iptables runs where
//! the image carries it; the node installer installs the shim and the guest image into a
//! node's root from its own. skopeo copies each out of the registry and reads the written
//! OCI layout.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use contrast_image::release::{COMPONENTS, ReleaseConfig, release};
use contrast_reference_values::components::NODE_INSTALLER;
use contrast_registry::{Resolver, ResolverOptions};
use contrast_testkit::TempDir;
use contrast_testkit::registry::{Registry, RegistrySetup, skopeo};

/// Runs `program` (a path inside `root`) with `args` from `root` as `/`.
fn run_in(root: &Path, program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new("chroot")
        .arg(root)
        .arg(program)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn a_release_pushes_reproducible_images_that_run_from_their_own_root() {
    let binaries = common::shipped();
    let registry = Registry::start(RegistrySetup::default());
    let prefix = format!("127.0.0.1:{}/contrast", registry.port);
    let first = TempDir::new("release-1");
    let second = TempDir::new("release-2");
    // The checked-in values of the simulated platforms stand for a guest image's.
    let values = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../crates/reference-values/assets/reference-values.json");
    // The guest image the node installer carries, built from the shipped binaries as
    // `cargo xtask image` builds it.
    let guest = TempDir::new("release-guest-image");
    let image = contrast_image::build(&contrast_image::BuildConfig {
        binaries: binaries.clone(),
        out: guest.path().to_owned(),
        system_root: std::path::PathBuf::from("/"),
    })
    .unwrap();
    let config = |out: &Path| ReleaseConfig {
        binaries: binaries.clone(),
        registry: prefix.clone(),
        insecure_registry: true,
        out: out.to_owned(),
        reference_values: Some(values.clone()),
        guest_image: Some(guest.path().to_owned()),
    };
    let one = release(&config(first.path())).unwrap();
    let two = release(&config(second.path())).unwrap();
    assert_eq!(one, two, "two builds of the same binaries differ");
    for file in ["release.json", "oci/index.json"] {
        assert_eq!(
            std::fs::read(first.path().join(file)).unwrap(),
            std::fs::read(second.path().join(file)).unwrap(),
            "{file} differs between two builds"
        );
    }
    assert_eq!(one.images.len(), COMPONENTS.len() + 1, "{:?}", one.images);
    // Every platform of the values, none called production values, each saying why.
    assert_eq!(
        one.platforms.keys().map(String::as_str).collect::<Vec<_>>(),
        ["Sim-SNP", "Sim-TDX"]
    );
    for (platform, entry) in &one.platforms {
        assert!(!entry.production, "{platform}");
        assert!(
            entry.caveat.contains("simulated"),
            "{platform}: {}",
            entry.caveat
        );
        assert!(
            entry.runtime_handler.starts_with("contrast-cc-sim-"),
            "{platform}"
        );
    }

    let resolver = Resolver::new(ResolverOptions {
        insecure_registries: vec![format!("127.0.0.1:{}", registry.port)],
        ..ResolverOptions::default()
    })
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    for component in COMPONENTS {
        let reference = &one.images[component.name];
        // skopeo, a client that is not ours, reads what was pushed and what was written:
        // it copies the image out of the registry (checking every blob's digest), and the
        // layout's manifest is the pushed one.
        let digest = reference.rsplit_once('@').unwrap().1;
        let copy = TempDir::new(&format!("{}-skopeo", component.name));
        skopeo(&[
            "copy",
            "--src-tls-verify=false",
            &format!("docker://{reference}"),
            &format!("oci:{}:{}", copy.path().display(), component.name),
        ]);
        let layout = format!(
            "oci:{}:{}",
            first.path().join("oci").display(),
            component.name
        );
        let manifest = skopeo(&["inspect", "--raw", &layout]);
        assert_eq!(
            contrast_testkit::registry::sha256(&manifest),
            digest,
            "{layout}"
        );
        assert!(
            reference.starts_with(&format!("{prefix}/{}@sha256:", component.name)),
            "{reference}"
        );
        let root = TempDir::new(component.name);
        let pulled = runtime
            .block_on(resolver.pull(reference, root.path()))
            .unwrap();
        let entrypoint = format!("/usr/bin/{}", component.program);
        assert_eq!(
            pulled.image.config.entrypoint,
            Some(vec![entrypoint.clone()])
        );
        let (ok, text) = run_in(root.path(), &entrypoint, &["--help"]);
        assert!(ok, "{} --help from its own root:\n{text}", component.name);
        assert!(text.contains("Usage"), "{}: {text}", component.name);
        if component.iptables {
            let (ok, text) = run_in(root.path(), "/usr/sbin/iptables", &["--version"]);
            assert!(
                ok,
                "{}: iptables from its own root:\n{text}",
                component.name
            );
            assert!(text.contains("nf_tables"), "{}: {text}", component.name);
        }
        if component.ca_certificates {
            assert!(root.path().join(contrast_image::CA_BUNDLE).is_file());
        }
    }
    node_installer_installs_from_its_own_root(
        &one.images[NODE_INSTALLER],
        &resolver,
        &runtime,
        guest.path(),
        &image.cmdline,
    );
}

/// The node installer's image, pulled back and unpacked, run from its own root as the
/// DaemonSet runs it (restarts off: this must not touch the machine's containerd): the
/// shim and the guest image land in the runtime's directory of a node's root, the Kata
/// configuration names them with the image's command line, and containerd's
/// configuration gets the runtime.
fn node_installer_installs_from_its_own_root(
    reference: &str,
    resolver: &Resolver,
    runtime: &tokio::runtime::Runtime,
    guest_image: &Path,
    cmdline: &str,
) {
    assert!(reference.contains("/node-installer@sha256:"), "{reference}");
    let root = TempDir::new(NODE_INSTALLER);
    let pulled = runtime
        .block_on(resolver.pull(reference, root.path()))
        .unwrap();
    assert_eq!(
        pulled.image.config.entrypoint,
        Some(vec!["/usr/bin/runtime-installer".to_owned()])
    );
    // The node's root, inside the installer's for the chroot, with containerd's config.
    let host = root.path().join("host");
    std::fs::create_dir_all(host.join("etc/containerd")).unwrap();
    std::fs::write(host.join("etc/containerd/config.toml"), "version = 2\n").unwrap();
    let target = root.path().join("target-config");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("restart-systemd-unit"), "false").unwrap();
    let handler = "contrast-cc-metal-qemu-snp-1a2b3c4d";
    let (ok, text) = run_in(
        root.path(),
        "/usr/bin/runtime-installer",
        &[
            "--platform",
            "Metal-QEMU-SNP",
            "--runtime-handler",
            handler,
            "--host-root",
            "/host",
            "--target-config-dir",
            "/target-config",
        ],
    );
    assert!(ok, "the node installer from its own root:\n{text}");
    let base = host.join("opt/edgeless").join(handler);
    for (from_guest, installed) in [
        ("kernel", "share/kata-kernel"),
        ("initrd", "share/kata-initrd.zst"),
        ("rootfs.img", "share/kata-containers.img"),
    ] {
        assert!(
            std::fs::read(guest_image.join(from_guest)).unwrap()
                == std::fs::read(base.join(installed)).unwrap(),
            "{installed} is not the guest image's {from_guest}:\n{text}"
        );
    }
    let shim = base.join("bin/containerd-shim-contrast-cc-v2");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&shim).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let kata = std::fs::read_to_string(base.join("etc/configuration-qemu-snp.toml")).unwrap();
    assert!(
        kata.contains(&format!("kernel_params = {cmdline:?}")),
        "the Kata configuration has another command line than the image's:\n{kata}"
    );
    let containerd = std::fs::read_to_string(host.join("etc/containerd/config.toml")).unwrap();
    assert!(
        containerd.contains(&format!(
            "/opt/edgeless/{handler}/bin/containerd-shim-contrast-cc-v2"
        )),
        "containerd's runtime entry does not name the installed shim:\n{containerd}"
    );
}
