//! Golden files: Contrast-written manifests decode, validate and re-encode byte for byte.
//! The files and where their values come from are described in tests/data/README.md.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use contrast_manifest::{
    EmbeddedReferenceValues, HexString, Manifest, ManifestDocument, PolicyEntry, ROLE_COORDINATOR,
};
use contrast_platforms::Platform;

const GEN1: &str = include_str!("data/contrast-gen1-manifest.json");
const GEN1_EARLY: &str = include_str!("data/contrast-gen1-early-manifest.json");
const EMBEDDED_LOWER_CAMEL: &str = include_str!("data/embedded-reference-values-lowercamel.json");

fn assert_same_text(actual: &[u8], expected: &str) {
    let actual = String::from_utf8(actual.to_vec()).unwrap();
    if actual != expected {
        // Show the first differing line rather than two 4 KiB strings.
        let line = actual
            .lines()
            .zip(expected.lines())
            .position(|(a, e)| a != e)
            .unwrap_or(actual.lines().count().min(expected.lines().count()));
        panic!(
            "encodings differ at line {}:\n  actual:   {:?}\n  expected: {:?}",
            line + 1,
            actual.lines().nth(line),
            expected.lines().nth(line)
        );
    }
}

#[test]
fn gen1_manifest_decodes_validates_and_reencodes_byte_identically() {
    let manifest = Manifest::decode(GEN1.as_bytes()).unwrap();
    manifest.validate().unwrap();
    assert!(manifest.warnings().is_empty());
    assert_same_text(&manifest.encode(), GEN1);

    // And the typed values are what the file says.
    assert_eq!(manifest.policies.len(), 3);
    let coordinators: Vec<_> = manifest.coordinator_policy_hashes().collect();
    assert_eq!(
        coordinators,
        [&HexString::from(
            "2a5c2a2c866250bf7299b24d4ddcdaf55677b2322c255d0c6c84bf92f569ead5"
        )]
    );
    let snp = &manifest.reference_values.snp;
    assert_eq!(snp.len(), 2);
    assert_eq!(snp[1].product_name, "Genoa");
    assert_eq!(snp[0].minimum_tcb.microcode_version.map(|s| s.0), Some(115));
    assert_eq!(snp[0].guest_policy.to_bits(), 0x30000);
    assert_eq!(
        manifest.reference_values.tdx[0].xfam.as_str(),
        "e702060000000000"
    );
    assert!(manifest.allows_updates());
}

#[test]
fn a_manifest_built_in_memory_is_written_as_contrast_writes_it() {
    // Rebuild the golden manifest from its parts, with no decoded layout anywhere: the
    // canonical field order and set must be exactly Contrast's.
    let embedded = EmbeddedReferenceValues::decode(EMBEDDED_LOWER_CAMEL.as_bytes()).unwrap();
    let reference_values = embedded
        .for_platforms(&[Platform::MetalQemuSnp, Platform::MetalQemuTdx])
        .unwrap();
    let golden = Manifest::decode(GEN1.as_bytes()).unwrap();

    let mut manifest = Manifest {
        reference_values,
        workload_owner_key_digests: golden.workload_owner_key_digests.clone(),
        seedshare_owner_pub_keys: golden.seedshare_owner_pub_keys.clone(),
        ..Default::default()
    };
    for (hash, entry) in &golden.policies {
        manifest.policies.insert(
            hash.clone(),
            PolicyEntry {
                sans: entry.sans.clone(),
                workload_secret_id: entry.workload_secret_id.clone(),
                role: entry.role.clone(),
                ..Default::default()
            },
        );
    }
    manifest.validate().unwrap();
    assert_eq!(manifest, golden);
    assert_same_text(&manifest.encode(), GEN1);
}

