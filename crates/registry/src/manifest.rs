//! Manifests, image indexes and image configs: parsing, platform selection, and the one
//! function that turns verified bytes into a [`Resolved`] image.
//!
//! Both the network path and the cache go through [`assemble`], which hashes every byte
//! string against the digest that names it. So a cache entry is exactly as trustworthy as
//! the digest it is filed under.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::reference::parse_digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest, schema 2.
pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub(crate) const DOCKER_MANIFEST_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// OCI layer, a gzip'd tar.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker image config.
const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The Accept list for manifest requests. All four, always: without the OCI types an OCI
/// manifest answers 404, and without the Docker v2 type a registry may convert a manifest
/// to schema 1 (with another digest).
pub(crate) const MANIFEST_MEDIA_TYPES: [&str; 4] = [
    OCI_MANIFEST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
];

/// Manifests and indexes above this size are refused (containerd's limit).
pub(crate) const MAX_MANIFEST_SIZE: usize = 4 << 20;
/// Image configs above this size are refused.
pub(crate) const MAX_CONFIG_SIZE: u64 = 8 << 20;

/// The SHA-256 digest of `bytes`, `sha256:<hex>`.
pub(crate) fn sha256_digest(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    format!("sha256:{}", hex::encode(digest.as_ref()))
}

/// A platform: `os/architecture[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Platform {
    pub(crate) os: String,
    pub(crate) architecture: String,
    pub(crate) variant: Option<String>,
}

impl Platform {
    /// From the resolver option: architecture may carry `/variant` (`arm64/v8`).
    pub(crate) fn from_option(os: &str, architecture: &str) -> Result<Platform, String> {
        let (architecture, variant) = match architecture.split_once('/') {
            Some((a, v)) => (a, Some(v.to_owned())),
            None => (architecture, None),
        };
        if os.is_empty() || architecture.is_empty() || variant.as_deref() == Some("") {
            return Err(format!(
                "platform {os:?}/{architecture:?} needs an OS and an architecture, e.g. (\"linux\", \"amd64\")"
            ));
        }
        Ok(Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant,
        })
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// A content descriptor.
#[derive(Debug, Clone)]
pub(crate) struct Descriptor {
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: u64,
    pub(crate) platform: Option<Platform>,
}

/// A parsed manifest.
#[derive(Debug, Clone)]
pub(crate) enum Manifest {
    /// An image manifest (OCI or Docker schema 2).
    Image {
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
    /// An image index or Docker manifest list.
    Index { manifests: Vec<Descriptor> },
}

#[derive(Deserialize)]
struct RawManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: Option<i64>,
    #[serde(rename = "mediaType")]
    media_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
}

#[derive(Deserialize)]
struct RawDescriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: i64,
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    os: String,
    architecture: String,
    variant: Option<String>,
}

impl RawDescriptor {
    fn check(self, what: &str) -> Result<Descriptor, String> {
        let digest = parse_digest(&self.digest)
            .map_err(|rule| format!("{what} digest {:?}: {rule}", self.digest))?;
        let size =
            u64::try_from(self.size).map_err(|_| format!("{what} {digest} has a negative size"))?;
        Ok(Descriptor {
            media_type: self.media_type,
            digest,
            size,
            platform: self.platform.map(|p| Platform {
                os: p.os,
                architecture: p.architecture,
                variant: p.variant.filter(|v| !v.is_empty()),
            }),
        })
    }
}

