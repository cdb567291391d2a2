//! The directory a simulated vendor keeps its root keys in.
//!
//! Files are written atomically (temporary file, fsync, rename, fsync of the directory),
//! private keys with mode 0600, and read back whole.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
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
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| SimError::io(&tmp, e))?;
        file.write_all(bytes).map_err(|e| SimError::io(&tmp, e))?;
        file.sync_all().map_err(|e| SimError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| SimError::io(&path, e))?;
        fs::File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| SimError::io(&self.dir, e))
    }

    /// Reads a private key; the buffer is wiped when dropped.
    pub fn read_secret(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, SimError> {
        let path = self.dir.join(name);
        fs::read(&path)
            .map(Zeroizing::new)
            .map_err(|e| SimError::io(&path, e))
    }
}
