//! The node's image puller config as the agent reads it at every pull (the host's file,
//! unmeasured): TOML, credentials, per-registry CAs and proxy settings.
#![no_main]

use contrast_registry::PullerConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PullerConfig::parse(text, "/run/insecure-cfg/imagepuller.toml");
    }
});
