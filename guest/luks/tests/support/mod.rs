//! Test support: LUKS2 image files with integrity headers, built without device-mapper.
//!
//! libcryptsetup writes an integrity header only after dm-integrity has formatted the data
//! area, which needs the kernel's device-mapper; build machines have none. So these images
//! are made in two steps, each by libcryptsetup except the last:
//!
//! 1. libcryptsetup formats LUKS2 (aes-xts-plain64, 4096-byte sectors, no integrity) and
//!    adds keyslot 0 holding a fresh 96-byte key (an unbound keyslot: the volume key size
//!    with hmac(sha256) integrity), with the requested KDF;
//! 2. the JSON metadata is edited to what a format with integrity writes: the keyslot's
//!    digest takes over segment 0 (the 64-byte key's digest goes), and segment 0 gets
//!    `"integrity": {"type": "hmac(sha256)", "journal_encryption": "none",
//!    "journal_integrity": "none"}`; both header copies get new checksums.
//!
//! The keyslot, its area, the digest and the salts are libcryptsetup's own output. What
//! the images lack is the dm-integrity superblock in the data area, which no host-side
//! check reads.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use contrast_luks::header;
use libcryptsetup_rs::consts::flags::{CryptPbkdf, CryptVolumeKey};
use libcryptsetup_rs::consts::vals::{CryptKdf, EncryptionFormat, KeyslotsSize, MetadataSize};
use libcryptsetup_rs::{CryptInit, CryptParamsLuks2, CryptParamsLuks2Ref, CryptPbkdfType, Either};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// Which keyslot KDF (and metadata layout) an image gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Our profile: pbkdf2-sha256 at 1000 iterations, 16 KiB metadata, 384 KiB keyslots.
    Ours,
    /// Contrast's profile with small argon2id costs (time 4, 10 MiB, 2 threads) so tests
    /// stay fast; default metadata layout.
    ContrastFast,
    /// Contrast's format as `luksFormat --pbkdf=argon2id --pbkdf-memory=10240` runs it:
    /// cryptsetup benchmarks for its default 2 s.
    ContrastBenchmarked,
    /// cryptsetup's default LUKS2 keyslot KDF (argon2id, benchmarked to 2 s, up to 1 GiB).
    CryptsetupDefault,
}

/// An image file in a temporary directory.
pub struct Image {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Image {
    /// A sparse, zero-filled image of `len` bytes.
    pub fn empty(len: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk.img");
        File::create(&path).unwrap().set_len(len).unwrap();
        Self { dir, path }
    }

