//! Storage handlers: what a container's `storages` entries become inside the guest. One
//! trait, one file per driver (the Kata agent's layout). A driver without a handler is
//! refused by name; nothing from the host's shared directory becomes a root file system.

mod ephemeral;
mod image_pull;
mod local;

use std::path::{Component, Path, PathBuf};

pub use ephemeral::EphemeralHandler;
pub use image_pull::ImagePullHandler;
pub use local::LocalHandler;

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

/// A path the runtime names under `/run/kata-containers` as it lies in this agent (below
/// `run_dir`); `None` for any other path, or one with `.` or `..` components.
pub fn guest_path(path: &str, run_dir: &Path) -> Option<PathBuf> {
    let rest = path.strip_prefix(crate::service::RUN_DIR)?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let mut out = run_dir.to_owned();
    for component in Path::new(rest).components() {
        match component {
            Component::RootDir => {}
            Component::Normal(c) => out.push(c),
            _ => return None,
        }
    }
    Some(out)
}

/// `fsgid=<gid>` among a storage's options: the pod's fsGroup.
fn fs_group(options: &[String]) -> Result<Option<u32>, String> {
    match options.iter().find_map(|o| o.strip_prefix("fsgid=")) {
        Some(gid) => gid
            .parse()
            .map(Some)
            .map_err(|_| format!("fsgid={gid} is not a group ID")),
        None => Ok(None),
    }
}

/// Gives `dir` to group `gid` with the set-group-ID bit, as the Kata agent does for a
/// volume of a pod with an fsGroup: files made in it belong to that group.
fn apply_fs_group(dir: &Path, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::os::unix::fs::chown(dir, None, Some(gid))?;
    let mode = std::fs::metadata(dir)?.permissions().mode();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o2000))
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
    /// An emptyDir volume: a tmpfs (`ephemeral`) or a directory (`local`).
    Volume {
        /// Where it lies in the guest.
        path: PathBuf,
    },
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

    /// Undoes what the sandbox's storages left (mounts) when the sandbox goes.
    fn teardown(&self) {}
}
