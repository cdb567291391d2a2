//! `containerd-shim-contrast-cc-v2`: containerd starts it for every pod of a Contrast
//! runtime class (runtime_type `io.containerd.contrast-cc.v2`). All containers of a pod
//! share one shim process (grouped by the CRI sandbox ID), which owns the pod's VM.
#![forbid(unsafe_code)]

use std::sync::Arc;

use containerd_shim::asynchronous::{ExitSignal, Shim, run, spawn};
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, Error, Flags, StartOpts};
use containerd_shim_protos::api::DeleteResponse;
use contrast_shim::task::{Service, cleanup_after_crash};

/// The runtime's ID (containerd's `runtime_type`).
const RUNTIME_ID: &str = "io.containerd.contrast-cc.v2";

struct ContrastShim {
    exit: Arc<ExitSignal>,
    namespace: String,
    id: String,
    /// The ttRPC socket containerd talks to this shim on (`unix:///run/containerd/s/…`).
    socket: String,
}

#[async_trait::async_trait]
impl Shim for ContrastShim {
    type T = Service;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        ContrastShim {
            exit: Arc::new(ExitSignal::default()),
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            socket: args.socket.clone(),
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        // One shim per pod: containers join their sandbox's shim (containerd starts this
        // in the container's bundle directory).
        let grouping = std::fs::read_to_string("config.json")
            .ok()
            .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
            .and_then(|spec| {
                spec.get("annotations")?
                    .get(contrast_shim::spec::CRI_SANDBOX_ID)?
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| opts.id.clone());
        spawn(opts, &grouping, Vec::new()).await
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        cleanup_after_crash(&self.id);
        Ok(DeleteResponse {
            exit_status: 137,
            exited_at: Some(
                containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp::now(),
            )
            .into(),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
        // containerd-shim 0.11 leaves its socket behind once the bundle (where it records
        // the address) is gone.
        if let Some(path) = self.socket.strip_prefix("unix://") {
            let _ = std::fs::remove_file(path);
        }
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        Service::new(self.exit.clone(), &self.namespace, publisher)
    }
}

#[tokio::main]
async fn main() {
    run::<ContrastShim>(RUNTIME_ID, None).await;
}
