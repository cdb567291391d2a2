//! SEV-SNP ID blocks for QEMU (docs/attestation.md §2) and the host's product line.
//!
//! The ID block binds the guest policy and the expected launch digest; the digest
//! depends on the vCPU type, so there is one block per product line (Milan, Genoa,
//! Turin) and the installer picks the host's. The file holds, per product line, what
//! `firmware-refs snp-id-block` prints:
//! `{"Milan": {"idBlock": "<base64>", "idAuth": "<base64>", "idKeyDigest": "<hex>"}, …}`.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;

use crate::InstallError;

/// Length of the ID block.
pub const ID_BLOCK_LEN: usize = 96;
/// Length of the ID authentication information structure.
pub const ID_AUTH_LEN: usize = 4096;
/// Offset of the little-endian guest policy in the ID block (LD 48, family ID 16, image
/// ID 16, version 4, guest SVN 4).
const POLICY_OFFSET: usize = 88;

pub use contrast_platforms::SnpProduct;

/// The product line of the CPU `/proc/cpuinfo` describes, if it is an SNP one.
pub fn product_from_cpuinfo(cpuinfo: &str) -> Option<SnpProduct> {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_owned())
        })
    };
    if field("vendor_id")? != "AuthenticAMD" {
        return None;
    }
    SnpProduct::from_cpuid(
        field("cpu family")?.parse().ok()?,
        field("model")?.parse().ok()?,
    )
}

/// The ID block and its authentication structure for one product line.
#[derive(Clone, PartialEq, Eq)]
pub struct SnpIdBlock {
    id_block: Vec<u8>,
    id_auth: Vec<u8>,
}

impl fmt::Debug for SnpIdBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnpIdBlock")
            .field("guest_policy", &format_args!("{:#x}", self.guest_policy()))
            .finish_non_exhaustive()
    }
}

impl SnpIdBlock {
    /// Checks the lengths (96 and 4096 bytes).
    pub fn new(id_block: Vec<u8>, id_auth: Vec<u8>) -> Result<Self, String> {
        if id_block.len() != ID_BLOCK_LEN {
            return Err(format!(
                "idBlock has {} bytes; expected {ID_BLOCK_LEN}",
                id_block.len()
            ));
        }
        if id_auth.len() != ID_AUTH_LEN {
            return Err(format!(
                "idAuth has {} bytes; expected {ID_AUTH_LEN}",
                id_auth.len()
            ));
        }
        Ok(SnpIdBlock { id_block, id_auth })
    }

