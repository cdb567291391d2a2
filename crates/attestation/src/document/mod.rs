//! Contrast's aTLS attestation documents: the bytes a peer puts into its aTLS certificate's
//! attestation extension.
//!
//! * **SNP**: the protobuf `sevsnp.Attestation` of google/go-sev-guest — the report split
//!   into fields, the certificate chain (VCEK or VLEK, ASK, ARK) and the product line. The
//!   CRL travels in the chain's `extras` under [`CRL_EXTRAS_KEY`].
//! * **TDX**: the protobuf `tdx.QuoteV4` of google/go-tdx-guest — the version 4 quote split
//!   into fields.
//!
//! A document carries evidence field by field, so a verifier rebuilds the raw report or
//! quote from it (as go-sev-guest's `ReportToAbiBytes` and go-tdx-guest's
//! `QuoteToAbiBytes` do) and then checks the signature over the rebuilt bytes with the
//! ordinary verifiers ([`crate::snp::verify_report`], [`crate::tdx::verify_quote`]).
//! Changing any carried field therefore breaks the signature. Decoding is strict: every
//! fixed-size field must have exactly its size and every integer must fit the bytes it
//! is rebuilt into, so a document has one reading only.
//!
//! Encoding refuses evidence a document cannot carry exactly (non-zero reserved bytes,
//! TDX quotes of another version or layout): what is encoded always decodes to the same
//! bytes.

mod proto;
mod snp;
mod tdx;

pub use snp::{CRL_EXTRAS_KEY, SnpDocument, decode_snp, decode_snp_document, encode_snp};
pub use tdx::{decode_tdx, encode_tdx};

use crate::snp::{REPORT_SIZE, ReportError};
use crate::tdx::QuoteError;

/// Why evidence cannot be put into a document, or a document cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    /// The bytes are not a protobuf message of the document's type.
    #[error(
        "the attestation document is not a valid protobuf {message}: {reason}; pass the document bytes exactly as issued"
    )]
    Protobuf {
        /// The message type expected (`sevsnp.Attestation`, `tdx.QuoteV4`).
        message: &'static str,
        /// The protobuf decoder's words.
        reason: String,
    },
    /// A message the document must hold is absent.
    #[error(
        "the attestation document has no {field}: it is incomplete; the issuer must include it"
    )]
    MissingField {
        /// The field's path in the document (e.g. `report`, `signed_data.certification_data`).
        field: &'static str,
    },
    /// A fixed-size field of the document does not have its size.
    #[error(
        "the attestation document's {field} is {actual} bytes, expected {expected}: the document is malformed"
    )]
    FieldLength {
        /// The field's path in the document.
        field: &'static str,
        /// Its length.
        actual: usize,
        /// The length the evidence format fixes.
        expected: usize,
    },
    /// A field of the document has a value the evidence cannot hold.
    #[error("the attestation document's {field} is {actual}, expected {expected}")]
    FieldValue {
        /// The field's path in the document.
        field: &'static str,
        /// What it is.
        actual: String,
        /// What it must be.
        expected: &'static str,
    },
    /// The SNP report to encode is not 1184 bytes.
    #[error(
        "an SEV-SNP report is {REPORT_SIZE} bytes, got {0}; pass the raw report (not an Azure HCL report or an extended report with certificates)"
    )]
    ReportSize(usize),
    /// The SNP report to encode is malformed.
    #[error(transparent)]
    Report(#[from] ReportError),
    /// Reserved bytes of the SNP report are not zero; a document cannot carry them (and
    /// go-sev-guest refuses such a report as well).
    #[error(
        "the SEV-SNP report's reserved bytes {start:#x}..{end:#x} are not zero; an attestation document cannot carry them, so the report cannot be sent in one"
    )]
    ReservedBytes {
        /// First reserved byte (offset into the report).
        start: usize,
        /// End of the reserved range (exclusive).
        end: usize,
    },
    /// A report field has a value its document field cannot carry exactly.
    #[error(
        "the SEV-SNP report's {field} is {actual}, which an attestation document cannot carry: {why}"
    )]
    NotRepresentable {
        /// The report field.
        field: &'static str,
        /// Its value.
        actual: String,
        /// What the document can carry.
        why: &'static str,
    },
    /// The TDX quote to encode is malformed.
    #[error(transparent)]
    Quote(#[from] QuoteError),
    /// Only version 4 quotes fit a `tdx.QuoteV4` document.
    #[error(
        "a TDX quote of version {0} cannot be put into a tdx.QuoteV4 document; only version 4 quotes can (Contrast's verifiers read tdx.QuoteV4 only): configure the quote generation for version 4"
    )]
    QuoteVersion(u16),
    /// The quote's structure has bytes a `tdx.QuoteV4` document has no field for.
    #[error("the TDX quote cannot be carried in a tdx.QuoteV4 document: {0}")]
    QuoteLayout(String),
}

