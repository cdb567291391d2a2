//! Intel's Provisioning Certification Service (v4), or a PCCS that mirrors it: the
//! collateral a TDX quote's TCB status is evaluated with — TCB info for the platform's
//! FMSPC, the TDX QE identity, the PCK CRL of the CA that issued the PCK certificate, the
//! root CA CRL, and the issuer chains PCS sends in response headers.
//!
//! Paths: `/tdx/certification/v4/tcb?fmspc={FMSPC}` (`{"tcbInfo": …, "signature": hex}`,
//! chain in `TCB-Info-Issuer-Chain`), `/tdx/certification/v4/qe/identity`
//! (`{"enclaveIdentity": …, "signature": hex}`, chain in
//! `SGX-Enclave-Identity-Issuer-Chain`), `/sgx/certification/v4/pckcrl?ca={platform|processor}&encoding=der`
//! (chain in `SGX-PCK-CRL-Issuer-Chain`); the root CA CRL from a PCCS at
//! `/sgx/certification/v4/rootcacrl` (hex or DER), from Intel at the root certificate's
//! distribution point. Headers carry the PEM chains URL-encoded.
//!
//! Everything is checked before it is used or kept: the quote must verify with the
//! collateral under the pinned Intel root at the time asked (signatures over TCB info and
//! QE identity, their validity windows, the CRLs), so a forged, expired or foreign answer
//! is refused and not cached. A cached bundle past its `nextUpdate` no longer verifies
//! and is fetched again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use contrast_attestation::tdx::{
    TdxCollateral, TdxQuote, TdxTrustAnchor, pck_platform, verify_quote,
};
use contrast_attestation::time::parse_rfc3339;

use crate::freshness::{Freshness, Serve};
use serde_json::json;
use serde_json::value::RawValue;

use crate::CollateralError;
use crate::cache::DiskCache;
use crate::fetch::{Fetcher, RetryPolicy};

/// Intel's public PCS.
pub const DEFAULT_PCS_URL: &str = "https://api.trustedservices.intel.com";

/// Where Intel publishes the SGX root CA's CRL (the root certificate's distribution point).
pub const INTEL_ROOT_CA_CRL_URL: &str =
    "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der";

/// The most collateral bundles kept in memory (one per FMSPC and PCK CA: a fleet has a
/// handful); past it the memory starts over.
pub const MEMORY_ENTRIES: usize = 1024;

/// Collateral that verified a quote once, by cache key, with the earliest next update of
/// its parts (TCB info, QE identity, the two CRLs).
type Memory = Arc<Mutex<HashMap<String, (TdxCollateral, Freshness)>>>;

/// Intel's PCS, or a PCCS, behind a cache in memory (for a long-running verifier: asked
/// again only past the collateral's next update) and on disk.
#[derive(Debug, Clone)]
pub struct Pcs {
    base: String,
    fetcher: Fetcher,
    cache: Option<DiskCache>,
    memory: Memory,
}

#[derive(serde::Deserialize)]
struct TcbInfoResponse<'a> {
    #[serde(rename = "tcbInfo", borrow)]
    tcb_info: &'a RawValue,
    signature: String,
}

#[derive(serde::Deserialize)]
struct QeIdentityResponse<'a> {
    #[serde(rename = "enclaveIdentity", borrow)]
    enclave_identity: &'a RawValue,
    signature: String,
}

/// The platform a quote comes from, as PCS is asked about it.
struct Platform {
    /// Upper-case hex, as PCS writes it.
    fmspc: String,
    /// `platform` or `processor`: the CA that issued the PCK certificate.
    ca: &'static str,
}

