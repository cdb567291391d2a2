//! Simulated evidence in Contrast's attestation documents: encoded, decoded byte for byte,
//! and verified under the simulator's roots with the endorsements the document carries.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use contrast_attestation::document::{
    DocumentError, DocumentKind, decode_snp, decode_snp_document, decode_tdx, encode_snp,
    encode_tdx,
};
use contrast_attestation::snp::{SnpEndorsements, SnpProduct, SnpVerifyError, verify_report};
use contrast_attestation::tdx::verify_quote;
use contrast_simulator::{
    SimulatedAmd, SimulatedIntel, SimulatedPlatform, SnpReportSpec, TdxQuoteSpec,
};

const NOW: i64 = 1_780_272_000; // 2026-06-01

#[test]
fn simulated_snp_reports_round_trip_and_verify_from_the_document_alone() {
    let amd = SimulatedAmd::generate(&[SnpProduct::Milan, SnpProduct::Turin]).unwrap();
    let anchor = amd.trust_anchor();
    for product in [SnpProduct::Milan, SnpProduct::Turin] {
        for version in [2, 3, 5] {
            let mut spec = SnpReportSpec::new(product);
            spec.version = version;
            spec.host_data = [0xab; 32];
            spec.report_data = [0xcd; 64];
            spec.mitigation_vector = 0x15;
            let r = amd.report(&spec).unwrap();
            let crl = amd
                .crl(product, &[&[0x77]], NOW - 3600, NOW + 86_400)
                .unwrap();
            let endorsements = SnpEndorsements {
                vek: Some(r.vcek_der.clone()),
                ask: Some(r.ask_der.clone()),
                ark: Some(r.ark_der.clone()),
                crl: Some(crl.clone()),
            };
            let document = encode_snp(&r.report, &endorsements, Some(product)).unwrap();
            assert_eq!(DocumentKind::detect(&document), Some(DocumentKind::Snp));

            let decoded = decode_snp_document(&document).unwrap();
            assert_eq!(decoded.report, r.report, "{product} v{version}");
            assert_eq!(decoded.endorsements.crl, Some(crl));
            assert_eq!(decoded.product, Some(product));
            let verified =
                verify_report(&decoded.report, &decoded.endorsements, &anchor, NOW).unwrap();
            assert!(verified.simulated);
            assert_eq!(verified.product, product);
            assert_eq!(verified.report.host_data(), [0xab; 32]);
            assert_eq!(verified.report.report_data(), [0xcd; 64]);
            if version >= 5 {
                assert_eq!(verified.report.launch_mitigation_vector(), Some(0x15));
            }
        }
    }
}

#[test]
fn the_crl_in_the_document_is_the_one_checked() {
    let amd = SimulatedAmd::generate(&[SnpProduct::Milan]).unwrap();
    let r = amd.report(&SnpReportSpec::new(SnpProduct::Milan)).unwrap();
    // The ASK has serial 2; this CRL revokes it.
    let revoking = amd
        .crl(SnpProduct::Milan, &[&[2]], NOW - 3600, NOW + 86_400)
        .unwrap();
    let endorsements = SnpEndorsements {
        vek: Some(r.vcek_der.clone()),
        ask: Some(r.ask_der.clone()),
        ark: None,
        crl: Some(revoking),
    };
    let document = encode_snp(&r.report, &endorsements, None).unwrap();
    let (report, decoded) = decode_snp(&document).unwrap();
    let err = verify_report(&report, &decoded, &amd.trust_anchor(), NOW).unwrap_err();
    assert!(matches!(err, SnpVerifyError::Revoked { .. }), "{err}");
}

#[test]
fn a_changed_simulated_report_field_is_refused_after_the_round_trip() {
    let amd = SimulatedAmd::generate(&[SnpProduct::Milan]).unwrap();
    let r = amd.report(&SnpReportSpec::new(SnpProduct::Milan)).unwrap();
    let endorsements = SnpEndorsements {
        vek: Some(r.vcek_der.clone()),
        ..Default::default()
    };
    let document = encode_snp(&r.report, &endorsements, None).unwrap();
    // The 32 HOST_DATA bytes (0x00) are in the document as they are in the report: find
    // the field by its tag (13, length-delimited) and length.
    let at = document
        .windows(2)
        .position(|w| w == [13 << 3 | 2, 32])
        .unwrap();
    let mut changed = document.clone();
    changed[at + 2] ^= 0x01;
    let (report, decoded) = decode_snp(&changed).unwrap();
    assert_eq!(report[0xC0], r.report[0xC0] ^ 0x01);
    let err = verify_report(&report, &decoded, &amd.trust_anchor(), NOW).unwrap_err();
    assert!(matches!(err, SnpVerifyError::ReportSignature(_)), "{err}");
}

#[test]
fn simulated_v4_quotes_round_trip_and_verify_and_v5_quotes_are_refused() {
    let intel = SimulatedIntel::generate(SimulatedPlatform::default()).unwrap();
    let spec = TdxQuoteSpec {
        mr_config_id: [0xab; 48],
        report_data: [7; 64],
        ..Default::default()
    };
    let quote = intel.quote(&spec).unwrap();
    let document = encode_tdx(&quote).unwrap();
    assert_eq!(DocumentKind::detect(&document), Some(DocumentKind::Tdx));
    let rebuilt = decode_tdx(&document).unwrap();
    assert_eq!(rebuilt, quote);
    let verified = verify_quote(&rebuilt, &intel.trust_anchor(), None, NOW).unwrap();
    assert!(verified.simulated);
    assert_eq!(verified.quote.td_report.mr_config_id, [0xab; 48]);
    assert_eq!((verified.quote.qe_svn, verified.quote.pce_svn), (0, 13));
    assert_eq!(verified.quote.qe_identity().isv_svn, 8);

    let v5 = intel.quote(&TdxQuoteSpec { version: 5, ..spec }).unwrap();
    assert_eq!(encode_tdx(&v5).unwrap_err(), DocumentError::QuoteVersion(5));
}
