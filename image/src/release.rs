//! A release's container images: the Coordinator, the Initializer, the service-mesh proxy
//! and the port-forwarder as reproducible OCI images ([`crate::oci`]) of the shipped binaries, written as
//! an OCI layout and pushed to a registry with our registry client; `release.json` names
//! each by digest. With a guest image, also the node installer: the runtime installer with
//! what it installs on a node (the shim and the guest image) and its install configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ImageError;
use crate::firmware::{Firmware, FirmwareSource};
use contrast_platforms::{RuntimeHandler, Tee, node_installer};
use contrast_reference_values::components::{
    COORDINATOR, INITIALIZER, NODE_INSTALLER, PORT_FORWARDER, SERVICE_MESH_PROXY,
};
use contrast_reference_values::{Release, ReleasePlatform};
use contrast_registry::OCI_MANIFEST;

use crate::oci::{Image, Layer, RunConfig};

/// A component of the release that is a container image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    /// The image's repository name under the release's registry prefix.
    pub name: &'static str,
    /// The shipped binary it runs, at `/usr/bin/<program>`.
    pub program: &'static str,
    /// Whether it carries iptables (it changes the pod VM's rules: the default-deny rule,
    /// the mesh redirection).
    pub iptables: bool,
    /// Whether it carries the system's CA bundle (it talks HTTPS to AMD's and Intel's
    /// services).
    pub ca_certificates: bool,
    /// Whether it carries mkfs.ext4, mount and umount (it formats and mounts the pod's
    /// secure volume).
    pub luks_tools: bool,
    /// The user it runs as (`uid:gid`): root where it changes the pod VM's packet filter.
    pub user: &'static str,
}

/// The images a release builds.
pub const COMPONENTS: [Component; 4] = [
    Component {
        name: COORDINATOR,
        program: "coordinator",
        iptables: true,
        luks_tools: false,
        ca_certificates: true,
        user: "0:0",
    },
    Component {
        name: INITIALIZER,
        program: "initializer",
        iptables: true,
        luks_tools: true,
        ca_certificates: false,
        user: "0:0",
    },
    Component {
        name: SERVICE_MESH_PROXY,
        program: "service-mesh",
        iptables: true,
        luks_tools: false,
        ca_certificates: false,
        user: "0:0",
    },
    Component {
        name: PORT_FORWARDER,
        program: "port-forwarder",
        iptables: false,
        luks_tools: false,
        ca_certificates: false,
        // Nothing to do as root: it relays TCP.
        user: "65532:65532",
    },
];

/// Where a release's programs come from and where it goes.
#[derive(Debug, Clone)]
pub struct ReleaseConfig {
    /// The directory holding the shipped binaries (`<target>/release`).
    pub binaries: PathBuf,
    /// `host[:port]/prefix`: the images are pushed to `<registry>/<component>:v<version>`.
    pub registry: String,
    /// Reach the registry over plain HTTP (a local registry).
    pub insecure_registry: bool,
    /// The output directory: `oci/` (an OCI layout of every image) and `release.json`.
    pub out: PathBuf,
    /// The guest image's `reference-values.json` (runtime handler → reference values), as
    /// `firmware-refs reference-values` wrote it; its platforms go into `release.json`.
    pub reference_values: Option<PathBuf>,
    /// The guest image (`cargo xtask image`'s output directory) the node installer
    /// carries; without one, the release has no node installer.
    pub guest_image: Option<PathBuf>,
}

/// Where the node installer's image keeps what it installs (`file://` URLs name it).
pub const NODE_INSTALLER_FILES: &str = "opt/contrast";

/// What the node installer carries: (file in the guest image or the shipped binaries,
/// name under [`NODE_INSTALLER_FILES`] and on the node under the runtime's directory,
/// executable). The names are the Kata configuration's.
const INSTALLED: [(&str, &str, bool); 4] = [
    ("containerd-shim-contrast-cc-v2", node_installer::SHIM, true),
    ("kernel", node_installer::KERNEL, false),
    ("initrd", node_installer::INITRD, false),
    ("rootfs.img", node_installer::ROOTFS, false),
];

