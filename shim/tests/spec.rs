//! The cross-check: the requests the shim makes from the bundles containerd 1.6's CRI
//! writes for a pod must be allowed by the policy `contrast generate` makes for that pod,
//! decided in order by one policy engine as the agent holds it for a sandbox.
//!
//! The bundles (`config.json`) are written as containerd 1.6 writes them for a pod
//! sandbox (`sandboxContainerSpec`) and a container (`containerSpec` with the kubelet's
//! mounts, masked paths and environment); the host files they bind-mount are real files
//! in a temporary directory, laid out as kubelet and containerd lay them out.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use contrast_agent_protocol::proto::agent::CopyFileRequest;
use contrast_policy::{AgentPolicy, ImageConfig, PodInput};
use contrast_shim::spec::{
    ContainerKind, SandboxSettings, container_requests, create_sandbox_request, exec_request,
};
use serde_json::{Value, json};

const IMAGE: &str = "docker.io/library/busybox@sha256:2919d0172f7524b2d8df9e50066a682669e6d170ac0f6a49676d54358fe970b5";
const DIGEST: &str = "sha256:2919d0172f7524b2d8df9e50066a682669e6d170ac0f6a49676d54358fe970b5";
const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const POD_UID: &str = "7d3c2a1b-0f4e-4c5d-9a8b-1c2d3e4f5a6b";
const NETNS: &str = "/var/run/netns/cni-1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718";
const CGROUP_PARENT: &str = "kubepods-besteffort-pod7d3c2a1b_0f4e_4c5d_9a8b_1c2d3e4f5a6b.slice";

/// containerd's default capabilities of an unprivileged container (`oci.defaultUnixCaps`).
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// The pod: one busybox container with an exec readiness probe and a ConfigMap volume;
/// the service account token is mounted by default.
fn pod(share_pid: bool) -> Value {
    json!({
        "runtimeClassName": "contrast-cc-metal-qemu-snp-0123abcd",
        "shareProcessNamespace": share_pid,
        "containers": [{
            "name": "app",
            "image": IMAGE,
            "command": ["sh", "-c", "touch /tmp/ready && sleep inf"],
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/config"}],
        }],
        "volumes": [{"name": "config", "configMap": {"name": "app-config"}}],
    })
}

fn policy(share_pid: bool) -> String {
    policy_for(&pod(share_pid))
}

fn policy_for(spec: &Value) -> String {
    let labels = BTreeMap::new();
    let images = BTreeMap::from([(
        IMAGE.to_owned(),
        ImageConfig {
            digest: DIGEST.to_owned(),
            env: vec![PATH_ENV.to_owned()],
            cmd: vec!["sh".to_owned()],
            ..ImageConfig::default()
        },
    )]);
    contrast_policy::policy_rego(&PodInput {
        name: "app",
        generate_name: false,
        namespace: "default",
        pod_spec: spec,
        labels: &labels,
        runtime: contrast_platforms::Platform::MetalQemuSnp.kata_runtime(),
        images: &images,
        config_maps: &[],
        secrets: &[],
    })
    .expect("generating the pod's policy")
}

/// The host files kubelet and containerd create for the pod.
struct Host {
    _dir: tempfile::TempDir,
    sandbox_dir: PathBuf,
    pod_dir: PathBuf,
    termination_log: PathBuf,
    config_volume: PathBuf,
    token_volume: PathBuf,
}

fn write(path: &Path, contents: &str) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("creating a directory");
    std::fs::write(path, contents).expect("writing a host file");
}

/// An atomic-writer volume as kubelet writes ConfigMap, Secret and projected volumes: the
/// files in `..<timestamp>/`, `..data` pointing at it, and a link per key.
fn atomic_volume(dir: &Path, files: &[(&str, &str)]) {
    let stamp = "..2026_12_06_14_00_00.123456789";
    for (name, contents) in files {
        write(&dir.join(stamp).join(name), contents);
        std::os::unix::fs::symlink(format!("..data/{name}"), dir.join(name))
            .expect("linking a key");
    }
    std::os::unix::fs::symlink(stamp, dir.join("..data")).expect("linking ..data");
}

