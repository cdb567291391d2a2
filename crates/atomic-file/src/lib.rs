//! Writing files so that a reader sees the old file or the whole new one, never a part:
//! the project's one atomic write.
//!
//! [`write`] (content in memory) and [`AtomicFile`] (content streamed, e.g. a download
//! checked against its digest before it replaces anything) take the same steps:
//!
//! 1. create `.<name>.<16 hex>.tmp` in the target's directory: the suffix comes from the
//!    system random generator and the file is created exclusively (`O_CREAT | O_EXCL`), so
//!    nothing already at that path, a planted symbolic link included, is followed or
//!    reused; its mode is 0600 while it is written;
//! 2. write, set the final mode on the open file (exactly, whatever the umask), fsync;
//! 3. rename over the target (an existing file is replaced, and its mode with it);
//! 4. fsync the directory, so that the rename survives a crash.
//!
//! A failure before the rename removes the temporary file and leaves the target as it
//! was. [`write_creating_dir`] first creates missing directories (mode [`DIR_MODE`]).
//! [`remove_stale_temporaries`] removes what a crashed writer left behind, recognised by
//! the name scheme.

use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// The mode of the directories [`write_creating_dir`] creates (narrowed by the umask).
pub const DIR_MODE: u32 = 0o755;

/// The mode of the temporary file while it is written.
const TEMPORARY_MODE: u32 = 0o600;

/// An atomic write failed: what was being done to which file or directory. The operating
/// system's error is the [source](std::error::Error::source), not part of the message.
#[derive(Debug, thiserror::Error)]
#[error("{step} {}", path.display())]
pub struct WriteError {
    /// What was being done: `creating the directory`, `creating`, `writing`, `setting the
    /// mode of`, `syncing`, `renaming to`, `syncing the directory`, `listing`, `removing`, …
    pub step: &'static str,
    /// The file or directory it was done to: the temporary file for the steps before the
    /// rename, the target for `renaming to`.
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: io::Error,
}

impl WriteError {
    fn at(step: &'static str, path: &Path) -> impl FnOnce(io::Error) -> WriteError {
        let path = path.to_path_buf();
        move |source| WriteError { step, path, source }
    }
}

/// Writes `bytes` to `path` atomically with `mode` (see the crate documentation). The
/// directory must exist.
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes)?;
    file.commit(mode)
}

/// [`write`], creating the directory and its missing parents first (mode [`DIR_MODE`]).
pub fn write_creating_dir(path: &Path, bytes: &[u8], mode: u32) -> Result<(), WriteError> {
    let (dir, _) = split(path, "writing")?;
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(&dir)
        .map_err(WriteError::at("creating the directory", &dir))?;
    write(path, bytes, mode)
}

/// A temporary file next to its target that replaces the target on
/// [`commit`](Self::commit) and is removed when dropped before that.
#[derive(Debug)]
pub struct AtomicFile {
    file: File,
    tmp: PathBuf,
    dir: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// Creates the temporary file for `target`, whose directory must exist.
    pub fn create(target: &Path) -> Result<Self, WriteError> {
        let (dir, name) = split(target, "writing")?;
        let mut suffix = [0u8; 8];
        aws_lc_rs::rand::fill(&mut suffix).map_err(|_| WriteError {
            step: "choosing a temporary file name for",
            path: target.to_path_buf(),
            source: io::Error::other("the system random number generator failed"),
        })?;
        let mut tmp_name = OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{:016x}.tmp", u64::from_be_bytes(suffix)));
        let tmp = dir.join(tmp_name);
        // create_new: never write through or reuse something already at that path.
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(TEMPORARY_MODE)
            .open(&tmp)
            .map_err(WriteError::at("creating", &tmp))?;
        Ok(AtomicFile {
            file,
            tmp,
            dir,
            target: target.to_path_buf(),
            committed: false,
        })
    }

