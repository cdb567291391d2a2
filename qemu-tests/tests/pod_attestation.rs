//! The Initializer as `contrast generate` injects it, running as the pod's first init
//! container under the agent: its image is pulled by digest in the guest, it attests
//! through configfs-tsm (the agent mounts configfs into workload containers, as Contrast's
//! agent does) to a Coordinator on the host, checking first that the initdata the agent
//! mounts is the launch's; the app container then reads the certificates it wrote to the
//! pod's shared `/contrast` volume. The host plays the Kata runtime, as in tests/agent.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::Instant;

use common::pod::*;
use common::{HostCoordinator, assert_mesh_certificate, host_coordinator};
use contrast_agent::proto::agent::{
    CreateContainerRequest, DestroySandboxRequest, SignalProcessRequest, WaitProcessRequest,
};
use contrast_agent::proto::agent_ttrpc::AgentServiceClient;
use contrast_kube_resources::{
    InjectedImages, MutationOptions, emit_documents, for_each_workload, mutate, parse_documents,
};
use contrast_qemu_tests::{profile_dir, tempdir};
use contrast_testkit::registry::{LayeredImage, Registry, RegistrySetup};
use contrast_testkit::{Deployment, coordinator_trust_entry, sha256, workload_initdata};
use serde_json::{Value, json};

/// The Initializer image's environment: the simulated signature on configfs-tsm, with the
/// simulator's keys in the image (test-only), and a short retry interval.
const INITIALIZER_ENV: [&str; 5] = [
    "PATH=/usr/bin:/bin",
    "CONTRAST_SIMULATED_TEE=snp-tsm",
    "CONTRAST_SIMULATOR_DIR=/sim",
    "CONTRAST_RETRY_INTERVAL=1",
    "NO_COLOR=1",
];

/// The app: prints what the Initializer left in the shared volume.
const APP_SCRIPT: &str = "cat /contrast/tls-config/mesh-ca.pem; echo =====; \
                          cat /contrast/tls-config/certChain.pem; echo =====; \
                          stat -c %a /contrast/tls-config/key.pem";

/// The pod `contrast generate` makes of a one-container Pod running `app_image`, with the
/// Initializer from `initializer_image`.
fn generated_pod(app_image: &str, initializer_image: &str) -> Value {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  namespace: default\nspec:\n  \
         runtimeClassName: contrast-cc\n  containers:\n  - name: app\n    image: {app_image}\n    \
         command: [\"/bin/sh\", \"-c\", {APP_SCRIPT:?}]\n"
    );
    let options = MutationOptions {
        runtime_handler: "contrast-cc-metal-qemu-snp-0123abcd".to_owned(),
        skip_initializer: false,
        skip_service_mesh: false,
        images: InjectedImages {
            initializer: initializer_image.to_owned(),
            service_mesh: "unused.test/mesh@sha256:00".to_owned(),
        },
        image_replacements: Default::default(),
    };
    let mut docs = parse_documents(&yaml).unwrap();
    for_each_workload(&mut docs, |mut w| mutate(&mut w, &options).map(|_| ())).unwrap();
    let pod = docs[0].to_json();
    assert_eq!(
        pod["spec"]["initContainers"][0]["name"],
        contrast_kube_resources::mutate::INITIALIZER_NAME,
        "{}",
        emit_documents(&docs)
    );
    pod
}

fn image_config(digest: &str, env: &[&str], entrypoint: &[&str]) -> Value {
    json!({
        "digest": digest,
        "env": env,
        "entrypoint": entrypoint,
        "cmd": [],
        "working_dir": "",
        "user": "",
        "volumes": [],
    })
}

/// Starts `container` and waits for it to exit: (exit code, stdout, stderr).
async fn run_to_exit(
    agent: &AgentServiceClient,
    container: &CreateContainerRequest,
) -> (i32, String, String) {
    start_container(agent, container).await;
    let id = &container.container_id;
    let (stdout, stderr) = tokio::join!(read_all(agent, id, true), read_all(agent, id, false));
    let mut wait = WaitProcessRequest::new();
    wait.container_id = id.clone();
    let status = agent.wait_process(ctx(), &wait).await.unwrap().status;
    (status, stdout, stderr)
}

