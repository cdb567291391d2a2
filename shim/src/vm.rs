//! One pod VM: QEMU with the measured image, the initdata disk, the launch field that binds
//! the initdata (HOST_DATA on SEV-SNP, MRCONFIGID on TDX) and a vsock to the agent.
//!
//! The command line is a pure function of the configuration ([`qemu_args`]) so it can be
//! checked for every platform without a TEE; [`Vm::launch`] runs it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use contrast_initdata::disk::{SNP_HOST_DATA_LEN, TDX_MR_CONFIG_ID_LEN};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::process::{Child, Command};

use crate::config::{RuntimeConfig, Tee};
use crate::network::{GuestNetwork, PodNetwork};

/// The agent's vsock port (the Kata agent's).
pub const AGENT_PORT: u32 = 1024;

/// The MAC of the pod VM's first NIC (QEMU's default for the first one).
pub const GUEST_MAC: &str = "52:54:00:12:34:56";

/// The requests that give the guest QEMU's user network: the NIC ([`GUEST_MAC`]) as eth0
/// with 10.0.2.15/24, and a default route through QEMU's gateway 10.0.2.2 (the host's
/// loopback). The QEMU tests send the same.
pub fn user_network_requests() -> (
    contrast_agent_protocol::proto::agent::UpdateInterfaceRequest,
    contrast_agent_protocol::proto::agent::UpdateRoutesRequest,
) {
    use contrast_agent_protocol::proto::agent::{
        Routes, UpdateInterfaceRequest, UpdateRoutesRequest,
    };
    use contrast_agent_protocol::proto::types::{IPAddress, IPFamily, Interface, Route};
    let mut address = IPAddress::new();
    address.family = IPFamily::v4.into();
    address.address = "10.0.2.15".to_owned();
    address.mask = "24".to_owned();
    let mut interface = Interface::new();
    interface.device = "eth0".to_owned();
    interface.name = "eth0".to_owned();
    interface.hwAddr = GUEST_MAC.to_owned();
    interface.mtu = 1500;
    interface.type_ = "virtual".to_owned();
    interface.IPAddresses = vec![address];
    let mut update_interface = UpdateInterfaceRequest::new();
    update_interface.interface = Some(interface).into();
    let mut route = Route::new();
    route.dest = "0.0.0.0/0".to_owned();
    route.gateway = "10.0.2.2".to_owned();
    route.device = "eth0".to_owned();
    let mut routes = Routes::new();
    routes.Routes = vec![route];
    let mut update_routes = UpdateRoutesRequest::new();
    update_routes.routes = Some(routes).into();
    (update_interface, update_routes)
}

/// Why a pod VM could not be started or reached.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// A file of the VM could not be written.
    #[error("writing {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The image puller config the Kata configuration names cannot be used.
    #[error(
        "the image puller config {path} (hypervisor.qemu.contrast_imagepuller_config): {reason}; \
         the node installer writes it from the Secret contrast-node-installer-imagepuller-config"
    )]
    ImagepullerConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A program could not be started.
    #[error("starting {program} (is it installed where the Kata configuration says?)")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The vsock back end did not come up.
    #[error("the vsock back end {program} did not listen on {socket}: {reason}")]
    VsockBackend {
        /// The back end.
        program: PathBuf,
        /// Its socket.
        socket: PathBuf,
        /// What happened.
        reason: String,
    },
    /// QEMU ended before the agent answered.
    #[error("QEMU exited with {status} before the agent answered; its output:\n{console}")]
    Exited {
        /// QEMU's exit status.
        status: String,
        /// The end of its console log.
        console: String,
    },
    /// The pod's network could not be given to the VM.
    #[error("the pod's network")]
    Network(#[source] crate::network::PodNetworkError),
    /// The agent did not answer in time.
    #[error(
        "the agent did not answer on vsock port {AGENT_PORT} within {seconds} s (agent.kata.dial_timeout); the VM's console ends with:\n{console}"
    )]
    DialTimeout {
        /// The timeout.
        seconds: u64,
        /// The end of the console log.
        console: String,
    },
}

