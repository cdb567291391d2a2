//! The TEE simulator: a software "vendor" for machines without SEV-SNP or TDX.
//!
//! It creates a local root of trust, keeps its keys in a directory, and signs evidence in
//! the real binary formats: SEV-SNP reports under an ARK → ASK → VCEK chain in AMD's
//! certificate profile, TDX quotes under a root → PCK CA → PCK chain in Intel's. The
//! verifiers in `contrast-attestation` check them with the same code as real evidence;
//! only the trust anchor differs, and it is accepted only on the simulated platforms.
//!
//! Nothing here is secret in a real deployment: the simulator exists for tests, the
//! quickstart and development.

pub mod kds;
pub mod pcs;
pub mod snp;
mod store;
pub mod tdx;

use std::path::Path;

pub use snp::{SimulatedAmd, SimulatedSnpReport, SnpReportSpec};
pub use store::KeyStore;
pub use tdx::{SimulatedCollateral, SimulatedIntel, SimulatedPlatform, SimulatedQe, TdxQuoteSpec};

/// Both simulated vendors, their keys kept in one directory.
#[derive(Debug)]
pub struct Simulator {
    /// The simulated AMD (Milan, Genoa and Turin roots).
    pub amd: SimulatedAmd,
    /// The simulated Intel.
    pub intel: SimulatedIntel,
}

impl Simulator {
    /// Loads the vendors' keys from `dir`, creating them on first use. Every process that
    /// opens the same directory signs under the same roots.
    pub fn open(dir: impl Into<std::path::PathBuf>) -> Result<Self, SimError> {
        let store = KeyStore::open(dir)?;
        let products = [
            contrast_attestation::snp::SnpProduct::Milan,
            contrast_attestation::snp::SnpProduct::Genoa,
            contrast_attestation::snp::SnpProduct::Turin,
        ];
        let amd = if products
            .iter()
            .all(|p| store.contains(&format!("snp-{}-ark.p8", p.name().to_ascii_lowercase())))
        {
            SimulatedAmd::load(&store, &products)?
        } else {
            let amd = SimulatedAmd::generate(&products)?;
            amd.save(&store)?;
            amd
        };
        let intel = SimulatedIntel::open(&store, SimulatedPlatform::default())?;
        let simulator = Simulator { amd, intel };
        simulator.write_anchors(&store)?;
        Ok(simulator)
    }

    /// Writes the public roots beside the keys where they are missing, for verifiers that
    /// do not link the simulator ([`contrast_attestation::simulated_anchors`]).
    fn write_anchors(&self, store: &KeyStore) -> Result<(), SimError> {
        use contrast_attestation::simulated_anchors::{TDX_ROOT_FILE, snp_file};
        let mut files = vec![(TDX_ROOT_FILE.to_owned(), self.intel.root_der().to_vec())];
        for (product, ark, ask) in self.amd.roots_der() {
            files.push((snp_file(product, "ark"), ark));
            files.push((snp_file(product, "ask"), ask));
        }
        for (name, der) in files {
            if !store.contains(&name) {
                store.write_public(&name, &der)?;
            }
        }
        Ok(())
    }
}

/// What went wrong in the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A file of the key directory could not be read or written.
    #[error("{path}")]
    Io {
        /// The file or directory.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A key file holds something else than a key.
    #[error(
        "simulator key file {file}: {reason}; delete the simulator directory to create new keys"
    )]
    KeyFile {
        /// The file name.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// The simulator has no root for a product line.
    #[error("the simulator has no root for {0}")]
    NoRoot(&'static str),
    /// A cryptographic operation failed (a bug or an exhausted random source).
    #[error("simulator cryptography: {0}")]
    Crypto(&'static str),
}

impl SimError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        SimError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
