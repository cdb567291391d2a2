//! The simulated Intel's Provisioning Certification Service: Intel's PCS v4 paths served
//! with the simulated platform's collateral (docs/attestation.md §6), so the simulated
//! TDX platforms evaluate a TCB status with the same client and verifier as real ones.
//!
//! `GET /tdx/certification/v4/tcb?fmspc=..` (`TCB-Info-Issuer-Chain`),
//! `/tdx/certification/v4/qe/identity` (`SGX-Enclave-Identity-Issuer-Chain`),
//! `/sgx/certification/v4/pckcrl?ca=platform&encoding=der` (`SGX-PCK-CRL-Issuer-Chain`)
//! and `/sgx/certification/v4/rootcacrl` (hex); chains are PEM, URL-encoded.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::tdx::SimulatedCollateral;

/// The simulated PCS: the routes and the collateral they serve.
#[derive(Debug, Clone)]
pub struct SimulatedPcs {
    collateral: Arc<SimulatedCollateral>,
}

impl SimulatedPcs {
    /// A PCS that serves `collateral` (from [`crate::SimulatedIntel::collateral`]).
    pub fn new(collateral: SimulatedCollateral) -> Self {
        SimulatedPcs {
            collateral: Arc::new(collateral),
        }
    }

    /// The routes, to serve on a listener.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/tdx/certification/v4/tcb", axum::routing::get(tcb_info))
            .route(
                "/tdx/certification/v4/qe/identity",
                axum::routing::get(qe_identity),
            )
            .route("/sgx/certification/v4/pckcrl", axum::routing::get(pck_crl))
            .route(
                "/sgx/certification/v4/rootcacrl",
                axum::routing::get(root_crl),
            )
            .with_state(self.clone())
    }
}

/// `body` with the issuer chain `chain` URL-encoded in the header `name`.
fn with_chain(name: &'static str, chain: &str, body: Vec<u8>) -> Response {
    let encoded = percent_encoding::utf8_percent_encode(chain, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    let mut headers = HeaderMap::new();
    match HeaderValue::from_str(&encoded) {
        Ok(value) => {
            headers.insert(name, value);
            (headers, body).into_response()
        }
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// The signed document under `key`, as PCS sends it: the JSON text verbatim.
fn signed(key: &str, text: &str, signature: &str) -> Vec<u8> {
    format!("{{\"{key}\":{text},\"signature\":\"{signature}\"}}").into_bytes()
}

async fn tcb_info(State(pcs): State<SimulatedPcs>, RawQuery(query): RawQuery) -> Response {
    let c = &pcs.collateral;
    let asked = query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("fmspc="));
    if !asked.is_some_and(|fmspc| fmspc.eq_ignore_ascii_case(&c.fmspc)) {
        return StatusCode::NOT_FOUND.into_response();
    }
    with_chain(
        "TCB-Info-Issuer-Chain",
        &c.signer_chain,
        signed("tcbInfo", &c.tcb_info, &c.tcb_info_signature),
    )
}

async fn qe_identity(State(pcs): State<SimulatedPcs>) -> Response {
    let c = &pcs.collateral;
    with_chain(
        "SGX-Enclave-Identity-Issuer-Chain",
        &c.signer_chain,
        signed("enclaveIdentity", &c.qe_identity, &c.qe_identity_signature),
    )
}

async fn pck_crl(State(pcs): State<SimulatedPcs>, RawQuery(query): RawQuery) -> Response {
    if !query.as_deref().unwrap_or_default().contains("ca=platform") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let c = &pcs.collateral;
    with_chain(
        "SGX-PCK-CRL-Issuer-Chain",
        &c.pck_crl_chain,
        c.pck_crl.clone(),
    )
}

async fn root_crl(State(pcs): State<SimulatedPcs>) -> Response {
    hex::encode(&pcs.collateral.root_crl).into_response()
}
