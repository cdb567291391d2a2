//! A release against a real registry (Debian's docker-registry on loopback): the
//! Coordinator's, Initializer's, service-mesh proxy's, port-forwarder's and node
//! installer's images, built twice from the shipped binaries (and a guest image built from
//! them), have the same digests; pulled back by digest with our registry client and
//! unpacked, each runs its entrypoint from its own root (chroot), and iptables runs where
//! the image carries it; the node installer installs the shim, the guest image and the
//! firmware its values were computed from (not a stand-in) into a node's root from its own;
//! `release.json` calls no values production values, and says why for each platform. skopeo copies each out of the registry and reads the written
//! OCI layout.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;

use contrast_firmware_refs::reference_values::{
    ImageArtifacts, encode_embedded, image_entries, simulated_entries,
};
use contrast_image::firmware::{FirmwareRecord, add_local, write_record};
use contrast_image::release::{COMPONENTS, ReleaseConfig, release};
use contrast_platforms::{Platform, Tee, node_installer};
use contrast_reference_values::components::{
    COORDINATOR, INITIALIZER, NODE_INSTALLER, SERVICE_MESH_PROXY,
};
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

/// Each image's size in the layout at `dir`, as `cargo xtask release` prints it.
fn report_sizes(dir: &Path) -> Vec<String> {
    let sizes = contrast_image::oci::layout_sizes(dir).unwrap();
    assert_eq!(sizes.len(), COMPONENTS.len() + 1, "{sizes:?}");
    sizes
        .into_iter()
        .map(|(name, size)| {
            assert!(size.unpacked > size.stored, "{name}: {size:?}");
            format!("{name}: {size}")
        })
        .collect()
}

/// Where this test leaves its report for `cargo xtask test` to print after the tests (a
/// passing test's output is not shown): the run's `release.json`, the reproducibility
/// check and the image sizes.
const REPORT: &str = "release-report.txt";

fn leave_report(release_json: &Path, sizes: &[String]) {
    let text = format!(
        "reproducibility: two release builds in fresh directories gave the same release.json \
         and OCI index, byte for byte\n\nimage sizes:\n  {}\n\nrelease.json:\n{}\n",
        sizes.join("\n  "),
        std::fs::read_to_string(release_json).unwrap()
    );
    std::fs::write(Path::new(env!("CARGO_TARGET_TMPDIR")).join(REPORT), text).unwrap();
}

/// Bookworm's OVMF, the TDX firmware `cargo xtask image` measures.
const DEBIAN_OVMF: &str = "/usr/share/ovmf/OVMF.fd";

#[test]
fn a_release_pushes_reproducible_images_that_run_from_their_own_root() {
    let binaries = common::shipped();
    let mut registry = Registry::start(RegistrySetup::default());
    let prefix = format!("127.0.0.1:{}/contrast", registry.port);
    let first = TempDir::new("release-1");
    let second = TempDir::new("release-2");
    // The guest image the node installer carries, built from the shipped binaries as
    // `cargo xtask image` builds it: with a stand-in for the SNP firmware (Debian's
    // AmdSevX64 build is in unstable only) and bookworm's OVMF.fd for TDX.
    let guest = TempDir::new("release-guest-image");
    let image = contrast_image::build(&contrast_image::BuildConfig {
        binaries: binaries.clone(),
        out: guest.path().to_owned(),
        system_root: std::path::PathBuf::from("/"),
    })
    .unwrap();
    let mut firmware = FirmwareRecord::new();
    let stand_in = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../firmware-refs/tests/data/ovmf_AmdSev_suffix.bin");
    add_local(&mut firmware, guest.path(), Tee::Snp, &stand_in, true).unwrap();
    add_local(
        &mut firmware,
        guest.path(),
        Tee::Tdx,
        Path::new(DEBIAN_OVMF),
        false,
    )
    .unwrap();
    write_record(guest.path(), &firmware).unwrap();
    // Its reference values, as `firmware-refs reference-values --image-dir` writes them.
    let mut entries = simulated_entries();
    entries.extend(
        image_entries(&ImageArtifacts {
            dir: guest.path().to_owned(),
        })
        .unwrap(),
    );
    let values = guest.path().join("reference-values.json");
    std::fs::write(&values, encode_embedded(&entries)).unwrap();
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
    let sizes = report_sizes(&first.path().join("oci"));
    leave_report(&first.path().join("release.json"), &sizes);
    // Every platform of the values, none called production values, each saying why: the
    // simulated ones, SNP measured with a stand-in, TDX with its unchecked RTMR0 parts.
    let tdx_firmware = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(std::fs::read(DEBIAN_OVMF).unwrap()))
    };
    for (platform, entry) in &one.platforms {
        assert!(!entry.production, "{platform}");
        let parsed: Platform = platform.parse().unwrap();
        let why = if parsed.is_simulated() {
            "simulated"
        } else if parsed.tee() == Tee::Snp {
            "stand-in"
        } else {
            "RTMR0"
        };
        assert!(entry.caveat.contains(why), "{platform}: {}", entry.caveat);
        if parsed.is_simulated() {
            assert!(entry.firmware.is_empty(), "{platform}");
        } else if parsed.tee() == Tee::Tdx {
            assert!(
                entry.firmware.contains(&tdx_firmware),
                "{platform}: {}",
                entry.firmware
            );
        }
    }
    for platform in ["Sim-SNP", "Metal-QEMU-SNP", "Metal-QEMU-TDX"] {
        assert!(one.platforms.contains_key(platform), "{platform}");
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
        if component.luks_tools {
            // What the LUKS helper runs, from the image's own root: a file system made
            // with the image's mke2fs and its configuration, mount and umount.
            let (ok, text) = run_in(
                root.path(),
                "/usr/sbin/mkfs.ext4",
                &["-q", "-F", "/volume.img", "4M"],
            );
            assert!(
                ok,
                "{}: mkfs.ext4 from its own root:\n{text}",
                component.name
            );
            let volume = std::fs::read(root.path().join("volume.img")).unwrap();
            // The ext4 superblock's magic, at 1024 + 56.
            assert_eq!(volume[1080..1082], [0x53, 0xef], "{}", component.name);
            // The secure-pv startup probe, as `contrast generate` writes it.
            let (ok, text) = run_in(root.path(), "/usr/bin/test", &["-f", "/volume.img"]);
            assert!(ok, "{}: test -f from its own root:\n{text}", component.name);
            for tool in ["/usr/bin/mount", "/usr/bin/umount"] {
                let (ok, text) = run_in(root.path(), tool, &["--version"]);
                assert!(ok, "{}: {tool} from its own root:\n{text}", component.name);
            }
        }
        if component.name == COORDINATOR {
            coordinator_refuses_to_start_without_its_tee(root.path());
        }
    }
    node_installer_installs_from_its_own_root(
        &one.images[NODE_INSTALLER],
        &resolver,
        &runtime,
        guest.path(),
        &image.cmdline,
    );
    release_cli_deploys_the_release(
        &release_cli(&first.path().join("release.json"), &values),
        &one,
        &mut registry,
        &resolver,
        &runtime,
    );
}

