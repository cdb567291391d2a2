//! The install configuration (`contrast-node-install.json`, docs/runtime.md §3):
//! which files to fetch, where to put them, and the runtime's kernel parameters.

use std::fmt;
use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use crate::InstallError;

/// Replaced by the runtime handler name in target paths.
pub const RUNTIME_NAME_PLACEHOLDER: &str = "@@runtimeName@@";

/// The installer's configuration as the installer image carries it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallConfig {
    /// The files to install.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// The kernel command line for QEMU guests; it must be the one the launch measurement
    /// was computed with. `None` leaves the choice to the caller.
    #[serde(
        default,
        rename = "QemuExtraKernelParams",
        alias = "qemuExtraKernelParams"
    )]
    pub qemu_extra_kernel_params: Option<String>,
    /// Turns on the runtime's and the agent's debug settings.
    #[serde(default, rename = "debugRuntime")]
    pub debug_runtime: bool,
}

/// One file to install.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Where the content comes from: `file://`, `http://` or `https://`.
    pub url: String,
    /// The absolute host path; may contain [`RUNTIME_NAME_PLACEHOLDER`].
    pub path: String,
    /// Whether the file gets mode 0755 (else 0644).
    #[serde(default)]
    pub executable: bool,
    /// Subresource integrity (`sha256-…`, `sha384-…`, `sha512-…`); required for http(s).
    #[serde(default)]
    pub integrity: Option<String>,
}

impl InstallConfig {
    /// Parses the JSON text read from `path` (used in messages).
    pub fn parse(json: &[u8], path: &str) -> Result<Self, InstallError> {
        serde_json::from_slice(json).map_err(|source| InstallError::ParseInstallConfig {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads and parses the file at `path`.
    pub fn read(path: &std::path::Path) -> Result<Self, InstallError> {
        let json = std::fs::read(path).map_err(|source| InstallError::Io {
            operation: "reading the install configuration",
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&json, &path.display().to_string())
    }
}

/// Where a file's content comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A local file (inside the installer's container).
    File(PathBuf),
    /// An `http://` or `https://` URL.
    Http(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(path) => write!(f, "file://{}", path.display()),
            Source::Http(url) => f.write_str(url),
        }
    }
}

/// A digest algorithm of subresource integrity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SriAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl SriAlgorithm {
    /// The SRI prefix without the dash (`sha256`).
    pub fn name(self) -> &'static str {
        match self {
            SriAlgorithm::Sha256 => "sha256",
            SriAlgorithm::Sha384 => "sha384",
            SriAlgorithm::Sha512 => "sha512",
        }
    }

    pub(crate) fn digest_algorithm(self) -> &'static aws_lc_rs::digest::Algorithm {
        match self {
            SriAlgorithm::Sha256 => &aws_lc_rs::digest::SHA256,
            SriAlgorithm::Sha384 => &aws_lc_rs::digest::SHA384,
            SriAlgorithm::Sha512 => &aws_lc_rs::digest::SHA512,
        }
    }

    fn digest_len(self) -> usize {
        self.digest_algorithm().output_len()
    }
}

/// A parsed subresource integrity value: one algorithm and its digest.
#[derive(Clone, PartialEq, Eq)]
pub struct Sri {
    /// The algorithm.
    pub algorithm: SriAlgorithm,
    /// The expected digest.
    pub digest: Vec<u8>,
}

impl fmt::Debug for Sri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sri({self})")
    }
}

impl fmt::Display for Sri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.algorithm.name(),
            BASE64.encode(&self.digest)
        )
    }
}