/// The node installer's image: the runtime installer (its entrypoint), and what it
/// installs on a node — the shim (from `binaries`), the guest image (from `guest_image`:
/// kernel, initrd, dm-verity root) and the firmware its reference values were computed
/// from (`firmware.json`; not a stand-in) — with the install configuration naming them and
/// the image's measured kernel command line, and the SNP ID blocks when the guest image
/// has them. QEMU is not carried: a node provides it (the release's platforms say so).
pub fn node_installer_image(
    binaries: &Path,
    guest_image: &Path,
    scratch: &Path,
) -> Result<Image, ImageError> {
    let installer = binaries.join("runtime-installer");
    if !installer.exists() {
        return Err(ImageError::MissingBinary { path: installer });
    }
    let manifest_path = guest_image.join("manifest.json");
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| ImageError::Io {
            path: path.to_owned(),
            source,
        })
    };
    let manifest: crate::ImageManifest =
        serde_json::from_slice(&read(&manifest_path)?).map_err(|e| ImageError::GuestImage {
            path: manifest_path.clone(),
            reason: format!("not a guest image manifest: {e}"),
        })?;
    let mut layer = Layer::new();
    // At node_installer::PROGRAM.
    layer.program(&installer, "runtime-installer", scratch)?;
    let mut files = Vec::new();
    let mut add = |layer: &mut Layer, name: &str, data: Vec<u8>, executable: bool| {
        layer.file(
            &format!("{NODE_INSTALLER_FILES}/{name}"),
            data,
            if executable { 0o755 } else { 0o644 },
        );
        files.push(serde_json::json!({
            "url": format!("file:///{NODE_INSTALLER_FILES}/{name}"),
            "path": format!("/opt/edgeless/@@runtimeName@@/{name}"),
            "executable": executable,
        }));
    };
    for (source, name, executable) in INSTALLED {
        let data = if executable {
            // A shipped binary: stripped, as the images' programs are.
            let program = binaries.join(source);
            if !program.exists() {
                return Err(ImageError::MissingBinary { path: program });
            }
            let stripped = scratch.join(format!("{source}.stripped"));
            crate::strip(&program, &stripped)?;
            read(&stripped)?
        } else {
            read(&guest_image.join(source))?
        };
        add(&mut layer, name, data, executable);
    }
    for (tee, (firmware, file)) in crate::firmware::read_record(guest_image)? {
        if firmware.source.ships() {
            add(
                &mut layer,
                node_installer::firmware(tee),
                read(&file)?,
                false,
            );
        }
    }
    let config = serde_json::json!({
        "files": files,
        "QemuExtraKernelParams": manifest.cmdline,
    });
    let mut config = serde_json::to_vec_pretty(&config).unwrap_or_default();
    config.push(b'\n');
    let in_image = |path: &str| path.trim_start_matches('/').to_owned();
    layer.file(&in_image(node_installer::INSTALL_CONFIG), config, 0o644);
    let id_blocks = guest_image.join("snp-id-blocks.json");
    if id_blocks.exists() {
        layer.file(
            &in_image(node_installer::SNP_ID_BLOCKS),
            read(&id_blocks)?,
            0o644,
        );
    }
    let run = RunConfig {
        entrypoint: vec![node_installer::PROGRAM.to_owned()],
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()],
        // It writes the host's files and configuration.
        user: "0:0".to_owned(),
        working_dir: "/".to_owned(),
    };
    Image::new(&layer.tar()?, &run)
}

/// The image of `component`, from the programs in `binaries`.
pub fn component_image(
    component: &Component,
    binaries: &Path,
    scratch: &Path,
) -> Result<Image, ImageError> {
    let program = binaries.join(component.program);
    if !program.exists() {
        return Err(ImageError::MissingBinary { path: program });
    }
    let mut layer = Layer::new();
    layer.program(&program, component.program, scratch)?;
    if component.iptables {
        layer.iptables()?;
    }
    if component.ca_certificates {
        layer.ca_certificates()?;
    }
    if component.luks_tools {
        layer.luks_tools()?;
    }
    let run = RunConfig {
        entrypoint: vec![format!("/usr/bin/{}", component.program)],
        env: vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned()],
        user: component.user.to_owned(),
        working_dir: "/".to_owned(),
    };
    Image::new(&layer.tar()?, &run)
}

