//! TDX reference values: a real quote passes the values made from it, and changing any
//! one field is refused with an explanation that names that field.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use contrast_attestation::tdx::{
    TdxCollateral, TdxExpectations, TdxTrustAnchor, VerifiedTdxQuote, check_tdx_reference_values,
    pck_platform, suggested_tdx_reference_values, verify_quote,
};
use contrast_manifest::{HexString, TdxReferenceValues};

const JUNE_25_2025: i64 = 1_750_809_600;

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/tdx/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn dcap_sample() -> VerifiedTdxQuote {
    let collateral = TdxCollateral::from_json(&data("dcapqvl-quote-v4-collateral.json")).unwrap();
    verify_quote(
        &data("dcapqvl-quote-v4.dat"),
        &TdxTrustAnchor::intel(),
        Some(&collateral),
        JUNE_25_2025,
    )
    .unwrap()
}

fn exact(v: &VerifiedTdxQuote) -> TdxExpectations {
    let mut host_data = [0; 32];
    host_data.copy_from_slice(&v.quote.td_report.mr_config_id[..32]);
    TdxExpectations {
        report_data: Some(v.quote.td_report.report_data),
        host_data: Some(vec![host_data]),
        allow_debug: false,
        allow_out_of_date: false,
    }
}

#[test]
fn the_suggested_values_accept_the_quote_they_come_from() {
    let v = dcap_sample();
    let entry = suggested_tdx_reference_values(&v);
    assert_eq!(check_tdx_reference_values(&v, &[entry], &exact(&v)), Ok(0));
    assert_eq!(
        pck_platform(&v.pck_der).fmspc.map(hex::encode).as_deref(),
        Some("b0c06f000000"),
        "FMSPC of the dcap-qvl sample, as its collateral says"
    );
}

type EntryEdit = fn(&mut TdxReferenceValues);

fn flip(value: &mut HexString) {
    let mut bytes = value.to_bytes().unwrap();
    bytes[0] ^= 1;
    *value = HexString::from_bytes(&bytes);
}

const ENTRY_EDITS: &[(&str, EntryEdit, &str)] = &[
    ("MrTd", |e| flip(&mut e.mr_td), "MRTD (MrTd)"),
    ("Rtmrs[0]", |e| flip(&mut e.rtmrs[0]), "RTMR0 (Rtmrs[0])"),
    ("Rtmrs[1]", |e| flip(&mut e.rtmrs[1]), "RTMR1 (Rtmrs[1])"),
    ("Rtmrs[2]", |e| flip(&mut e.rtmrs[2]), "RTMR2 (Rtmrs[2])"),
    ("Rtmrs[3]", |e| flip(&mut e.rtmrs[3]), "RTMR3 (Rtmrs[3])"),
    ("MrSeam", |e| flip(&mut e.mr_seam), "MRSEAM (MrSeam)"),
    (
        "MrSeam left empty",
        |e| e.mr_seam = HexString::default(),
        "MRSEAM (MrSeam)",
    ),
    ("Xfam", |e| flip(&mut e.xfam), "XFAM (Xfam)"),
    (
        "TdAttributes",
        |e| e.td_attributes = HexString::from("0000000000000000"),
        "TDATTRIBUTES (TdAttributes)",
    ),
    (
        "MinimumQeSvn",
        |e| e.minimum_qe_svn = e.minimum_qe_svn.map(|s| s + 1),
        "QE report ISVSVN (MinimumQeSvn)",
    ),
    (
        "MinimumPceSvn",
        |e| e.minimum_pce_svn = e.minimum_pce_svn.map(|s| s + 1),
        "PCE_SVN (MinimumPceSvn)",
    ),
    (
        "MinimumTeeTcbSvn",
        |e| {
            let mut b = e.minimum_tee_tcb_svn.to_bytes().unwrap();
            b[0] += 1;
            e.minimum_tee_tcb_svn = HexString::from_bytes(&b);
        },
        "TEE_TCB_SVN (MinimumTeeTcbSvn)",
    ),
    (
        "MinimumTeeTcbSvn left empty",
        |e| e.minimum_tee_tcb_svn = HexString::default(),
        "TEE_TCB_SVN (MinimumTeeTcbSvn)",
    ),
    (
        "AllowedPIIDs",
        |e| e.allowed_piids = Some(vec![HexString::from("00".repeat(16))]),
        "PIID (AllowedPIIDs)",
    ),
    (
        "Platform",
        |e| e.platform = "Sim-TDX".into(),
        "trust anchor (Platform)",
    ),
];

