//! The simulated node (`contrast_qemu_tests::node`) with the test's pod: an app on the
//! pod network (or the host's) with emptyDir volumes, an exec probe and a memory hog, and
//! its policy as `contrast generate` makes it. Shared by tests/containerd.rs and the
//! containerd_pod benchmark.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use contrast_cri_testkit::kubelet::{container_config, on_pod_network, pod_sandbox_config};
use contrast_cri_testkit::runtime::{Mount, PodSandboxConfig};
// Re-exported for tests/containerd.rs and the benchmark (each uses some).
#[allow(unused_imports)]
pub(crate) use contrast_qemu_tests::node::{SimNode, qemu_processes, run_container, shim_rss_kib};
use serde_json::json;

/// The runtime handler (a runtime class name).
pub(crate) const HANDLER: &str = "contrast-cc-sim-snp";

/// The readiness probe: the one exec the pod's policy allows.
pub(crate) const PROBE: [&str; 3] = ["/bin/sh", "-c", "echo probe ok"];

/// The pod's sandbox configuration as kubelet makes it: on the pod network, or on the
/// host's.
pub(crate) fn sandbox_config(
    log_directory: &Path,
    initdata: &str,
    host_network: bool,
) -> PodSandboxConfig {
    let mut config = pod_sandbox_config(
        "app",
        "default",
        POD_UID,
        log_directory,
        HashMap::from([(
            contrast_initdata::INITDATA_ANNOTATION.to_owned(),
            initdata.to_owned(),
        )]),
    );
    if !host_network {
        on_pod_network(&mut config);
    }
    config
}

/// What the app sends over the pod network to [`AppNode::listener`] on the host.
pub(crate) const APP_MESSAGE: &str = "sent over the pod network";

/// The pod's UID (kubelet's directory of its volumes is named after it).
pub(crate) const POD_UID: &str = "4bd4e5c6-0d54-4a55-8e4a-1f6b5d2f0c11";

/// The second container's command: more memory than its 16 MiB limit.
pub(crate) const HOG_COMMAND: [&str; 3] = ["/bin/sh", "-c", "head -c 200000000 /dev/zero | tail"];

/// The line the app prints.
pub(crate) const APP_LINE: &str = "hello from the confidential pod";

/// A node: containerd with our shim as the runtime handler [`HANDLER`], the app's
/// registry, and a listener on the host for the app's message.
pub(crate) struct AppNode {
    pub(crate) node: SimNode,
    /// A listener on all the host's addresses that the app sends [`APP_MESSAGE`] to, at the
    /// pod network's gateway.
    pub(crate) listener: std::sync::Arc<tokio::net::TcpListener>,
    /// Pods on the host's network (QEMU's user network in the shim's namespace) instead.
    pub(crate) host_network: bool,
}

impl std::ops::Deref for AppNode {
    type Target = SimNode;
    fn deref(&self) -> &SimNode {
        &self.node
    }
}

impl std::ops::DerefMut for AppNode {
    fn deref_mut(&mut self) -> &mut SimNode {
        &mut self.node
    }
}

impl AppNode {
    pub(crate) async fn start(test: &str) -> AppNode {
        let mut node = SimNode::start(test, HANDLER).await;
        // The kubelet pulls the image on the node; the guest pulls it again, by digest.
        let app = node.images.app.reference.clone();
        node.pull(&app).await;
        let listener =
            std::sync::Arc::new(tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap());
        AppNode {
            node,
            listener,
            host_network: false,
        }
    }

    /// The app's command: writes into both emptyDir volumes (and finds none of the host's
    /// files there), sends [`APP_MESSAGE`] to the host's [`AppNode::listener`] over the pod
    /// network, prints [`APP_LINE`], then stays.
    pub(crate) fn app_command(&self) -> [String; 3] {
        let port = self.listener.local_addr().unwrap().port();
        [
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            format!(
                "echo memory > /scratch/file && echo disk > /cache/file && \
                 [ ! -e /cache/planted ] && grep -q ' /scratch tmpfs ' /proc/mounts && \
                 {{ echo {APP_MESSAGE} | nc -w 10 {gateway} {port}; echo {APP_LINE}; }}; \
                 exec sleep 600",
                gateway = self.network.gateway(),
            ),
        ]
    }

    /// The app's message (its first line) and where it came from; the connection is then
    /// closed, which the app waits for.
    pub(crate) async fn app_message(&self) -> (String, std::net::SocketAddr) {
        use tokio::io::AsyncBufReadExt as _;
        let (stream, peer) = tokio::time::timeout(Duration::from_secs(120), self.listener.accept())
            .await
            .expect("the app's message to the host")
            .unwrap();
        let mut line = String::new();
        tokio::io::BufReader::new(stream)
            .read_line(&mut line)
            .await
            .unwrap();
        (line.trim_end().to_owned(), peer)
    }

