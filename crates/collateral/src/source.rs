//! [`Collateral`]: KDS and PCS behind the verifiers' blocking seam
//! ([`contrast_attestation::collateral::CollateralSource`]), for the CLI and the
//! Coordinator alike.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use contrast_attestation::collateral::{CollateralSource, CollateralSourceError};
use contrast_attestation::snp::{SigningKey, SnpEndorsements, SnpReport, SnpTrustAnchor};
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
    /// Intel's PCS or a PCCS (or the simulated vendor's); `None`: no TDX collateral is
    /// served, and the TCB status is not evaluated.
    pub pcs_url: Option<String>,
    /// Fetch nothing: only what the evidence carries (and, for TDX, nothing) is used.
    pub offline: bool,
    /// Whether a KDS without CRLs is accepted (see [`CrlPolicy`]).
    pub crl: CrlPolicy,
    /// The disk cache (the CLI's); `None` keeps answers in memory only (the Coordinator).
    pub cache: Option<DiskCache>,
    /// How hard to try.
    pub retry: RetryPolicy,
    /// How many lookups past memory (fetches, and for the CLI disk reads) may run at once
    /// in a burst, and how long one more takes to become allowed. Evidence from a peer
    /// not yet authenticated can name any chip or platform, so this bounds what such
    /// peers make this process ask the vendors (whose rate limits would otherwise stop
    /// the legitimate fetches too).
    pub budget: FetchBudget,
    /// How long a service that failed with an outage (no answer, or 5xx or 429 after the
    /// retries) is not asked again: during an outage every verification that needs it
    /// fails at once, naming the outage, instead of waiting out the retries.
    pub outage_pause: Duration,
}

/// A token bucket for lookups past memory.
#[derive(Debug, Clone, Copy)]
pub struct FetchBudget {
    /// Lookups allowed in a burst.
    pub burst: u32,
    /// The time one more lookup takes to become allowed.
    pub refill: Duration,
}

impl Default for FetchBudget {
    /// 32 at once, then one every 2 s (30 a minute): a fleet's new chips and platforms
    /// are fetched once each and then served from memory.
    fn default() -> Self {
        FetchBudget {
            burst: 32,
            refill: Duration::from_secs(2),
        }
    }
}

/// What is left of a [`FetchBudget`].
#[derive(Debug)]
struct Bucket {
    budget: FetchBudget,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(budget: FetchBudget) -> Self {
        Bucket {
            budget,
            tokens: f64::from(budget.burst),
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one; else how long until there is.
    fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        let refill = self.budget.refill.as_secs_f64().max(f64::MIN_POSITIVE);
        let earned = now.duration_since(self.last).as_secs_f64() / refill;
        self.tokens = (self.tokens + earned).min(f64::from(self.budget.burst));
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) * refill))
        }
    }
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
            budget: FetchBudget::default(),
            outage_pause: Duration::from_secs(30),
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
    bucket: Mutex<Bucket>,
    /// Per service: when it last failed with an outage, and how.
    outages: Mutex<[Option<(Instant, String)>; 2]>,
    outage_pause: Duration,
}

/// The services a source asks.
#[derive(Debug, Clone, Copy)]
enum Service {
    Kds = 0,
    Pcs = 1,
}

impl Service {
    fn name(self) -> &'static str {
        match self {
            Service::Kds => "KDS",
            Service::Pcs => "PCS",
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
            bucket: Mutex::new(Bucket::new(settings.budget)),
            outages: Mutex::default(),
            outage_pause: settings.outage_pause,
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
        if carried.vek.is_some()
            && carried.ask.is_none()
            && SnpReport::from_bytes_or_hcl(report)
                .is_ok_and(|(r, _)| r.signing_key().ok() == Some(SigningKey::Vlek))
        {
            // A VLEK without its chain: the ASVK comes from KDS (the anchor pins ASKs only).
            let kds = self.kds.clone();
            let (report_bytes, anchor_owned, with) =
                (report.to_vec(), anchor.clone(), carried.clone());
            carried = self.fetch(Service::Kds, async move {
                kds.vlek_chain_for(&report_bytes, &with, &anchor_owned, now)
                    .await
            })?;
        }
        if carried.vek.is_none() {
            let kds = self.kds.clone();
            let (report, anchor) = (report.to_vec(), anchor.clone());
            let fetched = self.fetch(Service::Kds, async move {
                kds.snp_endorsements(&report, &anchor, now).await
            })?;
            return Ok(with_chain_of(carried, fetched));
        }
        if carried.crl.is_none() {
            let kds = self.kds.clone();
            let (report, anchor, with) = (report.to_vec(), anchor.clone(), carried.clone());
            carried.crl = self.fetch(Service::Kds, async move {
                kds.crl_for(&report, &with, &anchor, now).await
            })?;
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
        self.fetch(Service::Pcs, async move {
            pcs.tdx_collateral(&quote, &anchor, now).await
        })
        .map(Some)
    }

    /// Runs `fetch` against `service` on the fetch thread and waits for it: not while the
    /// service is paused after an outage, nor over the budget.
    fn fetch<T: Send + 'static>(
        &self,
        service: Service,
        fetch: impl std::future::Future<Output = Result<T, CollateralError>> + Send + 'static,
    ) -> Result<T, CollateralError> {
        if let Some((at, last)) = &lock(&self.outages)[service as usize] {
            let ago = at.elapsed();
            if ago < self.outage_pause {
                return Err(CollateralError::RecentlyFailed {
                    service: service.name(),
                    ago,
                    pause: self.outage_pause,
                    last: last.clone(),
                });
            }
        }
        lock(&self.bucket)
            .take()
            .map_err(|wait| CollateralError::OverBudget { wait })?;
        let result = self
            .worker
            .block_on(fetch)
            .map_err(|e| CollateralError::Client(format!("{e}: a collateral fetch panicked")))?;
        let outage = match &result {
            Err(e) if e.is_outage() => {
                tracing::warn!(
                    service = service.name(),
                    error = %contrast_platforms::error_chain(e),
                    pause = ?self.outage_pause,
                    "collateral service failing: not asked again during the pause"
                );
                Some((Instant::now(), contrast_platforms::error_chain(e)))
            }
            _ => None,
        };
        lock(&self.outages)[service as usize] = outage;
        result
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
