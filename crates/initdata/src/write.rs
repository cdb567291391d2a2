//! The initdata document that carries a policy (docs/protocol.md §10.1–§10.2): TOML with
//! `version`, `algorithm` and `[data]."policy.rego"`, its SHA-256 (the policy hash the
//! manifest names and the TEE reports), and the annotation value base64(gzip(TOML)).
//!
//! The TOML is written here, not by a serializer: the document is three keys, and its
//! bytes are what is hashed, so they must not depend on a library's formatting choices.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use base64::Engine as _;

/// The pod annotation the Kata runtime reads the initdata from.
pub const INITDATA_ANNOTATION: &str = "io.katacontainers.config.hypervisor.cc_init_data";

use crate::document::POLICY_KEY;

/// Writes the documents of policies that start alike (every generated policy starts with
/// the same rules): their common start is escaped and compressed once, not per document.
#[derive(Debug, Clone)]
pub struct InitdataWriter {
    prefix: Arc<SharedPrefix>,
}

impl InitdataWriter {
    /// A writer for policies that start with `shared_policy_start` (others are written
    /// all the same, only without the shortcut).
    pub fn new(shared_policy_start: &str) -> Self {
        let mut toml = String::from(HEADER);
        push_multiline_basic(&mut toml, shared_policy_start);
        let deflate = raw_deflate(toml.as_bytes(), flate2::FlushCompress::Full);
        InitdataWriter {
            prefix: Arc::new(SharedPrefix {
                policy_start: shared_policy_start.to_owned(),
                toml,
                deflate,
            }),
        }
    }

    /// [`GeneratedInitdata::from_policy`], faster for a policy with the shared start.
    pub fn document(&self, policy_rego: &str) -> GeneratedInitdata {
        let mut toml = String::with_capacity(policy_rego.len() + policy_rego.len() / 16 + 96);
        match policy_rego.strip_prefix(self.prefix.policy_start.as_str()) {
            Some(rest) => {
                toml.push_str(&self.prefix.toml);
                push_multiline_basic(&mut toml, rest);
            }
            None => {
                toml.push_str(HEADER);
                push_multiline_basic(&mut toml, policy_rego);
            }
        }
        toml.push_str("\"\"\"\n");
        GeneratedInitdata {
            toml: toml.into_bytes(),
            prefix: Some(self.prefix.clone()),
        }
    }

    /// [`GeneratedInitdata::from_policy_and_data`], faster for a policy with the shared
    /// start.
    pub fn document_with_data(
        &self,
        policy_rego: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<GeneratedInitdata, InitdataError> {
        let mut doc = self.document(policy_rego);
        doc.append_data(data)?;
        Ok(doc)
    }
}

/// An initdata document as `contrast generate` writes it: the exact TOML bytes whose hash
/// is the policy hash. ([`crate::Initdata`] is a document as read.)
#[derive(Clone)]
pub struct GeneratedInitdata {
    toml: Vec<u8>,
    /// The writer's shared start, for [`GeneratedInitdata::annotation_value`].
    prefix: Option<Arc<SharedPrefix>>,
}

impl PartialEq for GeneratedInitdata {
    fn eq(&self, other: &Self) -> bool {
        self.toml == other.toml
    }
}

impl Eq for GeneratedInitdata {}

impl fmt::Debug for GeneratedInitdata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedInitdata")
            .field("len", &self.toml.len())
            .field("policy_hash", &hex_string(&self.policy_hash()))
            .finish()
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl GeneratedInitdata {
    /// The document for a policy:
    ///
    /// ```toml
    /// version = "0.1.0"
    /// algorithm = "sha256"
    ///
    /// [data]
    /// "policy.rego" = """
    /// <the policy>"""
    /// ```
    ///
    /// The policy is a TOML multi-line basic string (the newline after the opening
    /// quotes is not part of the value), with `\` and `"` escaped and every control
    /// character but tab and line feed written as `\uXXXX`, so the value reads back
    /// byte for byte. The same policy always gives the same bytes.
    pub fn from_policy(policy_rego: &str) -> GeneratedInitdata {
        let mut toml = String::with_capacity(policy_rego.len() + policy_rego.len() / 16 + 96);
        toml.push_str(HEADER);
        push_multiline_basic(&mut toml, policy_rego);
        toml.push_str("\"\"\"\n");
        GeneratedInitdata {
            toml: toml.into_bytes(),
            prefix: None,
        }
    }

    /// The document for a policy and further `[data]` entries of ours (Kata ignores
    /// entries it does not know), each after the policy, in key order:
    ///
    /// ```toml
    /// "<key>" = """
    /// <value>"""
    /// ```
    ///
    /// with the value escaped as the policy is, and the key as a basic string. The
    /// policy stays first, so every document starts with the same bytes.
    pub fn from_policy_and_data(
        policy_rego: &str,
        data: &BTreeMap<String, String>,
    ) -> Result<GeneratedInitdata, InitdataError> {
        let mut doc = GeneratedInitdata::from_policy(policy_rego);
        doc.append_data(data)?;
        Ok(doc)
    }

    fn append_data(&mut self, data: &BTreeMap<String, String>) -> Result<(), InitdataError> {
        if data.contains_key(POLICY_KEY) {
            return Err(InitdataError::PolicyKeyInData);
        }
        let mut toml = String::new();
        for (key, value) in data {
            push_basic_string(&mut toml, key);
            toml.push_str(" = \"\"\"\n");
            push_multiline_basic(&mut toml, value);
            toml.push_str("\"\"\"\n");
        }
        self.toml.extend_from_slice(toml.as_bytes());
        Ok(())
    }

    /// The TOML bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.toml
    }

