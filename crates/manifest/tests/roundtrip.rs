//! Property tests: encode → decode returns the same manifest, and re-encoding is stable.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::collections::BTreeMap;

use contrast_manifest::{
    HexString, Manifest, PolicyEntry, ReferenceValues, SnpGuestPolicy, SnpPlatformInfo,
    SnpReferenceValues, SnpTcb, Svn, TdxReferenceValues,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;

/// Any text, including what JSON must escape (quotes, control characters, `<>&`, U+2028).
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9.*-]{0,12}",
        any::<String>(),
        "[\"\\\\<>&\u{2028}\u{0}-\u{1f}]{0,6}",
    ]
}

fn hex_string() -> impl Strategy<Value = HexString> {
    prop_oneof![
        vec(any::<u8>(), 0..64).prop_map(|b| HexString::from_bytes(&b)),
        text().prop_map(HexString::from),
    ]
}

fn svn() -> impl Strategy<Value = Option<Svn>> {
    option::of(any::<u8>().prop_map(Svn))
}

fn snp() -> impl Strategy<Value = SnpReferenceValues> {
    (
        (text(), text(), hex_string()),
        (svn(), svn(), svn(), svn(), svn()),
        (
            any::<u64>(),
            any::<u64>(),
            option::of(vec(hex_string(), 0..3)),
        ),
        any::<u64>(),
    )
        .prop_map(
            |((platform, product, measurement), tcb, (policy, info, chips), cpus)| {
                SnpReferenceValues {
                    platform,
                    product_name: product,
                    trusted_measurement: measurement,
                    minimum_tcb: SnpTcb {
                        bootloader_version: tcb.0,
                        tee_version: tcb.1,
                        snp_version: tcb.2,
                        microcode_version: tcb.3,
                        fmc_version: tcb.4,
                        ..Default::default()
                    },
                    // Any representable policy: keep the defined bits, force the reserved one.
                    guest_policy: SnpGuestPolicy::from_bits(policy & ((1 << 26) - 1) | 1 << 17)
                        .unwrap(),
                    platform_info: SnpPlatformInfo::from_bits(info),
                    minimum_mitigation_vector: policy ^ info,
                    allowed_chip_ids: chips,
                    cpus,
                    ..Default::default()
                }
            },
        )
}

fn tdx() -> impl Strategy<Value = TdxReferenceValues> {
    (
        (
            text(),
            hex_string(),
            [hex_string(), hex_string(), hex_string(), hex_string()],
        ),
        (option::of(any::<u16>()), option::of(any::<u16>())),
        (hex_string(), hex_string(), hex_string(), hex_string()),
        option::of(vec(hex_string(), 0..3)),
    )
        .prop_map(
            |((platform, mr_td, rtmrs), (qe, pce), (tcb, seam, attrs, xfam), piids)| {
                TdxReferenceValues {
                    platform,
                    mr_td,
                    rtmrs,
                    minimum_qe_svn: qe,
                    minimum_pce_svn: pce,
                    minimum_tee_tcb_svn: tcb,
                    mr_seam: seam,
                    td_attributes: attrs,
                    xfam,
                    allowed_piids: piids,
                    ..Default::default()
                }
            },
        )
}

fn policy_entry() -> impl Strategy<Value = PolicyEntry> {
    (
        option::of(vec(text(), 0..4)),
        text(),
        prop_oneof![Just(String::new()), Just("coordinator".to_owned()), text()],
    )
        .prop_map(|(sans, workload_secret_id, role)| PolicyEntry {
            sans,
            workload_secret_id,
            role,
            ..Default::default()
        })
}

fn manifest() -> impl Strategy<Value = Manifest> {
    (
        btree_map(hex_string(), policy_entry(), 0..4),
        vec(snp(), 0..3),
        vec(tdx(), 0..3),
        option::of(vec(hex_string(), 0..3)),
        option::of(vec(hex_string(), 0..3)),
    )
        .prop_map(|(policies, snp, tdx, owners, seedshare_owners)| Manifest {
            policies: policies.into_iter().collect::<BTreeMap<_, _>>(),
            reference_values: ReferenceValues {
                snp,
                tdx,
                ..Default::default()
            },
            workload_owner_key_digests: owners,
            seedshare_owner_pub_keys: seedshare_owners,
            ..Default::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn encode_then_decode_gives_the_same_manifest(m in manifest()) {
        let encoded = m.encode();
        let decoded = Manifest::decode(&encoded).unwrap();
        prop_assert_eq!(&decoded, &m);
        // The decoded layout re-encodes to the same bytes.
        prop_assert_eq!(decoded.encode(), encoded.clone());
        // The output is JSON any reader accepts, ending in one newline.
        prop_assert!(serde_json::from_slice::<serde_json::Value>(&encoded).is_ok());
        prop_assert!(encoded.ends_with(b"}\n"), "no closing brace and newline");
    }

    #[test]
    fn keys_bind_in_any_letter_case(m in manifest(), flips in any::<u64>()) {
        let mut tree: serde_json::Value = serde_json::from_slice(&m.encode()).unwrap();
        let mut counter = 0;
        recase_struct_keys(&mut tree, flips, &mut counter, false);
        let decoded = Manifest::decode(&serde_json::to_vec(&tree).unwrap()).unwrap();
        prop_assert_eq!(decoded, m);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in vec(any::<u8>(), 0..512)) {
        let _ = Manifest::decode(&bytes);
    }
}

/// Changes the case of every struct key (lowercase, uppercase or lowerCamel, chosen by the
/// bits of `flips`), but not of the policy hashes: map keys are matched exactly.
fn recase_struct_keys(value: &mut serde_json::Value, flips: u64, counter: &mut u32, is_map: bool) {
    match value {
        serde_json::Value::Object(members) => {
            let old = std::mem::take(members);
            for (key, mut member) in old {
                let member_is_map = key == "Policies";
                recase_struct_keys(&mut member, flips, counter, member_is_map);
                let key = if is_map {
                    key
                } else {
                    *counter = (*counter + 2) % 64;
                    match flips >> *counter & 3 {
                        0 => key.to_lowercase(),
                        1 => key.to_uppercase(),
                        2 => {
                            let mut chars = key.chars();
                            chars
                                .next()
                                .map_or(String::new(), |c| c.to_lowercase().chain(chars).collect())
                        }
                        _ => key,
                    }
                };
                members.insert(key, member);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                recase_struct_keys(item, flips, counter, false);
            }
        }
        _ => {}
    }
}

/// Found by the `manifest` fuzz target: a number too large for an integer in an unknown
/// member. Parsed as a float it must print and re-parse to the same value, or re-encoding
/// would not be stable (serde_json's `float_roundtrip` makes the parse exact).
#[test]
fn huge_numbers_in_unknown_members_re_encode_stably() {
    let input = include_bytes!("data/fuzz/unknown-float-member.json");
    let first = Manifest::decode(input).unwrap();
    let encoded = first.encode();
    let second = Manifest::decode(&encoded).unwrap();
    assert_eq!(second.encode(), encoded);
    assert!(second.validate().is_err(), "unknown members are refused");
}
