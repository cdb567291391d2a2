//! The agent in the measured image, on the pod's own path: the image's init runs the
//! initdata check on the initdata disk (serial `initdata`, as the Kata runtime attaches
//! it) against HOST_DATA from the real kernel's configfs-tsm (the fake TSM provider), then
//! starts `contrast-agent`; the host plays the Kata runtime over virtio-vsock
//! (`vhost-device-vsock`, hybrid-vsock handshake) with the requests a faithful runtime
//! sends for a pod (`contrast_policy::expected_requests`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use contrast_agent::proto::agent::{
    CopyFileRequest, CreateContainerRequest, CreateSandboxRequest, DestroySandboxRequest,
    ExecProcessRequest, GetOOMEventRequest, GuestDetailsRequest, ReadStreamRequest,
    RemoveContainerRequest, Routes, StartContainerRequest, StatsContainerRequest,
    UpdateInterfaceRequest, UpdateRoutesRequest, WaitProcessRequest,
};
use contrast_agent::proto::agent_ttrpc::AgentServiceClient;
use contrast_agent::proto::health::{CheckRequest, health_check_response::ServingStatus};
use contrast_agent::proto::health_ttrpc::HealthClient;
use contrast_agent::proto::types::{IPAddress, IPFamily, Interface, Route};
use contrast_qemu_tests::{
    Console, GUEST_SIMULATOR_SETUP, HarnessError, Vm, connect_vsock, fake_tsm_module, image,
    tempdir,
};
use contrast_testkit::{PodCase, pod_case};
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

/// After the agent exited: which policy the initdata check installed.
const AFTER_AGENT: &str = r#"
echo "CONTRAST-STEP policy-sha256=$(sha256sum /run/measured-cfg/policy.rego | cut -d' ' -f1)"
echo "CONTRAST-STEP agent-peak-rss=$(tr -s ' \t' ' ' < /run/agent-hwm 2>/dev/null | cut -d' ' -f2-)"
echo "CONTRAST-TEST-PASS $1"
"#;

/// A boot of the pod's path with `initdata` on the initdata disk and `host_data` as the
/// launch's HOST_DATA, running on its own thread until it ends or `stop` is set.
struct PodVm {
    scratch: PathBuf,
    stop: Arc<AtomicBool>,
    boot: Option<JoinHandle<Result<Console, HarnessError>>>,
    started: Instant,
}

impl PodVm {
    fn start(test: &str, initdata: &[u8], host_data: [u8; 32]) -> PodVm {
        PodVm::start_with(test, initdata, host_data, None)
    }

