//! Reference values: a real report passes the values made from it, and changing any one
//! field is refused with an explanation that names that field.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use contrast_attestation::snp::{
    SnpEndorsements, SnpExpectations, SnpTrustAnchor, VerifiedSnpReport,
    check_snp_reference_values, suggested_reference_values, verify_report,
};
use contrast_manifest::{HexString, SnpReferenceValues, Svn};

const JUNE_2025: i64 = 1_748_736_000;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/snp/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn verified(report: &str, vcek: &str) -> VerifiedSnpReport {
    let endorsements = SnpEndorsements {
        vek: Some(data(vcek)),
        ..Default::default()
    };
    verify_report(
        &data(report),
        &endorsements,
        &SnpTrustAnchor::amd(),
        JUNE_2025,
    )
    .unwrap()
}

fn trustee() -> VerifiedSnpReport {
    verified("trustee-milan-v2-report.bin", "trustee-milan-v2-vcek.der")
}

fn exact_expectations(v: &VerifiedSnpReport) -> SnpExpectations {
    SnpExpectations {
        report_data: Some(v.report.report_data()),
        host_data: Some(vec![v.report.host_data()]),
        vmpl: v.report.vmpl(),
        allow_debug: false,
    }
}

#[test]
fn the_suggested_values_accept_the_report_they_come_from() {
    let v = trustee();
    let entry = suggested_reference_values(&v);
    assert_eq!(entry.product_name, "Milan");
    assert_eq!(
        check_snp_reference_values(&v, &[entry], &exact_expectations(&v)),
        Ok(0)
    );
}

#[test]
fn any_matching_entry_accepts() {
    let v = trustee();
    let good = suggested_reference_values(&v);
    let mut bad = good.clone();
    bad.product_name = "Genoa".into();
    assert_eq!(
        check_snp_reference_values(&v, &[bad, good], &exact_expectations(&v)),
        Ok(1)
    );
}

type EntryEdit = fn(&mut SnpReferenceValues);

/// (the reference value changed, the edit, the field the explanation must name).
const ENTRY_EDITS: &[(&str, EntryEdit, &str)] = &[
    (
        "TrustedMeasurement",
        |e| flip_hex(&mut e.trusted_measurement),
        "MEASUREMENT (TrustedMeasurement)",
    ),
    (
        "ProductName",
        |e| e.product_name = "Genoa".into(),
        "product (ProductName)",
    ),
    (
        "Platform",
        |e| e.platform = "Sim-SNP".into(),
        "trust anchor (Platform)",
    ),
    (
        "MinimumTCB.BootloaderVersion",
        |e| inc(&mut e.minimum_tcb.bootloader_version),
        "CURRENT_TCB (MinimumTCB)",
    ),
    (
        "MinimumTCB.TEEVersion",
        |e| inc(&mut e.minimum_tcb.tee_version),
        "COMMITTED_TCB (MinimumTCB)",
    ),
    (
        "MinimumTCB.SNPVersion",
        |e| inc(&mut e.minimum_tcb.snp_version),
        "LAUNCH_TCB (MinimumTCB)",
    ),
    (
        "MinimumTCB.MicrocodeVersion",
        |e| inc(&mut e.minimum_tcb.microcode_version),
        "REPORTED_TCB (MinimumTCB)",
    ),
    (
        "MinimumTCB left empty",
        |e| e.minimum_tcb.snp_version = None,
        "MinimumTCB",
    ),
    (
        "GuestPolicy.ABIMinor",
        |e| e.guest_policy.abi_minor += 1,
        "POLICY.ABI (GuestPolicy)",
    ),
    (
        "GuestPolicy.SMT",
        |e| e.guest_policy.smt = false,
        "POLICY.SMT (GuestPolicy)",
    ),
    (
        "GuestPolicy.SingleSocket",
        |e| e.guest_policy.single_socket = true,
        "POLICY.SINGLE_SOCKET (GuestPolicy)",
    ),
    (
        "GuestPolicy.PageSwapDisable",
        |e| e.guest_policy.page_swap_disable = true,
        "POLICY.PAGE_SWAP_DISABLE (GuestPolicy)",
    ),
    (
        "PlatformInfo.SMTEnabled",
        |e| e.platform_info.smt_enabled = false,
        "PLATFORM_INFO.SMT_EN (PlatformInfo)",
    ),
    (
        "PlatformInfo.TSMEEnabled",
        |e| e.platform_info.tsme_enabled = true,
        "PLATFORM_INFO.TSME_EN (PlatformInfo)",
    ),
    (
        "PlatformInfo.ECCEnabled",
        |e| e.platform_info.ecc_enabled = true,
        "PLATFORM_INFO.ECC_EN (PlatformInfo)",
    ),
    (
        "MinimumMitigationVector",
        |e| e.minimum_mitigation_vector = 1,
        "LAUNCH_MIT_VECTOR (MinimumMitigationVector)",
    ),
    (
        "AllowedChipIDs",
        |e| e.allowed_chip_ids = Some(vec![HexString::from("00".repeat(64))]),
        "CHIP_ID (AllowedChipIDs)",
    ),
];