fn host(sandbox_id: &str) -> Host {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let sandbox_dir = dir
        .path()
        .join("var/lib/containerd/io.containerd.grpc.v1.cri/sandboxes")
        .join(sandbox_id);
    write(&sandbox_dir.join("hostname"), "app\n");
    write(
        &sandbox_dir.join("resolv.conf"),
        "search default.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n",
    );
    std::fs::create_dir_all(sandbox_dir.join("shm")).expect("creating the shm directory");
    let pod_dir = dir.path().join("var/lib/kubelet/pods").join(POD_UID);
    write(
        &pod_dir.join("etc-hosts"),
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n10.244.0.7\tapp\n",
    );
    let termination_log = pod_dir.join("containers/app/5e1f0a3c");
    write(&termination_log, "");
    let config_volume = pod_dir.join("volumes/kubernetes.io~configmap/config");
    atomic_volume(
        &config_volume,
        &[("app.conf", "listen = 8080\n"), ("mode", "test")],
    );
    let token_volume = pod_dir.join("volumes/kubernetes.io~projected/kube-api-access-x7k2p");
    atomic_volume(
        &token_volume,
        &[
            (
                "ca.crt",
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            ),
            ("namespace", "default"),
            ("token", "eyJhbGciOiJSUzI1NiJ9.e30.c2ln"),
        ],
    );
    Host {
        _dir: dir,
        sandbox_dir,
        pod_dir,
        termination_log,
        config_volume,
        token_volume,
    }
}

fn path(p: &Path) -> String {
    p.to_str().expect("a UTF-8 path").to_owned()
}

/// The mounts of containerd's default spec (`oci.defaultMounts`) without `/run`
/// (`WithoutRunMount`) and without the `/dev/shm` tmpfs the CRI replaces.
fn default_mounts() -> Vec<Value> {
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ]
}

/// containerd 1.6's `sandboxContainerSpec` for the pod.
fn pause_config(host: &Host, sandbox_id: &str) -> Value {
    let mut mounts = default_mounts();
    // The pause container keeps the default spec's /dev/shm tmpfs before the sandbox's
    // bind (seen in containerd 1.6.20's bundles through the shim).
    mounts.insert(
        3,
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    );
    mounts.push(json!({"destination": "/dev/shm", "type": "bind", "source": path(&host.sandbox_dir.join("shm")), "options": ["rbind", "ro"]}));
    mounts.push(json!({"destination": "/etc/resolv.conf", "type": "bind", "source": path(&host.sandbox_dir.join("resolv.conf")), "options": ["rbind", "ro"]}));
    json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 65535, "gid": 65535},
            "args": ["/pause"],
            "env": [PATH_ENV],
            "cwd": "/",
            "capabilities": {"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS},
            "noNewPrivileges": true,
            "oomScoreAdj": -998,
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "app",
        "mounts": mounts,
        "annotations": {
            "io.kubernetes.cri.container-type": "sandbox",
            "io.kubernetes.cri.sandbox-id": sandbox_id,
            "io.kubernetes.cri.sandbox-name": "app",
            "io.kubernetes.cri.sandbox-namespace": "default",
            "io.kubernetes.cri.sandbox-log-directory": format!("/var/log/pods/default_app_{POD_UID}"),
            "io.kubernetes.cri.sandbox-cpu-period": "100000",
            "io.kubernetes.cri.sandbox-cpu-quota": "0",
            "io.kubernetes.cri.sandbox-cpu-shares": "2",
            "io.kubernetes.cri.sandbox-memory": "0",
            // The pod's initdata, passed through by the installer's `pod_annotations`
            // (`io.katacontainers.*`); the runtime removes it.
            "io.katacontainers.config.hypervisor.cc_init_data": "H4sIAAAAAAAA/yrJSCxRKMnILFYAIqVchZLU4hI9BQA=",
        },
        "linux": {
            "sysctl": {
                "net.ipv4.ip_unprivileged_port_start": "0",
                "net.ipv4.ping_group_range": "0 2147483647",
            },
            "resources": {
                "devices": [{"allow": false, "access": "rwm"}],
                "cpu": {"shares": 2},
            },
            "cgroupsPath": format!("{CGROUP_PARENT}:cri-containerd:{sandbox_id}"),
            "namespaces": [
                {"type": "pid"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "network", "path": NETNS},
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    })
}

