//! OCI container images of the shipped components, built reproducibly from this machine's
//! files: one layer with the component's programs, the shared libraries they load and
//! what else they need, with fixed owners (root), times (0), modes and order, gzip'd
//! without a time or a name; an image config without a creation time; an OCI image
//! manifest. The same inputs give the same digests.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use contrast_registry::{
    OCI_CONFIG as CONFIG_MEDIA_TYPE, OCI_INDEX as INDEX_MEDIA_TYPE,
    OCI_LAYER_GZIP as LAYER_MEDIA_TYPE, OCI_MANIFEST as MANIFEST_MEDIA_TYPE,
};

use crate::ImageError;

/// The annotation an OCI layout names its images with.
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// `sha256:<hex>` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Dir,
    File { data: Vec<u8>, mode: u32 },
    Symlink(String),
}

/// The files of a layer. Programs and system files added here also bring, when the layer
/// is finished, every shared library they load (at its path on this machine).
#[derive(Debug, Default)]
pub struct Layer {
    entries: BTreeMap<String, Entry>,
    loads: Vec<PathBuf>,
}

impl Layer {
    /// An empty layer.
    pub fn new() -> Layer {
        Layer::default()
    }

    /// `data` at `path` (relative, `usr/bin/x`) with `mode`.
    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) -> &mut Layer {
        self.entries
            .insert(relative(path), Entry::File { data, mode });
        self
    }

    /// A symbolic link at `path` to `target`.
    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Layer {
        self.entries
            .insert(relative(path), Entry::Symlink(target.to_owned()));
        self
    }

    /// `program` as `usr/bin/<name>`, without debug sections (stripped into `scratch`).
    pub fn program(
        &mut self,
        program: &Path,
        name: &str,
        scratch: &Path,
    ) -> Result<&mut Layer, ImageError> {
        let stripped = scratch.join(format!("{name}.stripped"));
        crate::strip(program, &stripped)?;
        let data = read(&stripped)?;
        self.loads.push(program.to_owned());
        Ok(self.file(&format!("usr/bin/{name}"), data, 0o755))
    }

    /// The installed system's file at `path` (relative to `/`), at the same path.
    pub fn system_file(&mut self, path: &str, mode: u32) -> Result<&mut Layer, ImageError> {
        let source = Path::new("/").join(path);
        let data = read(&source)?;
        if mode & 0o111 != 0 {
            self.loads.push(source);
        }
        Ok(self.file(path, data, mode))
    }

    /// iptables as the guest image has it ([`crate::IPTABLES_BINARY`] and its names and
    /// extensions).
    pub fn iptables(&mut self) -> Result<&mut Layer, ImageError> {
        self.system_file(crate::IPTABLES_BINARY, 0o755)?;
        for name in crate::IPTABLES_NAMES {
            self.symlink(&format!("usr/sbin/{name}"), "xtables-nft-multi");
        }
        for extension in crate::XTABLES_EXTENSIONS {
            self.system_file(extension, 0o755)?;
        }
        Ok(self)
    }

    /// What the Initializer's LUKS helper runs besides libcryptsetup (which it links): mke2fs
    /// as `mkfs.ext4` with its configuration, mount and umount; and `test`, which its
    /// startup probe runs while it holds the volume open.
    pub fn luks_tools(&mut self) -> Result<&mut Layer, ImageError> {
        self.system_file(crate::STARTUP_PROBE_TOOL, 0o755)?;
        self.system_file(crate::MKE2FS, 0o755)?;
        self.symlink("usr/sbin/mkfs.ext4", "mke2fs");
        self.system_file(crate::MKE2FS_CONF, 0o644)?;
        for tool in crate::MOUNT_TOOLS {
            self.system_file(tool, 0o755)?;
        }
        Ok(self)
    }

    /// The system's CA bundle ([`crate::CA_BUNDLE`]), for HTTPS to vendors and registries.
    pub fn ca_certificates(&mut self) -> Result<&mut Layer, ImageError> {
        self.system_file(crate::CA_BUNDLE, 0o644)
    }

    /// The uncompressed tar: the files, the shared libraries they load, and every parent
    /// directory, in path order.
    pub fn tar(self) -> Result<Vec<u8>, ImageError> {
        let mut entries = self.entries;
        for library in crate::shared_libraries(&self.loads)? {
            let inside = library.to_string_lossy().trim_start_matches('/').to_owned();
            let data = read(&library)?;
            entries
                .entry(inside)
                .or_insert(Entry::File { data, mode: 0o755 });
        }
        let parents: Vec<String> = entries
            .keys()
            .flat_map(|path| {
                Path::new(path)
                    .ancestors()
                    .skip(1)
                    .filter(|p| !p.as_os_str().is_empty())
                    .map(|p| p.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
            })
            .collect();
        for parent in parents {
            entries.entry(parent).or_insert(Entry::Dir);
        }
        let mut tar = tar::Builder::new(Vec::new());
        for (path, entry) in &entries {
            let mut header = tar::Header::new_gnu();
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(0);
            let io = |source: std::io::Error| ImageError::Io {
                path: PathBuf::from(path),
                source,
            };
            match entry {
                Entry::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    tar.append_data(&mut header, path, std::io::empty())
                        .map_err(io)?;
                }
                Entry::File { data, mode } => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    tar.append_data(&mut header, path, data.as_slice())
                        .map_err(io)?;
                }
                Entry::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    tar.append_link(&mut header, path, target).map_err(io)?;
                }
            }
        }
        tar.into_inner().map_err(|source| ImageError::Io {
            path: PathBuf::from("<layer>"),
            source,
        })
    }
}

