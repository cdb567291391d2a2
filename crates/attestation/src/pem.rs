//! PEM blocks (RFC 7468), the form AMD's KDS and Intel's PCS serve certificates in.

use base64::Engine;

/// A PEM text that does not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    /// A BEGIN line without its END line.
    #[error("PEM block {label:?} has no END line")]
    Unterminated {
        /// The block's label.
        label: String,
    },
    /// The block's body is not base64.
    #[error("PEM block {label:?} is not valid base64: {reason}")]
    Base64 {
        /// The block's label.
        label: String,
        /// The decoder's words.
        reason: String,
    },
}

/// Decodes every block labelled `label` (e.g. `CERTIFICATE`), in order.
pub fn decode_all(text: &str, label: &str) -> Result<Vec<Vec<u8>>, PemError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&begin) {
        let body_start = start + begin.len();
        let body_len = rest[body_start..]
            .find(&end)
            .ok_or_else(|| PemError::Unterminated {
                label: label.to_owned(),
            })?;
        let body: String = rest[body_start..body_start + body_len]
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|e| PemError::Base64 {
                label: label.to_owned(),
                reason: e.to_string(),
            })?;
        blocks.push(der);
        rest = &rest[body_start + body_len + end.len()..];
    }
    Ok(blocks)
}

/// Whether `bytes` look like PEM text rather than DER.
pub fn is_pem(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .is_some_and(|start| bytes[start..].starts_with(b"-----BEGIN "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_several_blocks_and_skips_other_labels() {
        let text = "junk\n-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n\
                    -----BEGIN X509 CRL-----\nBAU=\n-----END X509 CRL-----\n\
                    -----BEGIN CERTIFICATE-----\nBA\nUG\n-----END CERTIFICATE-----\n";
        assert_eq!(
            decode_all(text, "CERTIFICATE").unwrap(),
            [vec![1, 2, 3], vec![4, 5, 6]]
        );
        assert_eq!(decode_all(text, "X509 CRL").unwrap(), [vec![4, 5]]);
        assert!(is_pem(&text.as_bytes()[4..]));
        assert!(!is_pem(&[0x30, 0x82]));
    }

    #[test]
    fn refuses_unterminated_and_bad_base64() {
        assert_eq!(
            decode_all("-----BEGIN CERTIFICATE-----\nAQID\n", "CERTIFICATE"),
            Err(PemError::Unterminated {
                label: "CERTIFICATE".into()
            })
        );
        assert!(matches!(
            decode_all(
                "-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----",
                "CERTIFICATE"
            ),
            Err(PemError::Base64 { .. })
        ));
    }
}

/// Encodes `der` as one PEM block labelled `label`: 64-character lines, LF endings.
pub fn encode(label: &str, der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 is ASCII, so every chunk is text.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod encode_tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_encoded_block_decodes_to_the_same_bytes_with_64_character_lines() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = encode("CERTIFICATE", &der);
        assert!(text.lines().all(|line| line.len() <= 64));
        assert_eq!(decode_all(&text, "CERTIFICATE").unwrap(), vec![der]);
    }
}
