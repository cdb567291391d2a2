//! A private containerd with the CRI plugin, and a CRI client for it.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use tonic::transport::{Channel, Endpoint};

use crate::CriError;
use crate::runtime::VersionRequest;
use crate::runtime::image_service_client::ImageServiceClient;
use crate::runtime::runtime_service_client::RuntimeServiceClient;
use crate::teardown::{self, Leftovers};

/// Debian's containerd.
const CONTAINERD: &str = "/usr/bin/containerd";
/// How long containerd may take until its CRI answers.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The pod annotations every extra runtime handler passes into the sandbox's bundle.
const POD_ANNOTATIONS: [&str; 2] = ["io.katacontainers.*", "contrast.edgeless.systems/*"];

/// A runtime handler besides runc (`RunPodSandboxRequest.runtime_handler`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeHandler {
    /// The handler's name.
    pub name: String,
    /// containerd's runtime type, e.g. `io.containerd.contrast-cc.v2`: containerd runs
    /// `containerd-shim-contrast-cc-v2` from its PATH (see [`ContainerdConfig::shim_dir`]).
    pub runtime_type: String,
    /// The runtime's options (`[...runtimes.<name>.options]`), e.g. `ConfigPath`.
    pub options: Vec<(String, String)>,
}

/// What the private containerd is configured with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerdConfig {
    /// The sandbox (pause) image, e.g. [`crate::images::PAUSE_IMAGE`]. It must be in the
    /// CRI namespace before the first pod runs.
    pub pause_image: String,
    /// Runtime handlers besides the default runc.
    pub runtime_handlers: Vec<RuntimeHandler>,
    /// A directory put first on containerd's PATH, where it finds `containerd-shim-*-v2`.
    pub shim_dir: Option<PathBuf>,
    /// Registry mirrors: a host name as images name it (`10.0.2.2:5000`) and the endpoint
    /// containerd pulls from instead (`http://127.0.0.1:5000`).
    pub registry_mirrors: Vec<(String, String)>,
    /// A pod network (CNI's bridge plugin) for pods that are not on the host's network.
    pub pod_network: Option<PodNetwork>,
}

/// A CNI network of bridge + host-local, as a node's network plugin sets up pods: each pod
/// gets a veth `eth0` with an address of `<prefix>.0/24` and a default route through the
/// bridge's address `<prefix>.1`, which is the host's on that subnet (so the host reaches
/// pods, and pods the host's services on the gateway address). No masquerading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetwork {
    /// The bridge's name (at most 15 bytes); removed with the containerd.
    pub bridge: String,
    /// The first three octets of the /24 subnet, such as `10.201.7`.
    pub prefix: String,
}

impl PodNetwork {
    /// A network of its own for this process, for a test named `test`: a bridge and an
    /// unused /24 under 10.200.0.0/13 from the process ID.
    pub fn for_test(test: &str) -> PodNetwork {
        let id = std::process::id();
        let tag: u32 = test.bytes().map(u32::from).sum();
        PodNetwork {
            bridge: format!("cnt{}", (id ^ (tag << 16)) % 1_000_000),
            prefix: format!("10.{}.{}", 200 + (id + tag) % 8, (id / 8) % 250),
        }
    }

    /// The gateway: the bridge's address, the host's on the pod network.
    pub fn gateway(&self) -> String {
        format!("{}.1", self.prefix)
    }

    /// Makes the bridge with the gateway's address before any pod, so that the host's
    /// services can listen on it first (CNI's bridge plugin takes the bridge as it finds
    /// it). Removed with the containerd, or by [`PodNetwork::remove`].
    pub fn bring_up(&self) -> Result<(), CriError> {
        let gateway = format!("{}/24", self.gateway());
        for args in [
            vec!["link", "add", self.bridge.as_str(), "type", "bridge"],
            vec!["addr", "add", gateway.as_str(), "dev", self.bridge.as_str()],
            vec!["link", "set", self.bridge.as_str(), "up"],
        ] {
            let mut ip = std::process::Command::new("ip");
            ip.args(args);
            crate::images::run(ip)?;
        }
        Ok(())
    }

    /// Removes the bridge (quiet when there is none).
    pub fn remove(&self) {
        teardown::remove_link(&self.bridge);
    }

    /// The CNI configuration list; host-local keeps its allocations under `ipam_dir`.
    fn conflist(&self, ipam_dir: &Path) -> String {
        serde_json::json!({
            "cniVersion": "0.4.0",
            "name": "contrast-test",
            "plugins": [{
                "type": "bridge",
                "bridge": self.bridge,
                "isGateway": true,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "ranges": [[{
                        "subnet": format!("{}.0/24", self.prefix),
                        "gateway": self.gateway(),
                    }]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }],
        })
        .to_string()
    }
}

/// A containerd of its own in a temporary directory, killed and cleaned up on drop.
#[derive(Debug)]
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The pod network, whose bridge CNI leaves behind.
    pod_network: Option<PodNetwork>,
}

/// A CRI client: the runtime and the image service over containerd's socket.
#[derive(Debug, Clone)]
pub struct Cri {
    /// `runtime.v1.RuntimeService`.
    pub runtime: RuntimeServiceClient<Channel>,
    /// `runtime.v1.ImageService`.
    pub images: ImageServiceClient<Channel>,
}

