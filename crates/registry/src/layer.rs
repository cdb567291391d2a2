//! Applying image layers to a root file system: the OCI image specification's changeset
//! layers (`tar`, `tar+gzip`), in order, with whiteouts.
//!
//! Paths are resolved inside the root the way containerd applies layers: a symbolic link
//! met on the way to an entry is followed, but never out of the root (an absolute target
//! starts again at the root, `..` stops at it), and the entry's own last component is
//! never followed (an existing link there is replaced). An entry with a `..` component is
//! refused: a layer that names a path outside the image is not an image.
//!
//! Whiteouts (`.wh.<name>`) remove `<name>` as the lower layers left it; an opaque
//! whiteout (`.wh..wh..opq`) empties its directory of everything the lower layers put
//! there (what this layer adds stays, whichever comes first in the stream).
//!
//! Not applied: device nodes and FIFOs (the container runtime makes `/dev`), extended
//! attributes and times. Owners and modes are applied.

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

/// Most symbolic links followed to resolve one path (Linux's limit is 40).
const MAX_LINKS: usize = 40;

/// The whiteout prefix of the OCI image specification.
const WHITEOUT: &str = ".wh.";
/// The opaque whiteout's name.
const OPAQUE: &str = ".wh..wh..opq";

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// A media type whose compression is not supported.
    #[error(
        "layer media type {media_type:?} is not supported: only tar and tar+gzip layers \
         (OCI and Docker v2) can be applied; rebuild the image without zstd"
    )]
    MediaType {
        /// The layer's media type.
        media_type: String,
    },
    /// The tar stream could not be read.
    #[error("reading the layer's tar stream")]
    Tar(#[source] std::io::Error),
    /// A gzip'd layer does not decompress.
    #[error("the layer is not valid gzip")]
    Gzip(#[source] std::io::Error),
    /// An entry with a `..` component, or no name.
    #[error("layer entry {path:?} names a path outside the image root; the layer is refused")]
    OutsideRoot {
        /// The entry's path as the layer has it.
        path: String,
    },
    /// More symbolic links on the way than [`MAX_LINKS`], or a link loop.
    #[error("layer entry {path:?}: too many symbolic links on the way (a loop?)")]
    LinkLoop {
        /// The entry's path.
        path: String,
    },
    /// A hard link to nothing, or to a directory.
    #[error("layer entry {path:?} is a hard link to {target:?}, which is not a file of the image")]
    HardLink {
        /// The entry's path.
        path: String,
        /// The link's target as the layer has it.
        target: String,
    },
    /// Writing to the root failed.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// What applying a layer did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Files, directories and links written.
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Whiteouts applied (opaque ones included).
    pub whiteouts: u64,
    /// Device nodes and FIFOs left out.
    pub skipped: u64,
}

/// Whether `media_type` is a layer this module applies, and gzip'd.
fn compression(media_type: &str) -> Result<bool, LayerError> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar"
        | "application/vnd.docker.image.rootfs.diff.tar" => Ok(false),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(true),
        other => Err(LayerError::MediaType {
            media_type: other.to_owned(),
        }),
    }
}

/// Applies the layer `blob` (of `media_type`) to `root`, which holds the layers below it.
/// The blob must already be verified against its digest.
pub fn apply(root: &Path, media_type: &str, blob: &[u8]) -> Result<LayerStats, LayerError> {
    if compression(media_type)? {
        apply_tar(root, flate2::read::MultiGzDecoder::new(blob))
    } else {
        apply_tar(root, blob)
    }
}

/// The size a layer takes as a tar stream, counted from its blob given piece by piece
/// ([`UncompressedSize::write`]), so that no layer is held whole in memory. The count is
/// of bytes only: nothing is unpacked. A gzip'd layer's unpacked bytes cost CPU time in
/// proportion; the caller decides whose layers to measure.
#[derive(Debug)]
pub struct UncompressedSize(Counting);

#[derive(Debug)]
enum Counting {
    Plain(ByteCount),
    Gzip(Box<flate2::write::MultiGzDecoder<ByteCount>>),
}

/// A writer that keeps only how many bytes went through it.
#[derive(Debug, Default)]
struct ByteCount(u64);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len() as u64);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl UncompressedSize {
    /// A count for a layer of `media_type`.
    pub fn new(media_type: &str) -> Result<UncompressedSize, LayerError> {
        Ok(UncompressedSize(if compression(media_type)? {
            Counting::Gzip(Box::new(flate2::write::MultiGzDecoder::new(
                ByteCount::default(),
            )))
        } else {
            Counting::Plain(ByteCount::default())
        }))
    }

