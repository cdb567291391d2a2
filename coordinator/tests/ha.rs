//! High availability on Kubernetes: three Coordinator processes share the history in
//! ConfigMaps of a project-provided API server (fake-kube-api, used through kube-rs) and
//! find each other through its pod list. A replica that starts later, or restarts, recovers
//! from a ready peer without the user; an update on one replica makes the others stale
//! until they recover the new manifest; of two simultaneous updates on different replicas
//! exactly one wins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use contrast_fake_kube_api::FakeKubeApi;
use contrast_testkit::{CoordinatorProcess, Deployment, TempDir, http_get, random_loopback};
use k8s_openapi::api::core::v1::Pod;

struct Replica {
    name: String,
    ip: IpAddr,
    process: CoordinatorProcess,
    _store: TempDir,
}

fn pod(name: &str, ip: IpAddr, ready: bool) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "namespace": "default",
            "labels": {"app.kubernetes.io/name": "coordinator"},
            "annotations": {"contrast.edgeless.systems/pod-role": "coordinator"},
        },
        "status": {
            "podIP": ip.to_string(),
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
        },
    }))
    .unwrap()
}

fn start(deployment: &Deployment, kubeconfig: &Path, name: &str, ip: IpAddr) -> Replica {
    let store = TempDir::new("ha-unused-store");
    let extra: Vec<String> = [
        "--store",
        "kubernetes",
        "--namespace",
        "default",
        "--pod-name",
        name,
        "--store-owner",
        "none",
        "--kubeconfig",
    ]
    .into_iter()
    .map(str::to_owned)
    .chain([kubeconfig.display().to_string()])
    .collect();
    let mut process = CoordinatorProcess::start(
        Path::new(common::COORDINATOR),
        deployment,
        store.path(),
        ip,
        &extra,
    );
    process.wait_probe("/probe/startup", 200, Duration::from_secs(60));
    Replica {
        name: name.to_owned(),
        ip,
        process,
        _store: store,
    }
}

fn ready(replica: &Replica) -> bool {
    http_get(&replica.process.probe_addr(), "/probe/readiness").is_some_and(|(code, _)| code == 200)
}

/// What the kubelet does: the pods' Ready conditions follow the readiness probes.
fn sync_pods(api: &FakeKubeApi, replicas: &[&Replica]) {
    for replica in replicas {
        api.set_pod("default", pod(&replica.name, replica.ip, ready(replica)));
    }
}

/// Waits until `condition` holds, keeping the pods in sync meanwhile.
fn wait(api: &FakeKubeApi, replicas: &[&Replica], what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        sync_pods(api, replicas);
        if condition() {
            return;
        }
        if Instant::now() > deadline {
            for replica in replicas {
                eprintln!("--- {} ---\n{}", replica.name, replica.process.log_text());
            }
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The history length and the mesh CA's public key a replica serves. Replicas build their
/// own CA certificates (serials, validity) around the same keys, so the key is what a
/// workload's trust depends on.
async fn mesh_ca(deployment: &Deployment, replica: &Replica) -> (usize, Vec<u8>) {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let validators = common::coordinator_validators(deployment);
    let mut client = common::client(&replica.process.user_addr(), &validators, None).await;
    let response = common::get_manifests(&mut client).await.unwrap();
    let pem = String::from_utf8(response.mesh_ca).unwrap();
    let der = contrast_attestation::pem::decode_all(&pem, "CERTIFICATE")
        .unwrap()
        .remove(0);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    (response.manifests.len(), cert.public_key().raw.to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_recover_from_each_other_through_the_kubernetes_api() {
    let api = FakeKubeApi::start().unwrap();
    let dir = TempDir::new("ha");
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig, "default").unwrap();
    let deployment = Deployment::new(&["web"]);
    let names = ["coordinator-0", "coordinator-1", "coordinator-2"];
    let ips: Vec<IpAddr> = names.iter().map(|_| random_loopback()).collect();
    let a = start(&deployment, &kubeconfig, names[0], ips[0]);
    let b = start(&deployment, &kubeconfig, names[1], ips[1]);
    let c = start(&deployment, &kubeconfig, names[2], ips[2]);
    sync_pods(&api, &[&a, &b, &c]);

    // The user sets the manifest on one replica; the others recover from it on their own.
    let validators = common::coordinator_validators(&deployment);
    let mut client_a = common::client(
        &a.process.user_addr(),
        &validators,
        Some(common::owner_key(&deployment)),
    )
    .await;
    let manifest = deployment.manifest.encode();
    common::first_set(&mut client_a, &deployment, &manifest).await;
    wait(&api, &[&a, &b, &c], "all three replicas ready", || {
        ready(&a) && ready(&b) && ready(&c)
    });
    let (_, ca_a) = mesh_ca(&deployment, &a).await;
    assert_eq!(
        mesh_ca(&deployment, &b).await.1,
        ca_a,
        "B recovered A's mesh CA key"
    );
    assert_eq!(
        mesh_ca(&deployment, &c).await.1,
        ca_a,
        "C recovered A's mesh CA key"
    );
    assert!(
        api.configmap("default", "contrast-store-transitions-latest")
            .is_some(),
        "the history lives in ConfigMaps"
    );

    // A killed replica comes back ready through a peer, with the same mesh CA.
    let Replica {
        name,
        ip,
        mut process,
        _store,
    } = b;
    process.kill();
    drop(process);
    api.set_pod("default", pod(&name, ip, false));
    let restarted = Instant::now();
    let b = start(&deployment, &kubeconfig, &name, ip);
    wait(&api, &[&a, &b, &c], "the restarted replica ready", || {
        ready(&b)
    });
    eprintln!(
        "restarted replica ready through peer recovery after {:?} (including process start)",
        restarted.elapsed()
    );
    assert_eq!(mesh_ca(&deployment, &b).await.1, ca_a);

    // An update on A makes B and C stale; they recover the new manifest (and A's new mesh CA).
    let variant = common::manifest_variant(&deployment, "v2");
    client_a
        .set_manifest(common::set_request(&deployment, &variant))
        .await
        .unwrap();
    let (_, new_ca) = mesh_ca(&deployment, &a).await;
    assert_ne!(new_ca, ca_a, "an update rotates the mesh CA");
    for replica in [&b, &c] {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            sync_pods(&api, &[&a, &b, &c]);
            if ready(replica) && mesh_ca(&deployment, replica).await == (2, new_ca.clone()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not catch up:\n{}",
                replica.name,
                replica.process.log_text()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // Two updates at the same time on different replicas: exactly one wins.
    let mut client_b = common::client(
        &b.process.user_addr(),
        &validators,
        Some(common::owner_key(&deployment)),
    )
    .await;
    let on_a = common::set_request(
        &deployment,
        &common::manifest_variant(&deployment, "from-a"),
    );
    let on_b = common::set_request(
        &deployment,
        &common::manifest_variant(&deployment, "from-b"),
    );
    let (result_a, result_b) =
        tokio::join!(client_a.set_manifest(on_a), client_b.set_manifest(on_b));
    eprintln!(
        "A: {:?}\nB: {:?}",
        result_a.as_ref().map(|_| ()),
        result_b.as_ref().map(|_| ())
    );
    assert!(
        result_a.is_ok() != result_b.is_ok(),
        "exactly one of two simultaneous updates wins"
    );
}
