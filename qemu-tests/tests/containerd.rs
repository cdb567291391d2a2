//! A confidential pod through the real containerd: Debian's containerd 1.6 (a private one,
//! `contrast-cri-testkit`) is driven through the CRI as the kubelet drives it, and runs the
//! pod with our shim (`containerd-shim-contrast-cc-v2`, runtime type
//! `io.containerd.contrast-cc.v2`) → QEMU with the measured image → our agent. The pod's
//! policy is what `contrast generate` makes of the pod; the shim turns containerd's OCI
//! specs into the agent's requests, and the agent enforces that policy on them.
//!
//! The pod is on a pod network (CNI's bridge plugin): the shim joins the VM to the veth CNI
//! put in the pod's namespace, and the host reaches the app at the pod's address.
//!
//! The platform is simulated (no TEE here): the Kata configuration's `[simulation]` runs
//! the same QEMU under TCG in test mode, with the test TSM provider reading HOST_DATA from
//! QEMU.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::node::*;
use contrast_cri_testkit::Cri;
use contrast_cri_testkit::kubelet::container_config;
use contrast_cri_testkit::runtime::{
    ContainerState, ContainerStatus, ContainerStatusRequest, ExecSyncRequest,
    LinuxContainerResources, PodSandboxStatusRequest, RunPodSandboxRequest, StopContainerRequest,
    UpdateContainerResourcesRequest,
};

