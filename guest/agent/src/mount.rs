//! The sandbox's tmpfs mounts (its shared memory), through nix's safe wrapper of mount(2).

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};

/// Why a mount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// An option the agent does not pass to tmpfs.
    #[error("tmpfs option {option:?} at {path} is not one of noexec, nosuid, nodev, mode=, size=")]
    Option {
        /// The mount point.
        path: PathBuf,
        /// The option.
        option: String,
    },
    /// mount(2) or the mount point failed.
    #[error("mounting a tmpfs at {path}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Mounts a tmpfs at `path` (created if missing) with the storage's `options` (flags
/// `noexec`, `nosuid`, `nodev`; data `mode=`, `size=`); returns the mount point.
pub fn tmpfs(path: &Path, options: &[String]) -> Result<PathBuf, MountError> {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        match option.as_str() {
            "noexec" => flags |= MsFlags::MS_NOEXEC,
            "nosuid" => flags |= MsFlags::MS_NOSUID,
            "nodev" => flags |= MsFlags::MS_NODEV,
            o if (o.starts_with("mode=") || o.starts_with("size="))
                && o.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'=') =>
            {
                data.push(o.to_owned());
            }
            other => {
                return Err(MountError::Option {
                    path: path.to_owned(),
                    option: other.to_owned(),
                });
            }
        }
    }
    let failed = |source: std::io::Error| MountError::Mount {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(path).map_err(failed)?;
    let data = data.join(",");
    nix::mount::mount(Some("shm"), path, Some("tmpfs"), flags, Some(data.as_str()))
        .map_err(|e| failed(std::io::Error::from(e)))?;
    Ok(path.to_owned())
}

/// Unmounts `path` (lazily: a container may still hold it); a failure is logged.
pub fn unmount(path: &Path) {
    if let Err(e) = nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        tracing::warn!(path = %path.display(), error = %e, "unmounting");
    }
}