/// Which document some bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocumentKind {
    /// A `sevsnp.Attestation`.
    Snp,
    /// A `tdx.QuoteV4`.
    Tdx,
}

impl DocumentKind {
    /// Tells the two documents apart by their top-level protobuf fields, without decoding
    /// them: a `tdx.QuoteV4` has a varint field 3 (`signed_data_size`) and fields 4 and 5,
    /// a `sevsnp.Attestation` only length-delimited fields 1 to 3. `None` for bytes that are
    /// not a protobuf message of either shape — raw reports and quotes among them: their
    /// first byte (a version, 2 to 5) would be a tag with field number 0, which protobuf
    /// does not allow.
    pub fn detect(bytes: &[u8]) -> Option<DocumentKind> {
        let fields = top_level_fields(bytes)?;
        let tdx_only = fields
            .iter()
            .any(|&(field, wire)| (field == 3 && wire == WIRE_VARINT) || field == 4 || field == 5);
        if tdx_only {
            return Some(DocumentKind::Tdx);
        }
        let snp_shape = fields
            .iter()
            .all(|&(field, wire)| (1..=3).contains(&field) && wire == WIRE_LEN);
        let has_report = fields.iter().any(|&(field, _)| field == 1);
        (snp_shape && has_report).then_some(DocumentKind::Snp)
    }

    /// How a person calls it.
    pub fn description(self) -> &'static str {
        match self {
            DocumentKind::Snp => "Contrast attestation document (SNP)",
            DocumentKind::Tdx => "Contrast attestation document (TDX)",
        }
    }
}

const WIRE_VARINT: u8 = 0;
const WIRE_I64: u8 = 1;
const WIRE_LEN: u8 = 2;
const WIRE_I32: u8 = 5;

/// The (field number, wire type) of every top-level field, or `None` if the bytes are not
/// a well-formed protobuf message (groups, which neither document uses, count as not).
fn top_level_fields(bytes: &[u8]) -> Option<Vec<(u64, u8)>> {
    fn varint(bytes: &[u8], pos: &mut usize) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *bytes.get(*pos)?;
            *pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
    let mut fields = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let key = varint(bytes, &mut pos)?;
        let (field, wire) = (key >> 3, (key & 7) as u8);
        if field == 0 {
            return None;
        }
        let skip = match wire {
            WIRE_VARINT => {
                varint(bytes, &mut pos)?;
                0
            }
            WIRE_I64 => 8,
            WIRE_LEN => usize::try_from(varint(bytes, &mut pos)?).ok()?,
            WIRE_I32 => 4,
            _ => return None,
        };
        pos = pos.checked_add(skip).filter(|end| *end <= bytes.len())?;
        fields.push((field, wire));
    }
    (!fields.is_empty()).then_some(fields)
}

/// Checks that a fixed-size field has its size and returns it as an array.
fn fixed<const N: usize>(bytes: &[u8], field: &'static str) -> Result<[u8; N], DocumentError> {
    bytes.try_into().map_err(|_| DocumentError::FieldLength {
        field,
        actual: bytes.len(),
        expected: N,
    })
}

