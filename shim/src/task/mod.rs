//! containerd's task API (shim v2, `containerd.task.v2`) for one pod: the sandbox's Create
//! launches the pod VM, and every call after it is a request to the agent inside, sent as
//! the Kata runtime sends it (`crate::spec` builds the requests).
//!
//! Locks are held only to read or change the pod's state, never across a request to the
//! agent: a container's image pull inside the VM takes seconds, and containerd keeps asking
//! for the state of the others meanwhile.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use containerd_shim::TtrpcResult;
use containerd_shim::asynchronous::ExitSignal;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim_protos::api;
use containerd_shim_protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskOOM, TaskStart,
};
use containerd_shim_protos::protobuf::MessageDyn;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::r#async::TtrpcContext;
use containerd_shim_protos::ttrpc::{Code, Status};
use contrast_agent_protocol::proto::agent::{
    CloseStdinRequest, CreateContainerRequest, DestroySandboxRequest, GetOOMEventRequest,
    RemoveContainerRequest, SignalProcessRequest, StartContainerRequest, StatsContainerRequest,
    TtyWinResizeRequest, WaitProcessRequest,
};
use contrast_agent_protocol::proto::agent_ttrpc::AgentServiceClient;
use contrast_agent_protocol::proto::health::CheckRequest;
use contrast_agent_protocol::proto::health_ttrpc::HealthClient;
use serde_json::Value;
use tokio::sync::{Mutex, watch};

use crate::config::RuntimeConfig;
use crate::metrics::cgroup_metrics;
use crate::network::PodNetwork;
use crate::spec::{self, ContainerKind};
use crate::streams::{copy_in, copy_out};
use crate::vm::{Vm, launch_field_len};

mod sandbox;

use contrast_initdata::INITDATA_ANNOTATION;

/// Where pod VMs keep their files (short: vhost-user socket paths must fit 108 bytes).
pub const STATE_DIR: &str = "/run/contrast-shim";

/// The environment variable naming the Kata configuration when containerd's runtime
/// options name none.
pub const CONFIG_ENV: &str = "CONTRAST_SHIM_CONFIG";

/// How a process ended.
#[derive(Debug, Clone)]
struct Exit {
    status: u32,
    at: Timestamp,
}

/// One process: a container's init process or an exec'd one.
#[derive(Debug)]
struct Process {
    /// The process's ID in the agent: empty for a container's init process, a fresh random
    /// UUID for an exec (as the Kata runtime makes it), so no exec ID a client picks can
    /// name another process in the guest.
    agent_exec_id: String,
    stdin: String,
    stdout: String,
    stderr: String,
    terminal: bool,
    /// StartContainer or ExecProcess is on its way to the agent.
    starting: bool,
    started: bool,
    /// A signal containerd sent while the process was starting, sent once it runs.
    pending_signal: Option<u32>,
    /// The exec's OCI process (JSON).
    spec: Option<Value>,
    exit: watch::Sender<Option<Exit>>,
}

impl Process {
    fn new(
        agent_exec_id: String,
        stdin: &str,
        stdout: &str,
        stderr: &str,
        terminal: bool,
        spec: Option<Value>,
    ) -> Self {
        Process {
            agent_exec_id,
            stdin: stdin.to_owned(),
            stdout: stdout.to_owned(),
            stderr: stderr.to_owned(),
            terminal,
            starting: false,
            started: false,
            pending_signal: None,
            spec,
            exit: watch::Sender::new(None),
        }
    }

    fn status(&self) -> api::Status {
        match (&*self.exit.borrow(), self.started) {
            (Some(_), _) => api::Status::STOPPED,
            (None, true) => api::Status::RUNNING,
            (None, false) => api::Status::CREATED,
        }
    }
}

#[derive(Debug)]
struct Container {
    bundle: String,
    kind: ContainerKind,
    init: Process,
    execs: HashMap<String, Process>,
}

#[derive(Default)]
struct Pod {
    sandbox_id: Option<String>,
    dir: Option<PathBuf>,
    vm: Option<Vm>,
    agent: Option<AgentServiceClient>,
    config: Option<RuntimeConfig>,
    containers: HashMap<String, Container>,
}

