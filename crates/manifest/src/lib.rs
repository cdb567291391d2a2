//! The Contrast manifest (`manifest.json`): decoding, Go-compatible encoding, validation.
//!
//! * **Decoding** binds keys case-insensitively, as Contrast's Go decoder does, so both
//!   `TrustedMeasurement` and the `trustedMeasurement` of embedded reference values are
//!   read. Unlike Go it refuses keys given twice (Go silently keeps the last one) and keeps
//!   unknown keys so that validation can name them.
//! * **Encoding** writes what Contrast writes: `json.MarshalIndent` with two spaces and a
//!   trailing newline, fields in Go declaration order, map keys sorted. A decoded object
//!   keeps its member order, so decode → encode of a Contrast-written manifest is
//!   byte-identical whichever Contrast release wrote it.
//! * **Hashing** is over the bytes as received ([`ManifestDocument`]); the Coordinator and
//!   `contrast verify` never hash a re-encoding.
//! * **Validation** returns every problem with its JSON path and says which ones are
//!   reference values the user still has to fill in ([`ErrorKind::ExpectedMissing`]).

mod codec;
mod coordinator_trust;
mod embedded;
mod error;
mod json;
mod model;
mod validate;

use sha2::{Digest, Sha256};

pub use codec::Layout;
pub use coordinator_trust::COORDINATOR_INITDATA_KEY;
pub use embedded::EmbeddedReferenceValues;
pub use error::{DecodeError, ErrorKind, ValidationError, ValidationErrors};
pub use model::{
    HexString, Manifest, PolicyEntry, ROLE_COORDINATOR, ReferenceValues, SnpGuestPolicy,
    SnpPlatformInfo, SnpReferenceValues, SnpTcb, Svn, TdxReferenceValues,
};

use codec::JsonValue;
use json::Json;

impl Manifest {
    /// Decodes a manifest. Only the form is checked here; call [`Manifest::validate`]
    /// for the values.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, DecodeError> {
        let tree = Json::parse(bytes).map_err(|e| DecodeError::Syntax {
            message: e.to_string(),
        })?;
        <Manifest as JsonValue>::from_json(&tree, "")
    }

    /// Encodes the manifest as Contrast writes it (two-space indent, trailing newline).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        JsonValue::to_json(self).write_go_indented(&mut out);
        out.push('\n');
        out.into_bytes()
    }

    /// Checks every rule of a Gen-1 manifest and returns all problems found.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        validate::validate_manifest(self, &mut errs);
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    /// Things that were accepted but will be written differently (old key spellings).
    pub fn warnings(&self) -> Vec<String> {
        validate::alias_warnings(self)
    }

    /// The policy hashes with the Coordinator role.
    pub fn coordinator_policy_hashes(&self) -> impl Iterator<Item = &HexString> {
        self.policies
            .iter()
            .filter(|(_, entry)| entry.is_coordinator())
            .map(|(hash, _)| hash)
    }

    /// Whether `SetManifest` may replace this manifest: only with workload owner keys.
    pub fn allows_updates(&self) -> bool {
        self.workload_owner_key_digests
            .as_ref()
            .is_some_and(|keys| !keys.is_empty())
    }
}

impl ReferenceValues {
    /// Decodes a reference-values object (`{"snp": [...], "tdx": [...]}`), keys bound
    /// case-insensitively as in a manifest.
    pub fn decode(bytes: &[u8]) -> Result<ReferenceValues, DecodeError> {
        let tree = Json::parse(bytes).map_err(|e| DecodeError::Syntax {
            message: e.to_string(),
        })?;
        <ReferenceValues as JsonValue>::from_json(&tree, "")
    }

    /// Encodes the reference values as Contrast writes JSON (two-space indent, newline).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = String::new();
        JsonValue::to_json(self).write_go_indented(&mut out);
        out.push('\n');
        out.into_bytes()
    }
}

/// A manifest together with the exact bytes it was received as.
///
/// The manifest hash is SHA-256 over those bytes: re-encoding may change them (key
/// spelling, whitespace), so it is never used for hashing.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestDocument {
    raw: Vec<u8>,
    manifest: Manifest,
}

impl ManifestDocument {
    /// Decodes `raw` and keeps it.
    pub fn parse(raw: Vec<u8>) -> Result<Self, DecodeError> {
        let manifest = Manifest::decode(&raw)?;
        Ok(ManifestDocument { raw, manifest })
    }

    /// Encodes `manifest` as Contrast writes it and keeps those bytes.
    pub fn from_manifest(manifest: Manifest) -> Self {
        ManifestDocument {
            raw: manifest.encode(),
            manifest,
        }
    }

    /// The bytes as received.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The decoded manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// SHA-256 over the bytes as received.
    pub fn hash(&self) -> [u8; 32] {
        Sha256::digest(&self.raw).into()
    }

    /// The hash as lowercase hex, as Contrast prints it.
    pub fn hash_hex(&self) -> String {
        hex::encode(self.hash())
    }
}
