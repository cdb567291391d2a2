//! TDX quotes v4/v5: parsing, and verification of whatever parses (with Intel's root).
#![no_main]

use contrast_attestation::tdx::{TdxQuote, TdxTrustAnchor, verify_quote};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(quote) = TdxQuote::parse(data) {
        assert!(quote.signed_bytes().len() <= data.len());
        let _ = quote.qe_report_data();
        // Signatures fail on fuzzed input, but every step before must not panic.
        let _ = verify_quote(data, &TdxTrustAnchor::intel(), None, 1_780_272_000);
    }
});
