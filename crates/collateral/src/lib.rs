//! Vendor collateral for attestation, fetched, checked and cached: the one home of it for
//! the CLI and the Coordinator.
//!
//! AMD's KDS for SEV-SNP ([`kds::Kds`]: a report's VCEK and its product line's ASK and
//! ARK) and Intel's PCS for TDX ([`pcs::Pcs`]: TCB info, QE identity, CRLs). Everything fetched is checked before it is used or kept: the report must
//! verify with it under the pinned ARK, so an answer from a wrong root, a truncated or a
//! forged one is refused and never cached. Faults are retried with backoff (honouring
//! `Retry-After`, which KDS sends with 429) and end in an error that names the URL and
//! what went wrong.

#![forbid(unsafe_code)]

pub mod cache;
pub mod fetch;
mod freshness;
pub mod kds;
pub mod pcs;
pub mod source;

pub use cache::DiskCache;
pub use fetch::{Fetcher, RetryPolicy};
pub use kds::{CrlPolicy, DEFAULT_KDS_URL, Kds};
pub use pcs::{DEFAULT_PCS_URL, Pcs};
pub use source::{Collateral, CollateralSettings, FetchBudget};

/// Why collateral could not be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollateralError {
    /// The HTTP client could not be set up.
    #[error("setting up the HTTP client: {0}")]
    Client(String),
    /// The service answered with an error status.
    #[error("{url} answered HTTP {status}")]
    Status {
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
    },
    /// No answer (connection refused, timed out, cut short).
    #[error("{url}: {reason}")]
    Transport {
        /// The URL asked.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A body over [`fetch::MAX_BODY`].
    #[error("{url} sent more than {} bytes: not collateral", fetch::MAX_BODY)]
    TooLarge {
        /// The URL asked.
        url: String,
    },
    /// Every attempt failed.
    #[error("gave up on {url} after {attempts} attempts")]
    GaveUp {
        /// The URL asked.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last attempt's failure.
        #[source]
        last: Box<CollateralError>,
    },
    /// The answer is not usable collateral for this evidence.
    #[error("refused what {url} returned: {reason}")]
    Rejected {
        /// The URL asked.
        url: String,
        /// Why.
        reason: String,
    },
    /// AMD's CRL, which is required, could not be had.
    #[error(
        "AMD's CRL could not be had from {url}, and a report is accepted only with a current \
         one (for a KDS mirror without CRLs, choose to accept reports unchecked for \
         revocation)"
    )]
    CrlUnavailable {
        /// The URL asked.
        url: String,
        /// Why not.
        #[source]
        cause: Box<CollateralError>,
    },
    /// The evidence cannot be read.
    #[error("the evidence: {0}")]
    Evidence(String),
    /// A VLEK-signed report: KDS does not serve VLEKs.
    #[error(
        "the report is signed with a VLEK, which KDS does not serve: the host must hand it \
         over (its certificate table, or --vcek)"
    )]
    VlekNotFetchable,
    /// The service failed with an outage a moment ago and is left alone for a pause.
    #[error(
        "{service} failed {ago:?} ago and is not asked again before {pause:?} have passed \
         (last failure: {last})"
    )]
    RecentlyFailed {
        /// KDS or PCS.
        service: &'static str,
        /// How long ago.
        ago: std::time::Duration,
        /// The pause.
        pause: std::time::Duration,
        /// The failure, as one line.
        last: String,
    },
    /// Too many lookups past memory in a short time ([`FetchBudget`]).
    #[error(
        "too many collateral fetches in a short time: this one is refused; it is allowed \
         again in {wait:?} (evidence that names new chips or platforms faster than that \
         waits its turn)"
    )]
    OverBudget {
        /// How long until one more is allowed.
        wait: std::time::Duration,
    },
    /// Fetching is off, and the evidence does not carry what is needed.
    #[error("offline: nothing is fetched, and the evidence does not carry its collateral")]
    Offline,
    /// The report does not name its chip.
    #[error(
        "the report's CHIP_ID is masked (MASK_CHIP_ID): KDS cannot be asked for its VCEK; \
         give the VCEK (--vcek) or use the host's certificate table"
    )]
    MaskedChipId,
}

impl CollateralError {
    /// Whether this says the service is down or overloaded (no answer, 5xx, 429 after the
    /// retries), rather than that it answered something unusable.
    pub fn is_outage(&self) -> bool {
        match self {
            CollateralError::GaveUp { .. } | CollateralError::Transport { .. } => true,
            CollateralError::Status { status, .. } => *status == 429 || *status >= 500,
            CollateralError::CrlUnavailable { cause, .. } => cause.is_outage(),
            _ => false,
        }
    }
}
