//! The agent in the measured image, on the pod's own path: the image's init runs the
//! initdata check on the initdata disk (serial `initdata`, as the Kata runtime attaches
//! it) against HOST_DATA from the real kernel's configfs-tsm (the fake TSM provider), then
//! starts `contrast-agent`; the host plays the Kata runtime over virtio-vsock
//! (`vhost-device-vsock`, hybrid-vsock handshake) with the requests a faithful runtime
//! sends for a pod (`contrast_policy::expected_requests`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::pod::*;
use contrast_agent::proto::agent::{
    CreateContainerRequest, CreateSandboxRequest, DestroySandboxRequest, ExecProcessRequest,
    GetOOMEventRequest, GuestDetailsRequest, ReadStreamRequest, RemoveContainerRequest,
    SignalProcessRequest, StartContainerRequest, StatsContainerRequest, TtyWinResizeRequest,
    WaitProcessRequest, WriteStreamRequest,
};
use contrast_agent::proto::health::{CheckRequest, health_check_response::ServingStatus};
use contrast_testkit::pod_case;
use ttrpc::Code;

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
        // The app with one more mount (the VM's root, read-write): refused.
        let mut mounted = pod.nth_request("CreateContainerRequest", 1).clone();
        mounted["OCI"]["Mounts"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({
                "destination": "/host", "source": "/", "type_": "bind", "options": ["rbind", "rw"],
            }));
        let mounted: CreateContainerRequest = from_json(&mounted);
        let (code, message) = status(agent.create_container(ctx(), &mounted).await);
        assert_eq!(code, Code::PERMISSION_DENIED, "{message}");
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
    vm.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let console = vm.finish();
    assert!(console.stopped, "the VM ended by itself:\n{}", console.text);
    assert!(
        console.contains("initdata refused: installed a deny-all policy"),
        "{}",
        console.text
    );
}

