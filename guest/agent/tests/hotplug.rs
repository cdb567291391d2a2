//! OnlineCPUMem over real ttRPC against a sysfs `devices/system` tree in a directory: the
//! boot CPU (no `online` file), hot-plugged CPUs and memory blocks (`online` 0 or 1).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use contrast_agent::proto::agent::OnlineCPUMemRequest;
use contrast_agent::proto::agent_ttrpc::AgentServiceClient;
use contrast_agent::{Agent, AgentConfig, PolicyGate, serve};
use contrast_testkit::{TempDir, pod_case};
use ttrpc::Code;
use ttrpc::context;

/// A sysfs `devices/system` with the boot CPU and `cpus` hot-plugged offline CPUs, and
/// memory blocks in `memory` states.
fn system(dir: &Path, cpus: u32, memory: &[&str]) -> PathBuf {
    let system = dir.join("sys/devices/system");
    std::fs::create_dir_all(system.join("cpu/cpu0")).unwrap();
    for n in 1..=cpus {
        let cpu = system.join(format!("cpu/cpu{n}"));
        std::fs::create_dir_all(&cpu).unwrap();
        std::fs::write(cpu.join("online"), "0\n").unwrap();
    }
    // Entries that are not CPUs.
    std::fs::create_dir_all(system.join("cpu/cpufreq")).unwrap();
    std::fs::write(system.join("cpu/possible"), "0-63\n").unwrap();
    for (n, state) in memory.iter().enumerate() {
        let block = system.join(format!("memory/memory{n}"));
        std::fs::create_dir_all(&block).unwrap();
        std::fs::write(block.join("online"), format!("{state}\n")).unwrap();
    }
    std::fs::create_dir_all(system.join("memory/power")).unwrap();
    system
}

/// The agent with `<dir>/sys` as its sysfs.
async fn agent(dir: &Path) -> (ttrpc::r#async::Server, AgentServiceClient) {
    let policy = dir.join("policy.rego");
    std::fs::write(&policy, pod_case("web.json").policy).unwrap();
    let address = format!("unix://{}", dir.join("agent.sock").display());
    let config = AgentConfig {
        run_dir: dir.join("run"),
        sysfs: dir.join("sys"),
        ..AgentConfig::default()
    };
    let mut server = serve::server(
        &address,
        Agent::new(PolicyGate::from_file(&policy).unwrap(), config),
    )
    .unwrap();
    server.start().await.unwrap();
    let client = ttrpc::r#async::Client::connect(&address).await.unwrap();
    (server, AgentServiceClient::new(client))
}

fn online(path: &Path) -> String {
    std::fs::read_to_string(path.join("online"))
        .unwrap()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn online_cpu_mem_brings_the_asked_cpus_and_all_memory_online() {
    let dir = TempDir::new("agent-hotplug");
    let system = system(&dir.0, 4, &["1", "0", "0"]);
    let (mut server, agent) = agent(&dir.0).await;

    // Three CPUs in all: two of the four offline ones come online, lowest first.
    let mut request = OnlineCPUMemRequest::new();
    request.nb_cpus = 3;
    request.cpu_only = true;
    agent
        .online_cpu_mem(context::with_timeout(30_000_000_000), &request)
        .await
        .unwrap();
    let states: Vec<String> = (1..=4)
        .map(|n| online(&system.join(format!("cpu/cpu{n}"))))
        .collect();
    assert_eq!(states, ["1", "1", "0", "0"]);
    assert_eq!(online(&system.join("memory/memory1")), "0", "CPUs only");

    // Memory too: every offline block.
    request.nb_cpus = 0;
    request.cpu_only = false;
    agent
        .online_cpu_mem(context::with_timeout(30_000_000_000), &request)
        .await
        .unwrap();
    for n in 0..3 {
        assert_eq!(online(&system.join(format!("memory/memory{n}"))), "1");
    }

    // More CPUs than the host plugged in: a clear error once the kernel had its time.
    request.nb_cpus = 8;
    request.cpu_only = true;
    let Err(ttrpc::Error::RpcStatus(status)) = agent
        .online_cpu_mem(context::with_timeout(30_000_000_000), &request)
        .await
    else {
        panic!("eight CPUs of five came online");
    };
    assert_eq!(status.code(), Code::INTERNAL);
    assert!(
        status.message.contains("5 CPU(s) online") && status.message.contains("8 asked for"),
        "{}",
        status.message
    );
    server.shutdown().await.unwrap();
}
