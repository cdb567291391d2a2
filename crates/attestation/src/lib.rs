//! Verification of TEE evidence: SEV-SNP reports and TDX quotes.
//!
//! The same verification code serves real and simulated evidence; only the trust anchor
//! differs ([`snp::SnpTrustAnchor::amd`] or a simulator's roots), and a verified result
//! says which one it was checked against so callers can refuse simulated evidence on
//! real platforms.

mod chain_cache;
pub mod claims;
pub mod collateral;
pub mod der;
pub mod document;
pub mod explain;
pub mod oid;
pub mod pem;
pub mod simulated_anchors;
pub mod snp;
pub mod tdx;
pub mod time;
