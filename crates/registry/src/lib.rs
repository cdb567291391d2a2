//! Resolves container image references to digests and image configs from OCI registries,
//! with a cache that makes repeated runs offline.
//!
//! [`Resolver::resolve`] parses a reference with Docker's rules ([`ImageReference`]),
//! answers from the cache file if it can, and otherwise asks the registry (OCI
//! distribution API through `oci-client`, HTTPS on rustls with aws-lc-rs; plain HTTP only
//! for registries listed in [`ResolverOptions::insecure_registries`]; credentials from the
//! Docker config's `auths`, or in the guest from the image puller config
//! ([`PullerConfig`]), which also sets a registry's trust anchors).
//!
//! # Which digest
//! [`ResolvedImage::digest`] is the digest of the manifest the reference names: for a
//! multi-platform image, the **image index**. That is what `--pin-images` writes, what
//! registries and `docker buildx imagetools` show, and what stays valid on every platform;
//! containerd and the guest's image pull fetch the index by that digest and choose the
//! platform manifest from it — the same choice this crate makes for
//! [`ResolverOptions::platform`]. Since the index is hashed, the platform manifest it names
//! is as fixed as the index itself. [`ResolvedImage::manifest_digest`] is the platform's
//! image manifest (equal to `digest` for a single-platform image), and the config is that
//! manifest's config.
//!
//! # Trust
//! The registry is untrusted: every manifest, index and config is hashed and compared with
//! the digest it was asked for, and a mismatch is an error. What a *tag* points to is taken
//! from the registry (and then from the cache) as it is: pin images by digest to fix them.
//!
//! # Cache
//! See [`cache`] for the file format. Content is filed under its digest and
//! re-hashed on every read, so an edited cache entry is ignored, not believed. A tag keeps
//! the digest it had when it was first resolved until the entry is removed from the file
//! or [`ResolverOptions::refresh_tags`] is set — a tag moved in the registry is not
//! noticed otherwise (genpolicy's cache behaves the same).
//!
//! # Not supported
//! Credential helpers (`credHelpers`, `credsStore`) and `identitytoken` entries of the Docker
//! config, HTTP proxies other than the image puller config's `[extra-env]`, Docker schema 1
//! manifests, digests other than SHA-256, and zstd layers.
//!
//! # Pulling
//! [`Resolver::pull`] (the guest's image pull) takes only references pinned by digest,
//! resolves them as above, then downloads each layer, hashes it against its digest (and
//! oci-client checks the stream too) and applies it with [`layer::apply`].

pub mod cache;
mod docker_config;
mod error;
pub mod layer;
mod local_files;
mod manifest;
mod puller_config;
mod reference;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;

use crate::cache::Cache;
use crate::docker_config::{DockerConfig, Lookup};
use crate::manifest::{
    ImageBlobs, MANIFEST_MEDIA_TYPES, MAX_CONFIG_SIZE, Manifest, Platform, Problem, Resolved,
    assemble, check_config_descriptor, parse_manifest, select_platform, sha256_digest,
};
use crate::puller_config::Proxies;
pub use crate::puller_config::{MAX_PULLER_CONFIG_SIZE, PullerConfig};

pub use crate::cache::CACHE_VERSION;
pub use crate::error::RegistryError;
pub use crate::manifest::{
    ImageConfigInfo, LayerInfo, OCI_CONFIG, OCI_INDEX, OCI_LAYER_GZIP, OCI_MANIFEST,
};
pub use crate::reference::{DEFAULT_TAG, DOCKER_HUB, ImageReference};

/// Time allowed to establish a connection to a registry.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Time allowed between two reads from a registry.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// The User-Agent sent to registries.
const USER_AGENT: &str = concat!("contrast-registry/", env!("CARGO_PKG_VERSION"));

/// How a [`Resolver`] works.
#[derive(Debug, Clone)]
pub struct ResolverOptions {
    /// The cache file (`layers-cache.json`); `None`: no cache.
    pub cache_path: Option<PathBuf>,
    /// Registries (`host[:port]`, as in the image reference) reached over plain HTTP
    /// (`--insecure-registry`). All others are HTTPS with certificate checks; this list
    /// never disables those.
    pub insecure_registries: Vec<String>,
    /// The directory of the Docker `config.json`; `None`: `$DOCKER_CONFIG`, else
    /// `~/.docker`. Only `auths` is read (see the crate documentation).
    pub docker_config_dir: Option<PathBuf>,
    /// Answer from the cache only; an image not in it is an error naming it.
    pub offline: bool,
    /// Ask the registry again for tags (digest references still come from the cache).
    /// Cannot be combined with `offline`.
    pub refresh_tags: bool,
    /// The platform chosen from an image index: `(os, architecture)`, e.g.
    /// `("linux", "amd64")`; the architecture may carry a variant (`"arm64/v8"`).
    pub platform: (String, String),
    /// At most this many images are resolved at the same time by
    /// [`Resolver::resolve_all`]; at least 1.
    pub concurrency: usize,
    /// A PEM bundle whose certificates are the only trust anchors for HTTPS registries;
    /// `None`: the system's (the platform verifier). The guest uses its image's bundle.
    pub root_certificates: Option<PathBuf>,
    /// Credentials and per-registry trust from an image puller config (the guest's pulls);
    /// when set, no Docker config is read.
    pub puller_config: Option<PullerConfig>,
}

impl Default for ResolverOptions {
    /// No cache, no insecure registries, the default Docker config, online, `linux/amd64`,
    /// 4 at a time.
    fn default() -> Self {
        ResolverOptions {
            cache_path: None,
            insecure_registries: Vec::new(),
            docker_config_dir: None,
            offline: false,
            refresh_tags: false,
            platform: ("linux".to_owned(), "amd64".to_owned()),
            concurrency: 4,
            root_certificates: None,
            puller_config: None,
        }
    }
}

