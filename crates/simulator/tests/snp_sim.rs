//! Simulated SEV-SNP evidence verifies with the verifier used for real evidence, under the
//! simulator's root only, and is refused everywhere else.

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing test

use std::sync::OnceLock;

use contrast_attestation::snp::{
    SIGNED_LEN, SnpEndorsements, SnpExpectations, SnpProduct, SnpTrustAnchor, SnpVerifyError,
    check_snp_reference_values, suggested_reference_values, verify_report,
};
use contrast_simulator::{KeyStore, SimulatedAmd, SnpReportSpec};

const NOW: i64 = 1_780_272_000; // 2026-06-01

/// One vendor for the whole test binary: RSA-4096 key generation takes a while.
fn amd() -> &'static SimulatedAmd {
    static AMD: OnceLock<SimulatedAmd> = OnceLock::new();
    AMD.get_or_init(|| SimulatedAmd::generate(&[SnpProduct::Milan, SnpProduct::Turin]).unwrap())
}

fn endorsements(r: &contrast_simulator::SimulatedSnpReport) -> SnpEndorsements {
    SnpEndorsements {
        vek: Some(r.vcek_der.clone()),
        ask: Some(r.ask_der.clone()),
        ark: Some(r.ark_der.clone()),
        crl: None,
    }
}

#[test]
fn simulated_reports_verify_under_the_simulated_root_only() {
    for product in [SnpProduct::Milan, SnpProduct::Turin] {
        let mut spec = SnpReportSpec::new(product);
        spec.host_data = [0xab; 32];
        spec.report_data = [0xcd; 64];
        let r = amd().report(&spec).unwrap();
        let verified =
            verify_report(&r.report, &endorsements(&r), &amd().trust_anchor(), NOW).unwrap();
        assert!(verified.simulated);
        assert_eq!(verified.product, product);
        assert_eq!(verified.report.host_data(), [0xab; 32]);
        assert_eq!(verified.reported_tcb, spec.tcb);

        // AMD's real roots refuse it: the ARK is not AMD's.
        let err =
            verify_report(&r.report, &endorsements(&r), &SnpTrustAnchor::amd(), NOW).unwrap_err();
        assert_eq!(err, SnpVerifyError::ArkNotTrusted(product));
        // Also when the evidence names no ARK and relies on the anchor's ASK.
        let err = verify_report(
            &r.report,
            &SnpEndorsements {
                vek: Some(r.vcek_der.clone()),
                ..Default::default()
            },
            &SnpTrustAnchor::amd(),
            NOW,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                SnpVerifyError::CertificateName { .. }
                    | SnpVerifyError::CertificateSignature { .. }
            ),
            "{err}"
        );
    }
}

#[test]
fn every_report_version_verifies() {
    for version in [2, 3, 5] {
        let mut spec = SnpReportSpec::new(SnpProduct::Milan);
        spec.version = version;
        let r = amd().report(&spec).unwrap();
        let verified =
            verify_report(&r.report, &endorsements(&r), &amd().trust_anchor(), NOW).unwrap();
        assert_eq!(verified.report.version(), version);
    }
}

#[test]
fn flipping_any_signed_byte_is_refused() {
    let r = amd()
        .report(&SnpReportSpec::new(SnpProduct::Milan))
        .unwrap();
    let anchor = amd().trust_anchor();
    let e = endorsements(&r);
    for offset in 0..SIGNED_LEN {
        let mut tampered = r.report.clone();
        tampered[offset] ^= 0x80;
        assert!(
            verify_report(&tampered, &e, &anchor, NOW).is_err(),
            "byte {offset:#x}"
        );
    }
}

