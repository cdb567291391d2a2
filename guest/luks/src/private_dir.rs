//! A private directory (mode 0700, fresh random name) for the header copy, removed on drop.
//!
//! The header is copied here before it is checked, and libcryptsetup opens the volume
//! from this copy, so the host cannot change the header between our check and its use.
//! The base should be a tmpfs inside the guest (`/run`, `$XDG_RUNTIME_DIR`): memory the
//! host cannot read or write.

use std::fs::{DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::error::LuksError;

/// The default base: `$XDG_RUNTIME_DIR` if set, else `/run`.
pub fn default_base() -> PathBuf {
    std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/run"), PathBuf::from)
}

/// A directory only this user can enter; it and its content are removed on drop.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// Creates `<base>/contrast-luks-<16 random hex>` with mode 0700. Fails if the name
    /// exists (it is never reused), if `base` does not exist, or if the new directory
    /// does not end up with mode 0700.
    pub fn create(base: &Path) -> Result<Self, LuksError> {
        let mut random = [0u8; 8];
        aws_lc_rs::rand::fill(&mut random).map_err(|_| LuksError::Random)?;
        let path = base.join(format!("contrast-luks-{}", hex::encode(random)));
        let err = |source| LuksError::PrivateDir {
            path: path.clone(),
            source,
        };
        DirBuilder::new().mode(0o700).create(&path).map_err(err)?;
        let dir = Self { path };
        // The umask may have cleared bits; 0700 exactly, whatever it is.
        std::fs::set_permissions(&dir.path, Permissions::from_mode(0o700)).map_err(|source| {
            LuksError::PrivateDir {
                path: dir.path.clone(),
                source,
            }
        })?;
        let meta =
            std::fs::symlink_metadata(&dir.path).map_err(|source| LuksError::PrivateDir {
                path: dir.path.clone(),
                source,
            })?;
        // We created it (create fails if the name exists), so it is ours; check the rest.
        if !meta.is_dir() || meta.mode() & 0o7777 != 0o700 {
            return Err(LuksError::PrivateDir {
                path: dir.path.clone(),
                source: std::io::Error::other("not a directory with mode 0700"),
            });
        }
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "could not remove the private header directory");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn creates_0700_and_removes_on_drop() {
        let base = tempfile::tempdir().unwrap();
        let dir = PrivateDir::create(base.path()).unwrap();
        let path = dir.path().to_owned();
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o700);
        std::fs::write(path.join("header"), b"x").unwrap();
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn names_are_fresh() {
        let base = tempfile::tempdir().unwrap();
        let a = PrivateDir::create(base.path()).unwrap();
        let b = PrivateDir::create(base.path()).unwrap();
        assert_ne!(a.path(), b.path());
    }

    #[test]
    fn missing_base_is_an_error() {
        let base = tempfile::tempdir().unwrap();
        let missing = base.path().join("nope");
        assert!(matches!(
            PrivateDir::create(&missing),
            Err(LuksError::PrivateDir { .. })
        ));
    }
}