    /// With QEMU user networking and `registry` (as the guest reaches it) pulled from over
    /// plain HTTP.
    fn start_with(
        test: &str,
        initdata: &[u8],
        host_data: [u8; 32],
        registry: Option<&str>,
    ) -> PodVm {
        let image = image().unwrap();
        let scratch = tempdir(test).unwrap();
        let module = scratch.join("fake_tsm.ko");
        std::fs::copy(fake_tsm_module().unwrap(), &module).unwrap();
        // The disk is a whole number of sectors.
        let encoded = contrast_initdata_check::source::encode_header_form(initdata, 0);
        let padding = (4096 - encoded.len() % 4096) % 4096;
        let disk = scratch.join("initdata.img");
        std::fs::write(
            &disk,
            contrast_initdata_check::source::encode_header_form(initdata, padding),
        )
        .unwrap();
        let mut env = AGENT_ENV.to_owned();
        if let Some(registry) = registry {
            env.push_str(&format!("CONTRAST_AGENT_INSECURE_REGISTRIES={registry}\n"));
        }
        let mut vm = Vm::new(&image, test)
            .script(&prepare_script())
            .file("fake_tsm.ko", &module)
            .content("host_data", hex::encode(host_data))
            .content("measurement", "0".repeat(96))
            .content("agent.env", env)
            .content("after-agent.sh", AFTER_AGENT)
            .simulator(&contrast_testkit::shared_simulator_dir())
            .unwrap()
            .disk_with_serial(&disk, "initdata")
            .vsock(&scratch)
            .timeout(Duration::from_secs(300));
        if registry.is_some() {
            vm = vm.network();
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
    /// if the VM ends first.
    fn connect(&mut self) -> std::os::unix::net::UnixStream {
        loop {
            match connect_vsock(&self.scratch, 1024, Instant::now() + Duration::from_secs(2)) {
                Ok(stream) => return stream,
                Err(e) => {
                    if self.boot.as_ref().is_some_and(JoinHandle::is_finished) {
                        let console = self.finish();
                        panic!(
                            "the VM ended before the agent listened ({e}):\n{}",
                            console.text
                        );
                    }
                }
            }
        }
    }

    /// Waits for the VM to end (after `stop`, if the test set it).
    fn finish(&mut self) -> Console {
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
fn clients(stream: std::os::unix::net::UnixStream) -> (AgentServiceClient, HealthClient) {
    stream.set_nonblocking(true).unwrap();
    let stream = tokio::net::UnixStream::from_std(stream).unwrap();
    let client = ttrpc::r#async::Client::new(ttrpc::r#async::transport::Socket::new(stream));
    (
        AgentServiceClient::new(client.clone()),
        HealthClient::new(client),
    )
}

fn ctx() -> ttrpc::context::Context {
    context::with_timeout(60_000_000_000)
}

fn from_json<T: serde::de::DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone()).unwrap()
}

fn status<T>(result: ttrpc::Result<T>) -> (Code, String) {
    match result {
        Ok(_) => (Code::OK, String::new()),
        Err(ttrpc::Error::RpcStatus(status)) => (status.code(), status.message.clone()),
        Err(other) => panic!("not a ttRPC status: {other:?}"),
    }
}

/// The web app's CreateContainerRequest with another image digest in its root's storage.
fn with_other_image(pod: &PodCase) -> Value {
    let mut request = pod.nth_request("CreateContainerRequest", 1).clone();
    let source = request["storages"][0]["source"]
        .as_str()
        .unwrap()
        .to_owned();
    let (name, _) = source.split_once('@').unwrap();
    request["storages"][0]["source"] = Value::from(format!("{name}@sha256:{}", "9".repeat(64)));
    request
}

#[test]
fn the_agent_serves_the_runtime_under_the_initdata_policy() {
    let pod = pod_case("web.json");
    let initdata = contrast_policy::initdata(&pod.policy);
    let mut vm = PodVm::start("agent", initdata.as_bytes(), initdata.policy_hash());
    let stream = vm.connect();
    let reachable = vm.started.elapsed();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (agent, health) = clients(stream);
        let ready = health.check(ctx(), &CheckRequest::new()).await.unwrap();
        assert_eq!(ready.status.enum_value(), Ok(ServingStatus::SERVING));

        let mut details = GuestDetailsRequest::new();
        details.mem_block_size = true;
        let details = agent.get_guest_details(ctx(), &details).await.unwrap();
        assert!(details.agent_details.version.starts_with("contrast-agent "));

        let sandbox: CreateSandboxRequest = from_json(pod.request("CreateSandboxRequest"));
        agent.create_sandbox(ctx(), &sandbox).await.unwrap();

        // A container of another image: refused with the Kata agent's wording.
        let other: CreateContainerRequest = from_json(&with_other_image(&pod));
        let (code, message) = status(agent.create_container(ctx(), &other).await);
        assert_eq!(code, Code::PERMISSION_DENIED, "{message}");
        assert!(
            message.starts_with("CreateContainerRequest is blocked by policy"),
            "{message}"
        );
        // The faithful pause container passes the policy and is created.
        let pause: CreateContainerRequest = from_json(pod.request("CreateContainerRequest"));
        agent.create_container(ctx(), &pause).await.unwrap();
        // An exec nobody asked for.
        let mut exec = ExecProcessRequest::new();
        exec.container_id = sandbox.sandbox_id.clone();
        exec.exec_id = "intruder".to_owned();
        let (code, message) = status(agent.exec_process(ctx(), &exec).await);
        assert_eq!(code, Code::PERMISSION_DENIED, "{message}");

        // The end of the pod: the agent stops, and with it the VM.
        agent
            .destroy_sandbox(ctx(), &DestroySandboxRequest::new())
            .await
            .unwrap();
    });
    let console = vm.finish();
    console.expect_pass().unwrap();
    assert_eq!(
        console.step_value("agent-exit"),
        Some("0"),
        "{}",
        console.text
    );
    assert_eq!(
        console.step_value("policy-sha256"),
        Some(hex::encode(contrast_testkit::sha256(pod.policy.as_bytes())).as_str()),
        "the agent did not enforce the initdata's policy:\n{}",
        console.text
    );
    assert!(
        console.contains("initdata verified: installed its policy"),
        "{}",
        console.text
    );
    assert!(
        console
            .text
            .lines()
            .any(|l| l.contains("policy loaded") && l.contains("Initdata")),
        "{}",
        console.text
    );
    eprintln!(
        "agent: QEMU start → agent reachable {reachable:?}, whole boot {:?}",
        console.elapsed
    );
}