/// An image reference resolved to digests and its image config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedImage {
    /// The normalized reference (`docker.io/library/nginx:1.27`, with `@digest` if one was
    /// written).
    pub reference: String,
    /// The reference as written with `@digest` (replacing a digest that was there; the
    /// tag stays): what `--pin-images` writes.
    pub pinned: String,
    /// The digest of the manifest the reference names (the image index for a
    /// multi-platform image); see the crate documentation.
    pub digest: String,
    /// The digest of the platform's image manifest; equal to `digest` unless `is_index`.
    pub manifest_digest: String,
    /// Whether the reference names an image index (manifest list).
    pub is_index: bool,
    /// The layers of the platform's image manifest.
    pub layers: Vec<LayerInfo>,
    /// The image config of the platform's image manifest.
    pub config: ImageConfigInfo,
}

/// A layer of `image` that could not be applied or measured.
fn layer_error(image: &str, layer: &LayerInfo, e: &layer::LayerError) -> RegistryError {
    RegistryError::Layer {
        image: image.to_owned(),
        digest: layer.digest.clone(),
        detail: contrast_platforms::error_chain(e),
    }
}

/// A layer's sizes ([`Resolver::layer_sizes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSize {
    /// The layer's digest.
    pub digest: String,
    /// Its size as stored in the registry (the manifest's word, checked on pull).
    pub compressed: u64,
    /// Its size as a tar stream.
    pub uncompressed: u64,
}

/// An image pulled into a root file system ([`Resolver::pull`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The image as resolved: digests, layers and config.
    pub image: ResolvedImage,
    /// What each layer did, in order.
    pub layers: Vec<layer::LayerStats>,
}

/// Where a resolver's credentials come from.
#[derive(Debug)]
enum CredentialSource {
    /// A Docker config's `auths` (the CLI, the build tools).
    DockerConfig(DockerConfig),
    /// The image puller config (the guest).
    Puller(PullerConfig),
}

impl CredentialSource {
    fn path_display(&self) -> String {
        match self {
            CredentialSource::DockerConfig(config) => config.path_display(),
            CredentialSource::Puller(config) => config.path().to_owned(),
        }
    }
}

/// Resolves image references; see the crate documentation.
pub struct Resolver {
    client: oci_client::Client,
    /// Clients for registries with TLS settings of their own in the image puller config,
    /// by the index of their rule.
    registry_clients: Vec<(usize, oci_client::Client)>,
    credentials: CredentialSource,
    cache: Cache,
    platform: Platform,
    insecure_registries: Vec<String>,
    offline: bool,
    refresh_tags: bool,
    concurrency: usize,
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("cache", &self.cache.path())
            .field("credentials", &self.credentials.path_display())
            .field("platform", &self.platform.to_string())
            .field("insecure_registries", &self.insecure_registries)
            .field("offline", &self.offline)
            .field("refresh_tags", &self.refresh_tags)
            .field("concurrency", &self.concurrency)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Builds a resolver: checks the options, reads the Docker config (not when offline),
    /// and loads the cache (an unusable cache file is warned about and ignored).
    pub fn new(options: ResolverOptions) -> Result<Resolver, RegistryError> {
        if options.concurrency == 0 {
            return Err(RegistryError::InvalidOptions(
                "concurrency is 0; it must be at least 1".to_owned(),
            ));
        }
        if options.offline && options.refresh_tags {
            return Err(RegistryError::InvalidOptions(
                "refreshing tags needs the registries; it cannot be combined with offline mode"
                    .to_owned(),
            ));
        }
        let platform = Platform::from_option(&options.platform.0, &options.platform.1)
            .map_err(RegistryError::InvalidOptions)?;
        let mut insecure_registries = Vec::new();
        for entry in &options.insecure_registries {
            let valid = !entry.is_empty()
                && !entry.contains('/')
                && ImageReference::parse(&format!("{entry}/x"))
                    .is_ok_and(|r| r.registry() == entry || entry == "index.docker.io");
            if !valid {
                return Err(RegistryError::InvalidOptions(format!(
                    "insecure registry {entry:?} is not host[:port] as written in image references (e.g. 127.0.0.1:5000, no scheme or path)"
                )));
            }
            insecure_registries.push(entry.clone());
            // oci-client addresses Docker Hub as index.docker.io.
            if entry == DOCKER_HUB {
                insecure_registries.push("index.docker.io".to_owned());
            }
        }
        let tls_certs_only = match &options.root_certificates {
            Some(path) => root_certificates(path)?,
            None => Vec::new(),
        };
        let no_proxies = Proxies::default();
        let proxies = options
            .puller_config
            .as_ref()
            .map_or(&no_proxies, PullerConfig::proxies);
        let client = http_client(&insecure_registries, tls_certs_only, false, proxies)?;
        let mut registry_clients = Vec::new();
        let credentials = match options.puller_config {
            Some(puller) => {
                for (index, settings) in puller.tls_rules() {
                    let client = http_client(
                        &insecure_registries,
                        settings.ca_certificates.clone().unwrap_or_default(),
                        settings.insecure_skip_verify,
                        puller.proxies(),
                    )?;
                    registry_clients.push((index, client));
                }
                CredentialSource::Puller(puller)
            }
            None if options.offline => CredentialSource::DockerConfig(DockerConfig::default()),
            None => CredentialSource::DockerConfig(DockerConfig::load(
                options.docker_config_dir.as_deref(),
            )?),
        };
        Ok(Resolver {
            client,
            registry_clients,
            credentials,
            cache: Cache::load(options.cache_path),
            platform,
            insecure_registries,
            offline: options.offline,
            refresh_tags: options.refresh_tags,
            concurrency: options.concurrency,
        })
    }

    /// Pulls the image `reference` names, which must be pinned by digest, into `root` (an
    /// empty directory): the manifest (and platform manifest) and config hashed as in
    /// [`Resolver::resolve`], then each layer downloaded, hashed against its digest and
    /// applied in order ([`layer::apply`]). Nothing unverified reaches `root`.
    pub async fn pull(
        &self,
        reference: &str,
        root: &std::path::Path,
    ) -> Result<PulledImage, RegistryError> {
        let parsed = ImageReference::parse(reference)?;
        if parsed.digest().is_none() {
            return Err(RegistryError::NotPinned {
                image: reference.to_owned(),
            });
        }
        let image = self.resolve(reference).await?;
        let mut ctx = self.context(&parsed);
        let auth = self.auth(&mut ctx)?;
        let mut layers = Vec::with_capacity(image.layers.len());
        let mut authenticated = false;
        for layer in &image.layers {
            let by_digest = self
                .layer_reference(&parsed, layer, &auth, &ctx, &mut authenticated)
                .await?;
            let blob = self
                .pull_blob(&by_digest, &layer.digest, layer.size, &ctx, "layer")
                .await?;
            let stats = layer::apply(root, &layer.media_type, &blob)
                .map_err(|e| layer_error(reference, layer, &e))?;
            tracing::debug!(image = reference, layer = %layer.digest, ?stats, "layer applied");
            layers.push(stats);
        }
        Ok(PulledImage { image, layers })
    }