/// Parses a manifest or index (schema 2; OCI or Docker media types).
pub(crate) fn parse_manifest(bytes: &[u8]) -> Result<Manifest, String> {
    if bytes.len() > MAX_MANIFEST_SIZE {
        return Err(format!(
            "it is {} bytes, more than the {MAX_MANIFEST_SIZE} allowed",
            bytes.len()
        ));
    }
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("not a valid manifest JSON: {e}"))?;
    match raw.schema_version {
        Some(2) => {}
        Some(1) => {
            return Err("Docker schema 1 manifests are not supported; push the image with a current tool (schema 2 or OCI)".to_owned());
        }
        other => return Err(format!("unsupported schemaVersion {other:?} (expected 2)")),
    }
    let is_index = match raw.media_type.as_deref() {
        Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => true,
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => false,
        Some(other) => return Err(format!("unsupported media type {other:?}")),
        // OCI 1.0 allows manifests without mediaType: tell them apart by their fields.
        None => raw.manifests.is_some(),
    };
    if is_index {
        let manifests = raw
            .manifests
            .ok_or("an image index without \"manifests\"")?
            .into_iter()
            .map(|d| d.check("index entry"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Manifest::Index { manifests })
    } else {
        let config = raw
            .config
            .ok_or("an image manifest without \"config\"")?
            .check("config")?;
        let layers = raw
            .layers
            .unwrap_or_default()
            .into_iter()
            .map(|d| d.check("layer"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Manifest::Image { config, layers })
    }
}

/// Picks the index entry for `platform`: same OS and architecture, and the variant when one
/// is asked for (arm64's default variant is v8). Without a variant asked for, an entry
/// without variant is preferred, else the first match. Entries that are not image
/// manifests (nested indexes, attestations) are skipped. On failure: the platforms listed.
pub(crate) fn select_platform(
    manifests: &[Descriptor],
    platform: &Platform,
) -> Result<Descriptor, String> {
    let is_manifest =
        |d: &Descriptor| matches!(d.media_type.as_str(), OCI_MANIFEST | DOCKER_MANIFEST | "");
    let candidates: Vec<&Descriptor> = manifests
        .iter()
        .filter(|d| is_manifest(d))
        .filter(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == platform.os && p.architecture == platform.architecture)
        })
        .collect();
    let variant_of = |d: &Descriptor| {
        let p = d.platform.as_ref()?;
        p.variant
            .clone()
            .or_else(|| (p.architecture == "arm64").then(|| "v8".to_owned()))
    };
    let chosen = match &platform.variant {
        Some(wanted) => candidates
            .iter()
            .find(|d| variant_of(d).as_deref() == Some(wanted.as_str())),
        None => candidates
            .iter()
            .find(|d| d.platform.as_ref().is_some_and(|p| p.variant.is_none()))
            .or_else(|| candidates.first()),
    };
    match chosen {
        Some(d) => Ok((*d).clone()),
        None => {
            let listed: Vec<String> = manifests
                .iter()
                .map(|d| match &d.platform {
                    Some(p) => p.to_string(),
                    None => "(no platform)".to_owned(),
                })
                .collect();
            Err(if listed.is_empty() {
                "nothing".to_owned()
            } else {
                listed.join(", ")
            })
        }
    }
}

/// The parts of an image config this crate reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageConfigInfo {
    /// The config blob's digest (`sha256:…`), the image ID.
    pub digest: String,
    /// `os` of the config.
    pub os: String,
    /// `architecture` of the config.
    pub architecture: String,
    /// `config.Env`, `NAME=value` entries in order.
    pub env: Vec<String>,
    /// `config.Entrypoint`; `None` when absent or null.
    pub entrypoint: Option<Vec<String>>,
    /// `config.Cmd`; `None` when absent or null.
    pub cmd: Option<Vec<String>>,
    /// `config.WorkingDir`; `None` when absent or empty (the runtime's default, `/`).
    pub working_dir: Option<String>,
    /// `config.User` (`name`, `uid`, `uid:gid`, …); `None` when absent or empty (root).
    pub user: Option<String>,
    /// The keys of `config.Volumes`, sorted.
    pub volumes: Vec<String>,
}

/// A layer of the image manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// The layer's digest.
    pub digest: String,
    /// Its size in bytes (compressed, as stored in the registry).
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    config: Option<RawContainerConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawContainerConfig {
    env: Option<Vec<String>>,
    entrypoint: Option<Vec<String>>,
    cmd: Option<Vec<String>>,
    working_dir: Option<String>,
    user: Option<String>,
    volumes: Option<BTreeMap<String, serde_json::Value>>,
}

/// Parses an image config.
pub(crate) fn parse_config(bytes: &[u8], digest: &str) -> Result<ImageConfigInfo, String> {
    let raw: RawConfig =
        serde_json::from_slice(bytes).map_err(|e| format!("not a valid image config JSON: {e}"))?;
    let config = raw.config.unwrap_or(RawContainerConfig {
        env: None,
        entrypoint: None,
        cmd: None,
        working_dir: None,
        user: None,
        volumes: None,
    });
    Ok(ImageConfigInfo {
        digest: digest.to_owned(),
        os: raw.os,
        architecture: raw.architecture,
        env: config.env.unwrap_or_default(),
        entrypoint: config.entrypoint,
        cmd: config.cmd,
        working_dir: config.working_dir.filter(|s| !s.is_empty()),
        user: config.user.filter(|s| !s.is_empty()),
        volumes: config.volumes.unwrap_or_default().into_keys().collect(),
    })
}

