//! A simulated node for pods through the real containerd: a private containerd 1.6
//! (`contrast-cri-testkit`) whose runtime handler runs our shim with the simulated
//! platform's Kata configuration (QEMU under TCG, the guest in test mode with the test TSM
//! provider reading HOST_DATA from QEMU), a pod network (CNI's bridge) and a registry the
//! guests pull from at the network's gateway. Shared by tests/containerd.rs, the
//! containerd_pod benchmark and `quickstart --containerd`.
//!
//! A harness: a set-up step that fails panics with its cause, as testkit's registry does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use contrast_cri_testkit::images::{KUBERNETES_PAUSE_IMAGE, kubernetes_pause_image};
use contrast_cri_testkit::kubelet::container_on_pod_network;
use contrast_cri_testkit::runtime::{
    ContainerConfig, CreateContainerRequest, ImageSpec, NamespaceMode, PodSandboxConfig,
    PullImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest, StartContainerRequest,
    StopPodSandboxRequest,
};
use contrast_cri_testkit::{Containerd, ContainerdConfig, Cri, PodNetwork};
use contrast_runtime_installer::containerd::{RuntimeEntry, patch_config};
use contrast_runtime_installer::kata::RuntimeKind;

use crate::images::AppRegistry;
use crate::{GUEST_SIMULATOR_SETUP, fake_tsm_module, image, profile_dir, tempdir};

/// The guest's set-up in test mode, before the pod's path: the simulator's keys and the
/// test TSM provider with HOST_DATA as QEMU was launched with it (the simulated platform's
/// launch measurement is all zeros).
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
    format!(
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
    )
}

/// A node: containerd with our shim as the runtime handler `handler`, a pod network, and
/// a registry on its gateway with the busybox app image.
#[derive(Debug)]
pub struct SimNode {
    /// The node's containerd.
    pub containerd: Containerd,
    /// The runtime handler (a runtime class's handler) that runs our shim.
    pub handler: String,
    /// The shim where the installer lays it out (the runtime directory's bin/).
    pub shim: PathBuf,
    /// The pod network (CNI's bridge); the guest pulls from the registry on its gateway.
    pub network: PodNetwork,
    /// A CRI client of the node's containerd.
    pub cri: Cri,
    /// The registry the guests pull from.
    pub images: AppRegistry,
    /// The node's scratch directory (the runtime's files, kubelet's pod directories).
    pub work: PathBuf,
}

impl SimNode {
    /// A node for the test (or run) named `test` whose runtime handler is `handler`.
    pub async fn start(test: &str, handler: &str) -> SimNode {
        let network = PodNetwork::for_test(test);
        let images = AppRegistry::start_on(test, &network.gateway());
        Self::start_with(test, handler, network, images).await
    }

    /// A node on `network` whose guests pull from `images` (on its gateway).
    pub async fn start_with(
        test: &str,
        handler: &str,
        network: PodNetwork,
        images: AppRegistry,
    ) -> SimNode {
        let work = tempdir(test).unwrap();
        image().unwrap();
        // The runtime as the installer lays it out on a node: the shim at the runtime
        // directory's bin/, its Kata configuration under etc/, and containerd's runtime
        // entry from the installer's own edit of the config (which names the shim by its
        // path: containerd 1.6 ignores runtime_path). Nothing is on containerd's PATH.
        let base = work.join("node");
        let entry = RuntimeEntry {
            handler,
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
        let cri = containerd.cri().await.unwrap();
        SimNode {
            handler: handler.to_owned(),
            shim: PathBuf::from(entry.runtime_path()),
            containerd,
            network,
            cri,
            images,
            work,
        }
    }

    /// The kubelet's pull of `reference` on the node (the guest pulls it again, by
    /// digest).
    pub async fn pull(&mut self, reference: &str) {
        self.cri
            .images
            .pull_image(PullImageRequest {
                image: Some(ImageSpec {
                    image: reference.to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("pulling {reference} on the node: {e:?}"));
    }

    /// RunPodSandbox of `sandbox` with the node's runtime handler: the sandbox ID.
    pub async fn run_sandbox(&mut self, sandbox: &PodSandboxConfig) -> String {
        match self
            .cri
            .runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(sandbox.clone()),
                runtime_handler: self.handler.clone(),
            })
            .await
        {
            Ok(response) => response.into_inner().pod_sandbox_id,
            Err(e) => panic!(
                "RunPodSandbox: {e:?}\n----- containerd -----\n{}",
                self.containerd.log_tail()
            ),
        }
    }

    /// StopPodSandbox and RemovePodSandbox.
    pub async fn stop_and_remove_sandbox(&mut self, sandbox_id: &str) -> Result<(), tonic::Status> {
        self.cri
            .runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sandbox_id.to_owned(),
            })
            .await?;
        self.cri
            .runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sandbox_id.to_owned(),
            })
            .await?;
        Ok(())
    }
}

impl Drop for SimNode {
    fn drop(&mut self) {
        // The kubelet's memory-backed emptyDirs live here, outside containerd's directory.
        contrast_cri_testkit::unmount_under(&self.work);
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// Creates and starts a container; the error is StartContainer's (containerd creates the
/// task, and so the container in the VM, there).
pub async fn run_container(
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
pub fn shim_rss_kib() -> Vec<u64> {
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
pub fn qemu_processes(sandbox_id: &str) -> Vec<u32> {
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
