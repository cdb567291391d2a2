//! Errors of the ConfigMap store and of peer discovery.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Errors of [`ConfigMapStore`](crate::ConfigMapStore)'s setup and of the Kubernetes API
/// calls behind it and behind peer discovery.
#[derive(Debug, thiserror::Error)]
pub enum KubeStoreError {
    /// The service account's namespace file cannot be read.
    #[error(
        "cannot read the pod's namespace from {}; run in a pod with a service account mounted, or give the namespace explicitly",
        path.display()
    )]
    Namespace {
        /// The file that was read.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The service account's namespace file is empty.
    #[error(
        "the namespace file {} is empty; the service account mount is broken",
        path.display()
    )]
    EmptyNamespace {
        /// The file that was read.
        path: PathBuf,
    },
    /// The in-cluster configuration (service account token, API server address) is missing.
    #[error(
        "cannot load the in-cluster Kubernetes configuration; the Coordinator needs its service account and KUBERNETES_SERVICE_HOST/PORT"
    )]
    InCluster(#[source] kube::config::InClusterError),
    /// A Kubernetes client cannot be built from the configuration.
    #[error("cannot build a Kubernetes client; check the cluster URL and TLS settings")]
    Client(#[source] kube::Error),
    /// A Kubernetes API call failed.
    #[error(
        "Kubernetes API: cannot {action} {object}; check the API server and the Coordinator's RBAC role (configmaps get/create/update/watch, pods get/list)"
    )]
    Api {
        /// What was being done (`get`, `create`, `update`, `list`).
        action: &'static str,
        /// The object or collection concerned (`configmap ns/name`).
        object: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A Kubernetes API call did not complete in time.
    #[error(
        "Kubernetes API: {action} {object} did not complete within {timeout:?}; check that the API server is reachable"
    )]
    Timeout {
        /// What was being done.
        action: &'static str,
        /// The object or collection concerned.
        object: String,
        /// The limit in force.
        timeout: Duration,
    },
    /// The Coordinator pod has no owner reference to an `apps/v1` StatefulSet.
    #[error(
        "coordinator statefulset not found: pod {namespace}/{pod} has no ownerReference to an apps/v1 StatefulSet; run the Coordinator as the StatefulSet `coordinator`"
    )]
    NoStatefulSetOwner {
        /// The pod's namespace.
        namespace: String,
        /// The pod's name.
        pod: String,
    },
    /// The store's background thread cannot be started.
    #[error("cannot start the ConfigMap store's I/O thread")]
    Runtime(#[source] io::Error),
    /// The store's background thread has stopped (only after a panic in it).
    #[error("the ConfigMap store's I/O thread has stopped; restart the Coordinator")]
    RuntimeGone,
}
