//! Image pull in the guest (the agent's guest pull: download from the host's registry over
//! QEMU's user network, hash, unpack into tmpfs) against `skopeo copy` of the same image
//! on the host (download and hash into a directory), measured in the same run (the
//! machines are noisy: compare the ratio, not the seconds).
//!
//! `cargo bench -p contrast-qemu-tests --bench guest_pull [-- --mib N]`

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Instant;

use common::pod::*;
use contrast_agent::proto::agent::{
    CreateContainerRequest, CreateSandboxRequest, DestroySandboxRequest,
};
use contrast_qemu_tests::tempdir;
use contrast_testkit::registry::{LayeredImage, Registry, RegistrySetup};

/// `mib` MiB of incompressible bytes (xorshift), as one file of a one-layer image.
fn big_layer(mib: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut data = vec![0u8; mib << 20];
    for chunk in data.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(data.len() as u64);
    builder
        .append_data(&mut header, "data/blob", data.as_slice())
        .unwrap();
    builder.into_inner().unwrap()
}

fn main() {
    let mib = common::bench_arg("mib", 32);
    let registry = Registry::start(RegistrySetup::default());
    let work = tempdir("bench-pull").unwrap();
    let image = LayeredImage::new("{}", &[big_layer(mib)]);
    let compressed: usize = image.layers.iter().map(Vec::len).sum();
    image.push(&registry, &work, "bench/big", "v1");

    // The anchor: skopeo on the host, from the same registry.
    let started = Instant::now();
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!(
            "docker://127.0.0.1:{}/bench/big@{}",
            registry.port,
            image.digest()
        ))
        .arg(format!("dir:{}", work.join("skopeo").display()))
        .status()
        .unwrap();
    assert!(status.success());
    let host = started.elapsed().as_secs_f64();

    // The guest.
    let guest_registry = format!("10.0.2.2:{}", registry.port);
    let reference = format!("{guest_registry}/bench/big@{}", image.digest());
    let pod = contrast_testkit::single_container_pod(&reference, &image.digest(), &["/bin/true"]);
    let initdata = contrast_policy::initdata(&pod.policy);
    let mut vm = PodVm::start_with(
        "bench-pull",
        initdata.as_bytes(),
        initdata.policy_hash(),
        Some(&guest_registry),
    );
    let stream = vm.connect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let guest = runtime.block_on(async {
        let (agent, _) = clients(stream);
        configure_user_network(&agent).await;
        let sandbox: CreateSandboxRequest = from_json(pod.request("CreateSandboxRequest"));
        agent.create_sandbox(ctx(), &sandbox).await.unwrap();
        let pause: CreateContainerRequest = from_json(pod.nth_request("CreateContainerRequest", 0));
        agent.create_container(ctx(), &pause).await.unwrap();
        let app: CreateContainerRequest = from_json(pod.nth_request("CreateContainerRequest", 1));
        let started = Instant::now();
        agent.create_container(ctx(), &app).await.unwrap();
        let guest = started.elapsed().as_secs_f64();
        agent
            .destroy_sandbox(ctx(), &DestroySandboxRequest::new())
            .await
            .unwrap();
        guest
    });
    vm.finish().expect_pass().unwrap();
    let _ = std::fs::remove_dir_all(&work);
    let size = compressed as f64 / f64::from(1 << 20);
    println!(
        "guest_pull: {size:.1} MiB layer — guest (pull + hash + unpack, TCG) {guest:.2} s = {:.1} MiB/s; \
         host skopeo copy {host:.2} s = {:.1} MiB/s; guest/host time ratio {:.1}",
        size / guest,
        size / host,
        guest / host
    );
}
