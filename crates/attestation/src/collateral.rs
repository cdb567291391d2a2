//! Where a verifier gets what the evidence did not carry: the seam between verification
//! and the vendors' collateral services (implemented by `contrast-collateral`, which
//! fetches from AMD's KDS and Intel's PCS and caches).
//!
//! What a source returns is never trusted by itself: the verifier checks it under its own
//! pinned roots like anything the evidence carried.

use crate::snp::{SnpEndorsements, SnpTrustAnchor};
use crate::tdx::{TdxCollateral, TdxTrustAnchor};

/// Why a source could not supply collateral; printed as one line by the verifier.
pub type CollateralSourceError = Box<dyn std::error::Error + Send + Sync>;

/// Supplies the collateral evidence needs beyond what it carries. Blocking: a verifier
/// calls it in the middle of a synchronous check.
pub trait CollateralSource: Send + Sync + std::fmt::Debug {
    /// `carried` completed for `report` (a raw or Azure HCL SEV-SNP report) under
    /// `anchor` at `now`: the VCEK and its chain when the evidence carries none, AMD's CRL
    /// when it carries none. What the evidence carried is kept; a source that cannot help
    /// returns it unchanged or says why.
    fn snp_endorsements(
        &self,
        report: &[u8],
        carried: SnpEndorsements,
        anchor: &SnpTrustAnchor,
        now: i64,
    ) -> Result<SnpEndorsements, CollateralSourceError>;

    /// The DCAP collateral (TCB info, QE identity, CRLs) for `quote` under `anchor` at
    /// `now`; `None` from a source that serves no TDX collateral (one for the simulator
    /// without a simulated PCS), and then the TCB status is not evaluated.
    fn tdx_collateral(
        &self,
        quote: &[u8],
        anchor: &TdxTrustAnchor,
        now: i64,
    ) -> Result<Option<TdxCollateral>, CollateralSourceError>;
}