/// The release's Coordinator from its own root: on a simulated platform it refuses the
/// simulator, since none ships; on a real platform it looks for its TEE (configfs-tsm,
/// then /dev/sev-guest) and, finding none on this machine, stops with an error that says
/// so, before it serves anything.
fn coordinator_refuses_to_start_without_its_tee(root: &Path) {
    let (ok, text) = run_in(
        root,
        "/usr/bin/coordinator",
        &[
            "--platform",
            "Sim-SNP",
            "--simulator-dir",
            "/simulator",
            "--store-dir",
            "/store",
        ],
    );
    assert!(!ok, "the release's Coordinator ran a simulator:\n{text}");
    assert!(text.contains("without the simulator"), "{text}");
    let ip = contrast_testkit::random_loopback().to_string();
    let (ok, text) = run_in(
        root,
        "/usr/bin/coordinator",
        &[
            "--platform",
            "Metal-QEMU-SNP",
            "--store-dir",
            "/store",
            "--listen",
            &ip,
        ],
    );
    assert!(!ok, "the release's Coordinator ran without a TEE:\n{text}");
    for needle in [
        "not running in a confidential VM",
        "/sys/kernel/config/tsm/report",
        "/dev/sev-guest",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
}

/// The CLI a release ships, built as `cargo xtask release` builds it (release profile, with
/// `release.json` and the image's reference values embedded); in the shared target
/// directory, where the shipped binaries' dependencies are built already. Only the
/// reference-values crate and the CLI see the embedded files, and no shipped binary
/// depends on them.
fn release_cli(release_json: &Path, values: &Path) -> std::path::PathBuf {
    let target = common::target_dir();
    let status = Command::new(common::cargo())
        .args(["build", "--release", "--locked", "-p", "contrast-cli"])
        .env("CARGO_TARGET_DIR", &target)
        .env("CONTRAST_RELEASE", release_json)
        .env("CONTRAST_REFERENCE_VALUES", values)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap();
    assert!(status.success(), "building the release CLI: {status}");
    target.join("release/contrast")
}

fn run_cli(cli: &Path, workspace: &Path, args: &[&str]) -> String {
    let output = Command::new(cli)
        .args(args)
        .current_dir(workspace)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "contrast {}:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Every `image:` of the YAML documents in `yaml`.
fn images_in(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|line| line.trim().strip_prefix("image: "))
        .map(|image| image.trim_matches('"').to_owned())
        .collect()
}

/// The release CLI as a user runs it: `--version` names the release's images and says of
/// each platform whether its values are production values; `runtime` and `coordinator`
/// print YAML that Kubernetes' schemas accept and that names our images only by digests
/// the registry has; `generate` for a real platform injects the Initializer and the mesh
/// proxy by digest and writes the release's reference values into the manifest, and runs
/// again offline, from its cache, to the same files.
fn release_cli_deploys_the_release(
    cli: &Path,
    release: &contrast_reference_values::Release,
    registry: &mut Registry,
    resolver: &Resolver,
    runtime: &tokio::runtime::Runtime,
) {
    let workspace = TempDir::new("release-cli");
    let version = run_cli(cli, workspace.path(), &["--version"]);
    for image in release.images.values() {
        assert!(version.contains(image.as_str()), "{image}:\n{version}");
    }
    assert!(
        version.contains("production values:        no: computed with a stand-in"),
        "{version}"
    );

    let ours: Vec<&String> = release.images.values().collect();
    let mut documents = Vec::new();
    for args in [
        &["runtime", "--platform", "metal-qemu-snp"][..],
        &[
            "coordinator",
            "--platform",
            "metal-qemu-snp",
            "--port-forwarder",
        ][..],
    ] {
        let yaml = run_cli(cli, workspace.path(), args);
        let file = workspace.path().join(format!("{}.yml", args[0]));
        std::fs::write(&file, &yaml).unwrap();
        documents.push(file);
        let images = images_in(&yaml);
        assert!(!images.is_empty(), "{yaml}");
        for image in images {
            let (_, digest) = image
                .split_once("@sha256:")
                .unwrap_or_else(|| panic!("{image} is not pinned by digest"));
            assert_eq!(digest.len(), 64, "{image}");
            if image.starts_with(&registry.host()) {
                assert!(ours.contains(&&image), "{image} is not the release's");
                // The registry has it: our client pulls it by that digest.
                let root = TempDir::new("release-cli-image");
                runtime
                    .block_on(resolver.pull(&image, root.path()))
                    .unwrap();
            } else {
                assert!(image.starts_with("registry.k8s.io/pause:"), "{image}");
            }
        }
    }
    contrast_testkit::kubernetes_validate(&documents, "1.33.0");

    // `generate` for a real platform, on the Coordinator and a workload.
    let resources = workspace.path().join("resources");
    std::fs::create_dir_all(&resources).unwrap();
    let scratch = TempDir::new("release-cli-app");
    let app = registry.push_image(
        scratch.path(),
        "shop/web",
        r#"{"Env":["PATH=/usr/bin:/bin"],"Entrypoint":["/bin/app"],"WorkingDir":"/srv"}"#,
    );
    std::fs::copy(
        workspace.path().join("coordinator.yml"),
        resources.join("coordinator.yml"),
    )
    .unwrap();
    std::fs::write(
        resources.join("web.yml"),
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  annotations:\n    \
             contrast.edgeless.systems/servicemesh-ingress: \"web#8080#false\"\nspec:\n  \
             selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      \
             labels: {{app: web}}\n    spec:\n      runtimeClassName: contrast-cc\n      \
             containers:\n        - name: web\n          image: {app}\n"
        ),
    )
    .unwrap();
    let host = registry.host();
    let generate = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--reference-values",
            "metal-qemu-snp",
            "--insecure-registry",
            &host,
        ];
        args.extend_from_slice(extra);
        args.push("resources/");
        run_cli(cli, workspace.path(), &args);
        let read = |name: &str| std::fs::read_to_string(workspace.path().join(name)).unwrap();
        (
            read("resources/web.yml"),
            read("resources/coordinator.yml"),
            read("manifest.json"),
        )
    };
    let online = generate(&[]);
    let (web, _, manifest) = &online;
    for component in [INITIALIZER, SERVICE_MESH_PROXY] {
        let image = &release.images[component];
        assert!(web.contains(image.as_str()), "{component} {image}:\n{web}");
    }
    let values = &release.platforms["Metal-QEMU-SNP"].reference_values;
    let measurement = values["snp"][0]["TrustedMeasurement"]
        .as_str()
        .unwrap_or_else(|| panic!("no SNP launch digest in {values}"));
    assert!(manifest.contains(measurement), "{manifest}");
    contrast_testkit::kubernetes_validate(
        &[resources.join("web.yml"), resources.join("coordinator.yml")],
        "1.33.0",
    );
    registry.stop();
    assert!(
        generate(&["--offline"]) == online,
        "the offline run changed the files"
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
        ("kernel", node_installer::KERNEL),
        ("initrd", node_installer::INITRD),
        ("rootfs.img", node_installer::ROOTFS),
        // The firmware the TDX values were computed from; not the SNP stand-in.
        ("ovmf-tdx.fd", node_installer::firmware(Tee::Tdx)),
    ] {
        assert!(
            std::fs::read(guest_image.join(from_guest)).unwrap()
                == std::fs::read(base.join(installed)).unwrap(),
            "{installed} is not the guest image's {from_guest}:\n{text}"
        );
    }
    assert!(
        !base.join(node_installer::firmware(Tee::Snp)).exists(),
        "the node installer shipped the SNP stand-in"
    );
    let shim = base.join(node_installer::SHIM);
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
