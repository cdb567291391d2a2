//! Contrast attestation documents (SNP `Attestation`, TDX `QuoteV4` protobuf): detection,
//! decoding, and the round-trip law: whatever decodes re-encodes to a document that decodes
//! to the same bytes.
#![no_main]

use contrast_attestation::document::{self, DocumentKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = DocumentKind::detect(data);
    if let Ok((report, endorsements)) = document::decode_snp(data) {
        let again = document::encode_snp(&report, &endorsements, None)
            .expect("a decoded report re-encodes");
        let (report2, _) = document::decode_snp(&again).expect("a re-encoded document decodes");
        assert_eq!(report, report2);
    }
    if let Ok(quote) = document::decode_tdx(data) {
        let again = document::encode_tdx(&quote).expect("a decoded quote re-encodes");
        assert_eq!(document::decode_tdx(&again).expect("re-encoded quote decodes"), quote);
    }
});
