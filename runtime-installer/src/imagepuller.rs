//! The image puller's registry credentials (docs/runtime.md §9): the optional Secret
//! `contrast-node-installer-imagepuller-config`, mounted as a directory, holds
//! `contrast-imagepuller.toml`. The installer copies it to the runtime directory on the
//! host, where the shim hands it to the pod VM; the guest parses and checks it, so here it
//! is only bounded in size and required to be UTF-8 text.
//!
//! The file is not measured: the host can read and change it. Images are pinned by digest
//! and hashed again in the guest, so a changed file can deny pulls but not swap images.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::InstallError;
use crate::hostpath::join_host;

/// The Secret's key, and the file's name in the mounted directory and on the host.
pub const FILE_NAME: &str = "contrast-imagepuller.toml";

/// The largest file accepted (1 MiB): credentials and CA certificates of a few registries
/// are a few KiB.
pub const MAX_SIZE: u64 = 1 << 20;

/// The installed file's mode: it holds credentials, and only root (the shim) reads it.
pub const MODE: u32 = 0o600;

/// The configuration as read from the mounted Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ImagePullerConfig {
    /// Where it was read from (for messages).
    pub source: PathBuf,
    /// The file's content, unchanged (credentials: never printed).
    pub text: String,
}

impl std::fmt::Debug for ImagePullerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImagePullerConfig")
            .field("source", &self.source)
            .field(
                "text",
                &format_args!("<{} bytes, redacted>", self.text.len()),
            )
            .finish()
    }
}

impl ImagePullerConfig {
    /// Reads `dir/contrast-imagepuller.toml`; `None` if the directory or the file does not
    /// exist (no Secret: the kubelet mounts an optional Secret that is absent as an empty
    /// directory). Refuses a file larger than [`MAX_SIZE`] or one that is not UTF-8.
    pub fn load(dir: &Path) -> Result<Option<Self>, InstallError> {
        let path = dir.join(FILE_NAME);
        // Follows the link the kubelet makes (`<key> -> ..data/<key>`).
        let file = match fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(InstallError::Io {
                    operation: "opening",
                    path,
                    source,
                });
            }
        };
        let mut bytes = Vec::new();
        file.take(MAX_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| InstallError::Io {
                operation: "reading",
                path: path.clone(),
                source,
            })?;
        if bytes.len() as u64 > MAX_SIZE {
            return Err(InstallError::ImagePullerConfigTooLarge {
                path,
                limit: MAX_SIZE,
            });
        }
        let text =
            String::from_utf8(bytes).map_err(|e| InstallError::ImagePullerConfigNotUtf8 {
                path: path.clone(),
                offset: e.utf8_error().valid_up_to(),
            })?;
        Ok(Some(ImagePullerConfig { source: path, text }))
    }

    /// The installed file's host path: `<base_dir>/etc/host-config/contrast-imagepuller.toml`.
    pub fn host_path(base_dir: &str) -> String {
        join_host(base_dir, &["etc", "host-config", FILE_NAME])
    }
}

/// What [`install_file`] or [`remove_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileOutcome {
    /// The file was written (or removed).
    Changed,
    /// The file already had the content and mode (or was absent).
    Unchanged,
    /// Dry run: the file would be written (or removed).
    WouldChange,
}

/// Puts `text` at `local` with [`MODE`], atomically, unless it is there already.
pub(crate) fn install_file(
    local: &Path,
    text: &str,
    dry_run: bool,
) -> Result<FileOutcome, InstallError> {
    match fs::symlink_metadata(local) {
        Ok(metadata)
            if metadata.is_file()
                && metadata.permissions().mode() & 0o7777 == MODE
                && fs::read(local).map_err(crate::fetch::io_error("reading", local))?
                    == text.as_bytes() =>
        {
            return Ok(FileOutcome::Unchanged);
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(InstallError::Io {
                operation: "inspecting",
                path: local.to_path_buf(),
                source,
            });
        }
    }
    if dry_run {
        return Ok(FileOutcome::WouldChange);
    }
    contrast_atomic_file::remove_stale_temporaries(local)?;
    contrast_atomic_file::write_creating_dir(local, text.as_bytes(), MODE)?;
    Ok(FileOutcome::Changed)
}

