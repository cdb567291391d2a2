//! Real SEV-SNP reports from public projects (tests/data/snp/PROVENANCE.md) verify against
//! AMD's pinned roots, and every tampering is refused.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use contrast_attestation::pem;
use contrast_attestation::snp::{
    ChainCert, SIGNED_LEN, SigningKey, SnpEndorsements, SnpProduct, SnpTrustAnchor, SnpVerifyError,
    verify_report,
};

fn data(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/snp/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn pem_certs(name: &str) -> Vec<Vec<u8>> {
    pem::decode_all(&String::from_utf8(data(name)).unwrap(), "CERTIFICATE").unwrap()
}

/// 2025-06-01T00:00:00Z: inside every vector certificate's validity.
const JUNE_2025: i64 = 1_748_736_000;

fn vcek_only(vek: Vec<u8>) -> SnpEndorsements {
    SnpEndorsements {
        vek: Some(vek),
        ..Default::default()
    }
}

#[test]
fn go_sev_guest_milan_report_verifies_with_its_chain() {
    let chain = pem_certs("gosevguest-milan-ask-ark.pem");
    let endorsements = SnpEndorsements {
        vek: Some(data("gosevguest-milan-v2-vcek.der")),
        ask: Some(chain[0].clone()),
        ark: Some(chain[1].clone()),
        crl: None,
    };
    let verified = verify_report(
        &data("gosevguest-milan-v2-report.bin"),
        &endorsements,
        &SnpTrustAnchor::amd(),
        JUNE_2025,
    )
    .unwrap();
    assert_eq!(verified.product, SnpProduct::Milan);
    assert_eq!(verified.signing_key, SigningKey::Vcek);
    assert_eq!(verified.report.version(), 2);
    // The DEBUG bit (19) is set: the signature is fine, the reference values will refuse it.
    assert_eq!(verified.report.policy(), 0xb0000);
    assert!(!verified.simulated && !verified.from_hcl);
}

#[test]
fn trustee_milan_report_verifies_with_the_pinned_ask() {
    let verified = verify_report(
        &data("trustee-milan-v2-report.bin"),
        &vcek_only(data("trustee-milan-v2-vcek.der")),
        &SnpTrustAnchor::amd(),
        JUNE_2025,
    )
    .unwrap();
    assert_eq!(verified.product, SnpProduct::Milan);
    // REPORTED_TCB 03 00 00 00 00 00 08 73, in Milan's layout; the VCEK says the same.
    let tcb = verified.reported_tcb;
    assert_eq!(
        (tcb.bootloader, tcb.tee, tcb.snp, tcb.microcode, tcb.fmc),
        (3, 0, 8, 115, None)
    );
}

#[test]
fn vlek_report_verifies_through_the_asvk() {
    let asvk_ark = pem_certs("gosevguest-milan-asvk-ark.pem");
    let endorsements = SnpEndorsements {
        vek: Some(data("trustee-milan-v3-vlek.der")),
        ask: Some(asvk_ark[0].clone()),
        ark: Some(asvk_ark[1].clone()),
        crl: None,
    };
    let verified = verify_report(
        &data("trustee-milan-v3-vlek-report.bin"),
        &endorsements,
        &SnpTrustAnchor::amd(),
        JUNE_2025,
    )
    .unwrap();
    assert_eq!(verified.signing_key, SigningKey::Vlek);
    assert_eq!(verified.report.version(), 3);
    assert_eq!(verified.report.vmpl(), 1);
    assert_eq!(
        verified.product,
        SnpProduct::Milan,
        "from the v3 CPUID bytes"
    );

    // Without the ASVK there is nothing to check the VLEK against.
    let err = verify_report(
        &data("trustee-milan-v3-vlek-report.bin"),
        &vcek_only(data("trustee-milan-v3-vlek.der")),
        &SnpTrustAnchor::amd(),
        JUNE_2025,
    )
    .unwrap_err();
    assert_eq!(err, SnpVerifyError::MissingAsvk);

    // The VCEK-signing ASK is not the ASVK.
    let ask_ark = pem_certs("gosevguest-milan-ask-ark.pem");
    let err = verify_report(
        &data("trustee-milan-v3-vlek-report.bin"),
        &SnpEndorsements {
            vek: Some(data("trustee-milan-v3-vlek.der")),
            ask: Some(ask_ark[0].clone()),
            ..Default::default()
        },
        &SnpTrustAnchor::amd(),
        JUNE_2025,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            SnpVerifyError::CertificateName {
                which: ChainCert::Ask,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn azure_hcl_report_is_found_at_byte_32() {
    let certs = pem_certs("trustee-azure-milan-vcek.pem");
    let verified = verify_report(
        &data("trustee-azure-milan-hcl-report.bin"),
        &vcek_only(certs[0].clone()),
        &SnpTrustAnchor::amd(),
        JUNE_2025,
    )
    .unwrap();
    assert!(verified.from_hcl);
    assert_eq!(
        verified.report.as_bytes()[..],
        data("trustee-azure-milan-hcl-report.bin")[32..32 + 1184]
    );
}

#[test]
fn a_foreign_ark_is_refused() {
    // Genoa's real ARK offered as the ARK of a Milan chain.
    let genoa_ark = pem::decode_all(
        include_str!("../src/snp/roots/genoa-ark.pem"),
        "CERTIFICATE",
    )
    .unwrap();
    let endorsements = SnpEndorsements {
        vek: Some(data("trustee-milan-v2-vcek.der")),
        ark: Some(genoa_ark[0].clone()),
        ..Default::default()
    };
    let err = verify_report(
        &data("trustee-milan-v2-report.bin"),
        &endorsements,
        &SnpTrustAnchor::amd(),
        JUNE_2025,
    )
    .unwrap_err();
    assert_eq!(err, SnpVerifyError::ArkNotTrusted(SnpProduct::Milan));

    // A trust anchor without Milan roots cannot verify a Milan report.
    let genoa_only =
        SnpTrustAnchor::simulated(vec![(SnpProduct::Genoa, genoa_ark[0].clone(), None)]);
    let err = verify_report(
        &data("trustee-milan-v2-report.bin"),
        &vcek_only(data("trustee-milan-v2-vcek.der")),
        &genoa_only,
        JUNE_2025,
    )
    .unwrap_err();
    assert_eq!(err, SnpVerifyError::NoTrustedArk(SnpProduct::Milan));
}

#[test]
fn certificates_outside_their_validity_are_refused() {
    // The go-sev-guest VCEK is valid from 2022-09-24 to 2029-09-24.
    let endorsements = vcek_only(data("gosevguest-milan-v2-vcek.der"));
    let report = data("gosevguest-milan-v2-report.bin");
    let anchor = SnpTrustAnchor::amd();
    for (now, what) in [
        (1_622_505_600, "2021: not yet valid"),
        (1_893_456_000, "2030: expired"),
    ] {
        let err = verify_report(&report, &endorsements, &anchor, now).unwrap_err();
        assert!(
            matches!(
                err,
                SnpVerifyError::CertificateValidity {
                    which: ChainCert::Vek,
                    ..
                }
            ),
            "{what}: {err}"
        );
    }
    assert!(verify_report(&report, &endorsements, &anchor, JUNE_2025).is_ok());
}

#[test]
fn a_vcek_of_another_chip_is_refused() {
    let err = verify_report(
        &data("trustee-milan-v2-report.bin"),
        &vcek_only(data("gosevguest-milan-v2-vcek.der")),
        &SnpTrustAnchor::amd(),
        JUNE_2025,
    )
    .unwrap_err();
    assert!(
        matches!(err, SnpVerifyError::ExtensionMismatch { .. }),
        "{err}"
    );
}

#[test]
fn flipping_any_byte_of_the_signed_region_is_refused() {
    let report = data("trustee-milan-v2-report.bin");
    let endorsements = vcek_only(data("trustee-milan-v2-vcek.der"));
    let anchor = SnpTrustAnchor::amd();
    verify_report(&report, &endorsements, &anchor, JUNE_2025).unwrap();
    for offset in 0..SIGNED_LEN {
        let mut tampered = report.clone();
        tampered[offset] ^= 0x01;
        assert!(
            verify_report(&tampered, &endorsements, &anchor, JUNE_2025).is_err(),
            "flipping byte {offset:#x} was accepted"
        );
    }
    // And the signature itself.
    for offset in [
        SIGNED_LEN,
        SIGNED_LEN + 47,
        SIGNED_LEN + 72,
        SIGNED_LEN + 72 + 47,
    ] {
        let mut tampered = report.clone();
        tampered[offset] ^= 0x01;
        assert_eq!(
            verify_report(&tampered, &endorsements, &anchor, JUNE_2025).unwrap_err(),
            SnpVerifyError::ReportSignature(SigningKey::Vcek),
            "signature byte {offset:#x}"
        );
    }
}

#[test]
fn a_tampered_certificate_is_refused() {
    let report = data("trustee-milan-v2-report.bin");
    let mut vcek = data("trustee-milan-v2-vcek.der");
    // A byte inside the TBS part (the public key) changes what the ASK signed.
    let len = vcek.len();
    vcek[len / 3] ^= 0x01;
    let err = verify_report(&report, &vcek_only(vcek), &SnpTrustAnchor::amd(), JUNE_2025);
    assert!(err.is_err());
}

#[test]
fn missing_and_malformed_inputs_are_refused_with_the_reason() {
    let anchor = SnpTrustAnchor::amd();
    let report = data("trustee-milan-v2-report.bin");
    assert_eq!(
        verify_report(&report, &SnpEndorsements::default(), &anchor, JUNE_2025).unwrap_err(),
        SnpVerifyError::MissingVek(SigningKey::Vcek)
    );
    let err = verify_report(
        &report,
        &vcek_only(vec![0x30, 0x03, 1, 2, 3]),
        &anchor,
        JUNE_2025,
    )
    .unwrap_err();
    assert!(matches!(
        err,
        SnpVerifyError::CertificateParse {
            which: ChainCert::Vek,
            ..
        }
    ));
    let err = verify_report(&report[..100], &vcek_only(vec![]), &anchor, JUNE_2025).unwrap_err();
    assert_eq!(
        err.to_string(),
        "an SEV-SNP report is 1184 bytes, got 100; pass the raw report (or an Azure HCL report)"
    );
}

#[test]
fn the_caching_verifier_gives_the_same_answers() {
    use contrast_attestation::snp::SnpVerifier;
    let verifier = SnpVerifier::new(SnpTrustAnchor::amd());
    let report = data("trustee-milan-v2-report.bin");
    let endorsements = vcek_only(data("trustee-milan-v2-vcek.der"));
    for _ in 0..2 {
        // First from scratch, then from the cache.
        let verified = verifier.verify(&report, &endorsements, JUNE_2025).unwrap();
        assert_eq!(verified.report.as_bytes()[..], report[..]);
        // The time is checked again for every report, cached chain or not.
        let err = verifier
            .verify(&report, &endorsements, 1_924_992_000)
            .unwrap_err(); // 2031
        assert!(
            matches!(err, SnpVerifyError::CertificateValidity { .. }),
            "{err}"
        );
        // A tampered report still fails its signature.
        let mut tampered = report.clone();
        tampered[0x90] ^= 1;
        assert_eq!(
            verifier
                .verify(&tampered, &endorsements, JUNE_2025)
                .unwrap_err(),
            SnpVerifyError::ReportSignature(SigningKey::Vcek)
        );
        // Another chip's report with this VCEK: the cached hwID still refuses it.
        let mut other_chip = report.clone();
        other_chip[0x1A0] ^= 1;
        assert!(matches!(
            verifier
                .verify(&other_chip, &endorsements, JUNE_2025)
                .unwrap_err(),
            SnpVerifyError::ExtensionMismatch { field: "hwID", .. }
        ));
    }
}