    /// The sizes of `image`'s layers (resolved from `reference`): as stored (the
    /// manifest's) and uncompressed. An uncompressed size not in the cache is measured by
    /// pulling the layer (checked against its digest) and decompressing it, then cached.
    pub async fn layer_sizes(
        &self,
        reference: &str,
        image: &ResolvedImage,
    ) -> Result<Vec<LayerSize>, RegistryError> {
        let parsed = ImageReference::parse(reference)?;
        let mut ctx = self.context(&parsed);
        let auth = self.auth(&mut ctx)?;
        let mut sizes = Vec::with_capacity(image.layers.len());
        let mut authenticated = false;
        for layer in &image.layers {
            let uncompressed = match self.cache.layer_size(&layer.digest) {
                Some(size) => size,
                None if self.offline => {
                    return Err(RegistryError::NotCached {
                        image: reference.to_owned(),
                        registry: parsed.registry().to_owned(),
                        cache: self.cache.path().map(|p| p.display().to_string()),
                        reason: format!("the size of its layer {} is not", layer.digest),
                    });
                }
                None => {
                    let by_digest = self
                        .layer_reference(&parsed, layer, &auth, &ctx, &mut authenticated)
                        .await?;
                    let size = self
                        .measure_blob(&by_digest, layer, &ctx)
                        .await?
                        .map_err(|e| layer_error(reference, layer, &e))?;
                    self.cache.insert_layer_size(&layer.digest, size);
                    size
                }
            };
            sizes.push(LayerSize {
                digest: layer.digest.clone(),
                compressed: layer.size,
                uncompressed,
            });
        }
        Ok(sizes)
    }

    /// Resolves one reference: from the cache if it has it, else from the registry (and
    /// then records it in the cache in memory; [`Resolver::save_cache`] writes it).
    pub async fn resolve(&self, reference: &str) -> Result<ResolvedImage, RegistryError> {
        let parsed = ImageReference::parse(reference)?;
        let resolved = self.resolve_parsed(&parsed).await?;
        Ok(finish(&parsed, &resolved))
    }

    /// Resolves many references, each distinct one once (references naming the same
    /// content, like `nginx` and `docker.io/library/nginx:latest`, share one resolution),
    /// at most [`ResolverOptions::concurrency`] at a time. Returns one result per distinct
    /// input string, in the order of first appearance. `progress(done, total)` is called
    /// with 0 first and after every finished resolution; `total` counts distinct contents.
    pub async fn resolve_all(
        &self,
        references: &[String],
        progress: impl Fn(usize, usize) + Send + Sync,
    ) -> Vec<(String, Result<ResolvedImage, RegistryError>)> {
        let mut seen = HashSet::new();
        let inputs: Vec<&String> = references
            .iter()
            .filter(|r| seen.insert(r.as_str()))
            .collect();
        let parsed: Vec<Result<ImageReference, RegistryError>> =
            inputs.iter().map(|r| ImageReference::parse(r)).collect();

        let mut jobs: Vec<&ImageReference> = Vec::new();
        let mut job_of_key: HashMap<String, usize> = HashMap::new();
        for reference in parsed.iter().flatten() {
            job_of_key
                .entry(reference.content_key())
                .or_insert_with(|| {
                    jobs.push(reference);
                    jobs.len() - 1
                });
        }

        let total = jobs.len();
        progress(0, total);
        let mut results: Vec<Option<Result<Resolved, RegistryError>>> = vec![None; total];
        // The futures are built by a named async fn, not a closure in the stream: that keeps
        // the whole future `Send` (closures here hit higher-ranked lifetime limits).
        let pending: Vec<_> = jobs
            .iter()
            .enumerate()
            .map(|(index, reference)| self.resolve_job(index, reference))
            .collect();
        let mut running = futures_util::stream::iter(pending).buffer_unordered(self.concurrency);
        let mut done = 0;
        while let Some((index, result)) = running.next().await {
            results[index] = Some(result);
            done += 1;
            progress(done, total);
        }
        drop(running);

        inputs
            .into_iter()
            .zip(parsed)
            .map(|(input, parsed)| {
                let result = parsed.and_then(|reference| {
                    let job = job_of_key
                        .get(&reference.content_key())
                        .and_then(|&index| results.get(index).cloned().flatten());
                    match job {
                        Some(Ok(resolved)) => Ok(finish(&reference, &resolved)),
                        Some(Err(e)) => Err(e.for_image(reference.original())),
                        // Every parsed reference has a job, and every job ran.
                        None => Err(RegistryError::InvalidOptions(format!(
                            "internal error: no resolution for {input:?}"
                        ))),
                    }
                });
                (input.clone(), result)
            })
            .collect()
    }

    /// Writes the cache file (atomically; sorted keys) if there is one and anything
    /// changed.
    pub fn save_cache(&self) -> Result<(), RegistryError> {
        self.cache.save()
    }

    async fn resolve_job(
        &self,
        index: usize,
        reference: &ImageReference,
    ) -> (usize, Result<Resolved, RegistryError>) {
        (index, self.resolve_parsed(reference).await)
    }