    /// A directory for header copies next to the image.
    pub fn header_base(&self) -> PathBuf {
        let base = self.dir.path().join("run");
        std::fs::create_dir_all(&base).unwrap();
        base
    }
}

fn pbkdf(kind: Kind) -> CryptPbkdfType {
    match kind {
        Kind::Ours => CryptPbkdfType {
            type_: CryptKdf::Pbkdf2,
            hash: Some("sha256".into()),
            time_ms: 0,
            iterations: header::PBKDF2_ITERATIONS,
            max_memory_kb: 0,
            parallel_threads: 0,
            flags: CryptPbkdf::NO_BENCHMARK,
        },
        Kind::ContrastFast => CryptPbkdfType {
            type_: CryptKdf::Argon2Id,
            hash: None,
            time_ms: 0,
            iterations: 4,
            max_memory_kb: 10240,
            parallel_threads: 2,
            flags: CryptPbkdf::NO_BENCHMARK,
        },
        Kind::ContrastBenchmarked => CryptPbkdfType {
            type_: CryptKdf::Argon2Id,
            hash: None,
            time_ms: 2000,
            iterations: 0,
            max_memory_kb: 10240,
            parallel_threads: 4,
            flags: CryptPbkdf::empty(),
        },
        Kind::CryptsetupDefault => CryptPbkdfType {
            type_: CryptKdf::Argon2Id,
            hash: None,
            time_ms: 2000,
            iterations: 0,
            max_memory_kb: 1024 * 1024,
            parallel_threads: 4,
            flags: CryptPbkdf::empty(),
        },
    }
}

/// Writes a LUKS2 header with hmac(sha256) integrity and keyslot 0 opened by
/// `passphrase` to `path` (see the module documentation).
pub fn synthesize(path: &Path, kind: Kind, passphrase: &[u8]) {
    contrast_luks::cryptsetup::init_logging();
    {
        let mut cd = CryptInit::init(path).unwrap();
        if kind == Kind::Ours {
            cd.settings_handle()
                .set_metadata_size(
                    MetadataSize::Kb16,
                    KeyslotsSize::try_from(header::KEYSLOTS_SIZE).unwrap(),
                )
                .unwrap();
        }
        let pbkdf = pbkdf(kind);
        cd.settings_handle().set_pbkdf_type(&pbkdf).unwrap();
        let params = CryptParamsLuks2 {
            pbkdf: Some(pbkdf),
            integrity: None,
            integrity_params: None,
            data_alignment: 0,
            data_device: None,
            sector_size: header::SECTOR_SIZE,
            label: None,
            subsystem: None,
        };
        let mut params_ref: CryptParamsLuks2Ref<'_> = (&params).try_into().unwrap();
        cd.context_handle()
            .format(
                EncryptionFormat::Luks2,
                (header::CIPHER, header::CIPHER_MODE),
                None,
                Either::Right(64),
                Some(&mut params_ref),
            )
            .unwrap();
        let slot = cd
            .keyslot_handle()
            .add_by_key(
                Some(0),
                Some(Either::Right(header::VOLUME_KEY_SIZE as usize)),
                passphrase,
                CryptVolumeKey::NO_SEGMENT,
            )
            .unwrap();
        assert_eq!(slot, 0);
    }
    rewrite_metadata(path, |metadata| {
        let digests = metadata["digests"].as_object_mut().unwrap();
        let (bound_id, _) = digests
            .iter()
            .find(|(_, d)| d["segments"].as_array().is_some_and(|s| !s.is_empty()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .unwrap();
        digests.remove(&bound_id);
        let (unbound_id, mut unbound) = digests
            .iter()
            .next()
            .map(|(k, v)| (k.clone(), v.clone()))
            .unwrap();
        digests.remove(&unbound_id);
        unbound["segments"] = json!(["0"]);
        digests.insert("0".into(), unbound);
        metadata["segments"]["0"]["integrity"] = json!({
            "type": header::INTEGRITY,
            "journal_encryption": "none",
            "journal_integrity": "none",
        });
    });
}

/// A fresh image with a synthesized header.
pub fn image(kind: Kind, passphrase: &[u8]) -> Image {
    let image = Image::empty(32 << 20);
    synthesize(&image.path, kind, passphrase);
    image
}

/// Byte offsets in a LUKS2 binary header.
const HDR_SIZE_OFFSET: u64 = 8;
const CSUM_OFFSET: usize = 448;
const CSUM_LEN: usize = 64;
const BINARY_HEADER_LEN: usize = 4096;

/// The JSON metadata of the primary header, read directly from the file.
pub fn read_metadata(path: &Path) -> Value {
    let file = File::open(path).unwrap();
    let (hdr_size, area) = read_area(&file, 0);
    let json = &area[BINARY_HEADER_LEN..hdr_size];
    let end = json.iter().position(|&b| b == 0).unwrap_or(json.len());
    serde_json::from_slice(&json[..end]).unwrap()
}

fn read_area(file: &File, offset: u64) -> (usize, Vec<u8>) {
    let mut size = [0u8; 8];
    file.read_exact_at(&mut size, offset + HDR_SIZE_OFFSET)
        .unwrap();
    let hdr_size = usize::try_from(u64::from_be_bytes(size)).unwrap();
    let mut area = vec![0u8; hdr_size];
    file.read_exact_at(&mut area, offset).unwrap();
    (hdr_size, area)
}

/// Edits the JSON metadata of both header copies and recomputes their SHA-256 checksums
/// (checksum over the whole header area with the checksum field zeroed).
pub fn rewrite_metadata(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut metadata = read_metadata(path);
    edit(&mut metadata);
    let text = serde_json::to_vec(&metadata).unwrap();
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let (hdr_size, _) = read_area(&file, 0);
    for offset in [0u64, u64::try_from(hdr_size).unwrap()] {
        let (size, mut area) = read_area(&file, offset);
        assert_eq!(size, hdr_size, "both copies have the same size");
        let json = &mut area[BINARY_HEADER_LEN..];
        assert!(text.len() < json.len(), "metadata fits the JSON area");
        json.fill(0);
        json[..text.len()].copy_from_slice(&text);
        area[CSUM_OFFSET..CSUM_OFFSET + CSUM_LEN].fill(0);
        let digest = Sha256::digest(&area);
        area[CSUM_OFFSET..CSUM_OFFSET + digest.len()].copy_from_slice(&digest);
        file.write_all_at(&area, offset).unwrap();
    }
}

/// Sets the value at a dotted JSON path (`segments.0.integrity.type`).
pub fn set_path(metadata: &mut Value, path: &str, value: Value) {
    let mut node = metadata;
    for part in path.split('.') {
        node = match node {
            Value::Array(items) => &mut items[part.parse::<usize>().unwrap()],
            other => &mut other[part],
        };
    }
    *node = value;
}

/// Every leaf of a JSON document as (dotted path, value).
pub fn leaves(value: &Value) -> Vec<(String, Value)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, Value)>) {
        let join = |key: &str| {
            if prefix.is_empty() {
                key.to_owned()
            } else {
                format!("{prefix}.{key}")
            }
        };
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (k, v) in map {
                    walk(&join(k), v, out);
                }
            }
            Value::Array(items) if !items.is_empty() => {
                for (i, v) in items.iter().enumerate() {
                    walk(&join(&i.to_string()), v, out);
                }
            }
            leaf => out.push((prefix.to_owned(), leaf.clone())),
        }
    }
    let mut out = Vec::new();
    walk("", value, &mut out);
    out
}

/// A different value of the same JSON type (strings that hold numbers stay numbers).
pub fn changed(value: &Value) -> Value {
    match value {
        Value::String(s) => match s.parse::<u64>() {
            Ok(n) => Value::String((n + 4096).to_string()),
            Err(_) if s.ends_with('=') => {
                // base64 of the same length, different bytes.
                let mut t = s.clone().into_bytes();
                t[0] = if t[0] == b'A' { b'B' } else { b'A' };
                Value::String(String::from_utf8(t).unwrap())
            }
            Err(_) => Value::String(format!("{s}-changed")),
        },
        Value::Number(n) => json!(n.as_u64().unwrap() + 1),
        Value::Bool(b) => Value::Bool(!b),
        Value::Array(_) => json!(["changed"]),
        Value::Object(_) => json!({"changed": true}),
        Value::Null => json!("changed"),
    }
}