/// Checks an image manifest's config descriptor: an image config of a sane size.
pub(crate) fn check_config_descriptor(config: &Descriptor) -> Result<(), String> {
    if !matches!(config.media_type.as_str(), OCI_CONFIG | DOCKER_CONFIG) {
        return Err(format!(
            "the config has media type {:?}: this is not a container image (an artifact such as a Helm chart or signature?)",
            config.media_type
        ));
    }
    if config.size > MAX_CONFIG_SIZE {
        return Err(format!(
            "the config is {} bytes, more than the {MAX_CONFIG_SIZE} allowed",
            config.size
        ));
    }
    Ok(())
}

/// The bytes that make up one image for one platform, as fetched or as cached.
#[derive(Debug, Clone)]
pub(crate) struct ImageBlobs {
    /// The manifest the reference names: an index or an image manifest.
    pub(crate) top: Vec<u8>,
    /// The platform's image manifest when `top` is an index.
    pub(crate) platform_manifest: Option<Vec<u8>>,
    /// The image config.
    pub(crate) config: Vec<u8>,
}

/// What [`assemble`] found wrong, before the caller adds image and registry.
#[derive(Debug, Clone)]
pub(crate) enum Problem {
    /// Bytes that do not hash to their digest.
    Mismatch {
        what: &'static str,
        expected: String,
        actual: String,
    },
    /// Unusable content.
    Invalid { what: &'static str, detail: String },
    /// The index has no entry for the platform.
    NoPlatform { available: String },
}

/// An image as resolved, independent of how the reference was spelled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) digest: String,
    pub(crate) manifest_digest: String,
    pub(crate) is_index: bool,
    pub(crate) layers: Vec<LayerInfo>,
    pub(crate) config: ImageConfigInfo,
}