    async fn resolve_parsed(&self, reference: &ImageReference) -> Result<Resolved, RegistryError> {
        let miss = match self.lookup_cache(reference) {
            Ok(resolved) => {
                tracing::debug!(image = reference.original(), digest = %resolved.digest, "image resolved from the cache");
                return Ok(resolved);
            }
            Err(reason) => reason,
        };
        if self.offline {
            return Err(RegistryError::NotCached {
                image: reference.original().to_owned(),
                registry: reference.registry().to_owned(),
                cache: self.cache.path().map(|p| p.display().to_string()),
                reason: miss,
            });
        }
        let mut ctx = self.context(reference);
        let auth = self.auth(&mut ctx)?;
        let (top_digest, blobs) = self.fetch(reference, &ctx, &auth).await?;
        let resolved = assemble(&top_digest, &blobs, &self.platform).map_err(|p| ctx.problem(p))?;
        if !resolved.is_index
            && (resolved.config.os != self.platform.os
                || resolved.config.architecture != self.platform.architecture)
        {
            tracing::warn!(
                image = reference.original(),
                "image {:?} is a single-platform image for {}/{}, not {}",
                reference.original(),
                resolved.config.os,
                resolved.config.architecture,
                self.platform
            );
        }
        let digest_key = digest_key(reference, &top_digest);
        let tag_key = reference
            .digest()
            .is_none()
            .then(|| reference.content_key());
        self.cache.insert(
            tag_key.as_deref(),
            &digest_key,
            &top_digest,
            &blobs,
            &self.platform.to_string(),
        );
        tracing::debug!(image = reference.original(), digest = %top_digest, "image resolved from the registry");
        Ok(resolved)
    }

    /// The cache's answer, or why it has none.
    fn lookup_cache(&self, reference: &ImageReference) -> Result<Resolved, String> {
        let digest = match reference.digest() {
            Some(digest) => digest.to_owned(),
            None if self.refresh_tags => {
                return Err("tags are asked again (refresh_tags)".to_owned());
            }
            None => self
                .cache
                .tag(&reference.content_key())
                .ok_or_else(|| "the cache has no entry for this tag".to_owned())?,
        };
        let key = digest_key(reference, &digest);
        let unusable = |reason: String| {
            tracing::warn!(
                image = reference.original(),
                "ignoring the cache entry {key}: {reason}"
            );
            self.cache.forget_image(&key);
            format!("its cache entry {key} is unusable: {reason}")
        };
        let (blobs, platform) = match self.cache.image(&key) {
            None => return Err(format!("the cache has no entry {key}")),
            Some(Err(reason)) => return Err(unusable(reason)),
            Some(Ok(found)) => found,
        };
        if platform != self.platform.to_string() {
            return Err(format!(
                "it is cached for platform {platform}, not {}",
                self.platform
            ));
        }
        assemble(&digest, &blobs, &self.platform).map_err(|problem| {
            unusable(match problem {
                Problem::Mismatch {
                    what,
                    expected,
                    actual,
                } => format!("the cached {what} for {expected} hashes to {actual}"),
                Problem::Invalid { what, detail } => format!("the cached {what}: {detail}"),
                Problem::NoPlatform { available } => format!(
                    "the cached index has no {} manifest (only {available})",
                    self.platform
                ),
            })
        })
    }

    /// Pushes an image to `reference` (a tag, without digest): each of `blobs` (the
    /// config and the layers, addressed by their SHA-256), then `manifest` byte for byte
    /// with `media_type`, so the image's digest is that of `manifest`, which is returned.
    /// Credentials come from the Docker config as for pulls.
    pub async fn push(
        &self,
        reference: &str,
        blobs: &[&[u8]],
        manifest: &[u8],
        media_type: &str,
    ) -> Result<String, RegistryError> {
        let parsed = ImageReference::parse(reference)?;
        if parsed.digest().is_some() {
            return Err(RegistryError::InvalidOptions(format!(
                "push {reference:?}: push to a tag; the digest follows from the manifest"
            )));
        }
        let mut ctx = self.context(&parsed);
        let auth = self.auth(&mut ctx)?;
        let target = oci_client::Reference::with_tag(
            parsed.registry().to_owned(),
            parsed.repository().to_owned(),
            parsed.effective_tag().to_owned(),
        );
        let client = self.client_for(parsed.registry());
        client
            .auth(&target, &auth, oci_client::RegistryOperation::Push)
            .await
            .map_err(|e| ctx.oci(e, "push authorization"))?;
        for blob in blobs {
            client
                .push_blob(&target, blob.to_vec(), &sha256_digest(blob))
                .await
                .map_err(|e| ctx.oci(e, "blob"))?;
        }
        let content_type = reqwest::header::HeaderValue::from_str(media_type).map_err(|_| {
            RegistryError::InvalidOptions(format!(
                "media type {media_type:?} is not a header value"
            ))
        })?;
        client
            .push_manifest_raw(&target, manifest.to_vec(), content_type)
            .await
            .map_err(|e| ctx.oci(e, "manifest"))?;
        Ok(sha256_digest(manifest))
    }

    /// The HTTP client for `registry`: its own if the image puller config gives it TLS
    /// settings, else the common one.
    fn client_for(&self, registry: &str) -> &oci_client::Client {
        let CredentialSource::Puller(puller) = &self.credentials else {
            return &self.client;
        };
        puller
            .lookup(registry)
            .and_then(|rule| {
                self.registry_clients
                    .iter()
                    .find(|(index, _)| *index == rule.index)
            })
            .map_or(&self.client, |(_, client)| client)
    }

    fn context<'a>(&'a self, reference: &'a ImageReference) -> Context<'a> {
        Context {
            reference,
            credentials: &self.credentials,
            insecure: self
                .insecure_registries
                .iter()
                .any(|r| r == reference.registry()),
            has_credentials: false,
            platform: self.platform.to_string(),
        }
    }

    /// The credentials for the reference's registry.
    fn auth(&self, ctx: &mut Context<'_>) -> Result<RegistryAuth, RegistryError> {
        let registry = ctx.reference.registry();
        let docker_config = match &self.credentials {
            CredentialSource::DockerConfig(config) => config,
            CredentialSource::Puller(puller) => {
                return Ok(
                    match puller
                        .lookup(registry)
                        .and_then(|r| r.settings.credentials.as_ref())
                    {
                        Some(credentials) => {
                            ctx.has_credentials = true;
                            credentials.to_registry_auth()
                        }
                        None => RegistryAuth::Anonymous,
                    },
                );
            }
        };
        match docker_config.lookup(registry) {
            Lookup::Anonymous => Ok(RegistryAuth::Anonymous),
            Lookup::Credentials(credentials) => {
                ctx.has_credentials = true;
                Ok(credentials.to_registry_auth())
            }
            Lookup::Helper(helper) => Err(RegistryError::CredentialHelper {
                image: ctx.reference.original().to_owned(),
                registry: registry.to_owned(),
                helper,
                path: docker_config.path_display(),
            }),
            Lookup::Unsupported(what) => Err(RegistryError::DockerConfig {
                path: docker_config.path_display(),
                detail: format!("the \"auths\" entry for {registry}: {what}"),
            }),
        }
    }