fn platform(quote: &TdxQuote) -> Result<Platform, CollateralError> {
    let text = std::str::from_utf8(&quote.pck_chain_pem)
        .map_err(|_| CollateralError::Evidence("the PCK chain is not PEM text".to_owned()))?;
    let certs = contrast_attestation::pem::decode_all(text, "CERTIFICATE")
        .map_err(|e| CollateralError::Evidence(format!("the PCK chain: {e}")))?;
    let [leaf, intermediate, ..] = certs.as_slice() else {
        return Err(CollateralError::Evidence(
            "the quote's PCK chain has no PCK certificate and CA".to_owned(),
        ));
    };
    let fmspc = pck_platform(leaf).fmspc.ok_or_else(|| {
        CollateralError::Evidence("the PCK certificate names no FMSPC".to_owned())
    })?;
    let (_, ca) = x509_parser::parse_x509_certificate(intermediate)
        .map_err(|e| CollateralError::Evidence(format!("the PCK CA certificate: {e}")))?;
    let subject = ca.subject().to_string();
    let ca = if subject.contains("Processor") {
        "processor"
    } else if subject.contains("Platform") {
        "platform"
    } else {
        return Err(CollateralError::Evidence(format!(
            "the PCK CA {subject} is neither Intel's platform nor processor CA"
        )));
    };
    Ok(Platform {
        fmspc: hex::encode_upper(fmspc),
        ca,
    })
}

fn cache_key(platform: &Platform) -> String {
    format!("pcs/tdx/{}-{}.json", platform.fmspc, platform.ca)
}

/// A collateral document's window: from the latest issue of its signed parts to the
/// earliest next update of all four (TCB info, QE identity, PCK CRL, root CA CRL).
fn freshness(json: &[u8]) -> Option<Freshness> {
    let document: serde_json::Value = serde_json::from_slice(json).ok()?;
    let signed = |field: &str| -> Option<(i64, i64)> {
        let body: serde_json::Value = serde_json::from_str(document.get(field)?.as_str()?).ok()?;
        let date = |key: &str| parse_rfc3339(body.get(key)?.as_str()?).ok();
        Some((date("issueDate")?, date("nextUpdate")?))
    };
    let crl_expires = |field: &str| -> Option<i64> {
        let der = hex::decode(document.get(field)?.as_str()?).ok()?;
        use x509_parser::prelude::FromDer as _;
        let (_, crl) =
            x509_parser::revocation_list::CertificateRevocationList::from_der(&der).ok()?;
        Some(crl.next_update()?.timestamp())
    };
    let (tcb_issued, tcb_next) = signed("tcb_info")?;
    let (qe_issued, qe_next) = signed("qe_identity")?;
    let expires = [
        tcb_next,
        qe_next,
        crl_expires("pck_crl")?,
        crl_expires("root_ca_crl")?,
    ]
    .into_iter()
    .min()?;
    Some(Freshness::window(tcb_issued.max(qe_issued), expires))
}

impl Pcs {
    /// PCS (or a PCCS) at `base`, such as [`DEFAULT_PCS_URL`], with an optional cache.
    pub fn new(
        base: &str,
        retry: RetryPolicy,
        cache: Option<DiskCache>,
    ) -> Result<Self, CollateralError> {
        Ok(Pcs {
            base: base
                .trim_end_matches('/')
                .trim_end_matches("/sgx/certification/v4")
                .trim_end_matches("/tdx/certification/v4")
                .to_owned(),
            fetcher: Fetcher::new(retry)?,
            cache,
            memory: Memory::default(),
        })
    }