    /// Appends `bytes`.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.file
            .write_all(bytes)
            .map_err(WriteError::at("writing", &self.tmp))
    }

    /// Sets `mode`, syncs the data, renames over the target and syncs the directory.
    pub fn commit(mut self, mode: u32) -> Result<(), WriteError> {
        // On the open file: the umask does not apply, and a read-only mode (0400) does not
        // stop a descriptor that is already open for writing.
        self.file
            .set_permissions(Permissions::from_mode(mode))
            .map_err(WriteError::at("setting the mode of", &self.tmp))?;
        self.file
            .sync_all()
            .map_err(WriteError::at("syncing", &self.tmp))?;
        fs::rename(&self.tmp, &self.target).map_err(WriteError::at("renaming to", &self.target))?;
        self.committed = true;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(WriteError::at("syncing the directory", &self.dir))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Removes the temporary files a crashed earlier write of `target` left behind
/// (`.<name>.<16 hex>.tmp`); other files are left alone. A missing directory has none.
pub fn remove_stale_temporaries(target: &Path) -> Result<(), WriteError> {
    let (dir, name) = split(target, "removing the temporary files of")?;
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(WriteError {
                step: "listing",
                path: dir,
                source,
            });
        }
    };
    for entry in entries.flatten() {
        if is_temporary_of(name, &entry.file_name()) {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing a stale temporary file");
            fs::remove_file(&path).map_err(WriteError::at("removing", &path))?;
        }
    }
    Ok(())
}

/// Whether `candidate` is the name of a temporary file of [`AtomicFile`] for `name`.
fn is_temporary_of(name: &OsStr, candidate: &OsStr) -> bool {
    candidate
        .as_encoded_bytes()
        .strip_prefix(b".")
        .and_then(|rest| rest.strip_prefix(name.as_encoded_bytes()))
        .and_then(|rest| rest.strip_prefix(b"."))
        .and_then(|rest| rest.strip_suffix(b".tmp"))
        .is_some_and(|suffix| suffix.len() == 16 && suffix.iter().all(u8::is_ascii_hexdigit))
}

