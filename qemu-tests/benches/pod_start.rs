//! Pod start against boot alone, in the same run (compare the ratio, not the seconds):
//! the guest's uptime when a pod's app runs its first command — the initdata check, the
//! agent, the network, the image pulled by digest from the host's registry, the pause
//! container and the app started by crun — against the uptime at which a plain boot of
//! the same image reaches its test script (kernel, initramfs, dm-verity).
//!
//! `cargo bench -p contrast-qemu-tests --bench pod_start [-- --iterations N]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::pod::*;
use contrast_agent::proto::agent::{CreateContainerRequest, DestroySandboxRequest};
use contrast_qemu_tests::{Vm, image, tempdir};
use contrast_testkit::registry::{LayeredImage, Registry, RegistrySetup};

fn main() {
    let iterations = common::bench_arg("iterations", 3);
    let image = image().unwrap();
    let registry = Registry::start(RegistrySetup::default());
    let work = tempdir("bench-pod-start").unwrap();
    let app_image = LayeredImage::new(r#"{"Entrypoint":["/bin/sh"]}"#, &[busybox_layer()]);
    app_image.push(&registry, &work, "bench/busybox", "v1");
    let guest_registry = format!("10.0.2.2:{}", registry.port);
    let reference = format!("{guest_registry}/bench/busybox@{}", app_image.digest());
    let pod = contrast_testkit::single_container_pod(
        &reference,
        &app_image.digest(),
        &["/bin/sh", "-c", "cut -d' ' -f1 /proc/uptime"],
    );
    let initdata = contrast_policy::initdata(&pod.policy);

    let (mut plain, mut pods) = (Vec::new(), Vec::new());
    for _ in 0..iterations {
        let boot = Vm::new(&image, "plain-boot")
            .script("echo \"CONTRAST-STEP uptime=$(cut -d' ' -f1 /proc/uptime)\"\necho \"CONTRAST-TEST-PASS $1\"\n")
            .timeout(Duration::from_secs(120))
            .boot()
            .unwrap();
        boot.expect_pass().unwrap();
        plain.push(boot.step_value("uptime").unwrap().parse::<f64>().unwrap());

        let mut vm = PodVm::start_with(
            "bench-pod-start",
            initdata.as_bytes(),
            initdata.policy_hash(),
            Some(&guest_registry),
        );
        let stream = vm.connect();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let uptime = runtime.block_on(async {
            let (agent, _) = clients(stream);
            start_sandbox(&agent, &pod).await;
            let app: CreateContainerRequest =
                from_json(pod.nth_request("CreateContainerRequest", 1));
            start_container(&agent, &app).await;
            let output = read_all(&agent, &app.container_id, true).await;
            agent
                .destroy_sandbox(ctx(), &DestroySandboxRequest::new())
                .await
                .unwrap();
            output.trim().parse::<f64>().unwrap()
        });
        vm.finish().expect_pass().unwrap();
        pods.push(uptime);
    }
    let _ = std::fs::remove_dir_all(&work);
    let (plain, pod) = (common::median(plain), common::median(pods));
    println!(
        "guest uptime: test script reached {plain:.2} s (anchor, plain boot); pod's app running \
         {pod:.2} s; ratio {:.2}x; the pod's path itself {:.2} s",
        pod / plain,
        pod - plain
    );
}