#[test]
fn the_crl_revokes_what_it_lists() {
    let r = amd()
        .report(&SnpReportSpec::new(SnpProduct::Milan))
        .unwrap();
    let anchor = amd().trust_anchor();
    let with_crl = |crl: Vec<u8>| SnpEndorsements {
        crl: Some(crl),
        ..endorsements(&r)
    };

    let clean = amd()
        .crl(SnpProduct::Milan, &[&[0x77]], NOW - 3600, NOW + 86_400)
        .unwrap();
    verify_report(&r.report, &with_crl(clean), &anchor, NOW).unwrap();

    // The VCEK has serial 0, the ASK serial 2 (AMD's VCEKs also have serial 0).
    let revoked = amd()
        .crl(SnpProduct::Milan, &[&[2]], NOW - 3600, NOW + 86_400)
        .unwrap();
    let err = verify_report(&r.report, &with_crl(revoked), &anchor, NOW).unwrap_err();
    assert!(matches!(err, SnpVerifyError::Revoked { .. }), "{err}");

    let stale = amd()
        .crl(SnpProduct::Milan, &[], NOW - 7200, NOW - 3600)
        .unwrap();
    let err = verify_report(&r.report, &with_crl(stale), &anchor, NOW).unwrap_err();
    assert!(err.to_string().contains("out of date"), "{err}");

    // A CRL signed by another product's ARK.
    let foreign = amd()
        .crl(SnpProduct::Turin, &[], NOW - 3600, NOW + 86_400)
        .unwrap();
    let err = verify_report(&r.report, &with_crl(foreign), &anchor, NOW).unwrap_err();
    assert!(matches!(err, SnpVerifyError::Crl(_)), "{err}");

    let mut garbled = amd()
        .crl(SnpProduct::Milan, &[], NOW - 3600, NOW + 86_400)
        .unwrap();
    let last = garbled.len() - 1;
    garbled[last] ^= 1;
    let err = verify_report(&r.report, &with_crl(garbled), &anchor, NOW).unwrap_err();
    assert!(matches!(err, SnpVerifyError::Crl(_)), "{err}");
}

#[test]
fn reference_values_accept_simulated_evidence_only_on_sim_snp() {
    let mut spec = SnpReportSpec::new(SnpProduct::Milan);
    spec.measurement = [0x42; 48];
    let r = amd().report(&spec).unwrap();
    let verified = verify_report(&r.report, &endorsements(&r), &amd().trust_anchor(), NOW).unwrap();
    let entry = suggested_reference_values(&verified);
    assert_eq!(entry.platform, "Sim-SNP");
    let expect = SnpExpectations {
        host_data: Some(vec![spec.host_data]),
        ..Default::default()
    };
    assert_eq!(
        check_snp_reference_values(&verified, std::slice::from_ref(&entry), &expect),
        Ok(0)
    );

    let mut real = entry;
    real.platform = "Metal-QEMU-SNP".into();
    let refusal = check_snp_reference_values(&verified, &[real], &expect).unwrap_err();
    assert!(
        refusal.all().any(|m| m.field == "trust anchor (Platform)"),
        "{refusal}"
    );
}