/// A pod runs: the app's image is pulled by digest in the guest, crun runs the pause
/// container and the app in the sandbox's namespaces, the app's output reaches the host
/// through ReadStdout/ReadStderr and WaitProcess gives its exit code.
#[test]
fn the_pod_runs_and_its_output_and_exit_code_reach_the_host() {
    let images = AppRegistry::start("agent-run");
    let guest_registry = images.guest_registry.clone();
    let reference = images.app.reference.clone();
    // Both emptyDir kinds: a tmpfs shared by the pod (ephemeral) and a directory (local).
    let script = "echo hello from the pod; echo \"uts: $(hostname)\"; \
                  echo memory > /scratch/file && echo disk > /cache/file && \
                  cat /scratch/file /cache/file; grep -c ' /scratch tmpfs ' /proc/mounts; \
                  i=0; while [ ! -e /scratch/probed ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; \
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
                // An exec the policy allows: the runtime runs it in the running app.
                "readinessProbe": {"exec": {"command": ["/bin/sh", "-c", "echo probe; touch /scratch/probed"]}},
                // A long one, ended by a signal.
                "livenessProbe": {"exec": {"command": ["/bin/sh", "-c", "sleep 600"]}},
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
            }, {
                // A container with a terminal, whose probe may have one too.
                "name": "term",
                "image": reference,
                "command": ["/bin/sh", "-c", "sleep 600"],
                "tty": true,
                // Run with a terminal: waits until the terminal has a size (busybox's
                // stty prints none for 0x0), prints it.
                "startupProbe": {"exec": {"command": ["/bin/sh", "-c",
                    "i=0; while [ -z \"$(stty size 2>/dev/null)\" ] && [ $i -lt 300 ]; \
                     do sleep 0.1; i=$((i+1)); done; stty size"]}},
            }],
            "volumes": [
                {"name": "scratch", "emptyDir": {"medium": "Memory"}},
                {"name": "cache", "emptyDir": {}},
            ],
        },
        "images": {&reference: images.app.config()}
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
        let pause = start_sandbox(&agent, &pod).await;
        let app: CreateContainerRequest = from_json(pod.nth_request("CreateContainerRequest", 1));
        start_container(&agent, &app).await;
        // The liveness probe runs until SignalProcess ends it.
        let execs: Vec<ExecProcessRequest> = (0..3)
            .map(|n| from_json(pod.nth_request("ExecProcessRequest", n)))
            .collect();
        let is_sleep = |e: &ExecProcessRequest| e.process.Args.iter().any(|a| a == "sleep 600");
        let sleeper = execs.iter().find(|e| is_sleep(e)).unwrap();
        agent.exec_process(ctx(), sleeper).await.unwrap();
        let mut signal = SignalProcessRequest::new();
        signal.container_id = app.container_id.clone();
        signal.exec_id = sleeper.exec_id.clone();
        signal.signal = 9;
        agent.signal_process(ctx(), &signal).await.unwrap();
        let mut wait_sleeper = WaitProcessRequest::new();
        wait_sleeper.container_id = app.container_id.clone();
        wait_sleeper.exec_id = sleeper.exec_id.clone();
        assert_eq!(
            agent
                .wait_process(ctx(), &wait_sleeper)
                .await
                .unwrap()
                .status,
            137
        );
        let command = |text: &str| {
            execs
                .iter()
                .find(|e| e.process.Args.iter().any(|a| a.contains(text)))
                .unwrap()
                .clone()
        };
        // An exec with a terminal, in the container that has one (the policy refuses a
        // terminal elsewhere, as genpolicy's does): the size TtyWinResize sets reaches the
        // process, which prints it on the terminal. Its input stays the pod's: the policy
        // refuses WriteStdin (as genpolicy's does).
        let term: CreateContainerRequest = from_json(pod.nth_request("CreateContainerRequest", 3));
        start_container(&agent, &term).await;
        let mut in_app = command("echo probe");
        in_app.process.mut_or_insert_default().Terminal = true;
        let (code, message) = status(agent.exec_process(ctx(), &in_app).await);
        assert_eq!(code, Code::PERMISSION_DENIED, "{message}");
        let mut tty = command("stty size");
        assert_eq!(tty.container_id, term.container_id);
        tty.process.mut_or_insert_default().Terminal = true;
        agent.exec_process(ctx(), &tty).await.unwrap();
        let mut resize = TtyWinResizeRequest::new();
        resize.container_id = term.container_id.clone();
        resize.exec_id = tty.exec_id.clone();
        resize.row = 33;
        resize.column = 101;
        agent.tty_win_resize(ctx(), &resize).await.unwrap();
        let mut line = WriteStreamRequest::new();
        line.container_id = term.container_id.clone();
        line.exec_id = tty.exec_id.clone();
        line.data = b"go\n".to_vec();
        let (code, message) = status(agent.write_stdin(ctx(), &line).await);
        assert_eq!(code, Code::PERMISSION_DENIED, "{message}");
        let mut seen = String::new();
        while !seen.contains("33 101") {
            let mut read = ReadStreamRequest::new();
            read.container_id = term.container_id.clone();
            read.exec_id = tty.exec_id.clone();
            read.len = 4096;
            let chunk = agent.read_stdout(ctx(), &read).await.unwrap();
            assert!(!chunk.data.is_empty(), "the terminal ended with {seen:?}");
            seen.push_str(&String::from_utf8_lossy(&chunk.data));
        }
        let mut wait_tty = WaitProcessRequest::new();
        wait_tty.container_id = term.container_id.clone();
        wait_tty.exec_id = tty.exec_id.clone();
        assert_eq!(
            agent.wait_process(ctx(), &wait_tty).await.unwrap().status,
            0,
            "{seen:?}"
        );
        signal.container_id = term.container_id.clone();
        signal.exec_id = String::new();
        agent.signal_process(ctx(), &signal).await.unwrap();
        wait_tty.exec_id = String::new();
        assert_eq!(
            agent.wait_process(ctx(), &wait_tty).await.unwrap().status,
            137
        );
        let mut remove = RemoveContainerRequest::new();
        remove.container_id = term.container_id.clone();
        agent.remove_container(ctx(), &remove).await.unwrap();
        // The app's own process has no terminal to resize.
        resize.container_id = app.container_id.clone();
        resize.exec_id = String::new();
        let (code, message) = status(agent.tty_win_resize(ctx(), &resize).await);
        assert_eq!(code, Code::FAILED_PRECONDITION, "{message}");

        // The readiness probe, exec'd into the running app; the app waits for it.
        let probe = command("echo probe");
        agent.exec_process(ctx(), &probe).await.unwrap();
        let probe_out = read_exec(&agent, &app.container_id, &probe.exec_id).await;
        assert_eq!(probe_out, "probe\n");
        let mut wait_probe = WaitProcessRequest::new();
        wait_probe.container_id = app.container_id.clone();
        wait_probe.exec_id = probe.exec_id.clone();
        assert_eq!(
            agent.wait_process(ctx(), &wait_probe).await.unwrap().status,
            0
        );
        // An exec the policy does not know: refused, nothing runs.
        let mut shell = probe.clone();
        shell.exec_id = "shell".to_owned();
        shell.process.mut_or_insert_default().Args = vec!["/bin/sh".to_owned()];
        let (code, message) = status(agent.exec_process(ctx(), &shell).await);
        assert_eq!(code, Code::PERMISSION_DENIED, "{message}");
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
        let mut start = StartContainerRequest::new();
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
    console.expect_pass().unwrap();
    assert_eq!(
        stdout, "hello from the pod\nuts: app\nmemory\ndisk\n1\n",
        "stdout; console:\n{}",
        console.text
    );
    assert_eq!(stderr, "to stderr\n", "stderr; console:\n{}", console.text);
    assert_eq!(exit, 3, "{}", console.text);
    // The pod VM's default-deny rules: installed before the agent, and with neither an
    // Initializer nor a mesh sidecar in this pod, still there.
    assert!(
        console.contains("default-deny rules installed"),
        "{}",
        console.text
    );
    for tool in ["iptables", "ip6tables"] {
        assert_eq!(
            console.step_value(&format!("default-deny-{tool}")),
            Some("present"),
            "{}",
            console.text
        );
    }
    eprintln!(
        "agent-run: CreateSandbox → app exited in {elapsed:?} (TCG); agent peak RSS {}",
        console.step_value("agent-peak-rss").unwrap_or("?")
    );
}