    /// SHA-256 of the TOML bytes: the policy hash (the manifest's key, `HOST_DATA` on
    /// SEV-SNP, the start of `MRCONFIGID` on TDX).
    pub fn policy_hash(&self) -> [u8; 32] {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.toml);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.as_ref());
        hash
    }

    /// The annotation value: base64 (standard, padded) of the gzip of the TOML. The
    /// gzip header has no time stamp or file name and says "unknown OS", so the value
    /// depends on the document only.
    ///
    /// Compression is the fastest level (the CLI writes a thousand of these in a blink),
    /// and the part every generated document shares (the header and the rules) is
    /// compressed once: its deflate blocks end on a byte boundary with a fresh
    /// dictionary (a full flush), so the rest's blocks follow them as one valid stream.
    pub fn annotation_value(&self) -> String {
        let shared = self.prefix.as_deref();
        let (head, rest): (&[u8], &[u8]) = match shared
            .and_then(|shared| Some((shared, self.toml.strip_prefix(shared.toml.as_bytes())?)))
        {
            Some((shared, rest)) if !shared.deflate.is_empty() => (&shared.deflate, rest),
            _ => (&[], &self.toml),
        };
        let mut gzip = Vec::with_capacity(self.toml.len() / 3 + 64);
        // Magic, deflate, no flags, no time stamp, no extra flags, unknown OS.
        gzip.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);
        gzip.extend_from_slice(head);
        gzip.extend_from_slice(&raw_deflate(rest, flate2::FlushCompress::Finish));
        let mut crc = flate2::Crc::new();
        crc.update(&self.toml);
        gzip.extend_from_slice(&crc.sum().to_le_bytes());
        // ISIZE is the length modulo 2^32.
        gzip.extend_from_slice(&(self.toml.len() as u32).to_le_bytes());
        base64::engine::general_purpose::STANDARD.encode(gzip)
    }
}

/// Largest initdata document an annotation may decode to.
pub const MAX_INITDATA_LEN: u64 = 16 << 20;

/// Why an annotation value does not decode to an initdata document.
#[derive(Debug, thiserror::Error)]
pub enum AnnotationError {
    /// Not base64.
    #[error("the initdata annotation is not base64; run contrast generate again")]
    NotBase64(#[source] base64::DecodeError),
    /// Not gzip.
    #[error("the initdata annotation is not gzip; run contrast generate again")]
    NotGzip(#[source] std::io::Error),
    /// Larger than [`MAX_INITDATA_LEN`] once decompressed.
    #[error(
        "the initdata annotation decodes to more than {MAX_INITDATA_LEN} bytes; run contrast \
         generate again"
    )]
    TooLarge,
}

/// The initdata document an annotation value carries: the inverse of
/// [`GeneratedInitdata::annotation_value`], for values written by any tool (whitespace ignored, any
/// gzip header), at most [`MAX_INITDATA_LEN`] bytes.
pub fn decode_annotation_value(value: &str) -> Result<Vec<u8>, AnnotationError> {
    use std::io::Read as _;
    let compact: String = value.split_whitespace().collect();
    let gzip = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(AnnotationError::NotBase64)?;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gzip.as_slice())
        .take(MAX_INITDATA_LEN + 1)
        .read_to_end(&mut out)
        .map_err(AnnotationError::NotGzip)?;
    if out.len() as u64 > MAX_INITDATA_LEN {
        return Err(AnnotationError::TooLarge);
    }
    Ok(out)
}