#[test]
fn the_initializer_container_attests_to_the_host_coordinator_and_the_app_reads_its_certificates() {
    let registry = Registry::start(RegistrySetup::default());
    let work = tempdir("pod-attestation-layout").unwrap();
    let guest_registry = format!("10.0.2.2:{}", registry.port);

    // The app's image and the Initializer's (the test build's binary, with the simulator).
    let app = LayeredImage::new(r#"{"Entrypoint":["/bin/sh"]}"#, &[busybox_layer()]);
    app.push(&registry, &work, "guest/busybox", "v1");
    let app_ref = format!("{guest_registry}/guest/busybox@{}", app.digest());
    let simulator = contrast_testkit::shared_simulator_dir();
    let keys: Vec<(String, Vec<u8>, u32)> = std::fs::read_dir(&simulator)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "p8"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (format!("sim/{name}"), std::fs::read(&p).unwrap(), 0o600)
        })
        .collect();
    let layer = program_layer(&[profile_dir().unwrap().join("initializer")], &keys);
    let initializer = LayeredImage::new(
        &json!({"Env": INITIALIZER_ENV, "Entrypoint": ["/usr/bin/initializer"]}).to_string(),
        &[layer],
    );
    initializer.push(&registry, &work, "guest/initializer", "v1");
    let initializer_ref = format!(
        "{guest_registry}/guest/initializer@{}",
        initializer.digest()
    );

    // The pod as generate writes it; in QEMU's user network the Coordinator is the host.
    let mut pod = generated_pod(&app_ref, &initializer_ref);
    let env = pod["spec"]["initContainers"][0]["env"]
        .as_array_mut()
        .unwrap();
    let host = env
        .iter_mut()
        .find(|e| e["name"] == "COORDINATOR_HOST")
        .unwrap();
    host["value"] = json!("10.0.2.2");
    let doc = json!({
        "name": "app",
        "namespace": "default",
        "spec": pod["spec"],
        "images": {
            &app_ref: image_config(&app.digest(), &["PATH=/usr/bin:/bin"], &["/bin/sh"]),
            &initializer_ref: image_config(
                &initializer.digest(),
                &INITIALIZER_ENV,
                &["/usr/bin/initializer"],
            ),
        },
    });
    let pod = contrast_testkit::pod_case_of(&doc, "the generated pod");

    // The manifest names the pod's initdata, which names the Coordinator.
    let mut deployment = Deployment::new(&[]);
    let initdata = workload_initdata(&pod.policy, &coordinator_trust_entry(&deployment.manifest));
    deployment.add_workload("app", initdata.clone());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let HostCoordinator {
        process: mut coordinator,
        store: _store,
    } = host_coordinator(&deployment, &runtime);
    let measurement = deployment.manifest.reference_values.snp[0]
        .trusted_measurement
        .0
        .clone();

    let mut vm = PodVm::launch(
        "pod-attestation",
        &initdata,
        sha256(&initdata),
        &Launch {
            registry: Some(&guest_registry),
            measurement: Some(&measurement),
        },
    );
    let stream = vm.connect();
    let (initializer_run, app_run, elapsed) = runtime.block_on(async {
        let (agent, _) = clients(stream);
        let started = Instant::now();
        start_sandbox(&agent, &pod).await;

        let init = container_request(&pod, contrast_kube_resources::mutate::INITIALIZER_NAME);
        // The Initializer retries until it is done; a stuck one is ended so that its log
        // reaches the host.
        let guard = {
            let agent = agent.clone();
            let id = init.container_id.clone();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_secs(240)).await;
                let mut kill = SignalProcessRequest::new();
                kill.container_id = id;
                kill.signal = 9;
                let _ = agent.signal_process(ctx(), &kill).await;
            })
        };
        let initializer_run = run_to_exit(&agent, &init).await;
        guard.abort();
        let app_run = if initializer_run.0 == 0 {
            Some(run_to_exit(&agent, &container_request(&pod, "app")).await)
        } else {
            None
        };
        let elapsed = started.elapsed();
        agent
            .destroy_sandbox(ctx(), &DestroySandboxRequest::new())
            .await
            .unwrap();
        (initializer_run, app_run, elapsed)
    });
    let console = vm.finish();
    let coordinator_log = coordinator.log_text();
    let _ = std::fs::remove_dir_all(&work);
    let (status, _, initializer_log) = &initializer_run;
    assert_eq!(
        *status, 0,
        "the Initializer failed:\n{initializer_log}\n----- coordinator -----\n{coordinator_log}\n\
         ----- console -----\n{}",
        console.text
    );
    // Its evidence came through the kernel's configfs-tsm in its container.
    assert!(
        initializer_log.contains("simulated-signature-tsm"),
        "{initializer_log}"
    );
    let (status, stdout, stderr) = app_run.unwrap();
    assert_eq!(status, 0, "the app failed: {stderr}\n{}", console.text);
    let parts: Vec<&str> = stdout.split("=====\n").collect();
    let [mesh_ca, chain, key_mode] = parts.as_slice() else {
        panic!("the app's output: {stdout}");
    };
    assert_eq!(key_mode.trim(), "400", "key.pem is owner-read-only");
    assert_mesh_certificate(mesh_ca, chain, "app");
    // The mesh CA is the Coordinator's: what it hands a workload of this policy.
    let (_, host_side) = runtime
        .block_on(contrast_testkit::new_mesh_cert(
            &coordinator.mesh_addr(),
            deployment.issuer("app"),
        ))
        .unwrap();
    coordinator.kill();
    assert_eq!(
        mesh_ca.as_bytes(),
        host_side.mesh_ca_cert.as_slice(),
        "the pod got another mesh CA than the Coordinator's"
    );
    console.expect_pass().unwrap();
    eprintln!(
        "pod-attestation: CreateSandbox → Initializer done → app exited in {elapsed:?} (TCG)"
    );
}
