//! Fetching files (copy or download), verifying their digest, and writing them atomically.
//!
//! Images are hundreds of MiB, so content is streamed: hashed while it is written to a
//! temporary file in the target's directory, which replaces the target (rename) only
//! once the digest matched and the data is on disk. `contrast_seedengine::keys::
//! write_file_atomic` does the same for content held in memory; this is its streaming
//! variant (same temporary-name scheme, so leftovers of either are recognised).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::digest;

use crate::InstallError;
use crate::config::{Source, Sri, SriAlgorithm};

const CHUNK: usize = 1 << 20;

/// A temporary file next to its target that becomes the target on [`commit`](Self::commit)
/// and is removed when dropped before that.
#[derive(Debug)]
pub struct AtomicFile {
    file: fs::File,
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// Creates the temporary file for `target` (whose directory must exist).
    pub fn create(target: &Path) -> Result<Self, InstallError> {
        let (dir, name) = split(target)?;
        let mut suffix = [0u8; 8];
        aws_lc_rs::rand::fill(&mut suffix).map_err(|_| InstallError::Random)?;
        let tmp = dir.join(format!(".{name}.{}.tmp", hex::encode(suffix)));
        // create_new: never write through something already at the temporary path.
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_error("creating", &tmp))?;
        Ok(AtomicFile {
            file,
            tmp,
            target: target.to_path_buf(),
            committed: false,
        })
    }

    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), InstallError> {
        self.file
            .write_all(bytes)
            .map_err(io_error("writing", &self.tmp))
    }

    /// Syncs the data, sets `mode`, renames over the target and syncs the directory.
    pub fn commit(mut self, mode: u32) -> Result<(), InstallError> {
        self.file
            .sync_all()
            .map_err(io_error("syncing", &self.tmp))?;
        fs::set_permissions(&self.tmp, fs::Permissions::from_mode(mode))
            .map_err(io_error("setting the mode of", &self.tmp))?;
        fs::rename(&self.tmp, &self.target).map_err(io_error("renaming to", &self.target))?;
        self.committed = true;
        sync_dir(&self.target)
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

fn split(target: &Path) -> Result<(&Path, String), InstallError> {
    match (target.parent(), target.file_name()) {
        (Some(dir), Some(name)) => Ok((dir, name.to_string_lossy().into_owned())),
        _ => Err(InstallError::Io {
            operation: "writing",
            path: target.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
        }),
    }
}

pub(crate) fn sync_dir(path: &Path) -> Result<(), InstallError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("syncing the directory", dir))
}

pub(crate) fn io_error(
    operation: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> InstallError {
    let path = path.to_path_buf();
    move |source| InstallError::Io {
        operation,
        path,
        source,
    }
}

/// Removes temporary files a crashed earlier write of `target` left behind
/// (`.<name>.<16 hex>.tmp`, the scheme of [`AtomicFile`] and seedengine's writer).
pub fn remove_stale_temporaries(target: &Path) -> Result<(), InstallError> {
    let (dir, name) = split(target)?;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(InstallError::Io {
                operation: "listing",
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let prefix = format!(".{name}.");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|n| n.strip_suffix(".tmp"))
        else {
            continue;
        };
        if rest.len() == 16 && rest.bytes().all(|b| b.is_ascii_hexdigit()) {
            tracing::info!(path = %entry.path().display(), "removing a stale temporary file");
            fs::remove_file(entry.path()).map_err(io_error("removing", &entry.path()))?;
        }
    }
    Ok(())
}

/// Reads remote content for [`fetch`]; created once per run, only when needed.
#[derive(Debug)]
pub struct Downloader {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Downloader {
    /// A client with connect and read timeouts (a stalled transfer fails, not hangs).
    pub fn new() -> Result<Self, InstallError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| InstallError::Io {
                operation: "starting the download runtime",
                path: PathBuf::new(),
                source,
            })?;
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|source| InstallError::HttpClient { source })?;
        Ok(Downloader { runtime, client })
    }

    /// Streams the body of `url` into `sink`.
    fn get(
        &self,
        url: &str,
        sink: &mut dyn FnMut(&[u8]) -> Result<(), InstallError>,
    ) -> Result<(), InstallError> {
        let download = |source| InstallError::Download {
            url: url.to_owned(),
            source,
        };
        self.runtime.block_on(async {
            let mut response = self.client.get(url).send().await.map_err(download)?;
            let status = response.status();
            if !status.is_success() {
                return Err(InstallError::HttpStatus {
                    url: url.to_owned(),
                    status: status.as_u16(),
                });
            }
            while let Some(chunk) = response.chunk().await.map_err(download)? {
                sink(&chunk)?;
            }
            Ok(())
        })
    }
}

/// Streams `source` into `sink`.
fn read_source(
    source: &Source,
    downloader: &mut Option<Downloader>,
    sink: &mut dyn FnMut(&[u8]) -> Result<(), InstallError>,
) -> Result<(), InstallError> {
    match source {
        Source::File(path) => {
            let mut file = fs::File::open(path).map_err(io_error("opening", path))?;
            let mut buffer = vec![0u8; CHUNK];
            loop {
                let n = file.read(&mut buffer).map_err(io_error("reading", path))?;
                if n == 0 {
                    return Ok(());
                }
                sink(&buffer[..n])?;
            }
        }
        Source::Http(url) => {
            let client = match downloader {
                Some(client) => client,
                None => downloader.insert(Downloader::new()?),
            };
            client.get(url, sink)
        }
    }
}