/// The files of one VM in its directory.
#[derive(Debug, Clone)]
pub struct VmFiles {
    /// The initdata block device image.
    pub initdata: PathBuf,
    /// The image puller config's block device image (empty when the node has none).
    pub imagepuller: PathBuf,
    /// The console log (QEMU's serial output).
    pub console: PathBuf,
    /// The user-space vsock back end's Unix socket (simulated platforms).
    pub vsock_uds: PathBuf,
    /// The vhost-user socket between QEMU and the back end (simulated platforms).
    pub vhost_socket: PathBuf,
    /// QEMU's pid, for the shim's `delete` action after a crash.
    pub pid_file: PathBuf,
}

impl VmFiles {
    /// The files under `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        VmFiles {
            initdata: dir.join("initdata.img"),
            imagepuller: dir.join("imagepuller.img"),
            console: dir.join("console.log"),
            vsock_uds: dir.join("vm.vsock"),
            vhost_socket: dir.join("vhost-vsock.sock"),
            pid_file: dir.join("qemu.pid"),
        }
    }
}

/// The launch field's length for the configuration's TEE.
pub fn launch_field_len(tee: &Tee) -> usize {
    match tee {
        Tee::Tdx => TDX_MR_CONFIG_ID_LEN,
        Tee::Snp { .. } => SNP_HOST_DATA_LEN,
        #[cfg(feature = "simulated")]
        Tee::Simulated(_) => SNP_HOST_DATA_LEN,
    }
}

/// The vsock context ID of a sandbox's VM on a real platform: derived from the sandbox
/// ID, in the range guests may use (3 and up, below the reserved top).
pub fn guest_cid(sandbox_id: &str) -> u32 {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, sandbox_id.as_bytes());
    let mut first = [0u8; 4];
    first.copy_from_slice(&digest.as_ref()[..4]);
    3 + u32::from_le_bytes(first) % (u32::MAX - 16)
}

