//! The ConfigMap store through the real kube client against the fake API server.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use contrast_fake_kube_api::FakeKubeApi;
use contrast_history::{History, Store, StoreError, Transition, ZERO_HASH, transition_hash_of};
use contrast_kube_store::{
    ConfigMapStore, KubeStoreError, MANAGED_BY_LABEL, MANAGED_BY_VALUE, Owner, StoreOptions,
    discover_peers,
};
use k8s_openapi::api::core::v1::{Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use p384::ecdsa::SigningKey;

const NS: &str = "contrast-test";
const LATEST: &str = "contrast-store-transitions-latest";

fn store(fake: &FakeKubeApi) -> ConfigMapStore {
    ConfigMapStore::new(fake.client_config(NS), NS, StoreOptions::default()).unwrap()
}

fn signing_key() -> SigningKey {
    SigningKey::from_slice(&[0x5a; 48]).unwrap()
}

#[test]
fn get_set_has() {
    let fake = FakeKubeApi::start().unwrap();
    let store = store(&fake);
    assert!(!store.has("a/b").unwrap());
    let err = store.get("manifests/abc").unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        err.to_string().starts_with("manifests/abc: not found"),
        "{err}"
    );
    store.set("a/b", b"v").unwrap();
    assert!(store.has("a/b").unwrap());
    assert_eq!(store.get("a/b").unwrap(), b"v");
    store.set("a/b", b"w").unwrap();
    assert_eq!(store.get("a/b").unwrap(), b"w");
    // A second store (another replica) sees the same values.
    assert_eq!(self::store(&fake).get("a/b").unwrap(), b"w");
}

#[test]
fn compare_and_swap_semantics() {
    let fake = FakeKubeApi::start().unwrap();
    let store = store(&fake);
    contrast_history::check_compare_and_swap_semantics(&store);
    // Swapping to the same value is allowed (and a no-op for the API server).
    store.compare_and_swap("a/b", b"2", b"2").unwrap();
    assert_eq!(store.get("a/b").unwrap(), b"2");
}

#[test]
fn layout_in_configmaps() {
    let fake = FakeKubeApi::start().unwrap();
    let owner = OwnerReference {
        api_version: "apps/v1".to_owned(),
        kind: "StatefulSet".to_owned(),
        name: "coordinator".to_owned(),
        uid: "1234".to_owned(),
        ..OwnerReference::default()
    };
    let options = StoreOptions {
        owner: Owner::Reference(owner.clone()),
        ..StoreOptions::default()
    };
    let store = ConfigMapStore::new(fake.client_config(NS), NS, options).unwrap();
    assert_eq!(store.namespace(), NS);
    // Every byte value, not UTF-8: binaryData carries it base64-encoded, byte-exact.
    let value: Vec<u8> = (0..=255u8).rev().chain([0, 0xff, 0xc3]).collect();
    store
        .compare_and_swap("transitions/latest", b"", &value)
        .unwrap();
    let hex = "0f".repeat(32);
    store.set(&format!("manifests/{hex}"), b"").unwrap();

    let cm = fake.configmap(NS, LATEST).unwrap();
    assert_eq!(
        cm.metadata.labels.unwrap(),
        BTreeMap::from([(MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned())])
    );
    assert_eq!(cm.metadata.owner_references.unwrap(), vec![owner.clone()]);
    let data = cm.binary_data.unwrap();
    assert_eq!(data.keys().collect::<Vec<_>>(), ["latest"]);
    assert_eq!(data["latest"].0, value);
    assert!(cm.data.is_none());
    assert_eq!(store.get("transitions/latest").unwrap(), value);

    let cm = fake
        .configmap(NS, &format!("contrast-store-manifests-{hex}"))
        .unwrap();
    assert_eq!(cm.binary_data.unwrap()[&hex].0, b"");
    assert_eq!(cm.metadata.owner_references.unwrap(), vec![owner]);
    // An empty value is a value.
    assert!(store.has(&format!("manifests/{hex}")).unwrap());
    assert_eq!(fake.configmaps(NS).len(), 2);
}