/// Why an initdata document could not be written.
#[derive(Debug, thiserror::Error)]
pub enum InitdataError {
    /// A further `[data]` entry is named like the policy's.
    #[error(
        "a further initdata [data] entry is named \"{POLICY_KEY}\": that name holds the Kata \
         agent policy; give the entry another name"
    )]
    PolicyKeyInData,
}

/// The start of every document.
const HEADER: &str =
    "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"policy.rego\" = \"\"\"\n";

/// The start a writer's documents share, and its deflate blocks.
#[derive(Debug)]
struct SharedPrefix {
    /// The policy text the documents start with.
    policy_start: String,
    /// The document up to the end of that text, escaped.
    toml: String,
    /// That TOML compressed, ending on a byte boundary with a fresh dictionary.
    deflate: Vec<u8>,
}

/// Raw deflate of `data` at the fastest level. `Full`: non-final blocks ending on a
/// byte boundary, dictionary reset; `Finish`: ending with the final block. Empty if
/// the compressor fails, which it does not on input in memory.
fn raw_deflate(data: &[u8], flush: flate2::FlushCompress) -> Vec<u8> {
    let mut compress = flate2::Compress::new(flate2::Compression::fast(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(1024));
        }
        let consumed = usize::try_from(compress.total_in()).unwrap_or(usize::MAX);
        let input = data.get(consumed..).unwrap_or_default();
        let Ok(status) = compress.compress_vec(input, &mut out, flush) else {
            return Vec::new();
        };
        let all_in = usize::try_from(compress.total_in()).is_ok_and(|n| n == data.len());
        let done = match flush {
            flate2::FlushCompress::Finish => status == flate2::Status::StreamEnd,
            // Flushed once the compressor stops short of the space it had.
            _ => all_in && out.len() < out.capacity(),
        };
        if done {
            return out;
        }
    }
}

/// Appends `value` as a TOML basic string (a quoted key): quotes, backslash and every
/// control character escaped.
fn push_basic_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Appends `value` escaped for a TOML multi-line basic string.
fn push_multiline_basic(out: &mut String, value: &str) {
    let mut start = 0;
    for (i, c) in value.char_indices() {
        let escaped: Option<&str> = match c {
            '\\' => Some("\\\\"),
            '"' => Some("\\\""),
            '\n' | '\t' => None,
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&value[start..i]);
                out.push_str(&format!("\\u{:04X}", c as u32));
                start = i + c.len_utf8();
                continue;
            }
            _ => None,
        };
        if let Some(e) = escaped {
            out.push_str(&value[start..i]);
            out.push_str(e);
            start = i + 1;
        }
    }
    out.push_str(&value[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_has_the_three_keys_in_a_fixed_layout() {
        let doc = GeneratedInitdata::from_policy("package agent_policy\n");
        assert_eq!(
            std::str::from_utf8(doc.as_bytes()).unwrap(),
            "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"policy.rego\" = \"\"\"\npackage agent_policy\n\"\"\"\n"
        );
    }

    #[test]
    fn further_entries_follow_the_policy_in_key_order() {
        let data = BTreeMap::from([
            ("z.json".to_owned(), "{\"a\": 1}\n".to_owned()),
            ("a \"b\"\n".to_owned(), "x".to_owned()),
        ]);
        let doc = GeneratedInitdata::from_policy_and_data("package agent_policy\n", &data).unwrap();
        assert_eq!(
            std::str::from_utf8(doc.as_bytes()).unwrap(),
            "version = \"0.1.0\"\nalgorithm = \"sha256\"\n\n[data]\n\"policy.rego\" = \"\"\"\npackage agent_policy\n\"\"\"\n\
             \"a \\\"b\\\"\\u000A\" = \"\"\"\nx\"\"\"\n\
             \"z.json\" = \"\"\"\n{\\\"a\\\": 1}\n\"\"\"\n"
        );
        let err = GeneratedInitdata::from_policy_and_data(
            "p",
            &BTreeMap::from([(POLICY_KEY.to_owned(), String::new())]),
        )
        .unwrap_err();
        assert!(err.to_string().contains("policy.rego"), "{err}");
    }

    #[test]
    fn escapes() {
        let mut out = String::new();
        push_multiline_basic(&mut out, "a\"b\\c\nd\te\r\u{0}\u{7f}ü\"\"\"");
        assert_eq!(out, "a\\\"b\\\\c\nd\te\\u000D\\u0000\\u007Fü\\\"\\\"\\\"");
    }

    #[test]
    fn hash_is_sha256_of_the_bytes() {
        let doc = GeneratedInitdata::from_policy("x");
        let want = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, doc.as_bytes());
        assert_eq!(doc.policy_hash().as_slice(), want.as_ref());
        assert!(format!("{doc:?}").contains(&hex_string(&doc.policy_hash())));
    }
}
