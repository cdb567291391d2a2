//! The pod VM's agent (see ARCHITECTURE.md): serves the Kata agent's ttRPC API
//! (`grpc.AgentService`, `grpc.Health`) on vsock port 1024, and asks the pod's policy about
//! every request before it acts on it.

pub mod container;
pub mod copy_file;
pub mod device;
pub mod device_mapper;
pub mod hotplug;
pub mod mount;
pub mod network;
pub mod policy;
/// The Kata agent's protocol (`contrast-agent-protocol`), under the name the agent's code uses.
pub use contrast_agent_protocol::{AGENT_SERVING_LOG, proto};
pub mod serve;
pub mod service;
pub mod storage;

pub use policy::{PolicyGate, PolicyLoadError, PolicySource};
pub use service::{AGENT_VERSION, Agent, AgentConfig, Container, HealthService, RUN_DIR, Sandbox};

/// A ttRPC error status with `code` and `message`.
pub(crate) fn status(code: ttrpc::Code, message: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, message.into()))
}
