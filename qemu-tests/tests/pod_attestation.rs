//! Pods as `contrast generate` makes them of plain ones, run by the agent: the Initializer
//! as the first init container (its image pulled by digest in the guest) attests through
//! configfs-tsm (the agent mounts configfs into workload containers, as Contrast's agent
//! does) to a Coordinator on the host, checking first that the initdata the agent mounts
//! is the launch's; the app reads the certificates it wrote to the pod's `/contrast`
//! volume. With a service-mesh annotation, the sidecar installs its redirect, lifts the
//! pod VM's default-deny rules and carries the app's plain connection to a mesh peer on
//! the host over mTLS; from the host (QEMU's port forwarding), only mTLS with a mesh
//! certificate reaches the app's port. Without a mesh, the Initializer lifts the
//! default-deny rules itself.
//! The host plays the Kata runtime, as in tests/agent.rs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

mod common;

use std::time::{Duration, Instant};

use common::peer::{Credentials, mesh_request, peer_on, plain_request};
use common::pod::*;
use common::{HostCoordinator, assert_mesh_certificate, host_coordinator};
use contrast_agent::proto::agent::{
    CreateContainerRequest, DestroySandboxRequest, ExecProcessRequest, ReadStreamRequest,
    SignalProcessRequest, WaitProcessRequest,
};
use contrast_agent::proto::agent_ttrpc::AgentServiceClient;
use contrast_kube_resources::mutate::{INITIALIZER_NAME, SERVICE_MESH_NAME};
use contrast_kube_resources::{
    InjectedImages, MutationOptions, emit_documents, for_each_workload, mutate, parse_documents,
};
use contrast_qemu_tests::{Console, profile_dir};
use contrast_testkit::{Deployment, PodCase, coordinator_trust_entry, sha256, workload_initdata};
use serde_json::json;
use x509_parser::prelude::{FromDer as _, X509Certificate};

/// The PATH of the images the test builds (iptables is in /usr/sbin).
const PATH: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";

/// The Initializer image's environment besides PATH: the simulated signature on
/// configfs-tsm, with the simulator's keys in the image (test-only), and a short retry
/// interval.
const INITIALIZER_ENV: [&str; 4] = [
    "CONTRAST_SIMULATED_TEE=snp-tsm",
    "CONTRAST_SIMULATOR_DIR=/sim",
    "CONTRAST_RETRY_INTERVAL=1",
    "NO_COLOR=1",
];

/// The app of the pod without a mesh: prints what the Initializer left in the volume.
const READ_CERTIFICATES: &str = "cat /contrast/tls-config/mesh-ca.pem; echo =====; \
                                 cat /contrast/tls-config/certChain.pem; echo =====; \
                                 stat -c %a /contrast/tls-config/key.pem";

/// The egress listener the mesh pod's app connects to.
const EGRESS_LISTEN: &str = "127.137.0.1:8081";

/// The registry on the host with the three images: the app (busybox), the Initializer
/// and the mesh sidecar (the test build's binaries, with iptables as the guest image has
/// it).
struct Images {
    base: AppRegistry,
    initializer: PushedImage,
    mesh: PushedImage,
}

impl Images {
    fn push() -> Images {
        let base = AppRegistry::start("pod-attestation");
        let (registry, work) = (&base.registry, &base.work);
        let profile = profile_dir().unwrap();
        let layer = LayerBuilder::new()
            .program(&profile.join("initializer"))
            .iptables()
            .luks_tools()
            .simulator_keys();
        let mut env = vec![PATH];
        env.extend(INITIALIZER_ENV);
        let initializer = PushedImage::push(
            registry,
            USER_NETWORK_HOST,
            work,
            "guest/initializer",
            layer.finish(),
            &env,
            &["/usr/bin/initializer"],
        );
        let mesh = PushedImage::push(
            registry,
            USER_NETWORK_HOST,
            work,
            "guest/service-mesh",
            LayerBuilder::new()
                .program(&profile.join("service-mesh"))
                .iptables()
                .busybox()
                .finish(),
            &[PATH, "NO_COLOR=1"],
            &["/usr/bin/service-mesh"],
        );
        Images {
            initializer,
            mesh,
            base,
        }
    }