/// The app container's process as containerd 1.6's `containerSpec` writes it.
fn app_process() -> Value {
    json!({
        "user": {"uid": 0, "gid": 0, "additionalGids": [0]},
        "args": ["sh", "-c", "touch /tmp/ready && sleep inf"],
        "env": [
            "HOSTNAME=app",
            PATH_ENV,
            "KUBERNETES_SERVICE_HOST=10.96.0.1",
            "KUBERNETES_SERVICE_PORT=443",
            "KUBERNETES_SERVICE_PORT_HTTPS=443",
            "KUBERNETES_PORT=tcp://10.96.0.1:443",
            "KUBERNETES_PORT_443_TCP=tcp://10.96.0.1:443",
            "KUBERNETES_PORT_443_TCP_PROTO=tcp",
            "KUBERNETES_PORT_443_TCP_PORT=443",
            "KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1",
        ],
        "cwd": "/",
        "capabilities": {"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS},
        "apparmorProfile": "cri-containerd.apparmor.d",
        "oomScoreAdj": 1000,
    })
}

/// containerd 1.6's `containerSpec` for the app container: the default mounts, the
/// CRI's cgroup mount, containerd's hostname/resolv.conf/shm mounts and kubelet's
/// mounts (`rbind`, `rprivate`, `ro`/`rw`), sorted by depth as containerd sorts them.
fn app_config(host: &Host, sandbox_id: &str, container_id: &str, share_pid: bool) -> Value {
    let bind = |destination: &str, source: String, read_only: bool| {
        json!({
            "destination": destination,
            "type": "bind",
            "source": source,
            "options": ["rbind", "rprivate", if read_only { "ro" } else { "rw" }],
        })
    };
    let mut mounts = default_mounts();
    mounts.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}));
    mounts.extend([
        bind(
            "/etc/hostname",
            path(&host.sandbox_dir.join("hostname")),
            false,
        ),
        bind(
            "/etc/resolv.conf",
            path(&host.sandbox_dir.join("resolv.conf")),
            false,
        ),
        bind("/dev/shm", path(&host.sandbox_dir.join("shm")), false),
        bind("/etc/config", path(&host.config_volume), true),
        bind("/etc/hosts", path(&host.pod_dir.join("etc-hosts")), false),
        bind("/dev/termination-log", path(&host.termination_log), false),
        bind(
            "/var/run/secrets/kubernetes.io/serviceaccount",
            path(&host.token_volume),
            true,
        ),
    ]);
    // A pod that shares its PID namespace: the container joins the pause's.
    let pid = if share_pid {
        json!({"type": "pid", "path": "/proc/4242/ns/pid"})
    } else {
        json!({"type": "pid"})
    };
    json!({
        "ociVersion": "1.0.2-dev",
        "process": app_process(),
        "root": {"path": "rootfs"},
        "mounts": mounts,
        "annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": "app",
            "io.kubernetes.cri.image-name": IMAGE,
            "io.kubernetes.cri.sandbox-id": sandbox_id,
            "io.kubernetes.cri.sandbox-name": "app",
            "io.kubernetes.cri.sandbox-namespace": "default",
        },
        "linux": {
            "resources": {
                "devices": [{"allow": false, "access": "rwm"}],
                "memory": {},
                "cpu": {"shares": 2, "period": 100000},
                // kubelet names every page size of the node, 0 unless requested.
                "hugepageLimits": [{"pageSize": "2MB", "limit": 0}, {"pageSize": "1GB", "limit": 0}],
            },
            "cgroupsPath": format!("{CGROUP_PARENT}:cri-containerd:{container_id}"),
            "namespaces": [
                pid,
                {"type": "ipc", "path": "/proc/4242/ns/ipc"},
                {"type": "uts", "path": "/proc/4242/ns/uts"},
                {"type": "mount"},
                {"type": "network", "path": NETNS},
                {"type": "cgroup"},
            ],
            // kubelet's defaults (pkg/securitycontext/util.go).
            "maskedPaths": [
                "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap",
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
            "seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"], "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]},
        },
    })
}

/// One engine deciding the sandbox's requests in order, as the agent does.
struct Agent {
    policy: AgentPolicy,
    refused: Vec<String>,
}

impl Agent {
    fn decide(&mut self, name: &str, input: &Value) {
        let evaluation = self.policy.decide(name, input).expect("evaluating");
        if !evaluation.allowed {
            self.refused
                .push(format!("{name}: {}", evaluation.prints.join(" ")));
        }
    }

    fn request<R: serde::Serialize>(&mut self, name: &str, request: &R) {
        let input = serde_json::to_value(request).expect("serialising a request");
        self.decide(name, &input);
    }

