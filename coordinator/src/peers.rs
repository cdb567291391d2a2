//! Coordinator peers: who else serves this deployment, and whether one of them is ready.
//!
//! Peers are a static list of mesh API addresses (`--peer host:7777`), ready when their
//! readiness probe answers 200, or on Kubernetes the Ready pods of the Coordinator
//! StatefulSet (docs/protocol.md §7.3), found through the API server.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Finds Coordinator peers.
#[tonic::async_trait]
pub trait PeerDiscovery: Send + Sync + std::fmt::Debug {
    /// The peers' mesh API addresses (`host:port`).
    async fn peers(&self) -> Vec<String>;

    /// The first peer whose readiness probe says ready, if any.
    async fn first_ready_peer(&self) -> Option<String>;
}

/// A fixed list of peers whose probes listen on `probe_port` of the same host.
#[derive(Debug, Clone, Default)]
pub struct StaticPeers {
    /// Mesh API addresses.
    pub peers: Vec<String>,
    /// The probe port of every peer.
    pub probe_port: u16,
}

#[tonic::async_trait]
impl PeerDiscovery for StaticPeers {
    async fn peers(&self) -> Vec<String> {
        self.peers.clone()
    }

    async fn first_ready_peer(&self) -> Option<String> {
        for peer in &self.peers {
            let Some((host, _)) = peer.rsplit_once(':') else {
                continue;
            };
            if probe_ready(&format!("{host}:{}", self.probe_port)).await {
                return Some(peer.clone());
            }
        }
        None
    }
}

/// The Ready Coordinator pods other than this one, from the Kubernetes API.
#[derive(Debug, Clone)]
pub struct KubernetesPeers {
    /// The store, which holds the API client.
    pub store: std::sync::Arc<contrast_kube_store::ConfigMapStore>,
    /// This pod's name (`HOSTNAME`).
    pub pod_name: String,
    /// The mesh API port of every peer.
    pub mesh_port: u16,
}

impl KubernetesPeers {
    async fn discover(&self) -> Vec<String> {
        match self.store.discover_peers(&self.pod_name).await {
            Ok(ips) => ips
                .into_iter()
                .map(|ip| std::net::SocketAddr::new(ip, self.mesh_port).to_string())
                .collect(),
            Err(e) => {
                tracing::warn!(
                    error = %contrast_platforms::error_chain(&e),
                    "listing Coordinator peers"
                );
                Vec::new()
            }
        }
    }
}

#[tonic::async_trait]
impl PeerDiscovery for KubernetesPeers {
    async fn peers(&self) -> Vec<String> {
        self.discover().await
    }

    /// Discovery lists Ready pods only: Kubernetes already ran their readiness probes.
    async fn first_ready_peer(&self) -> Option<String> {
        self.discover().await.into_iter().next()
    }
}

/// `GET /probe/readiness` answered with 200 within two seconds.
async fn probe_ready(addr: &str) -> bool {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET /probe/readiness HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        Some(head.starts_with(b"HTTP/1.") && &head[8..12] == b" 200")
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(2), attempt).await,
        Ok(Some(true))
    )
}
