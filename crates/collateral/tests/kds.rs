//! The KDS client against a local server that plays AMD's KDS with real vectors (a
//! Milan report, its chip's VCEK, Milan's ASK and ARK) and with the faults a real service
//! shows: 429 with Retry-After, 500, a hang, a truncated body, certificates that do not
//! belong. Every fault is a named refusal or a retry, never an acceptance, and nothing
//! refused is cached.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use contrast_attestation::snp::{SnpTrustAnchor, verify_report};
use contrast_collateral::{CollateralError, CrlPolicy, DiskCache, Kds, RetryPolicy};
use contrast_testkit::TempDir;
use contrast_testkit::kds::{Fault, LocalKds, NOW, OTHER_VCEK, REPORT, VCEK};

const VLEK_REPORT: &[u8] =
    include_bytes!("../../attestation/tests/data/snp/trustee-milan-v3-vlek-report.bin");

fn quick() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        backoff: Duration::from_millis(10),
        max_wait: Duration::from_secs(2),
        timeout: Duration::from_millis(500),
    }
}

/// A client for the local KDS, which has no AMD-signed CRL to serve (none can be made
/// here): revocation is checked in `kds_crl.rs`, against the simulated vendor.
fn kds(url: &str, cache: &DiskCache) -> Kds {
    Kds::new(url, quick(), Some(cache.clone()))
        .unwrap()
        .with_crl_policy(CrlPolicy::IfServed)
}

#[tokio::test]
async fn the_vcek_and_chain_are_fetched_verified_cached_and_then_used_without_kds() {
    let dir = TempDir::new("kds-cache");
    let cache = DiskCache::new(dir.path());
    let mut server = LocalKds::start(Fault::None);
    let endorsements = kds(server.url(), &cache)
        .snp_endorsements(REPORT, &SnpTrustAnchor::amd(), NOW)
        .await
        .unwrap();
    assert_eq!(endorsements.vek.as_deref(), Some(VCEK));
    verify_report(REPORT, &endorsements, &SnpTrustAnchor::amd(), NOW).unwrap();
    assert_eq!(server.requests(), 3, "the VCEK, the chain, the CRL (404)");
    assert_eq!(dir.files().len(), 2);

    // KDS gone: a new client (a second run of the CLI) is served by the cache.
    server.stop();
    let again = kds(server.url(), &cache)
        .snp_endorsements(REPORT, &SnpTrustAnchor::amd(), NOW)
        .await
        .unwrap();
    assert_eq!(again.vek.as_deref(), Some(VCEK));
    assert_eq!(server.requests(), 3);
}

/// By default the CRL is required: a KDS that serves none gets a refusal that names it.
#[tokio::test]
async fn without_a_crl_a_report_is_refused_unless_that_is_chosen() {
    let server = LocalKds::start(Fault::None);
    let err = Kds::new(server.url(), quick(), None)
        .unwrap()
        .snp_endorsements(REPORT, &SnpTrustAnchor::amd(), NOW)
        .await
        .unwrap_err();
    let text = contrast_platforms::error_chain(&err);
    assert!(
        text.contains("/vcek/v1/Milan/crl answered HTTP 404"),
        "{text}"
    );
}

