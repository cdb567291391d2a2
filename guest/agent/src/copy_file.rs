//! CopyFile: the files the runtime would otherwise share (`/etc/hosts`, `/etc/hostname`,
//! `/etc/resolv.conf`, the termination log, ConfigMap and Secret volumes), written below
//! the shared directory only. The policy has checked the path (no `.` or `..`, under the
//! shared directory) and that a symbolic link points down into its volume; here, too,
//! nothing is written through a symbolic link, so no copy lands outside the directory.

use std::io::{Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use crate::proto::agent::CopyFileRequest;

/// The shared directory as the runtime names it.
pub const SHARED_DIR: &str = "/run/kata-containers/shared/containers/";

/// Why a copy was refused.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// Not below the shared directory, or with `.`/`..` components.
    #[error("CopyFile: {path:?} is not a plain path below {SHARED_DIR}")]
    Path {
        /// The request's path.
        path: String,
    },
    /// A symbolic link on the way.
    #[error("CopyFile: {path:?} goes through the symbolic link {link}; copies never follow links")]
    ThroughLink {
        /// The request's path.
        path: String,
        /// The link met.
        link: PathBuf,
    },
    /// A file type CopyFile does not write.
    #[error(
        "CopyFile: {path:?} has file mode {mode:o}; only files, directories and links are copied"
    )]
    FileType {
        /// The request's path.
        path: String,
        /// `file_mode`.
        mode: u32,
    },
    /// Writing failed.
    #[error("CopyFile: writing {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CopyError + '_ {
    move |source| CopyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Applies one CopyFile request below `<run_dir>/shared/containers`.
pub fn copy_file(run_dir: &Path, request: &CopyFileRequest) -> Result<(), CopyError> {
    let refused = || CopyError::Path {
        path: request.path.clone(),
    };
    let relative = request.path.strip_prefix(SHARED_DIR).ok_or_else(refused)?;
    let mut components = Vec::new();
    for component in Path::new(relative).components() {
        match component {
            Component::Normal(c) => components.push(c.to_owned()),
            _ => return Err(refused()),
        }
    }
    let Some((name, parents)) = components.split_last() else {
        return Err(refused());
    };
    let shared = run_dir.join("shared/containers");
    std::fs::create_dir_all(&shared).map_err(io(&shared))?;
    // The parents: real directories, created with dir_mode where missing.
    let mut dir = shared;
    for parent in parents {
        dir.push(parent);
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(CopyError::ThroughLink {
                    path: request.path.clone(),
                    link: dir,
                });
            }
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(refused()),
            Err(_) => {
                std::fs::create_dir(&dir).map_err(io(&dir))?;
                std::fs::set_permissions(
                    &dir,
                    std::fs::Permissions::from_mode(request.dir_mode & 0o7777),
                )
                .map_err(io(&dir))?;
            }
        }
    }
    let path = dir.join(name);
    let existing = std::fs::symlink_metadata(&path).ok();
    let owner = |path: &Path| {
        std::os::unix::fs::lchown(
            path,
            u32::try_from(request.uid).ok(),
            u32::try_from(request.gid).ok(),
        )
        .map_err(io(path))
    };
    const S_IFMT: u32 = 0o170_000;
    match request.file_mode & S_IFMT {
        0o040_000 => {
            if existing.as_ref().is_some_and(|m| !m.is_dir()) {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
            if !path.is_dir() {
                std::fs::create_dir(&path).map_err(io(&path))?;
            }
            std::fs::set_permissions(
                &path,
                std::fs::Permissions::from_mode(request.file_mode & 0o7777),
            )
            .map_err(io(&path))?;
            owner(&path)
        }
        0o120_000 => {
            let target = std::str::from_utf8(&request.data).map_err(|_| refused())?;
            if let Some(meta) = existing {
                if meta.is_dir() {
                    return Err(refused());
                }
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
            std::os::unix::fs::symlink(target, &path).map_err(io(&path))?;
            owner(&path)
        }
        0o100_000 => {
            if let Some(meta) = existing
                && !meta.is_file()
            {
                if meta.is_dir() {
                    return Err(refused());
                }
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(request.offset == 0)
                .open(&path)
                .map_err(io(&path))?;
            let offset = u64::try_from(request.offset).map_err(|_| refused())?;
            file.seek(SeekFrom::Start(offset)).map_err(io(&path))?;
            file.write_all(&request.data).map_err(io(&path))?;
            std::fs::set_permissions(
                &path,
                std::fs::Permissions::from_mode(request.file_mode & 0o7777),
            )
            .map_err(io(&path))?;
            owner(&path)
        }
        _ => Err(CopyError::FileType {
            path: request.path.clone(),
            mode: request.file_mode,
        }),
    }
}
