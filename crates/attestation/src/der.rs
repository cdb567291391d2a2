//! A small DER writer: the values of attestation claim extensions, and the certificates
//! and CRLs the simulated vendors issue.
//!
//! Neither rcgen nor the RustCrypto builders can sign with RSASSA-PSS/SHA-384 through
//! aws-lc-rs, which AMD's certificate profile needs, so the simulator assembles
//! certificates with these functions and signs them itself.

/// Tag and length, then `content`.
pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// SEQUENCE of the encoded `parts`.
pub fn seq(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// SET of the encoded `parts`.
pub fn set(parts: &[Vec<u8>]) -> Vec<u8> {
    tlv(0x31, &parts.concat())
}

/// An unsigned INTEGER from big-endian bytes.
pub fn uint(bytes: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = match bytes.iter().position(|b| *b != 0) {
        Some(first) => &bytes[first..],
        None => &[0],
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    tlv(0x02, &content)
}

/// An unsigned INTEGER.
pub fn uint_u64(value: u64) -> Vec<u8> {
    uint(&value.to_be_bytes())
}

/// A BOOLEAN.
pub fn boolean(value: bool) -> Vec<u8> {
    tlv(0x01, &[if value { 0xff } else { 0 }])
}

/// An ENUMERATED.
pub fn enumerated(value: u8) -> Vec<u8> {
    tlv(0x0a, &[value])
}

/// An OBJECT IDENTIFIER from its dotted form. The arcs used here are constants; a
/// malformed one is a programming error caught by the tests.
pub fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').filter_map(|a| a.parse().ok()).collect();
    let mut content = Vec::new();
    if let [first, second, rest @ ..] = arcs.as_slice() {
        push_base128(&mut content, first * 40 + second);
        for arc in rest {
            push_base128(&mut content, *arc);
        }
    }
    tlv(0x06, &content)
}

fn push_base128(out: &mut Vec<u8>, value: u64) {
    let mut groups = vec![(value & 0x7f) as u8];
    let mut rest = value >> 7;
    while rest > 0 {
        groups.push((rest & 0x7f) as u8 | 0x80);
        rest >>= 7;
    }
    out.extend(groups.iter().rev());
}

/// An OCTET STRING.
pub fn octet_string(bytes: &[u8]) -> Vec<u8> {
    tlv(0x04, bytes)
}

/// A BIT STRING without unused bits.
pub fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = vec![0];
    content.extend_from_slice(bytes);
    tlv(0x03, &content)
}

/// An IA5String.
pub fn ia5_string(text: &str) -> Vec<u8> {
    tlv(0x16, text.as_bytes())
}

/// A UTF8String.
pub fn utf8_string(text: &str) -> Vec<u8> {
    tlv(0x0c, text.as_bytes())
}

/// `[n] EXPLICIT`.
pub fn explicit(n: u8, content: &[u8]) -> Vec<u8> {
    tlv(0xa0 | n, content)
}

/// A time as X.509 wants it: UTCTime before 2050, GeneralizedTime from then on.
pub fn time(unix: i64) -> Vec<u8> {
    let days = unix.div_euclid(86_400);
    let secs = unix.rem_euclid(86_400);
    let (year, month, day) = crate::time::civil_from_days(days);
    let clock = format!(
        "{month:02}{day:02}{:02}{:02}{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if (1950..2050).contains(&year) {
        tlv(0x17, format!("{:02}{clock}", year % 100).as_bytes())
    } else {
        tlv(0x18, format!("{year:04}{clock}").as_bytes())
    }
}

/// A distinguished name from (attribute OID, value) pairs, one RDN each.
pub fn name(attributes: &[(&str, &str)]) -> Vec<u8> {
    seq(&attributes
        .iter()
        .map(|(attribute, value)| set(&[seq(&[oid(attribute), utf8_string(value)])]))
        .collect::<Vec<_>>())
}

/// One certificate extension.
pub fn extension(id: &str, critical: bool, value: &[u8]) -> Vec<u8> {
    let mut parts = vec![oid(id)];
    if critical {
        parts.push(boolean(true));
    }
    parts.push(octet_string(value));
    seq(&parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_known_answers() {
        assert_eq!(
            oid("1.2.840.113549.1.1.10"),
            hex::decode("06092a864886f70d01010a").unwrap()
        );
        assert_eq!(
            oid("1.3.6.1.4.1.3704.1.3.8"),
            hex::decode("060a2b060104019c78010308").unwrap()
        );
        assert_eq!(uint_u64(0), [0x02, 0x01, 0x00]);
        assert_eq!(uint_u64(217), [0x02, 0x02, 0x00, 0xd9]);
        assert_eq!(uint_u64(0x0102), [0x02, 0x02, 0x01, 0x02]);
        assert_eq!(tlv(0x04, &[0; 200])[..3], [0x04, 0x81, 200]);
        assert_eq!(tlv(0x04, &[0; 300])[..4], [0x04, 0x82, 0x01, 0x2c]);
        // 2025-06-01T12:34:56Z and 2050-01-01T00:00:00Z.
        assert_eq!(time(1_748_781_296), tlv(0x17, b"250601123456Z"));
        assert_eq!(time(2_524_608_000), tlv(0x18, b"20500101000000Z"));
        assert_eq!(time(0), tlv(0x17, b"700101000000Z"));
    }
}