    /// The collateral that evaluates `quote`'s TCB status under `anchor` at `now`: from the
    /// cache while it still verifies the quote, else fetched, and cached once the quote
    /// verified with it.
    pub async fn tdx_collateral(
        &self,
        quote_bytes: &[u8],
        anchor: &TdxTrustAnchor,
        now: i64,
    ) -> Result<TdxCollateral, CollateralError> {
        let quote =
            TdxQuote::parse(quote_bytes).map_err(|e| CollateralError::Evidence(e.to_string()))?;
        let platform = platform(&quote)?;
        let key = cache_key(&platform);
        // In the last quarter of its window the kept collateral is asked for anew, and
        // serves only while PCS cannot be reached.
        let stale = match self.remembered_at(&key, now) {
            Some((collateral, Serve::Fresh)) => return Ok(collateral),
            Some((collateral, _)) => Some(collateral),
            None => None,
        };
        match (
            self.fetch_collateral(quote_bytes, &platform, anchor, now, stale.is_none())
                .await,
            stale,
        ) {
            (Err(e), Some(stale)) if e.is_outage() => {
                tracing::warn!(error = %contrast_platforms::error_chain(&e), "PCS unreachable: the kept collateral serves until it runs out");
                Ok(stale)
            }
            (fetched, _) => fetched,
        }
    }

    /// The disk (when `use_disk`), else PCS, for [`Pcs::tdx_collateral`].
    async fn fetch_collateral(
        &self,
        quote_bytes: &[u8],
        platform: &Platform,
        anchor: &TdxTrustAnchor,
        now: i64,
        use_disk: bool,
    ) -> Result<TdxCollateral, CollateralError> {
        let key = cache_key(platform);
        if use_disk
            && let Some(cached) = self.cache.as_ref().and_then(|c| c.get(&key))
            && let Ok(collateral) = TdxCollateral::from_json(&cached)
            && verify_quote(quote_bytes, anchor, Some(&collateral), now).is_ok()
        {
            tracing::debug!(fmspc = platform.fmspc, "TDX collateral from the cache");
            self.remember(key, &collateral, &cached);
            return Ok(collateral);
        }

        let json = self.fetch(platform).await?;
        let tcb_url = self.tcb_url(platform);
        let collateral =
            TdxCollateral::from_json(&json).map_err(|e| CollateralError::Rejected {
                url: tcb_url.clone(),
                reason: contrast_platforms::error_chain(&e),
            })?;
        verify_quote(quote_bytes, anchor, Some(&collateral), now).map_err(|e| {
            CollateralError::Rejected {
                url: tcb_url,
                reason: format!(
                    "the quote does not verify with the collateral PCS returned: {}",
                    contrast_platforms::error_chain(&e)
                ),
            }
        })?;
        if let Some(cache) = &self.cache
            && let Err(e) = cache.put(&key, &json)
        {
            tracing::warn!(key, error = %contrast_platforms::error_chain(&e), "cannot cache collateral");
        }
        self.remember(key, &collateral, &json);
        Ok(collateral)
    }

    /// The collateral memory holds for `quote` at `now`, without I/O or a check (it
    /// verified a quote of this platform before, and the verifier checks it again).
    pub fn remembered(&self, quote: &[u8], now: i64) -> Option<TdxCollateral> {
        let quote = TdxQuote::parse(quote).ok()?;
        match self.remembered_at(&cache_key(&platform(&quote).ok()?), now)? {
            (collateral, Serve::Fresh) => Some(collateral),
            _ => None,
        }
    }

    /// Kept collateral not past its end, and what it is good for at `now`.
    fn remembered_at(&self, key: &str, now: i64) -> Option<(TdxCollateral, Serve)> {
        let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let (collateral, freshness) = memory.get(key)?;
        let serve = freshness.at(now);
        (serve != Serve::Expired).then(|| (collateral.clone(), serve))
    }

    /// Keeps `collateral` (whose JSON form is `json`) until its earliest next update; one
    /// whose dates cannot be read is not kept.
    fn remember(&self, key: String, collateral: &TdxCollateral, json: &[u8]) {
        let Some(freshness) = freshness(json) else {
            return;
        };
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if memory.len() >= MEMORY_ENTRIES {
            memory.clear();
        }
        memory.insert(key, (collateral.clone(), freshness));
    }

    fn tcb_url(&self, platform: &Platform) -> String {
        format!(
            "{}/tdx/certification/v4/tcb?fmspc={}",
            self.base, platform.fmspc
        )
    }

