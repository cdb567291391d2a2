//! A simulated node for pods through the real containerd: a private containerd 1.6
//! (`contrast-cri-testkit`) whose runtime handler runs our shim with the simulated
//! platform's Kata configuration (QEMU under TCG, the guest in test mode with the test TSM
//! provider reading HOST_DATA from QEMU), a registry with the app image, and the pod's
//! policy as `contrast generate` makes it. Shared by tests/containerd.rs and the
//! containerd_pod benchmark.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use contrast_cri_testkit::images::{KUBERNETES_PAUSE_IMAGE, kubernetes_pause_image};
use contrast_cri_testkit::kubelet::{
    container_config, container_on_pod_network, on_pod_network, pod_sandbox_config,
};
use contrast_cri_testkit::runtime::{
    ContainerConfig, CreateContainerRequest, ImageSpec, Mount, NamespaceMode, PodSandboxConfig,
    PullImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopPodSandboxRequest,
};
use contrast_cri_testkit::{Containerd, ContainerdConfig, Cri, PodNetwork};
use contrast_qemu_tests::{GUEST_SIMULATOR_SETUP, fake_tsm_module, image, profile_dir, tempdir};
use contrast_runtime_installer::containerd::{RuntimeEntry, patch_config};
use contrast_runtime_installer::kata::RuntimeKind;
use serde_json::json;

use super::pod::AppRegistry;

/// The runtime handler (a runtime class name).
pub(crate) const HANDLER: &str = "contrast-cc-sim-snp";

/// The readiness probe: the one exec the pod's policy allows.
pub(crate) const PROBE: [&str; 3] = ["/bin/sh", "-c", "echo probe ok"];

/// The guest's set-up in test mode, before the pod's path: the simulator's keys and the
/// test TSM provider with HOST_DATA as QEMU was launched with it.
const PREPARE: &str = r#"
fail() { echo "CONTRAST-TEST-FAIL $1: $2"; exit 1; }
host_data=$(cat /sys/firmware/qemu_fw_cfg/by_name/opt/contrast-host-data/raw) || fail "$1" "no HOST_DATA from QEMU"
insmod /run/test/fake_tsm.ko host_data="$host_data" measurement=000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000 \
    || fail "$1" "insmod fake_tsm.ko failed"
echo "CONTRAST-STEP prepared"
"#;

/// The test payload (a newc cpio archive): the preparation, the test TSM provider, the
/// simulator's keys and the agent's environment.
fn payload(dir: &Path, guest_registry: &str) -> PathBuf {
    let mut entries = Vec::new();
    let mut file = |path: &str, content: Vec<u8>| {
        entries.push(contrast_image::cpio::Entry {
            path: path.to_owned(),
            permissions: 0o755,
            kind: contrast_image::cpio::EntryKind::File(content),
        });
    };
    file(
        "run.sh",
        format!("{GUEST_SIMULATOR_SETUP}\n{PREPARE}").into_bytes(),
    );
    file(
        "fake_tsm.ko",
        std::fs::read(fake_tsm_module().unwrap()).unwrap(),
    );
    let simulator = contrast_testkit::shared_simulator_dir();
    for entry in std::fs::read_dir(&simulator).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".p8") {
            file(&format!("sim-{name}"), std::fs::read(entry.path()).unwrap());
        }
    }
    file(
        "agent.env",
        format!(
            "CONTRAST_SIMULATED_TEE=snp-tsm\nCONTRAST_SIMULATOR_DIR=/run/sim\nNO_COLOR=1\n\
             CONTRAST_AGENT_INSECURE_REGISTRIES={guest_registry}\n"
        )
        .into_bytes(),
    );
    let path = dir.join("payload.cpio");
    let mut bytes = Vec::new();
    contrast_image::cpio::write(&mut bytes, &entries).unwrap();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The Kata configuration of the simulated platform (what the shim reads).
