//! The fake against the real kube client and kubectl.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use contrast_fake_kube_api::FakeKubeApi;
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};

const NS: &str = "contrast";

fn configmap(name: &str, label: Option<&str>, value: &[u8]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: label.map(|l| BTreeMap::from([("app".to_owned(), l.to_owned())])),
            ..ObjectMeta::default()
        },
        binary_data: Some(BTreeMap::from([(
            "v".to_owned(),
            ByteString(value.to_vec()),
        )])),
        ..ConfigMap::default()
    }
}

fn api_status(err: kube::Error) -> (u16, String, String) {
    match err {
        kube::Error::Api(status) => (status.code, status.reason, status.message),
        other => panic!("expected an API status, got {other}"),
    }
}

async fn client(fake: &FakeKubeApi) -> kube::Client {
    kube::Client::try_from(fake.client_config(NS)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn configmap_create_get_replace_delete() {
    let fake = FakeKubeApi::start().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&fake).await, NS);
    let pp = PostParams::default();

    let created = api
        .create(&pp, &configmap("a", Some("x"), b"\x00\xff1"))
        .await
        .unwrap();
    let rv1 = created.metadata.resource_version.clone().unwrap();
    assert_eq!(created.metadata.namespace.as_deref(), Some(NS));
    assert!(created.metadata.uid.is_some());

    let (code, reason, message) = api_status(
        api.create(&pp, &configmap("a", None, b""))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(message, "configmaps \"a\" already exists");

    let got = api.get("a").await.unwrap();
    assert_eq!(got.binary_data.unwrap()["v"].0, b"\x00\xff1");

    // Replace with the current resourceVersion: accepted, new version.
    let mut update = created.clone();
    update.binary_data = Some(BTreeMap::from([(
        "v".to_owned(),
        ByteString(b"2".to_vec()),
    )]));
    let replaced = api.replace("a", &pp, &update).await.unwrap();
    let rv2 = replaced.metadata.resource_version.clone().unwrap();
    assert!(rv2.parse::<u64>().unwrap() > rv1.parse::<u64>().unwrap());

    // Replace with the old resourceVersion: a racing writer lost.
    let (code, reason, message) = api_status(api.replace("a", &pp, &update).await.unwrap_err());
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(
        message.contains("the object has been modified"),
        "{message}"
    );

    // An update that changes nothing keeps the version.
    let same = api.replace("a", &pp, &replaced).await.unwrap();
    assert_eq!(
        same.metadata.resource_version.as_deref(),
        Some(rv2.as_str())
    );

    // Without a resourceVersion the update is unconditional.
    let mut unconditional = configmap("a", Some("x"), b"3");
    unconditional.metadata.resource_version = None;
    api.replace("a", &pp, &unconditional).await.unwrap();
    assert_eq!(
        fake.configmap(NS, "a").unwrap().binary_data.unwrap()["v"].0,
        b"3"
    );

    let (code, reason, _) = api_status(api.get("missing").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
    assert!(api.get_opt("missing").await.unwrap().is_none());
    let (code, _, _) = api_status(
        api.replace("missing", &pp, &configmap("missing", None, b""))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 404);

    let (code, reason, message) = api_status(
        api.create(&pp, &configmap("Upper", None, b""))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(message.contains("RFC 1123"), "{message}");

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(api.get_opt("a").await.unwrap().is_none());
    assert!(fake.configmaps(NS).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn configmap_list_selectors_and_namespaces() {
    let fake = FakeKubeApi::start().unwrap();
    let client = client(&fake).await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let other: Api<ConfigMap> = Api::namespaced(client, "other");
    let pp = PostParams::default();
    api.create(&pp, &configmap("a", Some("x"), b""))
        .await
        .unwrap();
    api.create(&pp, &configmap("b", Some("y"), b""))
        .await
        .unwrap();
    api.create(&pp, &configmap("c", None, b"")).await.unwrap();
    other
        .create(&pp, &configmap("a", Some("x"), b""))
        .await
        .unwrap();

    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap())
            .collect()
    };
    assert_eq!(
        names(api.list(&ListParams::default()).await.unwrap()),
        ["a", "b", "c"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app=x"))
                .await
                .unwrap()
        ),
        ["a"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().labels("app"))
                .await
                .unwrap()
        ),
        ["a", "b"]
    );
    assert_eq!(
        names(
            api.list(&ListParams::default().fields("metadata.name=b"))
                .await
                .unwrap()
        ),
        ["b"]
    );
    assert_eq!(
        names(other.list(&ListParams::default()).await.unwrap()),
        ["a"]
    );
    let err = api
        .list(&ListParams::default().fields("data.x=1"))
        .await
        .unwrap_err();
    assert_eq!(api_status(err).0, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_from_resource_version_and_from_now() {
    let fake = FakeKubeApi::start().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&fake).await, NS);
    let pp = PostParams::default();
    let a = api
        .create(&pp, &configmap("a", Some("x"), b"1"))
        .await
        .unwrap();
    let rv_a = a.metadata.resource_version.clone().unwrap();
    api.create(&pp, &configmap("b", Some("x"), b"1"))
        .await
        .unwrap();

    // From a resourceVersion: exactly the later changes, in order.
    let params = WatchParams::default()
        .fields("metadata.name=b")
        .disable_bookmarks();
    let mut events = api.watch(&params, &rv_a).await.unwrap().boxed();
    match events.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("b")),
        other => panic!("expected ADDED b, got {other:?}"),
    }
    let mut b = api.get("b").await.unwrap();
    b.binary_data = Some(BTreeMap::from([(
        "v".to_owned(),
        ByteString(b"2".to_vec()),
    )]));
    api.replace("b", &pp, &b).await.unwrap();
    // A change of another object is filtered out by the field selector.
    let mut a2 = a.clone();
    a2.binary_data = Some(BTreeMap::from([(
        "v".to_owned(),
        ByteString(b"9".to_vec()),
    )]));
    api.replace("a", &pp, &a2).await.unwrap();
    api.delete("b", &DeleteParams::default()).await.unwrap();
    match events.try_next().await.unwrap().unwrap() {
        WatchEvent::Modified(cm) => assert_eq!(cm.binary_data.unwrap()["v"].0, b"2"),
        other => panic!("expected MODIFIED b, got {other:?}"),
    }
    match events.try_next().await.unwrap().unwrap() {
        WatchEvent::Deleted(cm) => assert_eq!(cm.metadata.name.as_deref(), Some("b")),
        other => panic!("expected DELETED b, got {other:?}"),
    }

    // From "0": the current objects as ADDED; a bookmark only when asked for.
    let params = WatchParams::default().labels("app=x").disable_bookmarks();
    let mut events = api.watch(&params, "0").await.unwrap().boxed();
    match events.try_next().await.unwrap().unwrap() {
        WatchEvent::Added(cm) => assert_eq!(cm.binary_data.unwrap()["v"].0, b"9"),
        other => panic!("expected ADDED a, got {other:?}"),
    }
    let quiet = tokio::time::timeout(Duration::from_millis(300), events.try_next()).await;
    assert!(quiet.is_err(), "no bookmark was asked for: {quiet:?}");

    let params = WatchParams::default().labels("app=x");
    let mut events = api.watch(&params, "0").await.unwrap().boxed();
    assert!(matches!(
        events.try_next().await.unwrap().unwrap(),
        WatchEvent::Added(_)
    ));
    assert!(matches!(
        events.try_next().await.unwrap().unwrap(),
        WatchEvent::Bookmark(_)
    ));

    // timeoutSeconds ends the watch; break_watches ends it early.
    let params = WatchParams::default().timeout(1).disable_bookmarks();
    let rv = fake.resource_version().to_string();
    let mut events = api.watch(&params, &rv).await.unwrap().boxed();
    let ended = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
    assert!(matches!(ended, Ok(None)), "{ended:?}");
    let params = WatchParams::default().disable_bookmarks();
    let mut events = api.watch(&params, &rv).await.unwrap().boxed();
    tokio::time::sleep(Duration::from_millis(100)).await;
    fake.break_watches();
    let ended = tokio::time::timeout(Duration::from_secs(5), events.next()).await;
    assert!(matches!(ended, Ok(None)), "{ended:?}");
}