impl Sri {
    /// Parses `sha256-<base64>` (or sha384, sha512); the digest must have the algorithm's
    /// length. Only one hash, without options, as the installer images write them.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (name, encoded) = text
            .split_once('-')
            .ok_or("expected <algorithm>-<base64 digest>, e.g. sha256-…")?;
        let algorithm = match name {
            "sha256" => SriAlgorithm::Sha256,
            "sha384" => SriAlgorithm::Sha384,
            "sha512" => SriAlgorithm::Sha512,
            other => {
                return Err(format!(
                    "unknown algorithm {other:?}; expected sha256, sha384 or sha512"
                ));
            }
        };
        let digest = BASE64
            .decode(encoded)
            .map_err(|e| format!("the digest is not standard base64: {e}"))?;
        if digest.len() != algorithm.digest_len() {
            return Err(format!(
                "the {} digest has {} bytes; expected {}",
                algorithm.name(),
                digest.len(),
                algorithm.digest_len()
            ));
        }
        Ok(Sri { algorithm, digest })
    }
}

/// A file entry checked and with the handler name filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedFile {
    /// Where the content comes from.
    pub source: Source,
    /// The absolute host path (placeholder replaced).
    pub path: String,
    /// Mode 0755 instead of 0644.
    pub executable: bool,
    /// The expected digest, if given.
    pub integrity: Option<Sri>,
}

impl FileSpec {
    /// Checks the entry (number `index` in the list, for messages) and replaces the
    /// runtime name placeholder with `handler`.
    pub fn validate(&self, index: usize, handler: &str) -> Result<ValidatedFile, InstallError> {
        let path = self.path.replace(RUNTIME_NAME_PLACEHOLDER, handler);
        if !path.starts_with('/') {
            return Err(InstallError::RelativePath { path });
        }
        let source = parse_url(&self.url).map_err(|reason| InstallError::BadUrl {
            index,
            url: self.url.clone(),
            reason,
        })?;
        let integrity = self
            .integrity
            .as_deref()
            .filter(|text| !text.is_empty())
            .map(|text| {
                Sri::parse(text).map_err(|reason| InstallError::MalformedIntegrity {
                    index,
                    integrity: text.to_owned(),
                    reason,
                })
            })
            .transpose()?;
        if integrity.is_none() && matches!(source, Source::Http(_)) {
            return Err(InstallError::MissingIntegrity {
                index,
                url: self.url.clone(),
            });
        }
        Ok(ValidatedFile {
            source,
            path,
            executable: self.executable,
            integrity,
        })
    }
}

