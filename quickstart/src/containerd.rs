//! `quickstart --containerd`: the Coordinator and the shop's pods as a Kubernetes node runs
//! them. A private containerd (Debian's) runs each pod through our shim in its own VM (the
//! measured image under QEMU's TCG, the simulated SEV-SNP platform with the test TSM
//! provider), on a CNI bridge network; the kubelet's part — the generated pod specs turned
//! into CRI requests, init containers before containers, startup probes, the pods'
//! status in the API server — is `contrast_cri_testkit::workload`. Each guest pulls its
//! images by digest from a registry on the bridge's gateway: the Coordinator, the
//! Initializer, the mesh proxy and the app are this build's binaries.
//!
//! The node's API server is the fake one (`contrast-fake-kube-api`) on the gateway: the
//! Coordinator keeps its history there. Its image carries a kubeconfig naming it, where a
//! cluster would mount the service account's token. There is no cluster DNS: each pod's
//! managed `/etc/hosts` names the Services it dials.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use contrast_cri_testkit::PodNetwork;
use contrast_cri_testkit::runtime::ExecSyncRequest;
use contrast_cri_testkit::workload::{
    PodPlan, RunningSandbox, api_pod, plan_pod, remove_pod_dir, run_sandbox, start_containers,
};
use contrast_fake_kube_api::FakeKubeApi;
use contrast_fake_kube_api::k8s_openapi::api::core::v1::Pod as ApiPod;
use contrast_qemu_tests::images::{AppRegistry, LayerBuilder, PushedImage};
use contrast_qemu_tests::node::{SimNode, qemu_processes};

/// The PATH of the images (iptables is in /usr/sbin).
const PATH: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

/// A pod of the shop as the node runs it.
struct Pod {
    workload: String,
    plan: PodPlan,
    sandbox: RunningSandbox,
    containers: HashMap<String, String>,
}

/// The node and its pods.
pub(crate) struct Cluster {
    runtime: tokio::runtime::Runtime,
    network: PodNetwork,
    /// The guests' registry, until the node takes it.
    images: Option<AppRegistry>,
    node: Option<SimNode>,
    pods: Vec<Pod>,
    /// The node's API server, on the gateway.
    api: FakeKubeApi,
}

/// The namespace of the quickstart's workloads.
const NAMESPACE: &str = "default";

impl Cluster {
    /// The pod network and the registry on its gateway; the node starts once the runtime
    /// handler is known ([`Cluster::start_node`]).
    pub(crate) fn prepare() -> anyhow::Result<Cluster> {
        if !is_root() {
            bail!(
                "--containerd runs containerd, mounts and network namespaces: run it as root \
                 (as `cargo xtask quickstart --containerd` in CI does)"
            );
        }
        let runtime = tokio::runtime::Runtime::new().context("starting tokio")?;
        let network = PodNetwork::for_test("quickstart");
        // On all addresses, the gateway's included once the bridge is up.
        let images = AppRegistry::start_on("quickstart", &network.gateway());
        // Up before the node: generate fetches the images from the gateway's registry, and
        // the pods reach the node's API server and the KDS there.
        network
            .bring_up()
            .context("making the pod network's bridge")?;
        let api = match network
            .gateway()
            .parse()
            .map_err(anyhow::Error::from)
            .and_then(|ip| FakeKubeApi::start_on(ip).map_err(anyhow::Error::from))
        {
            Ok(api) => api,
            Err(e) => {
                network.remove();
                return Err(e.context("starting the node's API server"));
            }
        };
        Ok(Cluster {
            runtime,
            network,
            images: Some(images),
            node: None,
            pods: Vec::new(),
            api,
        })
    }

    /// The host's address on the pod network.
    pub(crate) fn gateway(&self) -> String {
        self.network.gateway()
    }

    fn registry(&self) -> &AppRegistry {
        match (&self.images, &self.node) {
            (Some(images), _) => images,
            (None, Some(node)) => &node.images,
            (None, None) => unreachable!("the registry is the node's or ours"),
        }
    }

    /// `<gateway>:<port>`: the registry as the guests (and generate) name it.
    pub(crate) fn registry_host(&self) -> String {
        self.registry().guest_registry.clone()
    }

    /// The API server's address.
    pub(crate) fn api_url(&self) -> String {
        self.api.url()
    }

