//! The Intel SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1): a DER
//! SEQUENCE of (OID, value) pairs with the platform's FMSPC, PCE ID, SGX type and, on
//! multi-package platforms, the platform instance ID (PIID).

use x509_parser::prelude::{FromDer, X509Certificate};

/// DER of the OID arc 1.2.840.113741.1.13.1 (without tag and length).
const SGX_ARC: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf8, 0x4d, 0x01, 0x0d, 0x01];
const SUB_FMSPC: u8 = 4;
const SUB_PIID: u8 = 6;

/// What the PCK certificate says about the platform.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PckPlatform {
    /// Family-model-stepping-platform-custom-SKU: selects the TCB info.
    pub fmspc: Option<[u8; 6]>,
    /// Platform instance ID (multi-package platforms only).
    pub piid: Option<[u8; 16]>,
}

/// One DER TLV: tag, value, and the rest after it.
fn tlv(bytes: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = bytes.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b));
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// Reads the platform fields of a PCK certificate (DER). Missing or malformed fields are
/// `None`: the chain check has already established the certificate is Intel's.
pub fn pck_platform(pck_der: &[u8]) -> PckPlatform {
    let mut out = PckPlatform::default();
    let Ok((_, cert)) = X509Certificate::from_der(pck_der) else {
        return out;
    };
    let Some(extension) = cert
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == crate::oid::SGX_EXTENSION)
    else {
        return out;
    };
    let Some((0x30, mut entries, _)) = tlv(extension.value) else {
        return out;
    };
    while let Some((0x30, entry, rest)) = tlv(entries) {
        entries = rest;
        let Some((0x06, oid, value)) = tlv(entry) else {
            continue;
        };
        let Some(sub) = oid.strip_prefix(SGX_ARC).and_then(|s| match s {
            [sub] => Some(*sub),
            _ => None,
        }) else {
            continue;
        };
        let Some((0x04, octets, _)) = tlv(value) else {
            continue;
        };
        match sub {
            SUB_FMSPC => out.fmspc = octets.try_into().ok(),
            SUB_PIID => out.piid = octets.try_into().ok(),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tlv_refuses_lengths_past_the_end() {
        assert_eq!(tlv(&[0x04, 0x02, 0xaa]), None);
        assert_eq!(tlv(&[0x04, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(tlv(&[0x04, 0x80]), None);
        assert_eq!(
            tlv(&[0x04, 0x81, 0x01, 0xaa]),
            Some((0x04, &[0xaa][..], &[][..]))
        );
    }

    #[test]
    fn garbage_gives_nothing_and_no_panic() {
        assert_eq!(pck_platform(&[]), PckPlatform::default());
        assert_eq!(pck_platform(&[0x30, 0x82, 0xff]), PckPlatform::default());
    }
}