fn relative(path: &str) -> String {
    path.trim_start_matches('/').to_owned()
}

fn read(path: &Path) -> Result<Vec<u8>, ImageError> {
    std::fs::read(path).map_err(|source| ImageError::Io {
        path: path.to_owned(),
        source,
    })
}

/// What a container runs (the image config's `config`).
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// `Entrypoint`.
    #[serde(rename = "Entrypoint")]
    pub entrypoint: Vec<String>,
    /// `Env`.
    #[serde(rename = "Env")]
    pub env: Vec<String>,
    /// `User` (`uid[:gid]`).
    #[serde(rename = "User")]
    pub user: String,
    /// `WorkingDir`.
    #[serde(rename = "WorkingDir")]
    pub working_dir: String,
}

#[derive(Serialize)]
struct ImageConfig<'a> {
    architecture: &'static str,
    os: &'static str,
    config: &'a RunConfig,
    rootfs: RootFs,
}

#[derive(Serialize)]
struct RootFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

#[derive(Serialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    digest: String,
    size: usize,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'static str, String>,
}

impl Descriptor {
    fn of(media_type: &'static str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type,
            digest: digest(bytes),
            size: bytes.len(),
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Serialize)]
struct ImageManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// A built image: its blobs and its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The image config.
    pub config: Vec<u8>,
    /// The one layer, gzip'd.
    pub layer: Vec<u8>,
    /// The OCI image manifest.
    pub manifest: Vec<u8>,
}

impl Image {
    /// An image of `layer` (an uncompressed tar) that runs `run` on linux/amd64.
    pub fn new(layer: &[u8], run: &RunConfig) -> Result<Image, ImageError> {
        let mut gzip = flate2::GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), flate2::Compression::best());
        let io = |source| ImageError::Io {
            path: PathBuf::from("<layer>"),
            source,
        };
        gzip.write_all(layer).map_err(io)?;
        let compressed = gzip.finish().map_err(io)?;
        let config = to_json(&ImageConfig {
            architecture: "amd64",
            os: "linux",
            config: run,
            rootfs: RootFs {
                kind: "layers",
                diff_ids: vec![digest(layer)],
            },
        });
        let manifest = to_json(&ImageManifest {
            schema_version: 2,
            media_type: MANIFEST_MEDIA_TYPE,
            config: Descriptor::of(CONFIG_MEDIA_TYPE, &config),
            layers: vec![Descriptor::of(LAYER_MEDIA_TYPE, &compressed)],
        });
        Ok(Image {
            config,
            layer: compressed,
            manifest,
        })
    }

    /// The image's digest: its manifest's.
    pub fn digest(&self) -> String {
        digest(&self.manifest)
    }

    /// The blobs a registry or layout needs besides the manifest: config, then layer.
    pub fn blobs(&self) -> [&[u8]; 2] {
        [&self.config, &self.layer]
    }
}