fn kata_config(payload: &Path) -> String {
    let image = image().unwrap();
    let vsock_backend = profile_dir()
        .unwrap()
        .parent()
        .unwrap()
        .join("tools/bin/vhost-device-vsock");
    let vsock_backend = if vsock_backend.exists() {
        vsock_backend
    } else {
        PathBuf::from("/usr/local/bin/vhost-device-vsock")
    };
    let text = format!(
        r#"[hypervisor.qemu]
path = "/usr/bin/qemu-system-x86_64"
firmware = "/usr/share/qemu/qboot.rom"
kernel = {kernel:?}
initrd = {initrd:?}
image = {rootfs:?}
kernel_params = {cmdline:?}
default_vcpus = 1
default_memory = 1024
confidential_guest = true

[agent.kata]
dial_timeout = 240

[runtime]
create_container_timeout = 240

[simulation]
test = "containerd-pod"
payload = {payload:?}
vsock_backend = {vsock_backend:?}
"#,
        kernel = image.path("vmlinux"),
        initrd = image.path("initrd"),
        rootfs = image.path("rootfs.img"),
        cmdline = image.manifest.cmdline,
    );
    text
}

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

/// Creates and starts a container; the error is StartContainer's (containerd creates the
/// task, and so the container in the VM, there).
pub(crate) async fn run_container(
    cri: &mut Cri,
    sandbox_id: &str,
    sandbox: &PodSandboxConfig,
    mut config: ContainerConfig,
) -> Result<String, tonic::Status> {
    // kubelet gives a container its pod's network.
    let pod_network = sandbox
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|c| c.namespace_options.as_ref())
        .is_some_and(|n| n.network == NamespaceMode::Pod as i32);
    if pod_network {
        container_on_pod_network(&mut config);
    }
    let created = cri
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox.clone()),
        })
        .await?
        .into_inner();
    cri.runtime
        .start_container(StartContainerRequest {
            container_id: created.container_id.clone(),
        })
        .await?;
    Ok(created.container_id)
}

/// The resident memory (VmRSS, kB) of each of our shims.
pub(crate) fn shim_rss_kib() -> Vec<u64> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let first = cmdline.split(|b| *b == 0).next().unwrap_or_default();
        if !first.ends_with(b"containerd-shim-contrast-cc-v2") {
            continue;
        }
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        if let Some(kib) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        {
            found.push(kib);
        }
    }
    found
}

/// QEMU processes of the pod (by the VM name the shim gives them).
pub(crate) fn qemu_processes(sandbox_id: &str) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if String::from_utf8_lossy(&cmdline).contains(&format!("sandbox-{sandbox_id}")) {
            found.push(pid);
        }
    }
    found
}

/// What the app sends over the pod network to [`SimNode::listener`] on the host.
pub(crate) const APP_MESSAGE: &str = "sent over the pod network";

/// The pod's UID (kubelet's directory of its volumes is named after it).
pub(crate) const POD_UID: &str = "4bd4e5c6-0d54-4a55-8e4a-1f6b5d2f0c11";

/// The second container's command: more memory than its 16 MiB limit.
pub(crate) const HOG_COMMAND: [&str; 3] = ["/bin/sh", "-c", "head -c 200000000 /dev/zero | tail"];

/// The line the app prints.
pub(crate) const APP_LINE: &str = "hello from the confidential pod";

/// A node: containerd with our shim as the runtime handler [`HANDLER`], and the app's
/// registry.
pub(crate) struct SimNode {
    pub(crate) containerd: Containerd,
    /// The shim where the installer lays it out (the runtime directory's bin/).
    pub(crate) shim: PathBuf,
    /// The pod network (CNI's bridge); the guest pulls from the registry on its gateway.
    pub(crate) network: PodNetwork,
    /// A listener on all the host's addresses that the app sends [`APP_MESSAGE`] to, at the
    /// pod network's gateway.
    pub(crate) listener: std::sync::Arc<tokio::net::TcpListener>,
    /// Pods on the host's network (QEMU's user network in the shim's namespace) instead.
    pub(crate) host_network: bool,
    pub(crate) cri: Cri,
    pub(crate) images: AppRegistry,
    pub(crate) work: PathBuf,
}