impl Pod {
    /// Container `id`'s init process (`exec_id` empty) or its exec `exec_id`.
    fn process(
        &self,
        id: &str,
        exec_id: &str,
    ) -> Result<&Process, containerd_shim_protos::ttrpc::Error> {
        let container = self.containers.get(id).ok_or_else(|| not_found(id))?;
        if exec_id.is_empty() {
            Ok(&container.init)
        } else {
            container
                .execs
                .get(exec_id)
                .ok_or_else(|| not_found(&format!("{id}/{exec_id}")))
        }
    }

    /// Like [`Pod::process`], to change it.
    fn process_mut(&mut self, id: &str, exec_id: &str) -> Option<&mut Process> {
        let container = self.containers.get_mut(id)?;
        if exec_id.is_empty() {
            Some(&mut container.init)
        } else {
            container.execs.get_mut(exec_id)
        }
    }
}

/// The task service of one pod's shim.
#[derive(Clone)]
pub struct Service {
    exit: Arc<ExitSignal>,
    namespace: String,
    publisher: Arc<RemotePublisher>,
    pod: Arc<Mutex<Pod>>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

fn error(code: Code, message: impl Into<String>) -> containerd_shim_protos::ttrpc::Error {
    containerd_shim_protos::ttrpc::Error::RpcStatus(Status {
        code: code.into(),
        message: message.into(),
        ..Default::default()
    })
}

/// An agent's refusal or failure, passed on with its code and message (the policy's reason
/// reaches containerd's caller unchanged).
fn agent_error(what: &str, e: ttrpc::Error) -> containerd_shim_protos::ttrpc::Error {
    match e {
        ttrpc::Error::RpcStatus(status) => {
            containerd_shim_protos::ttrpc::Error::RpcStatus(Status {
                code: status.code,
                message: format!("{what}: {}", status.message),
                ..Default::default()
            })
        }
        other => error(Code::UNAVAILABLE, format!("{what}: the agent: {other}")),
    }
}

/// A random (version 4) UUID.
fn random_uuid() -> Result<String, containerd_shim_protos::ttrpc::Error> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| {
        error(
            Code::INTERNAL,
            "the system's random source failed (an exec's agent-side ID)",
        )
    })?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    ))
}

fn now() -> Timestamp {
    Timestamp::now()
}

pub(crate) fn ctx(seconds: u64) -> ttrpc::context::Context {
    ttrpc::context::with_timeout(
        i64::try_from(seconds.saturating_mul(1_000_000_000)).unwrap_or(i64::MAX),
    )
}

/// `config.json` of a bundle.
fn read_spec(bundle: &str) -> Result<Value, containerd_shim_protos::ttrpc::Error> {
    let path = Path::new(bundle).join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        error(
            Code::INVALID_ARGUMENT,
            format!("reading {}: {e}", path.display()),
        )
    })?;
    serde_json::from_str(&text).map_err(|e| {
        error(
            Code::INVALID_ARGUMENT,
            format!("{} is not an OCI runtime spec: {e}", path.display()),
        )
    })
}