    /// The collateral as the JSON `--collateral` reads.
    async fn fetch(&self, platform: &Platform) -> Result<Vec<u8>, CollateralError> {
        let crl_url = format!(
            "{}/sgx/certification/v4/pckcrl?ca={}&encoding=der",
            self.base, platform.ca
        );
        let (pck_crl, pck_crl_chain) = self
            .fetch_with_chain(&crl_url, &["SGX-PCK-CRL-Issuer-Chain"])
            .await?;

        let tcb_url = self.tcb_url(platform);
        let (tcb_body, tcb_chain) = self
            .fetch_with_chain(
                &tcb_url,
                &["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"],
            )
            .await?;
        let tcb: TcbInfoResponse<'_> =
            serde_json::from_slice(&tcb_body).map_err(|e| CollateralError::Rejected {
                url: tcb_url.clone(),
                reason: format!("not a TCB info response: {e}"),
            })?;

        let qe_url = format!("{}/tdx/certification/v4/qe/identity", self.base);
        let (qe_body, qe_chain) = self
            .fetch_with_chain(&qe_url, &["SGX-Enclave-Identity-Issuer-Chain"])
            .await?;
        let qe: QeIdentityResponse<'_> =
            serde_json::from_slice(&qe_body).map_err(|e| CollateralError::Rejected {
                url: qe_url.clone(),
                reason: format!("not a QE identity response: {e}"),
            })?;

        let root_ca_crl = self.root_ca_crl().await?;

        let document = json!({
            "pck_crl_issuer_chain": pck_crl_chain,
            "root_ca_crl": hex::encode(root_ca_crl),
            "pck_crl": hex::encode(pck_crl),
            "tcb_info_issuer_chain": tcb_chain,
            "tcb_info": tcb.tcb_info.get(),
            "tcb_info_signature": tcb.signature,
            "qe_identity_issuer_chain": qe_chain,
            "qe_identity": qe.enclave_identity.get(),
            "qe_identity_signature": qe.signature,
        });
        serde_json::to_vec(&document).map_err(|e| CollateralError::Rejected {
            url: tcb_url,
            reason: e.to_string(),
        })
    }

    /// The root CA CRL: a PCCS serves it (hex, or DER); Intel at the distribution point.
    async fn root_ca_crl(&self) -> Result<Vec<u8>, CollateralError> {
        let url = if self.base == DEFAULT_PCS_URL {
            INTEL_ROOT_CA_CRL_URL.to_owned()
        } else {
            format!("{}/sgx/certification/v4/rootcacrl", self.base)
        };
        let body = self.fetcher.get(&url).await?;
        // A DER CRL starts with a SEQUENCE; a PCCS sends it hex-encoded.
        if body.first() == Some(&0x30) {
            return Ok(body);
        }
        std::str::from_utf8(&body)
            .ok()
            .and_then(|text| hex::decode(text.trim()).ok())
            .ok_or_else(|| CollateralError::Rejected {
                url,
                reason: "the root CA CRL is neither DER nor hex".to_owned(),
            })
    }

    async fn fetch_with_chain(
        &self,
        url: &str,
        headers: &[&str],
    ) -> Result<(Vec<u8>, String), CollateralError> {
        let (body, response_headers) = self.fetcher.get_with_headers(url).await?;
        let chain = headers
            .iter()
            .find_map(|name| response_headers.get(*name)?.to_str().ok())
            .ok_or_else(|| CollateralError::Rejected {
                url: url.to_owned(),
                reason: format!("no {} header with the issuer chain", headers.join(" or ")),
            })?;
        let chain = percent_encoding::percent_decode_str(chain)
            .decode_utf8()
            .map_err(|_| CollateralError::Rejected {
                url: url.to_owned(),
                reason: "the issuer chain header is not URL-encoded UTF-8".to_owned(),
            })?
            .into_owned();
        Ok((body, chain))
    }
}