    /// Pushes the images the guests run: the Coordinator and the Initializer (with the
    /// simulator's keys: the simulated platform's signatures; the Coordinator with the
    /// simulated vendor's KDS at `kds_url` and a kubeconfig naming the node's API server),
    /// the mesh proxy, and the shop's three apps. Returns the image replacements: the
    /// shipped YAML's image → the pushed one, by digest.
    pub(crate) fn push_images(
        &self,
        bin: &Path,
        version: &str,
        kds_url: &str,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let registry = self.registry();
        let push = |repo: &str, layer: Vec<u8>, env: &[&str], entrypoint: &[&str]| {
            PushedImage::push(
                &registry.registry,
                &self.gateway(),
                &registry.work,
                repo,
                layer,
                env,
                entrypoint,
            )
            .reference
        };
        // The simulator's keys sign the guests' reports on the simulated platform.
        let initializer = LayerBuilder::new()
            .program(&bin.join("initializer"))
            .iptables()
            .simulator_keys();
        let kubeconfig = self.registry().work.join("kubeconfig");
        self.api
            .write_kubeconfig(&kubeconfig, NAMESPACE)
            .context("writing the node's kubeconfig")?;
        let coordinator = LayerBuilder::new()
            .program(&bin.join("coordinator"))
            .iptables()
            .ca_certificates()
            .simulator_keys()
            .file(
                "etc/contrast/kubeconfig",
                &std::fs::read(&kubeconfig)?,
                0o644,
            );
        let kds = format!("CONTRAST_KDS_URL={kds_url}");
        let mut replacements = vec![
            (
                format!("ghcr.io/contrast-rs/coordinator:v{version}"),
                push(
                    "contrast/coordinator",
                    coordinator.finish(),
                    &[
                        PATH,
                        "CONTRAST_SIMULATED_TEE=snp-tsm",
                        "CONTRAST_SIMULATOR_DIR=/sim",
                        &kds,
                        "KUBECONFIG=/etc/contrast/kubeconfig",
                        "CONTRAST_NAMESPACE=default",
                        "NO_COLOR=1",
                    ],
                    &["/usr/bin/coordinator"],
                ),
            ),
            (
                format!("ghcr.io/contrast-rs/initializer:v{version}"),
                push(
                    "contrast/initializer",
                    initializer.finish(),
                    &[
                        PATH,
                        "CONTRAST_SIMULATED_TEE=snp-tsm",
                        "CONTRAST_SIMULATOR_DIR=/sim",
                        "CONTRAST_RETRY_INTERVAL=1",
                        "NO_COLOR=1",
                    ],
                    &["/usr/bin/initializer"],
                ),
            ),
            (
                format!("ghcr.io/contrast-rs/service-mesh-proxy:v{version}"),
                push(
                    "contrast/service-mesh-proxy",
                    LayerBuilder::new()
                        .program(&bin.join("service-mesh"))
                        .iptables()
                        .busybox()
                        .finish(),
                    &[PATH, "NO_COLOR=1"],
                    &["/usr/bin/service-mesh"],
                ),
            ),
        ];
        for pod in &crate::PODS {
            let name = pod.name;
            let listen = format!("0.0.0.0:{}", pod.port);
            let mut entrypoint = vec!["/usr/bin/shop-app", name, &listen];
            entrypoint.extend(pod.next_service());
            replacements.push((
                format!("ghcr.io/contrast-rs/examples/{name}:v1"),
                push(
                    &format!("examples/{name}"),
                    LayerBuilder::new().program(&bin.join("shop-app")).finish(),
                    &[PATH],
                    &entrypoint,
                ),
            ));
        }
        Ok(replacements)
    }

    /// containerd with our shim as `handler`'s runtime.
    pub(crate) fn start_node(&mut self, handler: &str) -> anyhow::Result<()> {
        let images = self.images.take().context("the node runs already")?;
        let network = self.network.clone();
        let node =
            self.runtime
                .block_on(SimNode::start_with("quickstart", handler, network, images));
        self.node = Some(node);
        Ok(())
    }

    fn node(&mut self) -> anyhow::Result<&mut SimNode> {
        self.node.as_mut().context("the node is not started")
    }