/// QEMU's arguments for a pod VM of `sandbox_id` whose launch field (HOST_DATA or
/// MRCONFIGID) is `launch_field`, with its NICs on `network`.
pub fn qemu_args(
    config: &RuntimeConfig,
    files: &VmFiles,
    sandbox_id: &str,
    launch_field: &[u8],
    network: &GuestNetwork,
) -> Vec<String> {
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let memory = config.memory_mib;
    let mut args: Vec<String> = vec![
        "-name".into(),
        format!("sandbox-{sandbox_id}"),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
        "-no-reboot".into(),
        "-serial".into(),
        "stdio".into(),
        "-m".into(),
        format!("{memory}M"),
        "-smp".into(),
        config.vcpus.to_string(),
    ];
    let simulated = config.tee.is_simulated();
    let cpu_model = if simulated { "max" } else { "host" };
    args.push("-cpu".into());
    args.push(match &config.cpu_features {
        Some(features) if !features.is_empty() => format!("{cpu_model},{features}"),
        _ => cpu_model.to_owned(),
    });
    // The guest memory is a memfd: shared on the simulated platforms, where the vsock
    // back end maps it (vhost-user), private elsewhere.
    let share = if simulated { ",share=on" } else { "" };
    args.push("-object".into());
    args.push(format!(
        "memory-backend-memfd,id=mem0,size={memory}M{share}"
    ));
    let mut machine = config
        .machine_type
        .clone()
        .unwrap_or_else(|| if simulated { "pc".into() } else { "q35".into() });
    machine.push_str(if simulated {
        ",accel=tcg"
    } else {
        ",accel=kvm"
    });
    machine.push_str(",memory-backend=mem0");
    match &config.tee {
        Tee::Snp { id_block, policy } => {
            machine.push_str(",confidential-guest-support=cgs0");
            let mut object = format!(
                "sev-snp-guest,id=cgs0,cbitpos=51,reduced-phys-bits=1,kernel-hashes=on,policy={policy:#x},host-data={}",
                b64(launch_field)
            );
            if let Some((block, auth)) = id_block {
                object.push_str(&format!(",id-block={block},id-auth={auth}"));
            }
            args.extend(["-object".into(), object]);
        }
        Tee::Tdx => {
            machine.push_str(",confidential-guest-support=cgs0,kernel-irqchip=split");
            args.extend([
                "-object".into(),
                format!("tdx-guest,id=cgs0,mrconfigid={}", b64(launch_field)),
            ]);
        }
        #[cfg(feature = "simulated")]
        Tee::Simulated(_) => {
            // The test TSM provider reads HOST_DATA from here, as SEV-SNP firmware takes it
            // from the VMM at launch.
            args.extend([
                "-fw_cfg".into(),
                format!(
                    "name=opt/contrast-host-data,string={}",
                    hex::encode(launch_field)
                ),
            ]);
        }
    }
    args.extend(["-machine".into(), machine]);
    if let Some(firmware) = &config.firmware {
        args.extend(["-bios".into(), firmware.display().to_string()]);
    }
    args.extend(["-kernel".into(), config.kernel.display().to_string()]);
    if let Some(initrd) = &config.initrd {
        args.extend(["-initrd".into(), initrd.display().to_string()]);
    }
    let cmdline = match &config.tee {
        // Test mode is on the measured command line: such a VM never attests as a
        // production one.
        #[cfg(feature = "simulated")]
        Tee::Simulated(simulation) => {
            format!("{} contrast.test={}", config.kernel_params, simulation.test)
        }
        _ => config.kernel_params.clone(),
    };
    args.extend(["-append".into(), cmdline]);
    // The root filesystem is the first virtio disk (/dev/vda), the initdata disk is found by
    // its serial, the test payload (simulated platforms) by its serial too.
    args.extend([
        "-drive".into(),
        format!(
            "file={},format=raw,if=none,id=root,readonly=on",
            config.image.display()
        ),
        "-device".into(),
        "virtio-blk-pci,drive=root".into(),
        "-drive".into(),
        format!(
            "file={},format=raw,if=none,id=initdata,readonly=on",
            files.initdata.display()
        ),
        "-device".into(),
        "virtio-blk-pci,drive=initdata,serial=initdata".into(),
        // Always there, empty without a node config: each device is in QEMU's DSDT, which
        // TDX measures into RTMR0, so the device set must not depend on the node's settings.
        "-drive".into(),
        format!(
            "file={},format=raw,if=none,id=imagepuller,readonly=on",
            files.imagepuller.display()
        ),
        "-device".into(),
        "virtio-blk-pci,drive=imagepuller,serial=imagepuller".into(),
    ]);
    match &config.tee {
        #[cfg(feature = "simulated")]
        Tee::Simulated(simulation) => {
            args.extend([
                "-drive".into(),
                format!(
                    "file={},format=raw,if=none,id=payload,readonly=on",
                    simulation.payload.display()
                ),
                "-device".into(),
                "virtio-blk-pci,drive=payload,serial=contrast-test".into(),
                "-chardev".into(),
                format!("socket,id=vvsock,path={}", files.vhost_socket.display()),
                "-device".into(),
                "vhost-user-vsock-pci,chardev=vvsock".into(),
            ]);
        }
        _ => args.extend([
            "-device".into(),
            format!("vhost-vsock-pci,guest-cid={}", guest_cid(sandbox_id)),
        ]),
    }
    match network {
        // Host-network pods: QEMU's user network in the shim's network namespace; the
        // guest is 10.0.2.15 behind the gateway 10.0.2.2.
        GuestNetwork::User => args.extend([
            "-netdev".into(),
            "user,id=net0".into(),
            "-device".into(),
            format!("virtio-net-pci,netdev=net0,mac={GUEST_MAC}"),
        ]),
        // The pod's network namespace: QEMU (started inside it) makes each tap; the shim
        // joins it to its interface (crate::network). With vhost-net (Kata's default) the
        // host kernel moves the packets, not QEMU.
        GuestNetwork::Taps(taps) => {
            let vhost = if config.vhost_net { "on" } else { "off" };
            for (n, tap) in taps.iter().enumerate() {
                args.extend([
                    "-netdev".into(),
                    format!(
                        "tap,id=net{n},ifname={},script=no,downscript=no,vhost={vhost}",
                        tap.name
                    ),
                    "-device".into(),
                    format!("virtio-net-pci,netdev=net{n},mac={}", tap.mac),
                ]);
            }
        }
    }
    args
}

