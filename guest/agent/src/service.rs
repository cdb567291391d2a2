//! The `grpc.AgentService` and `grpc.Health` ttRPC services. Every AgentService method
//! asks the policy first (as the Kata agent does) and acts only on an allowed request.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ttrpc::Code;
use ttrpc::r#async::TtrpcContext;

use crate::container::{Crun, Process, ProcessIo, cgroup, spec};
use crate::policy::PolicyGate;
use crate::proto::agent::*;
use crate::proto::agent_ttrpc::AgentService;
use crate::proto::csi::VolumeStatsResponse;
use crate::proto::empty::Empty;
use crate::proto::health::{
    CheckRequest, HealthCheckResponse, VersionCheckResponse, health_check_response::ServingStatus,
};
use crate::proto::health_ttrpc::Health;
use crate::proto::types::Interface;
use crate::status;
use crate::storage::{
    ContainerContext, EphemeralHandler, ImagePullHandler, LocalHandler, Prepared, StorageError,
    StorageHandler,
};

/// The agent's version as `GetGuestDetails` and `Health.Version` report it.
pub const AGENT_VERSION: &str = concat!("contrast-agent ", env!("CARGO_PKG_VERSION"));

/// The sandbox the runtime created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// `CreateSandboxRequest.sandbox_id`.
    pub id: String,
    /// `CreateSandboxRequest.hostname`.
    pub hostname: String,
    /// `CreateSandboxRequest.dns`: the lines of the pod's resolv.conf.
    pub dns: Vec<String>,
    /// The sandbox's shared memory (`/dev/shm` of its containers), a tmpfs the agent
    /// mounted.
    pub shm: Option<PathBuf>,
}

/// Where the agent keeps containers and how it pulls images.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The containers' bundles: `<run_dir>/<container ID>/rootfs` (the Kata agent's
    /// `/run/kata-containers`, the path the runtime and the policy name).
    pub run_dir: PathBuf,
    /// How images are pulled (registries reached over plain HTTP, platform).
    pub registry: contrast_registry::ResolverOptions,
    /// The image puller config the node hands the guest (registry credentials and trust,
    /// unmeasured), read at every pull; `None`: the registry options' Docker config.
    pub puller_config: Option<PathBuf>,
    /// Where cgroup v2 is mounted (statistics and OOM events).
    pub cgroup_root: PathBuf,
    /// The OCI runtime (crun).
    pub crun: PathBuf,
    /// A static busybox: the pause container's one program (`busybox sleep`).
    pub pause: PathBuf,
    /// The initdata document the initdata check verified, mounted read-only into every
    /// workload container (`container::spec::INITDATA_MOUNT`); `None` without one.
    pub initdata: Option<PathBuf>,
    /// Where sysfs is mounted (block devices; CPUs and memory blocks for OnlineCPUMem).
    pub sysfs: PathBuf,
    /// Where procfs is mounted (device-mapper's numbers).
    pub proc: PathBuf,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            run_dir: PathBuf::from(RUN_DIR),
            registry: contrast_registry::ResolverOptions::default(),
            puller_config: None,
            cgroup_root: PathBuf::from(cgroup::CGROUP_ROOT),
            crun: PathBuf::from("/usr/bin/crun"),
            pause: PathBuf::from("/bin/busybox"),
            initdata: None,
            sysfs: PathBuf::from("/sys"),
            proc: PathBuf::from("/proc"),
        }
    }
}

/// The Kata agent's container directory.
pub const RUN_DIR: &str = "/run/kata-containers";

/// A container: its prepared storages, its spec, and its processes once started.
#[derive(Debug, Clone)]
pub struct Container {
    /// Its bundle directory.
    pub bundle: PathBuf,
    /// What its storages became.
    pub storages: Vec<Prepared>,
    /// The spec the policy allowed.
    spec: Box<crate::proto::oci::Spec>,
    /// The sandbox's pause container.
    pause: bool,
    /// `sandbox_pidns`: it joins the pause container's PID namespace.
    share_pid: bool,
    /// The init process, once started.
    init: Option<Process>,
    /// Exec'd processes by exec ID.
    execs: BTreeMap<String, Process>,
}

/// The agent's state and its policy.
#[derive(Debug)]
pub struct Agent {
    policy: PolicyGate,
    config: AgentConfig,
    handlers: Vec<Box<dyn StorageHandler>>,
    crun: Crun,
    network: tokio::sync::OnceCell<crate::network::Network>,
    /// The OOM kills of each container's cgroup already reported by GetOOMEvent.
    oom_seen: Mutex<BTreeMap<String, u64>>,
    /// OOM kills found when a container was removed before GetOOMEvent saw them (the
    /// runtime removes a container right after its last process is killed).
    oom_pending: Mutex<std::collections::VecDeque<String>>,
    containers: Mutex<BTreeMap<String, Container>>,
    /// IDs whose CreateContainer is under way (reserved before the policy is asked, until
    /// the container is in `containers` or its creation failed).
    creating: Mutex<std::collections::BTreeSet<String>>,
    sandbox: Mutex<Option<Sandbox>>,
    /// Set by DestroySandbox: the agent's work is done and it exits (as the Kata agent
    /// does; the VM then stops).
    destroyed: tokio::sync::watch::Sender<bool>,
}

