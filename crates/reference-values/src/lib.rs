//! What the CLI embeds from a build of the guest image and from a release: the reference
//! values `contrast generate` writes into manifests, keyed by runtime handler, as
//! `firmware-refs reference-values` writes them; and the release's images by digest
//! (`release.json`, [`Release`]).
//!
//! A crate of its own so that the CLI embeds files, not the code that makes them: see
//! build.rs for which files.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The reference values this build embeds: `assets/reference-values.json`, or the file
/// `CONTRAST_REFERENCE_VALUES` named at build time (`cargo xtask image` sets it).
pub const EMBEDDED_REFERENCE_VALUES: &str =
    include_str!(concat!(env!("OUT_DIR"), "/reference-values.json"));

/// The `release.json` this build embeds: the file `CONTRAST_RELEASE` named at build time
/// (`cargo xtask release` sets it); empty in a development build.
pub const EMBEDDED_RELEASE: &str = include_str!(concat!(env!("OUT_DIR"), "/release.json"));

/// A release (`release.json`): what `cargo xtask release` built and pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Release {
    /// The version (the workspace's).
    pub version: String,
    /// Component (`coordinator`, `initializer`, `service-mesh-proxy`, `port-forwarder`) →
    /// `<registry>/<component>@sha256:…`.
    pub images: BTreeMap<String, String>,
    /// Platform (`Metal-QEMU-SNP`, …) → its runtime and reference values, for the
    /// platforms whose guest image the release was built with.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub platforms: BTreeMap<String, ReleasePlatform>,
}

/// What a release says about one platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasePlatform {
    /// The runtime handler the node installer installs.
    pub runtime_handler: String,
    /// The reference values, as `reference-values.json` has them for that handler.
    pub reference_values: serde_json::Value,
    /// Whether these are values to deploy on. False when they were computed from a
    /// stand-in for the firmware a node runs, or for a simulated platform.
    pub production: bool,
    /// Why not, when `production` is false.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub caveat: String,
    /// The firmware the values were computed from and the node installer ships: its
    /// source and SHA-256 (a real platform's; empty when unknown).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub firmware: String,
}

impl Release {
    /// The release this build embeds; `None` in a development build.
    pub fn embedded() -> Result<Option<Release>, serde_json::Error> {
        if EMBEDDED_RELEASE.trim().is_empty() {
            return Ok(None);
        }
        serde_json::from_str(EMBEDDED_RELEASE).map(Some)
    }

    /// The image of `component`, by digest.
    pub fn image(&self, component: &str) -> Option<&str> {
        self.images.get(component).map(String::as_str)
    }
}

/// The component names of a release's images.
pub mod components {
    /// The Coordinator.
    pub const COORDINATOR: &str = "coordinator";
    /// The Initializer.
    pub const INITIALIZER: &str = "initializer";
    /// The service-mesh proxy.
    pub const SERVICE_MESH_PROXY: &str = "service-mesh-proxy";
    /// The port-forwarder (for clusters without a load balancer).
    pub const PORT_FORWARDER: &str = "port-forwarder";
    /// The node installer (the runtime installer with the shim and the guest image).
    pub const NODE_INSTALLER: &str = "node-installer";
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_development_build_embeds_no_release() {
        assert_eq!(Release::embedded().unwrap(), None);
    }

    #[test]
    fn release_json_round_trips_and_refuses_unknown_keys() {
        let text = r#"{"version": "1.2.3", "images": {"coordinator": "r/c@sha256:00"},
            "platforms": {"Sim-SNP": {"runtime_handler": "contrast-cc-sim-snp-00000000",
            "reference_values": {"snp": []}, "production": false, "caveat": "simulated"}}}"#;
        let release: Release = serde_json::from_str(text).unwrap();
        assert_eq!(release.image("coordinator"), Some("r/c@sha256:00"));
        assert!(!release.platforms["Sim-SNP"].production);
        let again: Release =
            serde_json::from_slice(&serde_json::to_vec(&release).unwrap()).unwrap();
        assert_eq!(again, release);
        let unknown = r#"{"version": "1", "images": {}, "imgs": {}}"#;
        assert!(serde_json::from_str::<Release>(unknown).is_err());
    }
}
