//! A store in a directory: one file per key (docs/protocol.md §2.4, filesystem backend).

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::StoreError;
use crate::store::{Store, split_key, validate_key};

/// Name of the lock file in the store directory.
const LOCK_FILE: &str = ".lock";
/// Prefix of temporary files. Key names cannot start with `.`, so these never collide with
/// a stored value.
const TEMP_PREFIX: &str = ".tmp-";
/// Files hold no secrets (the history is public by design), so they are world-readable.
const FILE_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// A [`Store`] in a directory: the value of `<class>/<name>` is the file
/// `<dir>/<class>/<name>`.
///
/// Crash safety: a value is written to a temporary file in the same directory, synced,
/// renamed over the final name and the directory synced. A final file is therefore always
/// complete — the old value or the new one — whenever the process dies. Temporary files
/// left by a crash are never read and are removed by the next [`open`](Self::open).
///
/// Concurrency: every write (set and compare-and-swap) holds this store's mutex and an
/// exclusive advisory lock on `<dir>/.lock`, so threads of this process and other
/// processes (or other `FsStore`s in this process) sharing the directory are serialised.
/// Reads take no lock: a rename is atomic.
#[derive(Debug)]
pub struct FsStore {
    root: PathBuf,
    /// The open lock file. The mutex serialises this store's writers; the advisory lock on
    /// the file serialises everyone else (it belongs to the open file, so it cannot tell
    /// this store's threads apart — hence the mutex).
    lock_file: Mutex<File>,
    /// Makes temporary file names unique within this process.
    temp_counter: AtomicU64,
}

/// Holds the write lock; releases the advisory lock when dropped.
struct WriteLock<'a> {
    file: MutexGuard<'a, File>,
}

impl Drop for WriteLock<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.file.unlock() {
            // Closing the file would release it too, but the file stays open for the
            // store's lifetime; other processes would wait until then.
            tracing::warn!(%error, "cannot release the history store's lock file");
        }
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync directory", dir))
}

impl FsStore {
    /// Opens (creating if needed) the store in `dir` and removes temporary files a crashed
    /// writer left behind.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let root = dir.as_ref().to_path_buf();
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&root)
            .map_err(io_error("create directory", &root))?;
        // A freshly created store directory must survive a crash too.
        if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty())
            && let Err(error) = sync_dir(parent)
        {
            tracing::warn!(%error, "cannot sync the history store's parent directory");
        }
        let lock_path = root.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&lock_path)
            .map_err(io_error("open lock file", &lock_path))?;
        let store = Self {
            root,
            lock_file: Mutex::new(lock_file),
            temp_counter: AtomicU64::new(0),
        };
        {
            // Every writer holds the lock while its temporary file exists, so under the
            // lock any temporary file is a crashed writer's.
            let _lock = store.write_lock()?;
            store.remove_temp_files()?;
        }
        Ok(store)
    }

    /// The store directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file that holds `key` (whether or not it exists).
    pub fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        Ok(self.root.join(key))
    }

    fn write_lock(&self) -> Result<WriteLock<'_>, StoreError> {
        // The guarded file is only ever locked and unlocked, which a panicking holder
        // cannot leave half done (the guard's drop unlocks during unwinding).
        let file = self
            .lock_file
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        file.lock()
            .map_err(io_error("lock", &self.root.join(LOCK_FILE)))?;
        Ok(WriteLock { file })
    }

    fn remove_temp_files(&self) -> Result<(), StoreError> {
        let entries = fs::read_dir(&self.root).map_err(io_error("list", &self.root))?;
        for entry in entries {
            let entry = entry.map_err(io_error("list", &self.root))?;
            let class_dir = entry.path();
            let is_class = entry
                .file_name()
                .to_str()
                .is_some_and(|name| validate_key(&format!("{name}/x")).is_ok());
            if !is_class || !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let files = fs::read_dir(&class_dir).map_err(io_error("list", &class_dir))?;
            for file in files {
                let file = file.map_err(io_error("list", &class_dir))?;
                if file
                    .file_name()
                    .as_encoded_bytes()
                    .starts_with(TEMP_PREFIX.as_bytes())
                {
                    let path = file.path();
                    tracing::info!(path = %path.display(), "removing a crashed writer's temporary file");
                    fs::remove_file(&path).map_err(io_error("remove", &path))?;
                }
            }
        }
        Ok(())
    }

    fn ensure_dir(&self, dir: &Path) -> Result<(), StoreError> {
        match DirBuilder::new().mode(DIR_MODE).create(dir) {
            Ok(()) => {
                fs::set_permissions(dir, Permissions::from_mode(DIR_MODE))
                    .map_err(io_error("set permissions of", dir))?;
                // The new directory entry must survive a crash before files go into it.
                sync_dir(&self.root)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(io_error("create directory", dir)(e)),
        }
    }

    /// Creates a fresh temporary file next to `path`.
    fn create_temp(&self, dir: &Path, name: &str) -> Result<(PathBuf, File), StoreError> {
        let pid = std::process::id();
        loop {
            let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
            let temp = dir.join(format!("{TEMP_PREFIX}{name}-{pid}-{n}"));
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(FILE_MODE)
                .open(&temp)
            {
                Ok(file) => return Ok((temp, file)),
                // A crashed process with our pid left this name behind; take the next one.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_error("create temporary file", &temp)(e)),
            }
        }
    }

    /// Replaces the file of `key` atomically. The caller holds the write lock.
    fn write_file(&self, key: &str, value: &[u8], _lock: &WriteLock<'_>) -> Result<(), StoreError> {
        let (class, name) = split_key(key)?;
        let dir = self.root.join(class);
        self.ensure_dir(&dir)?;
        let target = dir.join(name);
        let (temp, mut file) = self.create_temp(&dir, name)?;
        let written = file
            .set_permissions(Permissions::from_mode(FILE_MODE))
            .map_err(io_error("set permissions of", &temp))
            .and_then(|()| file.write_all(value).map_err(io_error("write", &temp)))
            .and_then(|()| file.sync_all().map_err(io_error("sync", &temp)))
            .and_then(|()| {
                drop(file);
                fs::rename(&temp, &target).map_err(io_error("rename temporary file to", &target))
            });
        if let Err(error) = written {
            if let Err(e) = fs::remove_file(&temp)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(path = %temp.display(), error = %e, "cannot remove temporary file");
            }
            return Err(error);
        }
        // The rename is durable only once the directory is.
        sync_dir(&dir)
    }
}

impl Store for FsStore {
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let path = self.path_of(key)?;
        fs::read(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound {
                key: key.to_owned(),
            },
            _ => io_error("read", &path)(e),
        })
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        validate_key(key)?;
        let lock = self.write_lock()?;
        self.write_file(key, value, &lock)
    }

    fn has(&self, key: &str) -> Result<bool, StoreError> {
        let path = self.path_of(key)?;
        match fs::symlink_metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("inspect", &path)(e)),
        }
    }

    fn compare_and_swap(&self, key: &str, old: &[u8], new: &[u8]) -> Result<(), StoreError> {
        validate_key(key)?;
        let lock = self.write_lock()?;
        let matches = match self.get(key) {
            Ok(current) => current == old,
            Err(StoreError::NotFound { .. }) => old.is_empty(),
            Err(e) => return Err(e),
        };
        if !matches {
            return Err(StoreError::Conflict {
                key: key.to_owned(),
            });
        }
        self.write_file(key, new, &lock)
    }
}
