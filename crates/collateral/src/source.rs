//! [`Collateral`]: KDS and PCS behind the verifiers' blocking seam
//! ([`contrast_attestation::collateral::CollateralSource`]), for the CLI and the
//! Coordinator alike.

use contrast_attestation::collateral::{CollateralSource, CollateralSourceError};
use contrast_attestation::snp::{SnpEndorsements, SnpTrustAnchor};
use contrast_attestation::tdx::{TdxCollateral, TdxTrustAnchor};
use contrast_runtime_thread::RuntimeThread;

use crate::{
    CollateralError, CrlPolicy, DEFAULT_KDS_URL, DEFAULT_PCS_URL, DiskCache, Kds, Pcs, RetryPolicy,
};

/// Where collateral comes from and what is accepted without it.
#[derive(Debug, Clone)]
pub struct CollateralSettings {
    /// AMD's KDS or a mirror.
    pub kds_url: String,
    /// Intel's PCS or a PCCS; `None`: no TDX collateral is served (the simulated vendor
    /// has no PCS yet).
    pub pcs_url: Option<String>,
    /// Fetch nothing: only what the evidence carries (and, for TDX, nothing) is used.
    pub offline: bool,
    /// Whether a KDS without CRLs is accepted (see [`CrlPolicy`]).
    pub crl: CrlPolicy,
    /// The disk cache (the CLI's); `None` keeps answers in memory only (the Coordinator).
    pub cache: Option<DiskCache>,
    /// How hard to try.
    pub retry: RetryPolicy,
}

impl Default for CollateralSettings {
    /// The vendors' public services, CRL required, no disk cache.
    fn default() -> Self {
        CollateralSettings {
            kds_url: DEFAULT_KDS_URL.to_owned(),
            pcs_url: Some(DEFAULT_PCS_URL.to_owned()),
            offline: false,
            crl: CrlPolicy::Required,
            cache: None,
            retry: RetryPolicy::default(),
        }
    }
}

/// Collateral from KDS and PCS for verifiers that run synchronously: the fetches run on a
/// runtime thread of its own, so a verifier may ask from any thread or runtime. What
/// verified once is kept in memory (and on disk with a cache directory), so a warm source
/// answers without a request.
#[derive(Debug)]
pub struct Collateral {
    kds: Kds,
    pcs: Option<Pcs>,
    offline: bool,
    worker: RuntimeThread,
}

impl Collateral {
    /// A source with `settings`.
    pub fn new(settings: CollateralSettings) -> Result<Self, CollateralError> {
        Ok(Collateral {
            kds: Kds::new(&settings.kds_url, settings.retry, settings.cache.clone())?
                .with_crl_policy(settings.crl),
            pcs: settings
                .pcs_url
                .map(|url| Pcs::new(&url, settings.retry, settings.cache))
                .transpose()?,
            offline: settings.offline,
            worker: RuntimeThread::start("contrast-collateral")
                .map_err(|e| CollateralError::Client(format!("starting the fetch thread: {e}")))?,
        })
    }

    /// As [`CollateralSource::snp_endorsements`], with the typed error.
    pub fn complete_snp(
        &self,
        report: &[u8],
        mut carried: SnpEndorsements,
        anchor: &SnpTrustAnchor,
        now: i64,
    ) -> Result<SnpEndorsements, CollateralError> {
        if self.offline {
            return Ok(carried);
        }
        // A warm source answers from memory on the caller's thread.
        if let Some(remembered) = self.kds.remembered_for(report, &carried, now) {
            return Ok(with_chain_of(carried, remembered));
        }
        if carried.vek.is_none() {
            let kds = self.kds.clone();
            let (report, anchor) = (report.to_vec(), anchor.clone());
            let fetched =
                self.fetch(async move { kds.snp_endorsements(&report, &anchor, now).await })?;
            return Ok(with_chain_of(carried, fetched));
        }
        if carried.crl.is_none() {
            let kds = self.kds.clone();
            let (report, anchor, with) = (report.to_vec(), anchor.clone(), carried.clone());
            carried.crl =
                self.fetch(async move { kds.crl_for(&report, &with, &anchor, now).await })?;
        }
        Ok(carried)
    }

    /// As [`CollateralSource::tdx_collateral`], with the typed error.
    pub fn tdx(
        &self,
        quote: &[u8],
        anchor: &TdxTrustAnchor,
        now: i64,
    ) -> Result<Option<TdxCollateral>, CollateralError> {
        let Some(pcs) = self.pcs.clone() else {
            return Ok(None);
        };
        if self.offline {
            return Err(CollateralError::Offline);
        }
        // A warm source answers from memory on the caller's thread.
        if let Some(collateral) = pcs.remembered(quote, now) {
            return Ok(Some(collateral));
        }
        let (quote, anchor) = (quote.to_vec(), anchor.clone());
        self.fetch(async move { pcs.tdx_collateral(&quote, &anchor, now).await })
            .map(Some)
    }

    /// Runs `fetch` on the fetch thread and waits for it.
    fn fetch<T: Send + 'static>(
        &self,
        fetch: impl std::future::Future<Output = Result<T, CollateralError>> + Send + 'static,
    ) -> Result<T, CollateralError> {
        self.worker
            .block_on(fetch)
            .map_err(|e| CollateralError::Client(format!("{e}: a collateral fetch panicked")))?
    }
}

impl CollateralSource for Collateral {
    fn snp_endorsements(
        &self,
        report: &[u8],
        carried: SnpEndorsements,
        anchor: &SnpTrustAnchor,
        now: i64,
    ) -> Result<SnpEndorsements, CollateralSourceError> {
        Ok(self.complete_snp(report, carried, anchor, now)?)
    }

    fn tdx_collateral(
        &self,
        quote: &[u8],
        anchor: &TdxTrustAnchor,
        now: i64,
    ) -> Result<Option<TdxCollateral>, CollateralSourceError> {
        Ok(self.tdx(quote, anchor, now)?)
    }
}

/// `carried` completed with `kds`'s answer: when the host carried no VCEK, KDS's chain
/// replaces whatever it carried, and KDS's CRL the host's (the host's stays when KDS
/// served none); else `kds` already is the completed set.
fn with_chain_of(carried: SnpEndorsements, kds: SnpEndorsements) -> SnpEndorsements {
    if carried.vek.is_some() {
        return kds;
    }
    SnpEndorsements {
        crl: kds.crl.or(carried.crl),
        ..kds
    }
}