impl Agent {
    /// An agent with no sandbox that enforces `policy`.
    pub fn new(policy: PolicyGate, config: AgentConfig) -> Arc<Self> {
        let handlers: Vec<Box<dyn StorageHandler>> = vec![
            Box::new(ImagePullHandler::new(
                config.registry.clone(),
                config.puller_config.clone(),
            )),
            Box::new(EphemeralHandler::new(config.run_dir.clone())),
            Box::new(LocalHandler::new(config.run_dir.clone())),
        ];
        let crun = Crun {
            binary: config.crun.clone(),
            state: config.run_dir.join("crun"),
        };
        Arc::new(Agent {
            policy,
            config,
            handlers,
            crun,
            network: tokio::sync::OnceCell::new(),
            oom_seen: Mutex::new(BTreeMap::new()),
            oom_pending: Mutex::new(std::collections::VecDeque::new()),
            containers: Mutex::new(BTreeMap::new()),
            creating: Mutex::new(std::collections::BTreeSet::new()),
            sandbox: Mutex::new(None),
            destroyed: tokio::sync::watch::Sender::new(false),
        })
    }

    /// Resolves once the runtime has destroyed the sandbox.
    pub async fn destroyed(&self) {
        let mut receiver = self.destroyed.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = receiver.wait_for(|destroyed| *destroyed).await;
    }

    /// The sandbox, once created.
    pub fn sandbox(&self) -> Option<Sandbox> {
        self.sandbox.lock().ok().and_then(|s| s.clone())
    }

