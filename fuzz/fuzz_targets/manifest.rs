//! Manifests: decoding, validation, and the round trip of whatever decodes.
#![no_main]

use contrast_manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(manifest) = Manifest::decode(data) {
        let _ = manifest.validate();
        let encoded = manifest.encode();
        let again = Manifest::decode(&encoded).expect("our own encoding decodes");
        assert_eq!(again, manifest);
        assert_eq!(again.encode(), encoded);
    }
});
