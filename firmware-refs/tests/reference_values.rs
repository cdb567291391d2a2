//! The embedded reference values: the file decodes, matches what the library computes,
//! accepts the simulator's evidence, and an image directory gives the QEMU platforms.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{DEBIAN_OVMF, data, debian_ovmf, minimal_pe, pattern, python_tool, run};
use contrast_attestation::snp::{
    SnpEndorsements, SnpExpectations, SnpProduct, check_snp_reference_values, verify_report,
};
use contrast_attestation::tdx::{TdxExpectations, check_tdx_reference_values, verify_quote};
use contrast_firmware_refs::reference_values::{
    ImageArtifacts, encode_embedded, image_entries, simulated_entries,
};
use contrast_firmware_refs::{MrtdOrder, Ovmf, mrtd};
use contrast_manifest::{
    EmbeddedReferenceValues, HexString, Manifest, PolicyEntry, ROLE_COORDINATOR,
};
use contrast_platforms::Platform;
use contrast_reference_values::EMBEDDED_REFERENCE_VALUES;
use contrast_simulator::{
    SimulatedAmd, SimulatedIntel, SimulatedPlatform, SnpReportSpec, TdxQuoteSpec,
};

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn embedded_file_decodes_and_holds_the_simulated_entries() {
    let embedded = EmbeddedReferenceValues::decode(EMBEDDED_REFERENCE_VALUES.as_bytes()).unwrap();
    for (handler, values) in simulated_entries() {
        let (_, found) = embedded
            .0
            .iter()
            .find(|(h, _)| *h == handler)
            .unwrap_or_else(|| {
                panic!(
                    "assets/reference-values.json lacks {handler}: regenerate it with \
                     `firmware-refs reference-values --out crates/reference-values/assets/reference-values.json`"
                )
            });
        assert_eq!(found.encode(), values.encode(), "{handler}");
    }
    // Without image artifacts the file is exactly the simulated entries.
    if embedded.0.len() == 2 {
        assert_eq!(
            encode_embedded(&simulated_entries()),
            EMBEDDED_REFERENCE_VALUES.as_bytes()
        );
    }
}

#[test]
fn simulated_evidence_validates_against_the_simulated_entries() {
    let embedded = EmbeddedReferenceValues::decode(EMBEDDED_REFERENCE_VALUES.as_bytes()).unwrap();
    let values = embedded
        .for_platforms(&[Platform::SimSnp, Platform::SimTdx])
        .unwrap();

    let amd = SimulatedAmd::generate(&[SnpProduct::Milan]).unwrap();
    let report = amd.report(&SnpReportSpec::new(SnpProduct::Milan)).unwrap();
    let endorsements = SnpEndorsements {
        vek: Some(report.vcek_der),
        ask: Some(report.ask_der),
        ark: Some(report.ark_der),
        crl: None,
    };
    let verified =
        verify_report(&report.report, &endorsements, &amd.trust_anchor(), now()).unwrap();
    check_snp_reference_values(&verified, &values.snp, &SnpExpectations::default()).unwrap();

    let intel = SimulatedIntel::generate(SimulatedPlatform::default()).unwrap();
    let quote = intel.quote(&TdxQuoteSpec::default()).unwrap();
    let verified = verify_quote(&quote, &intel.trust_anchor(), None, now()).unwrap();
    check_tdx_reference_values(&verified, &values.tdx, &TdxExpectations::default()).unwrap();
    // A different MRTD is refused: the check is not vacuous.
    let other = intel
        .quote(&TdxQuoteSpec {
            mr_td: [1; 48],
            ..Default::default()
        })
        .unwrap();
    let verified = verify_quote(&other, &intel.trust_anchor(), None, now()).unwrap();
    assert!(
        check_tdx_reference_values(&verified, &values.tdx, &TdxExpectations::default()).is_err()
    );

    // A manifest for the simulator with these values is complete: nothing to fill in.
    let mut manifest = Manifest::default();
    manifest.policies.insert(
        HexString::from_bytes(&[0xab; 32]),
        PolicyEntry {
            sans: Some(vec!["coordinator".into()]),
            role: ROLE_COORDINATOR.into(),
            ..Default::default()
        },
    );
    manifest.reference_values = values;
    manifest.workload_owner_key_digests = Some(vec![HexString::from_bytes(&[1; 32])]);
    manifest.seedshare_owner_pub_keys = Some(vec![]);
    manifest.validate().unwrap();
}