#[test]
fn with_initdata_other_than_the_launch_every_request_is_refused() {
    let pod = pod_case("web.json");
    let launched = contrast_policy::initdata(&pod.policy);
    // The host attaches other initdata: a policy that allows everything it wants.
    let other = contrast_policy::initdata(
        "package agent_policy\n\ndefault CreateContainerRequest := true\ndefault CreateSandboxRequest := true\ndefault DestroySandboxRequest := true\n",
    );
    let mut vm = PodVm::start("agent-mismatch", other.as_bytes(), launched.policy_hash());
    let stream = vm.connect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (agent, health) = clients(stream);
        health.check(ctx(), &CheckRequest::new()).await.unwrap();
        let sandbox: CreateSandboxRequest = from_json(pod.request("CreateSandboxRequest"));
        let (code, message) = status(agent.create_sandbox(ctx(), &sandbox).await);
        assert_eq!(code, Code::PERMISSION_DENIED, "{message}");
        assert!(
            message.starts_with("CreateSandboxRequest is blocked by policy"),
            "{message}"
        );
        assert!(message.contains("initdata digest mismatch"), "{message}");
        let pause: CreateContainerRequest = from_json(pod.request("CreateContainerRequest"));
        let (code, _) = status(agent.create_container(ctx(), &pause).await);
        assert_eq!(code, Code::PERMISSION_DENIED);
        // Not even the end of the sandbox: the test stops the VM itself.
        let (code, _) = status(
            agent
                .destroy_sandbox(ctx(), &DestroySandboxRequest::new())
                .await,
        );
        assert_eq!(code, Code::PERMISSION_DENIED);
    });
    vm.stop.store(true, Ordering::SeqCst);
    let console = vm.finish();
    assert!(console.stopped, "the VM ended by itself:\n{}", console.text);
    assert!(
        console.contains("initdata refused: installed a deny-all policy"),
        "{}",
        console.text
    );
}

/// A one-layer image with the host's static busybox as `/bin/busybox` and `/bin/sh`.
fn busybox_layer() -> Vec<u8> {
    let busybox = std::fs::read("/bin/busybox").expect("/bin/busybox (busybox-static)");
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(busybox.len() as u64);
    builder
        .append_data(&mut header, "bin/busybox", busybox.as_slice())
        .unwrap();
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_mode(0o777);
    link.set_uid(0);
    link.set_gid(0);
    link.set_size(0);
    builder.append_link(&mut link, "bin/sh", "busybox").unwrap();
    builder.into_inner().unwrap()
}

