//! Storage handlers: what a container's `storages` entries become inside the guest. One
//! trait, one file per driver (the Kata agent's layout). A driver without a handler is
//! refused by name; nothing from the host's shared directory becomes a root file system.

mod image_pull;

use std::path::PathBuf;

pub use image_pull::ImagePullHandler;

use crate::proto::agent::Storage;

/// The container a storage is prepared for.
#[derive(Debug, Clone)]
pub struct ContainerContext {
    /// The container's ID (checked: `[A-Za-z0-9][A-Za-z0-9_.-]*`).
    pub container_id: String,
    /// Its bundle directory, `<run dir>/<container ID>`; the root file system is
    /// `<bundle>/rootfs`.
    pub bundle: PathBuf,
}

impl ContainerContext {
    /// `<bundle>/rootfs`.
    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }
}

/// Why a storage could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// No handler for the driver.
    #[error("storage driver {driver:?} is not served by contrast-agent yet")]
    UnknownDriver {
        /// `Storage.driver`.
        driver: String,
    },
    /// The request's storage is malformed.
    #[error("storage {driver}: {detail}")]
    Invalid {
        /// `Storage.driver`.
        driver: String,
        /// What is wrong.
        detail: String,
    },
    /// The image could not be pulled.
    #[error("pulling {image} inside the guest")]
    Pull {
        /// The image reference.
        image: String,
        /// Why (boxed: registry errors are large).
        #[source]
        source: Box<contrast_registry::RegistryError>,
    },
    /// A file operation in the guest failed.
    #[error("preparing {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// What a prepared storage left for the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The container's root file system, from an image pulled in the guest.
    PulledRoot {
        /// The image reference pulled.
        image: String,
        /// Its manifest digest.
        digest: String,
    },
    /// The sandbox's pause container root (no pull: the guest's own pause).
    PauseRoot,
}

/// One storage driver.
#[async_trait::async_trait]
pub trait StorageHandler: Send + Sync + std::fmt::Debug {
    /// The `Storage.driver` it handles.
    fn driver(&self) -> &'static str;

    /// Prepares `storage` for `container`.
    async fn add(
        &self,
        storage: &Storage,
        container: &ContainerContext,
    ) -> Result<Prepared, StorageError>;
}