#[test]
fn image_directory_gives_the_qemu_platforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = |n: &str| dir.path().join(n);
    std::fs::copy(data("ovmf_AmdSev_suffix.bin"), path("ovmf-snp.fd")).unwrap();
    std::fs::copy(debian_ovmf(DEBIAN_OVMF), path("ovmf-tdx.fd")).unwrap();
    std::fs::write(path("kernel"), minimal_pe()).unwrap();
    std::fs::write(path("initrd"), pattern(100_000, 3)).unwrap();
    std::fs::write(path("cmdline"), "console=hvc0 root=/dev/vda1\n").unwrap();

    let entries = image_entries(&ImageArtifacts {
        dir: dir.path().to_owned(),
    })
    .unwrap();
    let platforms: Vec<Platform> = entries.iter().map(|(h, _)| h.platform()).collect();
    assert_eq!(
        platforms,
        [
            Platform::MetalQemuSnp,
            Platform::K3sQemuSnp,
            Platform::MetalQemuTdx,
            Platform::K3sQemuTdx,
            Platform::Rke2QemuTdx
        ]
    );

    // The SNP digests are sev-snp-measure's for 1 vCPU of each product.
    let tool = python_tool("sev-snp-measure");
    let snp = &entries[0].1.snp;
    for (entry, vcpu_type) in snp.iter().zip(["EPYC-Milan", "EPYC-Genoa"]) {
        let expected = run(Command::new(&tool)
            .args([
                "--mode",
                "snp",
                "--vcpus",
                "1",
                "--vcpu-type",
                vcpu_type,
                "--ovmf",
            ])
            .arg(path("ovmf-snp.fd"))
            .arg("--kernel")
            .arg(path("kernel"))
            .arg("--initrd")
            .arg(path("initrd"))
            .args(["--append", "console=hvc0 root=/dev/vda1"]));
        assert_eq!(
            entry.trusted_measurement.as_str(),
            expected.trim(),
            "{vcpu_type}"
        );
    }
    let tdx = &entries[2].1.tdx[0];
    let ovmf = Ovmf::read(&path("ovmf-tdx.fd")).unwrap();
    assert_eq!(
        tdx.mr_td.as_str(),
        hex::encode(mrtd(&ovmf, MrtdOrder::TwoPass).unwrap())
    );

    // The file decodes; a manifest for a real platform only lacks the hardware values.
    let bytes = encode_embedded(&entries);
    let embedded = EmbeddedReferenceValues::decode(&bytes).unwrap();
    let mut manifest = Manifest::default();
    manifest.policies.insert(
        HexString::from_bytes(&[0xab; 32]),
        PolicyEntry {
            role: ROLE_COORDINATOR.into(),
            ..Default::default()
        },
    );
    manifest.reference_values = embedded
        .for_platforms(&[Platform::MetalQemuSnp, Platform::MetalQemuTdx])
        .unwrap();
    manifest.workload_owner_key_digests = Some(vec![]);
    manifest.seedshare_owner_pub_keys = Some(vec![]);
    let errors = manifest.validate().unwrap_err();
    assert!(errors.only_expected_missing(), "{errors}");

    // Handlers differ by platform and change with any artifact.
    std::fs::write(path("initrd"), pattern(100_000, 4)).unwrap();
    let changed = image_entries(&ImageArtifacts {
        dir: dir.path().to_owned(),
    })
    .unwrap();
    for ((a, _), (b, _)) in entries.iter().zip(&changed) {
        assert_eq!(a.platform(), b.platform());
        assert_ne!(a.runtime_id(), b.runtime_id());
    }
}