/// Checks `blobs` against `top_digest` and each other, and reads the image out of them:
/// `top` hashes to `top_digest`; if it is an index, the entry for `platform` names
/// `platform_manifest` by digest; the image manifest names `config` by digest and size;
/// the config is an image config.
pub(crate) fn assemble(
    top_digest: &str,
    blobs: &ImageBlobs,
    platform: &Platform,
) -> Result<Resolved, Problem> {
    let check = |what: &'static str, expected: &str, bytes: &[u8]| {
        let actual = sha256_digest(bytes);
        if actual == expected {
            Ok(())
        } else {
            Err(Problem::Mismatch {
                what,
                expected: expected.to_owned(),
                actual,
            })
        }
    };
    // Hash before parsing: content that does not match its digest is a mismatch, whatever
    // else is wrong with it.
    check("manifest", top_digest, &blobs.top)?;
    let top = parse_manifest(&blobs.top).map_err(|detail| Problem::Invalid {
        what: "manifest",
        detail,
    })?;
    let (what_top, manifest_digest, config, layers) = match top {
        Manifest::Image { config, layers } => {
            if blobs.platform_manifest.is_some() {
                return Err(Problem::Invalid {
                    what: "manifest",
                    detail: "an image manifest where an image index was recorded".to_owned(),
                });
            }
            ("manifest", top_digest.to_owned(), config, layers)
        }
        Manifest::Index { manifests } => {
            let entry = select_platform(&manifests, platform)
                .map_err(|available| Problem::NoPlatform { available })?;
            let bytes = blobs.platform_manifest.as_deref().ok_or(Problem::Invalid {
                what: "image index",
                detail: "the platform manifest is missing".to_owned(),
            })?;
            check("platform manifest", &entry.digest, bytes)?;
            match parse_manifest(bytes).map_err(|detail| Problem::Invalid {
                what: "platform manifest",
                detail,
            })? {
                Manifest::Image { config, layers } => {
                    ("platform manifest", entry.digest, config, layers)
                }
                Manifest::Index { .. } => {
                    return Err(Problem::Invalid {
                        what: "platform manifest",
                        detail: format!(
                            "the index entry for {platform} is another image index; nested indexes are not supported"
                        ),
                    });
                }
            }
        }
    };
    check_config_descriptor(&config).map_err(|detail| Problem::Invalid {
        what: what_top,
        detail,
    })?;
    check("config", &config.digest, &blobs.config)?;
    if blobs.config.len() as u64 != config.size {
        // Equal digests with different sizes cannot happen; this catches a manifest whose
        // size field lies, which containerd would refuse.
        return Err(Problem::Invalid {
            what: what_top,
            detail: format!(
                "the config descriptor says {} bytes, the config {} has {}",
                config.size,
                config.digest,
                blobs.config.len()
            ),
        });
    }
    let info = parse_config(&blobs.config, &config.digest).map_err(|detail| Problem::Invalid {
        what: "config",
        detail,
    })?;
    Ok(Resolved {
        digest: top_digest.to_owned(),
        is_index: blobs.platform_manifest.is_some(),
        manifest_digest,
        layers: layers
            .into_iter()
            .map(|d| LayerInfo {
                digest: d.digest,
                size: d.size,
                media_type: d.media_type,
            })
            .collect(),
        config: info,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn platform(os: &str, arch: &str) -> Platform {
        Platform::from_option(os, arch).unwrap()
    }

    fn entry(arch: &str, variant: Option<&str>, n: u8) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.to_owned(),
            digest: format!("sha256:{}", hex::encode([n; 32])),
            size: 1,
            platform: Some(Platform {
                os: "linux".to_owned(),
                architecture: arch.to_owned(),
                variant: variant.map(str::to_owned),
            }),
        }
    }

    #[test]
    fn sha256_known_answer() {
        // FIPS 180-2 test vector "abc".
        assert_eq!(
            sha256_digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn platform_selection() {
        let mut attestation = entry("unknown", None, 9);
        attestation.platform.as_mut().unwrap().os = "unknown".to_owned();
        let mut nested = entry("amd64", None, 8);
        nested.media_type = OCI_INDEX.to_owned();
        let list = vec![
            nested,
            entry("arm", Some("v7"), 1),
            entry("arm64", None, 2),
            entry("amd64", Some("v3"), 3),
            entry("amd64", None, 4),
            attestation,
        ];
        let pick = |os, arch| select_platform(&list, &platform(os, arch)).map(|d| d.digest);
        assert_eq!(pick("linux", "amd64").unwrap(), list[4].digest);
        assert_eq!(pick("linux", "amd64/v3").unwrap(), list[3].digest);
        assert_eq!(pick("linux", "arm64").unwrap(), list[2].digest);
        assert_eq!(pick("linux", "arm64/v8").unwrap(), list[2].digest);
        assert_eq!(pick("linux", "arm/v7").unwrap(), list[1].digest);
        let err = pick("linux", "s390x").unwrap_err();
        assert!(
            err.contains("linux/arm/v7") && err.contains("unknown/unknown"),
            "{err}"
        );
        assert!(
            pick("windows", "amd64")
                .unwrap_err()
                .contains("linux/amd64")
        );
        // Without a plain entry, the first variant matches.
        let only_variants = vec![entry("amd64", Some("v2"), 5), entry("amd64", Some("v3"), 6)];
        assert_eq!(
            select_platform(&only_variants, &platform("linux", "amd64"))
                .unwrap()
                .digest,
            only_variants[0].digest
        );
        assert_eq!(
            select_platform(&[], &platform("linux", "amd64")).unwrap_err(),
            "nothing"
        );
        assert!(Platform::from_option("", "amd64").is_err());
        assert!(Platform::from_option("linux", "arm64/").is_err());
    }

    #[test]
    fn manifest_parsing_refusals() {
        let cases: [(&[u8], &str); 8] = [
            (b"{", "not a valid manifest JSON"),
            (br#"{"schemaVersion": 1, "name": "x"}"#, "schema 1"),
            (br#"{"schemaVersion": 3}"#, "schemaVersion Some(3)"),
            (br#"{"mediaType": "text/plain", "schemaVersion": 2}"#, "unsupported media type"),
            (br#"{"schemaVersion": 2}"#, "without \"config\""),
            (
                br#"{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json"}"#,
                "without \"manifests\"",
            ),
            (
                br#"{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "md5:00", "size": 1}}"#,
                "only sha256",
            ),
            (
                br#"{"schemaVersion": 2, "config": {"mediaType": "x", "digest": "sha256:0000000000000000000000000000000000000000000000000000000000000000", "size": -1}}"#,
                "negative size",
            ),
        ];
        for (input, want) in cases {
            let err = parse_manifest(input).unwrap_err();
            assert!(
                err.contains(want),
                "{}: {err:?} should mention {want:?}",
                String::from_utf8_lossy(input)
            );
        }
        let huge = vec![b' '; MAX_MANIFEST_SIZE + 1];
        assert!(parse_manifest(&huge).unwrap_err().contains("more than"));
    }

    #[test]
    fn config_parsing() {
        let info = parse_config(
            br#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1","B=2"],"Entrypoint":["/bin/app"],"Cmd":null,"WorkingDir":"","User":"1000:1000","Volumes":{"/data":{},"/cache":{}}}}"#,
            "sha256:x",
        )
        .unwrap();
        assert_eq!(info.env, ["A=1", "B=2"]);
        assert_eq!(info.entrypoint, Some(vec!["/bin/app".to_owned()]));
        assert_eq!(info.cmd, None);
        assert_eq!(info.working_dir, None);
        assert_eq!(info.user.as_deref(), Some("1000:1000"));
        assert_eq!(info.volumes, ["/cache", "/data"]);
        assert_eq!(
            (info.os.as_str(), info.architecture.as_str()),
            ("linux", "amd64")
        );
        // No "config" section at all: defaults.
        let info = parse_config(br#"{"architecture":"arm64","os":"linux"}"#, "d").unwrap();
        assert!(info.env.is_empty() && info.entrypoint.is_none() && info.volumes.is_empty());
        assert!(parse_config(br#"{"config":{"Env":"x"}}"#, "d").is_err());
    }

    fn image(config: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:{}","size":7}}]}}"#,
            sha256_digest(config),
            config.len(),
            "ab".repeat(32)
        );
        (manifest.into_bytes(), config.to_vec())
    }

    #[test]
    fn assemble_checks_every_digest() {
        let config = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]}}"#;
        let (manifest, config) = image(config);
        let linux = platform("linux", "amd64");
        let digest = sha256_digest(&manifest);
        let blobs = ImageBlobs {
            top: manifest.clone(),
            platform_manifest: None,
            config: config.clone(),
        };
        let resolved = assemble(&digest, &blobs, &linux).unwrap();
        assert_eq!(resolved.digest, digest);
        assert_eq!(resolved.manifest_digest, digest);
        assert!(!resolved.is_index);
        assert_eq!(resolved.layers.len(), 1);
        assert_eq!(resolved.config.cmd, Some(vec!["sh".to_owned()]));

        // Wrong top digest.
        let wrong = format!("sha256:{}", "0".repeat(64));
        assert!(matches!(
            assemble(&wrong, &blobs, &linux),
            Err(Problem::Mismatch {
                what: "manifest",
                ..
            })
        ));
        // Config bytes changed.
        let mut tampered = blobs.clone();
        tampered.config[0] = b' ';
        assert!(matches!(
            assemble(&digest, &tampered, &linux),
            Err(Problem::Mismatch { what: "config", .. })
        ));

        // An index over it.
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{digest}","size":{},"platform":{{"os":"linux","architecture":"amd64"}}}}]}}"#,
            manifest.len()
        )
        .into_bytes();
        let index_digest = sha256_digest(&index);
        let blobs = ImageBlobs {
            top: index.clone(),
            platform_manifest: Some(manifest.clone()),
            config: config.clone(),
        };
        let resolved = assemble(&index_digest, &blobs, &linux).unwrap();
        assert_eq!(resolved.digest, index_digest);
        assert_eq!(resolved.manifest_digest, digest);
        assert!(resolved.is_index);
        assert!(matches!(
            assemble(&index_digest, &blobs, &platform("linux", "arm64")),
            Err(Problem::NoPlatform { .. })
        ));
        let mut tampered = blobs.clone();
        tampered.platform_manifest =
            Some(format!("{} ", String::from_utf8(manifest).unwrap()).into_bytes());
        assert!(matches!(
            assemble(&index_digest, &tampered, &linux),
            Err(Problem::Mismatch {
                what: "platform manifest",
                ..
            })
        ));
        let mut missing = blobs;
        missing.platform_manifest = None;
        assert!(matches!(
            assemble(&index_digest, &missing, &linux),
            Err(Problem::Invalid { .. })
        ));
    }

    #[test]
    fn assemble_refuses_artifacts() {
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.cncf.helm.config.v1+json","digest":"{}","size":2}},"layers":[]}}"#,
            sha256_digest(b"{}")
        );
        let blobs = ImageBlobs {
            top: manifest.clone().into_bytes(),
            platform_manifest: None,
            config: b"{}".to_vec(),
        };
        let err = assemble(
            &sha256_digest(manifest.as_bytes()),
            &blobs,
            &platform("linux", "amd64"),
        )
        .unwrap_err();
        assert!(
            matches!(err, Problem::Invalid { detail, .. } if detail.contains("not a container image"))
        );
    }
}
