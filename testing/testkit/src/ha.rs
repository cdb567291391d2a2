//! Coordinator replicas on Kubernetes, on loopback: one fake API server (ConfigMap store,
//! pod list) shared by Coordinator processes, and the kubelet's part — the pods' Ready
//! conditions follow the replicas' readiness probes — done by the test.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use contrast_fake_kube_api::FakeKubeApi;
use k8s_openapi::api::core::v1::Pod;

use crate::{CoordinatorProcess, Deployment, TempDir, http_get};

/// The namespace the replicas run in.
pub const NAMESPACE: &str = "default";

/// A fake Kubernetes API server and the kubeconfig the replicas reach it with.
#[derive(Debug)]
pub struct Cluster {
    /// The API server.
    pub api: FakeKubeApi,
    /// The kubeconfig file.
    pub kubeconfig: PathBuf,
    _dir: TempDir,
}

/// One Coordinator replica with the Kubernetes store.
#[derive(Debug)]
pub struct Replica {
    /// Its pod name.
    pub name: String,
    /// Its pod IP (a loopback address of its own).
    pub ip: IpAddr,
    /// The process.
    pub process: CoordinatorProcess,
    _store: TempDir,
}

impl Replica {
    /// Whether its readiness probe answers 200.
    pub fn ready(&self) -> bool {
        http_get(&self.process.probe_addr(), "/probe/readiness")
            .is_some_and(|(code, _)| code == 200)
    }

    /// Whether its probe port answers at all (the process is up and listening).
    pub fn listening(&self) -> bool {
        http_get(&self.process.probe_addr(), "/probe/startup").is_some()
    }
}

/// A pod of the Coordinator's StatefulSet, as peer discovery lists it.
pub fn coordinator_pod(name: &str, ip: IpAddr, ready: bool) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
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

impl Cluster {
    /// Starts the API server and writes its kubeconfig.
    pub fn start() -> Self {
        let api = FakeKubeApi::start().unwrap();
        let dir = TempDir::new("ha");
        let kubeconfig = dir.path().join("kubeconfig");
        api.write_kubeconfig(&kubeconfig, NAMESPACE).unwrap();
        Cluster {
            api,
            kubeconfig,
            _dir: dir,
        }
    }

    /// Starts the Coordinator `binary` as pod `name` on `ip` without waiting for it.
    pub fn spawn(&self, binary: &Path, deployment: &Deployment, name: &str, ip: IpAddr) -> Replica {
        // The history lives in ConfigMaps; the store directory only holds the log.
        let store = TempDir::new("ha-unused-store");
        let extra: Vec<String> = [
            "--store",
            "kubernetes",
            "--namespace",
            NAMESPACE,
            "--pod-name",
            name,
            "--store-owner",
            "none",
            "--kubeconfig",
        ]
        .into_iter()
        .map(str::to_owned)
        .chain([self.kubeconfig.display().to_string()])
        .collect();
        let process = CoordinatorProcess::start(binary, deployment, store.path(), ip, &extra);
        Replica {
            name: name.to_owned(),
            ip,
            process,
            _store: store,
        }
    }

    /// Starts the Coordinator `binary` as pod `name` on `ip` and waits for its startup
    /// probe (after its first peer-recovery attempt).
    pub fn start_replica(
        &self,
        binary: &Path,
        deployment: &Deployment,
        name: &str,
        ip: IpAddr,
    ) -> Replica {
        let mut replica = self.spawn(binary, deployment, name, ip);
        replica
            .process
            .wait_probe("/probe/startup", 200, Duration::from_secs(60));
        replica
    }

    /// Kills `replica` and marks its pod not ready, as the kubelet would; returns its name
    /// and IP for a restart.
    pub fn kill(&self, replica: Replica) -> (String, IpAddr) {
        let Replica {
            name,
            ip,
            mut process,
            _store,
        } = replica;
        process.kill();
        self.api
            .set_pod(NAMESPACE, coordinator_pod(&name, ip, false));
        (name, ip)
    }

    /// What the kubelet does: the pods' Ready conditions follow the readiness probes.
    /// Returns each replica's readiness.
    pub fn sync_pods(&self, replicas: &[&Replica]) -> Vec<bool> {
        replicas
            .iter()
            .map(|replica| {
                let ready = replica.ready();
                self.api
                    .set_pod(NAMESPACE, coordinator_pod(&replica.name, replica.ip, ready));
                ready
            })
            .collect()
    }

    /// Waits up to 60 s until `condition` holds, keeping the pods in sync meanwhile;
    /// panics with the replicas' logs otherwise.
    pub fn wait(&self, replicas: &[&Replica], what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.sync_pods(replicas);
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
}
