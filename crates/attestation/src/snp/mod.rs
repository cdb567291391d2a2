//! AMD SEV-SNP: the attestation report and its verification.

pub mod idblock;
mod reference;
mod report;
mod verify;

pub use reference::{SnpExpectations, check_snp_reference_values, suggested_reference_values};
pub use report::{
    REPORT_SIZE, ReportError, SIGNED_LEN, SigningKey, SnpProduct, SnpReport, TcbVersion,
};
pub use verify::{
    ChainCert, SnpEndorsements, SnpTrustAnchor, SnpVerifier, SnpVerifyError, VerifiedSnpReport,
    verify_report,
};
