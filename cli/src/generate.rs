//! `contrast generate`: makes the confidential workloads of Kubernetes YAML ready for
//! Contrast (runtime class, Initializer, service mesh, encrypted volumes), writes each
//! pod's Kata agent policy as an initdata annotation, and the manifest that lists them.
//!
//! Two passes over the documents: the first mutates and collects the images, which are
//! then resolved together (one progress bar, one registry round per image); the second
//! pins the images by digest and computes the policies from the final pod specs.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, bail};
use clap::Args;
use contrast_kube_resources::mutate::INITIALIZER_NAME;
use contrast_kube_resources::workload::is_confidential_runtime_class;
use contrast_kube_resources::{
    InjectedImages, Map, MutationOptions, Node, annotations, emit_documents, for_each_workload,
    mutate, parse_documents,
};
use contrast_manifest::{
    COORDINATOR_INITDATA_KEY, EmbeddedReferenceValues, ErrorKind, HexString, Manifest, PolicyEntry,
    ROLE_COORDINATOR,
};
use contrast_platforms::Platform;
use contrast_policy::{ImageConfig, PodInput};
use contrast_registry::{ResolvedImage, Resolver, ResolverOptions};
use contrast_seedengine::keys::{SeedshareOwnerKey, WorkloadOwnerKey};

use crate::coordinator::{WorkspaceArgs, files, write_public};
use crate::resources;

/// The reference values this build embeds, keyed by runtime handler (firmware-refs
/// `reference-values` writes this file).
const EMBEDDED_REFERENCE_VALUES: &[u8] =
    contrast_reference_values::EMBEDDED_REFERENCE_VALUES.as_bytes();

/// The embedded reference values, decoded.
pub(crate) fn embedded_reference_values() -> anyhow::Result<EmbeddedReferenceValues> {
    EmbeddedReferenceValues::decode(EMBEDDED_REFERENCE_VALUES)
        .context("the embedded reference values are broken (a build bug)")
}

/// The layers cache file (Contrast's name).
const LAYERS_CACHE: &str = "layers-cache.json";

/// The images this build injects: a release's by digest, a development build's by tag.
/// Replace them with `--image-replacements`.
pub(crate) fn default_images() -> anyhow::Result<InjectedImages> {
    injected_images_of(crate::bundle::embedded_release()?.as_ref())
}

fn injected_images_of(
    release: Option<&contrast_reference_values::Release>,
) -> anyhow::Result<InjectedImages> {
    let version = env!("CARGO_PKG_VERSION");
    let mut images = InjectedImages {
        initializer: format!("ghcr.io/contrast-rs/initializer:v{version}"),
        service_mesh: format!("ghcr.io/contrast-rs/service-mesh-proxy:v{version}"),
    };
    if let Some(release) = release {
        use contrast_reference_values::components::{INITIALIZER, SERVICE_MESH_PROXY};
        for (component, image) in [
            (INITIALIZER, &mut images.initializer),
            (SERVICE_MESH_PROXY, &mut images.service_mesh),
        ] {
            *image = crate::bundle::released(release, component)?;
        }
    }
    Ok(images)
}

