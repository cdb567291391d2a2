//! The on-disk cache of vendor answers: one file per answer, written whole or not at all.
//! Nothing read from it is trusted: callers check cached bytes as they check fetched ones.

use std::path::{Path, PathBuf};

/// A cache directory.
#[derive(Debug, Clone)]
pub struct DiskCache {
    dir: PathBuf,
}

impl DiskCache {
    /// A cache in `dir` (created when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        DiskCache { dir: dir.into() }
    }

    /// The directory `CONTRAST_CACHE_DIR` names, else `$XDG_CACHE_HOME/contrast`, else
    /// `$HOME/.cache/contrast`; `None` when none is set.
    pub fn from_environment() -> Option<Self> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        var("CONTRAST_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| var("XDG_CACHE_HOME").map(|d| Path::new(&d).join("contrast")))
            .or_else(|| var("HOME").map(|h| Path::new(&h).join(".cache").join("contrast")))
            .map(DiskCache::new)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bytes cached under `key` (a relative path of plain components).
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(key)?).ok()
    }

    /// Caches `bytes` under `key`, replacing what was there atomically.
    pub fn put(&self, key: &str, bytes: &[u8]) -> Result<(), contrast_atomic_file::WriteError> {
        let Some(path) = self.path(key) else {
            return Ok(());
        };
        contrast_atomic_file::write_creating_dir(&path, bytes, 0o644)
    }

    /// The file for `key`; `None` for a key that would leave the directory.
    fn path(&self, key: &str) -> Option<PathBuf> {
        let plain = key.split('/').all(|c| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        });
        plain.then(|| self.dir.join(key))
    }
}