    /// The next piece of the blob.
    pub fn write(&mut self, piece: &[u8]) -> Result<(), LayerError> {
        use std::io::Write as _;
        match &mut self.0 {
            Counting::Plain(count) => count.write_all(piece),
            Counting::Gzip(decoder) => decoder.write_all(piece),
        }
        .map_err(LayerError::Gzip)
    }

    /// The size, once the whole blob was written.
    pub fn finish(self) -> Result<u64, LayerError> {
        match self.0 {
            Counting::Plain(count) => Ok(count.0),
            Counting::Gzip(decoder) => decoder
                .finish()
                .map(|count| count.0)
                .map_err(LayerError::Gzip),
        }
    }
}

/// Applies an uncompressed tar stream to `root`.
pub fn apply_tar(root: &Path, tar: impl Read) -> Result<LayerStats, LayerError> {
    let mut archive = tar::Archive::new(tar);
    let mut stats = LayerStats::default();
    // What this layer wrote, and the directories on the way there, so an opaque
    // whiteout removes only what lies below.
    let mut written: HashSet<PathBuf> = HashSet::new();
    for entry in archive.entries().map_err(LayerError::Tar)? {
        let mut entry = entry.map_err(LayerError::Tar)?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let relative = relative_path(&raw)?;
        let Some(name) = relative
            .file_name()
            .and_then(|n| n.to_str())
            .map(str::to_owned)
        else {
            return Err(LayerError::OutsideRoot { path: raw });
        };
        let parent = relative.parent().unwrap_or(Path::new(""));
        let parent = resolve(root, parent, &raw)?;
        if name == OPAQUE {
            opaque(&parent, &written)?;
            stats.whiteouts += 1;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT) {
            // `.wh.`, `.wh..` and `.wh...` would hide the directory itself or its parent
            // (the bundle above the root, for an entry at the top).
            if matches!(hidden, "" | "." | "..") {
                return Err(LayerError::OutsideRoot { path: raw });
            }
            let target = parent.join(hidden);
            remove(&target)?;
            stats.whiteouts += 1;
            continue;
        }
        let path = parent.join(&name);
        let header = entry.header();
        let kind = header.entry_type();
        let old = header.as_old();
        let mode = numeric(header.mode().map(u64::from), &old.mode)? as u32 & 0o7777;
        let uid = numeric(header.uid(), &old.uid)?;
        let gid = numeric(header.gid(), &old.gid)?;
        match kind {
            tar::EntryType::Directory => {
                let existing = std::fs::symlink_metadata(&path).ok();
                if !existing.is_some_and(|m| m.is_dir()) {
                    remove(&path)?;
                    std::fs::create_dir(&path).map_err(write(&path))?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                replace_dir(&path)?;
                let mut file = std::fs::File::create(&path).map_err(write(&path))?;
                stats.bytes += std::io::copy(&mut entry, &mut file).map_err(write(&path))?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(LayerError::Tar)?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                replace_dir(&path)?;
                std::os::unix::fs::symlink(&target, &path).map_err(write(&path))?;
            }
            tar::EntryType::Link => {
                let target_raw = entry
                    .link_name_bytes()
                    .map(|t| String::from_utf8_lossy(&t).into_owned())
                    .unwrap_or_default();
                let refused = || LayerError::HardLink {
                    path: raw.clone(),
                    target: target_raw.clone(),
                };
                let target_relative = relative_path(&target_raw).map_err(|_| refused())?;
                let target_parent = resolve(
                    root,
                    target_relative.parent().unwrap_or(Path::new("")),
                    &raw,
                )?;
                let target = match target_relative.file_name() {
                    Some(n) => target_parent.join(n),
                    None => return Err(refused()),
                };
                if !std::fs::symlink_metadata(&target).is_ok_and(|m| !m.is_dir()) {
                    return Err(refused());
                }
                replace_dir(&path)?;
                std::fs::hard_link(&target, &path).map_err(write(&path))?;
                keep(&mut written, root, path);
                stats.entries += 1;
                // A hard link shares its target's owner and mode.
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                tracing::debug!(path = %raw, "device node or FIFO left out");
                stats.skipped += 1;
                continue;
            }
            // PAX and GNU long-name headers are read by the tar crate; others carry no file.
            _ => continue,
        }
        std::os::unix::fs::lchown(&path, Some(uid_u32(uid)), Some(uid_u32(gid)))
            .map_err(write(&path))?;
        if kind != tar::EntryType::Symlink {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(write(&path))?;
        }
        keep(&mut written, root, path);
        stats.entries += 1;
    }
    Ok(stats)
}

/// Records `path` and its directories below `root` as this layer's.
fn keep(written: &mut HashSet<PathBuf>, root: &Path, path: PathBuf) {
    let mut current = Some(path.as_path());
    while let Some(p) = current {
        if p == root || !written.insert(p.to_owned()) {
            break;
        }
        current = p.parent();
    }
    written.insert(path);
}

/// A header number; an empty field (all NUL or spaces) is 0, as Go's archive/tar (and so
/// containerd) reads it.
fn numeric(parsed: std::io::Result<u64>, field: &[u8]) -> Result<u64, LayerError> {
    match parsed {
        Ok(n) => Ok(n),
        Err(_) if field.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        Err(e) => Err(LayerError::Tar(e)),
    }
}

fn uid_u32(id: u64) -> u32 {
    u32::try_from(id).unwrap_or(u32::MAX)
}

fn write(path: &Path) -> impl FnOnce(std::io::Error) -> LayerError + '_ {
    move |source| LayerError::Write {
        path: path.to_owned(),
        source,
    }
}