#[tokio::test]
async fn a_throttling_kds_is_asked_again_after_its_retry_after() {
    let dir = TempDir::new("kds-cache");
    let server = LocalKds::start(Fault::TooMany(1));
    let started = std::time::Instant::now();
    kds(server.url(), &DiskCache::new(dir.path()))
        .snp_endorsements(REPORT, &SnpTrustAnchor::amd(), NOW)
        .await
        .unwrap();
    assert_eq!(
        server.requests(),
        4,
        "429, then the VCEK, the chain, the CRL"
    );
    // The backoff is 10 ms: only Retry-After makes it wait a second.
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_failing_kds_ends_in_an_error_naming_the_url_and_status() {
    let dir = TempDir::new("kds-cache");
    let server = LocalKds::start(Fault::ServerError);
    let err = kds(server.url(), &DiskCache::new(dir.path()))
        .snp_endorsements(REPORT, &SnpTrustAnchor::amd(), NOW)
        .await
        .unwrap_err();
    let CollateralError::GaveUp {
        url,
        attempts,
        last,
    } = &err
    else {
        panic!("{err:?}");
    };
    assert!(url.contains("/vcek/v1/Milan/"), "{url}");
    assert_eq!(*attempts, 3);
    assert!(
        matches!(**last, CollateralError::Status { status: 500, .. }),
        "{last:?}"
    );
    assert_eq!(server.requests(), 3);
    assert_eq!(dir.files().len(), 0);
    let text = contrast_platforms::error_chain(&err);
    assert!(text.contains("answered HTTP 500"), "{text}");
}

#[tokio::test]
async fn a_hanging_kds_times_out() {
    let dir = TempDir::new("kds-cache");
    let server = LocalKds::start(Fault::Hang);
    let err = kds(server.url(), &DiskCache::new(dir.path()))
        .snp_endorsements(REPORT, &SnpTrustAnchor::amd(), NOW)
        .await
        .unwrap_err();
    let text = contrast_platforms::error_chain(&err);
    assert!(text.contains("timed out"), "{text}");
    assert_eq!(dir.files().len(), 0);
}

#[tokio::test]
async fn answers_that_do_not_verify_the_report_are_refused_and_not_cached() {
    for fault in [Fault::Truncated, Fault::OtherChip, Fault::WrongChain] {
        let dir = TempDir::new("kds-cache");
        let server = LocalKds::start(fault);
        let err = kds(server.url(), &DiskCache::new(dir.path()))
            .snp_endorsements(REPORT, &SnpTrustAnchor::amd(), NOW)
            .await
            .unwrap_err();
        assert!(
            matches!(err, CollateralError::Rejected { .. }),
            "{fault:?}: {err:?}"
        );
        assert_eq!(dir.files().len(), 0, "{fault:?}");
    }
}

/// The cache is not trusted: an entry that does not verify the report (a disk an attacker
/// wrote to) is ignored and replaced by KDS's answer.
#[tokio::test]
async fn a_cache_entry_that_does_not_verify_is_fetched_again() {
    let dir = TempDir::new("kds-cache");
    let cache = DiskCache::new(dir.path());
    let server = LocalKds::start(Fault::None);
    kds(server.url(), &cache)
        .snp_endorsements(REPORT, &SnpTrustAnchor::amd(), NOW)
        .await
        .unwrap();
    let vcek_file = dir
        .files()
        .into_iter()
        .find(|p| p.extension().is_some_and(|e| e == "der"))
        .unwrap();
    std::fs::write(&vcek_file, OTHER_VCEK).unwrap();
    let endorsements = kds(server.url(), &cache)
        .snp_endorsements(REPORT, &SnpTrustAnchor::amd(), NOW)
        .await
        .unwrap();
    assert_eq!(endorsements.vek.as_deref(), Some(VCEK));
    assert_eq!(server.requests(), 6);
    assert_eq!(std::fs::read(&vcek_file).unwrap(), VCEK);
}

#[tokio::test]
async fn a_vlek_report_is_not_sent_to_kds() {
    let dir = TempDir::new("kds-cache");
    let server = LocalKds::start(Fault::None);
    let err = kds(server.url(), &DiskCache::new(dir.path()))
        .snp_endorsements(VLEK_REPORT, &SnpTrustAnchor::amd(), NOW)
        .await
        .unwrap_err();
    assert!(matches!(err, CollateralError::VlekNotFetchable), "{err:?}");
    assert!(err.to_string().contains("the host must hand it over"));
    assert_eq!(server.requests(), 0);
}

/// One client (the Coordinator's) asks KDS once per chip and TCB, even without a disk.
#[tokio::test]
async fn a_long_running_client_remembers_what_verified() {
    let server = LocalKds::start(Fault::None);
    let kds = Kds::new(server.url(), quick(), None)
        .unwrap()
        .with_crl_policy(CrlPolicy::IfServed);
    for _ in 0..3 {
        kds.snp_endorsements(REPORT, &SnpTrustAnchor::amd(), NOW)
            .await
            .unwrap();
    }
    assert_eq!(server.requests(), 3);
}

/// During a KDS outage a source fails every verification at once, naming the outage,
/// instead of waiting out the retries each time; after the pause it asks again.
#[test]
fn a_source_leaves_a_failing_kds_alone_for_a_pause() {
    let server = LocalKds::start(Fault::ServerError);
    let settings = |pause| contrast_collateral::CollateralSettings {
        kds_url: server.url().to_owned(),
        crl: CrlPolicy::IfServed,
        retry: quick(),
        outage_pause: pause,
        ..Default::default()
    };
    let source = contrast_collateral::Collateral::new(settings(Duration::from_secs(3600))).unwrap();
    let complete = |source: &contrast_collateral::Collateral| {
        source.complete_snp(REPORT, Default::default(), &SnpTrustAnchor::amd(), NOW)
    };
    let first = complete(&source).unwrap_err();
    assert!(first.is_outage(), "{first:?}");
    let asked = server.requests();
    let second = complete(&source).unwrap_err();
    assert!(
        matches!(
            second,
            CollateralError::RecentlyFailed { service: "KDS", .. }
        ),
        "{second:?}"
    );
    assert!(second.to_string().contains("500"), "{second}");
    assert_eq!(server.requests(), asked, "not asked during the pause");

    let unpaused = contrast_collateral::Collateral::new(settings(Duration::ZERO)).unwrap();
    complete(&unpaused).unwrap_err();
    let before = server.requests();
    complete(&unpaused).unwrap_err();
    assert!(server.requests() > before, "asked again after the pause");
}

/// A VLEK the host handed over without its chain: the ASVK and ARK come from KDS's VLEK
/// path (KDS serves the chain, never the VLEK), and the report verifies through them.
#[test]
fn a_carried_vlek_gets_its_asvk_chain_from_kds() {
    const REPORT: &[u8] =
        include_bytes!("../../attestation/tests/data/snp/trustee-milan-v3-vlek-report.bin");
    const VLEK: &[u8] =
        include_bytes!("../../attestation/tests/data/snp/trustee-milan-v3-vlek.der");
    let server = LocalKds::start(Fault::None);
    let source = contrast_collateral::Collateral::new(contrast_collateral::CollateralSettings {
        kds_url: server.url().to_owned(),
        // The local KDS has no AMD-signed CRL to serve.
        crl: CrlPolicy::IfServed,
        retry: quick(),
        ..Default::default()
    })
    .unwrap();
    let carried = contrast_attestation::snp::SnpEndorsements {
        vek: Some(VLEK.to_vec()),
        ..Default::default()
    };
    let got = source
        .complete_snp(REPORT, carried, &SnpTrustAnchor::amd(), NOW)
        .unwrap();
    assert!(got.ask.is_some() && got.ark.is_some());
    let verified = verify_report(REPORT, &got, &SnpTrustAnchor::amd(), NOW).unwrap();
    assert_eq!(
        verified.signing_key,
        contrast_attestation::snp::SigningKey::Vlek
    );
}