/// The digest of a local file, or `None` if it is not a regular file.
pub fn digest_file(path: &Path, algorithm: SriAlgorithm) -> Result<Option<Vec<u8>>, InstallError> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_file() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(InstallError::Io {
                operation: "inspecting",
                path: path.to_path_buf(),
                source,
            });
        }
    }
    let mut context = digest::Context::new(algorithm.digest_algorithm());
    read_source(&Source::File(path.to_path_buf()), &mut None, &mut |chunk| {
        context.update(chunk);
        Ok(())
    })?;
    Ok(Some(context.finish().as_ref().to_vec()))
}

/// What [`fetch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The target was written.
    Written,
    /// The target already had the content and mode.
    Unchanged,
    /// The target had the content; only its mode was changed.
    ModeChanged,
    /// Dry run: the target would be written.
    WouldWrite,
    /// Dry run: the target has the content but its mode would be changed.
    WouldChangeMode,
}

/// Puts `source`'s content at `target` (a local path whose parent exists) with `mode`,
/// unless it is there already. With `integrity`, the content is checked before the
/// target is replaced and an existing target with that digest is left alone without
/// fetching. Without it, the source is hashed first to compare it with the target.
/// A dry run only compares.
pub fn fetch(
    source: &Source,
    target: &Path,
    integrity: Option<&Sri>,
    mode: u32,
    downloader: &mut Option<Downloader>,
    dry_run: bool,
) -> Result<FetchOutcome, InstallError> {
    let expected = match integrity {
        Some(sri) => sri.clone(),
        None => {
            let mut context = digest::Context::new(&digest::SHA256);
            read_source(source, downloader, &mut |chunk| {
                context.update(chunk);
                Ok(())
            })?;
            Sri {
                algorithm: SriAlgorithm::Sha256,
                digest: context.finish().as_ref().to_vec(),
            }
        }
    };
    if digest_file(target, expected.algorithm)?.as_deref() == Some(&expected.digest[..]) {
        let current = fs::symlink_metadata(target)
            .map_err(io_error("inspecting", target))?
            .permissions()
            .mode()
            & 0o7777;
        if current == mode {
            return Ok(FetchOutcome::Unchanged);
        }
        if dry_run {
            return Ok(FetchOutcome::WouldChangeMode);
        }
        fs::set_permissions(target, fs::Permissions::from_mode(mode))
            .map_err(io_error("setting the mode of", target))?;
        return Ok(FetchOutcome::ModeChanged);
    }

    if dry_run {
        return Ok(FetchOutcome::WouldWrite);
    }
    remove_stale_temporaries(target)?;
    let mut file = AtomicFile::create(target)?;
    let mut context = digest::Context::new(expected.algorithm.digest_algorithm());
    read_source(source, downloader, &mut |chunk| {
        context.update(chunk);
        file.write(chunk)
    })?;
    let actual = context.finish();
    if actual.as_ref() != expected.digest.as_slice() {
        // Dropping `file` removes the temporary file: nothing is half-written.
        return Err(InstallError::IntegrityMismatch {
            source_url: source.to_string(),
            path: target.to_path_buf(),
            expected: expected.to_string(),
            actual: Sri {
                algorithm: expected.algorithm,
                digest: actual.as_ref().to_vec(),
            }
            .to_string(),
        });
    }
    file.commit(mode)?;
    Ok(FetchOutcome::Written)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sha256_sri(bytes: &[u8]) -> Sri {
        Sri {
            algorithm: SriAlgorithm::Sha256,
            digest: digest::digest(&digest::SHA256, bytes).as_ref().to_vec(),
        }
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn copies_checks_and_skips_when_present() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let content = vec![0x5a; 3 * CHUNK + 17];
        fs::write(&src, &content).unwrap();
        let target = dir.path().join("out/target");
        fs::create_dir(dir.path().join("out")).unwrap();
        let sri = sha256_sri(&content);
        let source = Source::File(src);
        let mut none = None;
        assert_eq!(
            fetch(&source, &target, Some(&sri), 0o755, &mut none, false).unwrap(),
            FetchOutcome::Written
        );
        assert_eq!(fs::read(&target).unwrap(), content);
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        assert_eq!(
            fetch(&source, &target, Some(&sri), 0o755, &mut none, false).unwrap(),
            FetchOutcome::Unchanged
        );
        assert_eq!(
            fetch(&source, &target, None, 0o644, &mut none, false).unwrap(),
            FetchOutcome::ModeChanged
        );
        assert!(none.is_none(), "no download client for local files");
        assert_eq!(listing(&dir.path().join("out")), ["target"]);
    }

    #[test]
    fn a_wrong_digest_leaves_the_old_target_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::write(&src, b"new content").unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let target = out.join("target");
        fs::write(&target, b"old content").unwrap();
        let wrong = sha256_sri(b"something else");
        let err = fetch(
            &Source::File(src),
            &target,
            Some(&wrong),
            0o644,
            &mut None,
            false,
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains(&wrong.to_string()), "{message}");
        assert!(
            message.contains(&sha256_sri(b"new content").to_string()),
            "{message}"
        );
        assert_eq!(fs::read(&target).unwrap(), b"old content");
        assert_eq!(listing(&out), ["target"]);
    }

    #[test]
    fn stale_temporaries_are_removed_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("kernel");
        fs::write(dir.path().join(".kernel.0123456789abcdef.tmp"), b"x").unwrap();
        fs::write(dir.path().join(".kernel.notours.tmp"), b"x").unwrap();
        fs::write(dir.path().join(".other.0123456789abcdef.tmp"), b"x").unwrap();
        remove_stale_temporaries(&target).unwrap();
        assert_eq!(
            listing(dir.path()),
            [".kernel.notours.tmp", ".other.0123456789abcdef.tmp"]
        );
    }

    #[test]
    fn a_missing_source_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = fetch(
            &Source::File(dir.path().join("absent")),
            &dir.path().join("t"),
            None,
            0o644,
            &mut None,
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("absent"), "{err}");
    }
}