impl Containerd {
    /// Starts containerd and waits until its CRI answers Version.
    pub async fn start(config: &ContainerdConfig) -> Result<Containerd, CriError> {
        Self::start_patched(config, str::to_owned).await
    }

    /// Like [`Containerd::start`], with the configuration file's text passed through
    /// `patch` first (a node installer's edit of containerd's config, tested as a node
    /// would run it).
    pub async fn start_patched(
        config: &ContainerdConfig,
        patch: impl FnOnce(&str) -> String,
    ) -> Result<Containerd, CriError> {
        let dir = tempfile::Builder::new()
            .prefix("contrast-cri-")
            .tempdir()
            .map_err(|source| CriError::Io {
                action: "create a temporary directory in",
                path: std::env::temp_dir(),
                source,
            })?;
        let mut containerd = Containerd {
            dir,
            child: None,
            pod_network: None,
        };
        for sub in ["root", "state", "runc", "opt", "cni"] {
            let path = containerd.dir().join(sub);
            std::fs::create_dir(&path).map_err(|source| CriError::Io {
                action: "create",
                path,
                source,
            })?;
        }
        if let Some(network) = &config.pod_network {
            let path = containerd.dir().join("cni/10-contrast-test.conflist");
            let ipam_dir = containerd.dir().join("cni-ipam");
            std::fs::write(&path, network.conflist(&ipam_dir)).map_err(|source| CriError::Io {
                action: "write",
                path,
                source,
            })?;
            containerd.pod_network = Some(network.clone());
        }
        let config_path = containerd.config_path();
        std::fs::write(&config_path, patch(&config_toml(containerd.dir(), config))).map_err(
            |source| CriError::Io {
                action: "write",
                path: config_path.clone(),
                source,
            },
        )?;
        let log_path = containerd.log_path();
        let log = std::fs::File::create(&log_path).map_err(|source| CriError::Io {
            action: "create",
            path: log_path.clone(),
            source,
        })?;
        let log_err = log.try_clone().map_err(|source| CriError::Io {
            action: "open",
            path: log_path.clone(),
            source,
        })?;
        let mut path_var = std::ffi::OsString::new();
        if let Some(shim_dir) = &config.shim_dir {
            path_var.push(shim_dir);
            path_var.push(":");
        }
        path_var.push(std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin".into()));
        let child = Command::new(CONTAINERD)
            .arg("--config")
            .arg(&config_path)
            .env("PATH", path_var)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|source| CriError::Spawn {
                program: CONTAINERD.into(),
                source,
            })?;
        containerd.child = Some(child);
        containerd.wait_ready().await?;
        Ok(containerd)
    }

