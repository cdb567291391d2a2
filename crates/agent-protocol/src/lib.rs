//! The Kata agent's ttRPC protocol: the messages and services of kata-containers'
//! `agent.proto` (and `health.proto`, `oci.proto`, `types.proto`, `csi.proto`; the commit
//! they come from is in `protos/`), generated in pure Rust by build.rs, with serde as the
//! Kata agent serialises a request for its policy.
//!
//! Core, because both sides speak it: the agent in the pod VM serves it, and the host's
//! runtime (the QEMU tests today, the node shim next) drives it.

pub mod policy_input;
pub mod proto;

/// What the agent logs to the VM's console once it listens. On the simulated platforms the
/// host connects only after it: a connection the user-space vsock back end
/// (`vhost-device-vsock`) gets before the guest has set up its virtqueues makes the back
/// end warn "backend event before vring initialization" and can leave the guest
/// unreachable.
pub const AGENT_SERVING_LOG: &str = "serving the Kata agent API";
