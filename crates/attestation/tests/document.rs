//! Attestation documents of real evidence (tests/data/*/PROVENANCE.md): every report and
//! version 4 quote goes into a document and comes out byte for byte, verifies after the
//! round trip, and a document changed anywhere in its evidence is refused.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use contrast_attestation::document::{
    CRL_EXTRAS_KEY, DocumentError, DocumentKind, decode_snp, decode_snp_document, decode_tdx,
    encode_snp, encode_tdx,
};
use contrast_attestation::pem;
use contrast_attestation::snp::{
    REPORT_SIZE, SnpEndorsements, SnpProduct, SnpTrustAnchor, SnpVerifier,
};
use contrast_attestation::tdx::{TdxCollateral, TdxTrustAnchor, TdxVerifier, verify_quote};

fn data(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/data/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

fn pem_certs(path: &str) -> Vec<Vec<u8>> {
    pem::decode_all(&String::from_utf8(data(path)).unwrap(), "CERTIFICATE").unwrap()
}

/// Where the first `count` top-level fields of a protobuf message end (all
/// length-delimited, as the leading fields of both documents are).
fn end_of_fields(document: &[u8], count: usize) -> usize {
    let varint = |pos: &mut usize| {
        let mut value = 0usize;
        let mut shift = 0;
        loop {
            let byte = document[*pos];
            *pos += 1;
            value |= usize::from(byte & 0x7f) << shift;
            shift += 7;
            if byte & 0x80 == 0 {
                return value;
            }
        }
    };
    let mut pos = 0;
    for _ in 0..count {
        assert_eq!(varint(&mut pos) & 7, 2, "a length-delimited field");
        let len = varint(&mut pos);
        pos += len;
    }
    pos
}

/// 2025-06-01T00:00:00Z: inside every SNP vector certificate's validity.
const JUNE_2025: i64 = 1_748_736_000;
/// 2025-06-25T00:00:00Z, the time dcap-qvl's sample collateral is current at.
const JUNE_25_2025: i64 = 1_750_809_600;
/// 2026-06-01T00:00:00Z: inside the validity of every TDX vector's PCK chain.
const JUNE_2026: i64 = 1_780_272_000;

/// Every SNP report vector with its endorsements (the Azure one is the report inside the
/// HCL wrapper: a document carries the bare report).
fn snp_vectors() -> Vec<(&'static str, Vec<u8>, SnpEndorsements)> {
    let vcek_chain = pem_certs("snp/gosevguest-milan-ask-ark.pem");
    let vlek_chain = pem_certs("snp/gosevguest-milan-asvk-ark.pem");
    let hcl = data("snp/trustee-azure-milan-hcl-report.bin");
    vec![
        (
            "gosevguest-milan-v2",
            data("snp/gosevguest-milan-v2-report.bin"),
            SnpEndorsements {
                vek: Some(data("snp/gosevguest-milan-v2-vcek.der")),
                ask: Some(vcek_chain[0].clone()),
                ark: Some(vcek_chain[1].clone()),
                crl: None,
            },
        ),
        (
            "trustee-milan-v2",
            data("snp/trustee-milan-v2-report.bin"),
            SnpEndorsements {
                vek: Some(data("snp/trustee-milan-v2-vcek.der")),
                ..Default::default()
            },
        ),
        (
            "trustee-milan-v3-vlek",
            data("snp/trustee-milan-v3-vlek-report.bin"),
            SnpEndorsements {
                vek: Some(data("snp/trustee-milan-v3-vlek.der")),
                ask: Some(vlek_chain[0].clone()),
                ark: Some(vlek_chain[1].clone()),
                crl: None,
            },
        ),
        (
            "trustee-azure-milan",
            hcl[32..32 + REPORT_SIZE].to_vec(),
            SnpEndorsements {
                vek: Some(pem_certs("snp/trustee-azure-milan-vcek.pem")[0].clone()),
                ..Default::default()
            },
        ),
    ]
}

#[test]
fn every_snp_vector_round_trips_byte_for_byte_and_verifies() {
    let verifier = SnpVerifier::new(SnpTrustAnchor::amd());
    for (name, report, endorsements) in snp_vectors() {
        let document = encode_snp(&report, &endorsements, Some(SnpProduct::Milan))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(DocumentKind::detect(&document), Some(DocumentKind::Snp));
        let decoded = decode_snp_document(&document).unwrap();
        assert_eq!(decoded.report, report, "{name}");
        assert_eq!(decoded.endorsements.vek, endorsements.vek, "{name}");
        assert_eq!(decoded.endorsements.ask, endorsements.ask, "{name}");
        assert_eq!(decoded.endorsements.ark, endorsements.ark, "{name}");
        assert_eq!(decoded.product, Some(SnpProduct::Milan));
        let verified = verifier
            .verify(&decoded.report, &decoded.endorsements, JUNE_2025)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(verified.product, SnpProduct::Milan);
        assert!(!verified.simulated);
    }
}

#[test]
fn an_snp_document_changed_anywhere_in_its_report_is_refused() {
    let verifier = SnpVerifier::new(SnpTrustAnchor::amd());
    for (name, report, endorsements) in snp_vectors() {
        let document = encode_snp(&report, &endorsements, None).unwrap();
        // The report is the document's first field.
        let report_end = end_of_fields(&document, 1);
        assert!(
            report_end > 912,
            "{name}: the report's fixed-size fields alone take 912 bytes"
        );
        let mut refused_on_decode = 0;
        for offset in 0..report_end {
            let mut changed = document.clone();
            changed[offset] ^= 0x01;
            match decode_snp(&changed) {
                Err(_) => refused_on_decode += 1,
                Ok((rebuilt, decoded)) => {
                    // Whatever decodes must be other evidence, which the signature refuses.
                    assert_ne!(rebuilt, report, "{name}: byte {offset}");
                    assert!(
                        verifier.verify(&rebuilt, &decoded, JUNE_2025).is_err(),
                        "{name}: byte {offset} changed, still verifies"
                    );
                }
            }
        }
        assert!(refused_on_decode > 0, "{name}");
    }
}

#[test]
fn the_crl_travels_in_extras_and_the_verifier_checks_it() {
    let (_, report, mut endorsements) = snp_vectors().remove(0);
    // Not a CRL: the verifier must say so, which shows it came out of the document.
    endorsements.crl = Some(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
    let document = encode_snp(&report, &endorsements, None).unwrap();
    assert!(
        document
            .windows(CRL_EXTRAS_KEY.len())
            .any(|w| w == CRL_EXTRAS_KEY.as_bytes())
    );
    let (rebuilt, decoded) = decode_snp(&document).unwrap();
    assert_eq!(decoded.crl, endorsements.crl);
    let err = SnpVerifier::new(SnpTrustAnchor::amd())
        .verify(&rebuilt, &decoded, JUNE_2025)
        .unwrap_err();
    assert!(
        err.to_string().starts_with("the CRL is not usable"),
        "{err}"
    );
}

#[test]
fn a_truncated_or_garbled_snp_document_is_refused_with_a_clear_error() {
    let (_, report, endorsements) = snp_vectors().remove(1);
    let document = encode_snp(&report, &endorsements, None).unwrap();
    let err = decode_snp(&document[..document.len() / 2]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the attestation document is not a valid protobuf sevsnp.Attestation"),
        "{err}"
    );
    // A raw report is not a document.
    assert!(matches!(
        decode_snp(&report).unwrap_err(),
        DocumentError::Protobuf { .. }
    ));
    assert_eq!(DocumentKind::detect(&report), None);
    // An HCL report cannot be encoded as it is.
    let hcl = data("snp/trustee-azure-milan-hcl-report.bin");
    assert_eq!(
        encode_snp(&hcl, &SnpEndorsements::default(), None).unwrap_err(),
        DocumentError::ReportSize(hcl.len())
    );
}

const V4_QUOTES: &[&str] = &[
    "tdx/dcapqvl-quote-v4.dat",
    "tdx/trustee-quote-v4.dat",
    "tdx/trustee-azure-quote-v4.dat",
    "tdx/gotdxguest-quote-v4-spr.dat",
    // 8000 bytes, zero padded: the padding travels in extra_bytes.
    "tdx/gotdxguest-cos113-quote.dat",
];

#[test]
fn every_v4_quote_round_trips_byte_for_byte_and_verifies() {
    let verifier = TdxVerifier::new(TdxTrustAnchor::intel());
    for file in V4_QUOTES {
        let quote = data(file);
        let document = encode_tdx(&quote).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(DocumentKind::detect(&document), Some(DocumentKind::Tdx));
        let rebuilt = decode_tdx(&document).unwrap();
        assert_eq!(rebuilt, quote, "{file}");
        verifier
            .verify(&rebuilt, None, JUNE_2026)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
    }
    // With collateral, the rebuilt quote has the original's TCB status.
    let collateral =
        TdxCollateral::from_json(&data("tdx/dcapqvl-quote-v4-collateral.json")).unwrap();
    let rebuilt = decode_tdx(&encode_tdx(&data("tdx/dcapqvl-quote-v4.dat")).unwrap()).unwrap();
    let verified = verify_quote(
        &rebuilt,
        &TdxTrustAnchor::intel(),
        Some(&collateral),
        JUNE_25_2025,
    )
    .unwrap();
    assert_eq!(verified.tcb.unwrap().status, "UpToDate");
}

#[test]
fn v5_quotes_cannot_go_into_a_quote_v4() {
    for file in ["tdx/trustee-quote-v5.dat", "tdx/gotdxguest-quote-v5.dat"] {
        let err = encode_tdx(&data(file)).unwrap_err();
        assert_eq!(err, DocumentError::QuoteVersion(5), "{file}");
        assert!(err.to_string().contains("only version 4 quotes can"));
    }
}

#[test]
fn a_tdx_document_changed_anywhere_in_its_signed_part_is_refused() {
    let verifier = TdxVerifier::new(TdxTrustAnchor::intel());
    let quote = data("tdx/trustee-quote-v4.dat");
    let document = encode_tdx(&quote).unwrap();
    // Header and body, the signed part: the first two fields.
    let signed_end = end_of_fields(&document, 2);
    assert!(signed_end > 48 + 584);
    for offset in 0..signed_end {
        let mut changed = document.clone();
        changed[offset] ^= 0x01;
        if let Ok(rebuilt) = decode_tdx(&changed) {
            assert_ne!(rebuilt, quote, "byte {offset}");
            assert!(
                verifier.verify(&rebuilt, None, JUNE_2026).is_err(),
                "byte {offset} changed, still verifies"
            );
        }
    }
}

#[test]
fn a_truncated_or_raw_tdx_document_is_refused_with_a_clear_error() {
    let quote = data("tdx/dcapqvl-quote-v4.dat");
    let document = encode_tdx(&quote).unwrap();
    let err = decode_tdx(&document[..document.len() - 10]).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("the attestation document is not a valid protobuf tdx.QuoteV4"),
        "{err}"
    );
    assert!(matches!(
        decode_tdx(&quote).unwrap_err(),
        DocumentError::Protobuf { .. }
    ));
    assert_eq!(DocumentKind::detect(&quote), None);
    // The two documents are not mistaken for each other.
    assert!(decode_snp(&document).is_err());
    let (_, report, endorsements) = snp_vectors().remove(0);
    assert!(decode_tdx(&encode_snp(&report, &endorsements, None).unwrap()).is_err());
}
