//! The reference values `contrast generate` writes into manifests, keyed by runtime
//! handler, as `firmware-refs reference-values` writes them.
//!
//! A crate of its own so that the CLI embeds one file, not the measuring code: see
//! build.rs for which file.

/// The reference values this build embeds: `assets/reference-values.json`, or the file
/// `CONTRAST_REFERENCE_VALUES` named at build time (`cargo xtask image` sets it).
pub const EMBEDDED_REFERENCE_VALUES: &str =
    include_str!(concat!(env!("OUT_DIR"), "/reference-values.json"));
