//! A local Intel PCS for tests: the real collateral of dcap-qvl's TDX quote vector served
//! at PCS v4's paths on loopback (issuer chains URL-encoded in the headers, as PCS sends
//! them), with faults.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::serve::Background;

/// A real TDX quote (dcap-qvl's sample).
pub const QUOTE: &[u8] =
    include_bytes!("../../../crates/attestation/tests/data/tdx/dcapqvl-quote-v4.dat");
/// Its collateral, as `--collateral` reads it.
pub const COLLATERAL: &[u8] =
    include_bytes!("../../../crates/attestation/tests/data/tdx/dcapqvl-quote-v4-collateral.json");
/// A time at which the collateral is current.
pub const NOW: i64 = 1_750_809_600;
/// A time after the TCB info's nextUpdate.
pub const AFTER_NEXT_UPDATE: i64 = 1_767_225_600;

/// What the server does wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Nothing.
    None,
    /// 500 every time.
    ServerError,
    /// The TCB info with one character changed (its signature no longer verifies).
    TamperedTcbInfo,
    /// No issuer chain header.
    NoIssuerChain,
    /// The TCB info's issuer chain from another root (AMD's Milan ASK and ARK).
    ForeignIssuerChain,
}

/// Certificates of another vendor's root, for [`Fault::ForeignIssuerChain`].
const FOREIGN_CHAIN: &str =
    include_str!("../../../crates/attestation/tests/data/snp/gosevguest-milan-ask-ark.pem");

#[derive(Debug, Clone)]
struct Pcsd {
    fault: Fault,
    collateral: Arc<serde_json::Value>,
    requests: Arc<AtomicUsize>,
}

/// A running local PCS; stopped when dropped.
#[derive(Debug)]
pub struct LocalPcs {
    background: Background,
    requests: Arc<AtomicUsize>,
}

impl LocalPcs {
    /// Starts a PCS on a free loopback port.
    pub fn start(fault: Fault) -> LocalPcs {
        let collateral: serde_json::Value =
            serde_json::from_slice(COLLATERAL).expect("the collateral vector is JSON");
        let state = Pcsd {
            fault,
            collateral: Arc::new(collateral),
            requests: Arc::new(AtomicUsize::new(0)),
        };
        let requests = state.requests.clone();
        let app = axum::Router::new()
            .route("/tdx/certification/v4/tcb", axum::routing::get(tcb))
            .route(
                "/tdx/certification/v4/qe/identity",
                axum::routing::get(qe_identity),
            )
            .route("/sgx/certification/v4/pckcrl", axum::routing::get(pck_crl))
            .route(
                "/sgx/certification/v4/rootcacrl",
                axum::routing::get(root_ca_crl),
            )
            .with_state(state);
        LocalPcs {
            background: Background::serve(app),
            requests,
        }
    }

    /// Its base URL.
    pub fn url(&self) -> &str {
        self.background.url()
    }

    /// How many requests it got.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Stops it.
    pub fn stop(&mut self) {
        self.background.stop();
    }
}

fn field<'a>(pcs: &'a Pcsd, name: &str) -> &'a str {
    pcs.collateral[name].as_str().unwrap_or_default()
}

fn with_chain(pcs: &Pcsd, header: &'static str, chain: &str, body: Vec<u8>) -> Response {
    pcs.requests.fetch_add(1, Ordering::SeqCst);
    if pcs.fault == Fault::ServerError {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut headers = HeaderMap::new();
    if pcs.fault != Fault::NoIssuerChain {
        let encoded =
            percent_encoding::utf8_percent_encode(chain, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        if let Ok(value) = HeaderValue::from_str(&encoded) {
            headers.insert(HeaderName::from_static(header), value);
        }
    }
    (headers, body).into_response()
}

async fn tcb(
    State(pcs): State<Pcsd>,
    Query(query): Query<std::collections::BTreeMap<String, String>>,
) -> Response {
    let tcb_info = field(&pcs, "tcb_info");
    let fmspc = tcb_info
        .split("\"fmspc\":\"")
        .nth(1)
        .and_then(|rest| rest.get(..12))
        .unwrap_or_default();
    if query.get("fmspc").map(String::as_str) != Some(fmspc) {
        pcs.requests.fetch_add(1, Ordering::SeqCst);
        return StatusCode::NOT_FOUND.into_response();
    }
    let tcb_info = if pcs.fault == Fault::TamperedTcbInfo {
        tcb_info.replacen("UpToDate", "UpToDatE", 1)
    } else {
        tcb_info.to_owned()
    };
    let body = format!(
        r#"{{"tcbInfo":{tcb_info},"signature":"{}"}}"#,
        field(&pcs, "tcb_info_signature")
    );
    let chain = if pcs.fault == Fault::ForeignIssuerChain {
        FOREIGN_CHAIN
    } else {
        field(&pcs, "tcb_info_issuer_chain")
    };
    with_chain(&pcs, "tcb-info-issuer-chain", chain, body.into_bytes())
}

async fn qe_identity(State(pcs): State<Pcsd>) -> Response {
    let body = format!(
        r#"{{"enclaveIdentity":{},"signature":"{}"}}"#,
        field(&pcs, "qe_identity"),
        field(&pcs, "qe_identity_signature")
    );
    with_chain(
        &pcs,
        "sgx-enclave-identity-issuer-chain",
        field(&pcs, "qe_identity_issuer_chain"),
        body.into_bytes(),
    )
}

async fn pck_crl(State(pcs): State<Pcsd>) -> Response {
    let der = hex::decode(field(&pcs, "pck_crl")).unwrap_or_default();
    with_chain(
        &pcs,
        "sgx-pck-crl-issuer-chain",
        field(&pcs, "pck_crl_issuer_chain"),
        der,
    )
}

/// As a PCCS serves it: hex.
async fn root_ca_crl(State(pcs): State<Pcsd>) -> Response {
    pcs.requests.fetch_add(1, Ordering::SeqCst);
    if pcs.fault == Fault::ServerError {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    field(&pcs, "root_ca_crl").to_owned().into_response()
}
