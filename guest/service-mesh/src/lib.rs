//! The service-mesh proxy (docs/protocol.md §11), in place of Contrast's Envoy sidecar.
//!
//! - [`config`]: `CONTRAST_INGRESS_PROXY_CONFIG`, `CONTRAST_EGRESS_PROXY_CONFIG`,
//!   `CONTRAST_ADMIN_PORT`, with errors that name the entry.
//! - [`tls`]: rustls configurations from the Initializer's files; the mesh CA is the only
//!   trust anchor.
//! - [`proxy`]: ingress listeners (15006 mTLS, 15007 TLS without required client
//!   certificate, transparent for TPROXY) forwarding to the original destination; egress
//!   listeners on 127.0.0.0/8 originating mTLS; reload of changed credential files without
//!   touching open connections; the admin interface.
//! - [`redirect`]: the mangle-table TPROXY rules as data, applied with `ip6tables-restore`
//!   and `iptables-restore`, and removal of the pod VM's default-deny rules.
//!
//! The binary `service-mesh` puts these together in Contrast's order: listeners, redirect
//! rules, default-deny removal, readiness file.

mod admin;
pub mod proxy;
pub mod redirect;
mod reload;
mod stats;
pub mod tls;

pub use config::{
    ConfigError, EgressEntry, IngressConfig, IngressEntry, IngressPortMode, ProxyConfig,
};
/// The configuration grammar, shared with the CLI that writes it.
pub use contrast_mesh_config as config;
pub use proxy::{IngressUpstream, ProxyError, ProxyOptions, RunningProxy, start};
pub use redirect::{Installed, RedirectRules, TproxyPorts, install};
pub use stats::StatsSnapshot;
pub use tls::{ClientAuth, MeshTls, TlsError, TlsPaths};

/// Where the readiness file goes by default (the sidecar's startup probe checks it).
pub const DEFAULT_READY_FILE: &str = "/ready";

/// Writes the (empty) readiness file.
pub fn write_ready_file(path: &std::path::Path) -> std::io::Result<()> {
    std::fs::write(path, b"")
}
