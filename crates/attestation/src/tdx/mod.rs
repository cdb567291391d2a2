//! Intel TDX: the DCAP quote, its verification and its reference values.

mod pck;
mod quote;
mod reference;
mod verify;

pub use pck::{PckPlatform, pck_platform};
pub use quote::{INTEL_QE_VENDOR_ID, QuoteError, TEE_TYPE_TDX, TdReport, TdxQuote};
pub use reference::{TdxExpectations, check_tdx_reference_values, suggested_tdx_reference_values};
pub use verify::{
    PckCert, TcbEvaluation, TdxCollateral, TdxTrustAnchor, TdxVerifier, TdxVerifyError,
    VerifiedTdxQuote, verify_quote,
};