    /// Fetches the manifest the reference names, the platform manifest if that is an
    /// index, and the config; each is hashed against the digest it was asked for.
    async fn fetch(
        &self,
        reference: &ImageReference,
        ctx: &Context<'_>,
        auth: &RegistryAuth,
    ) -> Result<(String, ImageBlobs), RegistryError> {
        let registry = reference.registry().to_owned();
        let repository = reference.repository().to_owned();
        let by_digest = |digest: &str| {
            oci_client::Reference::with_digest(
                registry.clone(),
                repository.clone(),
                digest.to_owned(),
            )
        };

        let top_reference = match reference.digest() {
            Some(digest) => by_digest(digest),
            None => oci_client::Reference::with_tag(
                registry.clone(),
                repository.clone(),
                reference.effective_tag().to_owned(),
            ),
        };
        let top = self
            .pull_manifest(&top_reference, auth, ctx, "manifest", reference.digest())
            .await?;
        let top_digest = match reference.digest() {
            Some(expected) => expected.to_owned(),
            None => sha256_digest(&top),
        };
        let manifest = parse_manifest(&top).map_err(|detail| ctx.invalid("manifest", detail))?;
        let (platform_manifest, config) = match manifest {
            Manifest::Image { config, .. } => (None, config),
            Manifest::Index { manifests } => {
                let entry = select_platform(&manifests, &self.platform).map_err(|available| {
                    RegistryError::PlatformNotFound {
                        image: reference.original().to_owned(),
                        registry: registry.clone(),
                        platform: self.platform.to_string(),
                        available,
                    }
                })?;
                let bytes = self
                    .pull_manifest(
                        &by_digest(&entry.digest),
                        auth,
                        ctx,
                        "platform manifest",
                        Some(&entry.digest),
                    )
                    .await?;
                match parse_manifest(&bytes)
                    .map_err(|detail| ctx.invalid("platform manifest", detail))?
                {
                    Manifest::Image { config, .. } => (Some(bytes), config),
                    Manifest::Index { .. } => {
                        return Err(ctx.invalid(
                            "platform manifest",
                            format!(
                                "the index entry for {} is another image index; nested indexes are not supported",
                                self.platform
                            ),
                        ));
                    }
                }
            }
        };
        let what = if platform_manifest.is_some() {
            "platform manifest"
        } else {
            "manifest"
        };
        check_config_descriptor(&config).map_err(|detail| ctx.invalid(what, detail))?;
        let config = self
            .pull_blob(
                &by_digest(&config.digest),
                &config.digest,
                config.size,
                ctx,
                "config",
            )
            .await?;
        Ok((
            top_digest,
            ImageBlobs {
                top,
                platform_manifest,
                config,
            },
        ))
    }

    /// One manifest, with the full Accept list; hashed against `expected` if given.
    async fn pull_manifest(
        &self,
        reference: &oci_client::Reference,
        auth: &RegistryAuth,
        ctx: &Context<'_>,
        what: &'static str,
        expected: Option<&str>,
    ) -> Result<Vec<u8>, RegistryError> {
        let (bytes, _) = self
            .client_for(ctx.reference.registry())
            .pull_manifest_raw(reference, auth, &MANIFEST_MEDIA_TYPES)
            .await
            .map_err(|e| ctx.oci(e, what))?;
        if let Some(expected) = expected {
            let actual = sha256_digest(&bytes);
            if actual != expected {
                return Err(ctx.mismatch(what, expected, &actual));
            }
        }
        Ok(bytes.to_vec())
    }

    /// A blob (config or layer) of `size` bytes as its descriptor in a hashed manifest
    /// gives it: no more bytes are read, and it is hashed against `digest`.
    /// The blob reference of `layer` in `parsed`'s repository; the first one of an image
    /// (`authenticated` still false) also gets a token for the blobs, since the manifests
    /// may have come from the cache.
    async fn layer_reference(
        &self,
        parsed: &ImageReference,
        layer: &LayerInfo,
        auth: &RegistryAuth,
        ctx: &Context<'_>,
        authenticated: &mut bool,
    ) -> Result<oci_client::Reference, RegistryError> {
        let by_digest = oci_client::Reference::with_digest(
            parsed.registry().to_owned(),
            parsed.repository().to_owned(),
            layer.digest.clone(),
        );
        if !*authenticated {
            self.client_for(parsed.registry())
                .auth(&by_digest, auth, oci_client::RegistryOperation::Pull)
                .await
                .map_err(|e| ctx.oci(e, "layer"))?;
            *authenticated = true;
        }
        Ok(by_digest)
    }

    /// Pulls `layer` piece by piece, checking its size and digest as [`Self::pull_blob`]
    /// does, and counts its unpacked size without keeping it.
    async fn measure_blob(
        &self,
        reference: &oci_client::Reference,
        layer: &LayerInfo,
        ctx: &Context<'_>,
    ) -> Result<Result<u64, layer::LayerError>, RegistryError> {
        let mut counted = match layer::UncompressedSize::new(&layer.media_type) {
            Ok(counted) => counted,
            Err(e) => return Ok(Err(e)),
        };
        let mut broken = None;
        self.stream_blob(
            reference,
            &layer.digest,
            layer.size,
            ctx,
            "layer",
            |chunk| {
                if broken.is_none()
                    && let Err(e) = counted.write(chunk)
                {
                    broken = Some(e);
                }
            },
        )
        .await?;
        Ok(match broken {
            Some(e) => Err(e),
            None => counted.finish(),
        })
    }

