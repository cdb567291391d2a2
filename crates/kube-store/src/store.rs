//! The ConfigMap store (docs/protocol.md §2.4).

use std::collections::BTreeMap;
use std::future::Future;

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use contrast_history::{Store, StoreError, validate_key};
use contrast_runtime_thread::RuntimeThread;
use futures_util::StreamExt as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Api;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::mpsc;

use crate::KubeStoreError;
use crate::discovery::{discover_peers, statefulset_owner, timed};

/// The timeout of every API call unless [`StoreOptions::timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Where a pod finds its namespace.
pub const SERVICE_ACCOUNT_NAMESPACE_PATH: &str =
    "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
/// The label every store ConfigMap carries …
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// … with this value.
pub const MANAGED_BY_VALUE: &str = "contrast.edgeless.systems";

/// The key whose changes [`ConfigMapStore::watch_latest`] reports.
const LATEST_KEY: &str = "transitions/latest";
/// Longest key whose ConfigMap name stays within the 253 characters of an object name.
const MAX_NAME_LEN: usize = 253;
const NAME_PREFIX: &str = "contrast-store-";
/// How long the API server keeps one watch request open before the watcher renews it.
const WATCH_SECONDS: u32 = 60;

/// Reads the pod's namespace from the service account file (normally
/// [`SERVICE_ACCOUNT_NAMESPACE_PATH`]).
pub fn read_namespace(path: &Path) -> Result<String, KubeStoreError> {
    let text = std::fs::read_to_string(path).map_err(|source| KubeStoreError::Namespace {
        path: path.to_owned(),
        source,
    })?;
    let namespace = text.trim();
    if namespace.is_empty() {
        return Err(KubeStoreError::EmptyNamespace {
            path: path.to_owned(),
        });
    }
    Ok(namespace.to_owned())
}

/// The ConfigMap name and binaryData key of a store key: `manifests/<hex>` is
/// `contrast-store-manifests-<hex>` and `<hex>`. Keys Kubernetes cannot name (upper-case
/// letters, a name ending in `-`, too long) are refused as invalid.
pub fn configmap_name(key: &str) -> Result<(String, String), StoreError> {
    validate_key(key)?;
    let invalid = |reason| StoreError::InvalidKey {
        key: key.to_owned(),
        reason,
    };
    let Some((class, name)) = key.split_once('/') else {
        return Err(invalid("missing '/' between class and name"));
    };
    if key.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(invalid(
            "upper-case letters cannot be part of a Kubernetes ConfigMap name",
        ));
    }
    if name.ends_with('-') {
        return Err(invalid("a ConfigMap name cannot end with '-'"));
    }
    let configmap = format!("{NAME_PREFIX}{class}-{name}");
    if configmap.len() > MAX_NAME_LEN {
        return Err(invalid(
            "too long for a ConfigMap name (at most 238 characters)",
        ));
    }
    Ok((configmap, name.to_owned()))
}

/// Which StatefulSet owns the store's ConfigMaps.
#[derive(Debug, Clone, Default)]
pub enum Owner {
    /// No owner: the ConfigMaps outlive the Coordinator (tests, manual setups).
    #[default]
    None,
    /// This owner reference.
    Reference(OwnerReference),
    /// The `apps/v1` StatefulSet that owns this pod (the Coordinator's own pod, from
    /// `HOSTNAME`); the store refuses to start if there is none.
    OwnerOfPod(String),
}

/// Settings of a [`ConfigMapStore`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// The timeout of every API call.
    pub timeout: Duration,
    /// The owner of the ConfigMaps the store creates.
    pub owner: Owner,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            timeout: DEFAULT_TIMEOUT,
            owner: Owner::None,
        }
    }
}

/// The runtime thread the API calls run on. Dropping it stops the thread.
#[derive(Debug)]
struct Worker {
    thread: RuntimeThread,
}

impl Worker {
    fn start() -> Result<Self, KubeStoreError> {
        Ok(Self {
            thread: RuntimeThread::start("contrast-kube-store").map_err(KubeStoreError::Runtime)?,
        })
    }

