//! The ttRPC server: the two services on one listener.

use std::sync::Arc;

use crate::proto::{agent_ttrpc, health_ttrpc};
use crate::service::{Agent, HealthService};

/// The Kata agent's address inside the VM: vsock port 1024, any CID.
pub const DEFAULT_LISTEN: &str = "vsock://-1:1024";

/// A ttRPC server serving `agent` and the health service on `address` (`vsock://CID:PORT`
/// or `unix:///path`). Start it with `start`, stop it with `shutdown`.
pub fn server(address: &str, agent: Arc<Agent>) -> ttrpc::Result<ttrpc::r#async::Server> {
    Ok(ttrpc::r#async::Server::new()
        .bind(address)?
        .register_service(agent_ttrpc::create_agent_service(agent))
        .register_service(health_ttrpc::create_health(Arc::new(HealthService))))
}