/// The JSON of one of the documents above: structs of strings, numbers and string-keyed
/// maps, which always serialise.
fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_default()
}

/// An image's size: its layers as a registry stores them (the manifest's `layers[].size`,
/// which registries list) and unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageSize {
    /// The layers' bytes as stored (gzip).
    pub stored: u64,
    /// The layers' bytes unpacked (tar).
    pub unpacked: u64,
}

impl std::fmt::Display for ImageSize {
    /// As `cargo xtask release` and the release test report it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const MIB: f64 = 1024.0 * 1024.0;
        write!(
            f,
            "{:.1} MiB in the registry, {:.1} MiB unpacked",
            self.stored as f64 / MIB,
            self.unpacked as f64 / MIB
        )
    }
}

/// The size of each image of the layout [`write_layout`] wrote into `dir`, by name.
pub fn layout_sizes(dir: &Path) -> Result<BTreeMap<String, ImageSize>, ImageError> {
    let read_json = |path: PathBuf| -> Result<serde_json::Value, ImageError> {
        serde_json::from_slice(&read(&path)?).map_err(|e| ImageError::Layout {
            path,
            reason: format!("not JSON: {e}"),
        })
    };
    let blob = |digest: &serde_json::Value| {
        dir.join("blobs/sha256").join(
            digest
                .as_str()
                .unwrap_or_default()
                .trim_start_matches("sha256:"),
        )
    };
    let mut sizes = BTreeMap::new();
    let index = read_json(dir.join("index.json"))?;
    for entry in index["manifests"].as_array().into_iter().flatten() {
        let name = entry["annotations"][REF_NAME_ANNOTATION]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let manifest = read_json(blob(&entry["digest"]))?;
        let mut size = ImageSize {
            stored: 0,
            unpacked: 0,
        };
        for layer in manifest["layers"].as_array().into_iter().flatten() {
            size.stored += layer["size"].as_u64().unwrap_or_default();
            let path = blob(&layer["digest"]);
            let gzip = std::fs::File::open(&path).map_err(|source| ImageError::Io {
                path: path.clone(),
                source,
            })?;
            size.unpacked += std::io::copy(
                &mut flate2::read::GzDecoder::new(gzip),
                &mut std::io::sink(),
            )
            .map_err(|source| ImageError::Io { path, source })?;
        }
        sizes.insert(name, size);
    }
    Ok(sizes)
}

