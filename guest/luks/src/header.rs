//! Strict decoding of a LUKS2 header's JSON metadata and the two accepted profiles.
//!
//! The metadata is decoded into structs that mirror LUKS2's on-disk JSON (keyslots,
//! tokens, segments, digests, config) and refuse unknown fields, then checked field by
//! field against exactly one of two profiles:
//!
//! - [`Profile::Ours`]: what [`crate::format_if_empty`] writes. Every value is pinned, offsets and
//!   sizes included.
//! - [`Profile::Contrast`]: what Contrast's `luksFormat` writes (docs/protocol.md §12.2):
//!   the same cipher, integrity, sector size, keyslot and digest layout, an argon2id
//!   keyslot, libcryptsetup's default layout (16 KiB metadata, data at 16 MiB). Values
//!   Contrast's format benchmarks (argon2id time, memory, threads; digest iterations) are
//!   accepted within bounds; a change to them is caught by the keyslot check.
//!
//! Every refusal names the field by its JSON path (`segments.0.integrity.type`).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;

use crate::error::HeaderError;

/// The data cipher, as libcryptsetup's format takes it.
pub const CIPHER: &str = "aes";
/// The data cipher mode, as libcryptsetup's format takes it.
pub const CIPHER_MODE: &str = "xts-plain64";
/// The data and keyslot-area encryption as the header names it.
pub const ENCRYPTION: &str = "aes-xts-plain64";
/// The integrity algorithm (kernel name): HMAC-SHA256 tags per sector.
pub const INTEGRITY: &str = "hmac(sha256)";
/// The HMAC key size newer cryptsetup releases record in `segments.0.integrity.key_size`.
pub const INTEGRITY_KEY_SIZE: u32 = 32;
/// The volume key: 64 bytes for AES-256-XTS and 32 for HMAC-SHA256.
pub const VOLUME_KEY_SIZE: u32 = 96;
/// The keyslot area's key size (AES-256-XTS).
pub const KEYSLOT_AREA_KEY_SIZE: u32 = 64;
/// The encryption sector size in bytes.
pub const SECTOR_SIZE: u32 = 4096;
/// libcryptsetup's minimum PBKDF2 iteration count: our keyslot and digest use it, the
/// passphrase being 256 random bits.
pub const PBKDF2_ITERATIONS: u32 = 1000;
/// Anti-forensic splitter stripes (libcryptsetup's only value).
pub const AF_STRIPES: u32 = 4000;
/// Salt length of keyslot KDFs and digests.
pub const SALT_LEN: usize = 32;
/// Our metadata size (binary header and JSON area), one of each of the two copies.
pub const METADATA_SIZE: u64 = 16 * 1024;
/// Our JSON area size.
pub const JSON_SIZE: u64 = METADATA_SIZE - 4096;
/// Our keyslots area: room for exactly one keyslot of a 96-byte key (4000 stripes of 96
/// bytes = 384000 bytes, in 4 KiB units), so the header copy is 416 KiB instead of 16 MiB.
pub const KEYSLOTS_SIZE: u64 = 96 * 4096;
/// Our keyslot area offset: right after the two metadata copies.
pub const KEYSLOT_AREA_OFFSET: u64 = 2 * METADATA_SIZE;
/// Our keyslot area size: 384000 bytes rounded up to 4 KiB.
pub const KEYSLOT_AREA_SIZE: u64 = 94 * 4096;
/// Our data offset: the metadata and keyslots area rounded up to libcryptsetup's 1 MiB
/// default alignment.
pub const DATA_OFFSET: u64 = 1024 * 1024;
/// Contrast's data offset: libcryptsetup's default LUKS2 header and keyslots size, 16 MiB
/// (a device whose topology asks for a larger alignment would get more; Kata's virtio
/// disks do not).
pub const CONTRAST_DATA_OFFSET: u64 = 16 * 1024 * 1024;
/// Contrast's keyslots area: from the end of the two metadata copies to the data.
pub const CONTRAST_KEYSLOTS_SIZE: u64 = CONTRAST_DATA_OFFSET - 2 * METADATA_SIZE;