    /// Runs `call` on the worker and waits for it, blocking this thread.
    fn run<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T, KubeStoreError>> + Send + 'static,
    ) -> Result<T, KubeStoreError> {
        self.thread
            .block_on(call)
            .map_err(|_| KubeStoreError::RuntimeGone)?
    }

    /// Runs `call` on the worker and awaits it from any runtime.
    async fn run_async<T: Send + 'static>(
        &self,
        call: impl Future<Output = Result<T, KubeStoreError>> + Send + 'static,
    ) -> Result<T, KubeStoreError> {
        self.thread
            .run(call)
            .await
            .map_err(|_| KubeStoreError::RuntimeGone)?
    }
}

/// What the API calls share.
struct Inner {
    client: kube::Client,
    api: Api<ConfigMap>,
    namespace: String,
    timeout: Duration,
    owner: Option<OwnerReference>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("namespace", &self.namespace)
            .field("timeout", &self.timeout)
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

/// What a key's value is in a ConfigMap: the bytes under the data key, absent counting as
/// empty (the same rule as the other stores' compare-and-swap).
fn value_in(configmap: &ConfigMap, data_key: &str) -> Option<Vec<u8>> {
    configmap
        .binary_data
        .as_ref()
        .and_then(|data| data.get(data_key))
        .map(|value| value.0.clone())
}

fn is_status(error: &KubeStoreError, code: u16) -> bool {
    matches!(error, KubeStoreError::Api { source: kube::Error::Api(status), .. } if status.code == code)
}

impl Inner {
    fn object(&self, name: &str) -> String {
        format!("configmap {}/{name}", self.namespace)
    }

    fn new_configmap(&self, name: &str, data_key: &str, value: &[u8]) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY_LABEL.to_owned(),
                    MANAGED_BY_VALUE.to_owned(),
                )])),
                owner_references: self.owner.clone().map(|owner| vec![owner]),
                ..ObjectMeta::default()
            },
            binary_data: Some(BTreeMap::from([(
                data_key.to_owned(),
                ByteString(value.to_vec()),
            )])),
            ..ConfigMap::default()
        }
    }

    async fn get(&self, name: &str) -> Result<Option<ConfigMap>, KubeStoreError> {
        timed(
            self.timeout,
            "get",
            &self.object(name),
            self.api.get_opt(name),
        )
        .await
    }

    async fn create(&self, configmap: &ConfigMap, name: &str) -> Result<(), KubeStoreError> {
        let params = PostParams::default();
        let call = self.api.create(&params, configmap);
        timed(self.timeout, "create", &self.object(name), call)
            .await
            .map(|_| ())
    }

    async fn replace(&self, configmap: &ConfigMap, name: &str) -> Result<(), KubeStoreError> {
        let params = PostParams::default();
        let call = self.api.replace(name, &params, configmap);
        timed(self.timeout, "update", &self.object(name), call)
            .await
            .map(|_| ())
    }

    async fn set(&self, name: &str, data_key: &str, value: &[u8]) -> Result<(), KubeStoreError> {
        let configmap = self.new_configmap(name, data_key, value);
        match self.create(&configmap, name).await {
            Err(e) if is_status(&e, 409) => {
                // Without a resourceVersion the update is unconditional: set replaces.
                self.replace(&configmap, name).await
            }
            other => other,
        }
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        name: &str,
        data_key: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<(), StoreError> {
        let conflict = || StoreError::Conflict {
            key: key.to_owned(),
        };
        let io = |e| into_store_error(key, e);
        let Some(mut current) = self.get(name).await.map_err(io)? else {
            if !old.is_empty() {
                return Err(conflict());
            }
            let configmap = self.new_configmap(name, data_key, new);
            return match self.create(&configmap, name).await {
                // Another writer created it between our GET and CREATE.
                Err(e) if is_status(&e, 409) => Err(conflict()),
                other => other.map_err(io),
            };
        };
        if value_in(&current, data_key).unwrap_or_default() != old {
            return Err(conflict());
        }
        current
            .binary_data
            .get_or_insert_with(BTreeMap::new)
            .insert(data_key.to_owned(), ByteString(new.to_vec()));
        // The GET's resourceVersion stays in the object: a racing writer that updated
        // in between makes this a 409, and a deletion in between a 404.
        match self.replace(&current, name).await {
            Err(e) if is_status(&e, 409) || is_status(&e, 404) => {
                tracing::debug!(key, "compare-and-swap lost: a racing writer won");
                Err(conflict())
            }
            other => other.map_err(io),
        }
    }
}