/// On the QEMU SEV-SNP platforms the runtime launches VMs with Contrast's ID block: a VM
/// launched without it (or with another one, or with an author key) is refused, naming
/// ID_KEY_DIGEST / AUTHOR_KEY_DIGEST; Sim-SNP and AKS do not use ID blocks. (Simulated
/// evidence is refused on real platforms anyway; the refusal lists every field.)
#[test]
fn snp_launch_without_the_runtimes_id_block_is_refused_on_qemu_snp_platforms() {
    let mut spec = SnpReportSpec::new(SnpProduct::Milan);
    spec.measurement = [0x42; 48];
    let blocks =
        contrast_attestation::snp::idblock::id_blocks(&spec.measurement, spec.policy).unwrap();
    let expect = SnpExpectations::default();
    let fields = |spec: &SnpReportSpec, platform: &str| -> Vec<String> {
        let r = amd().report(spec).unwrap();
        let verified =
            verify_report(&r.report, &endorsements(&r), &amd().trust_anchor(), NOW).unwrap();
        let mut entry = suggested_reference_values(&verified);
        entry.platform = platform.into();
        match check_snp_reference_values(&verified, &[entry], &expect) {
            Ok(_) => Vec::new(),
            Err(refusal) => refusal.all().map(|m| m.field.clone()).collect(),
        }
    };
    let id_fields = |fields: &[String]| -> Vec<String> {
        fields
            .iter()
            .filter(|f| f.ends_with("KEY_DIGEST"))
            .cloned()
            .collect()
    };
    for platform in ["Metal-QEMU-SNP", "K3s-QEMU-SNP", "Metal-QEMU-SNP-GPU"] {
        // No ID block.
        let refused = fields(&spec, platform);
        assert_eq!(id_fields(&refused), ["ID_KEY_DIGEST"], "{platform}");
        // Another launch digest's ID block.
        let other = contrast_attestation::snp::idblock::id_blocks(&[0x43; 48], spec.policy)
            .unwrap()
            .id_key_digest;
        let with_other = SnpReportSpec {
            id_key_digest: other,
            ..spec.clone()
        };
        assert_eq!(id_fields(&fields(&with_other, platform)), ["ID_KEY_DIGEST"]);
        // The runtime's ID block: only the (simulated) trust anchor is wrong.
        let with_ours = SnpReportSpec {
            id_key_digest: blocks.id_key_digest,
            ..spec.clone()
        };
        assert_eq!(
            fields(&with_ours, platform),
            ["trust anchor (Platform)"],
            "{platform}"
        );
        // Ours, but with an author key.
        let with_author = SnpReportSpec {
            author_key_digest: [0x77; 48],
            ..with_ours
        };
        assert_eq!(
            id_fields(&fields(&with_author, platform)),
            ["AUTHOR_KEY_DIGEST"]
        );
    }
    // Platforms without ID blocks do not ask for one.
    assert_eq!(fields(&spec, "Sim-SNP"), Vec::<String>::new());
    assert!(id_fields(&fields(&spec, "AKS-CLH-SNP")).is_empty());
}

#[test]
fn roots_survive_a_save_and_load() {
    let dir = std::env::temp_dir().join(format!("contrast-sim-test-{}", std::process::id()));
    let store = KeyStore::open(&dir).unwrap();
    amd().save(&store).unwrap();
    let mode = std::fs::metadata(dir.join("snp-milan-ark.p8")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let loaded = SimulatedAmd::load(&store, &[SnpProduct::Milan]).unwrap();
    // A report from the loaded vendor verifies under the original's anchor: same keys.
    let r = loaded
        .report(&SnpReportSpec::new(SnpProduct::Milan))
        .unwrap();
    verify_report(&r.report, &endorsements(&r), &amd().trust_anchor(), NOW).unwrap();
    // A missing or broken key file is a clear error.
    std::fs::write(dir.join("snp-turin-ark.p8"), b"junk").unwrap();
    let err = SimulatedAmd::load(&store, &[SnpProduct::Turin]).unwrap_err();
    assert!(
        err.to_string()
            .contains("snp-turin-ark.p8: not an RSA PKCS#8 key"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_simulator_directory_gives_the_same_roots_to_every_process() {
    let dir = std::env::temp_dir().join(format!("contrast-sim-dir-{}", std::process::id()));
    let first = contrast_simulator::Simulator::open(&dir).unwrap();
    let second = contrast_simulator::Simulator::open(&dir).unwrap();
    let r = second
        .amd
        .report(&SnpReportSpec::new(SnpProduct::Genoa))
        .unwrap();
    verify_report(&r.report, &endorsements(&r), &first.amd.trust_anchor(), NOW).unwrap();
    let quote = second.intel.quote(&Default::default()).unwrap();
    contrast_attestation::tdx::verify_quote(&quote, &first.intel.trust_anchor(), None, NOW)
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