/// The CRI's status of container `id`.
async fn container_status(cri: &mut Cri, id: &str) -> ContainerStatus {
    cri.runtime
        .container_status(ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

/// The pod's address (CNI's, as containerd reports it) and its network namespace.
async fn pod_address(cri: &mut Cri, sandbox_id: &str) -> (String, String) {
    let status = cri
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let ip = status.status.unwrap().network.unwrap().ip;
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
    let netns = info["runtimeSpec"]["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|ns| ns["type"] == "network")
        .and_then(|ns| ns["path"].as_str())
        .unwrap()
        .to_owned();
    (ip, netns)
}

#[test]
fn containerd_runs_a_confidential_pod_through_the_shim() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut node = AppNode::start("containerd").await;
        let initdata = node.pod();
        let logs = node.work.join("pod-logs");
        std::fs::create_dir_all(&logs).unwrap();

        let refusing = Instant::now();
        // A pod whose initdata annotation is not initdata: refused before any VM starts,
        // naming the annotation; nothing is left.
        let broken = node
            .cri
            .runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(sandbox_config(&logs, "bm90IGluaXRkYXRh", false)),
                runtime_handler: HANDLER.to_owned(),
            })
            .await
            .unwrap_err();
        assert!(
            broken
                .message()
                .contains(contrast_initdata::INITDATA_ANNOTATION),
            "{broken:?}"
        );
        let leftovers = node
            .containerd
            .settled_leftovers(Duration::from_secs(30))
            .await;
        assert!(leftovers.is_empty(), "after the refusal: {leftovers:?}");
        eprintln!(
            "containerd: the refused pod, cleaned up, {:?}",
            refusing.elapsed()
        );

        // A single container (`ctr run`, no CRI): refused by the shim, which runs pods
        // only (a confidential container's policy comes from its pod), and nothing is left.
        let reference = node.images.app.reference.clone();
        let shim = node.shim.to_str().unwrap().to_owned();
        let single = node
            .containerd
            .ctr(&[
                "run",
                "--rm",
                "--runtime",
                &shim,
                &reference,
                "single-container",
                "/bin/true",
            ])
            .unwrap();
        let said = String::from_utf8_lossy(&single.stderr);
        assert!(!single.status.success(), "ctr run succeeded: {said}");
        assert!(
            said.contains("no io.kubernetes.cri.container-type annotation")
                && said.contains("not single containers"),
            "{said}"
        );
        let leftovers = node
            .containerd
            .settled_leftovers(Duration::from_secs(30))
            .await;
        assert!(leftovers.is_empty(), "after ctr run: {leftovers:?}");
        eprintln!("containerd: ctr run refused: {}", said.trim());

        let started = Instant::now();
        let (sandbox_id, sandbox) = node.run_sandbox(&logs, &initdata).await;
        let sandbox_ready = started.elapsed();
        assert_eq!(qemu_processes(&sandbox_id).len(), 1, "one VM for the pod");

        let app = node.run_app(&sandbox_id, &sandbox).await;
        // The app's message to the host over the pod network (it prints its line after).
        let (message, peer) = node.app_message().await;
        assert_eq!(message, APP_MESSAGE);
        // Its output, through the agent, the shim and containerd into the CRI log.
        let line = wait_for_log_line(&logs.join("app.log"), APP_LINE).await;
        let app_running = started.elapsed();
        let shims = shim_rss_kib();
        assert_eq!(shims.len(), 1, "one shim for the pod: {shims:?}");
        assert!(line.contains(" stdout F "), "a CRI log line: {line}");
        eprintln!("containerd: the app's log line: {line}");
        // The pod is on the pod network: the address CNI gave its namespace is the guest's
        // (the guest pulled the app's image over it from the registry on the gateway), and
        // the app's connection to the host comes from it (guest → the VM's tap → tc → veth
        // → bridge).
        let (pod_ip, netns) = pod_address(&mut node.cri, &sandbox_id).await;
        assert!(
            pod_ip.starts_with(&format!("{}.", node.network.prefix)),
            "{pod_ip}"
        );
        assert_eq!(
            peer.ip().to_string(),
            pod_ip,
            "the app's message came from the pod"
        );
        eprintln!("containerd: from the pod at {pod_ip} to the host: {message:?}");
        // The host reaches the guest (it answered ARP for the pod's address with the veth's
        // MAC), but nothing new gets in: the guest's default-deny rule stays until the
        // pod's mesh sidecar or Initializer lifts it, which this pod has neither of. A
        // dropped SYN times out; without the rule the guest would refuse at once.
        let inbound = tokio::time::timeout(
            Duration::from_secs(3),
            tokio::net::TcpStream::connect((pod_ip.as_str(), 8080)),
        )
        .await;
        assert!(
            inbound.is_err(),
            "a new inbound connection got an answer: {inbound:?}"
        );
        // The emptyDir volumes are the guest's: what the app wrote is not on the host.
        for name in ["scratch", "cache"] {
            let written = node.empty_dirs().join(name).join("file");
            assert!(!written.exists(), "{} reached the host", written.display());
        }

        // The probe the policy allows runs; another command is refused with the policy's
        // reason.
        let probe = node
            .cri
            .runtime
            .exec_sync(ExecSyncRequest {
                container_id: app.clone(),
                cmd: PROBE.iter().map(|a| (*a).to_owned()).collect(),
                timeout: 60,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(probe.exit_code, 0);
        assert_eq!(String::from_utf8_lossy(&probe.stdout), "probe ok\n");
        let refused = node
            .cri
            .runtime
            .exec_sync(ExecSyncRequest {
                container_id: app.clone(),
                cmd: vec!["cat".to_owned(), "/proc/self/environ".to_owned()],
                timeout: 60,
            })
            .await
            .unwrap_err();
        assert!(
            refused
                .message()
                .contains("ExecProcessRequest is blocked by policy"),
            "{refused:?}"
        );

        // New limits for a running container (kubelet's in-place resize): the VM was sized
        // at launch, so the shim refuses, and containerd says why.
        let resized = node
            .cri
            .runtime
            .update_container_resources(UpdateContainerResourcesRequest {
                container_id: app.clone(),
                linux: Some(LinuxContainerResources {
                    memory_limit_in_bytes: 64 << 20,
                    ..Default::default()
                }),
                annotations: Default::default(),
            })
            .await
            .unwrap_err();
        assert!(resized.message().contains("fixed at launch"), "{resized:?}");
        eprintln!("containerd: the refused resize: {}", resized.message());

        // A container the pod does not have: containerd's error carries the agent's
        // refusal.
        let intruder = run_container(
            &mut node.cri,
            &sandbox_id,
            &sandbox,
            container_config("intruder", &reference, &["/bin/sh", "-c", "id"]),
        )
        .await
        .unwrap_err();
        assert!(
            intruder
                .message()
                .contains("CreateContainerRequest is blocked by policy"),
            "{intruder:?}"
        );
        eprintln!("containerd: the refused container: {}", intruder.message());

        let stopping = Instant::now();
        // The hog, at its memory limit: the guest's OOM killer ends it, and containerd hears
        // of it through the shim (GetOOMEvent → /tasks/oom) as kubelet's OOMKilled.
        let mut hog = container_config("hog", &reference, &HOG_COMMAND);
        if let Some(linux) = hog.linux.as_mut() {
            linux.resources = Some(LinuxContainerResources {
                memory_limit_in_bytes: 16 << 20,
                ..Default::default()
            });
        }
        let hog = run_container(&mut node.cri, &sandbox_id, &sandbox, hog)
            .await
            .unwrap_or_else(|e| panic!("the hog: {e:?}"));
        let deadline = Instant::now() + Duration::from_secs(60);
        let hog_status = loop {
            let status = container_status(&mut node.cri, &hog).await;
            if status.state == ContainerState::ContainerExited as i32
                && !status.reason.is_empty()
                && (status.reason == "OOMKilled" || Instant::now() > deadline)
            {
                break status;
            }
            assert!(Instant::now() < deadline, "the hog still runs: {status:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(
            hog_status.reason,
            "OOMKilled",
            "{hog_status:?}\n{}",
            node.containerd.log_tail()
        );
        assert_eq!(hog_status.exit_code, 137);
        eprintln!(
            "containerd: the hog: {} ({})",
            hog_status.reason, hog_status.exit_code
        );

        // The app stopped as the kubelet stops it: SIGTERM, which `sleep` as the container's
        // first process ignores, then SIGKILL after the grace period; its exit code comes
        // back through WaitProcess, the shim's TaskExit and containerd.
        node.cri
            .runtime
            .stop_container(StopContainerRequest {
                container_id: app.clone(),
                timeout: 1,
            })
            .await
            .unwrap();
        let status = container_status(&mut node.cri, &app).await;
        assert_eq!(status.state, ContainerState::ContainerExited as i32);
        assert_eq!(status.exit_code, 137, "killed by SIGKILL");
        eprintln!(
            "containerd: StopContainer (1 s grace) {:?}",
            stopping.elapsed()
        );

        node.remove_sandbox(&sandbox_id).await;
        let leftovers = node
            .containerd
            .settled_leftovers(Duration::from_secs(30))
            .await;
        assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
        assert_eq!(
            qemu_processes(&sandbox_id),
            Vec::<u32>::new(),
            "no QEMU left"
        );
        assert!(
            !Path::new(&netns).exists(),
            "the pod's network namespace is removed"
        );
        assert!(
            !Path::new(contrast_shim::task::STATE_DIR)
                .join(&sandbox_id)
                .exists(),
            "the pod VM's files are removed"
        );
        // The same pod on the host's network: no network namespace of its own, so the shim
        // gives the VM QEMU's user network in its own namespace; the guest still pulls
        // its image and reaches the host (through QEMU), and everything goes again.
        node.host_network = true;
        let initdata = node.pod();
        let logs = node.work.join("host-network-logs");
        std::fs::create_dir_all(&logs).unwrap();
        let host_started = Instant::now();
        let (sandbox_id, sandbox) = node.run_sandbox(&logs, &initdata).await;
        node.run_app(&sandbox_id, &sandbox).await;
        let (message, _) = node.app_message().await;
        assert_eq!(message, APP_MESSAGE);
        wait_for_log_line(&logs.join("app.log"), APP_LINE).await;
        eprintln!(
            "containerd: the host-network pod's app ran and reached the host, {:?}",
            host_started.elapsed()
        );
        node.remove_sandbox(&sandbox_id).await;
        let leftovers = node
            .containerd
            .settled_leftovers(Duration::from_secs(30))
            .await;
        assert!(
            leftovers.is_empty(),
            "after the host-network pod: {leftovers:?}"
        );
        assert_eq!(qemu_processes(&sandbox_id), Vec::<u32>::new());

        eprintln!(
            "containerd: RunPodSandbox (VM boot, agent, CreateSandbox, pause) {sandbox_ready:?}, \
             app running (guest pull included) {app_running:?}; the pod's shim: {} KiB resident",
            shims[0]
        );
    });
}
