//! The agent over real ttRPC on a Unix socket: the requests a faithful Kata runtime sends
//! for a pod (built by `contrast_policy::expected_requests` from the same pod as the
//! policy) pass the policy, each change a host could make is refused with the Kata
//! agent's wording, and nothing is served without a policy.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use contrast_agent::proto::agent::*;
use contrast_agent::proto::agent_ttrpc::AgentServiceClient;
use contrast_agent::proto::health::{CheckRequest, health_check_response::ServingStatus};
use contrast_agent::proto::health_ttrpc::HealthClient;
use contrast_agent::{Agent, AgentConfig, PolicyGate, PolicySource, serve};
use contrast_testkit::{TempDir, pod_case as pod};
use serde_json::Value;
use ttrpc::Code;
use ttrpc::context;

/// A running agent on a Unix socket and a client of it.
struct Running {
    _dir: TempDir,
    server: ttrpc::r#async::Server,
    agent: AgentServiceClient,
    health: HealthClient,
    raw: ttrpc::r#async::Client,
}

impl Running {
    async fn start(policy: Option<&str>) -> Running {
        let dir = TempDir::new("agent");
        let policy_path = dir.0.join("policy.rego");
        if let Some(policy) = policy {
            std::fs::write(&policy_path, policy).unwrap();
        }
        let gate = PolicyGate::from_file(&policy_path).unwrap();
        let address = format!("unix://{}", dir.0.join("agent.sock").display());
        // The pods' images are placeholders in no registry: pulls answer at once from
        // the (empty) offline cache. tests/guest_pull.rs pulls from a real registry.
        let config = AgentConfig {
            run_dir: dir.0.join("run"),
            registry: contrast_registry::ResolverOptions {
                offline: true,
                ..contrast_registry::ResolverOptions::default()
            },
            ..AgentConfig::default()
        };
        let mut server = serve::server(&address, Agent::new(gate, config)).unwrap();
        server.start().await.unwrap();
        let raw = ttrpc::r#async::Client::connect(&address).await.unwrap();
        Running {
            _dir: dir,
            server,
            agent: AgentServiceClient::new(raw.clone()),
            health: HealthClient::new(raw.clone()),
            raw,
        }
    }

    async fn stop(mut self) {
        self.server.shutdown().await.unwrap();
        // CreateSandbox mounted the sandbox's shared memory (the tests run as root).
        let shm = self._dir.0.join("run/sandbox/shm");
        if shm.exists() {
            contrast_agent::mount::unmount(&shm);
        }
    }

    /// Sends one request as the runtime would, by its policy name.
    async fn send(&self, name: &str, request: &Value) -> ttrpc::Result<()> {
        let ctx = context::with_timeout(20_000_000_000);
        match name {
            "CreateSandboxRequest" => self
                .agent
                .create_sandbox(ctx, &from_json::<CreateSandboxRequest>(request))
                .await
                .map(drop),
            "CreateContainerRequest" => self
                .agent
                .create_container(ctx, &from_json::<CreateContainerRequest>(request))
                .await
                .map(drop),
            "ExecProcessRequest" => self
                .agent
                .exec_process(ctx, &from_json::<ExecProcessRequest>(request))
                .await
                .map(drop),
            "CopyFileRequest" => self
                .agent
                .copy_file(ctx, &copy_file_request(request))
                .await
                .map(drop),
            other => panic!("no request {other} in the test"),
        }
    }
}

fn from_json<T: serde::de::DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone()).unwrap()
}

/// The `CopyFileRequest` a runtime sends for what the policy sees of it (no data for a
/// regular file; for a symlink, its target).
fn copy_file_request(input: &Value) -> CopyFileRequest {
    let mut request = CopyFileRequest::new();
    request.path = input["path"].as_str().unwrap().to_owned();
    request.file_size = input["file_size"].as_i64().unwrap();
    request.file_mode = u32::try_from(input["file_mode"].as_u64().unwrap()).unwrap();
    request.dir_mode = u32::try_from(input["dir_mode"].as_u64().unwrap()).unwrap();
    request.uid = i32::try_from(input["uid"].as_i64().unwrap()).unwrap();
    request.gid = i32::try_from(input["gid"].as_i64().unwrap()).unwrap();
    request.offset = input["offset"].as_i64().unwrap();
    if let Some(target) = input["symlink_target"].as_str() {
        request.data = target.as_bytes().to_vec();
    }
    request
}

fn status_of(result: &ttrpc::Result<()>) -> Option<(Code, String)> {
    match result {
        Ok(()) => None,
        Err(ttrpc::Error::RpcStatus(status)) => Some((status.code(), status.message.clone())),
        Err(other) => panic!("not a status: {other:?}"),
    }
}

