//! The simulated AMD's Key Distribution Service: AMD's KDS paths served from the
//! simulator's keys, so the simulated platforms fetch VCEKs, chains and CRLs with the
//! same client code as real ones (docs/attestation.md §5).
//!
//! `GET /vcek/v1/{product}/{hwid}?[fmcSPL=..&]blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`
//! (the VCEK, DER), `/vcek/v1/{product}/cert_chain` (ASK then ARK, PEM) and
//! `/vcek/v1/{product}/crl` (DER, current, revoking what [`SimulatedKds::revoke`] named).

use std::sync::{Arc, Mutex};

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use contrast_attestation::snp::{SnpProduct, TcbVersion};

use crate::snp::SimulatedAmd;

/// How long a CRL with revocations is current (one without comes from
/// [`SimulatedAmd::current_crl`]).
const CRL_LIFETIME: i64 = 7 * 24 * 3600;

/// The simulated KDS: the routes and what they serve.
#[derive(Debug, Clone)]
pub struct SimulatedKds {
    amd: Arc<SimulatedAmd>,
    revoked: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl SimulatedKds {
    /// A KDS for `amd`'s product lines.
    pub fn new(amd: Arc<SimulatedAmd>) -> Self {
        SimulatedKds {
            amd,
            revoked: Arc::default(),
        }
    }

    /// From now on the CRLs revoke the certificate with serial number `serial` (the
    /// simulated VCEKs, like AMD's, all have serial 0).
    pub fn revoke(&self, serial: &[u8]) {
        self.revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(serial.to_vec());
    }

    /// The routes, to serve on a listener.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/vcek/v1/{product}/{leaf}", axum::routing::get(serve))
            .with_state(self.clone())
    }

    fn crl(&self, product: SnpProduct) -> Result<Vec<u8>, crate::SimError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let revoked = self
            .revoked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if revoked.is_empty() {
            return self.amd.current_crl(product, now);
        }
        let serials: Vec<&[u8]> = revoked.iter().map(Vec::as_slice).collect();
        self.amd
            .crl(product, &serials, now - 3600, now - 3600 + CRL_LIFETIME)
    }
}

async fn serve(
    State(kds): State<SimulatedKds>,
    Path((product, leaf)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(product) = SnpProduct::from_name(&product) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let answer = match leaf.as_str() {
        "cert_chain" => Ok(chain_pem(&kds.amd, product).into_bytes()),
        "crl" => kds.crl(product),
        hwid => match vcek_request(product, hwid, query.as_deref().unwrap_or_default()) {
            Some((chip_id, tcb)) => kds.amd.vcek_der(product, &chip_id, tcb),
            None => return StatusCode::BAD_REQUEST.into_response(),
        },
    };
    match answer {
        Ok(body) => body.into_response(),
        // The simulator has no root for this product line.
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The chip ID (padded to 64 bytes) and TCB a VCEK request names, as KDS reads them.
fn vcek_request(product: SnpProduct, hwid: &str, query: &str) -> Option<([u8; 64], TcbVersion)> {
    let id = hex::decode(hwid).ok()?;
    if id.len() != product.hw_id_len() {
        return None;
    }
    let mut chip_id = [0; 64];
    chip_id[..id.len()].copy_from_slice(&id);
    let spl = |name: &str| -> Option<u8> {
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            (key == name).then(|| value.parse().ok())?
        })
    };
    let tcb = TcbVersion {
        fmc: match product {
            SnpProduct::Turin => Some(spl("fmcSPL")?),
            SnpProduct::Milan | SnpProduct::Genoa => None,
        },
        bootloader: spl("blSPL")?,
        tee: spl("teeSPL")?,
        snp: spl("snpSPL")?,
        microcode: spl("ucodeSPL")?,
    };
    Some((chip_id, tcb))
}

/// The ASK and ARK as KDS serves them: PEM, ASK first.
fn chain_pem(amd: &SimulatedAmd, product: SnpProduct) -> String {
    amd.roots_der()
        .into_iter()
        .filter(|(p, _, _)| *p == product)
        .flat_map(|(_, ark, ask)| [ask, ark])
        .map(|der| contrast_attestation::pem::encode("CERTIFICATE", &der))
        .collect()
}
