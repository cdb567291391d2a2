//! Evidence verification beside its floor: one raw ECDSA P-384 verification (the report
//! signature) measured in the same run. Report the ratio anchor time / verification time.
//!
//! `cargo bench -p contrast-attestation --bench verify`

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing benchmark

use std::hint::black_box;

use aws_lc_rs::signature::{ECDSA_P384_SHA384_FIXED, UnparsedPublicKey};
use contrast_attestation::snp::{
    SnpEndorsements, SnpReport, SnpTrustAnchor, SnpVerifier, verify_report,
};
use contrast_attestation::tdx::{TdxTrustAnchor, TdxVerifier, verify_quote};
use criterion::{Criterion, criterion_group, criterion_main};
use x509_parser::prelude::{FromDer, X509Certificate};

const REPORT: &[u8] = include_bytes!("../tests/data/snp/trustee-milan-v2-report.bin");
const VCEK: &[u8] = include_bytes!("../tests/data/snp/trustee-milan-v2-vcek.der");
const QUOTE: &[u8] = include_bytes!("../tests/data/tdx/dcapqvl-quote-v4.dat");
const NOW: i64 = 1_750_809_600;

fn verification(c: &mut Criterion) {
    let (_, vcek) = X509Certificate::from_der(VCEK).unwrap();
    let point = vcek.public_key().subject_public_key.data.to_vec();
    let report = SnpReport::from_bytes(REPORT).unwrap();
    let signature = report.signature_fixed().unwrap();
    let key = UnparsedPublicKey::new(&ECDSA_P384_SHA384_FIXED, point);
    let endorsements = SnpEndorsements {
        vek: Some(VCEK.to_vec()),
        ..Default::default()
    };
    let verifier = SnpVerifier::new(SnpTrustAnchor::amd());
    verifier.verify(REPORT, &endorsements, NOW).unwrap();
    let amd = SnpTrustAnchor::amd();
    let intel = TdxTrustAnchor::intel();
    let tdx_verifier = TdxVerifier::new(TdxTrustAnchor::intel());
    tdx_verifier.verify(QUOTE, None, NOW).unwrap();

    let mut group = c.benchmark_group("verify");
    group.bench_function("anchor: raw ECDSA P-384 verify", |b| {
        b.iter(|| {
            key.verify(black_box(report.signed_bytes()), black_box(&signature))
                .unwrap()
        })
    });
    group.bench_function("SNP report, chain cached", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(REPORT), &endorsements, NOW)
                .unwrap()
        })
    });
    group.bench_function("SNP report, chain verified", |b| {
        b.iter(|| verify_report(black_box(REPORT), &endorsements, &amd, NOW).unwrap())
    });
    group.bench_function("TDX quote, PCK chain cached", |b| {
        b.iter(|| tdx_verifier.verify(black_box(QUOTE), None, NOW).unwrap())
    });
    group.bench_function("TDX quote, PCK chain verified", |b| {
        b.iter(|| verify_quote(black_box(QUOTE), &intel, None, NOW).unwrap())
    });
    group.finish();
}

criterion_group!(benches, verification);
criterion_main!(benches);
