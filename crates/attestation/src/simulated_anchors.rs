//! The simulator's public roots as files beside its keys: a verifier reads them to accept
//! simulated evidence (on the simulated platforms only) without linking the simulator,
//! which a shipped binary must not. The simulator writes them (`Simulator::open`); nothing
//! here signs anything.
//!
//! Roots are pinned by their keys, so any certificate the simulator issues for the same key
//! is the same anchor.

use std::path::{Path, PathBuf};

use contrast_platforms::SnpProduct;

use crate::snp::SnpTrustAnchor;
use crate::tdx::TdxTrustAnchor;

/// The file that holds the simulated `which` certificate (`ark` or `ask`) of `product`.
pub fn snp_file(product: SnpProduct, which: &str) -> String {
    format!(
        "anchor-snp-{}-{which}.der",
        product.name().to_ascii_lowercase()
    )
}

/// The file that holds the simulated Intel root certificate.
pub const TDX_ROOT_FILE: &str = "anchor-tdx-root.der";

/// Why the simulator's anchors could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "reading the simulator's trust anchor {path}: the directory must be one a simulator has \
     opened (a simulated Coordinator creates it)"
)]
pub struct AnchorError {
    /// The file.
    pub path: PathBuf,
    /// Why it could not be read.
    #[source]
    pub source: std::io::Error,
}

/// The simulated AMD and Intel anchors the simulator in `dir` signs under.
pub fn load(dir: &Path) -> Result<(SnpTrustAnchor, TdxTrustAnchor), AnchorError> {
    let read = |name: String| {
        let path = dir.join(name);
        std::fs::read(&path).map_err(|source| AnchorError { path, source })
    };
    let mut roots = Vec::with_capacity(SnpProduct::ALL.len());
    for product in SnpProduct::ALL {
        let ark = read(snp_file(product, "ark"))?;
        let ask = read(snp_file(product, "ask"))?;
        roots.push((product, ark, Some(ask)));
    }
    let tdx_root = read(TDX_ROOT_FILE.to_owned())?;
    Ok((
        SnpTrustAnchor::simulated(roots),
        TdxTrustAnchor::simulated(tdx_root),
    ))
}