/// `contrast generate` flags.
#[derive(Debug, Args)]
pub(crate) struct GenerateArgs {
    /// Set from the global `--workspace-dir`.
    #[arg(skip)]
    pub workspace: WorkspaceArgs,
    /// The platform whose reference values go into the manifest (e.g. metal-qemu-snp,
    /// sim-snp); its runtime handler replaces the runtimeClassName contrast-cc.
    #[arg(long = "reference-values", value_name = "PLATFORM")]
    pub reference_values: String,
    /// The manifest to create or update [default: manifest.json in the workspace].
    #[arg(short = 'm', long)]
    pub manifest: Option<PathBuf>,
    /// The image cache: resolved digests and image configs; makes a second run offline
    /// [default: layers-cache.json in the workspace].
    #[arg(short = 'c', long = "genpolicy-cache-path")]
    pub cache: Option<PathBuf>,
    /// Workload owner keys allowed to update the manifest: a private key (created when
    /// absent) or a public key (`PUBLIC KEY` PEM, for a key kept in an HSM or KMS)
    /// [default: workload-owner.pem in the workspace].
    #[arg(
        short = 'w',
        long = "add-workload-owner-key",
        conflicts_with = "disable_updates"
    )]
    pub workload_owner_keys: Vec<PathBuf>,
    /// Seed share owner keys that can recover the Coordinator (created when absent)
    /// [default: seedshare-owner.pem in the workspace].
    #[arg(long = "add-seedshare-owner-key")]
    pub seedshare_owner_keys: Vec<PathBuf>,
    /// Make the deployment immutable: no workload owner key in the manifest.
    #[arg(short = 'd', long)]
    pub disable_updates: bool,
    /// Do not inject the Initializer into any workload.
    #[arg(long)]
    pub skip_initializer: bool,
    /// Do not inject the service-mesh sidecar into any workload.
    #[arg(long)]
    pub skip_service_mesh: bool,
    /// Write all resources into this one file instead of editing the inputs in place.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// A file of `original=replacement` image lines (`#` starts a comment).
    #[arg(long)]
    pub image_replacements: Option<PathBuf>,
    /// Write the resolved digests into the YAML (`image: repo:tag@sha256:…`). Always done
    /// for confidential workloads, whose policies admit images only by digest; the flag is
    /// accepted for scripts that pass it.
    #[arg(long)]
    pub pin_images: bool,
    /// A registry (host[:port]) that may be reached over plain HTTP.
    #[arg(long = "insecure-registry")]
    pub insecure_registries: Vec<String>,
    /// Use only the image cache; an image missing from it is an error.
    #[arg(long, conflicts_with = "refresh_tags")]
    pub offline: bool,
    /// Ask the registries again for tags the cache already resolved (a moved tag is
    /// otherwise not noticed).
    #[arg(long)]
    pub refresh_tags: bool,
    /// Give each confidential pod the memory its VM needs as its pod-level limit
    /// (`spec.resources`): its images as the guest pulls them (each layer compressed and
    /// unpacked, once per image) plus its containers' limits, replacing a pod-level memory
    /// limit it had. Pulls the layers whose sizes the image cache lacks.
    #[arg(long)]
    pub calculate_pod_memory: bool,
    /// The Kubernetes YAML files or directories.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

/// One input file and its documents.
struct InputFile {
    path: PathBuf,
    documents: Vec<Node>,
    original: Vec<Node>,
}

/// What the summary says about one workload.
struct WorkloadSummary {
    name: String,
    namespace: String,
    policy_hash: String,
    features: Vec<String>,
}