/// Checks that an integer field fits the `bits` it is rebuilt into.
fn fits(value: u32, bits: u32, field: &'static str) -> Result<u32, DocumentError> {
    if u64::from(value) < 1u64 << bits {
        Ok(value)
    } else {
        Err(DocumentError::FieldValue {
            field,
            actual: value.to_string(),
            expected: if bits == 8 {
                "at most 255 (one byte in the evidence)"
            } else {
                "at most 65535 (two bytes in the evidence)"
            },
        })
    }
}

fn protobuf_error(message: &'static str, error: prost::DecodeError) -> DocumentError {
    DocumentError::Protobuf {
        message,
        reason: error.to_string(),
    }
}

/// A protobuf writer of its own for the known-answer tests, so that the expected bytes do
/// not come from prost.
#[cfg(test)]
mod wire {
    pub(crate) fn varint(mut value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    /// A varint field; proto3 leaves zero scalars out.
    pub(crate) fn int_field(field: u64, value: u64) -> Vec<u8> {
        if value == 0 {
            return Vec::new();
        }
        [varint(field << 3), varint(value)].concat()
    }

    /// A length-delimited field (bytes, string, message).
    pub(crate) fn len_field(field: u64, bytes: &[u8]) -> Vec<u8> {
        [
            varint(field << 3 | 2),
            varint(bytes.len() as u64),
            bytes.to_vec(),
        ]
        .concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detect_tells_documents_from_raw_evidence_and_junk() {
        // Field 1 (LEN, 2 bytes), field 2 (LEN, 0 bytes): SNP-shaped.
        assert_eq!(
            DocumentKind::detect(&[0x0a, 0x02, 0x08, 0x02, 0x12, 0x00]),
            Some(DocumentKind::Snp)
        );
        // Field 3 as a varint: signed_data_size.
        assert_eq!(
            DocumentKind::detect(&[0x0a, 0x00, 0x18, 0x05]),
            Some(DocumentKind::Tdx)
        );
        assert_eq!(DocumentKind::detect(&[0x22, 0x00]), Some(DocumentKind::Tdx));
        // Raw evidence: version 2..5 as the first byte is field 0.
        for version in 2u8..=5 {
            assert_eq!(DocumentKind::detect(&[version, 0, 0, 0, 1, 2]), None);
        }
        // An Azure HCL report: "HCLA" hits an end-group wire type.
        assert_eq!(DocumentKind::detect(b"HCLA\x01\x00\x00\x00"), None);
        // Truncated length, empty input, text, SNP-shaped without a report.
        assert_eq!(DocumentKind::detect(&[0x0a, 0x05, 0x00]), None);
        assert_eq!(DocumentKind::detect(&[]), None);
        assert_eq!(DocumentKind::detect(b"not evidence"), None);
        assert_eq!(DocumentKind::detect(&[0x12, 0x00]), None);
        // A varint that never ends, and one longer than 64 bits.
        assert_eq!(DocumentKind::detect(&[0x08, 0xff, 0xff]), None);
        assert_eq!(
            DocumentKind::detect(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
            ]),
            None
        );
    }

    #[test]
    fn fixed_and_fits_name_the_field() {
        assert_eq!(
            fixed::<4>(&[1, 2, 3], "x.y"),
            Err(DocumentError::FieldLength {
                field: "x.y",
                actual: 3,
                expected: 4
            })
        );
        assert_eq!(fixed::<2>(&[1, 2], "x"), Ok([1, 2]));
        assert_eq!(fits(255, 8, "b"), Ok(255));
        assert!(
            fits(256, 8, "report.current_build")
                .unwrap_err()
                .to_string()
                .contains("report.current_build is 256, expected at most 255")
        );
        assert_eq!(fits(65535, 16, "w"), Ok(65535));
        assert!(fits(65536, 16, "w").is_err());
    }
}