/// The CopyFile requests the runtime sends for `container`'s copied mounts (its files
/// under the shared directory), with small contents.
fn copies_for(container: &CreateContainerRequest) -> Vec<CopyFileRequest> {
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

/// Reads a stream to its end.
async fn read_all(agent: &AgentServiceClient, id: &str, stdout: bool) -> String {
    let mut all = Vec::new();
    loop {
        let mut read = ReadStreamRequest::new();
        read.container_id = id.to_owned();
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

/// A pod runs: the app's image is pulled by digest in the guest, crun runs the pause
/// container and the app in the sandbox's namespaces, the app's output reaches the host
/// through ReadStdout/ReadStderr and WaitProcess gives its exit code.
#[test]
fn the_pod_runs_and_its_output_and_exit_code_reach_the_host() {
    use contrast_testkit::registry::{LayeredImage, Registry, RegistrySetup};
    let registry = Registry::start(RegistrySetup::default());
    let work = tempdir("agent-run-layout").unwrap();
    let image = LayeredImage::new(r#"{"Entrypoint":["/bin/sh"]}"#, &[busybox_layer()]);
    image.push(&registry, &work, "guest/busybox", "v1");
    let guest_registry = format!("10.0.2.2:{}", registry.port);
    let reference = format!("{guest_registry}/guest/busybox@{}", image.digest());
    // Both emptyDir kinds: a tmpfs shared by the pod (ephemeral) and a directory (local).
    let script = "echo hello from the pod; echo \"uts: $(hostname)\"; \
                  echo memory > /scratch/file && echo disk > /cache/file && \
                  cat /scratch/file /cache/file; grep -c ' /scratch tmpfs ' /proc/mounts; \
                  echo to stderr >&2; exit 3";
    let doc = serde_json::json!({
        "name": "app",
        "namespace": "default",
        "spec": {
            "runtimeClassName": "contrast-cc-metal-qemu-snp-0123abcd",
            "containers": [{
                "name": "app",
                "image": reference,
                "command": ["/bin/sh", "-c", script],
                "volumeMounts": [
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "cache", "mountPath": "/cache"},
                ],
            }, {
                // Asks for more than its limit: the OOM killer ends it.
                "name": "hog",
                "image": reference,
                "command": ["/bin/sh", "-c", "head -c 200000000 /dev/zero | tail"],
                "resources": {"limits": {"memory": "16Mi"}},
            }],
            "volumes": [
                {"name": "scratch", "emptyDir": {"medium": "Memory"}},
                {"name": "cache", "emptyDir": {}},
            ],
        },
        "images": {
            &reference: {
                "digest": image.digest(),
                "env": ["PATH=/usr/bin:/bin"],
                "entrypoint": ["/bin/sh"],
                "cmd": [],
                "working_dir": "",
                "user": "",
                "volumes": [],
            }
        }
    });
    let pod = contrast_testkit::pod_case_of(&doc, "the pod with emptyDirs");
    let initdata = contrast_policy::initdata(&pod.policy);
    let mut vm = PodVm::start_with(
        "agent-run",
        initdata.as_bytes(),
        initdata.policy_hash(),
        Some(&guest_registry),
    );
    let stream = vm.connect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stdout, stderr, exit, elapsed) = runtime.block_on(async {
        let (agent, _) = clients(stream);
        let started = Instant::now();
        // The pod's network first, as the runtime hands it over (QEMU's user network:
        // the first NIC's MAC, the host's loopback as 10.0.2.2).
        let mut address = IPAddress::new();
        address.family = IPFamily::v4.into();
        address.address = "10.0.2.15".to_owned();
        address.mask = "24".to_owned();
        let mut iface = Interface::new();
        iface.name = "eth0".to_owned();
        iface.hwAddr = "52:54:00:12:34:56".to_owned();
        iface.IPAddresses = vec![address];
        let mut update = UpdateInterfaceRequest::new();
        update.interface = Some(iface).into();
        agent.update_interface(ctx(), &update).await.unwrap();
        let mut default_route = Route::new();
        default_route.gateway = "10.0.2.2".to_owned();
        default_route.device = "eth0".to_owned();
        let mut routes = Routes::new();
        routes.Routes = vec![default_route];
        let mut update = UpdateRoutesRequest::new();
        update.routes = Some(routes).into();
        agent.update_routes(ctx(), &update).await.unwrap();

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

        let app: CreateContainerRequest = from_json(pod.nth_request("CreateContainerRequest", 1));
        for copy in copies_for(&app) {
            agent.copy_file(ctx(), &copy).await.unwrap();
        }
        agent.create_container(ctx(), &app).await.unwrap();
        start.container_id = app.container_id.clone();
        agent.start_container(ctx(), &start).await.unwrap();
        let stdout = read_all(&agent, &app.container_id, true).await;
        let stderr = read_all(&agent, &app.container_id, false).await;
        let mut wait = WaitProcessRequest::new();
        wait.container_id = app.container_id.clone();
        let exit = agent.wait_process(ctx(), &wait).await.unwrap().status;
        let elapsed = started.elapsed();
        let mut remove = RemoveContainerRequest::new();
        remove.container_id = app.container_id.clone();
        agent.remove_container(ctx(), &remove).await.unwrap();

        // The running pause container's cgroup, as the kubelet's statistics read it.
        let mut stats = StatsContainerRequest::new();
        stats.container_id = pause.container_id.clone();
        let stats = agent.stats_container(ctx(), &stats).await.unwrap();
        let memory = stats
            .cgroup_stats
            .memory_stats
            .usage
            .as_ref()
            .unwrap()
            .usage;
        assert!(memory > 0, "{stats:?}");
        assert!(stats.cgroup_stats.pids_stats.current >= 1, "{stats:?}");

        // The hog: killed at its memory limit, reported by GetOOMEvent.
        let mut hog: CreateContainerRequest =
            from_json(pod.nth_request("CreateContainerRequest", 2));
        // The runtime passes the pod's memory limit in the spec (the policy leaves
        // resources free: docs/policy-fields.md).
        let mut memory = contrast_agent::proto::oci::LinuxMemory::new();
        memory.Limit = 16 << 20;
        let mut resources = contrast_agent::proto::oci::LinuxResources::new();
        resources.Memory = Some(memory).into();
        hog.OCI
            .mut_or_insert_default()
            .Linux
            .mut_or_insert_default()
            .Resources = Some(resources).into();
        for copy in copies_for(&hog) {
            agent.copy_file(ctx(), &copy).await.unwrap();
        }
        agent.create_container(ctx(), &hog).await.unwrap();
        let oom = {
            let agent = agent.clone();
            tokio::spawn(
                async move { agent.get_oom_event(ctx(), &GetOOMEventRequest::new()).await },
            )
        };
        start.container_id = hog.container_id.clone();
        agent.start_container(ctx(), &start).await.unwrap();
        wait.container_id = hog.container_id.clone();
        let hog_exit = agent.wait_process(ctx(), &wait).await.unwrap().status;
        assert_eq!(hog_exit, 137, "killed by SIGKILL");
        let event = tokio::time::timeout(Duration::from_secs(30), oom)
            .await
            .expect("GetOOMEvent answered")
            .unwrap()
            .unwrap();
        assert_eq!(event.container_id, hog.container_id);
        agent
            .destroy_sandbox(ctx(), &DestroySandboxRequest::new())
            .await
            .unwrap();
        (stdout, stderr, exit, elapsed)
    });
    let console = vm.finish();
    let _ = std::fs::remove_dir_all(&work);
    console.expect_pass().unwrap();
    assert_eq!(
        stdout, "hello from the pod\nuts: app\nmemory\ndisk\n1\n",
        "stdout; console:\n{}",
        console.text
    );
    assert_eq!(stderr, "to stderr\n", "stderr; console:\n{}", console.text);
    assert_eq!(exit, 3, "{}", console.text);
    eprintln!(
        "agent-run: CreateSandbox → app exited in {elapsed:?} (TCG); agent peak RSS {}",
        console.step_value("agent-peak-rss").unwrap_or("?")
    );
}
