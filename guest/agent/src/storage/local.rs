//! `local`: a disk-backed emptyDir, a directory below the sandbox's bundle in
//! `/run/kata-containers/shared/containers/<sandbox ID>/`, with the mode the runtime asks
//! for (`mode=0777`) and the pod's fsGroup. In the guest it lies in memory, like every
//! other file the pod writes outside an encrypted volume.

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;

use super::{ContainerContext, Prepared, StorageError, StorageHandler, apply_fs_group, fs_group};
use crate::proto::agent::Storage;

const DRIVER: &str = "local";

/// Creates each volume's directory.
#[derive(Debug)]
pub struct LocalHandler {
    run_dir: PathBuf,
}

impl LocalHandler {
    /// A handler for volumes below `<run_dir>/shared/containers`.
    pub fn new(run_dir: PathBuf) -> Self {
        LocalHandler { run_dir }
    }
}

#[async_trait::async_trait]
impl StorageHandler for LocalHandler {
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
        let base = self.run_dir.join("shared/containers");
        let path = super::guest_path(&storage.mount_point, &self.run_dir)
            .filter(|p| p.starts_with(&base) && p != &base)
            .ok_or_else(|| {
                invalid(format!(
                    "mount point {:?} is not below /run/kata-containers/shared/containers",
                    storage.mount_point
                ))
            })?;
        let mut mode = 0o755;
        for option in &storage.options {
            if let Some(octal) = option.strip_prefix("mode=") {
                mode = u32::from_str_radix(octal, 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| invalid(format!("{option} is not an octal mode")))?;
            }
        }
        let group = fs_group(&storage.options).map_err(invalid)?;
        let io = |source| StorageError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(&path).map_err(io)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
        if let Some(gid) = group {
            apply_fs_group(&path, gid).map_err(io)?;
        }
        Ok(Prepared::Volume { path })
    }
}