fn annotation<'a>(spec: &'a Value, key: &str) -> Option<&'a str> {
    spec.pointer("/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// The Kata configuration's path from containerd's runtime options
/// (`runtimeoptions.v1.Options.config_path`, field 2), as the Kata shim reads it.
fn config_path_from_options(
    options: &containerd_shim_protos::protobuf::well_known_types::any::Any,
) -> Option<String> {
    use containerd_shim_protos::protobuf::CodedInputStream;
    if !options.type_url.ends_with("runtimeoptions.v1.Options") {
        return None;
    }
    let mut input = CodedInputStream::from_bytes(&options.value);
    while let Ok(Some(tag)) = input.read_raw_tag_or_eof() {
        let (field, wire_type) = (tag >> 3, tag & 7);
        if field == 2 && wire_type == 2 {
            return input.read_string().ok();
        }
        let wire_type = containerd_shim_protos::protobuf::rt::WireType::new(wire_type)?;
        input.skip_field(wire_type).ok()?;
    }
    None
}

impl Service {
    /// A service publishing events to containerd in `namespace`.
    pub fn new(exit: Arc<ExitSignal>, namespace: &str, publisher: RemotePublisher) -> Self {
        Service {
            exit,
            namespace: namespace.to_owned(),
            publisher: Arc::new(publisher),
            pod: Arc::new(Mutex::new(Pod::default())),
        }
    }

    async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        let ctx = containerd_shim_protos::ttrpc::context::Context::default();
        if let Err(e) = self
            .publisher
            .publish(ctx, topic, &self.namespace, event)
            .await
        {
            tracing::warn!(topic, error = %e, "publishing an event to containerd failed");
        }
    }

    async fn agent(
        &self,
    ) -> Result<(AgentServiceClient, RuntimeConfig, u32), containerd_shim_protos::ttrpc::Error>
    {
        let pod = self.pod.lock().await;
        match (&pod.agent, &pod.config, &pod.vm) {
            (Some(agent), Some(config), Some(vm)) => Ok((agent.clone(), config.clone(), vm.pid())),
            _ => Err(error(
                Code::FAILED_PRECONDITION,
                "the pod's VM is not running (its sandbox was not created by this shim, or was deleted)",
            )),
        }
    }

    /// Marks a process as starting; a second Start is refused.
    async fn begin_start(
        &self,
        id: &str,
        exec_id: &str,
    ) -> Result<(), containerd_shim_protos::ttrpc::Error> {
        let mut pod = self.pod.lock().await;
        let process = pod
            .process_mut(id, exec_id)
            .ok_or_else(|| not_found(&format!("{id}/{exec_id}")))?;
        if process.started || process.starting || process.exit.borrow().is_some() {
            return Err(error(
                Code::FAILED_PRECONDITION,
                format!("{id}/{exec_id} was started already"),
            ));
        }
        process.starting = true;
        Ok(())
    }

    /// Ends a start (`ran`: the agent runs it); the signal a Kill left meanwhile.
    async fn end_start(&self, id: &str, exec_id: &str, ran: bool) -> Option<u32> {
        let mut pod = self.pod.lock().await;
        let process = pod.process_mut(id, exec_id)?;
        process.starting = false;
        process.started = ran;
        process.pending_signal.take()
    }

    /// Sends the signal a Kill left while the process was starting.
    async fn signal_after_start(
        &self,
        agent: &AgentServiceClient,
        id: &str,
        agent_exec_id: &str,
        signal: Option<u32>,
    ) {
        let Some(signal) = signal else { return };
        let mut request = SignalProcessRequest::new();
        request.container_id = id.to_owned();
        request.exec_id = agent_exec_id.to_owned();
        request.signal = signal;
        if let Err(e) = agent.signal_process(ctx(30), &request).await {
            tracing::warn!(container = id, error = %e, "the signal sent during the start failed");
        }
    }

    /// The agent's ID of containerd's process `exec_id` in container `id`.
    async fn agent_exec_id(
        &self,
        id: &str,
        exec_id: &str,
    ) -> Result<String, containerd_shim_protos::ttrpc::Error> {
        if exec_id.is_empty() {
            return Ok(String::new());
        }
        let pod = self.pod.lock().await;
        Ok(pod.process(id, exec_id)?.agent_exec_id.clone())
    }

    async fn create_in_guest(
        &self,
        req: &api::CreateTaskRequest,
        spec: &Value,
        kind: ContainerKind,
    ) -> Result<u32, containerd_shim_protos::ttrpc::Error> {
        let (agent, config, pid) = self.agent().await?;
        let requests = spec::container_requests(spec, &req.id, Path::new(&req.bundle), kind)
            .map_err(|e| error(Code::INVALID_ARGUMENT, e.to_string()))?;
        for copy in &requests.copies {
            agent
                .copy_file(ctx(config.create_container_timeout_secs), copy)
                .await
                .map_err(|e| agent_error(&format!("CopyFile {}", copy.path), e))?;
        }
        let create: &CreateContainerRequest = &requests.create;
        if let Err(e) = agent
            .create_container(ctx(config.create_container_timeout_secs), create)
            .await
        {
            // What was sent, for the user comparing it with the policy (the host knows
            // all of it anyway; nothing secret travels in a request).
            tracing::warn!(
                container = req.id,
                request = %serde_json::to_string(create).unwrap_or_default(),
                "the agent refused CreateContainer"
            );
            return Err(agent_error("CreateContainer", e));
        }
        Ok(pid)
    }

    /// Starts the streams and the waiter of a started process.
    fn watch_process(
        &self,
        agent: AgentServiceClient,
        container_id: String,
        containerd_exec_id: String,
        process: &Process,
        pid: u32,
    ) {
        let exec_id = process.agent_exec_id.clone();
        let stdout = (!process.stdout.is_empty()).then(|| {
            tokio::spawn(copy_out(
                agent.clone(),
                container_id.clone(),
                exec_id.clone(),
                process.stdout.clone(),
                true,
            ))
        });
        let stderr = (!process.stderr.is_empty() && !process.terminal).then(|| {
            tokio::spawn(copy_out(
                agent.clone(),
                container_id.clone(),
                exec_id.clone(),
                process.stderr.clone(),
                false,
            ))
        });
        if !process.stdin.is_empty() {
            tokio::spawn(copy_in(
                agent.clone(),
                container_id.clone(),
                exec_id.clone(),
                process.stdin.clone(),
            ));
        }
        let exit = process.exit.clone();
        let service = self.clone();
        tokio::spawn(async move {
            let mut wait = WaitProcessRequest::new();
            wait.container_id = container_id.clone();
            wait.exec_id = exec_id.clone();
            let status = match agent
                .wait_process(ttrpc::context::with_timeout(0), &wait)
                .await
            {
                Ok(response) => u32::try_from(response.status).unwrap_or(255),
                Err(e) => {
                    tracing::warn!(container = container_id, exec = exec_id, error = %e, "WaitProcess failed");
                    255
                }
            };
            // The streams end with the process; containerd reads the logs to their end
            // before it hears of the exit.
            for copy in [stdout, stderr].into_iter().flatten() {
                let _ = tokio::time::timeout(Duration::from_secs(10), copy).await;
            }
            let at = now();
            exit.send_replace(Some(Exit {
                status,
                at: at.clone(),
            }));
            let event = TaskExit {
                container_id: container_id.clone(),
                id: if containerd_exec_id.is_empty() {
                    container_id.clone()
                } else {
                    containerd_exec_id
                },
                pid,
                exit_status: status,
                exited_at: Some(at).into(),
                ..Default::default()
            };
            service
                .publish(
                    containerd_shim_protos::topics::TASK_EXIT_EVENT_TOPIC,
                    Box::new(event),
                )
                .await;
        });
    }
}