    /// The guest policy the block carries; QEMU must launch with the same.
    pub fn guest_policy(&self) -> u64 {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&self.id_block[POLICY_OFFSET..POLICY_OFFSET + 8]);
        u64::from_le_bytes(bytes)
    }

    /// The ID block, base64 as Kata's `snp_id_block` wants it.
    pub fn id_block_base64(&self) -> String {
        BASE64.encode(&self.id_block)
    }

    /// The authentication structure, base64 as Kata's `snp_id_auth` wants it.
    pub fn id_auth_base64(&self) -> String {
        BASE64.encode(&self.id_auth)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IdBlockEntry {
    id_block: String,
    id_auth: String,
    // Printed by firmware-refs for the reference values; not needed here.
    #[serde(default)]
    #[allow(dead_code)]
    id_key_digest: Option<String>,
}

/// Picks `product`'s entry from the ID block file's JSON (`file` names it in messages).
pub fn select_id_block(
    json: &[u8],
    file: &str,
    product: SnpProduct,
) -> Result<SnpIdBlock, InstallError> {
    let bad = |reason: String| InstallError::SnpIdBlocks {
        file: file.to_owned(),
        reason,
    };
    let entries: BTreeMap<String, IdBlockEntry> =
        serde_json::from_slice(json).map_err(|e| bad(e.to_string()))?;
    for key in entries.keys() {
        key.parse::<SnpProduct>().map_err(|e| bad(e.to_string()))?;
    }
    let entry = entries
        .iter()
        .find(|(key, _)| key.parse::<SnpProduct>().ok() == Some(product))
        .map(|(_, entry)| entry)
        .ok_or_else(|| {
            bad(format!(
                "no entry for this host's product line {product} (entries: {})",
                entries.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })?;
    let decode = |name: &str, text: &str| {
        BASE64
            .decode(text)
            .map_err(|e| bad(format!("{product}.{name} is not base64: {e}")))
    };
    SnpIdBlock::new(
        decode("idBlock", &entry.id_block)?,
        decode("idAuth", &entry.id_auth)?,
    )
    .map_err(|reason| bad(format!("{product}: {reason}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn cpuinfo(vendor: &str, family: u32, model: u32) -> String {
        format!(
            "processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\nmodel name\t: x\n\nprocessor\t: 1\n"
        )
    }

    #[test]
    fn product_lines_from_cpuinfo() {
        assert_eq!(
            product_from_cpuinfo(&cpuinfo("AuthenticAMD", 25, 1)),
            Some(SnpProduct::Milan)
        );
        assert_eq!(
            product_from_cpuinfo(&cpuinfo("AuthenticAMD", 25, 17)),
            Some(SnpProduct::Genoa)
        );
        assert_eq!(
            product_from_cpuinfo(&cpuinfo("AuthenticAMD", 25, 0xa0)),
            Some(SnpProduct::Genoa)
        );
        assert_eq!(
            product_from_cpuinfo(&cpuinfo("AuthenticAMD", 26, 2)),
            Some(SnpProduct::Turin)
        );
        // Zen 2 (Rome) has no SNP; Intel never.
        assert_eq!(product_from_cpuinfo(&cpuinfo("AuthenticAMD", 23, 49)), None);
        assert_eq!(product_from_cpuinfo(&cpuinfo("GenuineIntel", 6, 143)), None);
        assert_eq!(product_from_cpuinfo(""), None);
    }

    fn block_with_policy(policy: u64) -> Vec<u8> {
        let mut block = vec![0u8; ID_BLOCK_LEN];
        block[48] = 0x01;
        block[64] = 0x02;
        block[80] = 1;
        block[84] = 2;
        block[POLICY_OFFSET..].copy_from_slice(&policy.to_le_bytes());
        block
    }

    #[test]
    fn selects_the_hosts_entry_and_reads_its_policy() {
        let json = format!(
            r#"{{"Milan": {{"idBlock": "{}", "idAuth": "{}", "idKeyDigest": "00"}},
                "genoa": {{"idBlock": "{}", "idAuth": "{}"}}}}"#,
            BASE64.encode(block_with_policy(0x30000)),
            BASE64.encode([1u8; ID_AUTH_LEN]),
            BASE64.encode(block_with_policy(0x10000)),
            BASE64.encode([2u8; ID_AUTH_LEN]),
        );
        let milan = select_id_block(json.as_bytes(), "f", SnpProduct::Milan).unwrap();
        assert_eq!(milan.guest_policy(), 0x30000);
        assert_eq!(milan.id_auth_base64(), BASE64.encode([1u8; ID_AUTH_LEN]));
        let genoa = select_id_block(json.as_bytes(), "f", SnpProduct::Genoa).unwrap();
        assert_eq!(genoa.guest_policy(), 0x10000);
        let err = select_id_block(json.as_bytes(), "f", SnpProduct::Turin).unwrap_err();
        assert!(err.to_string().contains("Turin"), "{err}");
    }

    #[test]
    fn refuses_bad_files() {
        let auth = BASE64.encode([0u8; ID_AUTH_LEN]);
        let cases = [
            (
                format!(r#"{{"Milan": {{"idBlock": "AAAA", "idAuth": "{auth}"}}}}"#),
                "idBlock has 3 bytes",
            ),
            (
                format!(
                    r#"{{"Milan": {{"idBlock": "{}", "idAuth": "AAAA"}}}}"#,
                    BASE64.encode(block_with_policy(0))
                ),
                "idAuth has 3 bytes",
            ),
            (
                format!(r#"{{"Rome": {{"idBlock": "", "idAuth": "{auth}"}}}}"#),
                "unknown SNP product",
            ),
            (
                r#"{"Milan": {"idBlock": "", "idAuth": "", "extra": 1}}"#.to_owned(),
                "extra",
            ),
            (
                r#"{"Milan": {"idBlock": "!", "idAuth": ""}}"#.to_owned(),
                "not base64",
            ),
        ];
        for (json, message) in cases {
            let err = select_id_block(json.as_bytes(), "ids.json", SnpProduct::Milan).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(message) && text.contains("ids.json"),
                "{text}"
            );
        }
    }
}
