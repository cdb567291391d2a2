//! Paths on the host, below the host root the installer's pod mounts (`/host`).
//!
//! Every path the installer writes is a host path (`/opt/edgeless/...`) that must stay
//! below the host root: `..` components are refused, and symbolic links on the way are
//! followed the way the host would follow them (an absolute link target starts again at
//! the host root), refusing any that would leave it. The last component is not followed:
//! files are replaced by renaming, which replaces a link rather than writing through it.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::InstallError;

/// Links followed while resolving one path before giving up (Linux's own limit).
const MAX_LINKS: usize = 40;

/// The directory the host's root file system is mounted at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    root: PathBuf,
}

impl HostRoot {
    /// The host root mounted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        HostRoot { root: root.into() }
    }

    /// The mount point itself.
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The local path of `host_path` (absolute, no `..`), with the symbolic links of its
    /// existing parent directories resolved below the host root.
    pub fn resolve(&self, host_path: &str) -> Result<PathBuf, InstallError> {
        let components = checked_components(host_path)?;
        let Some((last, parents)) = components.split_last() else {
            return Err(InstallError::PathNotAFile {
                path: host_path.to_owned(),
            });
        };
        let mut resolved = self.resolve_parents(host_path, parents.to_vec())?;
        resolved.push(last.clone());
        Ok(self.root.join(resolved.iter().collect::<PathBuf>()))
    }

    /// Follows the parent components under the root; returns the resolved components.
    fn resolve_parents(
        &self,
        host_path: &str,
        components: Vec<OsString>,
    ) -> Result<Vec<OsString>, InstallError> {
        let escape = |reason: String| InstallError::PathEscapesHostRoot {
            path: host_path.to_owned(),
            reason,
        };
        let mut resolved: Vec<OsString> = Vec::new();
        let mut pending: Vec<OsString> = components.into_iter().rev().collect();
        let mut links = 0;
        while let Some(name) = pending.pop() {
            if name == ".." {
                // Only link targets bring `..` here (the path itself is checked).
                if resolved.pop().is_none() {
                    return Err(escape(
                        "a symbolic link on the way points above the host root".into(),
                    ));
                }
                continue;
            }
            resolved.push(name);
            let local = self.root.join(resolved.iter().collect::<PathBuf>());
            let metadata = match fs::symlink_metadata(&local) {
                Ok(metadata) => metadata,
                // The rest is created as plain directories.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    resolved.extend(pending.into_iter().rev());
                    return Ok(resolved);
                }
                Err(source) => {
                    return Err(InstallError::Io {
                        operation: "inspecting",
                        path: local,
                        source,
                    });
                }
            };
            if !metadata.file_type().is_symlink() {
                continue;
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(escape(format!(
                    "more than {MAX_LINKS} symbolic links on the way (a loop?)"
                )));
            }
            let target = fs::read_link(&local).map_err(|source| InstallError::Io {
                operation: "reading the link",
                path: local.clone(),
                source,
            })?;
            resolved.pop();
            if target.is_absolute() {
                resolved.clear();
            }
            for component in target.components().rev() {
                match component {
                    Component::Normal(name) => pending.push(name.to_owned()),
                    Component::ParentDir => pending.push("..".into()),
                    Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
                }
            }
        }
        Ok(resolved)
    }
}

/// The normal components of an absolute path without `..`.
fn checked_components(host_path: &str) -> Result<Vec<OsString>, InstallError> {
    let path = Path::new(host_path);
    if !path.is_absolute() {
        return Err(InstallError::RelativePath {
            path: host_path.to_owned(),
        });
    }
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => names.push(name.to_owned()),
            Component::ParentDir => {
                return Err(InstallError::PathEscapesHostRoot {
                    path: host_path.to_owned(),
                    reason: "it contains a `..` component".into(),
                });
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(names)
}

/// A host path for display and for configuration files: `/` joined normal components.
pub(crate) fn join_host(base: &str, rest: &[&str]) -> String {
    let mut path = base.trim_end_matches('/').to_owned();
    for part in rest {
        path.push('/');
        path.push_str(part.trim_matches('/'));
    }
    path
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn plain_paths_land_below_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        assert_eq!(
            root.resolve("/opt/edgeless/x/bin/shim").unwrap(),
            dir.path().join("opt/edgeless/x/bin/shim")
        );
        assert_eq!(
            root.resolve("/opt/./edgeless//x").unwrap(),
            dir.path().join("opt/edgeless/x")
        );
    }

    #[test]
    fn refuses_relative_dotdot_and_root() {
        let root = HostRoot::new("/nonexistent-host");
        assert!(matches!(
            root.resolve("opt/x"),
            Err(InstallError::RelativePath { .. })
        ));
        assert!(matches!(
            root.resolve("/opt/../etc/shadow"),
            Err(InstallError::PathEscapesHostRoot { .. })
        ));
        assert!(matches!(
            root.resolve("/"),
            Err(InstallError::PathNotAFile { .. })
        ));
    }

    #[test]
    fn absolute_links_restart_at_the_host_root() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("data/opt")).unwrap();
        symlink("/data/opt", dir.path().join("opt")).unwrap();
        let root = HostRoot::new(dir.path());
        assert_eq!(
            root.resolve("/opt/edgeless/f").unwrap(),
            dir.path().join("data/opt/edgeless/f")
        );
    }

    #[test]
    fn relative_links_resolve_and_escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("var/lib")).unwrap();
        symlink("../var/./lib", dir.path().join("var/alias")).unwrap();
        symlink("../../..", dir.path().join("var/lib/up")).unwrap();
        let root = HostRoot::new(dir.path());
        assert_eq!(
            root.resolve("/var/alias/f").unwrap(),
            dir.path().join("var/lib/f")
        );
        let err = root.resolve("/var/lib/up/etc/passwd").unwrap_err();
        assert!(
            matches!(err, InstallError::PathEscapesHostRoot { .. }),
            "{err}"
        );
    }

    #[test]
    fn link_loops_end() {
        let dir = tempfile::tempdir().unwrap();
        symlink("/b", dir.path().join("a")).unwrap();
        symlink("/a", dir.path().join("b")).unwrap();
        let err = HostRoot::new(dir.path()).resolve("/a/f").unwrap_err();
        assert!(err.to_string().contains("loop"), "{err}");
    }

    #[test]
    fn the_last_component_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        symlink("/etc/passwd", dir.path().join("f")).unwrap();
        assert_eq!(
            HostRoot::new(dir.path()).resolve("/f").unwrap(),
            dir.path().join("f")
        );
    }

    #[test]
    fn joins_host_paths() {
        assert_eq!(
            join_host("/opt/edgeless/h/", &["bin", "/shim"]),
            "/opt/edgeless/h/bin/shim"
        );
    }
}
