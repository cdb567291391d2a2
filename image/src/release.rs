//! A release's container images: the Coordinator, the Initializer, the service-mesh proxy
//! and the port-forwarder as reproducible OCI images ([`crate::oci`]) of the shipped binaries, written as
//! an OCI layout and pushed to a registry with our registry client; `release.json` names
//! each by digest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::ImageError;
use contrast_platforms::{RuntimeHandler, Tee};
use contrast_reference_values::components::{
    COORDINATOR, INITIALIZER, PORT_FORWARDER, SERVICE_MESH_PROXY,
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
    /// The user it runs as (`uid:gid`): root where it changes the pod VM's packet filter.
    pub user: &'static str,
}

/// The images a release builds.
pub const COMPONENTS: [Component; 4] = [
    Component {
        name: COORDINATOR,
        program: "coordinator",
        iptables: true,
        ca_certificates: true,
        user: "0:0",
    },
    Component {
        name: INITIALIZER,
        program: "initializer",
        iptables: true,
        ca_certificates: false,
        user: "0:0",
    },
    Component {
        name: SERVICE_MESH_PROXY,
        program: "service-mesh",
        iptables: true,
        ca_certificates: false,
        user: "0:0",
    },
    Component {
        name: PORT_FORWARDER,
        program: "port-forwarder",
        iptables: false,
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
    let mut images = Vec::new();
    for component in &COMPONENTS {
        images.push((
            component.name,
            component_image(component, &config.binaries, &scratch)?,
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
            Some(path) => platforms(path)?,
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
/// deployed on. None may yet: the node installer ships no firmware, and the SNP launch
/// digest is computed with a stand-in OVMF.
fn platforms(path: &Path) -> Result<BTreeMap<String, ReleasePlatform>, ImageError> {
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
        let caveat = if platform.is_simulated() {
            "a simulated platform: for tests and the quickstart only"
        } else {
            match platform.tee() {
                Tee::Snp => {
                    "the launch digest is computed with the sev crate's AmdSev OVMF fixture (a \
                     stand-in: Debian ships no OVMF with the SEV kernel-hashes table), and the \
                     node installer ships no firmware yet"
                }
                Tee::Tdx => {
                    "MRTD is computed with Debian's OVMF.fd, and the node installer ships no \
                     firmware yet, so a node's TDVF may differ"
                }
            }
        };
        platforms.insert(
            platform.name().to_owned(),
            ReleasePlatform {
                runtime_handler: handler,
                reference_values,
                production: false,
                caveat: caveat.to_owned(),
            },
        );
    }
    Ok(platforms)
}
