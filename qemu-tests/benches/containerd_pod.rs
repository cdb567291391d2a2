//! A pod through the real containerd and our shim against the same pod driven straight
//! at the agent (the QEMU tests' path), in the same run (compare the ratio, not the
//! seconds): wall time from RunPodSandbox to the app's first log line in the CRI log,
//! against wall time from QEMU's launch to the app's first output read from the agent.
//! Both boot the same image under TCG and pull the same app image in the guest; the
//! difference is containerd, the shim and the CRI log path. Also the shim's resident
//! memory per pod.
//!
//! `cargo bench -p contrast-qemu-tests --bench containerd_pod [-- --iterations N]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::node::*;
use common::pod::*;
use contrast_agent::proto::agent::{CreateContainerRequest, DestroySandboxRequest};

fn main() {
    let iterations = common::bench_arg("iterations", 3);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (mut direct, mut through_containerd, mut rss) = (Vec::new(), Vec::new(), Vec::new());
    runtime.block_on(async {
        let mut node = AppNode::start("bench-containerd").await;
        node.answer_app_messages();
        let initdata_annotation = node.pod();
        // The same pod both ways (the anchor starts its pause and app containers).
        let pod = node.pod_case();
        let initdata = contrast_policy::initdata(&pod.policy);
        let guest_registry = node.images.guest_registry.clone();
        for n in 0..iterations {
            // Through containerd and the shim (first: CNI makes the pod network's bridge,
            // on whose gateway address the anchor's guest finds the registry too).
            let logs = node.work.join(format!("pod-logs-{n}"));
            std::fs::create_dir_all(&logs).unwrap();
            let started = Instant::now();
            let (sandbox_id, sandbox) = node.run_sandbox(&logs, &initdata_annotation).await;
            node.run_app(&sandbox_id, &sandbox).await;
            wait_for_log_line(&logs.join("app.log"), APP_LINE).await;
            through_containerd.push(started.elapsed().as_secs_f64());
            rss.extend(shim_rss_kib());
            node.remove_sandbox(&sandbox_id).await;

            // The anchor: the agent driven straight from the host.
            let started = Instant::now();
            let mut vm = PodVm::start_with(
                "bench-containerd-direct",
                initdata.as_bytes(),
                initdata.policy_hash(),
                Some(&guest_registry),
            );
            let (agent, _) = clients(vm.connect());
            start_sandbox(&agent, &pod).await;
            let app: CreateContainerRequest =
                from_json(pod.nth_request("CreateContainerRequest", 1));
            start_container(&agent, &app).await;
            let mut read = contrast_agent::proto::agent::ReadStreamRequest::new();
            read.container_id = app.container_id.clone();
            read.len = 1024;
            let first = agent.read_stdout(ctx(), &read).await.unwrap();
            assert!(String::from_utf8_lossy(&first.data).contains(APP_LINE));
            direct.push(started.elapsed().as_secs_f64());
            agent
                .destroy_sandbox(ctx(), &DestroySandboxRequest::new())
                .await
                .unwrap();
            vm.finish();
        }
    });
    let (direct, through) = (common::median(direct), common::median(through_containerd));
    let rss = common::median(rss.into_iter().map(|k| k as f64).collect());
    println!(
        "pod start to the app's first output: straight at the agent {direct:.2} s (anchor); \
         through containerd and the shim {through:.2} s; ratio {:.2}x; the shim {:.1} MiB \
         resident per pod",
        through / direct,
        rss / 1024.0
    );
}
