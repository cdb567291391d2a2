//! The harness proven with runc: a hostNetwork pod through containerd's CRI, a container's
//! output in its CRI log, ExecSync, a refused container, and a clean teardown.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use contrast_cri_testkit::images::{BUSYBOX_IMAGE, PAUSE_IMAGE, busybox_image};
use contrast_cri_testkit::kubelet::{container_config, pod_sandbox_config};
use contrast_cri_testkit::runtime::{
    ContainerState, ContainerStatusRequest, CreateContainerRequest, ExecSyncRequest, ImageSpec,
    ImageStatusRequest, ListContainersRequest, ListPodSandboxRequest, PodSandboxConfig,
    PodSandboxStatusRequest, PullImageRequest, RemovePodSandboxRequest, RunPodSandboxRequest,
    StartContainerRequest, StopPodSandboxRequest, VersionRequest,
};
use contrast_cri_testkit::{Containerd, ContainerdConfig, RuntimeHandler};

fn pod_config(log_directory: &Path) -> PodSandboxConfig {
    pod_sandbox_config(
        "harness",
        "default",
        "harness-uid-1",
        log_directory,
        Default::default(),
    )
}

#[tokio::test]
async fn runc_pod_runs_logs_execs_refuses_a_missing_image_and_leaves_nothing() {
    let containerd = Containerd::start(&ContainerdConfig {
        pause_image: PAUSE_IMAGE.to_owned(),
        ..Default::default()
    })
    .await
    .unwrap();
    containerd.import_test_images().unwrap();
    let mut cri = containerd.cri().await.unwrap();

    let version = cri
        .runtime
        .version(VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(version.runtime_name, "containerd");
    assert_eq!(version.runtime_api_version, "v1");

    let log_directory = containerd.dir().join("pod-logs");
    std::fs::create_dir(&log_directory).unwrap();
    let config = pod_config(&log_directory);
    let sandbox = cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(|status| containerd.call_error("RunPodSandbox", status))
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let status = cri
        .runtime
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: sandbox.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.state, 0, "the sandbox is ready");

    // A container that prints a line and keeps running for ExecSync.
    let container = cri
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container_config(
                "talker",
                BUSYBOX_IMAGE,
                &[
                    "/bin/sh",
                    "-c",
                    "echo hello from the container; exec sleep 600",
                ],
            )),
            sandbox_config: Some(config.clone()),
        })
        .await
        .map_err(|status| containerd.call_error("CreateContainer", status))
        .unwrap()
        .into_inner()
        .container_id;
    cri.runtime
        .start_container(StartContainerRequest {
            container_id: container.clone(),
        })
        .await
        .map_err(|status| containerd.call_error("StartContainer", status))
        .unwrap();

    let log_path = log_directory.join("talker.log");
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(line) = log.lines().next() {
            break line.to_owned();
        }
        assert!(
            Instant::now() < deadline,
            "nothing in {}",
            log_path.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // `<RFC 3339 time> stdout F <line>`
    let fields: Vec<&str> = line.splitn(4, ' ').collect();
    assert_eq!(
        fields[1..],
        ["stdout", "F", "hello from the container"],
        "{line}"
    );

    let running = cri
        .runtime
        .container_status(ContainerStatusRequest {
            container_id: container.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(running.state, i32::from(ContainerState::ContainerRunning));

    let exec = cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec!["echo".to_owned(), "exec".to_owned(), "works".to_owned()],
            timeout: 10,
        })
        .await
        .map_err(|status| containerd.call_error("ExecSync", status))
        .unwrap()
        .into_inner();
    assert_eq!(exec.exit_code, 0);
    assert_eq!(exec.stdout, b"exec works\n");
    let failing = cri
        .runtime
        .exec_sync(ExecSyncRequest {
            container_id: container.clone(),
            cmd: vec![
                "sh".to_owned(),
                "-c".to_owned(),
                "echo no >&2; exit 3".to_owned(),
            ],
            timeout: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (failing.exit_code, failing.stderr.as_slice()),
        (3, &b"no\n"[..])
    );

    // An image the node does not have (and cannot pull: no registry) is refused.
    let refused = cri
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox.clone(),
            config: Some(container_config(
                "missing",
                "docker.io/library/not-imported:none",
                &["/bin/true"],
            )),
            sandbox_config: Some(config.clone()),
        })
        .await
        .expect_err("a container of a missing image was created");
    let error = containerd
        .call_error("CreateContainer", refused)
        .to_string();
    assert!(
        error.contains("not-imported:none") && error.contains("not found"),
        "{error}"
    );

    let containers = cri
        .runtime
        .list_containers(ListContainersRequest::default())
        .await
        .unwrap()
        .into_inner()
        .containers;
    assert_eq!(
        containers.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        [container.as_str()]
    );
    assert!(!containerd.leftovers().is_empty(), "a running pod is seen");

    cri.runtime
        .stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .map_err(|status| containerd.call_error("StopPodSandbox", status))
        .unwrap();
    cri.runtime
        .remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: sandbox.clone(),
        })
        .await
        .map_err(|status| containerd.call_error("RemovePodSandbox", status))
        .unwrap();
    let sandboxes = cri
        .runtime
        .list_pod_sandbox(ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(sandboxes.is_empty(), "{sandboxes:?}");
    let leftovers = containerd.settled_leftovers(Duration::from_secs(10)).await;
    assert!(leftovers.is_empty(), "{leftovers:#?}");
}