/// A running pod VM; QEMU and the vsock back end are killed when it is dropped.
pub struct Vm {
    /// QEMU's pid.
    pid: u32,
    /// Kills QEMU (the task that owns it waits for it).
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    /// QEMU's exit status, once it ended.
    exited: tokio::sync::watch::Receiver<Option<String>>,
    backend: Option<Child>,
    files: VmFiles,
    config: RuntimeConfig,
    sandbox_id: String,
    /// The pod's network namespace, its taps joined to its interfaces.
    network: Option<PodNetwork>,
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        // Dropped without `stop` (an error path): the pod's interfaces lose their
        // redirects all the same, on the runtime if there still is one.
        if let Some(network) = self.network.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(network.disconnect());
        }
    }
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("qemu", &self.pid)
            .field("sandbox_id", &self.sandbox_id)
            .finish_non_exhaustive()
    }
}

impl Vm {
    /// Writes the initdata disk into `dir` and starts QEMU (and, on the simulated
    /// platforms, the vsock back end); with a pod `network`, QEMU runs in its namespace
    /// and its taps are joined to the pod's interfaces before this returns.
    pub async fn launch(
        config: &RuntimeConfig,
        dir: &Path,
        sandbox_id: &str,
        initdata_toml: &[u8],
        launch_field: &[u8],
        network: Option<PodNetwork>,
    ) -> Result<Vm, VmError> {
        let files = VmFiles::in_dir(dir);
        write(
            &files.initdata,
            &contrast_initdata::disk::device_image(initdata_toml),
        )?;
        let puller_config = match &config.imagepuller_config {
            Some(path) => read_imagepuller_config(path)?,
            // An empty config: no registries, anonymous pulls.
            None => Vec::new(),
        };
        write_private(
            &files.imagepuller,
            &contrast_initdata::disk::device_image_with(
                contrast_initdata::disk::IMAGEPULLER_MAGIC,
                &puller_config,
            ),
        )?;
        let backend = match &config.tee {
            #[cfg(feature = "simulated")]
            Tee::Simulated(simulation) => {
                Some(start_backend(&simulation.vsock_backend, &files).await?)
            }
            _ => None,
        };
        let console = std::fs::File::create(&files.console).map_err(|source| VmError::Write {
            path: files.console.clone(),
            source,
        })?;
        let guest_network = network
            .as_ref()
            .map_or(GuestNetwork::User, PodNetwork::guest_network);
        let mut command = Command::new(&config.qemu);
        command
            .args(qemu_args(
                config,
                &files,
                sandbox_id,
                launch_field,
                &guest_network,
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let spawned = match &network {
            None => command.spawn(),
            Some(network) => {
                let runtime = tokio::runtime::Handle::current();
                contrast_kernel_network::in_namespace(network.netns(), || {
                    let _entered = runtime.enter();
                    command.spawn()
                })
                .map_err(|source| {
                    VmError::Network(crate::network::PodNetworkError::Kernel {
                        netns: network.netns().to_owned(),
                        source,
                    })
                })?
            }
        };
        let mut qemu = spawned.map_err(|source| VmError::Spawn {
            program: config.qemu.clone(),
            source,
        })?;
        // The guest's console and QEMU's messages, capped: the guest chooses how much it
        // prints, and the state directory is in the node's memory.
        let console = tokio::sync::Mutex::new(tokio::fs::File::from_std(console));
        let console = std::sync::Arc::new((console, std::sync::atomic::AtomicU64::new(0)));
        if let Some(stdout) = qemu.stdout.take() {
            tokio::spawn(copy_capped(stdout, console.clone()));
        }
        if let Some(stderr) = qemu.stderr.take() {
            tokio::spawn(copy_capped(stderr, console));
        }
        let pid = qemu.id().unwrap_or_default();
        write(&files.pid_file, pid.to_string().as_bytes())?;
        tracing::info!(sandbox = sandbox_id, pid, "pod VM launched");
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let (exited_tx, exited) = tokio::sync::watch::channel(None);
        tokio::spawn(async move {
            let mut qemu = qemu;
            let status = tokio::select! {
                status = qemu.wait() => status,
                _ = killed => {
                    let _ = qemu.start_kill();
                    qemu.wait().await
                }
            };
            exited_tx.send_replace(Some(
                status.map_or_else(|e| e.to_string(), |s| s.to_string()),
            ));
        });
        let vm = Vm {
            pid,
            kill: Some(kill),
            exited,
            backend,
            files,
            config: config.clone(),
            sandbox_id: sandbox_id.to_owned(),
            network,
        };
        if let Some(network) = &vm.network
            && let Err(e) = network.connect_taps(&vm.exited).await
        {
            // QEMU's own words when it ended first (a tap it could not make, say).
            let exited = vm.exited.borrow().clone();
            let console = vm.console_tail();
            vm.stop().await;
            return Err(match exited {
                Some(status) => VmError::Exited { status, console },
                None => VmError::Network(e),
            });
        }
        Ok(vm)
    }

    /// The agent's requests for the VM's network: the pod's interfaces, routes and
    /// neighbours, or QEMU's user network.
    pub fn network_requests(
        &self,
    ) -> (
        Vec<contrast_agent_protocol::proto::agent::UpdateInterfaceRequest>,
        contrast_agent_protocol::proto::agent::UpdateRoutesRequest,
        Option<contrast_agent_protocol::proto::agent::AddARPNeighborsRequest>,
    ) {
        match &self.network {
            Some(network) => network.requests(),
            None => {
                let (interface, routes) = user_network_requests();
                (vec![interface], routes, None)
            }
        }
    }

    /// QEMU's pid (what containerd shows as the task's pid, as with Kata).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// A ttRPC connection to the agent, retried until it answers or the dial timeout.
    pub async fn connect_agent(&mut self) -> Result<ttrpc::r#async::Client, VmError> {
        let deadline = Instant::now() + Duration::from_secs(self.config.dial_timeout_secs);
        loop {
            if let Some(status) = self.exited.borrow().clone() {
                return Err(VmError::Exited {
                    status,
                    console: self.console_tail(),
                });
            }
            let attempt = match &self.config.tee {
                // Not before the agent listens (`AGENT_SERVING_LOG`).
                #[cfg(feature = "simulated")]
                Tee::Simulated(_)
                    if !console_contains(
                        &self.files.console,
                        contrast_agent_protocol::AGENT_SERVING_LOG,
                    ) =>
                {
                    Err(std::io::Error::other("the agent does not listen yet"))
                }
                #[cfg(feature = "simulated")]
                Tee::Simulated(_) => connect_hybrid(&self.files.vsock_uds)
                    .await
                    .map(ttrpc::r#async::transport::Socket::new),
                _ => {
                    let address =
                        tokio_vsock::VsockAddr::new(guest_cid(&self.sandbox_id), AGENT_PORT);
                    tokio_vsock::VsockStream::connect(address)
                        .await
                        .map(ttrpc::r#async::transport::Socket::new)
                }
            };
            match attempt {
                Ok(socket) => return Ok(ttrpc::r#async::Client::new(socket)),
                Err(e) if Instant::now() > deadline => {
                    tracing::warn!(error = %e, "agent not reachable");
                    return Err(VmError::DialTimeout {
                        seconds: self.config.dial_timeout_secs,
                        console: self.console_tail(),
                    });
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Resolves with QEMU's exit status once it ended (for the pod's monitor).
    pub fn exited(&self) -> tokio::sync::watch::Receiver<Option<String>> {
        self.exited.clone()
    }

    /// The last lines of the console.
    pub fn console_tail(&self) -> String {
        console_tail(&self.files.console)
    }

    /// Stops the VM and its back end and waits for both.
    pub async fn stop(mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        let _ = self.exited.wait_for(Option::is_some).await;
        if let Some(mut backend) = self.backend.take() {
            let _ = backend.kill().await;
        }
        let _ = std::fs::remove_file(&self.files.pid_file);
        let _ = std::fs::remove_file(&self.files.vsock_uds);
        let _ = std::fs::remove_file(&self.files.vhost_socket);
        if let Some(network) = self.network.take() {
            network.disconnect().await;
        }
        tracing::info!(sandbox = self.sandbox_id, "pod VM stopped");
    }
}

/// How much of a VM's console is kept.
const CONSOLE_CAP: u64 = 4 << 20;

/// Copies `from` into the shared console file until [`CONSOLE_CAP`] bytes were written,
/// then drains it.
async fn copy_capped(
    mut from: impl tokio::io::AsyncRead + Unpin,
    console: std::sync::Arc<(
        tokio::sync::Mutex<tokio::fs::File>,
        std::sync::atomic::AtomicU64,
    )>,
) {
    let mut buffer = vec![0u8; 8192];
    loop {
        match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let before = console
                    .1
                    .fetch_add(n as u64, std::sync::atomic::Ordering::SeqCst);
                if before < CONSOLE_CAP {
                    let _ = console.0.lock().await.write_all(&buffer[..n]).await;
                }
            }
        }
    }
}

/// Whether the console log at `path` holds `needle` (simulated platforms).
#[cfg(feature = "simulated")]
fn console_contains(path: &Path, needle: &str) -> bool {
    std::fs::read(path).is_ok_and(|text| {
        text.windows(needle.len())
            .any(|window| window == needle.as_bytes())
    })
}

/// The last 40 lines of a console log.
pub fn console_tail(path: &Path) -> String {
    let text = String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The guest refuses a larger image puller config (`contrast_registry::
/// MAX_PULLER_CONFIG_SIZE`); refusing it here says so before a VM starts.
const MAX_IMAGEPULLER_CONFIG: u64 = 1 << 20;

/// The node's image puller config, bounded.
pub fn read_imagepuller_config(path: &Path) -> Result<Vec<u8>, VmError> {
    use std::io::Read as _;
    let refuse = |reason: String| VmError::ImagepullerConfig {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| refuse(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_IMAGEPULLER_CONFIG + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(e.to_string()))?;
    if bytes.len() as u64 > MAX_IMAGEPULLER_CONFIG {
        return Err(refuse(format!(
            "it is larger than {MAX_IMAGEPULLER_CONFIG} bytes"
        )));
    }
    Ok(bytes)
}

/// Writes `bytes` readable by the shim's user only (gzip is no encryption: the image puller
/// config's disk holds credentials).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), VmError> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let error = |source| VmError::Write {
        path: path.to_owned(),
        source,
    };
    let _ = std::fs::remove_file(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut file| file.write_all(bytes))
        .map_err(error)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), VmError> {
    std::fs::write(path, bytes).map_err(|source| VmError::Write {
        path: path.to_owned(),
        source,
    })
}

#[cfg(feature = "simulated")]
async fn start_backend(program: &Path, files: &VmFiles) -> Result<Child, VmError> {
    let _ = std::fs::remove_file(&files.vsock_uds);
    let _ = std::fs::remove_file(&files.vhost_socket);
    let mut child = Command::new(program)
        .arg("--guest-cid=3")
        .arg(format!("--socket={}", files.vhost_socket.display()))
        .arg(format!("--uds-path={}", files.vsock_uds.display()))
        // With the default 64 KiB, guest packets over 32 KiB are dropped and the connection
        // hangs (docs/environment.md §7).
        .arg("--tx-buffer-size=16384")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| VmError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    let started = Instant::now();
    // QEMU exits at once when the back end's socket is not there yet.
    while !files.vhost_socket.exists() {
        let failure = |reason: String| VmError::VsockBackend {
            program: program.to_owned(),
            socket: files.vhost_socket.clone(),
            reason,
        };
        if let Ok(Some(status)) = child.try_wait() {
            return Err(failure(format!("it exited with {status}")));
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill().await;
            return Err(failure("not within 20 s".into()));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(child)
}

/// The hybrid-vsock handshake (cloud-hypervisor's, which `vhost-device-vsock` speaks on its
/// Unix socket): `CONNECT <port>\n`, answered `OK <host port>\n` once the guest accepted.
/// The answer is read byte by byte, since what follows its newline is the guest's.
pub mod hybrid_vsock {
    /// How long an answer may take. The back end drops a request that arrives before the
    /// guest's driver set up its queues ("backend event before vring initialization"), and
    /// never answers it: the connection is retried instead of waited on.
    pub const ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

    /// The request for guest `port`.
    pub fn request(port: u32) -> String {
        format!("CONNECT {port}\n")
    }

    /// Whether `answer` (read so far) is complete: its newline, or the most an answer has.
    pub fn answer_complete(answer: &[u8]) -> bool {
        answer.last() == Some(&b'\n') || answer.len() >= 64
    }

    /// A complete answer: the connection is the guest port's, or why not.
    pub fn accepted(answer: &[u8]) -> std::io::Result<()> {
        if answer.starts_with(b"OK ") {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "vsock handshake answered {:?}",
                String::from_utf8_lossy(answer)
            )))
        }
    }
}

/// Connects to the agent's port through the user-space back end's Unix socket
/// ([`hybrid_vsock`]).
#[cfg(feature = "simulated")]
async fn connect_hybrid(uds: &Path) -> std::io::Result<tokio::net::UnixStream> {
    let mut stream = tokio::net::UnixStream::connect(uds).await?;
    stream
        .write_all(hybrid_vsock::request(AGENT_PORT).as_bytes())
        .await?;
    let mut answer = Vec::new();
    while !hybrid_vsock::answer_complete(&answer) {
        let byte = tokio::time::timeout(hybrid_vsock::ANSWER_TIMEOUT, stream.read_u8())
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        answer.push(byte);
    }
    hybrid_vsock::accepted(&answer)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    /// The node's image puller config: read within its bound, refused by name when it is
    /// missing or too large, and its disk readable by the shim's user only.
    #[test]
    fn the_imagepuller_config_is_bounded_and_its_disk_private() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("contrast-imagepuller.toml");
        let err = read_imagepuller_config(&config).unwrap_err().to_string();
        assert!(err.contains("contrast_imagepuller_config"), "{err}");
        std::fs::write(&config, vec![b'#'; MAX_IMAGEPULLER_CONFIG as usize + 1]).unwrap();
        let err = read_imagepuller_config(&config).unwrap_err().to_string();
        assert!(err.contains("larger than"), "{err}");
        std::fs::write(&config, b"[registries.\"r\"]\n").unwrap();
        let bytes = read_imagepuller_config(&config).unwrap();
        let disk = dir.path().join("imagepuller.img");
        std::fs::write(&disk, b"an earlier sandbox's").unwrap();
        write_private(&disk, &bytes).unwrap();
        assert_eq!(std::fs::read(&disk).unwrap(), bytes);
        let mode = std::fs::metadata(&disk).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}
