//! Intel TDX: the DCAP quote and its verification.

mod quote;
mod verify;

pub use quote::{INTEL_QE_VENDOR_ID, QuoteError, TEE_TYPE_TDX, TdReport, TdxQuote};
pub use verify::{
    PckCert, TcbEvaluation, TdxCollateral, TdxTrustAnchor, TdxVerifyError, VerifiedTdxQuote,
    verify_quote,
};
