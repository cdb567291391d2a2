//! The crate's error type. Every error about an image names the image (as written) and the
//! registry, and says what to do. Errors carry text rather than sources so that they can be
//! cloned: one failed resolution answers every reference that names the same content.

/// What went wrong while resolving an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The reference breaks Docker's reference grammar.
    #[error("invalid image reference {reference:?}: {rule}")]
    InvalidReference {
        /// The reference as written.
        reference: String,
        /// The rule it breaks.
        rule: String,
    },

    /// The resolver options are not usable.
    #[error("invalid registry resolver options: {0}")]
    InvalidOptions(String),

    /// The registry answered with an error (not an authorization error).
    #[error(
        "image {image:?}: registry {registry} answered {answer}{}",
        hint_suffix(hint)
    )]
    RegistryAnswer {
        /// The image as written.
        image: String,
        /// The registry, `host[:port]`.
        registry: String,
        /// The registry's error codes and messages (`MANIFEST_UNKNOWN: manifest unknown`),
        /// or `HTTP <status>: <body>` when the body is not an error envelope. (oci-client
        /// does not pass the HTTP status along with an envelope.)
        answer: String,
        /// What to do; may be empty.
        hint: String,
    },

    /// The registry refused access (HTTP 401/403, `UNAUTHORIZED`, `DENIED`).
    #[error("image {image:?}: registry {registry} refused access ({answer}); {hint}")]
    Unauthorized {
        /// The image as written.
        image: String,
        /// The registry, `host[:port]`.
        registry: String,
        /// What the registry answered.
        answer: String,
        /// Which credentials were used and where to put them.
        hint: String,
    },

    /// The registry could not be reached, or TLS failed.
    #[error("image {image:?}: cannot talk to registry {registry}: {detail}; {hint}")]
    Connection {
        /// The image as written.
        image: String,
        /// The registry, `host[:port]`.
        registry: String,
        /// The transport error with its causes.
        detail: String,
        /// What to check (plain HTTP, certificates, address).
        hint: String,
    },

    /// Content fetched by digest does not hash to that digest: the registry (or something
    /// on the way) is not serving the content the digest names.
    #[error(
        "image {image:?}: registry {registry} sent a {what} for {expected} whose SHA-256 is {actual}; refusing content that does not match its digest"
    )]
    DigestMismatch {
        /// The image as written.
        image: String,
        /// The registry, `host[:port]`.
        registry: String,
        /// `manifest`, `image index`, `platform manifest` or `config`.
        what: String,
        /// The digest that was asked for.
        expected: String,
        /// The digest of what was received.
        actual: String,
    },

    /// A manifest, index or config is not usable (bad JSON, unsupported media type or
    /// schema, not a container image, too large).
    #[error("image {image:?}: registry {registry} sent an unusable {what}: {detail}")]
    InvalidContent {
        /// The image as written.
        image: String,
        /// The registry, `host[:port]`.
        registry: String,
        /// `manifest`, `image index`, `platform manifest` or `config`.
        what: String,
        /// Why it is unusable.
        detail: String,
    },

    /// The image index has no manifest for the requested platform.
    #[error(
        "image {image:?}: registry {registry} has no manifest for platform {platform} in the image index (it has: {available})"
    )]
    PlatformNotFound {
        /// The image as written.
        image: String,
        /// The registry, `host[:port]`.
        registry: String,
        /// The requested platform, `os/architecture[/variant]`.
        platform: String,
        /// The platforms the index lists.
        available: String,
    },

    /// Offline: the image is not in the cache (or its entry is unusable).
    #[error(
        "image {image:?} (registry {registry}) is not in the image cache{}: {reason}; run once without --offline, with access to {registry}, to fill the cache",
        cache_suffix(cache)
    )]
    NotCached {
        /// The image as written.
        image: String,
        /// The registry, `host[:port]`.
        registry: String,
        /// The cache file, if there is one.
        cache: Option<String>,
        /// Why the cache could not answer.
        reason: String,
    },

    /// The Docker config file cannot be read or parsed.
    #[error("docker config {path}: {detail}")]
    DockerConfig {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },

    /// The image puller configuration (the guest's registry credentials) is unusable.
    #[error(
        "image puller config {path} (from the Secret contrast-node-installer-imagepuller-config): {detail}"
    )]
    PullerConfig {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },

    /// The Docker config names a credential helper for the registry; helpers are not run.
    #[error(
        "image {image:?}: the docker config {path} names the credential helper {helper:?} for registry {registry}; credential helpers are not supported: put the credentials into \"auths\" of a docker config (e.g. a separate DOCKER_CONFIG directory) instead"
    )]
    CredentialHelper {
        /// The image as written.
        image: String,
        /// The registry, `host[:port]`.
        registry: String,
        /// The helper's name (`docker-credential-<name>`).
        helper: String,
        /// The docker config file.
        path: String,
    },

    /// The cache file cannot be written.
    #[error("writing the image cache {path}: {detail}")]
    CacheWrite {
        /// The cache file.
        path: String,
        /// The error.
        detail: String,
    },

    /// A pull needs a reference pinned by digest.
    #[error(
        "image {image:?} is not pinned by digest; a pull inside the guest takes only \
         name@sha256:… (contrast generate pins every image)"
    )]
    NotPinned {
        /// The reference as given.
        image: String,
    },

    /// A verified layer could not be applied to the root file system.
    #[error("image {image:?}: applying layer {digest}: {detail}")]
    Layer {
        /// The image.
        image: String,
        /// The layer's digest.
        digest: String,
        /// Why (the [`crate::layer::LayerError`] with its causes).
        detail: String,
    },
}

impl RegistryError {
    /// The same error about `image` (another spelling of the same content).
    pub(crate) fn for_image(mut self, image: &str) -> RegistryError {
        match &mut self {
            RegistryError::RegistryAnswer { image: i, .. }
            | RegistryError::Unauthorized { image: i, .. }
            | RegistryError::Connection { image: i, .. }
            | RegistryError::DigestMismatch { image: i, .. }
            | RegistryError::InvalidContent { image: i, .. }
            | RegistryError::PlatformNotFound { image: i, .. }
            | RegistryError::NotCached { image: i, .. }
            | RegistryError::CredentialHelper { image: i, .. }
            | RegistryError::NotPinned { image: i }
            | RegistryError::Layer { image: i, .. } => *i = image.to_owned(),
            RegistryError::InvalidReference { .. }
            | RegistryError::InvalidOptions(_)
            | RegistryError::DockerConfig { .. }
            | RegistryError::PullerConfig { .. }
            | RegistryError::CacheWrite { .. } => {}
        }
        self
    }
}

fn hint_suffix(hint: &str) -> String {
    if hint.is_empty() {
        String::new()
    } else {
        format!("; {hint}")
    }
}

fn cache_suffix(cache: &Option<String>) -> String {
    match cache {
        Some(path) => format!(" {path}"),
        None => " (no cache file given)".to_owned(),
    }
}
