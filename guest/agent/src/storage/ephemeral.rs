//! `ephemeral`: a memory-backed emptyDir, a tmpfs below
//! `/run/kata-containers/sandbox/ephemeral/`, mounted once and shared by the pod's
//! containers. As in the Kata agent, its only option is the pod's fsGroup.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Mutex;

use super::{ContainerContext, Prepared, StorageError, StorageHandler, apply_fs_group, fs_group};
use crate::proto::agent::Storage;

const DRIVER: &str = "ephemeral";

/// Mounts each volume's tmpfs once.
#[derive(Debug)]
pub struct EphemeralHandler {
    run_dir: PathBuf,
    mounted: Mutex<BTreeSet<PathBuf>>,
}

impl EphemeralHandler {
    /// A handler for volumes below `<run_dir>/sandbox/ephemeral`.
    pub fn new(run_dir: PathBuf) -> Self {
        EphemeralHandler {
            run_dir,
            mounted: Mutex::new(BTreeSet::new()),
        }
    }

    /// The tmpfs mounts it made (unmounted when the sandbox goes).
    pub fn mounted(&self) -> Vec<PathBuf> {
        self.mounted
            .lock()
            .map(|m| m.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl StorageHandler for EphemeralHandler {
    fn driver(&self) -> &'static str {
        DRIVER
    }

    async fn add(
        &self,
        storage: &Storage,
        _container: &ContainerContext,
    ) -> Result<Prepared, StorageError> {
        let invalid = |detail: String| StorageError::Invalid {
            driver: DRIVER.to_owned(),
            detail,
        };
        let base = self.run_dir.join("sandbox/ephemeral");
        let path = super::guest_path(&storage.mount_point, &self.run_dir)
            .filter(|p| p.parent() == Some(base.as_path()))
            .ok_or_else(|| {
                invalid(format!(
                    "mount point {:?} is not a volume directly below \
                     /run/kata-containers/sandbox/ephemeral",
                    storage.mount_point
                ))
            })?;
        let group = fs_group(&storage.options).map_err(invalid)?;
        let mut mounted = self
            .mounted
            .lock()
            .map_err(|_| invalid("the mount table was poisoned by an earlier failure".into()))?;
        if !mounted.contains(&path) {
            crate::mount::tmpfs(&path, &[]).map_err(|e| StorageError::Io {
                path: path.clone(),
                source: std::io::Error::other(contrast_platforms::error_chain(&e)),
            })?;
            mounted.insert(path.clone());
            if let Some(gid) = group {
                apply_fs_group(&path, gid).map_err(|source| StorageError::Io {
                    path: path.clone(),
                    source,
                })?;
            }
        }
        Ok(Prepared::Volume { path })
    }

    fn teardown(&self) {
        if let Ok(mut mounted) = self.mounted.lock() {
            for path in std::mem::take(&mut *mounted) {
                crate::mount::unmount(&path);
            }
        }
    }
}