#[test]
fn refuses_keys_kubernetes_cannot_name_without_calling_it() {
    let fake = FakeKubeApi::start().unwrap();
    let store = store(&fake);
    let before = fake.request_count();
    for key in ["x", "a/b/c", "Manifests/ab", "a/AB", "a/b-", "a/b_c"] {
        assert!(
            matches!(store.get(key), Err(StoreError::InvalidKey { .. })),
            "{key}"
        );
        assert!(
            matches!(store.set(key, b""), Err(StoreError::InvalidKey { .. })),
            "{key}"
        );
        assert!(
            matches!(store.has(key), Err(StoreError::InvalidKey { .. })),
            "{key}"
        );
        assert!(
            matches!(
                store.compare_and_swap(key, b"", b"1"),
                Err(StoreError::InvalidKey { .. })
            ),
            "{key}"
        );
    }
    assert_eq!(fake.request_count(), before);
}

#[test]
fn racing_writers_exactly_one_wins() {
    const THREADS: usize = 8;
    let fake = FakeKubeApi::start().unwrap();
    let shared = Arc::new(store(&fake));
    shared
        .compare_and_swap("transitions/latest", b"", b"start")
        .unwrap();
    for round in 0..3 {
        let old = shared.get("transitions/latest").unwrap();
        let barrier = Arc::new(Barrier::new(THREADS));
        let handles: Vec<_> = (0..THREADS)
            .map(|i| {
                // Half the threads share one store, half are replicas of their own.
                let store = if i % 2 == 0 {
                    Arc::clone(&shared)
                } else {
                    Arc::new(self::store(&fake))
                };
                let barrier = Arc::clone(&barrier);
                let old = old.clone();
                std::thread::spawn(move || {
                    let new = format!("round {round} writer {i}").into_bytes();
                    barrier.wait();
                    (
                        new.clone(),
                        store.compare_and_swap("transitions/latest", &old, &new),
                    )
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter(|(_, r)| r.is_ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        for (_, result) in &results {
            if let Err(e) = result {
                assert!(e.is_conflict(), "round {round}: {e}");
            }
        }
        assert_eq!(shared.get("transitions/latest").unwrap(), winners[0].0);
    }
}

#[test]
fn history_on_configmaps() {
    let fake = FakeKubeApi::start().unwrap();
    let h = History::new(store(&fake));
    let key = signing_key();
    let manifest = b"{\"Policies\":{}}\n";
    let first = h.append_manifest(manifest, None, &key).unwrap();
    let policy = h.set_policy(b"policy document").unwrap();
    assert_eq!(h.get_policy(policy).unwrap(), b"policy document");

    // Another replica reads everything back, verified.
    let other = History::new(store(&fake));
    assert_eq!(
        other.get_latest(key.verifying_key()).unwrap(),
        Some(first.clone())
    );
    let manifest_hash = Transition::for_manifest(manifest, ZERO_HASH).manifest_hash;
    assert_eq!(other.get_manifest(manifest_hash).unwrap(), manifest);

    // The other replica moves on; our stale update loses.
    let second = other.append_manifest(b"m1", Some(&first), &key).unwrap();
    let err = h
        .append_manifest(b"m1-late", Some(&first), &key)
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(
        h.get_latest(key.verifying_key()).unwrap(),
        Some(second.clone())
    );
    let walk = h.walk(second.transition_hash).unwrap();
    assert_eq!(walk.len(), 2);
    assert_eq!(
        transition_hash_of([&manifest[..], &b"m1"[..]]),
        second.transition_hash
    );

    let names: HashSet<String> = fake
        .configmaps(NS)
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    assert!(names.contains(LATEST), "{names:?}");
    assert!(names.contains(&format!("contrast-store-policies-{}", hex(&policy))));
    assert!(names.contains(&format!(
        "contrast-store-transitions-{}",
        hex(&second.transition_hash)
    )));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn works_inside_a_multi_thread_runtime() {
    let fake = FakeKubeApi::start().unwrap();
    let store = store(&fake);
    store
        .compare_and_swap("transitions/latest", b"", b"1")
        .unwrap();
    assert_eq!(store.get("transitions/latest").unwrap(), b"1");
    // And from spawn_blocking, as the Coordinator's staleness loop calls it.
    let store = Arc::new(store);
    let s = Arc::clone(&store);
    let value = tokio::task::spawn_blocking(move || s.get("transitions/latest"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value, b"1");
    drop(store);
}

#[tokio::test(flavor = "current_thread")]
async fn works_inside_a_current_thread_runtime() {
    let fake = FakeKubeApi::start().unwrap();
    let store = store(&fake);
    store.set("a/b", b"1").unwrap();
    assert_eq!(store.get("a/b").unwrap(), b"1");
}

async fn next_value(watch: &mut contrast_kube_store::LatestWatch) -> Vec<u8> {
    tokio::time::timeout(Duration::from_secs(10), watch.next())
        .await
        .expect("the watch reports within 10 s")
        .expect("the watch is open")
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_sees_other_writers() {
    let fake = FakeKubeApi::start().unwrap();
    let ours = store(&fake);
    let theirs = store(&fake);
    theirs
        .compare_and_swap("transitions/latest", b"", b"v1")
        .unwrap();

    let mut watch = ours.watch_latest();
    // The current value first.
    assert_eq!(next_value(&mut watch).await, b"v1");
    theirs
        .compare_and_swap("transitions/latest", b"v1", b"v2")
        .unwrap();
    assert_eq!(next_value(&mut watch).await, b"v2");
    // Other keys do not show.
    theirs.set("manifests/ab", b"x").unwrap();
    theirs
        .compare_and_swap("transitions/latest", b"v2", b"v3")
        .unwrap();
    assert_eq!(next_value(&mut watch).await, b"v3");

    // The watch restarts after the server ends it, and does not repeat what it reported.
    fake.break_watches();
    tokio::time::sleep(Duration::from_millis(200)).await;
    theirs
        .compare_and_swap("transitions/latest", b"v3", b"v4")
        .unwrap();
    assert_eq!(next_value(&mut watch).await, b"v4");
    // After compaction the watcher's resume fails with 410; it lists again and goes on.
    fake.compact();
    fake.break_watches();
    tokio::time::sleep(Duration::from_millis(200)).await;
    theirs
        .compare_and_swap("transitions/latest", b"v4", b"v5")
        .unwrap();
    assert_eq!(next_value(&mut watch).await, b"v5");
    let quiet = tokio::time::timeout(Duration::from_millis(500), watch.next()).await;
    assert!(quiet.is_err(), "no further value: {quiet:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_before_the_first_write() {
    let fake = FakeKubeApi::start().unwrap();
    let ours = store(&fake);
    let mut watch = ours.watch_latest();
    tokio::time::sleep(Duration::from_millis(200)).await;
    store(&fake)
        .compare_and_swap("transitions/latest", b"", b"first")
        .unwrap();
    assert_eq!(next_value(&mut watch).await, b"first");
}

#[test]
fn calls_time_out() {
    let fake = FakeKubeApi::start().unwrap();
    let options = StoreOptions {
        timeout: Duration::from_secs(1),
        ..StoreOptions::default()
    };
    let store = ConfigMapStore::new(fake.client_config(NS), NS, options).unwrap();
    store.set("a/b", b"1").unwrap();
    fake.set_unresponsive(true);
    for call in [
        Box::new(|| store.get("a/b").map(drop)) as Box<dyn Fn() -> Result<(), StoreError>>,
        Box::new(|| store.set("a/b", b"2")),
        Box::new(|| store.has("a/b").map(drop)),
        Box::new(|| store.compare_and_swap("a/b", b"1", b"2")),
    ] {
        let start = Instant::now();
        let err = call().unwrap_err();
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
            "{elapsed:?}"
        );
        assert!(matches!(err, StoreError::Backend { .. }), "{err}");
        let chain = contrast_platforms::error_chain(&err);
        assert!(chain.contains("did not complete within 1s"), "{chain}");
    }
    fake.set_unresponsive(false);
    assert_eq!(store.get("a/b").unwrap(), b"1");
}

#[test]
fn default_timeout_is_ten_seconds() {
    assert_eq!(StoreOptions::default().timeout, Duration::from_secs(10));
}

fn pod(name: &str, label: Option<&str>, role: Option<&str>, ready: bool, ip: Option<&str>) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: label
                .map(|l| BTreeMap::from([("app.kubernetes.io/name".to_owned(), l.to_owned())])),
            annotations: role.map(|r| {
                BTreeMap::from([(
                    "contrast.edgeless.systems/pod-role".to_owned(),
                    r.to_owned(),
                )])
            }),
            ..ObjectMeta::default()
        },
        status: Some(PodStatus {
            pod_ip: ip.map(str::to_owned),
            conditions: Some(vec![PodCondition {
                type_: "Ready".to_owned(),
                status: if ready { "True" } else { "False" }.to_owned(),
                ..PodCondition::default()
            }]),
            ..PodStatus::default()
        }),
        ..Pod::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_filters_peers() {
    let fake = FakeKubeApi::start().unwrap();
    let c = Some("coordinator");
    fake.set_pod(NS, pod("coordinator-0", c, c, true, Some("10.0.0.1")));
    fake.set_pod(NS, pod("coordinator-1", c, c, true, Some("10.0.0.2")));
    fake.set_pod(NS, pod("coordinator-2", c, c, false, Some("10.0.0.3")));
    fake.set_pod(NS, pod("coordinator-3", c, None, true, Some("10.0.0.4")));
    fake.set_pod(NS, pod("coordinator-4", c, c, true, None));
    fake.set_pod(NS, pod("web", Some("web"), c, true, Some("10.0.0.5")));
    fake.set_pod(NS, pod("unlabelled", None, c, true, Some("10.0.0.6")));
    fake.set_pod(
        "elsewhere",
        pod("coordinator-5", c, c, true, Some("10.0.0.7")),
    );

    let want: Vec<IpAddr> = vec!["10.0.0.2".parse().unwrap()];
    let store = store(&fake);
    assert_eq!(store.discover_peers("coordinator-0").await.unwrap(), want);

    let client = kube::Client::try_from(fake.client_config(NS)).unwrap();
    let found = discover_peers(client.clone(), NS, "coordinator-0", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(found, want);

    // A peer becoming ready shows up on the next call.
    fake.set_pod(NS, pod("coordinator-2", c, c, true, Some("10.0.0.3")));
    let found = discover_peers(client, NS, "coordinator-0", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        found,
        vec![
            "10.0.0.2".parse::<IpAddr>().unwrap(),
            "10.0.0.3".parse().unwrap()
        ]
    );
}

#[test]
fn owner_from_the_pods_statefulset() {
    let fake = FakeKubeApi::start().unwrap();
    let mut owned = pod("coordinator-0", Some("coordinator"), None, true, None);
    owned.metadata.owner_references = Some(vec![
        OwnerReference {
            api_version: "v1".to_owned(),
            kind: "Node".to_owned(),
            name: "n".to_owned(),
            uid: "node-uid".to_owned(),
            ..OwnerReference::default()
        },
        OwnerReference {
            api_version: "apps/v1".to_owned(),
            kind: "StatefulSet".to_owned(),
            name: "coordinator".to_owned(),
            uid: "sts-uid".to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        },
    ]);
    fake.set_pod(NS, owned);
    fake.set_pod(NS, pod("orphan", Some("coordinator"), None, true, None));

    let options = |pod: &str| StoreOptions {
        owner: Owner::OwnerOfPod(pod.to_owned()),
        ..StoreOptions::default()
    };
    let store = ConfigMapStore::new(fake.client_config(NS), NS, options("coordinator-0")).unwrap();
    let owner = store.owner().unwrap();
    assert_eq!(
        (
            owner.api_version.as_str(),
            owner.kind.as_str(),
            owner.name.as_str(),
            owner.uid.as_str()
        ),
        ("apps/v1", "StatefulSet", "coordinator", "sts-uid")
    );
    store.set("a/b", b"1").unwrap();
    let cm = fake.configmap(NS, "contrast-store-a-b").unwrap();
    assert_eq!(cm.metadata.owner_references.unwrap()[0].uid, "sts-uid");

    let err = ConfigMapStore::new(fake.client_config(NS), NS, options("orphan")).unwrap_err();
    assert!(
        matches!(err, KubeStoreError::NoStatefulSetOwner { .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("coordinator statefulset not found"),
        "{err}"
    );
    let err = ConfigMapStore::new(fake.client_config(NS), NS, options("missing")).unwrap_err();
    assert!(
        matches!(&err, KubeStoreError::Api { source: kube::Error::Api(s), .. } if s.code == 404),
        "{err}"
    );
}

#[test]
fn in_cluster_needs_the_namespace_file_and_the_cluster() {
    let dir = std::env::temp_dir().join(format!("kube-store-incluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("namespace");
    let err = ConfigMapStore::in_cluster_with_namespace_file(&missing, StoreOptions::default())
        .unwrap_err();
    assert!(matches!(err, KubeStoreError::Namespace { .. }), "{err}");
    // With the namespace but outside a pod (no KUBERNETES_SERVICE_HOST), the in-cluster
    // configuration is missing.
    std::fs::write(&missing, "ns").unwrap();
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_none() {
        let err = ConfigMapStore::in_cluster_with_namespace_file(&missing, StoreOptions::default())
            .unwrap_err();
        assert!(matches!(err, KubeStoreError::InCluster(_)), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