    /// The pod `contrast generate` makes of a one-container Pod `app` with `annotations`
    /// whose app runs `script`; the Initializer dials the Coordinator on the host (QEMU's
    /// user network has no `coordinator-ready` Service).
    fn generated_pod(&self, annotations: &str, script: &str) -> PodCase {
        self.generated_pod_with(annotations, script, "")
    }

    /// [`Images::generated_pod`] with `extra` YAML lines right after the app's command:
    /// indented by four spaces they belong to the app's container, by two to the spec.
    fn generated_pod_with(&self, annotations: &str, script: &str, extra: &str) -> PodCase {
        let yaml = format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  namespace: default\n  \
             annotations: {{{annotations}}}\nspec:\n  runtimeClassName: contrast-cc\n  \
             containers:\n  - name: app\n    image: {}\n    command: [\"/bin/sh\", \"-c\", \
             {script:?}]\n{extra}",
            self.base.app.reference
        );
        let options = MutationOptions {
            runtime_handler: "contrast-cc-metal-qemu-snp-0123abcd".to_owned(),
            skip_initializer: false,
            skip_service_mesh: false,
            images: InjectedImages {
                initializer: self.initializer.reference.clone(),
                service_mesh: self.mesh.reference.clone(),
            },
            image_replacements: Default::default(),
        };
        let mut docs = parse_documents(&yaml).unwrap();
        for_each_workload(&mut docs, |mut w| mutate(&mut w, &options).map(|_| ())).unwrap();
        let mut pod = docs[0].to_json();
        let initializer = &mut pod["spec"]["initContainers"][0];
        assert_eq!(
            initializer["name"],
            INITIALIZER_NAME,
            "{}",
            emit_documents(&docs)
        );
        let env = initializer["env"].as_array_mut().unwrap();
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
                &self.base.app.reference: self.base.app.config(),
                &self.initializer.reference: self.initializer.config(),
                &self.mesh.reference: self.mesh.config(),
            },
        });
        contrast_testkit::pod_case_of(&doc, "the generated pod")
    }
}

/// Starts `container` and waits for it to exit: (exit code, stdout, stderr). One still
/// running after `limit` is killed, so that its output reaches the host.
async fn run_to_exit(
    agent: &AgentServiceClient,
    container: &CreateContainerRequest,
    limit: Duration,
) -> (i32, String, String) {
    start_container(agent, container).await;
    let id = &container.container_id;
    let guard = {
        let agent = agent.clone();
        let id = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            let mut kill = SignalProcessRequest::new();
            kill.container_id = id;
            kill.signal = 9;
            let _ = agent.signal_process(ctx(), &kill).await;
        })
    };
    let (stdout, stderr) = tokio::join!(read_all(agent, id, true), read_all(agent, id, false));
    let mut wait = WaitProcessRequest::new();
    wait.container_id = id.clone();
    let status = agent.wait_process(ctx(), &wait).await.unwrap().status;
    guard.abort();
    (status, stdout, stderr)
}

/// The startup probe the runtime execs in `container`, if it has one.
fn startup_probe(pod: &PodCase, container: &CreateContainerRequest) -> Option<ExecProcessRequest> {
    pod.requests
        .iter()
        .filter(|(kind, _)| kind == "ExecProcessRequest")
        .map(|(_, request)| from_json::<ExecProcessRequest>(request))
        .find(|e| e.container_id == container.container_id)
}

/// A started container's stdout and stderr, read until it exits.
fn read_output(agent: &AgentServiceClient, id: &str) -> tokio::task::JoinHandle<(String, String)> {
    let agent = agent.clone();
    let id = id.to_owned();
    tokio::spawn(
        async move { tokio::join!(read_all(&agent, &id, true), read_all(&agent, &id, false)) },
    )
}

