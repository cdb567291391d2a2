//! AMD's CRL through the KDS client, against a KDS that serves the simulated vendor's
//! certificates and CRLs (no AMD-signed CRL can be made here; the verifier is the same
//! code, only the ARK differs): a current CRL is used and kept, a CRL that revokes the
//! VCEK or is past its next update is refused and not kept, and a kept CRL past its next
//! update is fetched again, never served.

#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use contrast_attestation::snp::{SnpProduct, SnpTrustAnchor};
use contrast_collateral::{CollateralError, DiskCache, Kds, RetryPolicy};
use contrast_simulator::snp::{SimulatedAmd, SnpReportSpec};
use contrast_testkit::TempDir;
use contrast_testkit::serve::Background;
use x509_parser::prelude::FromDer as _;

const T0: i64 = 1_800_000_000;
const HOUR: i64 = 3600;

#[derive(Clone)]
struct SimKds {
    vcek: Arc<Vec<u8>>,
    chain: Arc<String>,
    crl: Arc<Mutex<Option<Vec<u8>>>>,
    requests: Arc<Mutex<Vec<String>>>,
}

async fn serve(
    State(kds): State<SimKds>,
    Path((_product, leaf)): Path<(String, String)>,
) -> Response {
    kds.requests.lock().unwrap().push(leaf.clone());
    match leaf.as_str() {
        "cert_chain" => kds.chain.as_bytes().to_vec().into_response(),
        "crl" => match kds.crl.lock().unwrap().clone() {
            Some(crl) => crl.into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        _ => kds.vcek.to_vec().into_response(),
    }
}

fn pem(der: &[u8]) -> String {
    contrast_attestation::pem::encode("CERTIFICATE", der)
}

struct Setup {
    amd: SimulatedAmd,
    report: Vec<u8>,
    vcek_serial: Vec<u8>,
    anchor: SnpTrustAnchor,
    kds: SimKds,
    server: Background,
}

fn setup() -> Setup {
    let amd = SimulatedAmd::generate(&[SnpProduct::Milan]).unwrap();
    let signed = amd.report(&SnpReportSpec::new(SnpProduct::Milan)).unwrap();
    let (_, vcek) = x509_parser::certificate::X509Certificate::from_der(&signed.vcek_der).unwrap();
    let vcek_serial = vcek.raw_serial().to_vec();
    let kds = SimKds {
        vcek: Arc::new(signed.vcek_der.clone()),
        chain: Arc::new(format!("{}{}", pem(&signed.ask_der), pem(&signed.ark_der))),
        crl: Arc::new(Mutex::new(None)),
        requests: Arc::new(Mutex::new(Vec::new())),
    };
    let app = axum::Router::new()
        .route("/vcek/v1/{product}/{leaf}", axum::routing::get(serve))
        .with_state(kds.clone());
    Setup {
        anchor: amd.trust_anchor(),
        report: signed.report,
        vcek_serial,
        amd,
        kds,
        server: Background::serve(app),
    }
}

impl Setup {
    fn serve_crl(&self, revoked: &[&[u8]], this_update: i64, next_update: i64) {
        let crl = self
            .amd
            .crl(SnpProduct::Milan, revoked, this_update, next_update)
            .unwrap();
        *self.kds.crl.lock().unwrap() = Some(crl);
    }

    fn client(&self, cache: &TempDir) -> Kds {
        let retry = RetryPolicy {
            attempts: 1,
            backoff: Duration::from_millis(10),
            max_wait: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        };
        Kds::new(self.server.url(), retry, Some(DiskCache::new(cache.path()))).unwrap()
    }

    /// Why the client refuses the report at `now`.
    async fn refusal(&self, cache: &TempDir, now: i64) -> CollateralError {
        self.client(cache)
            .snp_endorsements(&self.report, &self.anchor, now)
            .await
            .unwrap_err()
    }

    fn crl_requests(&self) -> usize {
        self.kds
            .requests
            .lock()
            .unwrap()
            .iter()
            .filter(|l| *l == "crl")
            .count()
    }
}

#[tokio::test]
async fn a_current_crl_is_checked_used_and_kept() {
    let s = setup();
    let cache = TempDir::new("kds-crl");
    s.serve_crl(&[&[0x77]], T0 - HOUR, T0 + HOUR);
    let endorsements = s
        .client(&cache)
        .snp_endorsements(&s.report, &s.anchor, T0)
        .await
        .unwrap();
    assert!(endorsements.crl.is_some());
    assert!(cache.path().join("kds/crl/Milan.der").exists());
}

#[tokio::test]
async fn a_revoked_vcek_is_refused_and_nothing_is_kept() {
    let s = setup();
    let cache = TempDir::new("kds-crl");
    s.serve_crl(&[&s.vcek_serial], T0 - HOUR, T0 + HOUR);
    let err = s.refusal(&cache, T0).await;
    let text = contrast_platforms::error_chain(&err);
    assert!(matches!(err, CollateralError::Rejected { .. }), "{text}");
    assert!(text.contains("revoked"), "{text}");
    assert!(!cache.path().join("kds").exists());
}

#[tokio::test]
async fn a_crl_past_its_next_update_is_refused() {
    let s = setup();
    let cache = TempDir::new("kds-crl");
    s.serve_crl(&[], T0 - 2 * HOUR, T0 - HOUR);
    let err = s.refusal(&cache, T0).await;
    let text = contrast_platforms::error_chain(&err);
    assert!(text.contains("next update"), "{text}");
    assert!(!cache.path().join("kds").exists());
}

/// Time passes: the kept CRL is past its next update, so the client (one that remembers,
/// and a new one reading the disk) fetches a current one; with KDS gone, nothing is
/// accepted on the old CRL.
#[tokio::test]
async fn a_kept_crl_past_its_next_update_is_fetched_again_never_served() {
    let mut s = setup();
    let cache = TempDir::new("kds-crl");
    s.serve_crl(&[], T0 - HOUR, T0 + HOUR);
    let client = s.client(&cache);
    client
        .snp_endorsements(&s.report, &s.anchor, T0)
        .await
        .unwrap();
    assert_eq!(s.crl_requests(), 1);

    let later = T0 + 2 * HOUR;
    s.serve_crl(&[], T0 + HOUR, T0 + 24 * HOUR);
    client
        .snp_endorsements(&s.report, &s.anchor, later)
        .await
        .unwrap();
    assert_eq!(s.crl_requests(), 2, "the remembered CRL expired");

    s.serve_crl(&[], later, later + HOUR);
    let much_later = later + 30 * HOUR;
    s.server.stop();
    let err = s.refusal(&cache, much_later).await;
    assert!(matches!(err, CollateralError::GaveUp { .. }), "{err:?}");
}

#[tokio::test]
async fn no_crl_at_all_is_a_refusal_that_says_so() {
    let s = setup();
    let cache = TempDir::new("kds-crl");
    let err = s.refusal(&cache, T0).await;
    assert!(
        matches!(err, CollateralError::CrlUnavailable { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("accepted only with a current"));
}

/// The endorsements a host's certificate table carries: the VCEK, ASK and ARK, no CRL.
fn carried(s: &Setup) -> contrast_attestation::snp::SnpEndorsements {
    let signed = s
        .amd
        .report(&SnpReportSpec::new(SnpProduct::Milan))
        .unwrap();
    contrast_attestation::snp::SnpEndorsements {
        vek: Some(s.kds.vcek.to_vec()),
        ask: Some(signed.ask_der),
        ark: Some(signed.ark_der),
        crl: None,
    }
}

fn source(s: &Setup, cache: &TempDir) -> contrast_collateral::Collateral {
    contrast_collateral::Collateral::new(contrast_collateral::CollateralSettings {
        kds_url: s.server.url().to_owned(),
        cache: Some(DiskCache::new(cache.path())),
        retry: RetryPolicy {
            attempts: 1,
            backoff: Duration::from_millis(10),
            max_wait: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        },
        ..Default::default()
    })
    .unwrap()
}

/// A report whose host carried its chain but no CRL gets the line's CRL from KDS, checked
/// and kept: a second source (a restarted CLI) reads it from the disk with KDS gone.
#[test]
fn a_carried_chain_without_a_crl_is_completed_from_kds_and_kept() {
    let mut s = setup();
    let cache = TempDir::new("kds-crl");
    s.serve_crl(&[&[0x77]], T0 - HOUR, T0 + HOUR);
    let completed = source(&s, &cache)
        .complete_snp(&s.report, carried(&s), &s.anchor, T0)
        .unwrap();
    assert!(completed.crl.is_some());
    assert_eq!(completed.vek.as_deref(), Some(&s.kds.vcek[..]));
    assert_eq!(s.crl_requests(), 1);
    assert_eq!(
        s.kds.requests.lock().unwrap().len(),
        1,
        "only the CRL was asked for"
    );

    s.server.stop();
    let again = source(&s, &cache)
        .complete_snp(&s.report, carried(&s), &s.anchor, T0 + 60)
        .unwrap();
    assert_eq!(again.crl, completed.crl);
}

#[test]
fn a_fetched_crl_that_revokes_the_carried_vcek_is_refused_and_not_kept() {
    let s = setup();
    let cache = TempDir::new("kds-crl");
    s.serve_crl(&[&s.vcek_serial], T0 - HOUR, T0 + HOUR);
    let err = source(&s, &cache)
        .complete_snp(&s.report, carried(&s), &s.anchor, T0)
        .unwrap_err();
    let text = contrast_platforms::error_chain(&err);
    assert!(text.contains("revoked"), "{text}");
    assert!(!cache.path().join("kds").exists());
}

#[test]
fn a_carried_chain_and_no_crl_from_kds_is_a_refusal_that_says_so() {
    let s = setup();
    let cache = TempDir::new("kds-crl");
    let err = source(&s, &cache)
        .complete_snp(&s.report, carried(&s), &s.anchor, T0)
        .unwrap_err();
    assert!(
        matches!(err, CollateralError::CrlUnavailable { .. }),
        "{err:?}"
    );
}

/// A verifier calls the source from inside the handshake, on an async worker: the fetch
/// runs on the source's own thread, from a multi-thread runtime and a current-thread one.
#[test]
fn the_source_answers_from_inside_either_kind_of_runtime() {
    let s = setup();
    let cache = TempDir::new("kds-crl");
    s.serve_crl(&[], T0 - HOUR, T0 + HOUR);
    let source = Arc::new(source(&s, &cache));
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (src, report, anchor, with) = (
        source.clone(),
        s.report.clone(),
        s.anchor.clone(),
        carried(&s),
    );
    let got = multi
        .block_on(multi.spawn(async move { src.complete_snp(&report, with, &anchor, T0) }))
        .unwrap()
        .unwrap();
    assert!(got.crl.is_some());

    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // A new source: nothing remembered, the disk holds the CRL; the fetch path is the same.
    std::fs::remove_dir_all(cache.path().join("kds")).unwrap();
    let fresh = Arc::new(self::source(&s, &cache));
    let got = single
        .block_on(async { fresh.complete_snp(&s.report, carried(&s), &s.anchor, T0) })
        .unwrap();
    assert!(got.crl.is_some());
    assert_eq!(s.crl_requests(), 2);
}

#[test]
fn offline_the_carried_endorsements_are_returned_unchanged() {
    let s = setup();
    let cache = TempDir::new("kds-crl");
    let offline = contrast_collateral::Collateral::new(contrast_collateral::CollateralSettings {
        kds_url: s.server.url().to_owned(),
        offline: true,
        cache: Some(DiskCache::new(cache.path())),
        ..Default::default()
    })
    .unwrap();
    let got = offline
        .complete_snp(&s.report, carried(&s), &s.anchor, T0)
        .unwrap();
    assert!(got.crl.is_none());
    assert!(s.kds.requests.lock().unwrap().is_empty());
}

/// A long-running client asks for the CRL anew in the last quarter of the kept one's
/// window, while the kept one still serves; with KDS down it keeps serving it until it
/// runs out, and not a second longer.
#[tokio::test]
async fn a_kept_crl_is_refreshed_before_it_runs_out_and_serves_while_kds_is_down() {
    let mut s = setup();
    s.serve_crl(&[], T0 - HOUR, T0 + HOUR);
    let client = Kds::new(s.server.url(), quick_retry(), None).unwrap();
    client
        .snp_endorsements(&s.report, &s.anchor, T0)
        .await
        .unwrap();
    client
        .snp_endorsements(&s.report, &s.anchor, T0 + 20 * 60)
        .await
        .unwrap();
    assert_eq!(s.crl_requests(), 1, "fresh: served from memory");

    // The last quarter (from T0 + 30 min): asked anew, the new CRL kept.
    s.serve_crl(&[], T0 + 30 * 60, T0 + 4 * HOUR);
    client
        .snp_endorsements(&s.report, &s.anchor, T0 + 40 * 60)
        .await
        .unwrap();
    assert_eq!(s.crl_requests(), 2, "refreshed ahead of its next update");

    // The new CRL's last quarter starts at T0 + 3 h 7.5 min; KDS is down by then.
    s.server.stop();
    let got = client
        .snp_endorsements(&s.report, &s.anchor, T0 + 3 * HOUR + 30 * 60)
        .await
        .unwrap();
    assert!(got.crl.is_some(), "the kept CRL serves while KDS is down");
    let err = client
        .snp_endorsements(&s.report, &s.anchor, T0 + 4 * HOUR + 1)
        .await
        .unwrap_err();
    assert!(err.is_outage(), "{err:?}");
}

fn quick_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 1,
        backoff: Duration::from_millis(10),
        max_wait: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
    }
}
