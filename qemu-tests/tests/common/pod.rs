//! The pod's path in the guest, driven from the host as the Kata runtime drives it: a VM
//! whose init runs the initdata check and the agent (`PodVm`), a ttRPC client over
//! virtio-vsock, and the requests' helpers. Shared by tests/agent.rs and the benchmarks.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use contrast_agent::proto::agent::{
    CopyFileRequest, CreateContainerRequest, CreateSandboxRequest, DestroySandboxRequest,
    ReadStreamRequest, StartContainerRequest, WaitProcessRequest,
};
use contrast_agent::proto::agent_ttrpc::AgentServiceClient;
use contrast_agent::proto::health_ttrpc::HealthClient;
use contrast_qemu_tests::{
    Console, GUEST_SIMULATOR_SETUP, HarnessError, Vm, connect_vsock, fake_tsm_module, image,
    tempdir,
};
use contrast_testkit::PodCase;
#[allow(unused_imports)]
pub(crate) use contrast_testkit::registry::RegistrySetup;
// Re-exported for the tests that drive pods (not every test binary uses each).
#[allow(unused_imports)]
pub(crate) use contrast_qemu_tests::images::{
    AppRegistry, LayerBuilder, PushedImage, USER_NETWORK_HOST, busybox_layer,
};
use serde_json::Value;
use ttrpc::Code;
use ttrpc::context;

/// run.sh: the test's set-up before the pod's path (simulator keys, the fake TSM provider
/// with the launch's HOST_DATA).
fn prepare_script() -> String {
    format!(
        r#"
fail() {{ echo "CONTRAST-TEST-FAIL $1: $2"; exit 1; }}
{GUEST_SIMULATOR_SETUP}
insmod /run/test/fake_tsm.ko host_data="$(cat /run/test/host_data)" measurement="$(cat /run/test/measurement)" \
    || fail "$1" "insmod fake_tsm.ko failed"
# The agent's peak resident memory, sampled while it runs (read after it exits).
(while true; do
    pid=$(pidof contrast-agent) && grep VmHWM "/proc/$pid/status" > /run/agent-hwm.tmp \
        && mv /run/agent-hwm.tmp /run/agent-hwm
    sleep 0.2
done) &
echo "CONTRAST-STEP prepared"
"#
    )
}

/// The environment of the pod's path in this test: the simulated signature on configfs-tsm.
const AGENT_ENV: &str =
    "CONTRAST_SIMULATED_TEE=snp-tsm\nCONTRAST_SIMULATOR_DIR=/run/sim\nNO_COLOR=1\n";

/// After the agent exited: which policy the initdata check installed, and whether the
/// default-deny rules are still there.
const AFTER_AGENT: &str = r#"
echo "CONTRAST-STEP policy-sha256=$(sha256sum /run/measured-cfg/policy.rego | cut -d' ' -f1)"
for tool in iptables ip6tables; do
    if "$tool" -w -C INPUT -m conntrack ! --ctstate ESTABLISHED,RELATED -j DROP 2>/dev/null; then
        echo "CONTRAST-STEP default-deny-$tool=present"
    else
        echo "CONTRAST-STEP default-deny-$tool=absent"
    fi
    echo "CONTRAST-STEP mesh-redirect-$tool=$("$tool" -w -t mangle -S CONTRAST_IN_REDIRECT 2>/dev/null | grep -c TPROXY)"
done
echo "CONTRAST-STEP agent-peak-rss=$(tr -s ' \t' ' ' < /run/agent-hwm 2>/dev/null | cut -d' ' -f2-)"
echo "CONTRAST-TEST-PASS $1"
"#;

/// What the host gives a pod VM beyond its initdata.
#[derive(Debug, Default)]
pub(crate) struct Launch<'a> {
    /// A registry (as the guest reaches it, over QEMU's user network) pulled from over
    /// plain HTTP; without one the VM has no network.
    pub(crate) registry: Option<&'a str>,
    /// The launch measurement (hex) the fake TSM provider reports; zeros without one.
    pub(crate) measurement: Option<&'a str>,
    /// With a registry: the host's 127.0.0.1 ports forwarded to guest ports.
    pub(crate) forwards: Vec<(u16, u16)>,
    /// Disk images attached as the pod's block volumes (virtio-scsi, `0:1`, `0:2`, …).
    pub(crate) volumes: Vec<PathBuf>,
    /// The registry serves HTTPS: not listed as plain HTTP.
    pub(crate) https: bool,
    /// The node's image puller config, on its disk as the shim attaches it.
    pub(crate) imagepuller: Option<&'a str>,
}