fn parse_url(url: &str) -> Result<Source, String> {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(Source::Http(url.to_owned()));
    }
    if let Some(rest) = url.strip_prefix("file://") {
        let path = rest.strip_prefix("localhost").unwrap_or(rest);
        if !path.starts_with('/') {
            return Err("a file URL needs an absolute path: file:///path".into());
        }
        return percent_decode(path).map(|p| Source::File(PathBuf::from(p)));
    }
    Err("the scheme must be file, http or https".into())
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|pair| std::str::from_utf8(pair).ok())
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or("a % in a file URL must start a %XX escape")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the decoded file URL is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const HANDLER: &str = "contrast-cc-metal-qemu-snp-1a2b3c4d";

    fn spec(url: &str, path: &str, integrity: Option<&str>) -> FileSpec {
        FileSpec {
            url: url.into(),
            path: path.into(),
            executable: false,
            integrity: integrity.map(Into::into),
        }
    }

    #[test]
    fn parses_contrasts_layout() {
        let json = br#"{"files": [{"url": "https://example.com/kernel", "path": "/opt/edgeless/@@runtimeName@@/share/kata-kernel",
            "integrity": "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="},
            {"url": "file:///opt/share/shim", "path": "/opt/edgeless/@@runtimeName@@/bin/containerd-shim-contrast-cc-v2", "executable": true}],
            "QemuExtraKernelParams": "console=hvc0", "debugRuntime": true}"#;
        let config = InstallConfig::parse(json, "c.json").unwrap();
        assert_eq!(config.files.len(), 2);
        assert_eq!(
            config.qemu_extra_kernel_params.as_deref(),
            Some("console=hvc0")
        );
        assert!(config.debug_runtime);
        let kernel = config.files[0].validate(0, HANDLER).unwrap();
        assert_eq!(
            kernel.path,
            format!("/opt/edgeless/{HANDLER}/share/kata-kernel")
        );
        assert_eq!(
            kernel.integrity.unwrap().to_string(),
            "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        let shim = config.files[1].validate(1, HANDLER).unwrap();
        assert_eq!(shim.source, Source::File("/opt/share/shim".into()));
        assert!(shim.executable);
        assert!(shim.integrity.is_none());
    }

    #[test]
    fn refuses_unknown_keys() {
        let err =
            InstallConfig::parse(br#"{"files": [], "debugRuntme": true}"#, "c.json").unwrap_err();
        let chain = contrast_platforms::error_chain(&err);
        assert!(chain.contains("debugRuntme"), "{chain}");
        let err = InstallConfig::parse(
            br#"{"files": [{"url": "file:///a", "path": "/a", "mode": 493}]}"#,
            "c.json",
        )
        .unwrap_err();
        let chain = contrast_platforms::error_chain(&err);
        assert!(chain.contains("mode"), "{chain}");
    }

    #[test]
    fn refuses_relative_paths() {
        let err = spec("file:///a", "opt/a", None)
            .validate(0, HANDLER)
            .unwrap_err();
        assert!(matches!(err, InstallError::RelativePath { .. }), "{err}");
        let err = spec("file:///a", "@@runtimeName@@/a", None)
            .validate(0, HANDLER)
            .unwrap_err();
        assert!(matches!(err, InstallError::RelativePath { .. }), "{err}");
    }

    #[test]
    fn http_needs_integrity_file_does_not() {
        for url in ["http://example.com/a", "HTTPS://example.com/a"] {
            let err = spec(url, "/a", None).validate(3, HANDLER).unwrap_err();
            assert!(
                matches!(err, InstallError::MissingIntegrity { index: 3, .. }),
                "{err}"
            );
            let err = spec(url, "/a", Some("")).validate(3, HANDLER).unwrap_err();
            assert!(
                matches!(err, InstallError::MissingIntegrity { .. }),
                "{err}"
            );
        }
        assert!(spec("file:///a", "/a", None).validate(0, HANDLER).is_ok());
    }

    #[test]
    fn refuses_other_schemes_and_relative_file_urls() {
        for url in [
            "ftp://example.com/a",
            "/plain/path",
            "file://relative/x",
            "file:///a%2",
        ] {
            let err = spec(url, "/a", None).validate(0, HANDLER).unwrap_err();
            assert!(matches!(err, InstallError::BadUrl { .. }), "{url}: {err}");
        }
        let ok = spec("file://localhost/a%20b", "/a", None)
            .validate(0, HANDLER)
            .unwrap();
        assert_eq!(ok.source, Source::File("/a b".into()));
    }

    #[test]
    fn refuses_malformed_integrity() {
        let cases = [
            ("md5-1B2M2Y8AsgTpgAmY7PhCfg==", "unknown algorithm"),
            ("sha256", "expected <algorithm>"),
            ("sha256-not base64!", "base64"),
            ("sha256-AAAA", "3 bytes; expected 32"),
            (
                "sha384-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                "expected 48",
            ),
        ];
        for (integrity, message) in cases {
            let err = spec("https://example.com/a", "/a", Some(integrity))
                .validate(0, HANDLER)
                .unwrap_err();
            assert!(
                matches!(err, InstallError::MalformedIntegrity { .. })
                    && err.to_string().contains(message),
                "{integrity}: {err}"
            );
        }
    }

    #[test]
    fn sri_round_trips_every_algorithm() {
        for (algorithm, len) in [
            (SriAlgorithm::Sha256, 32),
            (SriAlgorithm::Sha384, 48),
            (SriAlgorithm::Sha512, 64),
        ] {
            let text = format!("{}-{}", algorithm.name(), BASE64.encode(vec![7u8; len]));
            let sri = Sri::parse(&text).unwrap();
            assert_eq!(sri.algorithm, algorithm);
            assert_eq!(sri.to_string(), text);
        }
    }
}