/// Stops a running container with SIGTERM (SIGKILL after 60 s): (exit code, stdout,
/// stderr).
async fn stop(
    agent: &AgentServiceClient,
    id: &str,
    output: tokio::task::JoinHandle<(String, String)>,
) -> (i32, String, String) {
    let signal = |signal: u32| {
        let agent = agent.clone();
        let id = id.to_owned();
        async move {
            let mut request = SignalProcessRequest::new();
            request.container_id = id;
            request.signal = signal;
            let _ = agent.signal_process(ctx(), &request).await;
        }
    };
    signal(15).await;
    let guard = {
        let kill = signal(9);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            kill.await;
        })
    };
    let (stdout, stderr) = output.await.unwrap();
    let mut wait = WaitProcessRequest::new();
    wait.container_id = id.to_owned();
    let status = agent.wait_process(ctx(), &wait).await.unwrap().status;
    guard.abort();
    (status, stdout, stderr)
}

/// Runs `exec` (a startup probe) every second until it exits 0, as the kubelet does;
/// false after `tries`.
async fn probe_until_ready(
    agent: &AgentServiceClient,
    exec: &ExecProcessRequest,
    tries: u32,
) -> bool {
    for n in 0..tries {
        let mut attempt = exec.clone();
        attempt.exec_id = format!("{}-{n}", exec.exec_id);
        if agent.exec_process(ctx(), &attempt).await.is_ok() {
            let mut wait = WaitProcessRequest::new();
            wait.container_id = attempt.container_id.clone();
            wait.exec_id = attempt.exec_id.clone();
            if agent.wait_process(ctx(), &wait).await.unwrap().status == 0 {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    false
}

/// Each check of the host's by name, with the answer it got or why it got none.
type HostChecks = Vec<(&'static str, Result<String, String>)>;

/// An app that keeps serving: the host ports forwarded to it, and the host's checks,
/// which run once it has started (then the pod ends).
struct Serving {
    forwards: Vec<(u16, u16)>,
    checks: Box<dyn FnOnce() -> HostChecks + Send>,
}

/// What a run of the pod gave.
struct PodRun {
    initializer: (i32, String, String),
    /// The sidecar became ready (`None` without one).
    mesh_ready: Option<bool>,
    app: Option<(i32, String, String)>,
    /// What the host's checks found while the app served.
    host_checks: HostChecks,
    elapsed: Duration,
    console: Console,
    coordinator_log: String,
}

/// The pod's workload `app` in `deployment`'s manifest with initdata that names its
/// Coordinator; returns the initdata.
fn add_pod(deployment: &mut Deployment, pod: &PodCase) -> Vec<u8> {
    let initdata = workload_initdata(&pod.policy, &coordinator_trust_entry(&deployment.manifest));
    deployment.add_workload("app", initdata.clone());
    initdata
}

/// A pod VM launched with `initdata` (the Coordinator's manifest names it) and the
/// runtime's requests for `pod`: the Initializer, the mesh sidecar if the pod has one
/// (until its startup probe passes), then the app.
/// The host's side of a pod's run: the registry as the guest names it, the deployment
/// and its Coordinator, and the runtime the host's clients run on.
struct HostSide<'a> {
    guest_registry: &'a str,
    deployment: &'a Deployment,
    coordinator: &'a HostCoordinator,
    runtime: &'a tokio::runtime::Runtime,
    /// Disk images attached as the pod's block volumes.
    volumes: &'a [std::path::PathBuf],
}

fn run_pod(
    test: &str,
    pod: &PodCase,
    initdata: &[u8],
    host: &HostSide<'_>,
    serving: Option<Serving>,
) -> PodRun {
    let HostSide {
        guest_registry,
        deployment,
        coordinator,
        runtime,
        volumes,
    } = *host;
    let measurement = deployment.manifest.reference_values.snp[0]
        .trusted_measurement
        .0
        .clone();
    let mut vm = PodVm::launch(
        test,
        initdata,
        sha256(initdata),
        &Launch {
            registry: Some(guest_registry),
            measurement: Some(&measurement),
            forwards: serving
                .as_ref()
                .map(|s| s.forwards.clone())
                .unwrap_or_default(),
            volumes: volumes.to_vec(),
            ..Launch::default()
        },
    );
    let stream = vm.connect();
    let has_mesh = pod.requests.iter().any(|(kind, request)| {
        kind == "CreateContainerRequest"
            && request["OCI"]["Annotations"]["io.kubernetes.cri.container-name"]
                == SERVICE_MESH_NAME
    });
    let (initializer, mesh_ready, app, host_checks, elapsed) = runtime.block_on(async {
        let (agent, _) = clients(stream);
        let started = Instant::now();
        start_sandbox(&agent, pod).await;
        let init = container_request(pod, INITIALIZER_NAME);
        // With a secure-pv volume the Initializer is a sidecar: it holds the volume open
        // and its startup probe says when the app may start.
        let init_sidecar = match startup_probe(pod, &init) {
            Some(probe) => {
                start_container(&agent, &init).await;
                let output = read_output(&agent, &init.container_id);
                let ready = probe_until_ready(&agent, &probe, 240).await;
                Some((ready, output))
            }
            None => None,
        };
        let mut initializer = match &init_sidecar {
            Some((ready, _)) => (if *ready { 0 } else { -1 }, String::new(), String::new()),
            None => run_to_exit(&agent, &init, Duration::from_secs(240)).await,
        };
        let mut mesh_ready = None;
        if initializer.0 == 0 && has_mesh {
            let sidecar = container_request(pod, SERVICE_MESH_NAME);
            start_container(&agent, &sidecar).await;
            let probe = startup_probe(pod, &sidecar).expect("the sidecar's startup probe");
            mesh_ready = Some(probe_until_ready(&agent, &probe, 60).await);
        }
        let ready = initializer.0 == 0 && mesh_ready != Some(false);
        let app_container = container_request(pod, "app");
        let (app, host_checks) = match serving {
            Some(serving) if ready => {
                // A serving app: the host's checks run while it serves; its output so far
                // is what it printed before.
                start_container(&agent, &app_container).await;
                let checks = tokio::task::spawn_blocking(serving.checks).await.unwrap();
                let mut read = ReadStreamRequest::new();
                read.container_id = app_container.container_id.clone();
                read.len = 4096;
                let chunk = agent.read_stdout(ctx(), &read).await.unwrap();
                let stdout = String::from_utf8_lossy(&chunk.data).into_owned();
                (Some((0, stdout, String::new())), checks)
            }
            _ if ready => (
                Some(run_to_exit(&agent, &app_container, Duration::from_secs(120)).await),
                Vec::new(),
            ),
            _ => (None, Vec::new()),
        };
        let elapsed = started.elapsed();
        if let Some((ready, output)) = init_sidecar {
            // The kubelet stops a sidecar with SIGTERM when the pod ends: the Initializer
            // unmounts and closes the volume.
            let stopped = stop(&agent, &init.container_id, output).await;
            initializer = if ready {
                stopped
            } else {
                (-1, stopped.1, stopped.2)
            };
        }
        agent
            .destroy_sandbox(ctx(), &DestroySandboxRequest::new())
            .await
            .unwrap();
        (initializer, mesh_ready, app, host_checks, elapsed)
    });
    PodRun {
        initializer,
        mesh_ready,
        app,
        host_checks,
        elapsed,
        console: vm.finish(),
        coordinator_log: coordinator.process.log_text(),
    }
}

impl PodRun {
    /// The app's output, after checking that everything before it succeeded.
    fn app_stdout(&self) -> &str {
        let (status, _, log) = &self.initializer;
        assert_eq!(
            *status, 0,
            "the Initializer failed:\n{log}\n----- coordinator -----\n{}\n\
             ----- console -----\n{}",
            self.coordinator_log, self.console.text
        );
        // Its evidence came through the kernel's configfs-tsm in its container.
        assert!(log.contains("simulated-signature-tsm"), "{log}");
        assert_ne!(
            self.mesh_ready,
            Some(false),
            "the sidecar never became ready:\n{}",
            self.console.text
        );
        let (status, stdout, stderr) = self.app.as_ref().unwrap();
        assert_eq!(
            *status, 0,
            "the app failed: {stdout}\n{stderr}\n{}",
            self.console.text
        );
        self.console.expect_pass().unwrap();
        stdout
    }

    fn step(&self, key: &str) -> &str {
        self.console
            .step_value(key)
            .unwrap_or_else(|| panic!("no {key} in the console:\n{}", self.console.text))
    }
}

#[test]
fn the_initializer_container_attests_to_the_host_coordinator_and_the_app_reads_its_certificates() {
    let images = Images::push();
    let pod = images.generated_pod("", READ_CERTIFICATES);
    let mut deployment = Deployment::new(&[]);
    let initdata = add_pod(&mut deployment, &pod);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut coordinator = host_coordinator(&deployment, &runtime);
    let guest_registry = format!("10.0.2.2:{}", images.base.registry.port);
    let run = run_pod(
        "pod-attestation",
        &pod,
        &initdata,
        &HostSide {
            guest_registry: &guest_registry,
            deployment: &deployment,
            coordinator: &coordinator,
            runtime: &runtime,
            volumes: &[],
        },
        None,
    );
    let stdout = run.app_stdout();
    let parts: Vec<&str> = stdout.split("=====\n").collect();
    let [mesh_ca, chain, key_mode] = parts.as_slice() else {
        panic!("the app's output: {stdout}");
    };
    assert_eq!(key_mode.trim(), "400", "key.pem is owner-read-only");
    assert_mesh_certificate(mesh_ca, chain, "app");
    // The mesh CA is the Coordinator's: what it hands a workload of this policy.
    let (_, host_side) = runtime
        .block_on(contrast_testkit::new_mesh_cert(
            &coordinator.process.mesh_addr(),
            deployment.issuer("app"),
        ))
        .unwrap();
    coordinator.process.kill();
    assert_eq!(
        mesh_ca.as_bytes(),
        host_side.mesh_ca_cert.as_slice(),
        "the pod got another mesh CA than the Coordinator's"
    );
    // Without a mesh, the Initializer lifted the default-deny rules the pod VM started
    // with.
    assert!(
        run.console.contains("default-deny rules installed"),
        "{}",
        run.console.text
    );
    assert!(
        run.initializer
            .2
            .contains("default-deny rules lifted ipv4=Removed ipv6=Some(Removed)"),
        "{}",
        run.initializer.2
    );
    assert_eq!(run.step("default-deny-iptables"), "absent");
    assert_eq!(run.step("default-deny-ip6tables"), "absent");
    eprintln!(
        "pod-attestation: CreateSandbox → Initializer done → app exited in {:?} (TCG)",
        run.elapsed
    );
}

/// The host's checks of the mesh pod's ingress through the forwarded `addr`: an mTLS
/// request with a mesh certificate (retried while the pod comes up) reaches the app;
/// then plain TCP and TLS without a client certificate do not.
fn ingress_checks(addr: String, mesh_ca_pem: String, client: Credentials) -> HostChecks {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mtls = loop {
        let answer = mesh_request(&addr, "app", &mesh_ca_pem, Some(&client), "hello over mtls");
        if answer.as_ref().is_ok_and(|a| a.starts_with("app got")) || Instant::now() > deadline {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    vec![
        ("mtls", mtls),
        ("plain", plain_request(&addr, "hello in plain text")),
        (
            "no-client-certificate",
            mesh_request(
                &addr,
                "app",
                &mesh_ca_pem,
                None,
                "hello without a certificate",
            ),
        ),
    ]
}

#[test]
fn the_mesh_sidecar_carries_the_apps_connection_to_a_host_peer_over_mtls() {
    let images = Images::push();
    let mut deployment = Deployment::new(&[]);
    // A mesh peer on the host with a certificate from the same Coordinator.
    let trust = coordinator_trust_entry(&deployment.manifest);
    deployment.add_workload(
        "peer",
        workload_initdata("package agent_policy\n# the host peer\n", &trust),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // The peer's port is in the pod's annotation, so it listens before the policy is made.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer_port = listener.local_addr().unwrap().port();
    let egress = format!("peer#{EGRESS_LISTEN}#10.0.2.2:{peer_port}");
    let (host, port) = EGRESS_LISTEN.split_once(':').unwrap();
    // The app asks the peer through its egress, then serves its port 8080 (through the
    // sidecar's ingress, which requires a mesh client certificate).
    let pod = images.generated_pod(
        &format!("contrast.edgeless.systems/servicemesh-egress: {egress:?}"),
        &format!(
            "echo hello through the mesh | busybox nc {host} {port}; \
             busybox nc -ll -p 8080 -e /bin/sh -c 'read line; echo \"app got $line\"'"
        ),
    );
    let guest_registry = format!("10.0.2.2:{}", images.base.registry.port);
    let initdata = add_pod(&mut deployment, &pod);
    let mut coordinator = host_coordinator(&deployment, &runtime);
    let (key_pem, response) = runtime
        .block_on(contrast_testkit::new_mesh_cert(
            &coordinator.process.mesh_addr(),
            deployment.issuer("peer"),
        ))
        .unwrap();
    let credentials = Credentials {
        mesh_ca_pem: String::from_utf8(response.mesh_ca_cert).unwrap(),
        chain_pem: String::from_utf8(response.cert_chain).unwrap(),
        key_pem,
    };
    let (_, seen) = runtime.block_on(peer_on(
        listener,
        credentials.server_config(),
        "host peer".to_owned(),
    ));
    let ingress_port = contrast_testkit::registry::free_port();
    let client = Credentials {
        mesh_ca_pem: credentials.mesh_ca_pem.clone(),
        chain_pem: credentials.chain_pem.clone(),
        key_pem: credentials.key_pem.clone(),
    };
    let mesh_ca_pem = credentials.mesh_ca_pem.clone();
    let run = run_pod(
        "pod-mesh",
        &pod,
        &initdata,
        &HostSide {
            guest_registry: &guest_registry,
            deployment: &deployment,
            coordinator: &coordinator,
            runtime: &runtime,
            volumes: &[],
        },
        Some(Serving {
            forwards: vec![(ingress_port, 8080)],
            checks: Box::new(move || {
                ingress_checks(format!("127.0.0.1:{ingress_port}"), mesh_ca_pem, client)
            }),
        }),
    );
    coordinator.process.kill();
    let stdout = run.app_stdout();
    assert_eq!(
        stdout.trim(),
        "host peer got hello through the mesh",
        "{:?}\n{}",
        seen.lock().unwrap(),
        run.console.text
    );
    // The peer saw the app's mesh certificate.
    let seen = seen.lock().unwrap();
    let (_, leaf) = X509Certificate::from_der(&seen.client_leaves[0]).unwrap();
    let sans = format!("{:?}", leaf.subject_alternative_name());
    assert!(sans.contains("app"), "{sans}");
    // Inbound: only mTLS with a mesh certificate reaches the app.
    let checks: std::collections::BTreeMap<_, _> = run.host_checks.iter().cloned().collect();
    assert_eq!(
        checks["mtls"],
        Ok("app got hello over mtls".to_owned()),
        "{checks:?}\n{}",
        run.console.text
    );
    for refused in ["plain", "no-client-certificate"] {
        assert!(
            !format!("{:?}", checks[refused]).contains("app got"),
            "{refused}: {checks:?}"
        );
    }
    // The sidecar's rules replaced the default-deny ones: TPROXY for inbound TCP.
    assert_eq!(run.step("default-deny-iptables"), "absent");
    assert_eq!(run.step("default-deny-ip6tables"), "absent");
    assert_eq!(run.step("mesh-redirect-iptables"), "1");
    assert_eq!(run.step("mesh-redirect-ip6tables"), "1");
    eprintln!(
        "pod-mesh: CreateSandbox → Initializer → sidecar ready → app through the mesh, \
         ingress checked, in {:?} (TCG)",
        run.elapsed
    );
}

/// What the secure-pv pod's app does: on the first boot it writes the marker to the
/// decrypted volume, on the second it reads it back; then it shows what is mounted there.
const SECURE_PV_APP: &str = "if [ -f /state/data ]; then echo \"found $(cat /state/data)\"; \
                             else echo secure-pv-marker-5d1f > /state/data && sync \
                             && echo written; fi; grep ' /state ' /proc/mounts";

/// A pod with `contrast.edgeless.systems/secure-pv`: `contrast generate` makes the
/// Initializer a privileged sidecar with the pod's block volume. In its container it
/// formats the volume with LUKS2 (dm-crypt over dm-integrity, device-mapper through the
/// device cgroup rules the agent gives a CAP_SYS_ADMIN container) keyed by the workload
/// secret the Coordinator derives, opens and mounts it at /state (Bidirectional), passes
/// its startup probe, and on SIGTERM unmounts and closes it. The app sees the mount
/// through the pod's emptyDir (HostToContainer). What it writes on the first boot it
/// reads on the second, from a second VM with the same disk and Coordinator; the disk
/// never holds it in plain text.
#[test]
fn a_secure_pv_volume_keeps_the_apps_data_encrypted_across_two_boots() {
    let images = Images::push();
    let pod = images.generated_pod_with(
        "contrast.edgeless.systems/secure-pv: \"disk:state\"",
        SECURE_PV_APP,
        "    volumeMounts:\n    - name: state\n      mountPath: /state\n  volumes:\n  \
         - name: disk\n    persistentVolumeClaim:\n      claimName: disk\n",
    );
    let mut deployment = Deployment::new(&[]);
    let initdata = add_pod(&mut deployment, &pod);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut coordinator = host_coordinator(&deployment, &runtime);
    let guest_registry = format!("10.0.2.2:{}", images.base.registry.port);
    // 64 MiB: LUKS2 with dm-integrity and an ext4 journal fit.
    let disk = images.base.work.join("secure-pv.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let volumes = [disk.clone()];
    let host = HostSide {
        guest_registry: &guest_registry,
        deployment: &deployment,
        coordinator: &coordinator,
        runtime: &runtime,
        volumes: &volumes,
    };
    let boots = [
        run_pod("pod-secure-pv-1", &pod, &initdata, &host, None),
        run_pod("pod-secure-pv-2", &pod, &initdata, &host, None),
    ];
    coordinator.process.kill();
    for (boot, (formatted, app)) in boots.iter().zip([
        ("formatted=true", "written"),
        ("formatted=false", "found secure-pv-marker-5d1f"),
    ]) {
        let stdout = boot.app_stdout();
        let (status, _, log) = &boot.initializer;
        assert!(
            stdout.starts_with(&format!("{app}\n/dev/mapper/")),
            "{stdout}\n{log}\n{}",
            boot.console.text
        );
        let ready = log
            .lines()
            .find(|l| l.contains("secure mount ready"))
            .unwrap_or_else(|| panic!("no secure mount:\n{log}"));
        assert!(ready.contains(formatted), "{ready}");
        assert_eq!(*status, 0, "{log}");
        assert!(
            log.contains("encrypted volume unmounted and closed"),
            "{log}"
        );
        assert!(
            boot.console
                .contains("device-mapper allowed: the container has CAP_SYS_ADMIN"),
            "{}",
            boot.console.text
        );
    }
    let bytes = std::fs::read(&disk).unwrap();
    assert_eq!(&bytes[..6], b"LUKS\xba\xbe", "the volume is LUKS2");
    assert!(
        !bytes.windows(21).any(|w| w == b"secure-pv-marker-5d1f"),
        "the marker is on the disk in plain text"
    );
    eprintln!(
        "pod-secure-pv: first boot (format) {:?}, second boot (open) {:?} (TCG)",
        boots[0].elapsed, boots[1].elapsed
    );
}