pub(crate) async fn run(args: &GenerateArgs) -> anyhow::Result<()> {
    let platform: Platform = args
        .reference_values
        .parse()
        .map_err(|e| anyhow::anyhow!("--reference-values: {e}"))?;
    let embedded = embedded_reference_values()?;
    let handler = embedded.handler(platform).with_context(|| {
        format!("this build has no runtime for {platform}; build the image for it first")
    })?;

    let mut options = MutationOptions {
        runtime_handler: handler.to_string(),
        skip_initializer: args.skip_initializer,
        skip_service_mesh: args.skip_service_mesh,
        images: default_images()?,
        image_replacements: BTreeMap::new(),
    };
    if let Some(path) = &args.image_replacements {
        options.image_replacements = read_image_replacements(path)?;
    }

    // Read every YAML file; only those mentioning a confidential runtime class are
    // changed, but ConfigMaps and Secrets anywhere feed env references.
    let mut files = Vec::new();
    let mut config_maps = Vec::new();
    let mut secrets = Vec::new();
    for path in resources::yaml_files(&args.paths)? {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let documents = parse_documents(&text).with_context(|| path.display().to_string())?;
        let (maps, secs) = contrast_kube_resources::workload::config_inputs(&documents);
        config_maps.extend(maps);
        secrets.extend(secs);
        files.push(InputFile {
            path,
            original: documents.clone(),
            documents,
        });
    }

    // Pass 1: mutate, collect images.
    let mut images: Vec<String> = Vec::new();
    for file in &mut files {
        let path = file.path.display().to_string();
        for_each_workload(&mut file.documents, |mut workload| {
            if mutate(&mut workload, &options)?.is_some() {
                let spec = workload.pod_spec()?;
                images.extend(container_images(spec));
            }
            Ok::<(), anyhow::Error>(())
        })
        .with_context(|| path.clone())?;
    }
    images.sort();
    images.dedup();

    let (resolved, image_sizes) = resolve_images(args, &images).await?;

    // The manifest first: its reference values go into every workload's initdata.
    let manifest_path = args
        .workspace
        .resolve(args.manifest.as_deref(), files::MANIFEST);
    let mut manifest = load_or_create_manifest(&manifest_path, &embedded, platform)?;

    // Pass 2: pin, compute policies, annotate; the Coordinator first, since every
    // workload's initdata names the Coordinator's policy hash.
    let mut pass = PolicyPass {
        platform,
        resolved: &resolved,
        image_sizes: args.calculate_pod_memory.then_some(&image_sizes),
        config_maps: &config_maps,
        secrets: &secrets,
        data: BTreeMap::new(),
        policies: BTreeMap::new(),
        summaries: Vec::new(),
    };
    pass.run(&mut files, true)?;
    let coordinator_trust = Manifest {
        policies: pass.policies.clone(),
        reference_values: manifest.reference_values.clone(),
        ..Manifest::default()
    }
    .coordinator_trust();
    if let Some(trust) = &coordinator_trust {
        pass.data.insert(
            COORDINATOR_INITDATA_KEY.to_owned(),
            String::from_utf8_lossy(&trust.encode()).into_owned(),
        );
    }
    pass.run(&mut files, false)?;
    let PolicyPass {
        policies,
        summaries,
        ..
    } = pass;
    if summaries.is_empty() {
        bail!(
            "no workload with runtimeClassName contrast-cc in {}; add it to the pod specs \
             that should run confidentially",
            args.paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    manifest.policies = policies;
    add_owner_keys(args, &mut manifest)?;

    // Check before writing anything: a refused run leaves every file as it was.
    let errors = manifest.validate().err().unwrap_or_default();
    let no_coordinator = manifest.coordinator_policy_hashes().next().is_none();
    let blocking: Vec<String> = errors
        .invalid()
        .filter(|e| e.kind != ErrorKind::NoCoordinator)
        .map(ToString::to_string)
        .collect();
    if !blocking.is_empty() {
        bail!(
            "the manifest would not be valid, nothing was written:\n  - {}",
            blocking.join("\n  - ")
        );
    }
    write_resources(args, &files)?;
    write_public(&manifest_path, &manifest.encode())?;

    for summary in &summaries {
        crate::print(&format!(
            "✔ {} ({}): policy {}{}",
            summary.name,
            summary.namespace,
            &summary.policy_hash[..16],
            if summary.features.is_empty() {
                String::new()
            } else {
                format!(" [{}]", summary.features.join(", "))
            }
        ));
    }
    crate::print(&format!(
        "✔ wrote {} ({} policies, platform {platform})",
        manifest_path.display(),
        manifest.policies.len()
    ));
    if no_coordinator {
        crate::print(&format!(
            "! no Coordinator among the resources: add it (contrast coordinator --platform {} > \
             resources/coordinator.yml) and run generate again: without it, the Initializers \
             cannot attest the Coordinator and refuse to start",
            platform.name().to_ascii_lowercase()
        ));
    }
    let missing: Vec<String> = errors.expected_missing().map(ToString::to_string).collect();
    if !missing.is_empty() {
        crate::print(&format!(
            "! Please fill in the reference values for {platform} in {}:",
            manifest_path.display()
        ));
        for line in missing {
            crate::print(&format!("  - {line}"));
        }
    }
    Ok(())
}

/// Pass 2 over the confidential workloads: pins their images, computes their policies,
/// writes the initdata annotations, and collects the manifest's policy entries.
struct PolicyPass<'a> {
    /// The platform: its Kata runtime shapes the requests the policies admit.
    platform: Platform,
    resolved: &'a BTreeMap<String, ResolvedImage>,
    /// With `--calculate-pod-memory`: each image's compressed plus uncompressed size.
    image_sizes: Option<&'a BTreeMap<String, u64>>,
    config_maps: &'a [serde_json::Value],
    secrets: &'a [serde_json::Value],
    /// Further `[data]` entries of the workloads' initdata (the Coordinator's has none).
    data: BTreeMap<String, String>,
    policies: BTreeMap<HexString, PolicyEntry>,
    summaries: Vec<WorkloadSummary>,
}

impl PolicyPass<'_> {
    /// Handles the Coordinator's workloads (`coordinators`) or the others.
    fn run(&mut self, files: &mut [InputFile], coordinators: bool) -> anyhow::Result<()> {
        for file in files {
            let path = file.path.display().to_string();
            for_each_workload(&mut file.documents, |mut workload| {
                let Some(class) = workload.runtime_class_name() else {
                    return Ok(());
                };
                if !is_confidential_runtime_class(&class) {
                    return Ok(());
                }
                let role = workload
                    .annotation(annotations::POD_ROLE)
                    .unwrap_or_default();
                let is_coordinator = role == ROLE_COORDINATOR;
                if is_coordinator != coordinators {
                    return Ok(());
                }
                self.workload(&mut workload, role, is_coordinator)
            })
            .with_context(|| path.clone())?;
        }
        Ok(())
    }

    fn workload(
        &mut self,
        workload: &mut contrast_kube_resources::workload::Workload<'_>,
        role: String,
        is_coordinator: bool,
    ) -> anyhow::Result<()> {
        let resource = workload.display_name();
        let name = workload.name.clone();
        let generated_name = workload.generated_name;
        let namespace = workload.namespace.clone();
        // Without a namespace in the resource the policy admits the one it is applied to.
        let policy_namespace = if workload.namespace_given {
            namespace.clone()
        } else {
            String::new()
        };
        let secret_id = workload
            .annotation(annotations::WORKLOAD_SECRET_ID)
            .unwrap_or_else(|| workload.default_workload_secret_id());
        let claim_templates = claim_template_names(workload.object);
        let spec = workload.pod_spec()?;
        let pod_memory = match self.image_sizes {
            Some(sizes) => Some(
                set_pod_memory(spec, sizes)
                    .with_context(|| format!("{resource}: --calculate-pod-memory"))?,
            ),
            None => None,
        };
        // The policy admits an image only by digest, so the pod must name it by digest
        // too: pinning is not optional for confidential workloads.
        pin_images(spec, self.resolved);
        let image_configs = image_configs(spec, self.resolved);
        let mut features: Vec<String> = features(spec).into_iter().map(str::to_owned).collect();
        if let Some(bytes) = pod_memory {
            features.push(format!("pod memory {} MiB", bytes.div_ceil(1 << 20)));
        }
        let spec_json = pod_spec_as_created(spec, &claim_templates);
        let labels = template_labels(workload)?;
        let input = PodInput {
            generate_name: generated_name,
            name: &name,
            namespace: &policy_namespace,
            pod_spec: &spec_json,
            labels: &labels,
            runtime: self.platform.kata_runtime(),
            images: &image_configs,
            config_maps: self.config_maps,
            secrets: self.secrets,
        };
        let rego = contrast_policy::policy_rego(&input)
            .with_context(|| format!("{resource}: generating its policy"))?;
        // The Coordinator's own initdata cannot name its own hash.
        let initdata = if is_coordinator {
            contrast_policy::initdata(&rego)
        } else {
            contrast_policy::initdata_with_data(&rego, &self.data)?
        };
        let template = workload.pod_template()?;
        set_policy_annotation(template, &initdata.annotation_value());
        let hash = HexString::from_bytes(&initdata.policy_hash());
        let entry = PolicyEntry {
            sans: Some(vec![name.clone(), "*".to_owned()]),
            workload_secret_id: secret_id,
            role,
            ..PolicyEntry::default()
        };
        match self.policies.get(&hash) {
            Some(existing) if existing.sans == entry.sans => bail!(
                "{resource}: policy hash collision: another workload named {name:?} has the \
                 same policy; give one of them a different name or namespace"
            ),
            Some(_) => {
                tracing::warn!("{resource}: same policy as another workload; it shares that entry");
            }
            None => {
                self.policies.insert(hash.clone(), entry);
            }
        }
        self.summaries.push(WorkloadSummary {
            name: resource,
            namespace,
            policy_hash: hash.as_str().to_owned(),
            features,
        });
        Ok(())
    }
}