    /// The pods of `workloads` (names of Deployments and StatefulSets in the YAML under
    /// `resources`), run as the kubelet runs them: all sandboxes first (their addresses
    /// go into each pod's `/etc/hosts` with `extra_hosts`, and into the API server with
    /// the pods), then each pod's containers. Returns each pod's address.
    pub(crate) fn start_pods(
        &mut self,
        resources: &Path,
        workloads: &[&str],
        extra_hosts: &[(String, Vec<String>)],
    ) -> anyhow::Result<Vec<(String, String)>> {
        let mut plans = Vec::new();
        for workload in workloads {
            let (kind, template) = template_of(resources, workload)?;
            let kubelet = self.node()?.work.join("kubelet");
            plans.push((
                (*workload).to_owned(),
                plan_pod(&kind, workload, NAMESPACE, &template, &kubelet)?,
            ));
        }
        let node = self.node.as_mut().context("the node is not started")?;
        let kubelet = node.work.join("kubelet");
        // The kubelet pulls each image on the node first.
        let mut references: Vec<String> = plans
            .iter()
            .flat_map(|(_, plan)| plan.init_containers.iter().chain(&plan.containers))
            .filter_map(|c| c.config.image.as_ref().map(|i| i.image.clone()))
            .collect();
        references.sort();
        references.dedup();
        let handler = node.handler.clone();
        let cri = node.cri.clone();
        let started: Vec<anyhow::Result<(String, PodPlan, RunningSandbox)>> =
            self.runtime.block_on(async {
                for reference in &references {
                    node.pull(reference).await;
                }
                let runs = plans.into_iter().map(|(workload, plan)| {
                    let mut cri = cri.clone();
                    let (kubelet, handler) = (kubelet.clone(), handler.clone());
                    async move {
                        let sandbox = run_sandbox(&mut cri, &plan, &kubelet, &handler)
                            .await
                            .with_context(|| format!("the sandbox of {}", plan.name))?;
                        anyhow::Ok((workload, plan, sandbox))
                    }
                });
                futures_join_all(runs).await
            });
        // Every sandbox that runs is the node's to tear down, also when another failed.
        let mut running = Vec::new();
        let mut failed = None;
        for run in started {
            match run {
                Ok((workload, plan, sandbox)) => {
                    // The kubelet reports the pod to the API server (Ready once its probes
                    // pass: not modelled, so at once).
                    let pod: ApiPod = serde_json::from_value(api_pod(&plan, &sandbox.ip, true))?;
                    self.api.set_pod(NAMESPACE, pod);
                    self.pods.push(Pod {
                        workload: workload.clone(),
                        plan: plan.clone(),
                        sandbox: sandbox.clone(),
                        containers: Default::default(),
                    });
                    running.push((workload, plan, sandbox));
                }
                Err(e) => failed = failed.or(Some(e)),
            }
        }
        if let Some(e) = failed {
            return Err(anyhow::anyhow!("{e:#}\n{}", self.containerd_log()));
        }
        let mut hosts: Vec<(String, Vec<String>)> = extra_hosts.to_vec();
        for (workload, _, sandbox) in &running {
            hosts.push((sandbox.ip.clone(), vec![workload.clone()]));
        }
        let containers: Vec<anyhow::Result<(String, HashMap<String, String>)>> =
            self.runtime.block_on(async {
                let runs = running.into_iter().map(|(workload, plan, sandbox)| {
                    let mut cri = cri.clone();
                    let (kubelet, hosts) = (kubelet.clone(), hosts.clone());
                    async move {
                        let containers =
                            start_containers(&mut cri, &plan, &sandbox, &kubelet, &hosts)
                                .await
                                .with_context(|| format!("the containers of {}", plan.name))?;
                        anyhow::Ok((workload, containers))
                    }
                });
                futures_join_all(runs).await
            });
        let mut addresses = Vec::new();
        for started in containers {
            // The cause first, then what containerd said.
            let (workload, ids) =
                started.map_err(|e| anyhow::anyhow!("{e:#}\n{}", self.containerd_log()))?;
            let pod = self
                .pods
                .iter_mut()
                .find(|p| p.workload == workload)
                .context("a started pod the node does not know")?;
            pod.containers = ids;
            addresses.push((workload, pod.sandbox.ip.clone()));
        }
        Ok(addresses)
    }

    fn containerd_log(&self) -> String {
        self.node
            .as_ref()
            .map(|n| {
                format!(
                    "----- containerd's log ends with -----\n{}",
                    n.containerd.log_tail()
                )
            })
            .unwrap_or_default()
    }

    /// How many VMs the pods have (QEMU processes by sandbox).
    pub(crate) fn vm_count(&self) -> usize {
        self.pods
            .iter()
            .map(|p| qemu_processes(&p.sandbox.id).len())
            .sum()
    }

