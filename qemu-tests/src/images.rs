//! Container images the guest pulls: layers of this machine's files (the test build's
//! programs, the installed system's tools) pushed to a local registry, named as the guest
//! reaches it. Shared by the QEMU tests, the containerd node and the quickstart.
//!
//! A harness: a set-up step that fails panics with its cause, as testkit's registry does.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use contrast_testkit::registry::{LayeredImage, Registry, RegistrySetup};
use serde_json::{Value, json};

use crate::tempdir;

/// A layer with the host's static busybox as `/bin/busybox`, `/bin/sh` and `/bin/test`.
pub fn busybox_layer() -> Vec<u8> {
    LayerBuilder::new().busybox().finish()
}

/// A container image layer of this machine's files (`contrast_image::oci::Layer`, what a
/// release builds its images with): programs of the test build, files of the installed
/// system, and at the end the shared libraries all of them load.
#[derive(Debug)]
pub struct LayerBuilder {
    layer: contrast_image::oci::Layer,
    scratch: PathBuf,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        LayerBuilder {
            layer: contrast_image::oci::Layer::new(),
            scratch: tempdir("layer").unwrap(),
        }
    }

    /// `data` at `path` with `mode`.
    pub fn file(mut self, path: &str, data: &[u8], mode: u32) -> LayerBuilder {
        self.layer.file(path, data.to_vec(), mode);
        self
    }

    /// A symbolic link at `path` to `target`.
    pub fn symlink(mut self, path: &str, target: &str) -> LayerBuilder {
        self.layer.symlink(path, target);
        self
    }

    /// `program` (the test build's) at `/usr/bin/<name>`, without debug sections.
    pub fn program(mut self, program: &Path) -> LayerBuilder {
        let name = program.file_name().unwrap().to_string_lossy().into_owned();
        self.layer.program(program, &name, &self.scratch).unwrap();
        self
    }

    /// The installed system's file at `path` (relative to `/`), at the same path.
    pub fn system_file(mut self, path: &str) -> LayerBuilder {
        self.layer.system_file(path, 0o755).unwrap();
        self
    }

    /// The static busybox as `/bin/busybox`, with `/bin/sh` and `/bin/test`.
    pub fn busybox(self) -> LayerBuilder {
        self.system_file("bin/busybox")
            .symlink("bin/sh", "busybox")
            .symlink("bin/test", "busybox")
    }

    /// The shared simulator's signing keys under `/sim` (test images only: a simulated
    /// platform's guest signs its evidence with them; `CONTRAST_SIMULATOR_DIR=/sim`).
    pub fn simulator_keys(mut self) -> LayerBuilder {
        let simulator = contrast_testkit::shared_simulator_dir();
        for entry in std::fs::read_dir(&simulator).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|x| x == "p8") {
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                self.layer
                    .file(&format!("sim/{name}"), std::fs::read(&path).unwrap(), 0o600);
            }
        }
        self
    }

    /// The system's CA bundle (a kube client loads it even for a plain-HTTP server).
    pub fn ca_certificates(mut self) -> LayerBuilder {
        self.layer.ca_certificates().unwrap();
        self
    }

    /// iptables as the guest image has it (`contrast_image`'s list).
    pub fn iptables(mut self) -> LayerBuilder {
        self.layer.iptables().unwrap();
        self
    }

    /// What the Initializer's secure-pv path runs besides itself, as its release image has
    /// it (`contrast_image`'s list).
    pub fn luks_tools(mut self) -> LayerBuilder {
        self.layer.luks_tools().unwrap();
        self
    }

    /// The tar stream.
    pub fn finish(self) -> Vec<u8> {
        let tar = self.layer.tar().unwrap();
        let _ = std::fs::remove_dir_all(&self.scratch);
        tar
    }
}

/// An image in the test's registry, as the guest names it.
#[derive(Debug, Clone)]
pub struct PushedImage {
    pub reference: String,
    pub digest: String,
    env: Vec<String>,
    entrypoint: Vec<String>,
}

impl PushedImage {
    /// `guest_host` is the registry's address as the guest reaches it.
    pub fn push(
        registry: &Registry,
        guest_host: &str,
        work: &Path,
        repo: &str,
        layer: Vec<u8>,
        env: &[&str],
        entrypoint: &[&str],
    ) -> PushedImage {
        let image = LayeredImage::new(
            &json!({"Env": env, "Entrypoint": entrypoint}).to_string(),
            &[layer],
        );
        image.push(registry, work, repo, "v1");
        PushedImage {
            reference: format!("{guest_host}:{}/{repo}@{}", registry.port, image.digest()),
            digest: image.digest(),
            env: env.iter().map(|e| (*e).to_owned()).collect(),
            entrypoint: entrypoint.iter().map(|e| (*e).to_owned()).collect(),
        }
    }

    /// The image's entry in a pod case's `images`.
    pub fn config(&self) -> Value {
        json!({
            "digest": self.digest,
            "env": self.env,
            "entrypoint": self.entrypoint,
            "cmd": [],
            "working_dir": "",
            "user": "",
            "volumes": [],
        })
    }
}

/// The host as the guest reaches it over QEMU's user network.
pub const USER_NETWORK_HOST: &str = "10.0.2.2";

/// A registry on the host with the busybox app image (`guest/busybox`), as the guest
/// reaches it; its layout directory goes with it.
#[derive(Debug)]
pub struct AppRegistry {
    pub registry: Registry,
    pub work: PathBuf,
    /// `<host>:<port>`, the registry as the guest names it.
    pub guest_registry: String,
    pub app: PushedImage,
}

impl AppRegistry {
    /// For a guest on QEMU's user network (the host's loopback at [`USER_NETWORK_HOST`]).
    pub fn start(test: &str) -> AppRegistry {
        Self::start_with(test, USER_NETWORK_HOST, RegistrySetup::default())
    }

    /// For a guest on a pod network whose gateway, `gateway`, is the host's address there:
    /// the registry listens on all the host's addresses.
    pub fn start_on(test: &str, gateway: &str) -> AppRegistry {
        Self::start_with(
            test,
            gateway,
            RegistrySetup {
                listen_any: true,
                ..RegistrySetup::default()
            },
        )
    }

    /// As `setup` says (credentials, TLS), for a guest that reaches the host as
    /// `guest_host`.
    pub fn start_with(test: &str, guest_host: &str, setup: RegistrySetup) -> AppRegistry {
        let registry = Registry::start(setup);
        let work = tempdir(&format!("{test}-layout")).unwrap();
        let app = PushedImage::push(
            &registry,
            guest_host,
            &work,
            "guest/busybox",
            busybox_layer(),
            &["PATH=/usr/bin:/bin"],
            &["/bin/sh"],
        );
        AppRegistry {
            guest_registry: format!("{guest_host}:{}", registry.port),
            registry,
            work,
            app,
        }
    }
}

impl Drop for AppRegistry {
    fn drop(&mut self) {
        self.registry.stop();
        let _ = std::fs::remove_dir_all(&self.work);
    }
}
