//! The Coordinator's gRPC APIs, generated from `proto/` at build time.
//!
//! Package names, message names and field numbers are Contrast's (docs/protocol.md
//! §6.2, §6.3), so a Contrast client can talk to our Coordinator and back.

#![allow(missing_docs, unreachable_pub, missing_debug_implementations)]
#![allow(clippy::all, clippy::pedantic)]

/// `edgelesssys.contrast.userapi`: SetManifest, GetManifests, Recover (port 1313).
pub mod userapi {
    tonic::include_proto!("edgelesssys.contrast.userapi");
}

/// `meshapi`: NewMeshCert and peer Recover (port 7777).
pub mod meshapi {
    tonic::include_proto!("meshapi");
}

/// The Coordinator's ports (docs/protocol.md §6.1).
pub mod ports {
    /// UserAPI (gRPC over aTLS).
    pub const USER_API: u16 = 1313;
    /// HTTP attestation API.
    pub const HTTP_ATTESTATION: u16 = 1314;
    /// MeshAPI (gRPC over mutual aTLS).
    pub const MESH_API: u16 = 7777;
    /// Probes and metrics.
    pub const PROBES: u16 = 9102;
    /// The transit engine (HTTPS with mesh mutual TLS).
    pub const TRANSIT: u16 = 8200;
}