/// Reports a Kubernetes failure through the trait's error type.
fn into_store_error(key: &str, error: KubeStoreError) -> StoreError {
    let action = match &error {
        KubeStoreError::Timeout { .. } => "reach the Kubernetes API for",
        _ => "access the Kubernetes ConfigMap for",
    };
    StoreError::Backend {
        action,
        key: key.to_owned(),
        source: Box::new(error),
    }
}

/// The history [`Store`] in Kubernetes ConfigMaps (see the crate documentation).
#[derive(Debug)]
pub struct ConfigMapStore {
    inner: Arc<Inner>,
    // Dropped last: the runtime must outlive every call on it.
    worker: Worker,
}

impl ConfigMapStore {
    /// A store in `namespace` of the cluster `config` points at.
    pub fn new(
        mut config: kube::Config,
        namespace: &str,
        options: StoreOptions,
    ) -> Result<Self, KubeStoreError> {
        // Single calls have the timeout around them; the watch has none, so a read timeout
        // just above the watch's own duration ends a watch whose server stopped answering.
        config.connect_timeout = Some(options.timeout);
        config
            .read_timeout
            .get_or_insert(Duration::from_secs(WATCH_SECONDS.into()) + options.timeout);
        let worker = Worker::start()?;
        let namespace = namespace.to_owned();
        let inner = worker.run(async move {
            // The client's connection task must live on the worker's runtime.
            let client = kube::Client::try_from(config).map_err(KubeStoreError::Client)?;
            let owner = match options.owner {
                Owner::None => None,
                Owner::Reference(owner) => Some(owner),
                Owner::OwnerOfPod(pod) => Some(
                    statefulset_owner(client.clone(), &namespace, &pod, options.timeout).await?,
                ),
            };
            Ok(Inner {
                api: Api::namespaced(client.clone(), &namespace),
                client,
                namespace,
                timeout: options.timeout,
                owner,
            })
        })?;
        Ok(Self {
            inner: Arc::new(inner),
            worker,
        })
    }

    /// The store of a Coordinator running in a pod: in-cluster configuration, the
    /// namespace from [`SERVICE_ACCOUNT_NAMESPACE_PATH`].
    pub fn in_cluster(options: StoreOptions) -> Result<Self, KubeStoreError> {
        Self::in_cluster_with_namespace_file(Path::new(SERVICE_ACCOUNT_NAMESPACE_PATH), options)
    }

    /// Like [`in_cluster`](Self::in_cluster), with the namespace read from
    /// `namespace_file`.
    pub fn in_cluster_with_namespace_file(
        namespace_file: &Path,
        options: StoreOptions,
    ) -> Result<Self, KubeStoreError> {
        let namespace = read_namespace(namespace_file)?;
        let config = kube::Config::incluster().map_err(KubeStoreError::InCluster)?;
        Self::new(config, &namespace, options)
    }

    /// The namespace the ConfigMaps live in.
    pub fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    /// The owner reference the store puts on new ConfigMaps, if any.
    pub fn owner(&self) -> Option<&OwnerReference> {
        self.inner.owner.as_ref()
    }

    /// Watches `transitions/latest`: the returned [`LatestWatch`] yields its current value
    /// first (if there is one), then every new value. The watch restarts by itself after
    /// errors (with backoff); values seen again after a restart are not repeated. It stops
    /// when the [`LatestWatch`] is dropped.
    pub fn watch_latest(&self) -> LatestWatch {
        let (tx, rx) = mpsc::channel(16);
        let inner = self.inner.clone();
        self.worker.thread.handle().spawn(async move {
            let (name, data_key) = match configmap_name(LATEST_KEY) {
                Ok(names) => names,
                Err(e) => {
                    tracing::error!(error = %e, "cannot watch the latest pointer");
                    return;
                }
            };
            let config = watcher::Config::default()
                .timeout(WATCH_SECONDS)
                .fields(&format!("metadata.name={name}"))
                .labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}"));
            let events = watcher(inner.api.clone(), config).default_backoff();
            futures_util::pin_mut!(events);
            let mut last: Option<Vec<u8>> = None;
            loop {
                let event = tokio::select! {
                    _ = tx.closed() => break,
                    event = events.next() => event,
                };
                match event {
                    None => break,
                    Some(Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm))) => {
                        let Some(value) = value_in(&cm, &data_key) else {
                            continue;
                        };
                        if last.as_ref() == Some(&value) {
                            continue;
                        }
                        last = Some(value.clone());
                        if tx.send(value).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "watch on transitions/latest failed; restarting");
                    }
                }
            }
        });
        LatestWatch { values: rx }
    }

    /// The IPs of the ready Coordinator peers other than `own_pod_name`, through this
    /// store's client and namespace (see [`discover_peers`]).
    pub async fn discover_peers(&self, own_pod_name: &str) -> Result<Vec<IpAddr>, KubeStoreError> {
        let inner = self.inner.clone();
        let own = own_pod_name.to_owned();
        self.worker
            .run_async(async move {
                discover_peers(inner.client.clone(), &inner.namespace, &own, inner.timeout).await
            })
            .await
    }
}