/// Checks an ID containerd gave before it names a directory, a file or a QEMU argument:
/// containerd's own identifier rule (alphanumeric runs joined by `.`, `_` or `-`), at
/// most 64 characters (a vhost-user socket path under [`STATE_DIR`] must fit 108 bytes).
pub fn check_id(field: &str, id: &str) -> Result<(), containerd_shim_protos::ttrpc::Error> {
    let well_formed = !id.is_empty()
        && id.len() <= 64
        && id
            .split(['.', '_', '-'])
            .all(|run| !run.is_empty() && run.bytes().all(|b| b.is_ascii_alphanumeric()));
    if well_formed {
        Ok(())
    } else {
        Err(error(
            Code::INVALID_ARGUMENT,
            format!(
                "{field} {id:?} is not an identifier this shim accepts: 1 to 64 letters and digits, runs joined by '.', '_' or '-'"
            ),
        ))
    }
}

fn not_found(id: &str) -> containerd_shim_protos::ttrpc::Error {
    error(Code::NOT_FOUND, format!("no container {id} in this pod"))
}

#[async_trait::async_trait]
impl Task for Service {
    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TtrpcResult<api::CreateTaskResponse> {
        check_id("the task ID", &req.id)?;
        let spec = read_spec(&req.bundle)?;
        if annotation(&spec, spec::CRI_CONTAINER_TYPE).is_none() {
            return Err(error(
                Code::INVALID_ARGUMENT,
                format!(
                    "the bundle has no {} annotation: this shim runs Kubernetes pods through \
                     containerd's CRI, not single containers (ctr run, nerdctl run); a \
                     confidential container's policy comes from its pod",
                    spec::CRI_CONTAINER_TYPE
                ),
            ));
        }
        let kind = ContainerKind::from_spec(&spec).map_err(|e| {
            error(
                Code::INVALID_ARGUMENT,
                format!(
                    "{e} (this shim runs Kubernetes pods through the CRI, not single containers)"
                ),
            )
        })?;
        {
            let pod = self.pod.lock().await;
            if pod.containers.contains_key(&req.id) {
                return Err(error(
                    Code::ALREADY_EXISTS,
                    format!("the container {} exists in this pod", req.id),
                ));
            }
            if kind == ContainerKind::Sandbox && pod.sandbox_id.is_some() {
                return Err(error(
                    Code::ALREADY_EXISTS,
                    format!(
                        "this shim already runs the sandbox {}; a pod has one",
                        pod.sandbox_id.as_deref().unwrap_or_default()
                    ),
                ));
            }
        }
        if kind == ContainerKind::Sandbox {
            self.start_sandbox(&req, &spec).await?;
        }
        let pid = match self.create_in_guest(&req, &spec, kind).await {
            Ok(pid) => pid,
            Err(e) => {
                if kind == ContainerKind::Sandbox {
                    self.stop_pod().await;
                }
                return Err(e);
            }
        };
        self.pod.lock().await.containers.insert(
            req.id.clone(),
            Container {
                bundle: req.bundle.clone(),
                kind,
                init: Process::new(
                    String::new(),
                    &req.stdin,
                    &req.stdout,
                    &req.stderr,
                    req.terminal,
                    None,
                ),
                execs: HashMap::new(),
            },
        );
        let event = TaskCreate {
            container_id: req.id.clone(),
            bundle: req.bundle.clone(),
            pid,
            ..Default::default()
        };
        self.publish(
            containerd_shim_protos::topics::TASK_CREATE_EVENT_TOPIC,
            Box::new(event),
        )
        .await;
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(
        &self,
        _ctx: &TtrpcContext,
        req: api::StartRequest,
    ) -> TtrpcResult<api::StartResponse> {
        let (agent, config, pid) = self.agent().await?;
        self.begin_start(&req.id, &req.exec_id).await?;
        if req.exec_id.is_empty() {
            let mut start = StartContainerRequest::new();
            start.container_id = req.id.clone();
            if let Err(e) = agent
                .start_container(ctx(config.create_container_timeout_secs), &start)
                .await
            {
                self.end_start(&req.id, &req.exec_id, false).await;
                return Err(agent_error("StartContainer", e));
            }
            let signal = self.end_start(&req.id, &req.exec_id, true).await;
            {
                let pod = self.pod.lock().await;
                let process = pod.process(&req.id, "")?;
                self.watch_process(agent.clone(), req.id.clone(), String::new(), process, pid);
            }
            self.signal_after_start(&agent, &req.id, "", signal).await;
            let event = TaskStart {
                container_id: req.id.clone(),
                pid,
                ..Default::default()
            };
            self.publish(
                containerd_shim_protos::topics::TASK_START_EVENT_TOPIC,
                Box::new(event),
            )
            .await;
        } else {
            let (process, terminal, agent_exec_id) = {
                let pod = self.pod.lock().await;
                let exec = pod
                    .containers
                    .get(&req.id)
                    .and_then(|c| c.execs.get(&req.exec_id))
                    .ok_or_else(|| not_found(&format!("{}/{}", req.id, req.exec_id)))?;
                (
                    exec.spec.clone().unwrap_or(Value::Null),
                    exec.terminal,
                    exec.agent_exec_id.clone(),
                )
            };
            let mut exec = spec::exec_request(&process, &req.id, &agent_exec_id)
                .map_err(|e| error(Code::INVALID_ARGUMENT, e.to_string()))?;
            if let Some(p) = exec.process.as_mut() {
                p.Terminal = terminal;
            }
            if let Err(e) = agent.exec_process(ctx(60), &exec).await {
                self.end_start(&req.id, &req.exec_id, false).await;
                return Err(agent_error("ExecProcess", e));
            }
            let signal = self.end_start(&req.id, &req.exec_id, true).await;
            {
                let pod = self.pod.lock().await;
                let process = pod.process(&req.id, &req.exec_id)?;
                self.watch_process(
                    agent.clone(),
                    req.id.clone(),
                    req.exec_id.clone(),
                    process,
                    pid,
                );
            }
            self.signal_after_start(&agent, &req.id, &agent_exec_id, signal)
                .await;
            let event = TaskExecStarted {
                container_id: req.id.clone(),
                exec_id: req.exec_id.clone(),
                pid,
                ..Default::default()
            };
            self.publish(
                containerd_shim_protos::topics::TASK_EXEC_STARTED_EVENT_TOPIC,
                Box::new(event),
            )
            .await;
        }
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _ctx: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> TtrpcResult<api::DeleteResponse> {
        let pid = {
            let pod = self.pod.lock().await;
            pod.vm.as_ref().map(Vm::pid).unwrap_or_default()
        };
        if !req.exec_id.is_empty() {
            let mut pod = self.pod.lock().await;
            let process = pod
                .containers
                .get_mut(&req.id)
                .and_then(|c| c.execs.remove(&req.exec_id))
                .ok_or_else(|| not_found(&format!("{}/{}", req.id, req.exec_id)))?;
            let exit = process.exit.borrow().clone();
            if exit.is_none() && process.started {
                let running = error(
                    Code::FAILED_PRECONDITION,
                    format!("exec {}/{} still runs: kill it first", req.id, req.exec_id),
                );
                // Put it back: it is still there.
                if let Some(container) = pod.containers.get_mut(&req.id) {
                    container.execs.insert(req.exec_id.clone(), process);
                }
                return Err(running);
            }
            return Ok(api::DeleteResponse {
                pid,
                exit_status: exit.as_ref().map_or(0, |e| e.status),
                exited_at: exit.map(|e| e.at).into(),
                ..Default::default()
            });
        }
        let container = {
            let mut pod = self.pod.lock().await;
            let init = pod.process(&req.id, "")?;
            if init.started && init.exit.borrow().is_none() {
                return Err(error(
                    Code::FAILED_PRECONDITION,
                    format!("container {} still runs: kill it first", req.id),
                ));
            }
            pod.containers
                .remove(&req.id)
                .ok_or_else(|| not_found(&req.id))?
        };
        let exit = container.init.exit.borrow().clone();
        if container.kind == ContainerKind::Container
            && let Ok((agent, _, _)) = self.agent().await
        {
            let mut remove = RemoveContainerRequest::new();
            remove.container_id = req.id.clone();
            remove.timeout = 10;
            if let Err(e) = agent.remove_container(ctx(15), &remove).await {
                tracing::warn!(container = req.id, error = %e, "RemoveContainer failed");
            }
        }
        if container.kind == ContainerKind::Sandbox {
            self.stop_pod().await;
        }
        let (status, at) = exit.map_or((0, now()), |e| (e.status, e.at));
        let event = TaskDelete {
            container_id: req.id.clone(),
            id: req.id.clone(),
            pid,
            exit_status: status,
            exited_at: Some(at.clone()).into(),
            ..Default::default()
        };
        self.publish(
            containerd_shim_protos::topics::TASK_DELETE_EVENT_TOPIC,
            Box::new(event),
        )
        .await;
        Ok(api::DeleteResponse {
            pid,
            exit_status: status,
            exited_at: Some(at).into(),
            ..Default::default()
        })
    }

    async fn exec(
        &self,
        _ctx: &TtrpcContext,
        req: api::ExecProcessRequest,
    ) -> TtrpcResult<api::Empty> {
        let process: Value = req
            .spec
            .as_ref()
            .map(|any| serde_json::from_slice(&any.value))
            .transpose()
            .map_err(|e| {
                error(
                    Code::INVALID_ARGUMENT,
                    format!("the exec's process spec: {e}"),
                )
            })?
            .ok_or_else(|| error(Code::INVALID_ARGUMENT, "the exec has no process spec"))?;
        let mut pod = self.pod.lock().await;
        let container = pod
            .containers
            .get_mut(&req.id)
            .ok_or_else(|| not_found(&req.id))?;
        if container.execs.contains_key(&req.exec_id) {
            return Err(error(
                Code::ALREADY_EXISTS,
                format!("exec {} exists in {}", req.exec_id, req.id),
            ));
        }
        container.execs.insert(
            req.exec_id.clone(),
            Process::new(
                random_uuid()?,
                &req.stdin,
                &req.stdout,
                &req.stderr,
                req.terminal,
                Some(process),
            ),
        );
        drop(pod);
        let event = TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        };
        self.publish(
            containerd_shim_protos::topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            Box::new(event),
        )
        .await;
        Ok(api::Empty::new())
    }

    async fn state(
        &self,
        _ctx: &TtrpcContext,
        req: api::StateRequest,
    ) -> TtrpcResult<api::StateResponse> {
        let pod = self.pod.lock().await;
        let pid = pod.vm.as_ref().map(Vm::pid).unwrap_or_default();
        let process = pod.process(&req.id, &req.exec_id)?;
        let bundle = pod
            .containers
            .get(&req.id)
            .map(|c| c.bundle.clone())
            .unwrap_or_default();
        let exit = process.exit.borrow().clone();
        Ok(api::StateResponse {
            id: req.id.clone(),
            bundle,
            pid,
            status: process.status().into(),
            stdin: process.stdin.clone(),
            stdout: process.stdout.clone(),
            stderr: process.stderr.clone(),
            terminal: process.terminal,
            exit_status: exit.as_ref().map_or(0, |e| e.status),
            exited_at: exit.map(|e| e.at).into(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        })
    }

    async fn wait(
        &self,
        _ctx: &TtrpcContext,
        req: api::WaitRequest,
    ) -> TtrpcResult<api::WaitResponse> {
        let mut exit = {
            let pod = self.pod.lock().await;
            let process = pod.process(&req.id, &req.exec_id)?;
            process.exit.subscribe()
        };
        let exit = exit
            .wait_for(Option::is_some)
            .await
            .map_err(|_| {
                error(
                    Code::NOT_FOUND,
                    format!("process {}/{} was deleted", req.id, req.exec_id),
                )
            })?
            .clone()
            .ok_or_else(|| error(Code::INTERNAL, "no exit status"))?;
        Ok(api::WaitResponse {
            exit_status: exit.status,
            exited_at: Some(exit.at).into(),
            ..Default::default()
        })
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: api::KillRequest) -> TtrpcResult<api::Empty> {
        let (started, agent_exec_id) = {
            let mut pod = self.pod.lock().await;
            let process = pod
                .process_mut(&req.id, &req.exec_id)
                .ok_or_else(|| not_found(&format!("{}/{}", req.id, req.exec_id)))?;
            if process.exit.borrow().is_some() {
                return Ok(api::Empty::new());
            }
            if process.starting {
                // On its way to the agent: Start sends the signal once it runs.
                process.pending_signal = Some(req.signal);
                return Ok(api::Empty::new());
            }
            if !process.started {
                // Never started: nothing runs in the guest; it ends here.
                process.exit.send_replace(Some(Exit {
                    status: 128u32.saturating_add(req.signal),
                    at: now(),
                }));
            }
            (process.started, process.agent_exec_id.clone())
        };
        if started {
            let (agent, _, _) = self.agent().await?;
            let mut signal = SignalProcessRequest::new();
            signal.container_id = req.id.clone();
            signal.exec_id = agent_exec_id;
            signal.signal = req.signal;
            agent
                .signal_process(ctx(30), &signal)
                .await
                .map_err(|e| agent_error("SignalProcess", e))?;
        }
        Ok(api::Empty::new())
    }

    async fn pids(
        &self,
        _ctx: &TtrpcContext,
        _req: api::PidsRequest,
    ) -> TtrpcResult<api::PidsResponse> {
        let pod = self.pod.lock().await;
        let mut info = api::ProcessInfo::new();
        info.pid = pod.vm.as_ref().map(Vm::pid).unwrap_or_default();
        Ok(api::PidsResponse {
            processes: vec![info],
            ..Default::default()
        })
    }

    async fn stats(
        &self,
        _ctx: &TtrpcContext,
        req: api::StatsRequest,
    ) -> TtrpcResult<api::StatsResponse> {
        let (agent, _, _) = self.agent().await?;
        let mut request = StatsContainerRequest::new();
        request.container_id = req.id.clone();
        let stats = agent
            .stats_container(ctx(30), &request)
            .await
            .map_err(|e| agent_error("StatsContainer", e))?;
        let metrics = cgroup_metrics(stats.cgroup_stats.as_ref());
        let value = containerd_shim_protos::protobuf::Message::write_to_bytes(&metrics)
            .map_err(|e| error(Code::INTERNAL, format!("encoding the statistics: {e}")))?;
        let mut any = containerd_shim_protos::protobuf::well_known_types::any::Any::new();
        any.type_url = "io.containerd.cgroups.v1.Metrics".to_owned();
        any.value = value;
        Ok(api::StatsResponse {
            stats: Some(any).into(),
            ..Default::default()
        })
    }

    async fn close_io(
        &self,
        _ctx: &TtrpcContext,
        req: api::CloseIORequest,
    ) -> TtrpcResult<api::Empty> {
        if req.stdin {
            let (agent, _, _) = self.agent().await?;
            let mut close = CloseStdinRequest::new();
            close.container_id = req.id.clone();
            close.exec_id = self.agent_exec_id(&req.id, &req.exec_id).await?;
            agent
                .close_stdin(ctx(30), &close)
                .await
                .map_err(|e| agent_error("CloseStdin", e))?;
        }
        Ok(api::Empty::new())
    }

    async fn resize_pty(
        &self,
        _ctx: &TtrpcContext,
        req: api::ResizePtyRequest,
    ) -> TtrpcResult<api::Empty> {
        let (agent, _, _) = self.agent().await?;
        let mut resize = TtyWinResizeRequest::new();
        resize.container_id = req.id.clone();
        resize.exec_id = self.agent_exec_id(&req.id, &req.exec_id).await?;
        resize.row = req.height;
        resize.column = req.width;
        agent
            .tty_win_resize(ctx(30), &resize)
            .await
            .map_err(|e| agent_error("TtyWinResize", e))?;
        Ok(api::Empty::new())
    }

    async fn update(
        &self,
        _ctx: &TtrpcContext,
        req: api::UpdateTaskRequest,
    ) -> TtrpcResult<api::Empty> {
        Err(error(
            Code::UNIMPLEMENTED,
            format!(
                "Update of {}: a confidential pod's resources are fixed at launch (its VM is sized then); recreate the pod with new limits",
                req.id
            ),
        ))
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ConnectRequest,
    ) -> TtrpcResult<api::ConnectResponse> {
        let pod = self.pod.lock().await;
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: pod.vm.as_ref().map(Vm::pid).unwrap_or_default(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Default::default()
        })
    }

    async fn shutdown(
        &self,
        _ctx: &TtrpcContext,
        _req: api::ShutdownRequest,
    ) -> TtrpcResult<api::Empty> {
        if !self.pod.lock().await.containers.is_empty() {
            return Ok(api::Empty::new());
        }
        self.stop_pod().await;
        self.exit.signal();
        Ok(api::Empty::new())
    }
}

/// What the `delete` action cleans up after a shim that died: its pod VM's QEMU and files.
pub fn cleanup_after_crash(sandbox_id: &str) {
    let dir = Path::new(STATE_DIR).join(sandbox_id);
    let pid_file = crate::vm::VmFiles::in_dir(&dir).pid_file;
    if check_id("the task ID", sandbox_id).is_err() {
        return;
    }
    // Only our VM: the pid may have been reused since QEMU ended.
    if let Ok(text) = std::fs::read_to_string(&pid_file)
        && let Ok(pid) = text.trim().parse::<i32>()
        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
            cmdline
                .split(|b| *b == 0)
                .any(|arg| arg == format!("sandbox-{sandbox_id}").as_bytes())
        })
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_config_path_comes_from_runtime_options() {
        // runtimeoptions.v1.Options { type_url = "x" (1), config_path = "/etc/k.toml" (2) }
        let mut value = vec![0x0a, 1, b'x', 0x12, 11];
        value.extend_from_slice(b"/etc/k.toml");
        let mut any = containerd_shim_protos::protobuf::well_known_types::any::Any::new();
        any.type_url = "runtimeoptions.v1.Options".into();
        any.value = value;
        assert_eq!(
            config_path_from_options(&any).as_deref(),
            Some("/etc/k.toml")
        );
        any.type_url = "containerd.runc.v1.Options".into();
        assert_eq!(config_path_from_options(&any), None);
    }

    #[test]
    fn ids_that_could_name_another_path_or_a_qemu_option_are_refused() {
        for good in [
            "337738c8208b17b04ddff623a15e637ed936a6e0fe5482df36206c4fc903629d",
            "a.b_c-d",
        ] {
            assert!(check_id("id", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "..",
            "a/b",
            "../x",
            "a,b",
            "a..b",
            "-a",
            &"a".repeat(65),
        ] {
            let err = check_id("the task ID", bad).unwrap_err();
            assert!(err.to_string().contains("the task ID"), "{bad}: {err}");
        }
    }
}
