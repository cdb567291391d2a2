//! The image cache file (`layers-cache.json`).
//!
//! ```json
//! {
//!   "images": {
//!     "127.0.0.1:5000/app@sha256:…": {
//!       "config": "<base64 of the image config>",
//!       "manifest": "<base64 of the manifest the digest names: image manifest or index>",
//!       "platform": "linux/amd64",
//!       "platform_manifest": "<base64 of the platform's image manifest; only for an index>"
//!     }
//!   },
//!   "tags": { "127.0.0.1:5000/app:v1": "sha256:…" },
//!   "version": 1
//! }
//! ```
//!
//! `images` holds content under the digest that names it; every read hashes it again, as
//! content from a registry is, so an edited entry is detected and ignored. `tags` is
//! what a tag pointed to when it was resolved: trusted until removed (or bypassed with
//! `refresh_tags`), so a tag moved in the registry is not noticed — as with genpolicy's
//! cache. Keys are sorted and the file is written atomically.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::error::RegistryError;
use crate::manifest::ImageBlobs;

/// The format version this crate reads and writes.
pub const CACHE_VERSION: u64 = 1;

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    // Fields in alphabetical order: serde writes them in declaration order.
    #[serde(default)]
    images: BTreeMap<String, ImageEntry>,
    /// Layer digest → its uncompressed size (pod memory sizing). Not checked again: a
    /// wrong size only sizes the user's own pod VM wrongly.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    layers: BTreeMap<String, u64>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    version: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ImageEntry {
    config: String,
    manifest: String,
    platform: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform_manifest: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    file: CacheFile,
    /// Something changed since loading: `save` writes.
    dirty: bool,
}

/// The cache in memory, shared by concurrent resolutions.
#[derive(Debug)]
pub(crate) struct Cache {
    path: Option<PathBuf>,
    state: Mutex<State>,
}

impl Cache {
    /// Loads the cache from `path`. A missing file is an empty cache; an unreadable,
    /// corrupt or other-version file is warned about and replaced by an empty cache (it is
    /// overwritten on the next save), never an error: the cache only saves time.
    pub(crate) fn load(path: Option<PathBuf>) -> Cache {
        let mut ignored = false;
        let file = match &path {
            None => CacheFile::default(),
            Some(path) => read_file(path).unwrap_or_else(|reason| {
                tracing::warn!(
                    path = %path.display(),
                    "ignoring the image cache file {}: {reason}; starting with an empty cache",
                    path.display()
                );
                ignored = true;
                CacheFile::default()
            }),
        };
        Cache {
            path,
            state: Mutex::new(State {
                file: CacheFile {
                    version: CACHE_VERSION,
                    ..file
                },
                // An ignored file is replaced on the next save.
                dirty: ignored,
            }),
        }
    }

    /// The cache file, for messages.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated (every update
        // is one insert), so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The digest a tag key (`registry/repository:tag`) pointed to.
    pub(crate) fn tag(&self, tag_key: &str) -> Option<String> {
        self.state().file.tags.get(tag_key).cloned()
    }

    /// The cached bytes and platform under `digest_key` (`registry/repository@digest`).
    /// Not yet verified: the caller hashes them.
    pub(crate) fn image(&self, digest_key: &str) -> Option<Result<(ImageBlobs, String), String>> {
        let entry = self.state().file.images.get(digest_key).cloned()?;
        let decode = |field: &str, text: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|_| format!("its \"{field}\" is not base64"))
        };
        Some((|| {
            let blobs = ImageBlobs {
                top: decode("manifest", &entry.manifest)?,
                platform_manifest: entry
                    .platform_manifest
                    .as_deref()
                    .map(|text| decode("platform_manifest", text))
                    .transpose()?,
                config: decode("config", &entry.config)?,
            };
            Ok((blobs, entry.platform))
        })())
    }

    /// Records resolved content under `digest_key`, and `tag_key` → `digest` if given.
    pub(crate) fn insert(
        &self,
        tag_key: Option<&str>,
        digest_key: &str,
        digest: &str,
        blobs: &ImageBlobs,
        platform: &str,
    ) {
        let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let entry = ImageEntry {
            config: encode(&blobs.config),
            manifest: encode(&blobs.top),
            platform: platform.to_owned(),
            platform_manifest: blobs.platform_manifest.as_deref().map(encode),
        };
        let mut state = self.state();
        if state.file.images.get(digest_key) != Some(&entry) {
            state.file.images.insert(digest_key.to_owned(), entry);
            state.dirty = true;
        }
        if let Some(tag_key) = tag_key
            && state.file.tags.get(tag_key).map(String::as_str) != Some(digest)
        {
            state
                .file
                .tags
                .insert(tag_key.to_owned(), digest.to_owned());
            state.dirty = true;
        }
    }

    /// The uncompressed size of layer `digest`, if measured before.
    pub(crate) fn layer_size(&self, digest: &str) -> Option<u64> {
        self.state().file.layers.get(digest).copied()
    }

    /// Records the uncompressed size of layer `digest`.
    pub(crate) fn insert_layer_size(&self, digest: &str, size: u64) {
        let mut state = self.state();
        if state.file.layers.insert(digest.to_owned(), size) != Some(size) {
            state.dirty = true;
        }
    }

    /// Drops an entry found unusable, so that the next save does not keep it.
    pub(crate) fn forget_image(&self, digest_key: &str) {
        let mut state = self.state();
        if state.file.images.remove(digest_key).is_some() {
            state.dirty = true;
        }
    }

    /// The file's bytes: pretty JSON with sorted keys and a final newline.
    fn to_bytes(&self) -> Result<Vec<u8>, String> {
        let state = self.state();
        let mut bytes = serde_json::to_vec_pretty(&state.file).map_err(|e| e.to_string())?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Writes the cache atomically if anything changed since loading. Without a path: nothing.
    pub(crate) fn save(&self) -> Result<(), RegistryError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if !self.state().dirty && path.exists() {
            return Ok(());
        }
        let refuse = |detail: String| RegistryError::CacheWrite {
            path: path.display().to_string(),
            detail,
        };
        let bytes = self.to_bytes().map_err(refuse)?;
        contrast_atomic_file::write(path, &bytes, 0o644)
            .map_err(|e| refuse(contrast_platforms::error_chain(&e)))?;
        self.state().dirty = false;
        Ok(())
    }
}

