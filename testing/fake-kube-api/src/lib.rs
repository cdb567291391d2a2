//! An in-process fake of the Kubernetes API server, for tests that go through the real
//! kube client (and `kubectl`) instead of mocking the code under test.
//!
//! [`FakeKubeApi::start`] serves plain HTTP/1.1 on `127.0.0.1:<free port>` from its own
//! thread and runtime, so it works under any test harness (sync tests, current-thread or
//! multi-thread tokio tests). What it implements, with the API server's semantics:
//!
//! * ConfigMaps, namespaced: GET, POST (create; 409 `AlreadyExists`), PUT (replace; 409
//!   `Conflict` when `metadata.resourceVersion` is set and differs from the stored one; an
//!   update that changes nothing keeps the resourceVersion and sends no event), DELETE,
//!   LIST with `labelSelector` and `fieldSelector` (`metadata.name`, `metadata.namespace`),
//!   and WATCH (`?watch=true`): newline-delimited `WatchEvent`s ADDED/MODIFIED/DELETED from
//!   the given `resourceVersion` (or synthetic ADDED events for the current objects when
//!   none or `0` is given), `timeoutSeconds`, and a BOOKMARK only with
//!   `allowWatchBookmarks=true`. Names, binaryData keys and values and the 1 MiB size limit
//!   are validated (422 `Invalid`).
//! * ConfigMap bodies in JSON or, as kubectl sends them, Kubernetes protobuf.
//! * Pods: GET and LIST with selectors; tests add and change pods through
//!   [`FakeKubeApi::set_pod`].
//! * Compaction ([`FakeKubeApi::compact`]): a watch from an older resourceVersion gets an
//!   ERROR event with 410 `Expired`.
//! * One global, monotonically increasing resourceVersion, like etcd's revision.
//! * The discovery documents `kubectl` reads (`/api`, `/apis`, `/api/v1`).
//!
//! Test controls: [`FakeKubeApi::set_unresponsive`] (requests hang, for timeout tests) and
//! [`FakeKubeApi::break_watches`] (open watches end, for restart tests).

mod proto;
mod selector;
mod server;

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// The API types [`FakeKubeApi`] takes and gives.
pub use k8s_openapi;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use tokio::sync::oneshot;

use server::Shared;

/// A running fake API server; it stops when dropped.
#[derive(Debug)]
pub struct FakeKubeApi {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl FakeKubeApi {
    /// Starts the server on `127.0.0.1` with a free port, on a thread of its own.
    pub fn start() -> io::Result<Self> {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST.into())
    }

    /// Starts the server on `ip` with a free port (the node's address on a pod network,
    /// for API clients in pod VMs), on a thread of its own.
    pub fn start_on(ip: std::net::IpAddr) -> io::Result<Self> {
        let listener = std::net::TcpListener::bind((ip, 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new());
        let (shutdown, shutdown_rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let router = server::router(shared.clone());
        std::thread::Builder::new()
            .name(format!("fake-kube-api-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => listener,
                        Err(e) => {
                            tracing::error!(error = %e, "fake kube API: cannot listen");
                            return;
                        }
                    };
                    tokio::select! {
                        result = axum::serve(listener, router) => {
                            if let Err(e) = result {
                                tracing::error!(error = %e, "fake kube API: server failed");
                            }
                        }
                        _ = shutdown_rx => {}
                    }
                });
                // Open watches and hanging requests must not keep the thread alive.
                runtime.shutdown_background();
            })?;
        Ok(Self {
            addr,
            shared,
            shutdown: Some(shutdown),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's base URL, `http://<address>:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client configuration for this server with `namespace` as default namespace.
    pub fn client_config(&self, namespace: &str) -> kube::Config {
        // The URL is built from a socket address, so it always parses.
        let uri = self
            .url()
            .parse()
            .expect("http://<socket address> is a valid URI");
        let mut config = kube::Config::new(uri);
        namespace.clone_into(&mut config.default_namespace);
        config
    }

    /// Writes a kubeconfig file for this server (for `kubectl --kubeconfig`), with
    /// `namespace` as the context's namespace.
    pub fn write_kubeconfig(&self, path: &Path, namespace: &str) -> io::Result<()> {
        // JSON is YAML, so kubectl reads it as is.
        let kubeconfig = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url()}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
            "current-context": "fake",
        });
        let text = serde_json::to_string_pretty(&kubeconfig).map_err(io::Error::other)?;
        std::fs::write(path, text)
    }

    /// Adds or replaces a pod (by namespace and name). The namespace is set to
    /// `namespace`; resourceVersion and (if empty) uid are assigned. Returns the stored pod.
    pub fn set_pod(&self, namespace: &str, pod: Pod) -> Pod {
        self.shared.set_pod(namespace, pod)
    }

    /// Removes a pod; returns whether it existed.
    pub fn delete_pod(&self, namespace: &str, name: &str) -> bool {
        self.shared.delete_pod(namespace, name)
    }

    /// The stored ConfigMap, if any.
    pub fn configmap(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        self.shared.configmap(namespace, name)
    }

    /// All ConfigMaps in `namespace`, by name.
    pub fn configmaps(&self, namespace: &str) -> Vec<ConfigMap> {
        self.shared.configmaps(namespace)
    }

    /// The current (last assigned) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.resource_version()
    }

    /// While set, every request hangs without an answer (connections are still accepted).
    pub fn set_unresponsive(&self, unresponsive: bool) {
        self.shared.set_unresponsive(unresponsive);
    }

    /// Drops the change log, like etcd's compaction: a later watch from an older
    /// resourceVersion fails with 410 `Expired`, and the client has to list again.
    pub fn compact(&self) {
        self.shared.compact();
    }

    /// Ends every open watch, as an API server restart or a load balancer would.
    pub fn break_watches(&self) {
        self.shared.break_watches();
    }

    /// How many requests the server has received (all paths and methods).
    pub fn request_count(&self) -> u64 {
        self.shared.request_count()
    }
}

impl Drop for FakeKubeApi {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            // The server thread may already be gone; nothing to do then.
            let _ = shutdown.send(());
        }
    }
}
