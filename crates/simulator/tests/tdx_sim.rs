//! Simulated TDX quotes verify with the verifier used for real quotes, under the
//! simulator's root only, and every tampering is refused.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use contrast_attestation::tdx::{
    TdxExpectations, TdxQuote, TdxTrustAnchor, TdxVerifyError, check_tdx_reference_values,
    pck_platform, suggested_tdx_reference_values, verify_quote,
};
use contrast_simulator::{KeyStore, SimulatedIntel, SimulatedPlatform, SimulatedQe, TdxQuoteSpec};

const NOW: i64 = 1_780_272_000; // 2026-06-01

fn intel() -> SimulatedIntel {
    SimulatedIntel::generate(SimulatedPlatform::default()).unwrap()
}

#[test]
fn simulated_quotes_verify_under_the_simulated_root_only() {
    let intel = intel();
    for version in [4, 5] {
        let spec = TdxQuoteSpec {
            version,
            mr_config_id: [0xab; 48],
            report_data: [7; 64],
            ..Default::default()
        };
        let quote = intel.quote(&spec).unwrap();
        let verified = verify_quote(&quote, &intel.trust_anchor(), None, NOW).unwrap();
        assert!(verified.simulated);
        assert_eq!(verified.quote.version, version);
        assert_eq!(verified.quote.td_report.mr_config_id, [0xab; 48]);
        assert_eq!((verified.quote.qe_svn, verified.quote.pce_svn), (0, 13));
        assert_eq!(verified.quote.qe_identity().isv_svn, 8);
        let platform = pck_platform(&verified.pck_der);
        assert_eq!(platform.piid, Some([0x3c; 16]));
        assert_eq!(platform.fmspc, Some([0x00, 0x60, 0x6a, 0x00, 0x00, 0x00]));

        let err = verify_quote(&quote, &TdxTrustAnchor::intel(), None, NOW).unwrap_err();
        assert_eq!(err, TdxVerifyError::UntrustedRoot);
    }
}

#[test]
fn flipping_any_signed_byte_of_a_simulated_quote_is_refused() {
    let intel = intel();
    let quote = intel.quote(&TdxQuoteSpec::default()).unwrap();
    let anchor = intel.trust_anchor();
    let signed_len = TdxQuote::parse(&quote).unwrap().signed_bytes().len();
    for offset in 0..signed_len {
        let mut tampered = quote.clone();
        tampered[offset] ^= 0x01;
        assert!(
            verify_quote(&tampered, &anchor, None, NOW).is_err(),
            "byte {offset}"
        );
    }
}

#[test]
fn reference_values_accept_simulated_quotes_only_on_sim_tdx() {
    let intel = intel();
    let quote = intel.quote(&TdxQuoteSpec::default()).unwrap();
    let verified = verify_quote(&quote, &intel.trust_anchor(), None, NOW).unwrap();
    let mut entry = suggested_tdx_reference_values(&verified);
    assert_eq!(entry.platform, "Sim-TDX");
    assert_eq!(
        entry.td_attributes.as_str(),
        "0000001000000000",
        "SEPT_VE_DISABLE, as Contrast's default"
    );
    let expect = TdxExpectations::default();
    assert_eq!(
        check_tdx_reference_values(&verified, std::slice::from_ref(&entry), &expect),
        Ok(0)
    );
    entry.allowed_piids = Some(vec![contrast_manifest::HexString::from("3c".repeat(16))]);
    assert_eq!(
        check_tdx_reference_values(&verified, std::slice::from_ref(&entry), &expect),
        Ok(0)
    );
    entry.platform = "Metal-QEMU-TDX".into();
    let refusal = check_tdx_reference_values(&verified, &[entry], &expect).unwrap_err();
    assert!(
        refusal.all().any(|m| m.field == "trust anchor (Platform)"),
        "{refusal}"
    );
}

#[test]
fn keys_persist_in_the_store() {
    let dir = std::env::temp_dir().join(format!("contrast-sim-tdx-{}", std::process::id()));
    let store = KeyStore::open(&dir).unwrap();
    let first = SimulatedIntel::open(&store, SimulatedPlatform::default()).unwrap();
    let second = SimulatedIntel::open(&store, SimulatedPlatform::default()).unwrap();
    let quote = second.quote(&TdxQuoteSpec::default()).unwrap();
    verify_quote(&quote, &first.trust_anchor(), None, NOW).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A host that has its own enclave certified (the PCK signs the report of any enclave with
/// the provisioning key) could sign TD quotes with any measurements: a QE report that is not
/// Intel's TDX QE is refused, naming the field, although the platform's PCK signed it.
#[test]
fn tdx_quote_from_a_foreign_quoting_enclave_is_refused() {
    let intel = intel();
    let anchor = intel.trust_anchor();
    let intels = SimulatedQe::default();
    let mut debug_attributes = intels.attributes;
    debug_attributes[0] |= 0x02;
    let mut other_attributes = intels.attributes;
    other_attributes[0] &= !0x10; // no PROVISIONKEY
    let cases = [
        (
            "MRSIGNER",
            SimulatedQe {
                mr_signer: [0x66; 32],
                ..intels
            },
        ),
        (
            "ISVPRODID",
            SimulatedQe {
                isv_prod_id: 0x1337,
                ..intels
            },
        ),
        (
            "ATTRIBUTES.DEBUG",
            SimulatedQe {
                attributes: debug_attributes,
                ..intels
            },
        ),
        (
            "ATTRIBUTES",
            SimulatedQe {
                attributes: other_attributes,
                ..intels
            },
        ),
        (
            "MISCSELECT",
            SimulatedQe {
                misc_select: 1,
                ..intels
            },
        ),
    ];
    for (field, qe) in cases {
        let quote = intel
            .quote(&TdxQuoteSpec {
                qe,
                mr_config_id: [0xab; 48],
                ..Default::default()
            })
            .unwrap();
        let err = verify_quote(&quote, &anchor, None, NOW).expect_err(field);
        match &err {
            TdxVerifyError::QeIdentity { field: named, .. } => assert_eq!(named, &field),
            other => panic!("{field}: refused for another reason: {other}"),
        }
        assert!(err.to_string().contains(field), "{err}");
        let cached = contrast_attestation::tdx::TdxVerifier::new(anchor.clone());
        assert_eq!(cached.verify(&quote, None, NOW).unwrap_err(), err);
    }
    let genuine = intel.quote(&TdxQuoteSpec::default()).unwrap();
    verify_quote(&genuine, &anchor, None, NOW).unwrap();
}
