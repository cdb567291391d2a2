//! Guest pull through the agent: a pod generated for an image in a real registry (Debian's
//! `docker-registry`, filled by `skopeo`), the runtime's requests over ttRPC, and the
//! container's root pulled by digest into the bundle — or refused, with nothing left, when
//! the registry's content was changed.

#![allow(clippy::unwrap_used)]

use contrast_agent::proto::agent::{CreateContainerRequest, CreateSandboxRequest};
use contrast_agent::proto::agent_ttrpc::AgentServiceClient;
use contrast_agent::{Agent, AgentConfig, PolicyGate, serve};
use contrast_testkit::registry::{LayeredImage, Registry, RegistrySetup, layer_tar_gz, sha256};
use contrast_testkit::{PodCase, TempDir, single_container_pod};
use serde_json::Value;
use ttrpc::{Code, context};

/// The image's one layer: a file to find in the pulled root.
fn layer() -> Vec<u8> {
    layer_tar_gz("etc/greeting", b"pulled in the guest\n").0
}

fn pod(reference: &str, image: &LayeredImage) -> PodCase {
    single_container_pod(reference, &image.digest(), &["/bin/app"])
}

struct Running {
    dir: TempDir,
    server: ttrpc::r#async::Server,
    agent: AgentServiceClient,
}

async fn start(policy: &str, registry: &Registry) -> Running {
    start_with(policy, registry, None).await
}

/// With the image puller config at `puller_config`.
async fn start_with(
    policy: &str,
    registry: &Registry,
    puller_config: Option<std::path::PathBuf>,
) -> Running {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = TempDir::new("agent-pull");
    std::fs::write(dir.0.join("policy.rego"), policy).unwrap();
    let gate = PolicyGate::from_file(&dir.0.join("policy.rego")).unwrap();
    let config = AgentConfig {
        run_dir: dir.0.join("run"),
        registry: contrast_registry::ResolverOptions {
            insecure_registries: vec![registry.host()],
            docker_config_dir: Some(dir.0.join("no-docker-config")),
            ..contrast_registry::ResolverOptions::default()
        },
        puller_config,
        ..AgentConfig::default()
    };
    let address = format!("unix://{}", dir.0.join("agent.sock").display());
    let mut server = serve::server(&address, Agent::new(gate, config)).unwrap();
    server.start().await.unwrap();
    let client = ttrpc::r#async::Client::connect(&address).await.unwrap();
    Running {
        dir,
        server,
        agent: AgentServiceClient::new(client),
    }
}

fn from_json<T: serde::de::DeserializeOwned>(value: &Value) -> T {
    serde_json::from_value(value.clone()).unwrap()
}

fn status(result: ttrpc::Result<contrast_agent::proto::empty::Empty>) -> (Code, String) {
    match result {
        Ok(_) => (Code::OK, String::new()),
        Err(ttrpc::Error::RpcStatus(s)) => (s.code(), s.message.clone()),
        Err(other) => panic!("not a status: {other:?}"),
    }
}

impl Running {
    async fn stop(mut self) {
        self.server.shutdown().await.unwrap();
        let shm = self.dir.0.join("run/sandbox/shm");
        if shm.exists() {
            contrast_agent::mount::unmount(&shm);
        }
    }
}

async fn create_sandbox_and_pause(running: &Running, pod: &PodCase) {
    let ctx = || context::with_timeout(60_000_000_000);
    let sandbox: CreateSandboxRequest = from_json(pod.request("CreateSandboxRequest"));
    running.agent.create_sandbox(ctx(), &sandbox).await.unwrap();
    let pause: CreateContainerRequest = from_json(pod.nth_request("CreateContainerRequest", 0));
    let (code, message) = status(running.agent.create_container(ctx(), &pause).await);
    assert_eq!(code, Code::OK, "{message}");
}

