//! High availability on Kubernetes: three Coordinator processes share the history in
//! ConfigMaps of a project-provided API server (fake-kube-api, used through kube-rs) and
//! find each other through its pod list. A replica that starts later, or restarts, recovers
//! from a ready peer without the user; an update on one replica makes the others stale
//! until they recover the new manifest; of two simultaneous updates on different replicas
//! exactly one wins.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use contrast_testkit::ha::{Cluster, Replica};
use contrast_testkit::{Deployment, random_loopback};

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
    let cluster = Cluster::start();
    let deployment = Deployment::new(&["web"]);
    let binary = Path::new(common::COORDINATOR);
    let start = |name: &str| cluster.start_replica(binary, &deployment, name, random_loopback());
    let a = start("coordinator-0");
    let b = start("coordinator-1");
    let c = start("coordinator-2");
    cluster.sync_pods(&[&a, &b, &c]);

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
    cluster.wait(&[&a, &b, &c], "all three replicas ready", || {
        a.ready() && b.ready() && c.ready()
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
        cluster
            .api
            .configmap("default", "contrast-store-transitions-latest")
            .is_some(),
        "the history lives in ConfigMaps"
    );

    // A killed replica comes back ready through a peer, with the same mesh CA.
    let (name, ip) = cluster.kill(b);
    let restarted = Instant::now();
    let b = cluster.start_replica(binary, &deployment, &name, ip);
    cluster.wait(&[&a, &b, &c], "the restarted replica ready", || b.ready());
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
            cluster.sync_pods(&[&a, &b, &c]);
            if replica.ready() && mesh_ca(&deployment, replica).await == (2, new_ca.clone()) {
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
