//! SNP verification with collateral from KDS, beside the offline verifier in the same run:
//! - `offline`: `verify_report` with the certificates at hand (the anchor);
//! - `warm`: the client's lookup (memory, as in a long-running verifier) and then the same
//!   verification: the goal is ≥ 90 % of `offline`'s rate;
//! - `warm_source`: the same through `Collateral`, the blocking seam the verifiers call
//!   (a hop to its runtime thread and back per report);
//! - `cold`: a new client with an empty cache against a local KDS on loopback (three HTTP
//!   requests: VCEK, chain, CRL; and the check), the latency of a first verification.
//!
//! `cargo bench -p contrast-collateral --bench warm`

#![allow(clippy::unwrap_used)] // a failing unwrap is a failing benchmark

use std::hint::black_box;

use contrast_attestation::snp::SnpEndorsements;
use contrast_attestation::snp::{SnpTrustAnchor, verify_report};
use contrast_collateral::{Collateral, CollateralSettings, CrlPolicy, Kds, RetryPolicy};
use contrast_testkit::kds::{Fault, LocalKds, NOW, REPORT};
use criterion::{Criterion, criterion_group, criterion_main};

fn warm_and_cold(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = LocalKds::start(Fault::None);
    let anchor = SnpTrustAnchor::amd();
    // The local KDS has no AMD-signed CRL to serve (none can be made here).
    let client = || {
        Kds::new(server.url(), RetryPolicy::default(), None)
            .unwrap()
            .with_crl_policy(CrlPolicy::IfServed)
    };
    let kds = client();
    let endorsements = runtime
        .block_on(kds.snp_endorsements(REPORT, &anchor, NOW))
        .unwrap();

    let mut group = c.benchmark_group("snp_verify");
    group.bench_function("offline", |b| {
        b.iter(|| verify_report(black_box(REPORT), &endorsements, &anchor, NOW).unwrap());
    });
    group.bench_function("warm", |b| {
        b.iter(|| {
            let got = runtime
                .block_on(kds.snp_endorsements(black_box(REPORT), &anchor, NOW))
                .unwrap();
            verify_report(REPORT, &got, &anchor, NOW).unwrap()
        });
    });
    let source = Collateral::new(CollateralSettings {
        kds_url: server.url().to_owned(),
        crl: CrlPolicy::IfServed,
        ..Default::default()
    })
    .unwrap();
    source
        .complete_snp(REPORT, SnpEndorsements::default(), &anchor, NOW)
        .unwrap();
    group.bench_function("warm_source", |b| {
        b.iter(|| {
            let got = source
                .complete_snp(black_box(REPORT), SnpEndorsements::default(), &anchor, NOW)
                .unwrap();
            verify_report(REPORT, &got, &anchor, NOW).unwrap()
        });
    });
    group.bench_function("cold", |b| {
        b.iter(|| {
            let fresh = client();
            let got = runtime
                .block_on(fresh.snp_endorsements(black_box(REPORT), &anchor, NOW))
                .unwrap();
            verify_report(REPORT, &got, &anchor, NOW).unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, warm_and_cold);
criterion_main!(benches);