    /// The containers whose storages are prepared, by ID.
    pub fn containers(&self) -> BTreeMap<String, Container> {
        self.containers
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Prepares a container's storages in its bundle; on any failure the bundle is
    /// removed again, so nothing half-pulled stays.
    async fn prepare_container(&self, req: &CreateContainerRequest) -> ttrpc::Result<Container> {
        let id = &req.container_id;
        if !valid_id(id) {
            return Err(status(
                Code::INVALID_ARGUMENT,
                format!("CreateContainer: container ID {id:?} is not [A-Za-z0-9][A-Za-z0-9_.-]*"),
            ));
        }
        if self.sandbox().is_none() {
            return Err(status(
                Code::FAILED_PRECONDITION,
                "CreateContainer: no sandbox; the runtime sends CreateSandbox first",
            ));
        }
        if self.containers().contains_key(id) {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("CreateContainer: container {id} already exists"),
            ));
        }
        let context = ContainerContext {
            container_id: id.clone(),
            bundle: self.config.run_dir.join(id),
        };
        let mut prepared = Vec::new();
        for storage in &req.storages {
            let result = match self.handlers.iter().find(|h| h.driver() == storage.driver) {
                Some(handler) => handler.add(storage, &context).await,
                None => Err(StorageError::UnknownDriver {
                    driver: storage.driver.clone(),
                }),
            };
            match result {
                Ok(p) => prepared.push(p),
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&context.bundle);
                    let message = contrast_platforms::error_chain(&e);
                    tracing::warn!(container = %id, error = %message, "storage refused");
                    let code = match e {
                        StorageError::UnknownDriver { .. } => Code::UNIMPLEMENTED,
                        StorageError::Invalid { .. } => Code::INVALID_ARGUMENT,
                        StorageError::Pull { .. } | StorageError::Io { .. } => Code::INTERNAL,
                    };
                    return Err(status(code, format!("CreateContainer {id}: {message}")));
                }
            }
        }
        if !prepared
            .iter()
            .any(|p| matches!(p, Prepared::PulledRoot { .. } | Prepared::PauseRoot))
        {
            let _ = std::fs::remove_dir_all(&context.bundle);
            return Err(status(
                Code::INVALID_ARGUMENT,
                format!(
                    "CreateContainer {id}: no image_guest_pull storage; a container's root \
                     comes only from an image pulled in the guest"
                ),
            ));
        }
        let pause = prepared.contains(&Prepared::PauseRoot);
        if pause {
            // The guest's own pause: a static busybox that sleeps.
            let target = context.rootfs().join("busybox");
            if let Err(e) = std::fs::copy(&self.config.pause, &target) {
                let _ = std::fs::remove_dir_all(&context.bundle);
                return Err(status(
                    Code::INTERNAL,
                    format!(
                        "CreateContainer {id}: copying the pause program {}: {e}",
                        self.config.pause.display()
                    ),
                ));
            }
        }
        let Some(mut spec) = req.OCI.as_ref().cloned() else {
            let _ = std::fs::remove_dir_all(&context.bundle);
            return Err(status(
                Code::INVALID_ARGUMENT,
                format!("CreateContainer {id}: the request has no OCI spec"),
            ));
        };
        for device in &req.devices {
            match crate::device::find(&self.config.sysfs, device, crate::device::DEVICE_WAIT).await
            {
                Ok(found) => {
                    tracing::info!(container = %id, path = %device.container_path,
                        disk = %found.name, "block device");
                    crate::device::apply(&mut spec, &device.container_path, &found);
                }
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&context.bundle);
                    let code = match e {
                        crate::device::DeviceError::Unsupported { .. } => Code::UNIMPLEMENTED,
                        crate::device::DeviceError::BadAddress { .. } => Code::INVALID_ARGUMENT,
                        crate::device::DeviceError::NotFound { .. } => Code::NOT_FOUND,
                        crate::device::DeviceError::Io { .. } => Code::INTERNAL,
                    };
                    return Err(status(
                        code,
                        format!(
                            "CreateContainer {id}: {}",
                            contrast_platforms::error_chain(&e)
                        ),
                    ));
                }
            }
        }
        if let Some(dm) = crate::device_mapper::DeviceMapper::read(&self.config.proc)
            && dm.allow(&mut spec)
        {
            tracing::info!(container = %id, "device-mapper allowed: the container has CAP_SYS_ADMIN");
        }
        Ok(Container {
            bundle: context.bundle,
            storages: prepared,
            spec: Box::new(spec),
            pause,
            share_pid: req.sandbox_pidns,
            init: None,
            execs: BTreeMap::new(),
        })
    }

    /// The container `id`, or NOT_FOUND naming it.
    /// Reserves `id` for a CreateContainer, or says it is taken. Asked before the policy:
    /// the policy records the container it allows under its ID, so a second request for
    /// an ID in use must not reach it (it would pull another image into the same bundle,
    /// or make the policy judge the container's processes as another one's).
    fn reserve(&self, id: &str) -> ttrpc::Result<Reservation<'_>> {
        let taken = |what: &str| {
            status(
                Code::ALREADY_EXISTS,
                format!("CreateContainer: container {id} {what}"),
            )
        };
        // Lock order: `containers`, then `creating`.
        let containers = self.containers.lock().map_err(|_| poisoned())?;
        let mut creating = self.creating.lock().map_err(|_| poisoned())?;
        if containers.contains_key(id) {
            return Err(taken("already exists"));
        }
        if !creating.insert(id.to_owned()) {
            return Err(taken("is being created"));
        }
        Ok(Reservation {
            creating: &self.creating,
            id: id.to_owned(),
        })
    }

    /// Container `id` for `method`, which must not reach the policy otherwise: a container
    /// being created is not done (FAILED_PRECONDITION), an unknown one NOT_FOUND. The
    /// policy forgets a container it is asked to remove, so it is asked only for one the
    /// agent has.
    fn created(&self, method: &str, id: &str) -> ttrpc::Result<Container> {
        let being_created = self.creating.lock().is_ok_and(|c| c.contains(id));
        if being_created {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!(
                    "{method}: container {id} is being created; retry once CreateContainer returns"
                ),
            ));
        }
        self.container(method, id)
    }

    fn container(&self, method: &str, id: &str) -> ttrpc::Result<Container> {
        self.containers
            .lock()
            .ok()
            .and_then(|c| c.get(id).cloned())
            .ok_or_else(|| status(Code::NOT_FOUND, format!("{method}: no container {id}")))
    }

    /// The process `exec_id` of container `id` (its init process for an empty exec ID or
    /// the container's own ID).
    fn process(&self, method: &str, id: &str, exec_id: &str) -> ttrpc::Result<Process> {
        let container = self.container(method, id)?;
        let found = if exec_id.is_empty() || exec_id == id {
            container.init
        } else {
            container.execs.get(exec_id).cloned()
        };
        found.ok_or_else(|| {
            status(
                Code::NOT_FOUND,
                format!("{method}: container {id} has no running process {exec_id:?}"),
            )
        })
    }

    fn update(&self, id: &str, f: impl FnOnce(&mut Container)) {
        if let Ok(mut containers) = self.containers.lock()
            && let Some(c) = containers.get_mut(id)
        {
            f(c);
        }
    }

    /// ReadStdout (`stdout`) or ReadStderr. As in the Kata agent, the policy decides after
    /// the read, and a refusal only withholds the data.
    async fn read_stream(
        &self,
        req: ReadStreamRequest,
        stdout: bool,
    ) -> ttrpc::Result<ReadStreamResponse> {
        let process = self.process("Read", &req.container_id, &req.exec_id)?;
        let data = process.read(stdout, req.len as usize).await;
        let mut response = ReadStreamResponse::new();
        if self.policy.check(&req).is_ok() {
            response.data = data;
        }
        Ok(response)
    }

    /// The pause container's init PID, once it runs.
    fn pause_pid(&self) -> Option<u32> {
        self.containers
            .lock()
            .ok()?
            .values()
            .find(|c| c.pause)
            .and_then(|c| c.init.as_ref().and_then(|p| p.pid))
    }

    /// Starts container `id` with crun: writes its config.json (the allowed spec, placed
    /// in the sandbox), applies its `net.*` sysctls to the VM's network namespace, and
    /// runs it.
    async fn start(&self, id: &str) -> ttrpc::Result<()> {
        let container = self.container("StartContainer", id)?;
        if container.init.is_some() {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!("StartContainer: container {id} was started already"),
            ));
        }
        let pause_pid = if container.pause {
            None
        } else {
            Some(self.pause_pid().ok_or_else(|| {
                status(
                    Code::FAILED_PRECONDITION,
                    format!("StartContainer {id}: the sandbox's pause container does not run"),
                )
            })?)
        };
        let mut spec = (*container.spec).clone();
        if container.pause
            && let Some(process) = spec.Process.as_mut()
        {
            // As the Kata agent does after the policy: the guest's pause, not the host's.
            process.Args = vec![
                "/busybox".to_owned(),
                "sleep".to_owned(),
                "2147483647".to_owned(),
            ];
        }
        let rootfs = container.bundle.join("rootfs");
        let placement = spec::Placement {
            rootfs: &rootfs,
            pause_pid,
            share_pid: container.share_pid,
            cgroup: cgroup::cgroup_path(id),
            run_dir: &self.config.run_dir,
            initdata: self.config.initdata.as_deref(),
        };
        let config = spec::config_json(&spec, &placement);
        let config_path = container.bundle.join("config.json");
        let write = |e: std::io::Error| {
            status(
                Code::INTERNAL,
                format!(
                    "StartContainer {id}: writing {}: {e}",
                    config_path.display()
                ),
            )
        };
        let bytes =
            serde_json::to_vec_pretty(&config).map_err(|e| write(std::io::Error::other(e)))?;
        std::fs::write(&config_path, bytes).map_err(write)?;
        for (key, value) in spec::net_sysctls(&spec) {
            let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
            std::fs::write(&path, &value).map_err(|e| {
                status(
                    Code::INTERNAL,
                    format!("StartContainer {id}: sysctl {key}={value}: {e}"),
                )
            })?;
        }
        let process = self
            .crun
            .run(id, &container.bundle, stdio_of(spec.Process.as_ref()))
            .await
            .map_err(|e| internal(&format!("StartContainer {id}"), &e))?;
        tracing::info!(container = %id, pid = ?process.pid, "container started");
        self.update(id, |c| c.init = Some(process));
        Ok(())
    }

    /// Removes container `id`: crun deletes it (killing what runs), its bundle goes.
    async fn remove(&self, id: &str) -> ttrpc::Result<()> {
        let container = self.container("RemoveContainer", id)?;
        if container.init.is_some()
            && let Err(e) = self.crun.delete(id).await
        {
            return Err(internal(&format!("RemoveContainer {id}"), &e));
        }
        let _ = std::fs::remove_dir_all(&container.bundle);
        // An OOM kill not yet reported goes with the cgroup: keep it for GetOOMEvent.
        let kills = cgroup::oom_kills(&cgroup::cgroup_dir(&self.config.cgroup_root, id));
        let seen = self
            .oom_seen
            .lock()
            .ok()
            .and_then(|seen| seen.get(id).copied())
            .unwrap_or(0);
        if kills > seen
            && let Ok(mut pending) = self.oom_pending.lock()
        {
            pending.push_back(id.to_owned());
        }
        cgroup::remove(&self.config.cgroup_root, id);
        if let Ok(mut containers) = self.containers.lock() {
            containers.remove(id);
        }
        if let Ok(mut seen) = self.oom_seen.lock() {
            seen.remove(id);
        }
        tracing::info!(container = %id, "container removed");
        Ok(())
    }

    /// The netlink connection, opened on first use.
    async fn network(&self, method: &str) -> ttrpc::Result<&crate::network::Network> {
        self.network
            .get_or_try_init(|| async { crate::network::Network::connect() })
            .await
            .map_err(|e| network_error(method, &e))
    }

    fn sandbox_slot(&self) -> ttrpc::Result<std::sync::MutexGuard<'_, Option<Sandbox>>> {
        self.sandbox.lock().map_err(|_| {
            status(
                Code::INTERNAL,
                "the sandbox state was poisoned by an earlier failure",
            )
        })
    }
}

