//! Intel TDX: the DCAP quote, its verification and its reference values.

mod pck;
mod quote;
mod reference;
mod tdreport;
mod verify;

pub use pck::{PckPlatform, pck_platform};
pub use quote::{INTEL_QE_VENDOR_ID, QeIdentity, QuoteError, TEE_TYPE_TDX, TdReport, TdxQuote};
pub use reference::{TdxExpectations, check_tdx_reference_values, suggested_tdx_reference_values};
pub use tdreport::{LocalTdReport, TDREPORT_LEN, TdReportError};
pub use verify::{
    INTEL_TDX_QE, PckCert, PinnedQeIdentity, TcbEvaluation, TdxCollateral, TdxTrustAnchor,
    TdxVerifier, TdxVerifyError, VerifiedTdxQuote, verify_quote,
};
