//! The PCS client against a local server that plays Intel's PCS with the real collateral
//! of a real TDX quote, and with faults: a 500, a tampered TCB info, a missing issuer
//! chain, collateral past its nextUpdate. Every fault is a named refusal, nothing refused
//! is cached, and a cached bundle that no longer verifies is not served.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use contrast_attestation::tdx::{TdxTrustAnchor, verify_quote};
use contrast_collateral::{CollateralError, DiskCache, Pcs, RetryPolicy};
use contrast_testkit::TempDir;
use contrast_testkit::pcs::{AFTER_NEXT_UPDATE, Fault, LocalPcs, NOW, QUOTE};

fn quick() -> RetryPolicy {
    RetryPolicy {
        attempts: 2,
        backoff: Duration::from_millis(10),
        max_wait: Duration::from_secs(2),
        timeout: Duration::from_secs(2),
    }
}

fn pcs(url: &str, dir: &TempDir) -> Pcs {
    Pcs::new(url, quick(), Some(DiskCache::new(dir.path()))).unwrap()
}

#[tokio::test]
async fn the_collateral_is_fetched_verified_cached_and_then_used_without_pcs() {
    let dir = TempDir::new("pcs-cache");
    let mut server = LocalPcs::start(Fault::None);
    let collateral = pcs(server.url(), &dir)
        .tdx_collateral(QUOTE, &TdxTrustAnchor::intel(), NOW)
        .await
        .unwrap();
    let verified = verify_quote(QUOTE, &TdxTrustAnchor::intel(), Some(&collateral), NOW).unwrap();
    assert_eq!(verified.tcb.unwrap().status, "UpToDate");
    assert_eq!(
        server.requests(),
        4,
        "PCK CRL, TCB info, QE identity, root CA CRL"
    );
    assert_eq!(dir.files().len(), 1);

    server.stop();
    pcs(server.url(), &dir)
        .tdx_collateral(QUOTE, &TdxTrustAnchor::intel(), NOW)
        .await
        .unwrap();
}

/// Collateral past its nextUpdate is not served from the cache, and a PCS that still
/// sends it is refused: an expired TCB info never evaluates a quote.
#[tokio::test]
async fn expired_collateral_is_neither_served_from_the_cache_nor_accepted() {
    let dir = TempDir::new("pcs-cache");
    let mut server = LocalPcs::start(Fault::None);
    pcs(server.url(), &dir)
        .tdx_collateral(QUOTE, &TdxTrustAnchor::intel(), NOW)
        .await
        .unwrap();
    let err = pcs(server.url(), &dir)
        .tdx_collateral(QUOTE, &TdxTrustAnchor::intel(), AFTER_NEXT_UPDATE)
        .await
        .unwrap_err();
    assert!(matches!(err, CollateralError::Rejected { .. }), "{err:?}");
    server.stop();
    let err = pcs(server.url(), &dir)
        .tdx_collateral(QUOTE, &TdxTrustAnchor::intel(), AFTER_NEXT_UPDATE)
        .await
        .unwrap_err();
    assert!(matches!(err, CollateralError::GaveUp { .. }), "{err:?}");
}

#[tokio::test]
async fn faults_are_named_refusals_and_nothing_is_cached() {
    for (fault, expected) in [
        (Fault::ServerError, "answered HTTP 500"),
        (Fault::TamperedTcbInfo, "does not verify"),
        (Fault::NoIssuerChain, "issuer chain"),
        (Fault::ForeignIssuerChain, "does not verify"),
    ] {
        let dir = TempDir::new("pcs-cache");
        let server = LocalPcs::start(fault);
        let err = pcs(server.url(), &dir)
            .tdx_collateral(QUOTE, &TdxTrustAnchor::intel(), NOW)
            .await
            .unwrap_err();
        let text = contrast_platforms::error_chain(&err);
        assert!(text.contains(expected), "{fault:?}: {text}");
        assert!(text.contains("/certification/v4/"), "{fault:?}: {text}");
        assert_eq!(dir.files().len(), 0, "{fault:?}");
    }
}

/// A long-running verifier (the Coordinator keeps no disk cache) asks PCS once per
/// platform: later quotes are answered from memory until the collateral's earliest
/// next update, and past it PCS is asked again, never the old bundle served.
#[tokio::test]
async fn memory_serves_until_the_next_update_and_not_after() {
    let mut server = LocalPcs::start(Fault::None);
    let pcs = Pcs::new(server.url(), quick(), None).unwrap();
    pcs.tdx_collateral(QUOTE, &TdxTrustAnchor::intel(), NOW)
        .await
        .unwrap();
    assert_eq!(server.requests(), 4);
    assert!(pcs.remembered(QUOTE, NOW + 3600).is_some());

    server.stop();
    let remembered = pcs
        .tdx_collateral(QUOTE, &TdxTrustAnchor::intel(), NOW + 3600)
        .await
        .unwrap();
    let verified = verify_quote(
        QUOTE,
        &TdxTrustAnchor::intel(),
        Some(&remembered),
        NOW + 3600,
    )
    .unwrap();
    assert_eq!(verified.tcb.unwrap().status, "UpToDate");

    assert!(pcs.remembered(QUOTE, AFTER_NEXT_UPDATE).is_none());
    let err = pcs
        .tdx_collateral(QUOTE, &TdxTrustAnchor::intel(), AFTER_NEXT_UPDATE)
        .await
        .unwrap_err();
    assert!(matches!(err, CollateralError::GaveUp { .. }), "{err:?}");
}

/// In the last quarter of the kept collateral's window PCS is asked anew; while it is
/// down the kept collateral serves, until it runs out.
#[tokio::test]
async fn kept_collateral_is_refreshed_before_it_runs_out_and_serves_while_pcs_is_down() {
    // The vector's window: 2025-06-19T10:32:27Z to 2025-07-19T10:00:35Z.
    const LAST_QUARTER: i64 = 1_752_537_600; // 2025-07-15
    let mut server = LocalPcs::start(Fault::None);
    let pcs = Pcs::new(server.url(), quick(), None).unwrap();
    let anchor = TdxTrustAnchor::intel();
    pcs.tdx_collateral(QUOTE, &anchor, NOW).await.unwrap();
    assert_eq!(server.requests(), 4);
    assert!(
        pcs.remembered(QUOTE, LAST_QUARTER).is_none(),
        "stale: not served as fresh"
    );
    pcs.tdx_collateral(QUOTE, &anchor, LAST_QUARTER)
        .await
        .unwrap();
    assert_eq!(server.requests(), 8, "asked anew in the last quarter");

    server.stop();
    let kept = pcs
        .tdx_collateral(QUOTE, &anchor, LAST_QUARTER)
        .await
        .unwrap();
    let verified = verify_quote(QUOTE, &anchor, Some(&kept), LAST_QUARTER).unwrap();
    assert_eq!(verified.tcb.unwrap().status, "UpToDate");
}
