//! A pod's VM over its life: the sandbox's Create (initdata, VM, network, CreateSandbox),
//! the monitor that notices the VM's end, the OOM events, and the stop.

use super::*;

impl Service {
    /// The sandbox's Create: the VM, the network, CreateSandbox.
    pub(super) async fn start_sandbox(
        &self,
        req: &api::CreateTaskRequest,
        spec: &Value,
    ) -> Result<(), containerd_shim_protos::ttrpc::Error> {
        let config_path = req
            .options
            .as_ref()
            .and_then(config_path_from_options)
            .or_else(|| std::env::var(CONFIG_ENV).ok())
            .ok_or_else(|| {
                error(
                    Code::FAILED_PRECONDITION,
                    format!(
                        "no Kata configuration: containerd's runtime options name no ConfigPath and {CONFIG_ENV} is unset; re-run the runtime installer"
                    ),
                )
            })?;
        let config = RuntimeConfig::load(Path::new(&config_path)).map_err(|e| {
            error(
                Code::FAILED_PRECONDITION,
                contrast_platforms::error_chain(&e),
            )
        })?;
        // The pod's own limits on top of the VM's defaults (Kata's static sandbox sizing).
        let config = crate::config::SandboxSizing::of(spec).apply(&config);
        let encoded = annotation(spec, INITDATA_ANNOTATION).ok_or_else(|| {
            error(
                Code::INVALID_ARGUMENT,
                format!(
                    "the pod has no {INITDATA_ANNOTATION} annotation: run `contrast generate` on its resources (the pod VM would only get a deny-all policy)"
                ),
            )
        })?;
        let toml = contrast_initdata::decode_annotation_value(encoded).map_err(|e| {
            error(
                Code::INVALID_ARGUMENT,
                format!("the pod's {INITDATA_ANNOTATION} annotation: {e}"),
            )
        })?;
        let document = contrast_initdata::Initdata::parse(toml.clone()).map_err(|e| {
            error(
                Code::INVALID_ARGUMENT,
                format!("the pod's initdata ({INITDATA_ANNOTATION}): {e}"),
            )
        })?;
        let field = contrast_initdata::disk::launch_field(
            &document.digest(),
            launch_field_len(&config.tee),
        );
        // The pod's network before anything is made that would need removing.
        let netns = crate::spec::sandbox_network_namespace(spec)
            .map_err(|e| error(Code::INVALID_ARGUMENT, e.to_string()))?;
        let network = match &netns {
            Some(netns) => Some(PodNetwork::scan(netns).await.map_err(|e| {
                error(
                    Code::FAILED_PRECONDITION,
                    contrast_platforms::error_chain(&e),
                )
            })?),
            None => None,
        };
        let dir = Path::new(STATE_DIR).join(&req.id);
        std::fs::create_dir_all(&dir)
            .map_err(|e| error(Code::INTERNAL, format!("creating {}: {e}", dir.display())))?;
        let mut vm = match Vm::launch(&config, &dir, &req.id, &toml, &field, network).await {
            Ok(vm) => vm,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(error(
                    Code::UNAVAILABLE,
                    contrast_platforms::error_chain(&e),
                ));
            }
        };
        let client = match vm.connect_agent().await {
            Ok(client) => client,
            Err(e) => {
                vm.stop().await;
                let _ = std::fs::remove_dir_all(&dir);
                return Err(error(Code::UNAVAILABLE, e.to_string()));
            }
        };
        let agent = AgentServiceClient::new(client.clone());
        let agent_for_oom = agent.clone();
        let health = HealthClient::new(client);
        let exited = vm.exited();
        let result = async {
            health
                .check(ctx(config.dial_timeout_secs), &CheckRequest::new())
                .await
                .map_err(|e| agent_error("the agent's health check", e))?;
            setup_network(&agent, &vm).await?;
            let settings = spec::SandboxSettings {
                shm_size: shm_size(spec),
                guest_hook_path: config.guest_hook_path.clone(),
                kernel_modules: Vec::new(),
            };
            let sandbox = spec::create_sandbox_request(spec, &req.id, &settings)
                .map_err(|e| error(Code::INVALID_ARGUMENT, e.to_string()))?;
            agent
                .create_sandbox(ctx(config.dial_timeout_secs), &sandbox)
                .await
                .map_err(|e| agent_error("CreateSandbox", e))?;
            Ok::<_, containerd_shim_protos::ttrpc::Error>(())
        }
        .await;
        if let Err(e) = result {
            let console = vm.console_tail();
            vm.stop().await;
            let _ = std::fs::remove_dir_all(&dir);
            tracing::warn!(%console, "the pod VM's console");
            return Err(e);
        }
        let mut pod = self.pod.lock().await;
        pod.sandbox_id = Some(req.id.clone());
        pod.dir = Some(dir);
        pod.vm = Some(vm);
        pod.agent = Some(agent);
        pod.config = Some(config);
        drop(pod);
        self.monitor(health, exited);
        self.forward_oom_events(agent_for_oom);
        Ok(())
    }

    /// Watches the pod's VM: when QEMU ends, or the agent stops answering its health
    /// check, while the pod runs, every process still running is over — containerd hears of
    /// each exit (status 255) and the VM is stopped. Without this, a guest that hangs or
    /// panics behind a live QEMU would leave its pod Running for ever.
    fn monitor(
        &self,
        health: HealthClient,
        mut exited: tokio::sync::watch::Receiver<Option<String>>,
    ) {
        const PERIOD: Duration = Duration::from_secs(10);
        const MISSES: u32 = 3;
        let service = self.clone();
        tokio::spawn(async move {
            let mut misses = 0;
            let reason = loop {
                tokio::select! {
                    _ = async { exited.wait_for(Option::is_some).await.map(|_| ()) } => {
                        break format!("QEMU ended ({})", exited.borrow().clone().unwrap_or_default());
                    }
                    _ = tokio::time::sleep(PERIOD) => {
                        match health.check(ctx(5), &CheckRequest::new()).await {
                            Ok(_) => misses = 0,
                            Err(e) => {
                                misses += 1;
                                if misses >= MISSES {
                                    break format!("the agent did not answer {MISSES} health checks ({e})");
                                }
                            }
                        }
                    }
                }
            };
            // A pod being stopped on purpose has no VM in its state any more.
            if service.pod.lock().await.vm.is_none() {
                return;
            }
            tracing::warn!(%reason, "the pod VM is gone; its processes are over");
            service.end_all_processes().await;
            service.stop_pod().await;
        });
    }

    /// Passes the agent's OOM kills on to containerd (`/tasks/oom`, which the CRI turns into
    /// the container's `OOMKilled` reason) until the agent goes away.
    fn forward_oom_events(&self, agent: AgentServiceClient) {
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                let event = match agent
                    .get_oom_event(ttrpc::context::with_timeout(0), &GetOOMEventRequest::new())
                    .await
                {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::info!(error = %e, "no more OOM events from the agent");
                        return;
                    }
                };
                let oom = TaskOOM {
                    container_id: event.container_id,
                    ..Default::default()
                };
                service
                    .publish(
                        containerd_shim_protos::topics::TASK_OOM_EVENT_TOPIC,
                        Box::new(oom),
                    )
                    .await;
            }
        });
    }

    /// Marks every process still running as exited (255) and tells containerd.
    async fn end_all_processes(&self) {
        let mut exits = Vec::new();
        {
            let pod = self.pod.lock().await;
            let pid = pod.vm.as_ref().map(Vm::pid).unwrap_or_default();
            for (id, container) in &pod.containers {
                let processes = std::iter::once((String::new(), &container.init))
                    .chain(container.execs.iter().map(|(e, p)| (e.clone(), p)));
                for (exec_id, process) in processes {
                    if process.exit.borrow().is_some() {
                        continue;
                    }
                    let at = now();
                    process.exit.send_replace(Some(Exit {
                        status: 255,
                        at: at.clone(),
                    }));
                    exits.push(TaskExit {
                        container_id: id.clone(),
                        id: if exec_id.is_empty() {
                            id.clone()
                        } else {
                            exec_id
                        },
                        pid,
                        exit_status: 255,
                        exited_at: Some(at).into(),
                        ..Default::default()
                    });
                }
            }
        }
        for exit in exits {
            self.publish(
                containerd_shim_protos::topics::TASK_EXIT_EVENT_TOPIC,
                Box::new(exit),
            )
            .await;
        }
    }

    /// Stops the VM and forgets the pod.
    pub(super) async fn stop_pod(&self) {
        let (vm, agent, dir) = {
            let mut pod = self.pod.lock().await;
            (pod.vm.take(), pod.agent.take(), pod.dir.take())
        };
        if let Some(agent) = agent {
            let _ = agent
                .destroy_sandbox(ctx(5), &DestroySandboxRequest::new())
                .await;
        }
        if let Some(vm) = vm {
            vm.stop().await;
        }
        if let Some(dir) = dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The size of the sandbox's shared memory, as the Kata runtime takes it (`getShmSize`,
/// oci.go): the file system behind the pause container's `/dev/shm` bind mount, 64 MiB when
/// that mount is not a bind of another directory, none without the mount.
fn shm_size(spec: &Value) -> u64 {
    const DEFAULT: u64 = 64 << 20;
    let Some(mount) = spec
        .get("mounts")
        .and_then(Value::as_array)
        .and_then(|mounts| {
            mounts
                .iter()
                .find(|m| m.get("destination").and_then(Value::as_str) == Some("/dev/shm"))
        })
    else {
        return 0;
    };
    let source = mount
        .get("source")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if mount.get("type").and_then(Value::as_str) != Some("bind") || source == "/dev/shm" {
        return DEFAULT;
    }
    match nix::sys::statfs::statfs(source) {
        Ok(fs) => fs
            .blocks()
            .saturating_mul(u64::try_from(fs.block_size()).unwrap_or_default()),
        Err(_) => DEFAULT,
    }
}

/// The VM's network ([`Vm::network_requests`]) as UpdateInterface, UpdateRoutes and
/// AddARPNeighbors (the Kata runtime's order).
async fn setup_network(
    agent: &AgentServiceClient,
    vm: &Vm,
) -> Result<(), containerd_shim_protos::ttrpc::Error> {
    let (interfaces, routes, neighbors) = vm.network_requests();
    for interface in &interfaces {
        agent
            .update_interface(ctx(30), interface)
            .await
            .map_err(|e| agent_error("UpdateInterface", e))?;
    }
    agent
        .update_routes(ctx(30), &routes)
        .await
        .map_err(|e| agent_error("UpdateRoutes", e))?;
    if let Some(neighbors) = &neighbors {
        agent
            .add_arp_neighbors(ctx(30), neighbors)
            .await
            .map_err(|e| agent_error("AddARPNeighbors", e))?;
    }
    Ok(())
}