#[tokio::test]
async fn dropping_containerd_with_a_running_pod_kills_its_shims_and_unmounts() {
    // An extra handler whose shim containerd finds only on the shim directory: runc's
    // shim under another name.
    let shims = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(
        "/usr/bin/containerd-shim-runc-v2",
        shims.path().join("containerd-shim-harness-check-v2"),
    )
    .unwrap();
    let containerd = Containerd::start(&ContainerdConfig {
        pause_image: PAUSE_IMAGE.to_owned(),
        runtime_handlers: vec![RuntimeHandler {
            name: "harness-check".to_owned(),
            runtime_type: "io.containerd.harness-check.v2".to_owned(),
            options: Vec::new(),
        }],
        shim_dir: Some(shims.path().to_owned()),
        ..Default::default()
    })
    .await
    .unwrap();
    containerd.import_test_images().unwrap();
    let mut cri = containerd.cri().await.unwrap();
    let mut config = pod_config(containerd.dir());
    config.annotations = [
        ("io.katacontainers.config.harness", "passed"),
        ("example.com/other", "dropped"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    let sandbox = cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: "harness-check".to_owned(),
        })
        .await
        .map_err(|status| containerd.call_error("RunPodSandbox", status))
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    // The handler's pod_annotations pass the Kata annotations into the sandbox's bundle.
    let bundle = containerd
        .state_dir()
        .join("io.containerd.runtime.v2.task/k8s.io")
        .join(&sandbox)
        .join("config.json");
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(&bundle).unwrap()).unwrap();
    assert_eq!(
        spec["annotations"]["io.katacontainers.config.harness"],
        "passed"
    );
    assert!(
        spec["annotations"].get("example.com/other").is_none(),
        "{spec}"
    );
    let container = cri
        .runtime
        .create_container(CreateContainerRequest {
            pod_sandbox_id: sandbox,
            config: Some(container_config(
                "sleeper",
                BUSYBOX_IMAGE,
                &["sleep", "600"],
            )),
            sandbox_config: Some(config),
        })
        .await
        .map_err(|status| containerd.call_error("CreateContainer", status))
        .unwrap()
        .into_inner()
        .container_id;
    cri.runtime
        .start_container(StartContainerRequest {
            container_id: container,
        })
        .await
        .map_err(|status| containerd.call_error("StartContainer", status))
        .unwrap();

    let running = containerd.leftovers();
    assert!(!running.shims.is_empty(), "{running:#?}");
    assert!(!running.mounts.is_empty(), "{running:#?}");
    assert!(!running.sockets.is_empty(), "{running:#?}");
    let dir = containerd.dir().to_owned();
    drop(cri);
    drop(containerd);

    for shim in &running.shims {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", shim.pid)).unwrap_or_default();
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        assert!(
            stat.is_empty() || state.starts_with('Z'),
            "shim {} still runs: {stat}",
            shim.pid
        );
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(dir.to_str().unwrap()), "{mountinfo}");
    for socket in &running.sockets {
        assert!(!socket.exists(), "{} is left", socket.display());
    }
    // The handler has no runc Root option: runc kept its state in the default root.
    assert!(
        running
            .runc_states
            .iter()
            .any(|state| state.starts_with("/run/containerd/runc/k8s.io")),
        "{running:#?}"
    );
    for state in &running.runc_states {
        assert!(!state.exists(), "{} is left", state.display());
    }
    assert!(!dir.exists(), "{} is left", dir.display());
}