/// Builds every image of [`COMPONENTS`], writes them to `<out>/oci`, pushes them and
/// writes `<out>/release.json`.
pub fn release(config: &ReleaseConfig) -> Result<Release, ImageError> {
    let version = env!("CARGO_PKG_VERSION");
    let registry = config.registry.trim_end_matches('/');
    let host = registry.split('/').next().unwrap_or_default();
    let scratch = config.out.join("scratch");
    std::fs::create_dir_all(&scratch).map_err(|source| ImageError::Io {
        path: scratch.clone(),
        source,
    })?;
    let firmware = match &config.guest_image {
        Some(guest_image) => crate::firmware::read_record(guest_image)?,
        None => BTreeMap::new(),
    };
    let mut images = Vec::new();
    for component in &COMPONENTS {
        images.push((
            component.name,
            component_image(component, &config.binaries, &scratch)?,
        ));
    }
    if let Some(guest_image) = &config.guest_image {
        images.push((
            NODE_INSTALLER,
            node_installer_image(&config.binaries, guest_image, &scratch)?,
        ));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    let named: Vec<(&str, &Image)> = images.iter().map(|(name, image)| (*name, image)).collect();
    crate::oci::write_layout(&config.out.join("oci"), &named)?;

    let resolver = contrast_registry::Resolver::new(contrast_registry::ResolverOptions {
        insecure_registries: if config.insecure_registry {
            vec![host.to_owned()]
        } else {
            Vec::new()
        },
        ..contrast_registry::ResolverOptions::default()
    })?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| ImageError::Io {
            path: PathBuf::from("<tokio runtime>"),
            source,
        })?;
    let mut release = Release {
        version: version.to_owned(),
        images: BTreeMap::new(),
        platforms: match &config.reference_values {
            Some(path) => platforms(path, &firmware)?,
            None => BTreeMap::new(),
        },
    };
    for (name, image) in &images {
        let tag = format!("{registry}/{name}:v{version}");
        let digest =
            runtime.block_on(resolver.push(&tag, &image.blobs(), &image.manifest, OCI_MANIFEST))?;
        release
            .images
            .insert((*name).to_owned(), format!("{registry}/{name}@{digest}"));
    }
    let mut json = serde_json::to_vec_pretty(&release).unwrap_or_default();
    json.push(b'\n');
    contrast_atomic_file::write(&config.out.join("release.json"), &json, 0o644)?;
    Ok(release)
}