/// A method of the Kata agent API this agent does not serve yet: the request was allowed
/// by the policy, and is answered with a clear Unimplemented rather than acted on.
/// A process's stdio as its spec asks: a terminal, else pipes for its output.
fn stdio_of(process: Option<&crate::proto::oci::Process>) -> ProcessIo {
    if process.is_some_and(|p| p.Terminal) {
        ProcessIo::Terminal
    } else {
        ProcessIo::Output
    }
}

/// An ID reserved for a CreateContainer under way; released when dropped.
struct Reservation<'a> {
    creating: &'a Mutex<std::collections::BTreeSet<String>>,
    id: String,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if let Ok(mut creating) = self.creating.lock() {
            creating.remove(&self.id);
        }
    }
}

/// A lock a panicking thread left behind (the agent's state can no longer be trusted).
fn poisoned() -> ttrpc::Error {
    status(
        Code::INTERNAL,
        "the agent's container table is unusable after a panic",
    )
}

fn not_yet(method: &str) -> ttrpc::Error {
    status(
        Code::UNIMPLEMENTED,
        format!("/grpc.AgentService/{method} is not served by contrast-agent yet"),
    )
}

/// A method a confidential pod does not need (memory agent, swap, iptables, metrics, ...):
/// refused by design.
fn not_served(method: &str) -> ttrpc::Error {
    status(
        Code::UNIMPLEMENTED,
        format!(
            "/grpc.AgentService/{method} is not served by contrast-agent: a confidential pod \
             does not use it"
        ),
    )
}