/// The one-layer image pushed to a fresh registry as `repository`, its pod, and an agent
/// with the pod's policy that has created the sandbox and the pause container.
async fn pushed_pod(repository: &str) -> (Registry, PodCase, Running) {
    let registry = Registry::start(RegistrySetup::default());
    let work = tempfile::tempdir().unwrap();
    let image = LayeredImage::new(r#"{"Entrypoint":["/bin/app"]}"#, &[layer()]);
    let reference = image.push(&registry, work.path(), repository, "v1");
    let pod = pod(&reference, &image);
    let running = start(&pod.policy, &registry).await;
    create_sandbox_and_pause(&running, &pod).await;
    (registry, pod, running)
}

/// What the image's layer put into the container's root, if the root is the pulled one.
fn pulled_greeting(running: &Running, app: &CreateContainerRequest) -> Option<String> {
    let rootfs = running
        .dir
        .0
        .join("run")
        .join(&app.container_id)
        .join("rootfs");
    std::fs::read_to_string(rootfs.join("etc/greeting")).ok()
}

/// The app container's CreateContainer (the image pull), and its status.
async fn create_app(running: &Running, pod: &PodCase) -> (CreateContainerRequest, Code, String) {
    let app: CreateContainerRequest = from_json(pod.nth_request("CreateContainerRequest", 1));
    let (code, message) = status(
        running
            .agent
            .create_container(context::with_timeout(60_000_000_000), &app)
            .await,
    );
    (app, code, message)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_containers_root_is_pulled_by_digest_in_the_guest() {
    let (_registry, pod, running) = pushed_pod("guest/app").await;
    let (app, code, message) = create_app(&running, &pod).await;
    assert_eq!(code, Code::OK, "{message}");
    assert_eq!(
        pulled_greeting(&running, &app).as_deref(),
        Some("pulled in the guest\n")
    );
    assert_eq!(
        app.OCI.Root.Path,
        format!("/run/kata-containers/{}/rootfs", app.container_id)
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_changed_in_the_registry_leaves_no_root() {
    let registry = Registry::start(RegistrySetup::default());
    let work = tempfile::tempdir().unwrap();
    let image = LayeredImage::new(r#"{"Entrypoint":["/bin/app"]}"#, &[layer()]);
    let reference = image.push(&registry, work.path(), "guest/changed", "v1");
    let pod = pod(&reference, &image);
    // The registry's disk now holds other bytes for the layer (same length).
    let mut changed = image.layers[0].clone();
    let last = changed.len() - 1;
    changed[last] ^= 0xff;
    std::fs::write(registry.blob_path(&sha256(&image.layers[0])), &changed).unwrap();

    let running = start(&pod.policy, &registry).await;
    create_sandbox_and_pause(&running, &pod).await;
    let (app, code, message) = create_app(&running, &pod).await;
    assert_eq!(code, Code::INTERNAL, "{message}");
    assert!(message.contains("digest"), "{message}");
    assert!(
        !running.dir.0.join("run").join(&app.container_id).exists(),
        "nothing of the refused image stays"
    );
    running.stop().await;
}

/// A node config the guest's init could not take from its disk fails every pull with the
/// reason, rather than pulling anonymously as if the node had none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_node_config_fails_the_pull_with_its_reason() {
    let registry = Registry::start(RegistrySetup::default());
    let work = tempfile::tempdir().unwrap();
    let image = LayeredImage::new(r#"{"Entrypoint":["/bin/app"]}"#, &[layer()]);
    let reference = image.push(&registry, work.path(), "guest/config", "v1");
    let pod = pod(&reference, &image);
    let config = work.path().join("imagepuller.toml");
    std::fs::write(
        contrast_initdata::disk::imagepuller_error_path(&config),
        "/dev/vdc: the blob is not valid gzip",
    )
    .unwrap();
    let running = start_with(&pod.policy, &registry, Some(config)).await;
    create_sandbox_and_pause(&running, &pod).await;
    let (_, code, message) = create_app(&running, &pod).await;
    assert_eq!(code, Code::INTERNAL, "{message}");
    assert!(message.contains("not valid gzip"), "{message}");
    assert!(
        message.contains("could not take it from the runtime's disk"),
        "{message}"
    );
    running.stop().await;
}

/// A registry that accepts connections and never answers, and tells when one arrived.
fn hanging_registry() -> (String, std::sync::mpsc::Receiver<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let (arrived, arrival) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
            let _ = arrived.send(());
        }
    });
    (host, arrival)
}

/// While a container is being created (its pull in flight), its ID can be neither
/// removed nor created again: refused before the policy is asked, so the policy keeps
/// the container it allowed, and no second image can be pulled into the same bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_being_created_can_be_neither_removed_nor_created_again() {
    let registry = Registry::start(RegistrySetup::default());
    let (host, arrival) = hanging_registry();
    let digest = format!("sha256:{}", "ab".repeat(32));
    let reference = format!("{host}/guest/hangs@{digest}");
    let pod = single_container_pod(&reference, &digest, &["/bin/app"]);
    let running = start(&pod.policy, &registry).await;
    create_sandbox_and_pause(&running, &pod).await;

    let app: CreateContainerRequest = from_json(pod.nth_request("CreateContainerRequest", 1));
    let agent = running.agent.clone();
    let in_flight = {
        let app = app.clone();
        tokio::spawn(async move {
            agent
                .create_container(context::with_timeout(60_000_000_000), &app)
                .await
        })
    };
    // The pull reached the registry: the policy allowed the container.
    tokio::task::spawn_blocking(move || arrival.recv_timeout(std::time::Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the pull never reached the registry");

    let mut remove = contrast_agent::proto::agent::RemoveContainerRequest::new();
    remove.container_id = app.container_id.clone();
    let (code, message) = status(
        running
            .agent
            .remove_container(context::with_timeout(10_000_000_000), &remove)
            .await,
    );
    assert_eq!(code, Code::FAILED_PRECONDITION, "{message}");
    assert!(message.contains("being created"), "{message}");

    let (code, message) = status(
        running
            .agent
            .create_container(context::with_timeout(10_000_000_000), &app)
            .await,
    );
    assert_eq!(code, Code::ALREADY_EXISTS, "{message}");

    in_flight.abort();
    running.stop().await;
}

/// Only containerd's container-type key marks the pause container, the key the policy
/// reads: CRI-O's, which the policy does not check, cannot make the agent put the guest's
/// pause bundle in place of the approved image.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crio_s_container_type_key_does_not_make_a_workload_the_pause() {
    let (_registry, pod, running) = pushed_pod("guest/crio").await;

    let mut app: CreateContainerRequest = from_json(pod.nth_request("CreateContainerRequest", 1));
    let storage = app
        .storages
        .iter_mut()
        .find(|s| s.driver == "image_guest_pull")
        .unwrap();
    for option in &mut storage.driver_options {
        if let Some(json) = option.strip_prefix("image_guest_pull=") {
            let mut volume: Value = serde_json::from_str(json).unwrap();
            volume["metadata"]["io.kubernetes.cri-o.ContainerType"] = "sandbox".into();
            *option = format!("image_guest_pull={volume}");
        }
    }
    let (code, message) = status(
        running
            .agent
            .create_container(context::with_timeout(60_000_000_000), &app)
            .await,
    );
    assert_eq!(code, Code::OK, "{message}");
    assert_eq!(
        pulled_greeting(&running, &app).as_deref(),
        Some("pulled in the guest\n")
    );
    running.stop().await;
}