impl Store for ConfigMapStore {
    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let (name, data_key) = configmap_name(key)?;
        let inner = self.inner.clone();
        let configmap = self
            .worker
            .run(async move { inner.get(&name).await })
            .map_err(|e| into_store_error(key, e))?;
        configmap
            .and_then(|cm| value_in(&cm, &data_key))
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_owned(),
            })
    }

    fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        let (name, data_key) = configmap_name(key)?;
        let inner = self.inner.clone();
        let value = value.to_vec();
        self.worker
            .run(async move { inner.set(&name, &data_key, &value).await })
            .map_err(|e| into_store_error(key, e))
    }

    fn has(&self, key: &str) -> Result<bool, StoreError> {
        match self.get(key) {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn compare_and_swap(&self, key: &str, old: &[u8], new: &[u8]) -> Result<(), StoreError> {
        let (name, data_key) = configmap_name(key)?;
        let inner = self.inner.clone();
        let (key_owned, old, new) = (key.to_owned(), old.to_vec(), new.to_vec());
        let result = self.worker.run(async move {
            Ok(inner
                .compare_and_swap(&key_owned, &name, &data_key, &old, &new)
                .await)
        });
        match result {
            Ok(result) => result,
            Err(e) => Err(into_store_error(key, e)),
        }
    }
}

/// New values of `transitions/latest` (see [`ConfigMapStore::watch_latest`]).
#[derive(Debug)]
pub struct LatestWatch {
    values: mpsc::Receiver<Vec<u8>>,
}

impl LatestWatch {
    /// The next new value; `None` only when the store is gone.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        self.values.recv().await
    }

    /// The channel the values arrive on.
    pub fn into_receiver(self) -> mpsc::Receiver<Vec<u8>> {
        self.values
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            configmap_name("transitions/latest").unwrap(),
            (
                "contrast-store-transitions-latest".to_owned(),
                "latest".to_owned()
            )
        );
        let hex = "ab".repeat(32);
        assert_eq!(
            configmap_name(&format!("manifests/{hex}")).unwrap(),
            (format!("contrast-store-manifests-{hex}"), hex.clone())
        );
        for (key, reason) in [
            ("x", "missing '/'"),
            ("a/b/c", "second '/'"),
            ("Manifests/ab", "upper-case"),
            ("manifests/AB", "upper-case"),
            ("manifests/ab-", "end with '-'"),
        ] {
            let err = configmap_name(key).unwrap_err();
            assert!(matches!(err, StoreError::InvalidKey { .. }), "{key}: {err}");
            assert!(err.to_string().contains(reason), "{key}: {err}");
        }
        let longest = format!("a/{}", "b".repeat(MAX_NAME_LEN - NAME_PREFIX.len() - 2));
        assert_eq!(configmap_name(&longest).unwrap().0.len(), MAX_NAME_LEN);
        let too_long = format!("a/{}", "b".repeat(MAX_NAME_LEN - NAME_PREFIX.len() - 1));
        assert!(
            configmap_name(&too_long)
                .unwrap_err()
                .to_string()
                .contains("too long")
        );
    }

    #[test]
    fn namespace_file() {
        let dir = std::env::temp_dir().join(format!("kube-store-ns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("namespace");
        std::fs::write(&path, "contrast-ns\n").unwrap();
        assert_eq!(read_namespace(&path).unwrap(), "contrast-ns");
        std::fs::write(&path, " \n").unwrap();
        assert!(matches!(
            read_namespace(&path),
            Err(KubeStoreError::EmptyNamespace { .. })
        ));
        let missing = dir.join("missing");
        let err = read_namespace(&missing).unwrap_err();
        assert!(err.to_string().contains("service account"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