fn pod(name: &str, app: &str, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                app.to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        status: Some(PodStatus {
            pod_ip: Some("10.0.0.1".to_owned()),
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
async fn pods_list_and_get() {
    let fake = FakeKubeApi::start().unwrap();
    let api: Api<Pod> = Api::namespaced(client(&fake).await, NS);
    let first = fake.set_pod(NS, pod("coordinator-0", "coordinator", false));
    fake.set_pod(NS, pod("web", "web", true));
    fake.set_pod("other", pod("coordinator-9", "coordinator", true));
    let updated = fake.set_pod(NS, pod("coordinator-0", "coordinator", true));
    assert_eq!(first.metadata.uid, updated.metadata.uid);
    assert_ne!(
        first.metadata.resource_version,
        updated.metadata.resource_version
    );

    let list = api
        .list(&ListParams::default().labels("app.kubernetes.io/name=coordinator"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    let got = &list.items[0];
    assert_eq!(got.metadata.name.as_deref(), Some("coordinator-0"));
    let conditions = got.status.as_ref().unwrap().conditions.as_ref().unwrap();
    assert_eq!(conditions[0].status, "True");
    assert_eq!(
        api.get("web").await.unwrap().metadata.namespace.as_deref(),
        Some(NS)
    );
    assert!(fake.delete_pod(NS, "web"));
    assert!(!fake.delete_pod(NS, "web"));
    assert_eq!(api_status(api.get("web").await.unwrap_err()).0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn unresponsive_server_hangs() {
    let fake = FakeKubeApi::start().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&fake).await, NS);
    fake.set_unresponsive(true);
    let hung = tokio::time::timeout(Duration::from_millis(500), api.get_opt("a")).await;
    assert!(hung.is_err(), "{hung:?}");
    fake.set_unresponsive(false);
    assert!(api.get_opt("a").await.unwrap().is_none());
}

/// kubectl is part of this machine's test toolchain: its absence is a failure.
fn kubectl(kubeconfig: &std::path::Path, cache: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("kubectl must be on PATH for this test: {e}"));
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn kubectl_get_and_create() {
    let fake = FakeKubeApi::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&kubeconfig, NS).unwrap();
    let cache = dir.path().join("cache");

    let out = kubectl(
        &kubeconfig,
        &cache,
        &[
            "create",
            "configmap",
            "from-kubectl",
            "--from-literal=greeting=hello",
        ],
    );
    assert!(out.contains("from-kubectl"), "{out}");
    let stored = fake.configmap(NS, "from-kubectl").unwrap();
    assert_eq!(stored.data.unwrap()["greeting"], "hello");

    let out = kubectl(&kubeconfig, &cache, &["get", "configmaps", "-o", "json"]);
    let list: serde_json::Value = serde_json::from_str(&out).unwrap();
    let items = list["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["metadata"]["name"], "from-kubectl");
    assert_eq!(items[0]["data"]["greeting"], "hello");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_from_a_compacted_version_expires() {
    let fake = FakeKubeApi::start().unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client(&fake).await, NS);
    let a = api
        .create(&PostParams::default(), &configmap("a", None, b""))
        .await
        .unwrap();
    let old = a.metadata.resource_version.unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    fake.compact();
    let params = WatchParams::default().disable_bookmarks();
    let mut events = api.watch(&params, &old).await.unwrap().boxed();
    match events.try_next().await.unwrap().unwrap() {
        WatchEvent::Error(status) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // From the current version the watch works.
    let now = fake.resource_version().to_string();
    let mut events = api.watch(&params, &now).await.unwrap().boxed();
    api.create(&PostParams::default(), &configmap("b", None, b""))
        .await
        .unwrap();
    assert!(matches!(
        events.try_next().await.unwrap().unwrap(),
        WatchEvent::Added(_)
    ));
}
