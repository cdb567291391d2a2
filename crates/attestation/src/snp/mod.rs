//! AMD SEV-SNP: the attestation report and its verification.

mod report;
mod verify;

pub use report::{
    REPORT_SIZE, ReportError, SIGNED_LEN, SigningKey, SnpProduct, SnpReport, TcbVersion,
};
pub use verify::{
    ChainCert, SnpEndorsements, SnpTrustAnchor, SnpVerifyError, VerifiedSnpReport, verify_report,
};
