//! The initdata document (docs/protocol.md §10.1): a TOML file with `version`,
//! `algorithm` and a `[data]` table of named strings, one of them `policy.rego`. Its
//! digest is the named hash over the document's exact bytes, so the bytes are kept as
//! received next to the parsed fields.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// The only initdata version there is.
pub const INITDATA_VERSION: &str = "0.1.0";

/// The `[data]` entry that holds the Kata agent policy.
pub const POLICY_KEY: &str = "policy.rego";

/// The hash named by `algorithm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// SHA-256 (32 bytes; what `contrast generate` writes).
    Sha256,
    /// SHA-384 (48 bytes).
    Sha384,
    /// SHA-512 (64 bytes).
    Sha512,
}

impl Algorithm {
    /// Reads an `algorithm` value. `sha-256` and `sha256` are both in use upstream, so
    /// the first `-` is dropped before matching, as Contrast does; nothing else is
    /// normalised (no case folding), so `SHA256` is refused.
    pub fn parse(value: &str) -> Result<Self, DocumentError> {
        match value.replacen('-', "", 1).as_str() {
            "sha256" => Ok(Algorithm::Sha256),
            "sha384" => Ok(Algorithm::Sha384),
            "sha512" => Ok(Algorithm::Sha512),
            _ => Err(DocumentError::UnknownAlgorithm {
                found: value.to_owned(),
            }),
        }
    }

    /// The canonical name (`sha256`, `sha384`, `sha512`).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha384 => "sha384",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// The digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 32,
            Algorithm::Sha384 => 48,
            Algorithm::Sha512 => 64,
        }
    }

    /// The digest of `bytes`.
    pub fn digest(self, bytes: &[u8]) -> Vec<u8> {
        let algorithm = match self {
            Algorithm::Sha256 => &aws_lc_rs::digest::SHA256,
            Algorithm::Sha384 => &aws_lc_rs::digest::SHA384,
            Algorithm::Sha512 => &aws_lc_rs::digest::SHA512,
        };
        aws_lc_rs::digest::digest(algorithm, bytes)
            .as_ref()
            .to_vec()
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why an initdata document was refused.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The bytes are not UTF-8, so they cannot be TOML.
    #[error(
        "the initdata is not UTF-8 text (byte {valid_up_to} is invalid): it must be the TOML \
         document `contrast generate` wrote"
    )]
    NotUtf8 {
        /// How many leading bytes are valid.
        valid_up_to: usize,
    },
    /// The TOML does not parse, or its fields have the wrong types or names.
    #[error(
        "the initdata is not a valid initdata TOML document (version, algorithm, [data]): \
         {message}"
    )]
    Toml {
        /// The parser's explanation.
        message: String,
    },
    /// `version` is not 0.1.0.
    #[error("initdata version {found:?} is not supported: only {INITDATA_VERSION:?} exists")]
    UnsupportedVersion {
        /// The version found.
        found: String,
    },
    /// `algorithm` names no supported hash.
    #[error(
        "initdata algorithm {found:?} is not supported: use sha256, sha384 or sha512 \
         (sha-256 spellings are accepted)"
    )]
    UnknownAlgorithm {
        /// The value found.
        found: String,
    },
}

/// The fields of the TOML, as written. Unknown keys are refused: the digest covers
/// them, but nothing would read them, and a typo must not pass unnoticed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    version: String,
    algorithm: String,
    #[serde(default)]
    data: BTreeMap<String, String>,
}

/// A parsed initdata document with the bytes it was parsed from.
#[derive(Clone, PartialEq, Eq)]
pub struct Initdata {
    raw: Vec<u8>,
    algorithm: Algorithm,
    data: BTreeMap<String, String>,
}

