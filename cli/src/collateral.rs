//! Where the CLI gets vendor collateral: the flags every command that verifies evidence
//! shares (`set`, `verify`, `recover`, `attestation check`), and the one source built
//! from them.

use std::sync::Arc;

use contrast_collateral::{Collateral, CollateralSettings, CrlPolicy, DiskCache};

/// Flags for fetching AMD's and Intel's collateral.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct CollateralArgs {
    /// AMD's KDS (or a mirror): where an SNP report's VCEK, chain and AMD's CRL are
    /// fetched when the evidence does not carry them. What verified is kept in the cache
    /// directory (CONTRAST_CACHE_DIR, else $XDG_CACHE_HOME/contrast or ~/.cache/contrast).
    /// With --simulator-dir: the simulated vendor's KDS for the simulator's evidence.
    #[arg(long, env = "CONTRAST_KDS_URL", default_value = contrast_collateral::DEFAULT_KDS_URL)]
    pub kds_url: String,
    /// Accept a report from a KDS that serves no CRL (a mirror without CRLs): revocation
    /// is then not checked. AMD's KDS always serves one, and by default a report is
    /// accepted only with a current CRL.
    #[arg(long)]
    pub crl_optional: bool,
    /// Intel's PCS (or a PCCS): where a TDX quote's collateral (TCB info, QE identity,
    /// CRLs) is fetched, through the cache directory. With --simulator-dir: the simulated
    /// vendor's PCS for the simulator's evidence.
    #[arg(long, env = "CONTRAST_PCS_URL", default_value = contrast_collateral::DEFAULT_PCS_URL)]
    pub pcs_url: String,
    /// Fetch nothing: use only the certificates and collateral given or carried.
    #[arg(long, env = "CONTRAST_OFFLINE", value_parser = clap::builder::FalseyValueParser::new())]
    pub offline: bool,
}

impl CollateralArgs {
    /// The source these flags describe, with the disk cache.
    pub(crate) fn source(&self) -> anyhow::Result<Arc<Collateral>> {
        Ok(Arc::new(Collateral::new(self.settings())?))
    }

    /// The source for the simulator's evidence: --kds-url and --pcs-url then name the
    /// simulated vendor's services. Intel's PCS never serves simulated quotes, so without a
    /// simulated PCS the simulated TDX evidence gets no TCB status.
    pub(crate) fn simulated_source(&self) -> anyhow::Result<Arc<Collateral>> {
        let settings = self.settings();
        Ok(Arc::new(Collateral::new(CollateralSettings {
            pcs_url: settings
                .pcs_url
                .clone()
                .filter(|url| url != contrast_collateral::DEFAULT_PCS_URL),
            ..settings
        })?))
    }

    fn settings(&self) -> CollateralSettings {
        CollateralSettings {
            kds_url: self.kds_url.clone(),
            pcs_url: Some(self.pcs_url.clone()),
            offline: self.offline,
            crl: if self.crl_optional {
                CrlPolicy::IfServed
            } else {
                CrlPolicy::Required
            },
            cache: DiskCache::from_environment(),
            ..Default::default()
        }
    }
}