    /// ExecSync of `command` in `workload`'s `container`, as `kubectl exec` asks for it:
    /// the answer's stdout, or the runtime's refusal.
    pub(crate) fn exec(
        &mut self,
        workload: &str,
        container: &str,
        command: &[&str],
    ) -> Result<String, String> {
        let Some(id) = self
            .pods
            .iter()
            .find(|p| p.workload == workload)
            .and_then(|p| p.containers.get(container))
            .cloned()
        else {
            return Err(format!("no container {container} in {workload}"));
        };
        let Some(node) = self.node.as_mut() else {
            return Err("the node is not started".to_owned());
        };
        let mut cri = node.cri.clone();
        let request = ExecSyncRequest {
            container_id: id,
            cmd: command.iter().map(|a| (*a).to_owned()).collect(),
            timeout: 60,
        };
        match self.runtime.block_on(cri.runtime.exec_sync(request)) {
            Ok(answer) => Ok(String::from_utf8_lossy(&answer.get_ref().stdout).into_owned()),
            Err(status) => Err(status.message().to_owned()),
        }
    }

    /// Stops and removes `workload`'s pod as the kubelet does (a StatefulSet's pod is then
    /// made again: [`Cluster::start_pods`]).
    pub(crate) fn remove_pod(&mut self, workload: &str) -> anyhow::Result<()> {
        let index = self
            .pods
            .iter()
            .position(|p| p.workload == workload)
            .with_context(|| format!("no pod of {workload}"))?;
        let pod = self.pods.remove(index);
        let node = self.node.as_mut().context("the node is not started")?;
        let kubelet = node.work.join("kubelet");
        self.runtime
            .block_on(node.stop_and_remove_sandbox(&pod.sandbox.id))
            .with_context(|| format!("removing {workload}'s pod"))?;
        remove_pod_dir(&kubelet, &pod.plan);
        self.api.delete_pod(NAMESPACE, &pod.plan.name);
        ensure!(
            qemu_processes(&pod.sandbox.id).is_empty(),
            "the VM of {workload}'s pod is still running"
        );
        Ok(())
    }

    /// Stops and removes every pod as the kubelet does, then checks that nothing is left:
    /// no QEMU, no shim, no mount, no sandbox state.
    pub(crate) fn stop_pods(&mut self) -> anyhow::Result<()> {
        let pods = std::mem::take(&mut self.pods);
        let Some(node) = self.node.as_mut() else {
            return Ok(());
        };
        let kubelet = node.work.join("kubelet");
        let mut failed = Vec::new();
        self.runtime.block_on(async {
            // Every pod, also when one fails: the others' VMs must not outlive the run.
            for pod in &pods {
                if let Err(e) = node.stop_and_remove_sandbox(&pod.sandbox.id).await {
                    failed.push(format!("{}: {}", pod.workload, e.message()));
                }
                remove_pod_dir(&kubelet, &pod.plan);
                self.api.delete_pod(NAMESPACE, &pod.plan.name);
            }
        });
        ensure!(
            failed.is_empty(),
            "the CRI refused to remove pods: {}",
            failed.join("; ")
        );
        let leftovers = self
            .runtime
            .block_on(node.containerd.settled_leftovers(Duration::from_secs(30)));
        ensure!(leftovers.is_empty(), "left behind: {leftovers:?}");
        let vms: usize = pods
            .iter()
            .map(|p| qemu_processes(&p.sandbox.id).len())
            .sum();
        ensure!(vms == 0, "{vms} QEMU processes are left");
        Ok(())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop_pods();
        // The node's containerd removes the bridge too; without a node, this does.
        self.node = None;
        self.network.remove();
    }
}

/// All of `futures`, concurrently, in order.
async fn futures_join_all<T: Send + 'static>(
    futures: impl IntoIterator<Item = impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::new();
    for handle in handles {
        match handle.await {
            Ok(result) => results.push(result),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    results
}

/// The pod template of workload `name` in the YAML under `resources`: its kind and
/// template (`metadata`, `spec`).
fn template_of(resources: &Path, name: &str) -> anyhow::Result<(String, serde_json::Value)> {
    for json in crate::documents_named(resources, name)? {
        let kind = json["kind"].as_str().unwrap_or_default().to_owned();
        if kind == "Pod" {
            return Ok((kind, json));
        }
        if json["spec"]["template"].is_object() {
            return Ok((kind, json["spec"]["template"].clone()));
        }
    }
    bail!("no workload {name} in {}", resources.display())
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