fn read_image_replacements(path: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --image-replacements {}", path.display()))?;
    let mut out = BTreeMap::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let Some((from, to)) = line.split_once('=') else {
            bail!(
                "{}:{}: expected original=replacement, got {line:?}",
                path.display(),
                number + 1
            );
        };
        let (from, to) = (from.trim(), to.trim());
        if from.is_empty() || to.is_empty() {
            bail!(
                "{}:{}: both sides of '=' must name an image",
                path.display(),
                number + 1
            );
        }
        out.insert(from.to_owned(), to.to_owned());
    }
    Ok(out)
}

/// Every container of a pod spec (init, app, ephemeral).
fn containers(spec: &Map) -> impl Iterator<Item = &Map> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .filter_map(|key| spec.get(key).and_then(Node::as_seq))
        .flatten()
        .filter_map(Node::as_map)
}

fn container_images(spec: &Map) -> Vec<String> {
    containers(spec)
        .filter_map(|c| c.str("image").map(str::to_owned))
        .collect()
}

/// Resolves `images`; with `--calculate-pod-memory`, also each one's compressed plus
/// uncompressed layer sizes.
async fn resolve_images(
    args: &GenerateArgs,
    images: &[String],
) -> anyhow::Result<(BTreeMap<String, ResolvedImage>, BTreeMap<String, u64>)> {
    let resolver = Resolver::new(ResolverOptions {
        cache_path: Some(args.workspace.resolve(args.cache.as_deref(), LAYERS_CACHE)),
        insecure_registries: args.insecure_registries.clone(),
        docker_config_dir: None,
        offline: args.offline,
        refresh_tags: args.refresh_tags,
        platform: ("linux".to_owned(), "amd64".to_owned()),
        concurrency: 8,
        // The host's own trust store.
        root_certificates: None,
        // The Docker config's credentials: the CLI runs on the user's machine.
        puller_config: None,
    })?;
    let show_progress = std::io::stderr().is_terminal();
    let last = AtomicUsize::new(usize::MAX);
    let results = resolver
        .resolve_all(images, |done, total| {
            if show_progress && last.swap(done, Ordering::Relaxed) != done {
                progress_bar(done, total);
            }
        })
        .await;
    if show_progress && !images.is_empty() {
        eprintln_line("");
    }
    let mut resolved = BTreeMap::new();
    let mut errors = Vec::new();
    for (image, result) in results {
        match result {
            Ok(r) => {
                resolved.insert(image, r);
            }
            Err(e) => errors.push(format!("  - {e}")),
        }
    }
    if !errors.is_empty() {
        resolver.save_cache()?;
        bail!(
            "cannot resolve {} image(s):\n{}",
            errors.len(),
            errors.join("\n")
        );
    }
    let mut sizes = BTreeMap::new();
    if args.calculate_pod_memory {
        for (image, found) in &resolved {
            let layers = match resolver.layer_sizes(&found.pinned, found).await {
                Ok(layers) => layers,
                Err(e) => {
                    // What was measured before the failure is kept for the next run.
                    resolver.save_cache()?;
                    return Err(anyhow::Error::new(e).context(format!(
                        "--calculate-pod-memory: the layer sizes of {image}"
                    )));
                }
            };
            let total = layers
                .iter()
                .map(|l| l.compressed.saturating_add(l.uncompressed))
                .fold(0u64, u64::saturating_add);
            sizes.insert(image.clone(), total);
        }
    }
    resolver.save_cache()?;
    Ok((resolved, sizes))
}