#[tokio::test]
async fn images_pull_through_a_registry_mirror_under_another_host_name() {
    let registry = contrast_testkit::registry::Registry::start(Default::default());
    let layout = tempfile::tempdir().unwrap();
    let image = busybox_image(&[]).unwrap();
    contrast_image::oci::write_layout(layout.path(), &[("v1", &image)]).unwrap();
    contrast_testkit::registry::push(
        layout.path(),
        "v1",
        &format!("{}/harness/busybox:v1", registry.host()),
        &[],
    );
    // The name a pod in a VM would use for the host; containerd pulls from loopback.
    let host = format!("10.0.2.2:{}", registry.port);
    let containerd = Containerd::start(&ContainerdConfig {
        pause_image: PAUSE_IMAGE.to_owned(),
        registry_mirrors: vec![(host.clone(), format!("http://{}", registry.host()))],
        ..Default::default()
    })
    .await
    .unwrap();
    let mut cri = containerd.cri().await.unwrap();
    let name = format!("{host}/harness/busybox:v1");
    let spec = ImageSpec {
        image: name.clone(),
        ..Default::default()
    };
    let pulled = cri
        .images
        .pull_image(PullImageRequest {
            image: Some(spec.clone()),
            auth: None,
            sandbox_config: None,
        })
        .await
        .map_err(|status| containerd.call_error("PullImage", status))
        .unwrap()
        .into_inner()
        .image_ref;
    let status = cri
        .images
        .image_status(ImageStatusRequest {
            image: Some(spec),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    assert_eq!(status.id, pulled);
    assert_eq!(status.repo_tags, [name]);
    assert!(
        status
            .repo_digests
            .contains(&format!("{host}/harness/busybox@{}", image.digest())),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_handler_whose_shim_is_not_on_the_path_is_refused_naming_the_binary() {
    let containerd = Containerd::start(&ContainerdConfig {
        pause_image: PAUSE_IMAGE.to_owned(),
        runtime_handlers: vec![RuntimeHandler {
            name: "absent".to_owned(),
            runtime_type: "io.containerd.harness-absent.v2".to_owned(),
            options: Vec::new(),
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    containerd.import_test_images().unwrap();
    let mut cri = containerd.cri().await.unwrap();
    let refused = cri
        .runtime
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod_config(containerd.dir())),
            runtime_handler: "absent".to_owned(),
        })
        .await
        .expect_err("a sandbox ran without its shim");
    let error = containerd.call_error("RunPodSandbox", refused).to_string();
    assert!(
        error.contains("containerd-shim-harness-absent-v2"),
        "{error}"
    );
    let leftovers = containerd.settled_leftovers(Duration::from_secs(10)).await;
    assert!(leftovers.is_empty(), "{leftovers:#?}");
}