    async fn pull_blob(
        &self,
        reference: &oci_client::Reference,
        digest: &str,
        size: u64,
        ctx: &Context<'_>,
        what: &'static str,
    ) -> Result<Vec<u8>, RegistryError> {
        // Reserve no more than a config's limit up front: the size is the manifest's word.
        let mut bytes = Vec::with_capacity(usize::try_from(size.min(MAX_CONFIG_SIZE)).unwrap_or(0));
        self.stream_blob(reference, digest, size, ctx, what, |chunk| {
            bytes.extend_from_slice(chunk);
        })
        .await?;
        Ok(bytes)
    }

    /// Pulls blob `digest` of at most `size` bytes (the manifest's word), giving it to
    /// `each` piece by piece, and checks that it is `digest`'s content: more bytes than
    /// `size`, announced or sent, or other content, is an error.
    async fn stream_blob(
        &self,
        reference: &oci_client::Reference,
        digest: &str,
        size: u64,
        ctx: &Context<'_>,
        what: &'static str,
        mut each: impl FnMut(&[u8]),
    ) -> Result<(), RegistryError> {
        let mut stream = self
            .client_for(ctx.reference.registry())
            .pull_blob_stream(reference, digest)
            .await
            .map_err(|e| ctx.oci(e, what))?;
        if stream.content_length.is_some_and(|length| length > size) {
            return Err(ctx.invalid(
                what,
                format!(
                    "the registry announces {} bytes for the {size}-byte {what} {digest}",
                    stream.content_length.unwrap_or_default(),
                ),
            ));
        }
        let mut hash = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        let mut received = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| ctx.io(e, what))?;
            received = received.saturating_add(chunk.len() as u64);
            if received > size {
                return Err(ctx.invalid(
                    what,
                    format!("the registry sends more than the {size} bytes of {what} {digest}"),
                ));
            }
            hash.update(&chunk);
            each(&chunk);
        }
        let actual = format!("sha256:{}", hex::encode(hash.finish().as_ref()));
        if actual != digest {
            return Err(ctx.mismatch(what, digest, &actual));
        }
        Ok(())
    }
}

/// What to do when a registry refuses a pull in the guest.
fn puller_hint(puller: &PullerConfig, registry: &str, has_credentials: bool) -> String {
    let path = puller.path();
    if !puller.is_present() {
        return format!(
            "the node gives the guest no image puller config ({path} does not exist); if the image is private, put a contrast-imagepuller.toml with [registries.\"{registry}\"] and auth (base64 of user:password) into the Secret contrast-node-installer-imagepuller-config (kube-system) and restart the node installer"
        );
    }
    match puller.lookup(registry) {
        Some(rule) if has_credentials => format!(
            "the credentials of registries.{:?} in the image puller config {path} were not accepted: check them in the Secret contrast-node-installer-imagepuller-config (kube-system) and restart the node installer",
            rule.key
        ),
        // A new, more specific entry would not inherit this one's settings (its CA).
        Some(rule) => format!(
            "registries.{:?} in the image puller config {path} applies to {registry} but has no credentials; if the image is private, add auth (base64 of user:password) to that entry in the Secret contrast-node-installer-imagepuller-config (kube-system) and restart the node installer",
            rule.key
        ),
        _ => format!(
            "the image puller config {path} has no credentials for {registry}; if the image is private, add [registries.\"{registry}\"] with auth (base64 of user:password) to contrast-imagepuller.toml in the Secret contrast-node-installer-imagepuller-config (kube-system) and restart the node installer"
        ),
    }
}

/// An HTTP client for the registries: plain HTTP for `insecure_registries`; HTTPS trusting
/// only `tls_certs_only` if given (else the platform's roots), no checks at all if
/// `skip_verify`; through `proxies`.
fn http_client(
    insecure_registries: &[String],
    tls_certs_only: Vec<oci_client::client::Certificate>,
    skip_verify: bool,
    proxies: &Proxies,
) -> Result<oci_client::Client, RegistryError> {
    oci_client::Client::try_from(ClientConfig {
        https_proxy: proxies.https.clone(),
        http_proxy: proxies.http.clone(),
        no_proxy: proxies.no_proxy.clone(),
        protocol: ClientProtocol::HttpsExcept(insecure_registries.to_vec()),
        tls_certs_only,
        // With rustls this skips the host name check too.
        accept_invalid_certificates: skip_verify,
        // Index entries are chosen here, from the raw index.
        platform_resolver: None,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        user_agent: USER_AGENT,
        ..ClientConfig::default()
    })
    .map_err(|e| RegistryError::InvalidOptions(format!("cannot set up the HTTP client: {e}")))
}

/// The certificates of the PEM bundle at `path`, as oci-client takes them (DER, one by one).
fn root_certificates(
    path: &std::path::Path,
) -> Result<Vec<oci_client::client::Certificate>, RegistryError> {
    let invalid = |detail: String| {
        RegistryError::InvalidOptions(format!("root certificates {}: {detail}", path.display()))
    };
    // The image's own bundle (or the user's): not the host's, so read whole.
    let pem = std::fs::read(path).map_err(|e| invalid(e.to_string()))?;
    let certificates = local_files::pem_certificates(&pem).map_err(invalid)?;
    if certificates.is_empty() {
        return Err(invalid(
            "no certificate in the bundle; HTTPS registries could not be verified".to_owned(),
        ));
    }
    Ok(certificates)
}

/// `registry/repository@digest`: the cache key of content.
fn digest_key(reference: &ImageReference, digest: &str) -> String {
    format!(
        "{}/{}@{digest}",
        reference.registry(),
        reference.repository()
    )
}

/// The result for one spelling of a reference.
fn finish(reference: &ImageReference, resolved: &Resolved) -> ResolvedImage {
    ResolvedImage {
        reference: reference.normalized(),
        pinned: reference.pinned(&resolved.digest),
        digest: resolved.digest.clone(),
        manifest_digest: resolved.manifest_digest.clone(),
        is_index: resolved.is_index,
        layers: resolved.layers.clone(),
        config: resolved.config.clone(),
    }
}