    fn copy(&mut self, request: &CopyFileRequest) {
        let input = contrast_agent_protocol::policy_input::copy_file_input(request)
            .expect("a policy input");
        self.decide("CopyFileRequest", &input);
    }
}

/// An agent whose sandbox has its pause container (`pause`) created under `policy`.
fn with_pause(policy: &str, pause: &Value, sandbox_id: &str) -> Agent {
    let mut agent = Agent {
        policy: AgentPolicy::new(policy).expect("loading the policy"),
        refused: Vec::new(),
    };
    let pause_requests =
        container_requests(pause, sandbox_id, Path::new(BUNDLE), ContainerKind::Sandbox)
            .expect("pause");
    agent.request("CreateContainerRequest", &pause_requests.create);
    agent
}

/// The requests for an application container's bundle.
fn container(spec: &Value, container_id: &str) -> contrast_shim::spec::ContainerRequests {
    container_requests(
        spec,
        container_id,
        Path::new(BUNDLE),
        ContainerKind::Container,
    )
    .expect("the container's requests")
}

/// A bundle directory (its path only names the bundle in the requests).
const BUNDLE: &str = "/run/containerd/io.containerd.runtime.v2.task/k8s.io/x";

fn id(n: u64) -> String {
    format!("{:064x}", 0x5a4d_0000_u64 + n)
}

#[test]
fn policy_allows_what_the_shim_sends_for_containerd_bundles() {
    let sandbox_id = id(0);
    let container_id = id(1);
    let host = host(&sandbox_id);
    let mut agent = Agent {
        policy: AgentPolicy::new(&policy(false)).expect("loading the policy"),
        refused: Vec::new(),
    };
    let pause = pause_config(&host, &sandbox_id);
    let settings = SandboxSettings {
        shm_size: 64 * 1024 * 1024,
        ..SandboxSettings::default()
    };

    let sandbox =
        create_sandbox_request(&pause, &sandbox_id, &settings).expect("the sandbox request");
    agent.request("CreateSandboxRequest", &sandbox);

    let bundle = |cid: &str| {
        PathBuf::from(format!(
            "/run/containerd/io.containerd.runtime.v2.task/k8s.io/{cid}"
        ))
    };
    let kind = ContainerKind::from_spec(&pause).expect("the pause container's kind");
    assert_eq!(kind, ContainerKind::Sandbox);
    let pause_requests = container_requests(&pause, &sandbox_id, &bundle(&sandbox_id), kind)
        .expect("the pause container's requests");
    for c in &pause_requests.copies {
        agent.copy(c);
    }
    agent.request("CreateContainerRequest", &pause_requests.create);

    let app = app_config(&host, &sandbox_id, &container_id, false);
    let kind = ContainerKind::from_spec(&app).expect("the app container's kind");
    assert_eq!(kind, ContainerKind::Container);
    let app_requests = container_requests(&app, &container_id, &bundle(&container_id), kind)
        .expect("the app container's requests");
    for c in &app_requests.copies {
        agent.copy(c);
    }
    agent.request("CreateContainerRequest", &app_requests.create);

    // containerd's CRI execs a probe with the container's process, its args replaced.
    let mut probe = app_process();
    probe["args"] = json!(["cat", "/tmp/ready"]);
    let exec = exec_request(&probe, &container_id, "8c4e2f1a-probe").expect("the exec request");
    agent.request("ExecProcessRequest", &exec);

    assert!(
        agent.refused.is_empty(),
        "the policy refused:\n{}",
        agent.refused.join("\n")
    );
    // Every copy was made and every request reached the engine: the pause container's
    // resolv.conf; /etc/hostname, /etc/resolv.conf, /etc/hosts and the termination log;
    // the two atomic-writer volumes (the directory, its timestamped directory and files,
    // ..data and one link per key).
    assert_eq!(pause_requests.copies.len(), 1);
    assert_eq!(
        app_requests.copies.len(),
        4 + (1 + 1 + 2 + 1 + 2) + (1 + 1 + 3 + 1 + 3)
    );
}