/// A pod's block volume (`volumeDevices`), attached as the QEMU platforms' runtime
/// attaches it (virtio-scsi, target 0, LUN 1): the agent finds the guest's disk at that
/// address, and the container reads and writes it at its `devicePath`.
#[test]
fn a_block_volume_reaches_the_container_as_the_guests_disk() {
    const MARKER: &[u8] = b"contrast block volume marker";
    let images = AppRegistry::start("agent-volume");
    let guest_registry = images.guest_registry.clone();
    let reference = images.app.reference.clone();
    let script = format!(
        "[ -b /dev/csi0 ] && echo block device; head -c {} /dev/csi0; echo; \
         printf 'written by the pod' | dd of=/dev/csi0 bs=512 seek=8 2>/dev/null && sync",
        MARKER.len()
    );
    let doc = serde_json::json!({
        "name": "app",
        "namespace": "default",
        "spec": {
            "runtimeClassName": "contrast-cc-metal-qemu-snp-0123abcd",
            "containers": [{
                "name": "app",
                "image": reference,
                "command": ["/bin/sh", "-c", script],
                "volumeDevices": [{"name": "data", "devicePath": "/dev/csi0"}],
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        },
        "images": {&reference: images.app.config()}
    });
    let pod = contrast_testkit::pod_case_of(&doc, "the pod with a block volume");
    let volume = images.work.join("volume.img");
    let mut content = MARKER.to_vec();
    content.resize(1 << 20, 0);
    std::fs::write(&volume, &content).unwrap();
    let initdata = contrast_policy::initdata(&pod.policy);
    let mut vm = PodVm::launch(
        "agent-volume",
        initdata.as_bytes(),
        initdata.policy_hash(),
        &Launch {
            registry: Some(&guest_registry),
            volumes: vec![volume.clone()],
            ..Launch::default()
        },
    );
    let stream = vm.connect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stdout, stderr, exit) = runtime.block_on(async {
        let (agent, _) = clients(stream);
        start_sandbox(&agent, &pod).await;
        let app: CreateContainerRequest = from_json(pod.nth_request("CreateContainerRequest", 1));
        assert_eq!(app.devices[0].type_, "scsi", "{:?}", app.devices);
        start_container(&agent, &app).await;
        let stdout = read_all(&agent, &app.container_id, true).await;
        let stderr = read_all(&agent, &app.container_id, false).await;
        let exit = wait_exit(&agent, &app.container_id).await;
        destroy_sandbox(&agent).await;
        (stdout, stderr, exit)
    });
    let console = vm.finish();
    let written = std::fs::read(&volume).unwrap();
    console.expect_pass().unwrap();
    assert_eq!(exit, 0, "{stderr}\n{}", console.text);
    assert_eq!(
        stdout,
        format!("block device\n{}\n", String::from_utf8_lossy(MARKER)),
        "{stderr}\n{}",
        console.text
    );
    assert_eq!(&written[4096..4096 + 18], b"written by the pod");
}

/// A pod of one container, `app`, from the registry's busybox image, running `script`.
fn app_pod(images: &AppRegistry, script: &str, what: &str) -> contrast_testkit::PodCase {
    let reference = &images.app.reference;
    let doc = serde_json::json!({
        "name": "app",
        "namespace": "default",
        "spec": {
            "runtimeClassName": "contrast-cc-metal-qemu-snp-0123abcd",
            "containers": [{
                "name": "app",
                "image": reference,
                "command": ["/bin/sh", "-c", script],
            }],
        },
        "images": {reference: images.app.config()}
    });
    contrast_testkit::pod_case_of(&doc, what)
}

/// A policy that refuses ReadStreamRequest: the agent still drains the container's output
/// (so the container does not block on a full pipe) but answers with no data, as the Kata
/// agent redacts it; the container runs to its end.
#[test]
fn output_the_policy_refuses_is_withheld() {
    let images = AppRegistry::start("agent-redact");
    let guest_registry = images.guest_registry.clone();
    let mut pod = app_pod(
        &images,
        "echo a secret line; echo another >&2",
        "the pod whose output is private",
    );
    let allowing = "default ReadStreamRequest := true";
    assert!(
        pod.policy.contains(allowing),
        "the generated policy changed"
    );
    pod.policy = pod
        .policy
        .replace(allowing, "default ReadStreamRequest := false");
    let initdata = contrast_policy::initdata(&pod.policy);
    let mut vm = PodVm::launch(
        "agent-redact",
        initdata.as_bytes(),
        initdata.policy_hash(),
        &Launch {
            registry: Some(&guest_registry),
            ..Launch::default()
        },
    );
    let stream = vm.connect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stdout, stderr, exit) = runtime.block_on(async {
        let (agent, _) = clients(stream);
        start_sandbox(&agent, &pod).await;
        let app: CreateContainerRequest = from_json(pod.nth_request("CreateContainerRequest", 1));
        start_container(&agent, &app).await;
        let mut read = ReadStreamRequest::new();
        read.container_id = app.container_id.clone();
        read.len = 4096;
        // Each read waits for output (or the end), then answers without it.
        let stdout = agent.read_stdout(ctx(), &read).await.unwrap().data;
        let stderr = agent.read_stderr(ctx(), &read).await.unwrap().data;
        let exit = wait_exit(&agent, &app.container_id).await;
        destroy_sandbox(&agent).await;
        (stdout, stderr, exit)
    });
    let console = vm.finish();
    console.expect_pass().unwrap();
    assert_eq!(exit, 0, "{}", console.text);
    assert!(stdout.is_empty(), "stdout reached the host: {stdout:?}");
    assert!(stderr.is_empty(), "stderr reached the host: {stderr:?}");
    assert!(
        !console.text.contains("a secret line"),
        "the output reached the console"
    );
}