/// A boot of the pod's path with `initdata` on the initdata disk and `host_data` as the
/// launch's HOST_DATA, running on its own thread until it ends or `stop` is set.
pub(crate) struct PodVm {
    scratch: PathBuf,
    pub(crate) stop: Arc<AtomicBool>,
    boot: Option<JoinHandle<Result<Console, HarnessError>>>,
    pub(crate) started: Instant,
}

impl PodVm {
    pub(crate) fn start(test: &str, initdata: &[u8], host_data: [u8; 32]) -> PodVm {
        PodVm::start_with(test, initdata, host_data, None)
    }

    /// With QEMU user networking and `registry` (as the guest reaches it) pulled from over
    /// plain HTTP.
    pub(crate) fn start_with(
        test: &str,
        initdata: &[u8],
        host_data: [u8; 32],
        registry: Option<&str>,
    ) -> PodVm {
        PodVm::launch(
            test,
            initdata,
            host_data,
            &Launch {
                registry,
                ..Launch::default()
            },
        )
    }

    /// As `launch` says.
    pub(crate) fn launch(
        test: &str,
        initdata: &[u8],
        host_data: [u8; 32],
        launch: &Launch<'_>,
    ) -> PodVm {
        let registry = launch.registry;
        let image = image().unwrap();
        let scratch = tempdir(test).unwrap();
        let module = scratch.join("fake_tsm.ko");
        std::fs::copy(fake_tsm_module().unwrap(), &module).unwrap();
        let disk = scratch.join("initdata.img");
        std::fs::write(&disk, contrast_initdata::disk::device_image(initdata)).unwrap();
        let mut env = AGENT_ENV.to_owned();
        if let Some(registry) = registry
            && !launch.https
        {
            env.push_str(&format!("CONTRAST_AGENT_INSECURE_REGISTRIES={registry}\n"));
        }
        let mut vm = Vm::new(&image, test)
            .script(&prepare_script())
            .file("fake_tsm.ko", &module)
            .content("host_data", hex::encode(host_data))
            .content(
                "measurement",
                launch
                    .measurement
                    .map_or_else(|| "0".repeat(96), str::to_owned),
            )
            .content("agent.env", env)
            .content("after-agent.sh", AFTER_AGENT)
            .simulator(&contrast_testkit::shared_simulator_dir())
            .unwrap()
            .disk_with_serial(&disk, "initdata")
            .vsock(&scratch)
            .timeout(Duration::from_secs(300));
        for volume in &launch.volumes {
            vm = vm.scsi_disk(volume);
        }
        if let Some(config) = launch.imagepuller {
            let disk = scratch.join("imagepuller.img");
            std::fs::write(
                &disk,
                contrast_initdata::disk::device_image_with(
                    contrast_initdata::disk::IMAGEPULLER_MAGIC,
                    config.as_bytes(),
                ),
            )
            .unwrap();
            vm = vm.disk_with_serial(&disk, "imagepuller");
        }
        if registry.is_some() {
            vm = vm.network();
            for (host_port, port) in &launch.forwards {
                vm = vm.forward(*host_port, *port);
            }
        }
        let stop = Arc::new(AtomicBool::new(false));
        let boot = {
            let stop = stop.clone();
            std::thread::spawn(move || vm.boot_until(&stop))
        };
        PodVm {
            scratch,
            stop,
            boot: Some(boot),
            started: Instant::now(),
        }
    }