/// Reads and checks the cache file; the error says why it is ignored.
fn read_file(path: &Path) -> Result<CacheFile, String> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(CacheFile::default()),
        Err(e) => return Err(format!("cannot read it: {e}")),
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("not valid JSON: {e}"))?;
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(CACHE_VERSION) => {}
        Some(other) => {
            return Err(format!(
                "it has format version {other}, this build reads version {CACHE_VERSION}"
            ));
        }
        None => {
            return Err("it has no format \"version\" (not a cache file of this tool)".to_owned());
        }
    }
    serde_json::from_value(value).map_err(|e| format!("unexpected content: {e}"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "contrast-registry-cache-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("layers-cache.json")
    }

    fn blobs() -> ImageBlobs {
        ImageBlobs {
            top: b"index".to_vec(),
            platform_manifest: Some(b"manifest".to_vec()),
            config: b"config".to_vec(),
        }
    }

    #[test]
    fn round_trip_sorted_and_deterministic() {
        let path = temp_path("round-trip");
        let _ = std::fs::remove_file(&path);
        let cache = Cache::load(Some(path.clone()));
        cache.insert(
            Some("r/b:v1"),
            "r/b@sha256:2",
            "sha256:2",
            &blobs(),
            "linux/amd64",
        );
        cache.insert(None, "r/a@sha256:1", "sha256:1", &blobs(), "linux/amd64");
        cache.save().unwrap();
        let first = std::fs::read(&path).unwrap();
        let text = String::from_utf8(first.clone()).unwrap();
        let images = text.find("\"images\"").unwrap();
        let tags = text.find("\"tags\"").unwrap();
        let version = text.find("\"version\": 1").unwrap();
        assert!(images < tags && tags < version, "{text}");
        assert!(
            text.find("r/a@").unwrap() < text.find("r/b@").unwrap(),
            "{text}"
        );
        assert!(text.ends_with("}\n"));

        let again = Cache::load(Some(path.clone()));
        assert_eq!(again.tag("r/b:v1").as_deref(), Some("sha256:2"));
        let (read, platform) = again.image("r/a@sha256:1").unwrap().unwrap();
        assert_eq!(read.top, b"index");
        assert_eq!(read.platform_manifest.as_deref(), Some(&b"manifest"[..]));
        assert_eq!(read.config, b"config");
        assert_eq!(platform, "linux/amd64");
        assert!(again.image("r/c@sha256:3").is_none());
        // Same content in a new order: same bytes.
        let other_path = temp_path("round-trip-2");
        let other = Cache::load(Some(other_path.clone()));
        other.insert(None, "r/a@sha256:1", "sha256:1", &blobs(), "linux/amd64");
        other.insert(
            Some("r/b:v1"),
            "r/b@sha256:2",
            "sha256:2",
            &blobs(),
            "linux/amd64",
        );
        other.save().unwrap();
        assert_eq!(std::fs::read(&other_path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644);
        }
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
        std::fs::remove_dir_all(other_path.parent().unwrap()).unwrap();
    }

    #[test]
    fn unusable_files_start_empty() {
        let path = temp_path("unusable");
        for (content, _why) in [
            (&b"{not json"[..], "json"),
            (&br#"{"version": 2, "images": {}}"#[..], "version"),
            (&br#"{"images": {}}"#[..], "no version"),
            (&br#"{"version": 1, "images": []}"#[..], "shape"),
        ] {
            std::fs::write(&path, content).unwrap();
            assert!(read_file(&path).is_err());
            let cache = Cache::load(Some(path.clone()));
            assert!(cache.state().file.images.is_empty());
        }
        // A bad base64 entry is reported at lookup.
        std::fs::write(
            &path,
            br#"{"version": 1, "images": {"k": {"config": "***", "manifest": "", "platform": "linux/amd64"}}, "tags": {}}"#,
        )
        .unwrap();
        let cache = Cache::load(Some(path.clone()));
        assert!(cache.image("k").unwrap().unwrap_err().contains("config"));
        cache.forget_image("k");
        assert!(cache.image("k").is_none());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[test]
    fn save_without_path_or_changes_does_nothing() {
        let cache = Cache::load(None);
        cache.insert(None, "k", "d", &blobs(), "linux/amd64");
        cache.save().unwrap();
        let path = temp_path("unchanged");
        let cache = Cache::load(Some(path.clone()));
        cache.insert(None, "k", "d", &blobs(), "linux/amd64");
        cache.save().unwrap();
        let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
        let cache = Cache::load(Some(path.clone()));
        cache.insert(None, "k", "d", &blobs(), "linux/amd64"); // same content: not dirty
        std::thread::sleep(std::time::Duration::from_millis(20));
        cache.save().unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            modified
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }
}