/// Sets the pod-level memory limit and request of `spec` to what its VM needs (see
/// `contrast_kube_resources::memory`), in bytes; returns the bytes.
fn set_pod_memory(spec: &mut Map, image_sizes: &BTreeMap<String, u64>) -> anyhow::Result<u64> {
    let bytes =
        contrast_kube_resources::memory::pod_memory(spec, |image| image_sizes.get(image).copied())?;
    // In bytes, as Contrast writes it: the pod's VM is sized to the byte.
    let quantity = bytes.to_string();
    for name in ["limits", "requests"] {
        spec.map_entry("resources")
            .and_then(|resources| resources.map_entry(name))
            .with_context(|| format!("spec.resources.{name} is not a mapping"))?
            .insert("memory", Node::str(quantity.clone()));
    }
    Ok(bytes)
}

#[allow(clippy::print_stderr)] // the progress bar of an interactive run
fn progress_bar(done: usize, total: usize) {
    let width = 30;
    let filled = (done * width)
        .checked_div(total)
        .unwrap_or(width)
        .min(width);
    eprint!(
        "\rresolving images [{}{}] {done}/{total}",
        "#".repeat(filled),
        " ".repeat(width - filled)
    );
}

#[allow(clippy::print_stderr)]
fn eprintln_line(text: &str) {
    eprintln!("{text}");
}

fn pin_images(spec: &mut Map, resolved: &BTreeMap<String, ResolvedImage>) {
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(list) = spec.get_mut(key).and_then(Node::as_seq_mut) else {
            continue;
        };
        for container in list.iter_mut().filter_map(Node::as_map_mut) {
            if let Some(r) = container.str("image").and_then(|i| resolved.get(i)) {
                container.insert("image", Node::str(&r.pinned));
            }
        }
    }
}