impl fmt::Debug for Initdata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Initdata")
            .field("len", &self.raw.len())
            .field("algorithm", &self.algorithm)
            .field("data_keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Initdata {
    /// Parses the (decompressed) TOML bytes.
    pub fn parse(raw: Vec<u8>) -> Result<Self, DocumentError> {
        let text = std::str::from_utf8(&raw).map_err(|e| DocumentError::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })?;
        let fields: Fields = toml::from_str(text).map_err(|e| DocumentError::Toml {
            message: e.message().to_owned(),
        })?;
        if fields.version != INITDATA_VERSION {
            return Err(DocumentError::UnsupportedVersion {
                found: fields.version,
            });
        }
        let algorithm = Algorithm::parse(&fields.algorithm)?;
        Ok(Initdata {
            raw,
            algorithm,
            data: fields.data,
        })
    }

    /// The bytes as received (what the digest covers).
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// The hash the document names.
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The digest of the document's bytes with its own algorithm.
    pub fn digest(&self) -> Vec<u8> {
        self.algorithm.digest(&self.raw)
    }

    /// The `[data]` entries.
    pub fn data(&self) -> &BTreeMap<String, String> {
        &self.data
    }

    /// The Kata agent policy (`[data]."policy.rego"`), if there is one.
    pub fn policy(&self) -> Option<&str> {
        self.data.get(POLICY_KEY).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENT: &str = "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"policy.rego\" = \"package agent_policy\\n\"\n";

    #[test]
    fn parses_the_three_fields_and_keeps_the_bytes() {
        let doc = Initdata::parse(DOCUMENT.as_bytes().to_vec()).unwrap();
        assert_eq!(doc.algorithm(), Algorithm::Sha256);
        assert_eq!(doc.policy(), Some("package agent_policy\n"));
        assert_eq!(doc.as_bytes(), DOCUMENT.as_bytes());
        assert_eq!(doc.data().len(), 1);
    }

    #[test]
    fn the_digest_covers_the_exact_bytes() {
        // Known answer: DOCUMENT's bytes through GNU coreutils' sha256sum.
        let doc = Initdata::parse(DOCUMENT.as_bytes().to_vec()).unwrap();
        assert_eq!(
            hex::encode(doc.digest()),
            "a02d31872c3ef3fa9f3b10d844ae5fb873d40f8e6d4da5e011a8852373cf2ab5"
        );
        // A semantically equal document with other bytes has another digest.
        let reordered = DOCUMENT.replace(
            "version = \"0.1.0\"\nalgorithm = \"sha256\"",
            "algorithm = \"sha256\"\nversion = \"0.1.0\"",
        );
        let other = Initdata::parse(reordered.into_bytes()).unwrap();
        assert_eq!(other.policy(), doc.policy());
        assert_ne!(other.digest(), doc.digest());
    }

    #[test]
    fn known_answers_for_every_algorithm() {
        // FIPS 180-2 "abc" vectors.
        assert_eq!(
            hex::encode(Algorithm::Sha256.digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(Algorithm::Sha384.digest(b"abc")),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed\
             8086072ba1e7cc2358baeca134c825a7"
        );
        assert_eq!(
            hex::encode(Algorithm::Sha512.digest(b"abc")),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        for a in [Algorithm::Sha256, Algorithm::Sha384, Algorithm::Sha512] {
            assert_eq!(a.digest(b"").len(), a.digest_len());
        }
    }

    #[test]
    fn algorithm_spellings() {
        assert_eq!(Algorithm::parse("sha256").unwrap(), Algorithm::Sha256);
        assert_eq!(Algorithm::parse("sha-256").unwrap(), Algorithm::Sha256);
        assert_eq!(Algorithm::parse("sha-384").unwrap(), Algorithm::Sha384);
        assert_eq!(Algorithm::parse("sha512").unwrap(), Algorithm::Sha512);
        for refused in [
            "SHA256", "sha--256", "sha1", "md5", "", "sha256 ", "-sha256-",
        ] {
            let err = Algorithm::parse(refused).unwrap_err();
            assert!(
                matches!(&err, DocumentError::UnknownAlgorithm { found } if found == refused),
                "{refused:?}: {err}"
            );
        }
        assert_eq!(Algorithm::Sha384.to_string(), "sha384");
    }

    #[test]
    fn a_document_with_the_dashed_spelling_hashes_with_that_algorithm() {
        let text = DOCUMENT.replace("sha256", "sha-384");
        let doc = Initdata::parse(text.clone().into_bytes()).unwrap();
        assert_eq!(doc.algorithm(), Algorithm::Sha384);
        assert_eq!(doc.digest(), Algorithm::Sha384.digest(text.as_bytes()));
    }

    #[test]
    fn refuses_an_unknown_algorithm() {
        let err = Initdata::parse(DOCUMENT.replace("sha256", "sha3-256").into_bytes()).unwrap_err();
        assert!(
            matches!(err, DocumentError::UnknownAlgorithm { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("\"sha3-256\""), "{err}");
    }

    #[test]
    fn refuses_another_version() {
        let err = Initdata::parse(DOCUMENT.replace("0.1.0", "0.2.0").into_bytes()).unwrap_err();
        assert!(
            matches!(&err, DocumentError::UnsupportedVersion { found } if found == "0.2.0"),
            "{err}"
        );
    }

    #[test]
    fn refuses_malformed_toml() {
        for (input, says) in [
            ("version = \"0.1.0\"\nalgorithm = ", "string"),
            (
                "version = \"0.1.0\"\n[data]\n\"policy.rego\" = \"x\"\n",
                "algorithm",
            ),
            ("algorithm = \"sha256\"\n", "version"),
            ("version = 1\nalgorithm = \"sha256\"\n", "string"),
            (
                "version = \"0.1.0\"\nalgorithm = \"sha256\"\n[data]\nx = 3\n",
                "string",
            ),
            (
                "version = \"0.1.0\"\nalgorithm = \"sha256\"\nalgorithm = \"sha256\"\n",
                "duplicate",
            ),
            (
                "version = \"0.1.0\"\nalgorithm = \"sha256\"\nalgorithim = \"sha512\"\n",
                "algorithim",
            ),
        ] {
            let err = Initdata::parse(input.as_bytes().to_vec()).unwrap_err();
            assert!(
                matches!(err, DocumentError::Toml { .. }),
                "{input:?}: {err}"
            );
            assert!(err.to_string().contains(says), "{input:?}: {err}");
        }
    }

    #[test]
    fn refuses_bytes_that_are_not_utf8() {
        let mut bytes = DOCUMENT.as_bytes().to_vec();
        bytes[3] = 0xff;
        let err = Initdata::parse(bytes).unwrap_err();
        assert!(
            matches!(err, DocumentError::NotUtf8 { valid_up_to: 3 }),
            "{err}"
        );
    }

    #[test]
    fn a_document_without_data_has_no_policy() {
        let doc =
            Initdata::parse(b"version = \"0.1.0\"\nalgorithm = \"sha256\"\n".to_vec()).unwrap();
        assert_eq!(doc.policy(), None);
        assert!(doc.data().is_empty());
    }
}