#[test]
fn policy_refuses_an_exec_the_pod_does_not_declare() {
    // The cross-check can fail: an exec of another command is refused.
    let sandbox_id = id(0);
    let container_id = id(1);
    let host = host(&sandbox_id);
    let mut agent = with_pause(
        &policy(false),
        &pause_config(&host, &sandbox_id),
        &sandbox_id,
    );
    let app = app_config(&host, &sandbox_id, &container_id, false);
    let app_requests = container(&app, &container_id);
    agent.request("CreateContainerRequest", &app_requests.create);
    assert!(agent.refused.is_empty(), "{:?}", agent.refused);
    let mut shell = app_process();
    shell["args"] = json!(["sh"]);
    let exec = exec_request(&shell, &container_id, "e1").expect("the exec request");
    agent.request("ExecProcessRequest", &exec);
    assert_eq!(agent.refused.len(), 1, "{:?}", agent.refused);
}

/// The pause container's and the app container's CreateContainer verdicts, for a pod whose
/// policy was made with `policy_shares` and whose bundles join the sandbox's PID namespace
/// when `bundle_shares`; and whether the app's request said so.
fn pid_sharing(policy_shares: bool, bundle_shares: bool) -> (Vec<String>, bool) {
    let sandbox_id = id(0);
    let container_id = id(1);
    let host = host(&sandbox_id);
    let mut agent = with_pause(
        &policy(policy_shares),
        &pause_config(&host, &sandbox_id),
        &sandbox_id,
    );
    let app = app_config(&host, &sandbox_id, &container_id, bundle_shares);
    let app_requests = container(&app, &container_id);
    agent.request("CreateContainerRequest", &app_requests.create);
    (agent.refused, app_requests.create.sandbox_pidns)
}

#[test]
fn policy_allows_a_shared_pid_namespace_only_to_a_pod_that_shares_it() {
    let (refused, sandbox_pidns) = pid_sharing(true, true);
    assert!(refused.is_empty(), "{refused:?}");
    assert!(sandbox_pidns);
    let (refused, sandbox_pidns) = pid_sharing(false, true);
    assert!(sandbox_pidns);
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].contains("pid_namespace"), "{refused:?}");
}

/// A hardened container: a numeric user and groups, no privilege escalation, a read-only
/// root, capabilities dropped but one, and a Secret volume.
#[test]
fn policy_allows_a_hardened_container_as_containerd_writes_it() {
    let spec = json!({
        "runtimeClassName": "contrast-cc-metal-qemu-snp-0123abcd",
        "securityContext": {"runAsUser": 101, "runAsGroup": 101, "fsGroup": 2000, "supplementalGroups": [3000]},
        "containers": [{
            "name": "app",
            "image": IMAGE,
            "command": ["sh", "-c", "touch /tmp/ready && sleep inf"],
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
            },
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/config"}],
        }],
        "volumes": [{"name": "config", "secret": {"secretName": "app-secret"}}],
    });
    let sandbox_id = id(0);
    let container_id = id(1);
    let host = host(&sandbox_id);
    // The sandbox runs as the pod's security context says (kubelet passes runAsUser,
    // runAsGroup, and fsGroup with supplementalGroups as the sandbox's groups).
    let mut pause = pause_config(&host, &sandbox_id);
    pause["process"]["user"] = json!({"uid": 101, "gid": 101, "additionalGids": [101, 2000, 3000]});
    let mut agent = with_pause(&policy_for(&spec), &pause, &sandbox_id);
    // containerd: WithUser("101:101"), the image's groups of 101 (none) and the CRI's
    // supplemental groups (fsGroup and supplementalGroups); the CRI's capabilities; no new
    // privileges; a read-only root.
    let mut app = app_config(&host, &sandbox_id, &container_id, false);
    app["process"]["user"] = json!({"uid": 101, "gid": 101, "additionalGids": [101, 2000, 3000]});
    app["process"]["capabilities"] = json!({
        "bounding": ["CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_NET_BIND_SERVICE"],
        "permitted": ["CAP_NET_BIND_SERVICE"],
    });
    app["process"]["noNewPrivileges"] = json!(true);
    app["root"]["readonly"] = json!(true);
    let app_requests = container(&app, &container_id);
    for c in &app_requests.copies {
        agent.copy(c);
    }
    agent.request("CreateContainerRequest", &app_requests.create);
    let mut probe = app["process"].clone();
    probe["args"] = json!(["cat", "/tmp/ready"]);
    let exec = exec_request(&probe, &container_id, "e1").expect("the exec request");
    agent.request("ExecProcessRequest", &exec);
    assert!(
        agent.refused.is_empty(),
        "the policy refused:\n{}",
        agent.refused.join("\n")
    );

    // Without the dropped capabilities, the same container is refused.
    let mut agent = with_pause(&policy_for(&spec), &pause, &sandbox_id);
    app["process"]["capabilities"] =
        json!({"bounding": DEFAULT_CAPS, "effective": DEFAULT_CAPS, "permitted": DEFAULT_CAPS});
    let app_requests = container(&app, &container_id);
    agent.request("CreateContainerRequest", &app_requests.create);
    assert_eq!(agent.refused.len(), 1, "{:?}", agent.refused);
    assert!(
        agent.refused[0].contains("capabilities"),
        "{:?}",
        agent.refused
    );
}