/// Removes a copy an earlier run installed, so that deleting the Secret takes effect.
pub(crate) fn remove_file(local: &Path, dry_run: bool) -> Result<FileOutcome, InstallError> {
    match fs::symlink_metadata(local) {
        Ok(_) if dry_run => Ok(FileOutcome::WouldChange),
        Ok(_) => {
            fs::remove_file(local).map_err(crate::fetch::io_error("removing", local))?;
            Ok(FileOutcome::Changed)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(FileOutcome::Unchanged),
        Err(source) => Err(InstallError::Io {
            operation: "inspecting",
            path: local.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::symlink;

    use super::*;

    const TOML: &str = "[registries.\"ghcr.io.\"]\nauth = \"dXNlcjpwYXNz\"\n";

    #[test]
    fn a_missing_directory_or_file_means_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            ImagePullerConfig::load(&dir.path().join("absent")).unwrap(),
            None
        );
        assert_eq!(ImagePullerConfig::load(dir.path()).unwrap(), None);
    }

    /// Laid out as the kubelet mounts a Secret: the key is a link into `..data`.
    #[test]
    fn reads_a_mounted_secret_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("..2025_01_01_00_00_00.000000000");
        fs::create_dir(&data).unwrap();
        fs::write(data.join(FILE_NAME), TOML).unwrap();
        symlink(data.file_name().unwrap(), dir.path().join("..data")).unwrap();
        symlink(format!("..data/{FILE_NAME}"), dir.path().join(FILE_NAME)).unwrap();
        let config = ImagePullerConfig::load(dir.path()).unwrap().unwrap();
        assert_eq!(config.text, TOML);
        assert_eq!(config.source, dir.path().join(FILE_NAME));
    }

    #[test]
    fn exactly_the_limit_is_accepted_one_byte_more_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let limit = usize::try_from(MAX_SIZE).unwrap();
        fs::write(dir.path().join(FILE_NAME), "#".repeat(limit)).unwrap();
        assert_eq!(
            ImagePullerConfig::load(dir.path())
                .unwrap()
                .unwrap()
                .text
                .len(),
            limit
        );
        fs::write(dir.path().join(FILE_NAME), "#".repeat(limit + 1)).unwrap();
        let err = ImagePullerConfig::load(dir.path()).unwrap_err();
        assert!(
            matches!(err, InstallError::ImagePullerConfigTooLarge { .. }),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains(&dir.path().join(FILE_NAME).display().to_string())
                && text.contains("1048576 bytes"),
            "{text}"
        );
    }

    #[test]
    fn non_utf8_is_refused_naming_the_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(FILE_NAME), b"auth = \"\xff\"").unwrap();
        let err = ImagePullerConfig::load(dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                InstallError::ImagePullerConfigNotUtf8 { offset: 8, .. }
            ),
            "{text}"
        );
        assert!(
            text.contains(&dir.path().join(FILE_NAME).display().to_string())
                && text.contains("UTF-8"),
            "{text}"
        );
    }

    #[test]
    fn a_directory_in_place_of_the_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join(FILE_NAME)).unwrap();
        let err = ImagePullerConfig::load(dir.path()).unwrap_err();
        assert!(matches!(err, InstallError::Io { .. }), "{err}");
        assert!(err.to_string().contains(FILE_NAME), "{err}");
    }

    #[test]
    fn host_path_is_under_the_runtime_directory() {
        assert_eq!(
            ImagePullerConfig::host_path("/opt/edgeless/h"),
            "/opt/edgeless/h/etc/host-config/contrast-imagepuller.toml"
        );
    }

    #[test]
    fn install_compares_mode_and_content_then_remove_removes() {
        let dir = tempfile::tempdir().unwrap();
        let local = dir.path().join("etc/host-config").join(FILE_NAME);
        assert_eq!(
            install_file(&local, TOML, true).unwrap(),
            FileOutcome::WouldChange
        );
        assert!(!local.exists());
        assert_eq!(
            install_file(&local, TOML, false).unwrap(),
            FileOutcome::Changed
        );
        assert_eq!(fs::read_to_string(&local).unwrap(), TOML);
        assert_eq!(
            fs::metadata(&local).unwrap().permissions().mode() & 0o7777,
            MODE
        );
        assert_eq!(
            install_file(&local, TOML, false).unwrap(),
            FileOutcome::Unchanged
        );
        fs::set_permissions(&local, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(
            install_file(&local, TOML, false).unwrap(),
            FileOutcome::Changed
        );
        assert_eq!(
            fs::metadata(&local).unwrap().permissions().mode() & 0o7777,
            MODE
        );
        assert_eq!(remove_file(&local, true).unwrap(), FileOutcome::WouldChange);
        assert!(local.exists());
        assert_eq!(remove_file(&local, false).unwrap(), FileOutcome::Changed);
        assert!(!local.exists());
        assert_eq!(remove_file(&local, false).unwrap(), FileOutcome::Unchanged);
    }
}