/// The agent's messages serialise to exactly the JSON the policy crate models for the
/// Kata agent (field names, `type_`, `null` for unset messages, enums as numbers): a
/// request read into the protobuf types and written again is unchanged, so the policy
/// sees in the guest what it was generated and tested against.
#[test]
fn requests_serialise_as_the_policy_was_generated_for() {
    for file in ["web.json", "mesh.json"] {
        let pod = pod(file);
        for (name, json) in &pod.requests {
            let again = match name.as_str() {
                "CreateSandboxRequest" => {
                    serde_json::to_value(from_json::<CreateSandboxRequest>(json)).unwrap()
                }
                "CreateContainerRequest" => {
                    serde_json::to_value(from_json::<CreateContainerRequest>(json)).unwrap()
                }
                "ExecProcessRequest" => {
                    serde_json::to_value(from_json::<ExecProcessRequest>(json)).unwrap()
                }
                "CopyFileRequest" => {
                    contrast_agent::policy::copy_file_input(&copy_file_request(json)).unwrap()
                }
                other => panic!("{file}: unexpected request {other}"),
            };
            let mut differences = Vec::new();
            diff("", json, &again, &mut differences);
            assert!(
                differences.is_empty(),
                "{file}: {name} changes on the way through the agent (policy model → agent):\n{}",
                differences.join("\n")
            );
        }
    }
}

/// Where `b` differs from `a`, as JSON paths.
fn diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    Some(w) => diff(&format!("{path}.{k}"), v, w, out),
                    None => out.push(format!("{path}.{k}: {v} → missing")),
                }
            }
            for (k, w) in y {
                if !x.contains_key(k) {
                    out.push(format!("{path}.{k}: missing → {w}"));
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                diff(&format!("{path}[{i}]"), v, w, out);
            }
        }
        _ if a != b => out.push(format!("{path}: {a} → {b}")),
        _ => {}
    }
}

#[tokio::test]
async fn a_faithful_runtime_is_allowed_in_order() {
    for file in ["web.json", "mesh.json"] {
        let pod = pod(file);
        let agent = Running::start(Some(&pod.policy)).await;
        for (name, request) in &pod.requests {
            let result = agent.send(name, request).await;
            match name.as_str() {
                "CreateSandboxRequest" => assert!(result.is_ok(), "{file}: {result:?}"),
                // Allowed by the policy: what follows is the agent's own answer. The
                // pause container is created and the files are copied; the apps'
                // placeholder images cannot be pulled, so their execs find nothing.
                "CreateContainerRequest"
                    if request["OCI"]["Annotations"]["io.kubernetes.cri.container-type"]
                        == "sandbox" =>
                {
                    assert!(result.is_ok(), "{file}: pause: {result:?}");
                }
                "CopyFileRequest" => assert!(result.is_ok(), "{file}: {name}: {result:?}"),
                _ => {
                    let (code, message) = status_of(&result).unwrap();
                    let expected = if name == "CreateContainerRequest" {
                        assert!(message.contains("pulling"), "{file}: {name}: {message}");
                        Code::INTERNAL
                    } else {
                        Code::NOT_FOUND
                    };
                    assert_eq!(code, expected, "{file}: {name}: {message}");
                }
            }
        }
        agent.stop().await;
    }
}

