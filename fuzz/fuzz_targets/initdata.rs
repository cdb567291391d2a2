//! Initdata as the guest reads it from the host: the device's header form (magic, length,
//! gzip), then the TOML document, and the Coordinator entry an Initializer reads from it.
#![no_main]

use std::path::Path;

use contrast_initdata::Initdata;
use contrast_initdata_check::source::read_header_form;
use contrast_manifest::{COORDINATOR_INITDATA_KEY, Manifest};
use libfuzzer_sys::fuzz_target;

fn document(raw: Vec<u8>) {
    if let Ok(initdata) = Initdata::parse(raw) {
        let _ = initdata.policy();
        if let Some(entry) = initdata.data().get(COORDINATOR_INITDATA_KEY) {
            let _ = Manifest::decode(entry.as_bytes());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    document(data.to_vec());
    if let Ok(raw) = read_header_form(&mut &data[..], Path::new("/dev/fuzz")) {
        document(raw);
    }
});