/// Bounds for Contrast's argon2id keyslot. Contrast formats with `--pbkdf-memory=10240`
/// and lets cryptsetup benchmark time and threads (≤ 4); the time bound keeps a header
/// written by the host from pinning the guest's CPU for long while leaving room for any
/// machine Contrast's 2-second benchmark ran on.
pub const ARGON2_MAX_MEMORY_KIB: u32 = 10240;
/// See [`ARGON2_MAX_MEMORY_KIB`].
pub const ARGON2_MAX_TIME: u32 = 16384;
/// See [`ARGON2_MAX_MEMORY_KIB`].
pub const ARGON2_MAX_CPUS: u32 = 4;
/// Upper bound of a benchmarked digest iteration count (Contrast's profile).
pub const DIGEST_MAX_ITERATIONS: u32 = 1 << 24;

/// Which profile a header matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Ours: pbkdf2 keyslot keyed by the HKDF-derived passphrase.
    Ours,
    /// Contrast's: argon2id keyslot keyed by the hex workload secret.
    Contrast,
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Profile::Ours => "contrast-luks (pbkdf2, derived key)",
            Profile::Contrast => "Contrast (argon2id, hex workload secret)",
        })
    }
}

/// LUKS2 JSON metadata (the top-level object).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    keyslots: BTreeMap<String, Keyslot>,
    // Token objects are type-specific; any token is refused.
    tokens: BTreeMap<String, serde_json::Value>,
    segments: BTreeMap<String, Segment>,
    digests: BTreeMap<String, Digest>,
    config: Config,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Keyslot {
    #[serde(rename = "type")]
    kind: String,
    key_size: u32,
    af: AntiForensic,
    area: Area,
    kdf: Kdf,
    priority: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AntiForensic {
    #[serde(rename = "type")]
    kind: String,
    stripes: u32,
    hash: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Area {
    #[serde(rename = "type")]
    kind: String,
    offset: String,
    size: String,
    encryption: String,
    key_size: u32,
}

/// Both KDF shapes in one struct: pbkdf2 has hash and iterations, argon2 has time,
/// memory and cpus. Which ones may be present is checked per profile.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Kdf {
    #[serde(rename = "type")]
    kind: String,
    hash: Option<String>,
    iterations: Option<u32>,
    time: Option<u32>,
    memory: Option<u32>,
    cpus: Option<u32>,
    salt: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Segment {
    #[serde(rename = "type")]
    kind: String,
    offset: String,
    size: String,
    iv_tweak: String,
    encryption: String,
    sector_size: u32,
    integrity: Option<Integrity>,
    flags: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Integrity {
    #[serde(rename = "type")]
    kind: String,
    journal_encryption: String,
    journal_integrity: String,
    key_size: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Digest {
    #[serde(rename = "type")]
    kind: String,
    keyslots: Vec<String>,
    segments: Vec<String>,
    hash: String,
    iterations: u32,
    salt: String,
    digest: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    json_size: String,
    keyslots_size: String,
    flags: Option<Vec<String>>,
    requirements: Option<serde_json::Value>,
}

/// Decodes the header's JSON metadata strictly and returns the profile it matches.
pub fn validate(metadata: &serde_json::Value) -> Result<Profile, HeaderError> {
    let decoded: Metadata =
        serde_path_to_error::deserialize(metadata).map_err(|e| HeaderError::Decode {
            path: e.path().to_string(),
            message: e.into_inner().to_string(),
        })?;
    decoded.check()
}

/// Decodes JSON text (as `cryptsetup luksDump --dump-json-metadata` prints it) and
/// validates it; see [`validate`].
pub fn validate_text(text: &str) -> Result<Profile, HeaderError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| HeaderError::Decode {
        path: String::from("."),
        message: e.to_string(),
    })?;
    validate(&value)
}

/// Reads the primary header's JSON metadata straight from `path`, for diagnosis only:
/// when libcryptsetup refuses a header, this tells which field is wrong. Nothing is ever
/// opened on the strength of it. `None` if there is no readable LUKS2 primary header.
pub fn read_primary_metadata(path: &std::path::Path) -> Option<serde_json::Value> {
    use std::os::unix::fs::FileExt as _;
    let file = std::fs::File::open(path).ok()?;
    let mut binary = [0u8; 16];
    file.read_exact_at(&mut binary, 0).ok()?;
    let version = u16::from_be_bytes([binary[6], binary[7]]);
    let hdr_size = u64::from_be_bytes(binary[8..16].try_into().ok()?);
    // LUKS2 header sizes are 16 KiB to 4 MiB.
    if binary[..6] != crate::probe::PRIMARY_MAGIC
        || version != 2
        || !(METADATA_SIZE..=4 << 20).contains(&hdr_size)
    {
        return None;
    }
    let mut json = vec![0u8; usize::try_from(hdr_size - 4096).ok()?];
    file.read_exact_at(&mut json, 4096).ok()?;
    let end = json.iter().position(|&b| b == 0).unwrap_or(json.len());
    serde_json::from_slice(&json[..end]).ok()
}

/// What our validator says about the primary header at `path`, if it refuses it.
pub(crate) fn diagnose(path: &std::path::Path) -> Option<HeaderError> {
    validate(&read_primary_metadata(path)?).err()
}

fn mismatch(field: &str, expected: impl Into<String>, found: impl Into<String>) -> HeaderError {
    HeaderError::Field {
        field: field.to_owned(),
        expected: expected.into(),
        found: found.into(),
    }
}

fn expect_str(field: &str, found: &str, expected: &str) -> Result<(), HeaderError> {
    if found == expected {
        Ok(())
    } else {
        Err(mismatch(
            field,
            format!("{expected:?}"),
            format!("{found:?}"),
        ))
    }
}

fn expect_u32(field: &str, found: u32, expected: u32) -> Result<(), HeaderError> {
    if found == expected {
        Ok(())
    } else {
        Err(mismatch(field, expected.to_string(), found.to_string()))
    }
}

fn expect_range(field: &str, found: Option<u32>, min: u32, max: u32) -> Result<(), HeaderError> {
    match found {
        Some(v) if (min..=max).contains(&v) => Ok(()),
        Some(v) => Err(mismatch(field, format!("{min}..={max}"), v.to_string())),
        None => Err(mismatch(field, format!("{min}..={max}"), "absent")),
    }
}

fn expect_absent<T: std::fmt::Debug>(field: &str, found: &Option<T>) -> Result<(), HeaderError> {
    match found {
        None => Ok(()),
        Some(v) => Err(mismatch(field, "absent", format!("{v:?}"))),
    }
}

/// A decimal byte count or offset as LUKS2 writes it: digits only, no sign, no leading zero.
fn expect_decimal(field: &str, found: &str) -> Result<u64, HeaderError> {
    let canonical = !found.is_empty()
        && found.bytes().all(|b| b.is_ascii_digit())
        && (found == "0" || !found.starts_with('0'));
    match found.parse::<u64>() {
        Ok(v) if canonical => Ok(v),
        _ => Err(mismatch(field, "a decimal number", format!("{found:?}"))),
    }
}

fn expect_decimal_eq(field: &str, found: &str, expected: u64) -> Result<(), HeaderError> {
    let value = expect_decimal(field, found)?;
    if value == expected {
        Ok(())
    } else {
        Err(mismatch(
            field,
            format!("\"{expected}\""),
            format!("{found:?}"),
        ))
    }
}

fn expect_base64_len(field: &str, found: &str, len: usize) -> Result<(), HeaderError> {
    match base64::engine::general_purpose::STANDARD.decode(found) {
        Ok(bytes) if bytes.len() == len => Ok(()),
        Ok(bytes) => Err(mismatch(
            field,
            format!("{len} bytes (base64)"),
            format!("{} bytes", bytes.len()),
        )),
        Err(_) => Err(mismatch(
            field,
            format!("{len} bytes (base64)"),
            "not base64",
        )),
    }
}

/// The keys of a map that must hold exactly the one entry `"0"`.
fn expect_only_zero<T>(
    field: &str,
    map: &BTreeMap<String, T>,
    what: &str,
) -> Result<(), HeaderError> {
    if map.len() == 1 && map.contains_key("0") {
        Ok(())
    } else {
        let keys: Vec<&str> = map.keys().map(String::as_str).collect();
        Err(mismatch(
            field,
            format!("exactly one {what} \"0\""),
            format!("{} {what}s {keys:?}", map.len()),
        ))
    }
}

fn expect_list(field: &str, found: &[String], expected: &[&str]) -> Result<(), HeaderError> {
    if found
        .iter()
        .map(String::as_str)
        .eq(expected.iter().copied())
    {
        Ok(())
    } else {
        Err(mismatch(
            field,
            format!("{expected:?}"),
            format!("{found:?}"),
        ))
    }
}

impl Metadata {
    fn check(&self) -> Result<Profile, HeaderError> {
        expect_only_zero("keyslots", &self.keyslots, "keyslot")?;
        if !self.tokens.is_empty() {
            let keys: Vec<&str> = self.tokens.keys().map(String::as_str).collect();
            return Err(mismatch(
                "tokens",
                "no tokens",
                format!("{} tokens {keys:?}", self.tokens.len()),
            ));
        }
        expect_only_zero("segments", &self.segments, "segment")?;
        expect_only_zero("digests", &self.digests, "digest")?;
        let (Some(keyslot), Some(segment), Some(digest)) = (
            self.keyslots.get("0"),
            self.segments.get("0"),
            self.digests.get("0"),
        ) else {
            // expect_only_zero has checked that all three exist.
            return Err(mismatch(
                "keyslots",
                "keyslot, segment and digest \"0\"",
                "missing",
            ));
        };
        let profile = match keyslot.kdf.kind.as_str() {
            "pbkdf2" => Profile::Ours,
            "argon2id" => Profile::Contrast,
            other => {
                return Err(mismatch(
                    "keyslots.0.kdf.type",
                    "\"pbkdf2\" (ours) or \"argon2id\" (Contrast's)",
                    format!("{other:?}"),
                ));
            }
        };
        keyslot.check(profile)?;
        segment.check(profile)?;
        digest.check(profile)?;
        self.config.check(profile)?;
        Ok(profile)
    }
}

impl Keyslot {
    fn check(&self, profile: Profile) -> Result<(), HeaderError> {
        expect_str("keyslots.0.type", &self.kind, "luks2")?;
        expect_u32("keyslots.0.key_size", self.key_size, VOLUME_KEY_SIZE)?;
        expect_absent("keyslots.0.priority", &self.priority)?;
        expect_str("keyslots.0.af.type", &self.af.kind, "luks1")?;
        expect_u32("keyslots.0.af.stripes", self.af.stripes, AF_STRIPES)?;
        expect_str("keyslots.0.af.hash", &self.af.hash, "sha256")?;
        expect_str("keyslots.0.area.type", &self.area.kind, "raw")?;
        expect_str(
            "keyslots.0.area.encryption",
            &self.area.encryption,
            ENCRYPTION,
        )?;
        expect_u32(
            "keyslots.0.area.key_size",
            self.area.key_size,
            KEYSLOT_AREA_KEY_SIZE,
        )?;
        let kdf = &self.kdf;
        expect_base64_len("keyslots.0.kdf.salt", &kdf.salt, SALT_LEN)?;
        // The area follows the two 16 KiB metadata copies and holds 4000 stripes of the
        // 96-byte key: the same for every cryptsetup release with default metadata size.
        expect_decimal_eq(
            "keyslots.0.area.offset",
            &self.area.offset,
            KEYSLOT_AREA_OFFSET,
        )?;
        expect_decimal_eq("keyslots.0.area.size", &self.area.size, KEYSLOT_AREA_SIZE)?;
        match profile {
            Profile::Ours => {
                match &kdf.hash {
                    Some(hash) => expect_str("keyslots.0.kdf.hash", hash, "sha256")?,
                    None => return Err(mismatch("keyslots.0.kdf.hash", "\"sha256\"", "absent")),
                }
                match kdf.iterations {
                    Some(n) => expect_u32("keyslots.0.kdf.iterations", n, PBKDF2_ITERATIONS)?,
                    None => {
                        return Err(mismatch(
                            "keyslots.0.kdf.iterations",
                            PBKDF2_ITERATIONS.to_string(),
                            "absent",
                        ));
                    }
                }
                expect_absent("keyslots.0.kdf.time", &kdf.time)?;
                expect_absent("keyslots.0.kdf.memory", &kdf.memory)?;
                expect_absent("keyslots.0.kdf.cpus", &kdf.cpus)?;
            }
            Profile::Contrast => {
                expect_absent("keyslots.0.kdf.hash", &kdf.hash)?;
                expect_absent("keyslots.0.kdf.iterations", &kdf.iterations)?;
                // cryptsetup's argon2 minimums: 4 passes, 32 KiB.
                expect_range("keyslots.0.kdf.time", kdf.time, 4, ARGON2_MAX_TIME)?;
                expect_range(
                    "keyslots.0.kdf.memory",
                    kdf.memory,
                    32,
                    ARGON2_MAX_MEMORY_KIB,
                )?;
                expect_range("keyslots.0.kdf.cpus", kdf.cpus, 1, ARGON2_MAX_CPUS)?;
            }
        }
        Ok(())
    }
}

impl Segment {
    fn check(&self, profile: Profile) -> Result<(), HeaderError> {
        expect_str("segments.0.type", &self.kind, "crypt")?;
        let data_offset = match profile {
            Profile::Ours => DATA_OFFSET,
            Profile::Contrast => CONTRAST_DATA_OFFSET,
        };
        expect_decimal_eq("segments.0.offset", &self.offset, data_offset)?;
        expect_str("segments.0.size", &self.size, "dynamic")?;
        expect_str("segments.0.iv_tweak", &self.iv_tweak, "0")?;
        expect_str("segments.0.encryption", &self.encryption, ENCRYPTION)?;
        expect_u32("segments.0.sector_size", self.sector_size, SECTOR_SIZE)?;
        expect_absent("segments.0.flags", &self.flags)?;
        let Some(integrity) = &self.integrity else {
            return Err(mismatch(
                "segments.0.integrity",
                format!("{{\"type\": {INTEGRITY:?}, ...}}"),
                "absent (no integrity protection)",
            ));
        };
        expect_str("segments.0.integrity.type", &integrity.kind, INTEGRITY)?;
        expect_str(
            "segments.0.integrity.journal_encryption",
            &integrity.journal_encryption,
            "none",
        )?;
        expect_str(
            "segments.0.integrity.journal_integrity",
            &integrity.journal_integrity,
            "none",
        )?;
        // cryptsetup 2.6 does not record the HMAC key size, newer releases do; both mean
        // the default 32 bytes.
        if let Some(key_size) = integrity.key_size {
            expect_u32(
                "segments.0.integrity.key_size",
                key_size,
                INTEGRITY_KEY_SIZE,
            )?;
        }
        Ok(())
    }
}

impl Digest {
    fn check(&self, profile: Profile) -> Result<(), HeaderError> {
        expect_str("digests.0.type", &self.kind, "pbkdf2")?;
        expect_list("digests.0.keyslots", &self.keyslots, &["0"])?;
        expect_list("digests.0.segments", &self.segments, &["0"])?;
        expect_str("digests.0.hash", &self.hash, "sha256")?;
        match profile {
            Profile::Ours => {
                expect_u32("digests.0.iterations", self.iterations, PBKDF2_ITERATIONS)?
            }
            Profile::Contrast => expect_range(
                "digests.0.iterations",
                Some(self.iterations),
                PBKDF2_ITERATIONS,
                DIGEST_MAX_ITERATIONS,
            )?,
        }
        expect_base64_len("digests.0.salt", &self.salt, SALT_LEN)?;
        // SHA-256 output.
        expect_base64_len("digests.0.digest", &self.digest, 32)?;
        Ok(())
    }
}

impl Config {
    fn check(&self, profile: Profile) -> Result<(), HeaderError> {
        let keyslots_size = match profile {
            Profile::Ours => KEYSLOTS_SIZE,
            Profile::Contrast => CONTRAST_KEYSLOTS_SIZE,
        };
        expect_decimal_eq("config.json_size", &self.json_size, JSON_SIZE)?;
        expect_decimal_eq("config.keyslots_size", &self.keyslots_size, keyslots_size)?;
        expect_absent("config.flags", &self.flags)?;
        // Requirements mark unfinished reencryption and features we do not know.
        expect_absent("config.requirements", &self.requirements)?;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// `cryptsetup luksDump --dump-json-metadata` of headers made by the test support
    /// (tests/data/PROVENANCE.md).
    fn ours() -> Value {
        serde_json::from_str(include_str!("../tests/data/ours.json")).unwrap()
    }

    fn contrast() -> Value {
        serde_json::from_str(include_str!("../tests/data/contrast.json")).unwrap()
    }

    fn refused_field(metadata: &Value) -> String {
        validate(metadata).unwrap_err().field().to_owned()
    }

    #[test]
    fn fixtures_match_their_profiles() {
        assert_eq!(validate(&ours()), Ok(Profile::Ours));
        assert_eq!(validate(&contrast()), Ok(Profile::Contrast));
        let text = include_str!("../tests/data/ours.json");
        assert_eq!(validate_text(text), Ok(Profile::Ours));
    }

    #[test]
    fn unknown_fields_are_refused_naming_them() {
        for (parent, pointer) in [
            ("", ""),
            ("keyslots.0", "/keyslots/0"),
            ("keyslots.0.kdf", "/keyslots/0/kdf"),
            ("keyslots.0.area", "/keyslots/0/area"),
            ("segments.0", "/segments/0"),
            ("segments.0.integrity", "/segments/0/integrity"),
            ("digests.0", "/digests/0"),
        ] {
            let mut m = ours();
            m.pointer_mut(pointer)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .insert("extra_field".into(), json!(1));
            let err = validate(&m).unwrap_err();
            let HeaderError::Decode { path, message } = &err else {
                panic!("{err}");
            };
            let expected_path = if parent.is_empty() {
                String::from("extra_field")
            } else {
                format!("{parent}.extra_field")
            };
            assert_eq!(path, &expected_path, "{err}");
            assert!(message.contains("extra_field"), "{err}");
        }
    }

    #[test]
    fn wrong_types_are_refused_naming_the_field() {
        let mut m = ours();
        m["keyslots"]["0"]["key_size"] = json!("96");
        let err = validate(&m).unwrap_err();
        assert!(matches!(err, HeaderError::Decode { .. }), "{err}");
        assert_eq!(err.field(), "keyslots.0.key_size");

        let mut m = ours();
        m["segments"]["0"]["sector_size"] = json!(-4096);
        assert_eq!(refused_field(&m), "segments.0.sector_size");

        let mut m = ours();
        m["config"].as_object_mut().unwrap().remove("keyslots_size");
        let err = validate(&m).unwrap_err();
        assert_eq!(err.field(), "config", "{err}");
        assert!(err.to_string().contains("keyslots_size"), "{err}");
    }

    #[test]
    fn keyslot_and_token_counts() {
        let mut m = ours();
        m["keyslots"]["1"] = m["keyslots"]["0"].clone();
        assert_eq!(refused_field(&m), "keyslots");

        let mut m = ours();
        let slot = m["keyslots"].as_object_mut().unwrap().remove("0").unwrap();
        m["keyslots"]["3"] = slot;
        assert_eq!(refused_field(&m), "keyslots");

        let mut m = ours();
        m["keyslots"] = json!({});
        assert_eq!(refused_field(&m), "keyslots");

        let mut m = contrast();
        m["tokens"]["0"] =
            json!({"type": "luks2-keyring", "keyslots": ["0"], "key_description": "x"});
        assert_eq!(refused_field(&m), "tokens");

        let mut m = ours();
        m["segments"]["1"] = m["segments"]["0"].clone();
        assert_eq!(refused_field(&m), "segments");

        let mut m = ours();
        m["digests"]["1"] = m["digests"]["0"].clone();
        assert_eq!(refused_field(&m), "digests");
    }

    #[test]
    fn optional_fields_we_never_write_are_refused() {
        let cases: [(&str, Value, &str); 5] = [
            ("/keyslots/0", json!({"priority": 2}), "keyslots.0.priority"),
            (
                "/segments/0",
                json!({"flags": ["backup-final"]}),
                "segments.0.flags",
            ),
            (
                "/config",
                json!({"flags": ["allow-discards"]}),
                "config.flags",
            ),
            (
                "/config",
                json!({"requirements": {"mandatory": ["online-reencrypt-v2"]}}),
                "config.requirements",
            ),
            (
                "/keyslots/0/kdf",
                json!({"memory": 10240}),
                "keyslots.0.kdf.memory",
            ),
        ];
        for (pointer, extra, field) in cases {
            let mut m = ours();
            let object = m.pointer_mut(pointer).unwrap().as_object_mut().unwrap();
            for (k, v) in extra.as_object().unwrap() {
                object.insert(k.clone(), v.clone());
            }
            assert_eq!(refused_field(&m), field);
        }
    }

    #[test]
    fn integrity_is_required_and_key_size_32_is_the_default() {
        let mut m = ours();
        m["segments"]["0"]
            .as_object_mut()
            .unwrap()
            .remove("integrity");
        assert_eq!(refused_field(&m), "segments.0.integrity");

        // Newer cryptsetup records the default HMAC key size.
        let mut m = contrast();
        m["segments"]["0"]["integrity"]["key_size"] = json!(32);
        assert_eq!(validate(&m), Ok(Profile::Contrast));
        m["segments"]["0"]["integrity"]["key_size"] = json!(64);
        assert_eq!(refused_field(&m), "segments.0.integrity.key_size");

        for other in ["hmac(sha1)", "aead", "none"] {
            let mut m = ours();
            m["segments"]["0"]["integrity"]["type"] = json!(other);
            assert_eq!(refused_field(&m), "segments.0.integrity.type");
        }
    }

    #[test]
    fn contrasts_benchmarked_values_have_bounds() {
        let ok = |path: &str, v: Value| {
            let mut m = contrast();
            *m.pointer_mut(path).unwrap() = v;
            validate(&m)
        };
        assert_eq!(
            ok("/keyslots/0/kdf/time", json!(245)),
            Ok(Profile::Contrast)
        );
        assert_eq!(
            ok("/keyslots/0/kdf/time", json!(ARGON2_MAX_TIME)),
            Ok(Profile::Contrast)
        );
        assert!(ok("/keyslots/0/kdf/time", json!(ARGON2_MAX_TIME + 1)).is_err());
        assert!(ok("/keyslots/0/kdf/time", json!(3)).is_err());
        assert_eq!(
            ok("/keyslots/0/kdf/memory", json!(8192)),
            Ok(Profile::Contrast)
        );
        assert!(ok("/keyslots/0/kdf/memory", json!(1_048_576)).is_err());
        assert_eq!(ok("/keyslots/0/kdf/cpus", json!(4)), Ok(Profile::Contrast));
        assert!(ok("/keyslots/0/kdf/cpus", json!(0)).is_err());
        assert!(ok("/keyslots/0/kdf/cpus", json!(5)).is_err());
        assert_eq!(
            ok("/digests/0/iterations", json!(169_343)),
            Ok(Profile::Contrast)
        );
        assert!(ok("/digests/0/iterations", json!(999)).is_err());
        assert!(ok("/digests/0/iterations", json!(DIGEST_MAX_ITERATIONS + 1)).is_err());
        // argon2i is neither profile; a pbkdf2 field in an argon2id keyslot is refused.
        assert_eq!(
            ok("/keyslots/0/kdf/type", json!("argon2i"))
                .unwrap_err()
                .field(),
            "keyslots.0.kdf.type"
        );
        let mut m = contrast();
        m["keyslots"]["0"]["kdf"]["hash"] = json!("sha256");
        assert_eq!(refused_field(&m), "keyslots.0.kdf.hash");
    }

    #[test]
    fn our_values_are_pinned() {
        let mut m = ours();
        m["keyslots"]["0"]["kdf"]["iterations"] = json!(2000);
        assert_eq!(refused_field(&m), "keyslots.0.kdf.iterations");
        let mut m = ours();
        m["keyslots"]["0"]["kdf"]
            .as_object_mut()
            .unwrap()
            .remove("hash");
        assert_eq!(refused_field(&m), "keyslots.0.kdf.hash");
        let mut m = ours();
        m["digests"]["0"]["iterations"] = json!(200_000);
        assert_eq!(refused_field(&m), "digests.0.iterations");
        // Contrast's layout with our keyslot is neither profile.
        let mut m = ours();
        m["segments"]["0"]["offset"] = json!(CONTRAST_DATA_OFFSET.to_string());
        assert_eq!(refused_field(&m), "segments.0.offset");
    }

    #[test]
    fn decimals_must_be_canonical() {
        for bad in ["032768", "+32768", " 32768", "", "0x8000", "32768.0"] {
            let mut m = ours();
            m["keyslots"]["0"]["area"]["offset"] = json!(bad);
            assert_eq!(refused_field(&m), "keyslots.0.area.offset", "{bad:?}");
        }
    }

    #[test]
    fn salts_and_digest_must_be_32_bytes_of_base64() {
        for (pointer, field) in [
            ("/keyslots/0/kdf/salt", "keyslots.0.kdf.salt"),
            ("/digests/0/salt", "digests.0.salt"),
            ("/digests/0/digest", "digests.0.digest"),
        ] {
            for bad in ["AAAA", "not base64!", ""] {
                let mut m = ours();
                *m.pointer_mut(pointer).unwrap() = json!(bad);
                assert_eq!(refused_field(&m), field, "{bad:?}");
            }
        }
    }

    #[test]
    fn digest_must_bind_keyslot_zero_to_segment_zero() {
        let mut m = ours();
        m["digests"]["0"]["segments"] = json!([]);
        assert_eq!(refused_field(&m), "digests.0.segments");
        let mut m = ours();
        m["digests"]["0"]["keyslots"] = json!(["0", "0"]);
        assert_eq!(refused_field(&m), "digests.0.keyslots");
    }

    #[test]
    fn error_messages_name_field_and_values() {
        let mut m = ours();
        m["segments"]["0"]["encryption"] = json!("aes-cbc-essiv:sha256");
        let text = validate(&m).unwrap_err().to_string();
        assert!(text.contains("`segments.0.encryption`"), "{text}");
        assert!(text.contains("aes-cbc-essiv:sha256"), "{text}");
        assert!(text.contains("aes-xts-plain64"), "{text}");
    }
}