/// The image configs of a pod's containers, keyed by the image string in the spec.
fn image_configs(
    spec: &Map,
    resolved: &BTreeMap<String, ResolvedImage>,
) -> BTreeMap<String, ImageConfig> {
    let by_pinned: BTreeMap<&str, &ResolvedImage> =
        resolved.values().map(|r| (r.pinned.as_str(), r)).collect();
    let mut out = BTreeMap::new();
    for image in container_images(spec) {
        let Some(r) = resolved
            .get(&image)
            .or_else(|| by_pinned.get(image.as_str()).copied())
        else {
            continue;
        };
        out.insert(
            image,
            ImageConfig {
                digest: r.digest.clone(),
                env: r.config.env.clone(),
                entrypoint: r.config.entrypoint.clone().unwrap_or_default(),
                cmd: r.config.cmd.clone().unwrap_or_default(),
                working_dir: r.config.working_dir.clone().unwrap_or_default(),
                user: r.config.user.clone().unwrap_or_default(),
                volumes: r.config.volumes.clone(),
            },
        );
    }
    out
}

fn features(spec: &Map) -> Vec<&'static str> {
    let mut out = Vec::new();
    let init: Vec<&Map> = spec
        .get("initContainers")
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter_map(Node::as_map)
        .collect();
    if let Some(initializer) = init
        .iter()
        .find(|c| c.str("name") == Some(INITIALIZER_NAME))
    {
        out.push("initializer");
        if initializer.get("volumeDevices").is_some() {
            out.push("secure-pv");
        }
    }
    if init
        .iter()
        .any(|c| c.str("name") == Some(contrast_kube_resources::mutate::SERVICE_MESH_NAME))
    {
        out.push("service mesh");
    }
    out
}

/// The names of a StatefulSet's volumeClaimTemplates.
fn claim_template_names(object: &Map) -> Vec<String> {
    object
        .get("spec")
        .and_then(Node::as_map)
        .and_then(|spec| spec.get("volumeClaimTemplates"))
        .and_then(Node::as_seq)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t.as_map()?.get("metadata")?.as_map()?.str("name"))
        .map(str::to_owned)
        .collect()
}

/// The pod spec as the pod will have it: a StatefulSet's controller adds one PVC volume
/// per claim template, which the policy must know about.
fn pod_spec_as_created(spec: &Map, claim_templates: &[String]) -> serde_json::Value {
    let mut json = Node::Map(spec.clone()).to_json();
    if claim_templates.is_empty() {
        return json;
    }
    if let Some(object) = json.as_object_mut() {
        let volumes = object
            .entry("volumes")
            .or_insert_with(|| serde_json::Value::Array(Vec::new()));
        if let Some(volumes) = volumes.as_array_mut() {
            for name in claim_templates {
                if !volumes.iter().any(|v| v["name"] == name.as_str()) {
                    volumes.push(serde_json::json!({
                        "name": name,
                        "persistentVolumeClaim": {"claimName": name},
                    }));
                }
            }
        }
    }
    json
}

fn set_policy_annotation(template: &mut Map, value: &str) {
    if let Some(metadata) = template.map_entry("metadata")
        && let Some(annotations) = metadata.map_entry("annotations")
    {
        annotations.insert(contrast_initdata::INITDATA_ANNOTATION, Node::str(value));
    }
}

fn load_or_create_manifest(
    path: &Path,
    embedded: &EmbeddedReferenceValues,
    platform: Platform,
) -> anyhow::Result<Manifest> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let manifest = Manifest::decode(&bytes).with_context(|| {
                format!(
                    "{}: not a valid manifest; fix it or remove it to start anew",
                    path.display()
                )
            })?;
            Ok(manifest)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let reference_values = embedded
                .for_platforms(&[platform])
                .map_err(|p| anyhow::anyhow!("this build has no reference values for {p}"))?;
            Ok(Manifest {
                reference_values,
                ..Manifest::default()
            })
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The owner key files: those given, as given; else the default one in the workspace.
fn owner_key_paths(args: &GenerateArgs, given: &[PathBuf], default: &str) -> Vec<PathBuf> {
    if given.is_empty() {
        vec![args.workspace.path(default)]
    } else {
        given.to_vec()
    }
}