/// Writes `images` as an OCI image layout into `dir` (created): `oci-layout`,
/// `index.json` naming each image by its `org.opencontainers.image.ref.name`, and
/// `blobs/sha256/`.
pub fn write_layout(dir: &Path, images: &[(&str, &Image)]) -> Result<(), ImageError> {
    let blobs = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(|source| ImageError::Io {
        path: blobs.clone(),
        source,
    })?;
    let mut manifests = Vec::new();
    for (name, image) in images {
        for blob in image.blobs().into_iter().chain([image.manifest.as_slice()]) {
            let hex = digest(blob).trim_start_matches("sha256:").to_owned();
            contrast_atomic_file::write(&blobs.join(hex), blob, 0o644)?;
        }
        let mut descriptor = Descriptor::of(MANIFEST_MEDIA_TYPE, &image.manifest);
        descriptor
            .annotations
            .insert(REF_NAME_ANNOTATION, (*name).to_owned());
        manifests.push(descriptor);
    }
    #[derive(Serialize)]
    struct Index {
        #[serde(rename = "schemaVersion")]
        schema_version: u32,
        #[serde(rename = "mediaType")]
        media_type: &'static str,
        manifests: Vec<Descriptor>,
    }
    let index = to_json(&Index {
        schema_version: 2,
        media_type: INDEX_MEDIA_TYPE,
        manifests,
    });
    contrast_atomic_file::write(&dir.join("index.json"), &index, 0o644)?;
    contrast_atomic_file::write(
        &dir.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
        0o644,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn sample() -> Layer {
        let mut layer = Layer::new();
        layer
            .file("/usr/bin/tool", b"#!/bin/sh\n".to_vec(), 0o755)
            .symlink("bin", "usr/bin")
            .file("etc/motd", b"hello\n".to_vec(), 0o644);
        layer
    }

    #[test]
    fn layers_list_parents_first_with_fixed_owners_and_times() {
        let tar = sample().tar().unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let entries: Vec<(String, u64, u64, u32)> = archive
            .entries()
            .unwrap()
            .map(|entry| {
                let entry = entry.unwrap();
                let header = entry.header();
                (
                    entry.path().unwrap().to_string_lossy().into_owned(),
                    header.mtime().unwrap(),
                    header.uid().unwrap(),
                    header.mode().unwrap(),
                )
            })
            .collect();
        let paths: Vec<&str> = entries.iter().map(|(p, ..)| p.as_str()).collect();
        assert_eq!(
            paths,
            ["bin", "etc", "etc/motd", "usr", "usr/bin", "usr/bin/tool"]
        );
        assert!(
            entries
                .iter()
                .all(|(_, mtime, uid, _)| *mtime == 0 && *uid == 0)
        );
        assert_eq!(entries[5].3, 0o755);
    }

    #[test]
    fn the_same_files_give_the_same_digests_and_other_files_others() {
        let run = RunConfig {
            entrypoint: vec!["/usr/bin/tool".to_owned()],
            env: vec!["PATH=/usr/bin".to_owned()],
            user: "0".to_owned(),
            working_dir: "/".to_owned(),
        };
        let one = Image::new(&sample().tar().unwrap(), &run).unwrap();
        let two = Image::new(&sample().tar().unwrap(), &run).unwrap();
        assert_eq!(one, two);
        let mut changed = sample();
        changed.file("etc/motd", b"hello!\n".to_vec(), 0o644);
        let three = Image::new(&changed.tar().unwrap(), &run).unwrap();
        assert_ne!(one.digest(), three.digest());
        let manifest: serde_json::Value = serde_json::from_slice(&one.manifest).unwrap();
        assert_eq!(manifest["config"]["digest"], digest(&one.config));
        assert_eq!(manifest["layers"][0]["digest"], digest(&one.layer));
        let config: serde_json::Value = serde_json::from_slice(&one.config).unwrap();
        assert_eq!(
            config["rootfs"]["diff_ids"][0],
            digest(&sample().tar().unwrap())
        );
        assert_eq!(config["config"]["Entrypoint"][0], "/usr/bin/tool");
    }

    #[test]
    fn a_layouts_sizes_are_its_stored_and_unpacked_layers() {
        let run = RunConfig {
            entrypoint: vec!["/usr/bin/tool".to_owned()],
            env: Vec::new(),
            user: "0".to_owned(),
            working_dir: "/".to_owned(),
        };
        let tar = sample().tar().unwrap();
        let image = Image::new(&tar, &run).unwrap();
        let dir = contrast_testkit::TempDir::new("oci-sizes");
        write_layout(&dir.path().join("oci"), &[("tool", &image)]).unwrap();
        let sizes = layout_sizes(&dir.path().join("oci")).unwrap();
        assert_eq!(
            sizes["tool"],
            ImageSize {
                stored: image.layer.len() as u64,
                unpacked: tar.len() as u64,
            }
        );
        let size = ImageSize {
            stored: 3 << 19,
            unpacked: 10 << 20,
        };
        assert_eq!(
            size.to_string(),
            "1.5 MiB in the registry, 10.0 MiB unpacked"
        );
        std::fs::write(dir.path().join("oci/index.json"), b"{").unwrap();
        let err = layout_sizes(&dir.path().join("oci"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("index.json: not JSON"), "{err}");
    }
}