/// A tmpfs mounted as kubelet mounts a memory-backed emptyDir, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(path: &Path) -> Tmpfs {
        std::fs::create_dir_all(path).expect("creating the volume directory");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(path)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "mounting a tmpfs (the test runs as root, as in CI)"
        );
        Tmpfs(path.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// emptyDir volumes: a memory-backed one (a tmpfs on the host) and a disk-backed one with
/// the pod's fsGroup, as the runtime sends them (`ephemeral` and `local` storages), are
/// what the pod's policy allows; the host's files in them are not copied.
#[test]
fn policy_allows_emptydir_volumes_as_the_shim_sends_them() {
    let spec = json!({
        "runtimeClassName": "contrast-cc-metal-qemu-snp-0123abcd",
        "securityContext": {"fsGroup": 2000},
        "containers": [{
            "name": "app",
            "image": IMAGE,
            "command": ["sh", "-c", "touch /tmp/ready && sleep inf"],
            "readinessProbe": {"exec": {"command": ["cat", "/tmp/ready"]}},
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/config"},
                {"name": "scratch", "mountPath": "/scratch"},
                {"name": "cache", "mountPath": "/cache"},
            ],
        }],
        "volumes": [
            {"name": "config", "configMap": {"name": "app-config"}},
            {"name": "scratch", "emptyDir": {"medium": "Memory"}},
            {"name": "cache", "emptyDir": {}},
        ],
    });
    let sandbox_id = id(0);
    let container_id = id(1);
    let host = host(&sandbox_id);
    let empty_dirs = host.pod_dir.join("volumes/kubernetes.io~empty-dir");
    let scratch = Tmpfs::mount(&empty_dirs.join("scratch"));
    let cache = empty_dirs.join("cache");
    std::fs::create_dir_all(&cache).expect("creating the disk volume");
    // A host file in the volume stays on the host: the guest's directory starts empty.
    write(&cache.join("planted"), "from the host");
    // kubelet gives the volume the pod's fsGroup.
    std::os::unix::fs::chown(&cache, None, Some(2000)).expect("giving the volume its group");
    let mut agent = with_pause(
        &policy_for(&spec),
        &pause_config(&host, &sandbox_id),
        &sandbox_id,
    );
    let mut app = app_config(&host, &sandbox_id, &container_id, false);
    app["process"]["user"]["additionalGids"] = json!([0, 2000]);
    let mounts = app["mounts"].as_array_mut().expect("the mounts");
    for (destination, source) in [("/scratch", &scratch.0), ("/cache", &cache)] {
        mounts.push(json!({
            "destination": destination,
            "type": "bind",
            "source": path(source),
            "options": ["rbind", "rprivate", "rw"],
        }));
    }
    let app_requests = container(&app, &container_id);
    for c in &app_requests.copies {
        assert!(!c.path.contains("planted"), "{}", c.path);
        agent.copy(c);
    }
    agent.request("CreateContainerRequest", &app_requests.create);
    assert!(
        agent.refused.is_empty(),
        "the policy refused:\n{}",
        agent.refused.join("\n")
    );
    let storages: Vec<(String, String, Vec<String>)> = app_requests
        .create
        .storages
        .iter()
        .map(|s| (s.driver.clone(), s.mount_point.clone(), s.options.clone()))
        .collect();
    assert_eq!(
        storages[1..],
        [
            (
                "ephemeral".to_owned(),
                "/run/kata-containers/sandbox/ephemeral/scratch".to_owned(),
                Vec::new()
            ),
            (
                "local".to_owned(),
                format!("/run/kata-containers/shared/containers/{sandbox_id}/rootfs/local/cache"),
                vec!["mode=0777".to_owned(), "fsgid=2000".to_owned()]
            ),
        ]
    );
    assert_eq!(storages[0].0, "image_guest_pull");
}
