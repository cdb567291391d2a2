//! The Coordinator's history store in Kubernetes ConfigMaps, and peer discovery
//! (docs/protocol.md §2.4 and §7.3).
//!
//! [`ConfigMapStore`] implements [`contrast_history::Store`]: one ConfigMap
//! `contrast-store-<class>-<name>` per key, the value in `binaryData[<name>]`, labelled
//! `app.kubernetes.io/managed-by: contrast.edgeless.systems` and optionally owned by the
//! Coordinator StatefulSet (so the history goes with it). Compare-and-swap on
//! `transitions/latest` is optimistic concurrency through the ConfigMap's
//! resourceVersion: of racing writers exactly one wins, the others get
//! [`StoreError::Conflict`](contrast_history::StoreError::Conflict).
//! [`ConfigMapStore::watch_latest`] reports every new value of the latest pointer, so a
//! ready Coordinator learns at once that another replica moved the history on.
//!
//! [`discover_peers`] lists the ready Coordinator pods other than this one.
//!
//! The trait is synchronous; the API calls run on the store's own single-threaded runtime
//! on a thread of its own, so the store works from plain threads, from `spawn_blocking`
//! and from inside a multi-thread tokio runtime alike. Every call has a timeout (10 s by
//! default).

mod discovery;
mod error;
mod store;

pub use discovery::{
    COORDINATOR_LABEL_SELECTOR, POD_ROLE_ANNOTATION, POD_ROLE_COORDINATOR, discover_peers,
    ready_peer_ips, statefulset_owner,
};
pub use error::KubeStoreError;
pub use store::{
    ConfigMapStore, DEFAULT_TIMEOUT, LatestWatch, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Owner,
    SERVICE_ACCOUNT_NAMESPACE_PATH, StoreOptions, configmap_name, read_namespace,
};