    /// Connects to the agent's port 1024 once the guest listens; fails with the console
    /// if the VM ends first. The first attempt waits for the agent's "serving" line on
    /// the console: connections the back end gets before the guest's virtqueues are up
    /// only make it log "backend event before vring initialization" (and, under load,
    /// once left the guest unreachable).
    pub(crate) fn connect(&mut self) -> std::os::unix::net::UnixStream {
        let console = self.scratch.join(contrast_qemu_tests::CONSOLE_LOG);
        while !std::fs::read_to_string(&console)
            .is_ok_and(|text| text.contains(contrast_agent::AGENT_SERVING_LOG))
            && !self.boot.as_ref().is_some_and(JoinHandle::is_finished)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        loop {
            match connect_vsock(&self.scratch, 1024, Instant::now() + Duration::from_secs(2)) {
                Ok(stream) => return stream,
                Err(e) => {
                    if self.boot.as_ref().is_some_and(JoinHandle::is_finished) {
                        let backend = std::fs::read_to_string(
                            self.scratch.join(contrast_qemu_tests::VSOCK_BACKEND_LOG),
                        )
                        .unwrap_or_default();
                        let console = self.finish();
                        panic!(
                            "the VM ended before the agent listened ({e}):\n{}\n\
                             ----- vhost-device-vsock -----\n{backend}",
                            console.text
                        );
                    }
                }
            }
        }
    }

    /// Waits for the VM to end (after `stop`, if the test set it).
    pub(crate) fn finish(&mut self) -> Console {
        let console = self
            .boot
            .take()
            .expect("finished once")
            .join()
            .expect("the boot thread")
            .unwrap();
        let _ = std::fs::remove_dir_all(&self.scratch);
        console
    }
}

/// A ttRPC client over the vsock stream, as the Kata runtime's.
pub(crate) fn clients(
    stream: std::os::unix::net::UnixStream,
) -> (AgentServiceClient, HealthClient) {
    stream.set_nonblocking(true).unwrap();
    let stream = tokio::net::UnixStream::from_std(stream).unwrap();
    let client = ttrpc::r#async::Client::new(ttrpc::r#async::transport::Socket::new(stream));
    (
        AgentServiceClient::new(client.clone()),
        HealthClient::new(client),
    )
}

pub(crate) fn ctx() -> ttrpc::context::Context {
    context::with_timeout(60_000_000_000)
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone()).unwrap()
}

pub(crate) fn status<T>(result: ttrpc::Result<T>) -> (Code, String) {
    match result {
        Ok(_) => (Code::OK, String::new()),
        Err(ttrpc::Error::RpcStatus(status)) => (status.code(), status.message.clone()),
        Err(other) => panic!("not a ttRPC status: {other:?}"),
    }
}

/// The web app's CreateContainerRequest with another image digest in its root's storage.
pub(crate) fn with_other_image(pod: &PodCase) -> Value {
    let mut request = pod.nth_request("CreateContainerRequest", 1).clone();
    let source = request["storages"][0]["source"]
        .as_str()
        .unwrap()
        .to_owned();
    let (name, _) = source.split_once('@').unwrap();
    request["storages"][0]["source"] = Value::from(format!("{name}@sha256:{}", "9".repeat(64)));
    request
}

/// The CopyFile requests the runtime sends for `container`'s copied mounts (its files
/// under the shared directory), with small contents.
pub(crate) fn copies_for(container: &CreateContainerRequest) -> Vec<CopyFileRequest> {
    container
        .OCI
        .Mounts
        .iter()
        // A copy is one entry directly below the shared directory; a disk emptyDir
        // (`<sandbox>/rootfs/local/<name>`) is a storage, not a copy.
        .filter(|m| {
            m.source
                .strip_prefix(contrast_agent::copy_file::SHARED_DIR)
                .is_some_and(|rest| !rest.contains('/'))
        })
        .map(|m| {
            let data: &[u8] = match m.destination.as_str() {
                "/etc/hosts" => b"127.0.0.1 localhost\n",
                "/etc/hostname" => b"app\n",
                "/etc/resolv.conf" => b"nameserver 10.0.2.3\n",
                _ => b"",
            };
            let mut copy = CopyFileRequest::new();
            copy.path = m.source.clone();
            copy.file_mode = 0o100_644;
            copy.dir_mode = 0o750;
            copy.file_size = data.len() as i64;
            copy.data = data.to_vec();
            copy
        })
        .collect()
}