/// What errors about one image need to know.
struct Context<'a> {
    reference: &'a ImageReference,
    credentials: &'a CredentialSource,
    /// The registry is reached over plain HTTP.
    insecure: bool,
    /// Credentials from the Docker config (or the image puller config) were used.
    has_credentials: bool,
    /// The platform chosen from indexes, for messages.
    platform: String,
}

impl Context<'_> {
    fn image(&self) -> String {
        self.reference.original().to_owned()
    }

    fn registry(&self) -> String {
        self.reference.registry().to_owned()
    }

    fn invalid(&self, what: &str, detail: String) -> RegistryError {
        RegistryError::InvalidContent {
            image: self.image(),
            registry: self.registry(),
            what: what.to_owned(),
            detail,
        }
    }

    fn mismatch(&self, what: &str, expected: &str, actual: &str) -> RegistryError {
        RegistryError::DigestMismatch {
            image: self.image(),
            registry: self.registry(),
            what: what.to_owned(),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        }
    }

    fn problem(&self, problem: Problem) -> RegistryError {
        match problem {
            Problem::Mismatch {
                what,
                expected,
                actual,
            } => self.mismatch(what, &expected, &actual),
            Problem::Invalid { what, detail } => self.invalid(what, detail),
            Problem::NoPlatform { available } => RegistryError::PlatformNotFound {
                image: self.image(),
                registry: self.registry(),
                platform: self.platform.clone(),
                available,
            },
        }
    }

    fn unauthorized(&self, answer: String) -> RegistryError {
        let registry = self.reference.registry();
        let docker_config = match self.credentials {
            CredentialSource::DockerConfig(config) => config,
            CredentialSource::Puller(puller) => {
                return RegistryError::Unauthorized {
                    image: self.image(),
                    registry: self.registry(),
                    answer,
                    hint: puller_hint(puller, registry, self.has_credentials),
                };
            }
        };
        let path = docker_config.path_display();
        let hint = if self.has_credentials {
            format!(
                "the credentials for {registry} from the docker config {path} were not accepted: check them (`docker login {registry}` rewrites them)"
            )
        } else {
            let store = match docker_config.creds_store() {
                Some(store) => format!(
                    " (its credsStore {store:?} is not used: credential helpers are not supported)"
                ),
                None => String::new(),
            };
            format!(
                "no credentials for {registry} were found in the docker config {path}{store}; if the image is private, add an \"auths\" entry for {registry} (e.g. with `docker login {registry}`) or set DOCKER_CONFIG to a directory whose config.json has one; registries also answer this for repositories that do not exist, so check the name {:?}",
                self.reference.repository()
            )
        };
        RegistryError::Unauthorized {
            image: self.image(),
            registry: self.registry(),
            answer,
            hint,
        }
    }

    fn answer(&self, answer: String, hint: String) -> RegistryError {
        RegistryError::RegistryAnswer {
            image: self.image(),
            registry: self.registry(),
            answer,
            hint,
        }
    }

    /// The hint for "not found".
    fn not_found_hint(&self, what: &str) -> String {
        match (what, self.reference.digest()) {
            ("manifest", None) => format!(
                "check that the tag {:?} exists in the repository {:?}",
                self.reference.effective_tag(),
                self.reference.repository()
            ),
            ("manifest", Some(digest)) => format!(
                "check that the digest {digest} exists in the repository {:?}",
                self.reference.repository()
            ),
            _ => format!(
                "the image's {what} is missing from the repository {:?}: the image in the registry is incomplete",
                self.reference.repository()
            ),
        }
    }

    fn oci(&self, error: OciDistributionError, what: &'static str) -> RegistryError {
        match error {
            OciDistributionError::RegistryError { envelope, .. } => {
                let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
                let answer = envelope
                    .errors
                    .iter()
                    .map(|e| {
                        let code = serde_json::to_value(&e.code)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_else(|| format!("{:?}", e.code));
                        if e.message.is_empty() {
                            code
                        } else {
                            format!("{code}: {}", e.message)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                if codes
                    .iter()
                    .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
                {
                    return self.unauthorized(answer);
                }
                let hint = if codes.iter().any(|c| {
                    matches!(
                        c,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::BlobUnknown
                    )
                }) {
                    self.not_found_hint(what)
                } else if codes.contains(&&OciErrorCode::NameUnknown) {
                    format!(
                        "check the repository name {:?}",
                        self.reference.repository()
                    )
                } else if codes.contains(&&OciErrorCode::Toomanyrequests) {
                    "the registry limits the request rate: retry later, or use credentials (docker config) for a higher limit".to_owned()
                } else {
                    String::new()
                };
                self.answer(answer, hint)
            }
            OciDistributionError::UnauthorizedError { .. } => {
                self.unauthorized("HTTP 401 Unauthorized".to_owned())
            }
            OciDistributionError::AuthenticationFailure(reason) => {
                self.unauthorized(format!("its token service refused: {}", shorten(&reason)))
            }
            OciDistributionError::ServerError { code, message, .. } => {
                let answer = format!("HTTP {code}: {}", shorten(&message));
                match code {
                    401 | 403 => self.unauthorized(answer),
                    404 => self.answer(answer, self.not_found_hint(what)),
                    400 if self.insecure && message.contains("HTTP request to an HTTPS server") => {
                        RegistryError::Connection {
                            image: self.image(),
                            registry: self.registry(),
                            detail: answer,
                            hint: format!(
                                "{} speaks HTTPS: remove it from --insecure-registry",
                                self.reference.registry()
                            ),
                        }
                    }
                    _ => self.answer(answer, String::new()),
                }
            }
            OciDistributionError::DigestError(
                oci_client::errors::DigestError::VerificationError { expected, actual },
            ) => self.mismatch(what, &expected, &actual),
            OciDistributionError::RequestError(e) => self.transport(&e),
            OciDistributionError::IoError(e) => self.io(e, what),
            other => self.invalid(what, other.to_string()),
        }
    }

    fn io(&self, error: std::io::Error, what: &str) -> RegistryError {
        if let Some(oci_client::errors::DigestError::VerificationError { expected, actual }) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<oci_client::errors::DigestError>())
        {
            return self.mismatch(what, expected, actual);
        }
        self.transport(&error)
    }

    /// A transport error: its causes, and a hint that depends on what failed.
    fn transport(&self, error: &(dyn std::error::Error + 'static)) -> RegistryError {
        let registry = self.reference.registry();
        let (detail, kind) = describe_transport(error);
        let hint = match kind {
            TransportKind::PlainHttp if !self.insecure => format!(
                "the registry answered in plain HTTP, not TLS; if {registry} is a plain-HTTP registry you trust (e.g. on loopback or a private network), allow it with --insecure-registry {registry} (that flag only permits plain HTTP; it never turns off certificate checks)"
            ),
            TransportKind::Certificate => format!(
                "the TLS certificate of {registry} is not trusted: add its CA to the system trust store; --insecure-registry does not help (it is only for plain-HTTP registries)"
            ),
            TransportKind::Tls => {
                format!("TLS with {registry} failed; check that it serves HTTPS on this port")
            }
            TransportKind::Timeout => {
                format!("{registry} did not answer in time; check the network and retry")
            }
            TransportKind::PlainHttp | TransportKind::Other => {
                format!("check that {registry} is the right address and reachable from here")
            }
        };
        RegistryError::Connection {
            image: self.image(),
            registry: self.registry(),
            detail,
            hint,
        }
    }
}

/// What kind of transport failure an error chain shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TransportKind {
    /// TLS got something that is not TLS: the server speaks plain HTTP.
    PlainHttp,
    /// The server's certificate was not accepted.
    Certificate,
    /// Another TLS failure.
    Tls,
    /// A timeout.
    Timeout,
    /// Connection refused, name not resolved, reset, ….
    Other,
}

/// The messages of an error chain (repeats removed) and its kind. `io::Error` hides its
/// inner error from `source()`, so the walk looks into it explicitly.
fn describe_transport(error: &(dyn std::error::Error + 'static)) -> (String, TransportKind) {
    let mut messages: Vec<String> = Vec::new();
    let mut kind = TransportKind::Other;
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut depth = 0;
    while let Some(error) = current {
        depth += 1;
        if depth > 16 {
            break;
        }
        let message = error.to_string();
        if !messages.iter().any(|m| m.contains(&message)) {
            messages.push(message);
        }
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            kind = match tls {
                rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => {
                    TransportKind::PlainHttp
                }
                rustls::Error::InvalidCertificate(_) => TransportKind::Certificate,
                _ => TransportKind::Tls,
            };
        }
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut && kind == TransportKind::Other {
                kind = TransportKind::Timeout;
            }
            if let Some(inner) = io.get_ref() {
                current = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
        }
        if let Some(request) = error.downcast_ref::<reqwest::Error>()
            && request.is_timeout()
            && kind == TransportKind::Other
        {
            kind = TransportKind::Timeout;
        }
        current = error.source();
    }
    (messages.join(": "), kind)
}

/// A registry's message, cut to a readable length.
fn shorten(message: &str) -> String {
    const LIMIT: usize = 300;
    let message = message.trim();
    if message.chars().count() <= LIMIT {
        message.to_owned()
    } else {
        let cut: String = message.chars().take(LIMIT).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn resolver_and_its_futures_can_be_shared_across_tasks() {
        fn assert_send_sync<T: Send + Sync>(_: &T) {}
        fn assert_send<T: Send>(_: T) {}
        let resolver = Resolver::new(ResolverOptions {
            offline: true,
            ..ResolverOptions::default()
        })
        .unwrap();
        assert_send_sync(&resolver);
        assert_send(resolver.resolve("nginx"));
        assert_send(resolver.resolve_all(&[], |_, _| {}));
    }

    #[test]
    fn option_refusals() {
        let refuse = |options: ResolverOptions, want: &str| {
            let err = Resolver::new(options).unwrap_err().to_string();
            assert!(err.contains(want), "{err:?} should mention {want:?}");
        };
        refuse(
            ResolverOptions {
                concurrency: 0,
                ..ResolverOptions::default()
            },
            "at least 1",
        );
        refuse(
            ResolverOptions {
                platform: (String::new(), "amd64".to_owned()),
                ..ResolverOptions::default()
            },
            "needs an OS",
        );
        refuse(
            ResolverOptions {
                offline: true,
                refresh_tags: true,
                ..ResolverOptions::default()
            },
            "offline",
        );
        for bad in ["https://r.io", "r.io/path", "", "r.io:99999", "myhost"] {
            refuse(
                ResolverOptions {
                    insecure_registries: vec![bad.to_owned()],
                    offline: true,
                    ..ResolverOptions::default()
                },
                "host[:port]",
            );
        }
        let ok = Resolver::new(ResolverOptions {
            insecure_registries: vec!["localhost:5000".to_owned(), "docker.io".to_owned()],
            offline: true,
            ..ResolverOptions::default()
        })
        .unwrap();
        assert_eq!(
            ok.insecure_registries,
            ["localhost:5000", "docker.io", "index.docker.io"]
        );
    }

    #[tokio::test]
    async fn offline_without_cache_names_the_image_and_registry() {
        let resolver = Resolver::new(ResolverOptions {
            offline: true,
            ..ResolverOptions::default()
        })
        .unwrap();
        let err = resolver.resolve("ghcr.io/org/app:v1").await.unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, RegistryError::NotCached { .. }), "{message}");
        assert!(
            message.contains("\"ghcr.io/org/app:v1\"")
                && message.contains("registry ghcr.io")
                && message.contains("no cache file given"),
            "{message}"
        );
    }

    #[test]
    fn transport_errors_are_classified() {
        let plain = std::io::Error::other(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        ));
        let wrapped = std::io::Error::other(plain);
        let (detail, kind) = describe_transport(&wrapped);
        assert_eq!(kind, TransportKind::PlainHttp, "{detail}");
        let certificate = std::io::Error::other(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            describe_transport(&certificate).1,
            TransportKind::Certificate
        );
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(describe_transport(&refused).1, TransportKind::Other);
        let timeout = std::io::Error::from(std::io::ErrorKind::TimedOut);
        assert_eq!(describe_transport(&timeout).1, TransportKind::Timeout);
        assert_eq!(shorten(&"x".repeat(400)).chars().count(), 301);
    }
}