fn flip_hex(value: &mut HexString) {
    let mut bytes = value.to_bytes().unwrap();
    bytes[0] ^= 1;
    *value = HexString::from_bytes(&bytes);
}

fn inc(svn: &mut Option<Svn>) {
    *svn = svn.map(|s| Svn(s.0 + 1));
}

#[test]
fn changing_any_reference_value_is_refused_naming_the_field() {
    let v = trustee();
    let expectations = exact_expectations(&v);
    let good = suggested_reference_values(&v);
    // The report's SMT and SMT_EN bits are set, which the edits above rely on.
    assert!(good.guest_policy.smt && good.platform_info.smt_enabled);
    for (what, edit, field) in ENTRY_EDITS {
        let mut entry = good.clone();
        edit(&mut entry);
        let refusal = check_snp_reference_values(&v, &[entry], &expectations).expect_err(what);
        assert!(
            refusal.all().any(|m| m.field == *field),
            "{what}: no mismatch names {field}:\n{refusal}"
        );
        assert!(refusal.to_string().contains(field), "{what}: {refusal}");
    }
}

#[test]
fn expectations_outside_the_entries_are_refused_for_all_entries() {
    let v = trustee();
    let entry = suggested_reference_values(&v);
    type ExpectationEdit = fn(&mut SnpExpectations);
    let cases: [(&str, ExpectationEdit, &str); 3] = [
        (
            "report data",
            |e| e.report_data.as_mut().unwrap()[0] ^= 1,
            "REPORT_DATA",
        ),
        (
            "host data",
            |e| e.host_data = Some(vec![[0xaa; 32]]),
            "HOST_DATA",
        ),
        ("VMPL", |e| e.vmpl = 1, "VMPL"),
    ];
    for (what, edit, field) in cases {
        let mut expectations = exact_expectations(&v);
        edit(&mut expectations);
        let refusal = check_snp_reference_values(&v, std::slice::from_ref(&entry), &expectations)
            .expect_err(what);
        assert!(refusal.all().any(|m| m.field == field), "{what}: {refusal}");
    }
    let mut expectations = exact_expectations(&v);
    expectations.host_data = Some(vec![[0xaa; 32]]);
    let refusal = check_snp_reference_values(&v, &[entry], &expectations).unwrap_err();
    assert!(
        refusal.to_string().contains(
            "HOST_DATA differs: expected one of 1 policy hashes, got"
        ) && refusal.to_string().contains(
            "this pod's policy is not in the manifest — run contrast generate, then contrast set"
        ),
        "{refusal}"
    );
}

#[test]
fn a_debug_guest_is_refused_unless_debug_is_allowed() {
    // go-sev-guest's Milan report was launched with POLICY 0xb0000: DEBUG set.
    let v = verified(
        "gosevguest-milan-v2-report.bin",
        "gosevguest-milan-v2-vcek.der",
    );
    let entry = suggested_reference_values(&v);
    assert!(!entry.guest_policy.debug, "debug is never suggested");
    let mut expectations = exact_expectations(&v);
    let refusal =
        check_snp_reference_values(&v, std::slice::from_ref(&entry), &expectations).unwrap_err();
    let fields: Vec<_> = refusal.all().map(|m| m.field.as_str()).collect();
    assert_eq!(fields, ["POLICY.DEBUG (GuestPolicy)"]);
    expectations.allow_debug = true;
    assert_eq!(
        check_snp_reference_values(&v, &[entry], &expectations),
        Ok(0)
    );
}

#[test]
fn no_entry_for_the_tee_is_a_refusal() {
    let v = trustee();
    let refusal = check_snp_reference_values(&v, &[], &SnpExpectations::default()).unwrap_err();
    assert!(
        refusal
            .to_string()
            .contains("no reference values for this TEE")
    );
}
