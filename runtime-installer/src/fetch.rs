//! Fetching files (copy or download), verifying their digest, and writing them atomically.
//!
//! Images are hundreds of MiB, so content is streamed: hashed while it is written to a
//! temporary file in the target's directory, which replaces the target (rename) only
//! once the digest matched and the data is on disk ([`contrast_atomic_file::AtomicFile`];
//! a crashed run's temporary files are removed first).

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_lc_rs::digest;
use contrast_atomic_file::{AtomicFile, remove_stale_temporaries};

use crate::InstallError;
use crate::config::{Source, Sri, SriAlgorithm};

const CHUNK: usize = 1 << 20;

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
        file.write_all(chunk).map_err(InstallError::from)
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