/// The init process's stdout (`stdout`) or stderr to its end.
pub(crate) async fn read_all(agent: &AgentServiceClient, id: &str, stdout: bool) -> String {
    read_stream(agent, id, "", stdout).await
}

/// An exec'd process's stdout to its end.
pub(crate) async fn read_exec(agent: &AgentServiceClient, id: &str, exec_id: &str) -> String {
    read_stream(agent, id, exec_id, true).await
}

async fn read_stream(agent: &AgentServiceClient, id: &str, exec_id: &str, stdout: bool) -> String {
    let mut all = Vec::new();
    loop {
        let mut read = ReadStreamRequest::new();
        read.container_id = id.to_owned();
        read.exec_id = exec_id.to_owned();
        read.len = 32 * 1024;
        let chunk = if stdout {
            agent.read_stdout(ctx(), &read).await.unwrap()
        } else {
            agent.read_stderr(ctx(), &read).await.unwrap()
        };
        if chunk.data.is_empty() {
            return String::from_utf8_lossy(&all).into_owned();
        }
        all.extend_from_slice(&chunk.data);
    }
}

/// The pod's network for QEMU's user network, as the shim hands it over
/// (`contrast_shim::vm::user_network_requests`).
pub(crate) async fn configure_user_network(agent: &AgentServiceClient) {
    let (interface, routes) = contrast_shim::vm::user_network_requests();
    agent.update_interface(ctx(), &interface).await.unwrap();
    agent.update_routes(ctx(), &routes).await.unwrap();
}

/// The pod's CreateContainerRequest for its container `name`.
pub(crate) fn container_request(pod: &PodCase, name: &str) -> CreateContainerRequest {
    let request = pod
        .requests
        .iter()
        .find(|(kind, request)| {
            kind == "CreateContainerRequest"
                && request["OCI"]["Annotations"]["io.kubernetes.cri.container-name"] == name
        })
        .unwrap_or_else(|| panic!("no CreateContainerRequest for the container {name}"));
    from_json(&request.1)
}

/// The pod's start as the runtime sends it: the network, CreateSandbox, and the pause
/// container created, given its copied files and started. Returns the pause container.
pub(crate) async fn start_sandbox(
    agent: &AgentServiceClient,
    pod: &PodCase,
) -> CreateContainerRequest {
    configure_user_network(agent).await;
    let sandbox: CreateSandboxRequest = from_json(pod.request("CreateSandboxRequest"));
    agent.create_sandbox(ctx(), &sandbox).await.unwrap();
    let pause: CreateContainerRequest = from_json(pod.nth_request("CreateContainerRequest", 0));
    agent.create_container(ctx(), &pause).await.unwrap();
    for copy in copies_for(&pause) {
        agent.copy_file(ctx(), &copy).await.unwrap();
    }
    let mut start = StartContainerRequest::new();
    start.container_id = pause.container_id.clone();
    agent.start_container(ctx(), &start).await.unwrap();
    pause
}

/// A workload container as the runtime starts it: its copied files, CreateContainer,
/// StartContainer.
pub(crate) async fn start_container(
    agent: &AgentServiceClient,
    container: &CreateContainerRequest,
) {
    for copy in copies_for(container) {
        agent.copy_file(ctx(), &copy).await.unwrap();
    }
    agent.create_container(ctx(), container).await.unwrap();
    let mut start = StartContainerRequest::new();
    start.container_id = container.container_id.clone();
    agent.start_container(ctx(), &start).await.unwrap();
}

/// WaitProcess for container `id`'s init process: its exit status.
pub(crate) async fn wait_exit(agent: &AgentServiceClient, id: &str) -> i32 {
    let mut wait = WaitProcessRequest::new();
    wait.container_id = id.to_owned();
    agent.wait_process(ctx(), &wait).await.unwrap().status
}

/// DestroySandbox: the end of the pod (the agent exits, and the VM with it).
pub(crate) async fn destroy_sandbox(agent: &AgentServiceClient) {
    agent
        .destroy_sandbox(ctx(), &DestroySandboxRequest::new())
        .await
        .unwrap();
}