/// The platforms of a `reference-values.json`, each marked with whether its values may be
/// deployed on, given the guest image's `firmware` (the values are the image directory's,
/// computed from its firmware files; `cargo xtask image` makes both): production values
/// only where a pinned Debian package's firmware was measured and the node installer ships
/// it, and what is measured is all computed and cross-checked here — SEV-SNP's launch
/// digest (sev-snp-measure agrees). Not TDX: its RTMR0 holds digests of QEMU's
/// configuration taken from Contrast's tdx-measure, which no node's QEMU was checked
/// against.
fn platforms(
    path: &Path,
    firmware: &BTreeMap<Tee, (Firmware, PathBuf)>,
) -> Result<BTreeMap<String, ReleasePlatform>, ImageError> {
    let invalid = |reason: String| ImageError::ReferenceValues {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read(path).map_err(|source| ImageError::Io {
        path: path.to_owned(),
        source,
    })?;
    let values: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&text).map_err(|e| invalid(e.to_string()))?;
    let mut platforms = BTreeMap::new();
    for (handler, reference_values) in values {
        let parsed: RuntimeHandler = handler
            .parse()
            .map_err(|e| invalid(format!("runtime handler {handler:?}: {e}")))?;
        let platform = parsed.platform();
        let tee = platform.tee();
        let measured = firmware.get(&tee).map(|(firmware, _)| firmware);
        let caveat = if platform.is_simulated() {
            "a simulated platform: for tests and the quickstart only".to_owned()
        } else {
            match measured.map(|firmware| &firmware.source) {
                None => "the guest image has no firmware record (firmware.json): which \
                         firmware the values were computed from is unknown, and the node \
                         installer ships none"
                    .to_owned(),
                Some(source @ FirmwareSource::StandIn { .. }) => format!(
                    "computed with {source} for the firmware, which no node boots: not \
                     shipped"
                ),
                Some(source @ FirmwareSource::LocalFile { .. }) => format!(
                    "computed with {source}, which the node installer ships but no pinned \
                     package provides: the release cannot be built again"
                ),
                Some(FirmwareSource::DebianPackage { .. }) => match tee {
                    Tee::Snp => String::new(),
                    Tee::Tdx => "RTMR0 holds digests of QEMU's fw_cfg and ACPI tables taken \
                                 from Contrast's tdx-measure, unchecked against a node's \
                                 QEMU; and Debian's OVMF.fd is TDX Config-A, which keeps the \
                                 VMM inside the firmware's trust boundary"
                        .to_owned(),
                },
            }
        };
        platforms.insert(
            platform.name().to_owned(),
            ReleasePlatform {
                runtime_handler: handler,
                reference_values,
                production: caveat.is_empty(),
                caveat,
                firmware: match measured {
                    Some(firmware) if !platform.is_simulated() => {
                        format!("{} (SHA-256 {})", firmware.source, firmware.sha256)
                    }
                    _ => String::new(),
                },
            },
        );
    }
    Ok(platforms)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::firmware::{DebianFirmware, debian_firmware};

    fn pinned(pin: &DebianFirmware) -> Firmware {
        Firmware {
            sha256: pin.sha256.to_owned(),
            source: FirmwareSource::DebianPackage {
                package: pin.package.to_owned(),
                version: pin.version.to_owned(),
                deb_sha256: pin.deb_sha256.to_owned(),
                path: pin.path.to_owned(),
            },
        }
    }

    #[test]
    fn only_snp_values_from_a_pinned_firmware_are_production_values() {
        let dir = contrast_testkit::TempDir::new("release-platforms");
        let values = dir.path().join("reference-values.json");
        std::fs::write(
            &values,
            r#"{"contrast-cc-metal-qemu-snp-2210deb7": {"snp": []},
                "contrast-cc-metal-qemu-tdx-8b553556": {"tdx": []},
                "contrast-cc-sim-snp-4a5e6f62": {"snp": []}}"#,
        )
        .unwrap();
        let mut firmware = BTreeMap::new();
        for tee in [Tee::Snp, Tee::Tdx] {
            firmware.insert(tee, (pinned(debian_firmware(tee)), PathBuf::new()));
        }
        let released = platforms(&values, &firmware).unwrap();
        let snp = &released["Metal-QEMU-SNP"];
        assert!(snp.production, "{}", snp.caveat);
        assert!(
            snp.firmware.contains("ovmf-amdsev 2026.08+ds-2"),
            "{}",
            snp.firmware
        );
        let tdx = &released["Metal-QEMU-TDX"];
        assert!(!tdx.production);
        assert!(tdx.caveat.contains("RTMR0"), "{}", tdx.caveat);
        assert!(tdx.firmware.contains(debian_firmware(Tee::Tdx).sha256));
        assert!(!released["Sim-SNP"].production);
        assert!(released["Sim-SNP"].firmware.is_empty());

        // The same SNP values from a local build, or with no record at all: not production.
        let local = Firmware {
            sha256: "00".repeat(32),
            source: FirmwareSource::LocalFile {
                path: "/build/OVMF.fd".to_owned(),
            },
        };
        firmware.insert(Tee::Snp, (local, PathBuf::new()));
        let released = platforms(&values, &firmware).unwrap();
        let snp = &released["Metal-QEMU-SNP"];
        assert!(!snp.production);
        assert!(snp.caveat.contains("no pinned package"), "{}", snp.caveat);
        let released = platforms(&values, &BTreeMap::new()).unwrap();
        assert!(!released["Metal-QEMU-SNP"].production);
        assert!(released["Metal-QEMU-SNP"].caveat.contains("firmware.json"));
    }
}
