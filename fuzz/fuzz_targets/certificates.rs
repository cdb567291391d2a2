//! Certificates from untrusted evidence: a VCEK/VLEK or ASK offered with a real report,
//! and a PCK certificate's SGX extension.
#![no_main]

use contrast_attestation::snp::{SnpEndorsements, SnpTrustAnchor, verify_report};
use contrast_attestation::tdx::pck_platform;
use libfuzzer_sys::fuzz_target;

const REPORT: &[u8] = include_bytes!("../../crates/attestation/tests/data/snp/trustee-milan-v2-report.bin");

fuzz_target!(|data: &[u8]| {
    let anchor = SnpTrustAnchor::amd();
    let as_vek = SnpEndorsements { vek: Some(data.to_vec()), ..Default::default() };
    let _ = verify_report(REPORT, &as_vek, &anchor, 1_748_736_000);
    let as_ask_and_crl = SnpEndorsements {
        vek: Some(include_bytes!("../../crates/attestation/tests/data/snp/trustee-milan-v2-vcek.der").to_vec()),
        ask: Some(data.to_vec()),
        crl: Some(data.to_vec()),
        ..Default::default()
    };
    let _ = verify_report(REPORT, &as_ask_and_crl, &anchor, 1_748_736_000);
    let _ = pck_platform(data);
});