impl SimNode {
    pub(crate) async fn start(test: &str) -> SimNode {
        let work = tempdir(test).unwrap();
        image().unwrap();
        let network = PodNetwork::for_test(test);
        let images = AppRegistry::start_on(test, &network.gateway());
        // The runtime as the installer lays it out on a node: the shim at the runtime
        // directory's bin/, its Kata configuration under etc/, and containerd's runtime
        // entry from the installer's own edit of the config (which names the shim by its
        // path: containerd 1.6 ignores runtime_path). Nothing is on containerd's PATH.
        let base = work.join("node");
        let entry = RuntimeEntry {
            handler: HANDLER,
            base_dir: base.to_str().unwrap(),
            kind: RuntimeKind::QemuSnp,
            gpu: false,
        };
        std::fs::create_dir_all(base.join("bin")).unwrap();
        std::fs::create_dir_all(base.join("etc")).unwrap();
        std::os::unix::fs::symlink(
            profile_dir()
                .unwrap()
                .join("containerd-shim-contrast-cc-v2"),
            entry.runtime_path(),
        )
        .unwrap();
        let config = kata_config(&payload(&work, &images.guest_registry));
        std::fs::write(entry.config_path(), config).unwrap();
        let containerd = Containerd::start_patched(
            &ContainerdConfig {
                pause_image: KUBERNETES_PAUSE_IMAGE.to_owned(),
                runtime_handlers: Vec::new(),
                shim_dir: None,
                registry_mirrors: vec![(
                    images.guest_registry.clone(),
                    format!("http://127.0.0.1:{}", images.registry.port),
                )],
                pod_network: Some(network.clone()),
            },
            |config| patch_config(Some(config), "config.toml", &entry).unwrap(),
        )
        .await
        .unwrap();
        containerd
            .import_image(KUBERNETES_PAUSE_IMAGE, &kubernetes_pause_image().unwrap())
            .unwrap();
        let mut cri = containerd.cri().await.unwrap();
        // The kubelet pulls the image on the node; the guest pulls it again, by digest.
        cri.images
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: images.app.reference.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap();
        let listener =
            std::sync::Arc::new(tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap());
        SimNode {
            host_network: false,
            shim: PathBuf::from(entry.runtime_path()),
            containerd,
            network,
            listener,
            cri,
            images,
            work,
        }
    }

    /// The app's command: writes into both emptyDir volumes (and finds none of the host's
    /// files there), sends [`APP_MESSAGE`] to the host's [`SimNode::listener`] over the pod
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

    /// The pod as a user writes it (on the pod network, the app with [`SimNode::app_command`], an exec
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
        match self
            .cri
            .runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(sandbox.clone()),
                runtime_handler: HANDLER.to_owned(),
            })
            .await
        {
            Ok(response) => (response.into_inner().pod_sandbox_id, sandbox),
            Err(e) => panic!(
                "RunPodSandbox: {e:?}\n----- containerd -----\n{}",
                self.containerd.log_tail()
            ),
        }
    }

    /// kubelet's directory of the pod's emptyDir volumes.
    pub(crate) fn empty_dirs(&self) -> PathBuf {
        self.work
            .join("kubelet/pods")
            .join(POD_UID)
            .join("volumes/kubernetes.io~empty-dir")
    }

    /// The app container of [`SimNode::pod`], started: its ID. Its emptyDir volumes are
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
        self.cri
            .runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sandbox_id.to_owned(),
            })
            .await
            .unwrap();
        self.cri
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sandbox_id.to_owned(),
            })
            .await
            .unwrap();
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

impl Drop for SimNode {
    fn drop(&mut self) {
        self.remove_volumes();
        let _ = std::fs::remove_dir_all(&self.work);
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
