//! Real TDX quotes from public projects (tests/data/tdx/PROVENANCE.md) verify against
//! Intel's pinned root, the dcap-qvl sample is UpToDate with its collateral, and every
//! tampering is refused.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use contrast_attestation::tdx::{
    INTEL_TDX_QE, PckCert, TdxCollateral, TdxQuote, TdxTrustAnchor, TdxVerifyError, verify_quote,
};

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/tdx/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

/// 2025-06-25T00:00:00Z, the time dcap-qvl's sample collateral is current at.
const JUNE_25_2025: i64 = 1_750_809_600;
/// 2026-06-01T00:00:00Z: inside the validity of every vector's PCK chain (the newest PCK,
/// go-tdx-guest's v5 sample, was issued 2026-01-27).
const JUNE_2026: i64 = 1_780_272_000;

const QUOTES: &[(&str, u16, bool)] = &[
    // (file, version, TD report 1.5 body)
    ("dcapqvl-quote-v4.dat", 4, false),
    ("trustee-quote-v4.dat", 4, false),
    ("trustee-quote-v5.dat", 5, true),
    ("trustee-azure-quote-v4.dat", 4, false),
    ("gotdxguest-quote-v5.dat", 5, true),
    ("gotdxguest-quote-v4-spr.dat", 4, false),
    ("gotdxguest-cos113-quote.dat", 4, false),
];

#[test]
fn every_real_quote_verifies_against_intels_root() {
    for (file, version, td15) in QUOTES {
        let verified = verify_quote(&data(file), &TdxTrustAnchor::intel(), None, JUNE_2026)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(verified.quote.version, *version, "{file}");
        assert_eq!(
            verified.quote.td_report.mr_service_td.is_some(),
            *td15,
            "{file}"
        );
        assert!(verified.tcb.is_none());
        assert!(!verified.simulated);
    }
}

#[test]
fn the_trustee_v4_quote_is_a_debug_td() {
    let quote = TdxQuote::parse(&data("trustee-quote-v4.dat")).unwrap();
    assert!(quote.td_report.is_debug());
    let quote = TdxQuote::parse(&data("dcapqvl-quote-v4.dat")).unwrap();
    assert!(!quote.td_report.is_debug());
}

#[test]
fn dcap_qvl_sample_is_up_to_date_with_its_collateral() {
    let collateral = TdxCollateral::from_json(&data("dcapqvl-quote-v4-collateral.json")).unwrap();
    let verified = verify_quote(
        &data("dcapqvl-quote-v4.dat"),
        &TdxTrustAnchor::intel(),
        Some(&collateral),
        JUNE_25_2025,
    )
    .unwrap();
    let tcb = verified.tcb.unwrap();
    assert_eq!(tcb.status, "UpToDate");
    assert!(!tcb.is_refused_by_default());

    // Collateral for another platform (FMSPC) does not evaluate this quote.
    let err = verify_quote(
        &data("trustee-quote-v5.dat"),
        &TdxTrustAnchor::intel(),
        Some(&collateral),
        JUNE_25_2025,
    )
    .unwrap_err();
    assert!(matches!(err, TdxVerifyError::TcbEvaluation(_)), "{err}");
}

#[test]
fn flipping_any_byte_of_the_signed_region_is_refused() {
    let anchor = TdxTrustAnchor::intel();
    for file in ["dcapqvl-quote-v4.dat", "trustee-quote-v5.dat"] {
        let quote = data(file);
        let signed_len = TdxQuote::parse(&quote).unwrap().signed_bytes().len();
        for offset in 0..signed_len {
            let mut tampered = quote.clone();
            tampered[offset] ^= 0x01;
            assert!(
                verify_quote(&tampered, &anchor, None, JUNE_25_2025).is_err(),
                "{file}: flipping byte {offset} was accepted"
            );
        }
        // The attestation key, the QE report and the QE report signature.
        for offset in [
            signed_len + 4,
            signed_len + 4 + 64,
            signed_len + 4 + 128 + 6,
            signed_len + 4 + 128 + 6 + 384,
        ] {
            let mut tampered = quote.clone();
            tampered[offset] ^= 0x01;
            assert!(
                verify_quote(&tampered, &anchor, None, JUNE_25_2025).is_err(),
                "{file}: flipping signature data byte {offset} was accepted"
            );
        }
    }
}