#[test]
fn changing_any_reference_value_is_refused_naming_the_field() {
    let v = dcap_sample();
    let expectations = exact(&v);
    let good = suggested_tdx_reference_values(&v);
    for (what, edit, field) in ENTRY_EDITS {
        let mut entry = good.clone();
        edit(&mut entry);
        let refusal = check_tdx_reference_values(&v, &[entry], &expectations).expect_err(what);
        assert!(
            refusal.all().any(|m| m.field == *field),
            "{what}: no mismatch names {field}:\n{refusal}"
        );
    }
}

#[test]
fn report_data_and_host_data_are_checked_for_all_entries() {
    let v = dcap_sample();
    let entry = suggested_tdx_reference_values(&v);
    let mut e = exact(&v);
    e.report_data.as_mut().unwrap()[5] ^= 1;
    let refusal = check_tdx_reference_values(&v, std::slice::from_ref(&entry), &e).unwrap_err();
    assert!(
        refusal.common.iter().any(|m| m.field == "REPORTDATA"),
        "{refusal}"
    );
    let mut e = exact(&v);
    e.host_data = Some(vec![[7; 32]]);
    let refusal = check_tdx_reference_values(&v, &[entry], &e).unwrap_err();
    assert!(
        refusal.to_string().contains("MRCONFIGID differs")
            && refusal
                .to_string()
                .contains("run contrast generate, then contrast set"),
        "{refusal}"
    );
}

#[test]
fn a_debug_td_is_refused_unless_debug_is_allowed() {
    let v = verify_quote(
        &data("trustee-quote-v4.dat"),
        &TdxTrustAnchor::intel(),
        None,
        1_780_272_000,
    )
    .unwrap();
    let entry = suggested_tdx_reference_values(&v);
    let mut e = exact(&v);
    let refusal = check_tdx_reference_values(&v, std::slice::from_ref(&entry), &e).unwrap_err();
    let fields: Vec<_> = refusal.all().map(|m| m.field.as_str()).collect();
    assert_eq!(fields, ["TDATTRIBUTES.DEBUG (TdAttributes)"]);
    e.allow_debug = true;
    assert_eq!(check_tdx_reference_values(&v, &[entry], &e), Ok(0));
}

#[test]
fn an_out_of_date_tcb_is_refused_by_default_naming_the_status() {
    use contrast_attestation::tdx::TcbEvaluation;
    let mut v = dcap_sample();
    let entry = suggested_tdx_reference_values(&v);
    for (status, refused_by_default, refused_when_allowed) in [
        ("UpToDate", false, false),
        ("SWHardeningNeeded", false, false),
        ("OutOfDate", true, false),
        ("OutOfDateConfigurationNeeded", true, false),
        ("Revoked", true, true),
    ] {
        v.tcb = Some(TcbEvaluation {
            status: status.into(),
            advisory_ids: vec!["INTEL-SA-00837".into()],
        });
        let mut e = exact(&v);
        let result = check_tdx_reference_values(&v, std::slice::from_ref(&entry), &e);
        assert_eq!(result.is_err(), refused_by_default, "{status}");
        if let Err(refusal) = result {
            let text = refusal.to_string();
            assert!(text.contains(&format!("TCB status differs: expected UpToDate (or SWHardeningNeeded/ConfigurationNeeded), got {status}")), "{text}");
            assert!(text.contains("INTEL-SA-00837"), "{text}");
        }
        e.allow_out_of_date = true;
        assert_eq!(
            check_tdx_reference_values(&v, std::slice::from_ref(&entry), &e).is_err(),
            refused_when_allowed,
            "{status} allowed"
        );
    }
}

/// MinimumQeSvn is compared with the QE report's ISVSVN (signed by the PCK), not the
/// header's QE SVN, which Intel's QE leaves at 0: the dcap-qvl sample's QE has ISVSVN 6.
#[test]
fn minimum_qe_svn_is_checked_against_the_qe_reports_isvsvn_not_the_header() {
    let v = dcap_sample();
    assert_eq!((v.quote.qe_svn, v.quote.qe_identity().isv_svn), (0, 6));
    let expectations = exact(&v);
    let mut entry = suggested_tdx_reference_values(&v);
    assert_eq!(entry.minimum_qe_svn, Some(6));
    entry.minimum_qe_svn = Some(6);
    assert_eq!(
        check_tdx_reference_values(&v, std::slice::from_ref(&entry), &expectations),
        Ok(0)
    );
    entry.minimum_qe_svn = Some(7);
    let refusal = check_tdx_reference_values(&v, &[entry], &expectations).unwrap_err();
    let mismatch = refusal
        .all()
        .find(|m| m.field == "QE report ISVSVN (MinimumQeSvn)")
        .unwrap_or_else(|| panic!("no QE SVN mismatch:\n{refusal}"));
    assert_eq!(mismatch.actual, "6");
}
