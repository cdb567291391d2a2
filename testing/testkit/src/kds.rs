//! A local AMD KDS for tests: real vectors (a Milan report, its chip's VCEK, Milan's ASK
//! and ARK, and the VLEK line's ASVK and ARK) served at KDS's paths on loopback, with the
//! faults a real service shows.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// A real Milan report (trustee's vector).
pub const REPORT: &[u8] =
    include_bytes!("../../../crates/attestation/tests/data/snp/trustee-milan-v2-report.bin");
/// The VCEK of that report's chip at its REPORTED_TCB.
pub const VCEK: &[u8] =
    include_bytes!("../../../crates/attestation/tests/data/snp/trustee-milan-v2-vcek.der");
/// Another Milan chip's VCEK.
pub const OTHER_VCEK: &[u8] =
    include_bytes!("../../../crates/attestation/tests/data/snp/gosevguest-milan-v2-vcek.der");
/// Milan's ASK and ARK as KDS serves them (PEM).
pub const CHAIN: &[u8] =
    include_bytes!("../../../crates/attestation/tests/data/snp/gosevguest-milan-ask-ark.pem");
/// Milan's ASVK and ARK (the VLEK signer's chain).
pub const VLEK_CHAIN: &[u8] =
    include_bytes!("../../../crates/attestation/tests/data/snp/gosevguest-milan-asvk-ark.pem");
/// A time at which the vectors' certificates are valid.
pub const NOW: i64 = 1_750_809_600;

/// What the server does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing.
    None,
    /// 429 with `Retry-After: 1` this many times, then answers.
    TooMany(usize),
    /// 500 every time.
    ServerError,
    /// Never answers.
    Hang,
    /// Half the VCEK.
    Truncated,
    /// Another chip's VCEK.
    OtherChip,
    /// The VLEK signer's chain instead of the VCEK signer's.
    WrongChain,
}

#[derive(Debug, Clone)]
struct Kdsd {
    fault: Fault,
    requests: Arc<AtomicUsize>,
    throttled: Arc<AtomicUsize>,
}

/// A running local KDS; stopped when dropped.
#[derive(Debug)]
pub struct LocalKds {
    background: crate::serve::Background,
    state: Kdsd,
}

impl LocalKds {
    /// Starts a KDS on a free loopback port.
    pub fn start(fault: Fault) -> LocalKds {
        let state = Kdsd {
            fault,
            requests: Arc::new(AtomicUsize::new(0)),
            throttled: Arc::new(AtomicUsize::new(0)),
        };
        let app = axum::Router::new()
            .route("/vcek/v1/{product}/{leaf}", axum::routing::get(serve))
            .route(
                "/vlek/v1/{product}/cert_chain",
                axum::routing::get(serve_vlek_chain),
            )
            .with_state(state.clone());
        LocalKds {
            background: crate::serve::Background::serve(app),
            state,
        }
    }

    /// Its base URL (`http://127.0.0.1:<port>`).
    pub fn url(&self) -> &str {
        self.background.url()
    }

    /// How many requests it got.
    pub fn requests(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Stops it; it refuses connections afterwards.
    pub fn stop(&mut self) {
        self.background.stop();
    }
}

/// Milan's ASVK and ARK, at `/vlek/v1/Milan/cert_chain`.
async fn serve_vlek_chain(State(kds): State<Kdsd>, Path(product): Path<String>) -> Response {
    kds.requests.fetch_add(1, Ordering::SeqCst);
    if product != "Milan" {
        return StatusCode::NOT_FOUND.into_response();
    }
    VLEK_CHAIN.to_vec().into_response()
}

async fn serve(
    State(kds): State<Kdsd>,
    Path((product, leaf)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    kds.requests.fetch_add(1, Ordering::SeqCst);
    let fault = kds.fault;
    match fault {
        Fault::TooMany(n) if kds.throttled.fetch_add(1, Ordering::SeqCst) < n => {
            let mut headers = HeaderMap::new();
            headers.insert("retry-after", axum::http::HeaderValue::from_static("1"));
            return (StatusCode::TOO_MANY_REQUESTS, headers).into_response();
        }
        Fault::ServerError => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        Fault::Hang => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            return StatusCode::OK.into_response();
        }
        _ => {}
    }
    if product != "Milan" {
        return StatusCode::NOT_FOUND.into_response();
    }
    if leaf == "cert_chain" {
        let chain = if fault == Fault::WrongChain {
            VLEK_CHAIN
        } else {
            CHAIN
        };
        return chain.to_vec().into_response();
    }
    // The report's chip and REPORTED_TCB (bl 3, tee 0, snp 8, ucode 115), as KDS is asked
    // for them.
    let chip = hex::encode(&REPORT[0x1A0..0x1E0]);
    if leaf != chip || query.as_deref() != Some("blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115") {
        return StatusCode::NOT_FOUND.into_response();
    }
    match fault {
        Fault::Truncated => VCEK[..VCEK.len() / 2].to_vec().into_response(),
        Fault::OtherChip => OTHER_VCEK.to_vec().into_response(),
        _ => VCEK.to_vec().into_response(),
    }
}