    /// Answers the app's messages in the background (the app waits for the host to close
    /// the connection), for callers that do not check them.
    pub(crate) fn answer_app_messages(&self) {
        use tokio::io::AsyncBufReadExt as _;
        let listener = self.listener.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mut line = String::new();
                let _ = tokio::io::BufReader::new(stream).read_line(&mut line).await;
            }
        });
    }

    /// The pod's initdata annotation, as `contrast generate` makes it.
    pub(crate) fn pod(&self) -> String {
        contrast_policy::initdata(&self.pod_case().policy).annotation_value()
    }

    /// The pod as a user writes it (on the pod network, the app with [`AppNode::app_command`], an exec
    /// probe [`PROBE`] and two emptyDir volumes, and the hog), its policy and the requests
    /// a faithful runtime sends for it.
    pub(crate) fn pod_case(&self) -> contrast_testkit::PodCase {
        let reference = &self.images.app.reference;
        let pod = json!({
            "name": "app",
            "namespace": "default",
            "spec": {
                "runtimeClassName": HANDLER,
                "containers": [{
                    "name": "app",
                    "image": reference,
                    "command": self.app_command(),
                    "readinessProbe": {"exec": {"command": PROBE}},
                    "volumeMounts": [
                        {"name": "scratch", "mountPath": "/scratch"},
                        {"name": "cache", "mountPath": "/cache"},
                    ],
                }, {
                    // Asks for more than its limit: the OOM killer ends it.
                    "name": "hog",
                    "image": reference,
                    "command": HOG_COMMAND,
                    "resources": {"limits": {"memory": "16Mi"}},
                }],
                "volumes": [
                    {"name": "scratch", "emptyDir": {"medium": "Memory"}},
                    {"name": "cache", "emptyDir": {}},
                ],
            },
            "images": {reference.clone(): self.images.app.config()},
        });
        let mut pod = pod;
        if self.host_network {
            pod["spec"]["hostNetwork"] = json!(true);
        }
        contrast_testkit::pod_case_of(&pod, "the containerd pod")
    }

    /// RunPodSandbox of the pod with `initdata` (its logs in `logs`): the sandbox ID.
    pub(crate) async fn run_sandbox(
        &mut self,
        logs: &Path,
        initdata: &str,
    ) -> (String, PodSandboxConfig) {
        let sandbox = sandbox_config(logs, initdata, self.host_network);
        let id = self.node.run_sandbox(&sandbox).await;
        (id, sandbox)
    }

    /// kubelet's directory of the pod's emptyDir volumes.
    pub(crate) fn empty_dirs(&self) -> PathBuf {
        self.work
            .join("kubelet/pods")
            .join(POD_UID)
            .join("volumes/kubernetes.io~empty-dir")
    }

    /// The app container of [`AppNode::pod`], started: its ID. Its emptyDir volumes are
    /// made as kubelet makes them: a directory, and for the memory-backed one a tmpfs
    /// mounted on it; a file planted in the disk-backed one must not reach the guest.
    pub(crate) async fn run_app(&mut self, sandbox_id: &str, sandbox: &PodSandboxConfig) -> String {
        let reference = self.images.app.reference.clone();
        let command = self.app_command();
        let command: Vec<&str> = command.iter().map(String::as_str).collect();
        let mut app = container_config("app", &reference, &command);
        for (name, memory) in [("scratch", true), ("cache", false)] {
            let dir = self.empty_dirs().join(name);
            std::fs::create_dir_all(&dir).unwrap();
            if memory {
                let mounted = std::process::Command::new("mount")
                    .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
                    .arg(&dir)
                    .status()
                    .unwrap();
                assert!(mounted.success(), "mounting the memory-backed emptyDir");
            } else {
                std::fs::write(dir.join("planted"), "from the host").unwrap();
            }
            app.mounts.push(Mount {
                container_path: format!("/{name}"),
                host_path: dir.to_str().unwrap().to_owned(),
                ..Default::default()
            });
        }
        run_container(&mut self.cri, sandbox_id, sandbox, app)
            .await
            .unwrap_or_else(|e| panic!("the app: {e:?}\n{}", self.containerd.log_tail()))
    }

    /// StopPodSandbox and RemovePodSandbox, then the pod's volumes as kubelet tears them
    /// down.
    pub(crate) async fn remove_sandbox(&mut self, sandbox_id: &str) {
        self.node
            .stop_and_remove_sandbox(sandbox_id)
            .await
            .unwrap_or_else(|e| panic!("removing the sandbox: {e:?}"));
        self.remove_volumes();
    }

    /// Also after a removal, when nothing is mounted any more (umount then says so: quiet).
    fn remove_volumes(&self) {
        let _ = std::process::Command::new("umount")
            .arg(self.empty_dirs().join("scratch"))
            .stderr(std::process::Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(self.empty_dirs());
    }
}

impl Drop for AppNode {
    fn drop(&mut self) {
        self.remove_volumes();
    }
}

/// Waits for `line` in a CRI log file: the whole log line.
pub(crate) async fn wait_for_log_line(log: &Path, line: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if let Some(found) = text.lines().find(|l| l.contains(line)) {
            return found.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no log line in {}: {text:?}",
            log.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