#[test]
fn another_root_and_certificates_out_of_validity_are_refused() {
    let quote = data("dcapqvl-quote-v4.dat");
    // A root that is not Intel's: the quote's own intermediate CA.
    let chain_pem = TdxQuote::parse(&quote).unwrap().pck_chain_pem;
    let chain = contrast_attestation::pem::decode_all(
        &String::from_utf8(chain_pem).unwrap(),
        "CERTIFICATE",
    )
    .unwrap();
    let err = verify_quote(
        &quote,
        &TdxTrustAnchor::simulated(chain[1].clone()),
        None,
        JUNE_25_2025,
    )
    .unwrap_err();
    assert_eq!(err, TdxVerifyError::UntrustedRoot);

    let anchor = TdxTrustAnchor::intel();
    // 2017: before Intel's root; 2060: after it.
    for now in [1_483_228_800, 2_840_140_800] {
        let err = verify_quote(&quote, &anchor, None, now).unwrap_err();
        assert!(
            matches!(err, TdxVerifyError::CertificateValidity { .. }),
            "{err}"
        );
    }
    // Once the root is valid but before the PCK was issued (2019).
    let err = verify_quote(&quote, &anchor, None, 1_546_300_800).unwrap_err();
    assert!(
        matches!(
            err,
            TdxVerifyError::CertificateValidity {
                which: PckCert::Leaf | PckCert::Intermediate,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn truncated_and_malformed_quotes_are_refused_with_the_field() {
    let quote = data("trustee-quote-v5.dat");
    for len in [0, 10, 48, 53, 600, 702, 706, 1200, 2000] {
        let err = TdxQuote::parse(&quote[..len]).unwrap_err();
        assert!(
            err.to_string().starts_with("the TDX quote ends at byte"),
            "{len}: {err}"
        );
    }
    let mut sgx = quote.clone();
    sgx[4] = 0; // TEE type SGX
    assert_eq!(
        TdxQuote::parse(&sgx).unwrap_err().to_string(),
        "TDX quote TEE type is 0x0, expected 0x81 (TDX)"
    );
    let mut v3 = quote.clone();
    v3[0] = 3;
    assert_eq!(
        TdxQuote::parse(&v3).unwrap_err().to_string(),
        "TDX quote version is 3, expected 4 or 5"
    );
    let mut body = quote;
    body[48] = 1; // SGX report body
    assert!(
        TdxQuote::parse(&body)
            .unwrap_err()
            .to_string()
            .contains("body type is 1")
    );
}

#[test]
fn the_caching_verifier_gives_the_same_answers() {
    use contrast_attestation::tdx::TdxVerifier;
    let verifier = TdxVerifier::new(TdxTrustAnchor::intel());
    let quote = data("dcapqvl-quote-v4.dat");
    for _ in 0..2 {
        verifier.verify(&quote, None, JUNE_25_2025).unwrap();
        let err = verifier.verify(&quote, None, 2_840_140_800).unwrap_err();
        assert!(
            matches!(err, TdxVerifyError::CertificateValidity { .. }),
            "{err}"
        );
        let mut tampered = quote.clone();
        tampered[200] ^= 1;
        assert_eq!(
            verifier.verify(&tampered, None, JUNE_25_2025).unwrap_err(),
            TdxVerifyError::QuoteSignature
        );
    }
}

/// Every real quote was made by Intel's TDX QE, so the pinned identity accepts them all;
/// the same identity with any one field changed refuses them, naming the field.
#[test]
fn real_quotes_carry_intels_tdx_qe_identity_and_a_changed_pin_refuses_them() {
    for (file, _, _) in QUOTES {
        let quote = TdxQuote::parse(&data(file)).unwrap();
        let qe = quote.qe_identity();
        assert_eq!(INTEL_TDX_QE.check(&qe), Ok(()), "{file}");
        assert!(!qe.is_debug(), "{file}");
        assert_eq!(
            quote.qe_svn, 0,
            "{file}: the header's QE SVN is not the QE's SVN"
        );
        assert!(qe.isv_svn >= 4, "{file}");

        let mut other = INTEL_TDX_QE;
        other.mr_signer[0] ^= 1;
        assert!(matches!(
            other.check(&qe),
            Err(TdxVerifyError::QeIdentity {
                field: "MRSIGNER",
                ..
            })
        ));
        let mut other = INTEL_TDX_QE;
        other.isv_prod_id = 1;
        assert!(matches!(
            other.check(&qe),
            Err(TdxVerifyError::QeIdentity {
                field: "ISVPRODID",
                ..
            })
        ));
        let mut debug = qe;
        debug.attributes[0] |= 0x02;
        assert!(matches!(
            INTEL_TDX_QE.check(&debug),
            Err(TdxVerifyError::QeIdentity {
                field: "ATTRIBUTES.DEBUG",
                ..
            })
        ));
        let mut misc = qe;
        misc.misc_select = 1;
        assert!(matches!(
            INTEL_TDX_QE.check(&misc),
            Err(TdxVerifyError::QeIdentity {
                field: "MISCSELECT",
                ..
            })
        ));
    }
}