/// The entry's path relative to the root: leading `/` and `.` components dropped; a `..`
/// component refused.
fn relative_path(raw: &str) -> Result<PathBuf, LayerError> {
    let mut out = PathBuf::new();
    for component in Path::new(raw).components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(LayerError::OutsideRoot {
                    path: raw.to_owned(),
                });
            }
        }
    }
    if out.as_os_str().is_empty() && !raw.trim_matches(['/', '.']).is_empty() {
        return Err(LayerError::OutsideRoot {
            path: raw.to_owned(),
        });
    }
    Ok(out)
}

/// The real directory `relative` names inside `root`: symbolic links followed, but
/// clamped to the root. Missing directories are created (mode 0755), as tar does.
fn resolve(root: &Path, relative: &Path, raw: &str) -> Result<PathBuf, LayerError> {
    let mut pending: Vec<std::ffi::OsString> = relative
        .components()
        .rev()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut current: Vec<std::ffi::OsString> = Vec::new();
    let mut links = 0;
    while let Some(component) = pending.pop() {
        if component == ".." {
            current.pop();
            continue;
        }
        if component == "." || component.is_empty() || component == "/" {
            continue;
        }
        let candidate: PathBuf = current
            .iter()
            .fold(root.to_owned(), |p, c| p.join(c))
            .join(&component);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(LayerError::LinkLoop {
                        path: raw.to_owned(),
                    });
                }
                let target = std::fs::read_link(&candidate).map_err(write(&candidate))?;
                if target.is_absolute() {
                    current.clear();
                }
                for c in target.components().rev() {
                    match c {
                        Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
                        other => pending.push(other.as_os_str().to_owned()),
                    }
                }
            }
            Ok(meta) if meta.is_dir() => current.push(component),
            Ok(_) => {
                // A file where the layer needs a directory: the layer replaces it.
                std::fs::remove_file(&candidate).map_err(write(&candidate))?;
                create_dir(&candidate)?;
                current.push(component);
            }
            Err(_) => {
                create_dir(&candidate)?;
                current.push(component);
            }
        }
    }
    Ok(current.iter().fold(root.to_owned(), |p, c| p.join(c)))
}

fn create_dir(path: &Path) -> Result<(), LayerError> {
    std::fs::create_dir(path).map_err(write(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(write(path))
}

/// Removes whatever is at `path` (not following a link there); nothing there is fine.
fn remove(path: &Path) -> Result<(), LayerError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(path).map_err(write(path)),
        Ok(_) => std::fs::remove_file(path).map_err(write(path)),
        Err(_) => Ok(()),
    }
}

/// Makes room for a non-directory at `path`: removes a directory or file there.
fn replace_dir(path: &Path) -> Result<(), LayerError> {
    remove(path)
}

/// Empties `dir` of everything the lower layers put there: what this layer wrote stays,
/// and a directory it wrote into keeps only this layer's entries.
fn opaque(dir: &Path, written: &HashSet<PathBuf>) -> Result<(), LayerError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(_) => return Ok(()),
    };
    for entry in entries {
        let entry = entry.map_err(write(dir))?;
        let path = entry.path();
        if !written.contains(&path) {
            remove(&path)?;
        } else if entry.file_type().is_ok_and(|t| t.is_dir()) {
            opaque(&path, written)?;
        }
    }
    Ok(())
}