#[tokio::test]
async fn a_changed_request_is_blocked_by_policy() {
    let pod = pod("web.json");
    let agent = Running::start(Some(&pod.policy)).await;
    let (_, sandbox) = &pod.requests[0];
    agent.send("CreateSandboxRequest", sandbox).await.unwrap();

    // Another image: the root's storage names a different digest.
    let mut other_image = pod
        .requests
        .iter()
        .filter(|(n, _)| n == "CreateContainerRequest")
        .nth(1)
        .unwrap()
        .1
        .clone();
    let source = other_image["storages"][0]["source"]
        .as_str()
        .unwrap()
        .to_owned();
    let (name, _) = source.split_once('@').unwrap();
    other_image["storages"][0]["source"] = Value::from(format!("{name}@sha256:{}", "9".repeat(64)));
    let result = agent.send("CreateContainerRequest", &other_image).await;
    let (code, message) = status_of(&result).unwrap();
    assert_eq!(code, Code::PERMISSION_DENIED, "{message}");
    assert!(
        message.starts_with("CreateContainerRequest is blocked by policy"),
        "{message}"
    );

    // A second sandbox, and an exec nobody asked for.
    let mut exec = ExecProcessRequest::new();
    exec.container_id = "0".repeat(64);
    exec.exec_id = "x".to_owned();
    let result = agent
        .agent
        .exec_process(context::with_timeout(0), &exec)
        .await
        .map(drop);
    let (code, message) = status_of(&result).unwrap();
    assert_eq!(code, Code::PERMISSION_DENIED, "{message}");
    assert!(
        message.starts_with("ExecProcessRequest is blocked by policy"),
        "{message}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn without_a_policy_every_request_is_refused_with_the_reason() {
    let pod = pod("web.json");
    let agent = Running::start(None).await;
    for (name, request) in &pod.requests {
        let result = agent.send(name, request).await;
        let (code, message) = status_of(&result).unwrap();
        assert_eq!(code, Code::PERMISSION_DENIED, "{name}: {message}");
        assert!(
            message.starts_with(&format!("{name} is blocked by policy")),
            "{message}"
        );
        assert!(message.contains("no agent policy at"), "{message}");
    }
    // The runtime's readiness check is not a policy question.
    let health = agent
        .health
        .check(context::with_timeout(0), &CheckRequest::new())
        .await
        .unwrap();
    assert_eq!(health.status.enum_value(), Ok(ServingStatus::SERVING));
    agent.stop().await;
}

#[tokio::test]
async fn set_policy_never_replaces_the_initdata_policy() {
    let pod = pod("web.json");
    let agent = Running::start(Some(&pod.policy)).await;
    let mut set = SetPolicyRequest::new();
    set.policy = "package agent_policy\n\ndefault CreateContainerRequest := true\n".to_owned();
    let result = agent
        .agent
        .set_policy(context::with_timeout(0), &set)
        .await
        .map(drop);
    let (code, message) = status_of(&result).unwrap();
    assert_eq!(code, Code::PERMISSION_DENIED, "{message}");
    assert!(message.contains("verified initdata"), "{message}");
    // The old policy still decides: a container of another image is refused.
    let result = agent
        .agent
        .create_container(context::with_timeout(0), &CreateContainerRequest::new())
        .await
        .map(drop);
    assert_eq!(code_of(&result), Code::PERMISSION_DENIED);
    agent.stop().await;
}

fn code_of(result: &ttrpc::Result<()>) -> Code {
    status_of(result).map(|(c, _)| c).unwrap_or(Code::OK)
}

/// A policy that allows the named requests and nothing else.
fn allowing(requests: &[&str]) -> String {
    let mut policy = String::from("package agent_policy\n\n");
    for r in requests {
        policy.push_str(&format!("default {r} := true\n"));
    }
    policy
}

#[tokio::test]
async fn other_methods_are_unimplemented_naming_them() {
    let agent = Running::start(Some(&allowing(&["PauseContainerRequest"]))).await;
    let result = agent
        .agent
        .pause_container(context::with_timeout(0), &PauseContainerRequest::new())
        .await
        .map(drop);
    let (code, message) = status_of(&result).unwrap();
    assert_eq!(code, Code::UNIMPLEMENTED);
    assert!(
        message.contains("/grpc.AgentService/PauseContainer"),
        "{message}"
    );

    // A method the service does not have at all (the Kata agent's removed PullImage).
    let request = ttrpc::Request {
        service: "grpc.AgentService".to_owned(),
        method: "PullImage".to_owned(),
        timeout_nano: 20_000_000_000,
        ..Default::default()
    };
    let result = agent.raw.request(request).await.map(drop);
    let (code, message) = status_of(&result).unwrap();
    assert_eq!(code, Code::UNIMPLEMENTED);
    assert!(message.contains("PullImage"), "{message}");
    agent.stop().await;
}

#[tokio::test]
async fn a_symlink_target_that_is_not_utf8_is_refused_before_the_policy() {
    let agent = Running::start(Some(&allowing(&["CopyFileRequest"]))).await;
    let mut copy = CopyFileRequest::new();
    copy.path = "/run/kata-containers/shared/containers/x-link".to_owned();
    copy.file_mode = 0o120_777;
    copy.data = vec![0xff, 0xfe];
    let result = agent
        .agent
        .copy_file(context::with_timeout(0), &copy)
        .await
        .map(drop);
    let (code, message) = status_of(&result).unwrap();
    assert_eq!(code, Code::INVALID_ARGUMENT, "{message}");
    assert!(message.contains("not UTF-8"), "{message}");
    agent.stop().await;
}

#[tokio::test]
async fn a_terminal_size_no_terminal_can_have_is_refused() {
    let agent = Running::start(Some(&allowing(&["TtyWinResizeRequest"]))).await;
    let mut resize = TtyWinResizeRequest::new();
    resize.container_id = "app".to_owned();
    resize.row = 70_000;
    resize.column = 80;
    let result = agent
        .agent
        .tty_win_resize(context::with_timeout(0), &resize)
        .await
        .map(drop);
    let (code, message) = status_of(&result).unwrap();
    assert_eq!(code, Code::INVALID_ARGUMENT, "{message}");
    assert!(message.contains("70000x80"), "{message}");
    // A size that fits reaches the lookup: there is no such process.
    resize.row = 24;
    let result = agent
        .agent
        .tty_win_resize(context::with_timeout(0), &resize)
        .await
        .map(drop);
    assert_eq!(status_of(&result).unwrap().0, Code::NOT_FOUND);
    agent.stop().await;
}

#[test]
fn a_missing_policy_is_not_the_initdata_policy() {
    let dir = TempDir::new("agent-gate");
    let gate = PolicyGate::from_file(&dir.0.join("none.rego")).unwrap();
    assert_eq!(gate.source(), PolicySource::Missing);
    std::fs::write(dir.0.join("bad.rego"), "package agent_policy\n{").unwrap();
    let err = PolicyGate::from_file(&dir.0.join("bad.rego")).unwrap_err();
    assert!(err.to_string().contains("bad.rego"), "{err}");
    let _ = Arc::new(());
}