/// The directory of `target` (`.` for a bare file name) and its file name.
fn split<'a>(target: &'a Path, step: &'static str) -> Result<(PathBuf, &'a OsStr), WriteError> {
    let name = target.file_name().ok_or_else(|| WriteError {
        step,
        path: target.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
    })?;
    let dir = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((dir, name))
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn sets_the_mode_replaces_the_target_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.pem");
        for (content, file_mode) in [
            (&b"first"[..], 0o644),
            (&b"second"[..], 0o600),
            (&b""[..], 0o400),
        ] {
            write(&path, content, file_mode).unwrap();
            assert_eq!(fs::read(&path).unwrap(), content);
            assert_eq!(mode(&path), file_mode);
            assert_eq!(listing(dir.path()), ["secret.pem"]);
        }
        // A file someone else wrote, with a wider mode, is replaced with the mode given.
        fs::remove_file(&path).unwrap();
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        write(&path, b"new content", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new content");
        assert_eq!(mode(&path), 0o600);
        // Modes the umask would take away are set too.
        write(&path, b"x", 0o775).unwrap();
        assert_eq!(mode(&path), 0o775);
    }

    #[test]
    fn creates_missing_directories_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/key.pem");
        let err = write(&path, b"x", 0o400).unwrap_err();
        assert_eq!(err.step, "creating");
        assert!(err.to_string().contains("a/b/.key.pem."), "{err}");
        assert!(!dir.path().join("a").exists());

        write_creating_dir(&path, b"first", 0o400).unwrap();
        write_creating_dir(&path, b"second", 0o400).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        assert_eq!(mode(&path), 0o400);
        assert_eq!(listing(&dir.path().join("a/b")), ["key.pem"]);

        // A parent that is a file cannot be created; the error names it.
        let blocked = dir.path().join("a/b/key.pem/inner");
        let err = write_creating_dir(&blocked, b"x", 0o644).unwrap_err();
        assert_eq!(err.step, "creating the directory");
        assert_eq!(err.path, path);
    }

    #[test]
    fn a_failed_write_leaves_the_target_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A file cannot replace a directory: the rename, after every other step, fails.
        let target = dir.path().join("target");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("inside"), b"kept").unwrap();
        let err = write(&target, b"new", 0o644).unwrap_err();
        assert_eq!(err.step, "renaming to");
        assert_eq!(err.path, target);
        assert_eq!(fs::read(target.join("inside")).unwrap(), b"kept");
        assert_eq!(listing(dir.path()), ["target"]);

        // A streamed file dropped before its commit replaces nothing.
        let file_target = dir.path().join("file");
        fs::write(&file_target, b"old content").unwrap();
        let mut file = AtomicFile::create(&file_target).unwrap();
        file.write_all(b"half of the new ").unwrap();
        assert_eq!(
            listing(dir.path()).len(),
            3,
            "the temporary file exists while written"
        );
        drop(file);
        assert_eq!(fs::read(&file_target).unwrap(), b"old content");
        assert_eq!(listing(dir.path()), ["file", "target"]);
    }

    #[test]
    fn errors_name_the_step_and_path_and_keep_the_os_error_as_source() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing/secret.pem");
        let err = write(&missing, b"x", 0o600).unwrap_err();
        let message = err.to_string();
        assert!(message.starts_with("creating "), "{message}");
        assert!(message.contains("missing"), "{message}");
        let source = err.source().unwrap().to_string();
        assert!(!message.contains(&source), "{message} repeats {source}");
        assert_eq!(err.source.kind(), io::ErrorKind::NotFound);

        let err = write(Path::new("/"), b"x", 0o600).unwrap_err();
        assert_eq!(err.source.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn streams_in_chunks_and_commits_with_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("kernel");
        let mut file = AtomicFile::create(&target).unwrap();
        for chunk in [&b"abc"[..], b"", b"def"] {
            file.write_all(chunk).unwrap();
        }
        assert!(!target.exists(), "nothing is visible before the commit");
        file.commit(0o755).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"abcdef");
        assert_eq!(mode(&target), 0o755);
        assert_eq!(listing(dir.path()), ["kernel"]);
    }

    #[test]
    fn stale_temporaries_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("kernel");
        fs::write(dir.path().join(".kernel.0123456789abcdef.tmp"), b"x").unwrap();
        fs::write(dir.path().join(".kernel.notours.tmp"), b"x").unwrap();
        fs::write(dir.path().join(".other.0123456789abcdef.tmp"), b"x").unwrap();
        fs::write(&target, b"kept").unwrap();
        remove_stale_temporaries(&target).unwrap();
        assert_eq!(
            listing(dir.path()),
            [
                ".kernel.notours.tmp",
                ".other.0123456789abcdef.tmp",
                "kernel"
            ]
        );
        // A missing directory has nothing to remove.
        remove_stale_temporaries(&dir.path().join("absent/kernel")).unwrap();
    }

    #[test]
    fn the_temporary_file_of_a_crashed_write_is_recognised() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("rootfs.img");
        let file = AtomicFile::create(&target).unwrap();
        let names = listing(dir.path());
        assert_eq!(names.len(), 1);
        assert!(
            is_temporary_of(OsStr::new("rootfs.img"), OsStr::new(&names[0])),
            "{names:?}"
        );
        // As if the process had died: the file stays behind.
        std::mem::forget(file);
        remove_stale_temporaries(&target).unwrap();
        assert!(listing(dir.path()).is_empty());
        // Two writers never share a temporary name.
        let (a, b) = (
            AtomicFile::create(&target).unwrap(),
            AtomicFile::create(&target).unwrap(),
        );
        assert_ne!(a.tmp, b.tmp);
    }

    #[test]
    fn a_concurrent_reader_sees_the_old_or_the_whole_new_file_never_a_part() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certChain.pem");
        let versions: Vec<Vec<u8>> = (0..50u8).map(|i| vec![b'a' + i % 26; 256 * 1024]).collect();
        write(&path, &versions[0], 0o444).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (path, stop) = (path.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0u32;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let content = fs::read(&path).unwrap();
                    assert_eq!(content.len(), 256 * 1024, "a partial file was visible");
                    assert!(content.iter().all(|b| *b == content[0]), "mixed content");
                    reads += 1;
                }
                reads
            })
        };
        for version in &versions[1..] {
            write(&path, version, 0o444).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(reader.join().unwrap() > 0);
    }
}