#[test]
fn lower_camel_embedded_reference_values_bind_to_the_pascal_case_fields() {
    let embedded = EmbeddedReferenceValues::decode(EMBEDDED_LOWER_CAMEL.as_bytes()).unwrap();
    assert_eq!(
        embedded
            .handler(Platform::MetalQemuSnp)
            .map(|h| h.to_string()),
        Some("contrast-cc-metal-qemu-snp-1a2b3c4d".to_owned())
    );
    let values = embedded.for_platforms(&[Platform::MetalQemuTdx]).unwrap();
    let tdx = &values.tdx[0];
    assert_eq!(tdx.platform, "Metal-QEMU-TDX");
    assert!(
        tdx.rtmrs.iter().all(|r| r.as_str().len() == 96),
        "rtrms bound to Rtmrs"
    );
    assert_eq!(tdx.td_attributes.as_str(), "0000001000000000");
    assert_eq!(
        embedded.for_platforms(&[Platform::SimSnp]),
        Err(Platform::SimSnp),
        "no values for a platform the build did not embed"
    );
}

#[test]
fn early_gen1_manifest_keeps_its_field_set_and_order() {
    // Written by an older Contrast: no Platform or MinimumMitigationVector, the older
    // go-sev-guest structs, TDX fields in the early order. Re-encoding must not add the
    // fields of newer releases, or the owner's manifest hash would change.
    let manifest = Manifest::decode(GEN1_EARLY.as_bytes()).unwrap();
    manifest.validate().unwrap();
    assert_same_text(&manifest.encode(), GEN1_EARLY);
    assert_eq!(manifest.seedshare_owner_pub_keys, Some(vec![]));
    assert_eq!(manifest.reference_values.snp[0].platform, "");
}

#[test]
fn a_field_set_after_decoding_is_written_even_if_the_input_lacked_it() {
    let mut manifest = Manifest::decode(GEN1_EARLY.as_bytes()).unwrap();
    manifest.reference_values.snp[0].minimum_mitigation_vector = 5;
    let encoded = String::from_utf8(manifest.encode()).unwrap();
    assert!(
        encoded.contains("\"MinimumMitigationVector\": 5"),
        "{encoded}"
    );
    let again = Manifest::decode(encoded.as_bytes()).unwrap();
    assert_eq!(again.reference_values.snp[0].minimum_mitigation_vector, 5);
}

#[test]
fn old_rtrms_spelling_is_read_written_as_rtmrs_and_warned_about() {
    let old = GEN1.replace("\"Rtmrs\"", "\"Rtrms\"");
    let manifest = Manifest::decode(old.as_bytes()).unwrap();
    manifest.validate().unwrap();
    assert_eq!(
        manifest.warnings(),
        [
            "ReferenceValues.tdx[0].Rtrms: old spelling of Rtmrs; read as Rtmrs, and written as \
          Rtmrs from now on"
        ]
    );
    assert_same_text(&manifest.encode(), GEN1);
}

#[test]
fn the_hash_is_over_the_bytes_as_received() {
    // Same manifest, other whitespace: the decoded values are equal, the hashes are not.
    let compact =
        serde_json::to_vec(&serde_json::from_str::<serde_json::Value>(GEN1).unwrap()).unwrap();
    let pretty = ManifestDocument::parse(GEN1.as_bytes().to_vec()).unwrap();
    let compact = ManifestDocument::parse(compact).unwrap();
    assert_eq!(pretty.manifest(), compact.manifest());
    assert_ne!(pretty.hash(), compact.hash());

    // SHA-256 of the file, computed independently by `sha256sum`.
    let expected = std::process::Command::new("sha256sum")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/contrast-gen1-manifest.json"
        ))
        .output()
        .unwrap();
    let expected = String::from_utf8(expected.stdout).unwrap();
    assert_eq!(
        Some(pretty.hash_hex().as_str()),
        expected.split_whitespace().next()
    );
    assert_eq!(pretty.raw(), GEN1.as_bytes());

    let rebuilt = ManifestDocument::from_manifest(pretty.manifest().clone());
    assert_eq!(rebuilt.raw(), GEN1.as_bytes());
    assert!(
        rebuilt
            .manifest()
            .policies
            .values()
            .any(|p| p.role == ROLE_COORDINATOR)
    );
}