/// A private HTTPS registry: the node's image puller config rides on its own disk (serial
/// `imagepuller`, as the shim attaches it), the image's init copies it for the agent, and
/// the pull uses its credentials and its CA, which the guest's own bundle does not hold.
/// The registry answers nothing without credentials, so the app running proves where they
/// came from.
#[test]
fn a_private_registry_serves_the_pull_with_the_nodes_imagepuller_config() {
    let key = rcgen::generate_simple_self_signed(vec![
        USER_NETWORK_HOST.to_owned(),
        "127.0.0.1".to_owned(),
    ])
    .unwrap();
    let images = AppRegistry::start_with(
        "agent-private",
        USER_NETWORK_HOST,
        RegistrySetup {
            tls: Some((key.cert.pem(), key.signing_key.serialize_pem())),
            basic_auth: Some(("puller".to_owned(), "pull:secret".to_owned())),
            ..RegistrySetup::default()
        },
    );
    let guest_registry = images.guest_registry.clone();
    let pod = app_pod(
        &images,
        "echo pulled from a private registry",
        "a pod from a private registry",
    );
    let initdata = contrast_policy::initdata(&pod.policy);
    let imagepuller = format!(
        "[registries.\"{guest_registry}\"]\nusername = \"puller\"\npassword = \"pull:secret\"\n\
         ca-certs = '''\n{}'''\n",
        key.cert.pem()
    );
    let mut vm = PodVm::launch(
        "agent-private",
        initdata.as_bytes(),
        initdata.policy_hash(),
        &Launch {
            registry: Some(&guest_registry),
            https: true,
            imagepuller: Some(&imagepuller),
            ..Launch::default()
        },
    );
    let stream = vm.connect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stdout, exit) = runtime.block_on(async {
        let (agent, _) = clients(stream);
        start_sandbox(&agent, &pod).await;
        let app: CreateContainerRequest = from_json(pod.nth_request("CreateContainerRequest", 1));
        start_container(&agent, &app).await;
        let stdout = read_all(&agent, &app.container_id, true).await;
        let exit = wait_exit(&agent, &app.container_id).await;
        destroy_sandbox(&agent).await;
        (stdout, exit)
    });
    let console = vm.finish();
    console.expect_pass().unwrap();
    assert_eq!(exit, 0, "{}", console.text);
    assert_eq!(stdout, "pulled from a private registry\n");
    assert!(
        console.text.contains("image puller config from the node"),
        "the init did not copy the config: {}",
        console.text
    );
    assert!(
        !console.text.contains("pull:secret"),
        "the password reached the console"
    );
}