#[async_trait::async_trait]
impl AgentService for Agent {
    async fn create_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: CreateSandboxRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        let mut slot = self.sandbox_slot()?;
        if let Some(existing) = slot.as_ref() {
            return Err(status(
                Code::ALREADY_EXISTS,
                format!(
                    "CreateSandbox: sandbox {} already exists; one agent serves one sandbox",
                    existing.id
                ),
            ));
        }
        let shm = match req
            .storages
            .iter()
            .find(|s| s.driver == "ephemeral" && s.source == "shm")
        {
            Some(storage) => Some(
                crate::mount::tmpfs(&self.config.run_dir.join("sandbox/shm"), &storage.options)
                    .map_err(|e| internal("CreateSandbox", &e))?,
            ),
            None => None,
        };
        tracing::info!(sandbox = %req.sandbox_id, hostname = %req.hostname, "sandbox created");
        *slot = Some(Sandbox {
            id: req.sandbox_id,
            hostname: req.hostname,
            dns: req.dns,
            shm,
        });
        Ok(Empty::new())
    }

    async fn destroy_sandbox(
        &self,
        _ctx: &TtrpcContext,
        req: DestroySandboxRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        // Apps first, the pause container last.
        let mut ids: Vec<(bool, String)> = self
            .containers()
            .iter()
            .map(|(id, c)| (c.pause, id.clone()))
            .collect();
        ids.sort();
        for (_, id) in ids {
            if let Err(e) = self.remove(&id).await {
                tracing::warn!(container = %id, error = %e, "removing at DestroySandbox");
            }
        }
        let sandbox = self.sandbox_slot()?.take();
        if let Some(sandbox) = sandbox {
            for handler in &self.handlers {
                handler.teardown();
            }
            if let Some(shm) = &sandbox.shm {
                crate::mount::unmount(shm);
            }
            tracing::info!(sandbox = %sandbox.id, "sandbox destroyed");
        }
        self.destroyed.send_replace(true);
        Ok(Empty::new())
    }

    async fn get_guest_details(
        &self,
        _ctx: &TtrpcContext,
        req: GuestDetailsRequest,
    ) -> ttrpc::Result<GuestDetailsResponse> {
        self.policy.check(&req)?;
        let mut response = GuestDetailsResponse::new();
        if req.mem_block_size {
            response.mem_block_size_bytes = memory_block_size();
        }
        // No memory hotplug by probe: a confidential VM's memory is fixed at launch.
        response.support_mem_hotplug_probe = false;
        let mut details = AgentDetails::new();
        details.version = AGENT_VERSION.to_owned();
        details.init_daemon = true;
        details.storage_handlers = vec!["image_guest_pull".to_owned()];
        details.supports_seccomp = false;
        response.agent_details = Some(details).into();
        Ok(response)
    }

    async fn remove_stale_virtiofs_share_mounts(
        &self,
        _ctx: &TtrpcContext,
        req: RemoveStaleVirtiofsShareMountsRequest,
    ) -> ttrpc::Result<Empty> {
        // The runtime sends this on every container stop. There is no virtio-fs share in
        // a confidential pod (no shared file system), so nothing is stale.
        self.policy.check(&req)?;
        Ok(Empty::new())
    }

    async fn copy_file(&self, _ctx: &TtrpcContext, req: CopyFileRequest) -> ttrpc::Result<Empty> {
        self.policy.check_copy_file(&req)?;
        crate::copy_file::copy_file(&self.config.run_dir, &req).map_err(|e| {
            let code = match e {
                crate::copy_file::CopyError::Io { .. } => Code::INTERNAL,
                _ => Code::INVALID_ARGUMENT,
            };
            status(code, contrast_platforms::error_chain(&e))
        })?;
        Ok(Empty::new())
    }

    async fn set_policy(&self, _ctx: &TtrpcContext, req: SetPolicyRequest) -> ttrpc::Result<Empty> {
        self.policy.set_policy(&req)?;
        tracing::info!("policy replaced by SetPolicy");
        Ok(Empty::new())
    }

    async fn create_container(
        &self,
        _ctx: &TtrpcContext,
        req: CreateContainerRequest,
    ) -> ttrpc::Result<Empty> {
        // Before the policy: a refusal, nothing done (see `reserve`).
        let reservation = self.reserve(&req.container_id)?;
        self.policy.check(&req)?;
        let container = self.prepare_container(&req).await?;
        tracing::info!(container = %req.container_id, bundle = %container.bundle.display(), "container created");
        if let Ok(mut containers) = self.containers.lock() {
            containers.insert(req.container_id.clone(), container);
        }
        // Released only now: the ID is always either reserved or taken.
        drop(reservation);
        Ok(Empty::new())
    }

    async fn start_container(
        &self,
        _ctx: &TtrpcContext,
        req: StartContainerRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        self.start(&req.container_id).await?;
        Ok(Empty::new())
    }

    async fn remove_container(
        &self,
        _ctx: &TtrpcContext,
        req: RemoveContainerRequest,
    ) -> ttrpc::Result<Empty> {
        // Before the policy, which would forget the container (see `created`).
        self.created("RemoveContainer", &req.container_id)?;
        self.policy.check(&req)?;
        self.remove(&req.container_id).await?;
        Ok(Empty::new())
    }

    async fn exec_process(
        &self,
        _ctx: &TtrpcContext,
        req: ExecProcessRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        let id = &req.container_id;
        let container = self.container("ExecProcess", id)?;
        if container.init.as_ref().is_none_or(Process::exited) {
            return Err(status(
                Code::FAILED_PRECONDITION,
                format!("ExecProcess: container {id} does not run"),
            ));
        }
        if !valid_id(&req.exec_id) || container.execs.contains_key(&req.exec_id) {
            return Err(status(
                Code::INVALID_ARGUMENT,
                format!(
                    "ExecProcess: exec ID {:?} is not new or not a plain name",
                    req.exec_id
                ),
            ));
        }
        let process = req.process.as_ref().ok_or_else(|| {
            status(
                Code::INVALID_ARGUMENT,
                "ExecProcess: the request has no process",
            )
        })?;
        let path = container.bundle.join(format!("exec-{}.json", req.exec_id));
        let json = serde_json::to_vec(&spec::process_json(process))
            .map_err(|e| status(Code::INTERNAL, format!("ExecProcess: {e}")))?;
        std::fs::write(&path, json).map_err(|e| {
            status(
                Code::INTERNAL,
                format!("ExecProcess: writing {}: {e}", path.display()),
            )
        })?;
        let started = self
            .crun
            .exec(id, &path, stdio_of(Some(process)))
            .await
            .map_err(|e| internal(&format!("ExecProcess {id}"), &e))?;
        self.update(id, |c| {
            c.execs.insert(req.exec_id.clone(), started);
        });
        Ok(Empty::new())
    }

    async fn signal_process(
        &self,
        _ctx: &TtrpcContext,
        req: SignalProcessRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        let id = &req.container_id;
        self.container("SignalProcess", id)?;
        if !(req.exec_id.is_empty() || req.exec_id == *id) {
            let process = self.process("SignalProcess", id, &req.exec_id)?;
            self.crun
                .signal_exec(&process, req.signal)
                .map_err(|e| internal(&format!("SignalProcess {id}"), &e))?;
            return Ok(Empty::new());
        }
        // SIGKILL ends every process of the container, as the runtime means it.
        let all = req.signal == 9;
        self.crun
            .kill(id, req.signal, all)
            .await
            .map_err(|e| internal(&format!("SignalProcess {id}"), &e))?;
        Ok(Empty::new())
    }

    async fn wait_process(
        &self,
        _ctx: &TtrpcContext,
        req: WaitProcessRequest,
    ) -> ttrpc::Result<WaitProcessResponse> {
        self.policy.check(&req)?;
        let process = self.process("WaitProcess", &req.container_id, &req.exec_id)?;
        let mut response = WaitProcessResponse::new();
        response.status = process.wait().await;
        Ok(response)
    }

    async fn stats_container(
        &self,
        _ctx: &TtrpcContext,
        req: StatsContainerRequest,
    ) -> ttrpc::Result<StatsContainerResponse> {
        self.policy.check(&req)?;
        let id = &req.container_id;
        self.container("StatsContainer", id)?;
        let dir = cgroup::cgroup_dir(&self.config.cgroup_root, id);
        if !dir.is_dir() {
            return Err(status(
                Code::NOT_FOUND,
                format!("StatsContainer: container {id} has no cgroup (not running)"),
            ));
        }
        let mut response = StatsContainerResponse::new();
        response.cgroup_stats = Some(cgroup::stats(&dir)).into();
        Ok(response)
    }

    async fn write_stdin(
        &self,
        _ctx: &TtrpcContext,
        req: WriteStreamRequest,
    ) -> ttrpc::Result<WriteStreamResponse> {
        self.policy.check(&req)?;
        let process = self.process("WriteStdin", &req.container_id, &req.exec_id)?;
        let written = process
            .write(&req.data)
            .await
            .map_err(|e| status(Code::FAILED_PRECONDITION, format!("WriteStdin: {e}")))?;
        let mut response = WriteStreamResponse::new();
        response.len = u32::try_from(written).unwrap_or(u32::MAX);
        Ok(response)
    }

    async fn read_stdout(
        &self,
        _ctx: &TtrpcContext,
        req: ReadStreamRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        self.read_stream(req, true).await
    }

    async fn read_stderr(
        &self,
        _ctx: &TtrpcContext,
        req: ReadStreamRequest,
    ) -> ttrpc::Result<ReadStreamResponse> {
        self.read_stream(req, false).await
    }

    async fn close_stdin(
        &self,
        _ctx: &TtrpcContext,
        req: CloseStdinRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        let process = self.process("CloseStdin", &req.container_id, &req.exec_id)?;
        process.close_stdin().await;
        Ok(Empty::new())
    }

    async fn tty_win_resize(
        &self,
        _ctx: &TtrpcContext,
        req: TtyWinResizeRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        let (Ok(rows), Ok(columns)) = (u16::try_from(req.row), u16::try_from(req.column)) else {
            return Err(status(
                Code::INVALID_ARGUMENT,
                format!(
                    "TtyWinResize: {}x{} is larger than a terminal can be (65535)",
                    req.row, req.column
                ),
            ));
        };
        let process = self.process("TtyWinResize", &req.container_id, &req.exec_id)?;
        let terminal = process.terminal.as_ref().ok_or_else(|| {
            status(
                Code::FAILED_PRECONDITION,
                format!(
                    "TtyWinResize: the process {:?} of container {} has no terminal",
                    req.exec_id, req.container_id
                ),
            )
        })?;
        terminal
            .resize(rows, columns)
            .map_err(|e| internal("TtyWinResize", &e))?;
        Ok(Empty::new())
    }

    async fn update_interface(
        &self,
        _ctx: &TtrpcContext,
        req: UpdateInterfaceRequest,
    ) -> ttrpc::Result<Interface> {
        self.policy.check(&req)?;
        let iface = req.interface.as_ref().ok_or_else(|| {
            status(
                Code::INVALID_ARGUMENT,
                "UpdateInterface: the request has no interface",
            )
        })?;
        self.network("UpdateInterface")
            .await?
            .update_interface(iface)
            .await
            .map_err(|e| network_error("UpdateInterface", &e))
    }

    async fn update_routes(
        &self,
        _ctx: &TtrpcContext,
        req: UpdateRoutesRequest,
    ) -> ttrpc::Result<Routes> {
        self.policy.check(&req)?;
        let list = req
            .routes
            .as_ref()
            .map(|r| r.Routes.clone())
            .unwrap_or_default();
        let applied = self
            .network("UpdateRoutes")
            .await?
            .update_routes(&list)
            .await
            .map_err(|e| network_error("UpdateRoutes", &e))?;
        let mut routes = Routes::new();
        routes.Routes = applied;
        Ok(routes)
    }

    async fn list_interfaces(
        &self,
        _ctx: &TtrpcContext,
        req: ListInterfacesRequest,
    ) -> ttrpc::Result<Interfaces> {
        self.policy.check(&req)?;
        let mut interfaces = Interfaces::new();
        interfaces.Interfaces = self
            .network("ListInterfaces")
            .await?
            .list_interfaces()
            .await
            .map_err(|e| network_error("ListInterfaces", &e))?;
        Ok(interfaces)
    }

    async fn list_routes(
        &self,
        _ctx: &TtrpcContext,
        req: ListRoutesRequest,
    ) -> ttrpc::Result<Routes> {
        self.policy.check(&req)?;
        let mut routes = Routes::new();
        routes.Routes = self
            .network("ListRoutes")
            .await?
            .list_routes()
            .await
            .map_err(|e| network_error("ListRoutes", &e))?;
        Ok(routes)
    }

    async fn add_arp_neighbors(
        &self,
        _ctx: &TtrpcContext,
        req: AddARPNeighborsRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        let list = req
            .neighbors
            .as_ref()
            .map(|n| n.ARPNeighbors.clone())
            .unwrap_or_default();
        self.network("AddARPNeighbors")
            .await?
            .add_arp_neighbors(&list)
            .await
            .map_err(|e| network_error("AddARPNeighbors", &e))?;
        Ok(Empty::new())
    }

    async fn get_oom_event(
        &self,
        _ctx: &TtrpcContext,
        req: GetOOMEventRequest,
    ) -> ttrpc::Result<OOMEvent> {
        self.policy.check(&req)?;
        // The runtime asks again and again and waits for the answer: a container whose
        // cgroup's OOM killer struck since the last answer.
        loop {
            let pending = self
                .oom_pending
                .lock()
                .map_err(|_| status(Code::INTERNAL, "GetOOMEvent: state poisoned"))?
                .pop_front();
            if let Some(id) = pending {
                tracing::info!(container = %id, "OOM kill (container removed since)");
                let mut event = OOMEvent::new();
                event.container_id = id;
                return Ok(event);
            }
            let ids: Vec<String> = self.containers().keys().cloned().collect();
            for id in ids {
                let kills = cgroup::oom_kills(&cgroup::cgroup_dir(&self.config.cgroup_root, &id));
                let mut seen = self
                    .oom_seen
                    .lock()
                    .map_err(|_| status(Code::INTERNAL, "GetOOMEvent: state poisoned"))?;
                let before = seen.entry(id.clone()).or_insert(0);
                if kills > *before {
                    *before = kills;
                    tracing::info!(container = %id, "OOM kill");
                    let mut event = OOMEvent::new();
                    event.container_id = id;
                    return Ok(event);
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    async fn online_cpu_mem(
        &self,
        _ctx: &TtrpcContext,
        req: OnlineCPUMemRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        let system = &self.config.sysfs.join("devices/system");
        let failed = |e: crate::hotplug::HotplugError| internal("OnlineCPUMem", &e);
        if req.nb_cpus > 0 {
            crate::hotplug::online_cpus_until(system, req.nb_cpus)
                .await
                .map_err(failed)?;
        }
        if !req.cpu_only {
            let blocks = crate::hotplug::online_memory(system).map_err(failed)?;
            tracing::info!(blocks, "memory blocks brought online");
        }
        Ok(Empty::new())
    }

    async fn get_diagnostic_data(
        &self,
        _ctx: &TtrpcContext,
        req: GetDiagnosticDataRequest,
    ) -> ttrpc::Result<GetDiagnosticDataResponse> {
        self.policy.check(&req)?;
        Err(not_yet("GetDiagnosticData"))
    }

    async fn update_container(
        &self,
        _ctx: &TtrpcContext,
        req: UpdateContainerRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        Err(not_yet("UpdateContainer"))
    }

    async fn update_ephemeral_mounts(
        &self,
        _ctx: &TtrpcContext,
        req: UpdateEphemeralMountsRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        Err(not_yet("UpdateEphemeralMounts"))
    }

    async fn pause_container(
        &self,
        _ctx: &TtrpcContext,
        req: PauseContainerRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        Err(not_served("PauseContainer"))
    }

    async fn resume_container(
        &self,
        _ctx: &TtrpcContext,
        req: ResumeContainerRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        Err(not_served("ResumeContainer"))
    }

    async fn get_ip_tables(
        &self,
        _ctx: &TtrpcContext,
        req: GetIPTablesRequest,
    ) -> ttrpc::Result<GetIPTablesResponse> {
        self.policy.check(&req)?;
        Err(not_served("GetIPTables"))
    }

    async fn set_ip_tables(
        &self,
        _ctx: &TtrpcContext,
        req: SetIPTablesRequest,
    ) -> ttrpc::Result<SetIPTablesResponse> {
        self.policy.check(&req)?;
        Err(not_served("SetIPTables"))
    }

    async fn get_metrics(
        &self,
        _ctx: &TtrpcContext,
        req: GetMetricsRequest,
    ) -> ttrpc::Result<Metrics> {
        self.policy.check(&req)?;
        Err(not_served("GetMetrics"))
    }

    async fn mem_agent_memcg_set(
        &self,
        _ctx: &TtrpcContext,
        req: MemAgentMemcgConfig,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        Err(not_served("MemAgentMemcgSet"))
    }

    async fn mem_agent_compact_set(
        &self,
        _ctx: &TtrpcContext,
        req: MemAgentCompactConfig,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        Err(not_served("MemAgentCompactSet"))
    }

    async fn reseed_random_dev(
        &self,
        _ctx: &TtrpcContext,
        req: ReseedRandomDevRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        Err(not_served("ReseedRandomDev"))
    }

    async fn mem_hotplug_by_probe(
        &self,
        _ctx: &TtrpcContext,
        req: MemHotplugByProbeRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        Err(not_served("MemHotplugByProbe"))
    }

    async fn set_guest_date_time(
        &self,
        _ctx: &TtrpcContext,
        req: SetGuestDateTimeRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        Err(not_served("SetGuestDateTime"))
    }

    async fn add_swap(&self, _ctx: &TtrpcContext, req: AddSwapRequest) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        Err(not_served("AddSwap"))
    }

    async fn add_swap_path(
        &self,
        _ctx: &TtrpcContext,
        req: AddSwapPathRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        Err(not_served("AddSwapPath"))
    }

    async fn get_volume_stats(
        &self,
        _ctx: &TtrpcContext,
        req: VolumeStatsRequest,
    ) -> ttrpc::Result<VolumeStatsResponse> {
        self.policy.check(&req)?;
        Err(not_served("GetVolumeStats"))
    }

    async fn resize_volume(
        &self,
        _ctx: &TtrpcContext,
        req: ResizeVolumeRequest,
    ) -> ttrpc::Result<Empty> {
        self.policy.check(&req)?;
        Err(not_served("ResizeVolume"))
    }
}

/// INTERNAL "`<what>`: `<the error and its causes>`": something in the guest failed.
fn internal(what: &str, e: &dyn std::error::Error) -> ttrpc::Error {
    status(
        Code::INTERNAL,
        format!("{what}: {}", contrast_platforms::error_chain(e)),
    )
}

fn network_error(method: &str, e: &crate::network::NetworkError) -> ttrpc::Error {
    let code = match e {
        crate::network::NetworkError::Invalid { .. } => Code::INVALID_ARGUMENT,
        crate::network::NetworkError::NoLink(_) => Code::NOT_FOUND,
        _ => Code::INTERNAL,
    };
    status(
        code,
        format!("{method}: {}", contrast_platforms::error_chain(e)),
    )
}

/// A container ID as the Kata agent accepts it: a path component, never `..`.
fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The guest's memory block size (`/sys/devices/system/memory/block_size_bytes`, hex), or
/// 0 where the kernel has no memory hotplug.
fn memory_block_size() -> u64 {
    std::fs::read_to_string("/sys/devices/system/memory/block_size_bytes")
        .ok()
        .and_then(|s| u64::from_str_radix(s.trim(), 16).ok())
        .unwrap_or(0)
}

/// `grpc.Health`: the runtime's readiness check. Not policy-checked, as in the Kata agent.
#[derive(Debug, Clone, Copy, Default)]
pub struct HealthService;

#[async_trait::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckRequest,
    ) -> ttrpc::Result<HealthCheckResponse> {
        let mut response = HealthCheckResponse::new();
        response.status = ServingStatus::SERVING.into();
        Ok(response)
    }

    async fn version(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckRequest,
    ) -> ttrpc::Result<VersionCheckResponse> {
        let mut response = VersionCheckResponse::new();
        response.agent_version = AGENT_VERSION.to_owned();
        response.grpc_version = "ttrpc".to_owned();
        Ok(response)
    }
}