    async fn wait_ready(&mut self) -> Result<(), CriError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(CriError::Exited {
                    status,
                    log_tail: self.log_tail(),
                });
            }
            if self.socket().exists()
                && let Ok(mut cri) = self.cri().await
                && cri
                    .runtime
                    .version(VersionRequest {
                        version: "v1".to_owned(),
                    })
                    .await
                    .is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(CriError::NotReady {
                    seconds: READY_TIMEOUT.as_secs(),
                    socket: self.socket(),
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A CRI client connected to this containerd.
    pub async fn cri(&self) -> Result<Cri, CriError> {
        let socket = self.socket();
        let connect_to = socket.clone();
        // The URI is not used: every connection goes to the unix socket.
        let channel = Endpoint::from_static("http://containerd.invalid")
            .connect_with_connector(tower::service_fn(move |_| {
                let socket = connect_to.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(socket).await?;
                    Ok::<_, std::io::Error>(TokioIo::new(stream))
                }
            }))
            .await
            .map_err(|source| CriError::Connect { socket, source })?;
        Ok(Cri {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// The temporary directory everything of this containerd is in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// containerd's gRPC (and CRI) socket.
    pub fn socket(&self) -> PathBuf {
        self.dir().join("containerd.sock")
    }

    /// The config.toml containerd runs with.
    pub fn config_path(&self) -> PathBuf {
        self.dir().join("config.toml")
    }

    /// containerd's log (its stdout and stderr).
    pub fn log_path(&self) -> PathBuf {
        self.dir().join("containerd.log")
    }

    /// containerd's state directory (bundles, sandbox files such as `shm`).
    pub fn state_dir(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// runc's state directory for this containerd's containers.
    pub fn runc_root(&self) -> PathBuf {
        self.dir().join("runc")
    }

    /// The last lines of containerd's log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path(), 30)
    }

    /// A failed CRI call as an error with the end of containerd's log.
    pub fn call_error(&self, call: &'static str, status: tonic::Status) -> CriError {
        CriError::Call {
            call,
            code: status.code(),
            message: status.message().to_owned(),
            log_tail: self.log_tail(),
        }
    }

    /// What is left of this containerd's pods: shim processes, mounts under its
    /// directory, shim sockets, runc state. Empty after a clean teardown.
    pub fn leftovers(&self) -> Leftovers {
        teardown::leftovers(
            self.dir(),
            &self.socket(),
            &self.runc_root(),
            &self.log_path(),
        )
    }

    /// [`Containerd::leftovers`] once they are gone, or what is still left after
    /// `timeout` (shims exit shortly after their last task is deleted).
    pub async fn settled_leftovers(&self, timeout: Duration) -> Leftovers {
        let deadline = Instant::now() + timeout;
        loop {
            let leftovers = self.leftovers();
            if leftovers.is_empty() || Instant::now() > deadline {
                return leftovers;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // The shims outlive containerd (they are reparented), so find them first.
        if std::thread::panicking() {
            tracing::warn!(log_tail = %self.log_tail(), "containerd's log, as its test failed");
        }
        let shims = teardown::shim_processes(&self.socket());
        if let Some(mut child) = self.child.take() {
            if let Err(error) = child.kill() {
                tracing::warn!(%error, "could not kill containerd");
            }
            let _ = child.wait();
        }
        teardown::kill_process_trees(&shims);
        teardown::unmount_under(self.dir());
        teardown::remove_outside_state(&self.socket(), &teardown::known_ids(&self.log_path()));
        if let Some(network) = &self.pod_network {
            // Pods whose sandboxes were never stopped keep their namespaces.
            teardown::remove_pod_namespaces(&format!("{}.", network.prefix));
            teardown::remove_link(&network.bridge);
        }
    }
}

/// containerd's config.toml for `config` with everything under `dir`.
fn config_toml(dir: &Path, config: &ContainerdConfig) -> String {
    let path = |sub: &str| toml_string(&dir.join(sub).to_string_lossy());
    let cri = r#"plugins."io.containerd.grpc.v1.cri""#;
    let mut toml = String::new();
    let _ = writeln!(
        toml,
        r#"version = 2
root = {root}
state = {state}

[grpc]
  address = {socket}

[ttrpc]
  address = {ttrpc}

[plugins."io.containerd.internal.v1.opt"]
  path = {opt}

[{cri}]
  sandbox_image = {pause}
  # The CRI asks for oom_score_adj -998, which needs CAP_SYS_RESOURCE.
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = {cni}

[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = {runc}"#,
        root = path("root"),
        state = path("state"),
        socket = path("containerd.sock"),
        ttrpc = path("containerd.sock.ttrpc"),
        opt = path("opt"),
        cni = path("cni"),
        runc = path("runc"),
        pause = toml_string(&config.pause_image),
    );
    let annotations = POD_ANNOTATIONS.map(toml_string).join(", ");
    for handler in &config.runtime_handlers {
        let table = format!("{cri}.containerd.runtimes.{}", toml_string(&handler.name));
        let _ = writeln!(
            toml,
            "\n[{table}]\n  runtime_type = {}\n  pod_annotations = [{annotations}]",
            toml_string(&handler.runtime_type)
        );
        if !handler.options.is_empty() {
            let _ = writeln!(toml, "\n[{table}.options]");
            for (key, value) in &handler.options {
                let _ = writeln!(toml, "  {} = {}", toml_string(key), toml_string(value));
            }
        }
    }
    for (host, endpoint) in &config.registry_mirrors {
        let _ = writeln!(
            toml,
            "\n[{cri}.registry.mirrors.{}]\n  endpoint = [{}]",
            toml_string(host),
            toml_string(endpoint)
        );
    }
    toml
}

/// A TOML basic string: a JSON string is one.
fn toml_string(value: &str) -> String {
    serde_json::Value::from(value).to_string()
}

/// The last `lines` lines of the file at `path` (or why it cannot be read).
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("<could not read {}: {error}>", path.display()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn handlers_and_mirrors_appear_in_the_config() {
        let config = ContainerdConfig {
            pause_image: "docker.io/library/pause:test".to_owned(),
            runtime_handlers: vec![RuntimeHandler {
                name: "contrast-cc".to_owned(),
                runtime_type: "io.containerd.contrast-cc.v2".to_owned(),
                options: vec![("ConfigPath".to_owned(), "/etc/x.toml".to_owned())],
            }],
            shim_dir: None,
            registry_mirrors: vec![(
                "10.0.2.2:5000".to_owned(),
                "http://127.0.0.1:5000".to_owned(),
            )],
            pod_network: None,
        };
        let toml = config_toml(Path::new("/tmp/x"), &config);
        assert!(toml.contains("sandbox_image = \"docker.io/library/pause:test\""));
        assert!(toml.contains("restrict_oom_score_adj = true"));
        assert!(toml.contains(
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.\"contrast-cc\"]\n  \
             runtime_type = \"io.containerd.contrast-cc.v2\"\n  \
             pod_annotations = [\"io.katacontainers.*\", \"contrast.edgeless.systems/*\"]"
        ));
        assert!(toml.contains("\"ConfigPath\" = \"/etc/x.toml\""));
        assert!(toml.contains(
            "[plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"10.0.2.2:5000\"]\n  \
             endpoint = [\"http://127.0.0.1:5000\"]"
        ));
        assert!(toml.contains("address = \"/tmp/x/containerd.sock.ttrpc\""));
    }
}