/// Creates missing owner keys (0600) and lists them in the manifest, sorted and
/// deduplicated; keys already listed stay.
fn add_owner_keys(args: &GenerateArgs, manifest: &mut Manifest) -> anyhow::Result<()> {
    if !args.disable_updates {
        let mut digests: Vec<HexString> = manifest
            .workload_owner_key_digests
            .clone()
            .unwrap_or_default();
        for path in owner_key_paths(args, &args.workload_owner_keys, files::WORKLOAD_OWNER_KEY) {
            // A private key, or (an HSM's or KMS's) public key only.
            let public_key_der = match std::fs::read(&path) {
                Ok(pem) => contrast_seedengine::keys::workload_owner_public_key_der(&pem)
                    .with_context(|| {
                        format!(
                            "{}: neither a P-384 private key nor a P-384 PUBLIC KEY",
                            path.display()
                        )
                    })?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    let key = WorkloadOwnerKey::generate()?;
                    contrast_atomic_file::write(&path, key.to_pem()?.as_bytes(), 0o600)
                        .with_context(|| format!("writing {}", path.display()))?;
                    key.public_key_der().to_vec()
                }
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            digests.push(HexString(
                contrast_seedengine::keys::workload_owner_key_digest_hex(&public_key_der),
            ));
        }
        digests.sort_by(|a, b| a.0.cmp(&b.0));
        digests.dedup();
        manifest.workload_owner_key_digests = Some(digests);
    } else {
        manifest.workload_owner_key_digests = None;
    }
    let mut keys: Vec<HexString> = manifest
        .seedshare_owner_pub_keys
        .clone()
        .unwrap_or_default();
    for path in owner_key_paths(args, &args.seedshare_owner_keys, files::SEEDSHARE_OWNER_KEY) {
        let public = match std::fs::read(&path) {
            Ok(pem) => contrast_seedengine::keys::seedshare_owner_public_key_hex(&pem)
                .with_context(|| format!("{}: not an RSA key", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SeedshareOwnerKey::generate()?;
                contrast_atomic_file::write(&path, key.to_pem()?.as_bytes(), 0o600)
                    .with_context(|| format!("writing {}", path.display()))?;
                key.public_key_hex()
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        keys.push(HexString(public));
    }
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    keys.dedup();
    manifest.seedshare_owner_pub_keys = Some(keys);
    Ok(())
}

/// Writes changed files in place, or everything into `--output`.
fn write_resources(args: &GenerateArgs, files: &[InputFile]) -> anyhow::Result<()> {
    if let Some(output) = &args.output {
        let all: Vec<Node> = files.iter().flat_map(|f| f.documents.clone()).collect();
        return write_public(output, emit_documents(&all).as_bytes());
    }
    for file in files {
        if file.documents != file.original {
            // In place: the file keeps its permissions.
            let mode = std::fs::metadata(&file.path)
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
                .unwrap_or(0o644);
            contrast_atomic_file::write(
                &file.path,
                emit_documents(&file.documents).as_bytes(),
                mode,
            )
            .with_context(|| format!("writing {}", file.path.display()))?;
        }
    }
    Ok(())
}

/// The pod template's `metadata.labels` (string values; others are not labels Kubernetes
/// accepts and are left out).
fn template_labels(
    workload: &mut contrast_kube_resources::workload::Workload<'_>,
) -> anyhow::Result<BTreeMap<String, String>> {
    let template = workload.pod_template()?;
    let labels = template
        .get("metadata")
        .and_then(|m| m.as_map())
        .and_then(|m| m.get("labels"))
        .and_then(|l| l.as_map());
    Ok(labels
        .map(|l| {
            l.iter()
                .filter_map(|(k, v)| Some((k.to_owned(), v.as_str()?.to_owned())))
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_release_injects_its_initializer_and_mesh_proxy_by_digest() {
        let initializer = "r.example/contrast/initializer@sha256:01";
        let mesh = "r.example/contrast/service-mesh-proxy@sha256:02";
        let release = contrast_reference_values::Release {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            images: [
                ("initializer".to_owned(), initializer.to_owned()),
                ("service-mesh-proxy".to_owned(), mesh.to_owned()),
            ]
            .into(),
            platforms: Default::default(),
        };
        let images = injected_images_of(Some(&release)).unwrap();
        assert_eq!(images.initializer, initializer);
        assert_eq!(images.service_mesh, mesh);
        let development = injected_images_of(None).unwrap();
        assert!(development.initializer.contains("/initializer:v"));
    }
}
