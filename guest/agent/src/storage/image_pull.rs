//! `image_guest_pull`: the container's root file system pulled inside the guest, by
//! digest, from the image the request's storage names (the Kata runtime's guest pull with
//! no shared file system; the policy has checked the reference and its digest).

use std::collections::BTreeMap;
use std::path::PathBuf;

use contrast_registry::{PullerConfig, Resolver, ResolverOptions};

use super::{ContainerContext, Prepared, StorageError, StorageHandler};
use crate::proto::agent::Storage;

const DRIVER: &str = "image_guest_pull";

/// containerd's container-type annotation: `sandbox` marks the pause container, whose
/// root is the guest's own pause, not a pull. The policy reads this key and no other
/// (Contrast runs on containerd), so the agent does too.
const CONTAINER_TYPE_KEY: &str = "io.kubernetes.cri.container-type";

/// Pulls with one [`Resolver`] (no cache: the guest starts empty).
#[derive(Debug)]
pub struct ImagePullHandler {
    options: ResolverOptions,
    puller_config: Option<PathBuf>,
}

impl ImagePullHandler {
    /// A handler that pulls with `options` (insecure registries, platform) and the
    /// credentials of the image puller config at `puller_config`, read at each pull (no
    /// file: anonymous pulls).
    pub fn new(options: ResolverOptions, puller_config: Option<PathBuf>) -> Self {
        ImagePullHandler {
            options,
            puller_config,
        }
    }
}

/// `driver_options` as the Kata runtime writes them: one `image_guest_pull=<JSON>` entry
/// whose `metadata` holds the container's annotations.
fn metadata(storage: &Storage) -> Result<BTreeMap<String, String>, StorageError> {
    let invalid = |detail: String| StorageError::Invalid {
        driver: DRIVER.to_owned(),
        detail,
    };
    let mut found = None;
    for option in &storage.driver_options {
        if let Some(json) = option.strip_prefix("image_guest_pull=") {
            if found.is_some() {
                return Err(invalid(
                    "more than one image_guest_pull= driver option".into(),
                ));
            }
            found = Some(json);
        }
    }
    let json = found.ok_or_else(|| invalid("no image_guest_pull= driver option".into()))?;
    #[derive(serde::Deserialize)]
    struct Volume {
        #[serde(default)]
        metadata: BTreeMap<String, String>,
    }
    serde_json::from_str::<Volume>(json)
        .map(|v| v.metadata)
        .map_err(|e| {
            invalid(format!(
                "the image_guest_pull driver option is not its JSON: {e}"
            ))
        })
}

#[async_trait::async_trait]
impl StorageHandler for ImagePullHandler {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    async fn add(
        &self,
        storage: &Storage,
        container: &ContainerContext,
    ) -> Result<Prepared, StorageError> {
        let metadata = metadata(storage)?;
        let rootfs = container.rootfs();
        std::fs::create_dir_all(&rootfs).map_err(|source| StorageError::Io {
            path: rootfs.clone(),
            source,
        })?;
        if metadata.get(CONTAINER_TYPE_KEY).map(String::as_str) == Some("sandbox") {
            return Ok(Prepared::PauseRoot);
        }
        let image = storage.source.clone();
        let pull_error = |source| StorageError::Pull {
            image: image.clone(),
            source: Box::new(source),
        };
        let mut options = self.options.clone();
        if let Some(path) = &self.puller_config {
            let marker = contrast_initdata::disk::imagepuller_error_path(path);
            if let Ok(reason) = std::fs::read_to_string(&marker) {
                return Err(pull_error(contrast_registry::RegistryError::PullerConfig {
                    path: path.display().to_string(),
                    detail: format!(
                        "the guest could not take it from the runtime's disk: {reason}"
                    ),
                }));
            }
            options.puller_config = Some(PullerConfig::load(path).map_err(pull_error)?);
        }
        let resolver = Resolver::new(options).map_err(pull_error)?;
        let pulled = resolver.pull(&image, &rootfs).await.map_err(pull_error)?;
        tracing::info!(
            container = %container.container_id,
            %image,
            layers = pulled.layers.len(),
            bytes = pulled.layers.iter().map(|l| l.bytes).sum::<u64>(),
            "image pulled in the guest"
        );
        Ok(Prepared::PulledRoot {
            image,
            digest: pulled.image.digest,
        })
    }
}
