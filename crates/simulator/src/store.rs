//! The directory a simulated vendor keeps its root keys in.
//!
//! Files are written atomically (`contrast_atomic_file`: temporary file, fsync, rename,
//! fsync of the directory), private keys with mode 0600, and read back whole.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use crate::SimError;

/// A directory of simulator keys.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// Uses `dir`, creating it (mode 0700) if needed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, SimError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| SimError::io(&dir, e))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| SimError::io(&dir, e))?;
        Ok(KeyStore { dir })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.dir.join(name).exists()
    }

    /// Writes a private key atomically with mode 0600.
    pub fn write_secret(&self, name: &str, bytes: &[u8]) -> Result<(), SimError> {
        contrast_atomic_file::write(&self.dir.join(name), bytes, 0o600)
            .map_err(|e| SimError::io(&e.path, e.source))
    }

    /// Writes a public file (a certificate) atomically with mode 0644.
    pub fn write_public(&self, name: &str, bytes: &[u8]) -> Result<(), SimError> {
        contrast_atomic_file::write(&self.dir.join(name), bytes, 0o644)
            .map_err(|e| SimError::io(&e.path, e.source))
    }

    /// Reads a private key; the buffer is wiped when dropped.
    pub fn read_secret(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, SimError> {
        let path = self.dir.join(name);
        fs::read(&path)
            .map(Zeroizing::new)
            .map_err(|e| SimError::io(&path, e))
    }
}
