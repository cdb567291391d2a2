//! The shapes of the requests the shim makes, rule by rule, as the Kata Go runtime makes
//! them (kata-containers 7c6ba40c; the file:line of each rule is in `spec.rs`).

use std::path::{Path, PathBuf};

use contrast_shim::spec::{
    COPY_DIR_MODE, ContainerKind, SandboxSettings, SpecError, container_requests,
    create_sandbox_request, exec_request,
};
use serde_json::{Value, json};

const CID: &str = "c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0c0";
const IMAGE: &str =
    "registry.example/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn bundle() -> PathBuf {
    PathBuf::from(format!(
        "/run/containerd/io.containerd.runtime.v2.task/k8s.io/{CID}"
    ))
}

/// A minimal container bundle as containerd writes it; `mounts` added by the test.
fn container_spec(mounts: Value) -> Value {
    json!({
        "ociVersion": "1.1.0",
        "process": {
            "user": {"uid": 1000, "gid": 1000, "additionalGids": [1000, 2000]},
            "args": ["/app"],
            "env": ["PATH=/bin"],
            "cwd": "/work",
        },
        "root": {"path": "rootfs", "readonly": true},
        "mounts": mounts,
        "annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.container-name": "app",
            "io.kubernetes.cri.image-name": IMAGE,
            "io.kubernetes.cri.sandbox-id": CID,
        },
        "linux": {"resources": {}},
    })
}

fn create(spec: &Value, kind: ContainerKind) -> Value {
    let requests = container_requests(spec, CID, &bundle(), kind).expect("the requests");
    serde_json::to_value(&requests.create).expect("serialising")
}

fn shared_name(path: &str, destination_base: &str) -> bool {
    let Some(name) = path.strip_prefix("/run/kata-containers/shared/containers/") else {
        return false;
    };
    let Some(rest) = name.strip_prefix(&format!("{CID}-")) else {
        return false;
    };
    let (random, base) = rest.split_at(16);
    random
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && base == format!("-{destination_base}")
}

#[test]
fn root_and_guest_pull_storage_name_the_container_and_its_image() {
    let mut spec = container_spec(json!([]));
    spec["annotations"]["io.kubernetes.cri.sandbox-name"] = json!("a<b>&c");
    let req = create(&spec, ContainerKind::Container);
    let root = format!("/run/kata-containers/{CID}/rootfs");
    assert_eq!(req["OCI"]["Root"], json!({"Path": root, "Readonly": true}));
    assert_eq!(req["container_id"], CID);
    assert_eq!(req["exec_id"], CID);
    assert_eq!(req["shared_mounts"], json!([]));
    assert_eq!(req["string_user"], Value::Null);
    let storages = req["storages"].as_array().expect("storages");
    assert_eq!(storages.len(), 1);
    let s = &storages[0];
    assert_eq!(s["driver"], "image_guest_pull");
    assert_eq!(s["source"], IMAGE);
    assert_eq!(s["fstype"], "overlay");
    assert_eq!(s["mount_point"], json!(root));
    assert_eq!(s["options"], json!([]));
    assert_eq!(s["fs_group"], Value::Null);
    assert_eq!(s["shared"], false);
    // Go's json.Marshal: sorted keys, HTML characters escaped, no spaces.
    let bundle = bundle();
    let bundle = bundle.to_str().expect("UTF-8");
    assert_eq!(
        s["driver_options"],
        json!([format!(
            "image_guest_pull={{\"metadata\":{{\"io.katacontainers.pkg.oci.bundle_path\":\"{bundle}\",\
             \"io.katacontainers.pkg.oci.container_type\":\"pod_container\",\
             \"io.kubernetes.cri.container-name\":\"app\",\
             \"io.kubernetes.cri.container-type\":\"container\",\
             \"io.kubernetes.cri.image-name\":\"{IMAGE}\",\
             \"io.kubernetes.cri.sandbox-id\":\"{CID}\",\
             \"io.kubernetes.cri.sandbox-name\":\"a\\u003cb\\u003e\\u0026c\"}}}}"
        )])
    );
}

#[test]
fn sandbox_pulls_pause_and_carries_its_network_namespace() {
    let mut spec = container_spec(json!([]));
    spec["annotations"]["io.kubernetes.cri.container-type"] = json!("sandbox");
    spec["annotations"]
        .as_object_mut()
        .expect("annotations")
        .remove("io.kubernetes.cri.image-name");
    spec["linux"]["namespaces"] = json!([{"type": "network", "path": "/var/run/netns/cni-1"}]);
    assert_eq!(
        ContainerKind::from_spec(&spec).expect("a kind"),
        ContainerKind::Sandbox
    );
    let req = create(&spec, ContainerKind::Sandbox);
    assert_eq!(req["storages"][0]["source"], "pause");
    let annotations = &req["OCI"]["Annotations"];
    assert_eq!(
        annotations["nerdctl/network-namespace"],
        "/var/run/netns/cni-1"
    );
    assert_eq!(
        annotations["io.katacontainers.pkg.oci.container_type"],
        "pod_sandbox"
    );
    // A container never gets it, even with a network namespace path.
    let mut spec = container_spec(json!([]));
    spec["linux"]["namespaces"] = json!([{"type": "network", "path": "/var/run/netns/cni-1"}]);
    let req = create(&spec, ContainerKind::Container);
    assert_eq!(
        req["OCI"]["Annotations"]["nerdctl/network-namespace"],
        Value::Null
    );
    // Nor a sandbox without a path (host network is not ours, but the rule is the runtime's).
    let mut spec = container_spec(json!([]));
    spec["linux"]["namespaces"] = json!([{"type": "network"}]);
    let req = create(&spec, ContainerKind::Sandbox);
    assert_eq!(
        req["OCI"]["Annotations"]["nerdctl/network-namespace"],
        Value::Null
    );
}

#[test]
fn runtime_settings_and_cdi_annotations_are_removed() {
    let mut spec = container_spec(json!([]));
    let a = spec["annotations"].as_object_mut().expect("annotations");
    a.insert(
        "io.katacontainers.config.agent.policy".into(),
        json!("cG9saWN5"),
    );
    a.insert(
        "io.katacontainers.config.hypervisor.cc_init_data".into(),
        json!("aW5pdA=="),
    );
    a.insert("cdi.k8s.io/gpu".into(), json!("nvidia.com/gpu=0"));
    a.insert(
        "io.katacontainers.config.runtime.other".into(),
        json!("kept"),
    );
    let req = create(&spec, ContainerKind::Container);
    let annotations = req["OCI"]["Annotations"].as_object().expect("annotations");
    for removed in [
        "io.katacontainers.config.agent.policy",
        "io.katacontainers.config.hypervisor.cc_init_data",
        "cdi.k8s.io/gpu",
    ] {
        assert!(!annotations.contains_key(removed), "{removed} was kept");
        assert!(
            !req["storages"][0]["driver_options"][0]
                .as_str()
                .expect("options")
                .contains(removed),
            "{removed} is in the guest-pull metadata"
        );
    }
    assert_eq!(
        annotations["io.katacontainers.config.runtime.other"],
        "kept"
    );
}

#[test]
fn namespaces_keep_only_what_the_guest_creates_and_pid_sharing_is_reported() {
    let mut spec = container_spec(json!([]));
    spec["linux"]["namespaces"] = json!([
        {"type": "pid", "path": "/proc/42/ns/pid"},
        {"type": "ipc", "path": "/proc/42/ns/ipc"},
        {"type": "uts", "path": "/proc/42/ns/uts"},
        {"type": "mount"},
        {"type": "network", "path": "/var/run/netns/cni-1"},
        {"type": "cgroup"},
        {"type": "time"},
    ]);
    let req = create(&spec, ContainerKind::Container);
    assert_eq!(
        req["OCI"]["Linux"]["Namespaces"],
        json!([
            {"Type": "ipc", "Path": ""},
            {"Type": "uts", "Path": ""},
            {"Type": "mount", "Path": ""},
        ])
    );
    assert_eq!(req["sandbox_pidns"], true);
    // A pid namespace of its own: no sharing.
    spec["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "mount"}]);
    let req = create(&spec, ContainerKind::Container);
    assert_eq!(req["sandbox_pidns"], false);
    assert_eq!(
        req["OCI"]["Linux"]["Namespaces"],
        json!([{"Type": "mount", "Path": ""}])
    );
}

#[test]
fn resources_hooks_seccomp_and_selinux_are_constrained() {
    let mut spec = container_spec(json!([]));
    spec["hooks"] = json!({"prestart": [{"path": "/bin/hook"}]});
    spec["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0:c1,c2");
    spec["process"]["apparmorProfile"] = json!("cri-containerd.apparmor.d");
    spec["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0:c1,c2");
    spec["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_ERRNO"});
    spec["linux"]["resources"] = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "memory": {"limit": 134217728, "swap": -1},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-3", "mems": "0"},
        "pids": {"limit": 100},
        "blockIO": {"weight": 10},
        "network": {"classID": 1},
    });
    let req = create(&spec, ContainerKind::Container);
    let oci = &req["OCI"];
    assert_eq!(oci["Hooks"], Value::Null);
    assert_eq!(oci["Linux"]["Seccomp"], Value::Null);
    assert_eq!(oci["Process"]["SelinuxLabel"], "");
    assert_eq!(oci["Linux"]["MountLabel"], "");
    assert_eq!(
        oci["Process"]["ApparmorProfile"],
        "cri-containerd.apparmor.d"
    );
    let r = &oci["Linux"]["Resources"];
    assert_eq!(r["Devices"], json!([]));
    assert_eq!(r["Pids"], Value::Null);
    assert_eq!(r["BlockIO"], Value::Null);
    assert_eq!(r["Network"], Value::Null);
    assert_eq!(r["Memory"]["Limit"], 134_217_728);
    assert_eq!(r["Memory"]["Swap"], -1);
    assert_eq!(
        r["CPU"],
        json!({"Shares": 512, "Quota": 50000, "Period": 100000, "RealtimeRuntime": 0,
               "RealtimePeriod": 0, "Cpus": "", "Mems": ""})
    );
    // The mount label stays when the process has no label (ka.go:1067).
    let mut spec = container_spec(json!([]));
    spec["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0");
    let req = create(&spec, ContainerKind::Container);
    assert_eq!(
        req["OCI"]["Linux"]["MountLabel"],
        "system_u:object_r:container_file_t:s0"
    );
}

#[test]
fn capabilities_are_always_an_object() {
    let spec = container_spec(json!([]));
    let req = create(&spec, ContainerKind::Container);
    assert_eq!(
        req["OCI"]["Process"]["Capabilities"],
        json!({"Bounding": [], "Effective": [], "Inheritable": [], "Permitted": [], "Ambient": []})
    );
    // The old list form fills every set (compatoci/utils.go:78-89).
    let mut spec = container_spec(json!([]));
    spec["process"]["capabilities"] = json!(["CAP_KILL"]);
    let req = create(&spec, ContainerKind::Container);
    let caps = &req["OCI"]["Process"]["Capabilities"];
    for set in [
        "Bounding",
        "Effective",
        "Inheritable",
        "Permitted",
        "Ambient",
    ] {
        assert_eq!(caps[set], json!(["CAP_KILL"]), "{set}");
    }
}

#[test]
fn runtime_spec_fields_become_the_proto_fields() {
    let mut spec = container_spec(json!([]));
    spec["process"]["terminal"] = json!(true);
    spec["process"]["consoleSize"] = json!({"height": 24, "width": 80});
    spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 512}]);
    spec["process"]["noNewPrivileges"] = json!(true);
    spec["process"]["oomScoreAdj"] = json!(-5);
    spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1000, "size": 1}]);
    spec["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    spec["linux"]["devices"] = json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}]);
    spec["linux"]["rootfsPropagation"] = json!("rslave");
    spec["linux"]["maskedPaths"] = json!(["/proc/kcore"]);
    spec["linux"]["readonlyPaths"] = json!(["/proc/sys"]);
    spec["linux"]["cgroupsPath"] = json!("/kubepods/pod1/c1");
    spec["linux"]["resources"]["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 0}]);
    spec["linux"]["resources"]["memory"] =
        json!({"kernelTCP": 7, "disableOOMKiller": true, "swappiness": 60});
    spec["linux"]["intelRdt"] = json!({"closID": "x", "l3CacheSchema": "L3:0=f"});
    spec["hostname"] = json!("app-0");
    let req = create(&spec, ContainerKind::Container);
    let oci = &req["OCI"];
    assert_eq!(oci["Version"], "1.1.0");
    assert_eq!(oci["Hostname"], "app-0");
    let p = &oci["Process"];
    assert_eq!(p["Terminal"], true);
    assert_eq!(p["ConsoleSize"], json!({"Height": 24, "Width": 80}));
    assert_eq!(
        p["User"],
        json!({"UID": 1000, "GID": 1000, "AdditionalGids": [1000, 2000], "Username": ""})
    );
    assert_eq!(p["Args"], json!(["/app"]));
    assert_eq!(p["Env"], json!(["PATH=/bin"]));
    assert_eq!(p["Cwd"], "/work");
    assert_eq!(
        p["Rlimits"],
        json!([{"Type": "RLIMIT_NOFILE", "Hard": 1024, "Soft": 512}])
    );
    assert_eq!(p["NoNewPrivileges"], true);
    assert_eq!(p["OOMScoreAdj"], -5);
    let l = &oci["Linux"];
    assert_eq!(
        l["UIDMappings"],
        json!([{"HostID": 1000, "ContainerID": 0, "Size": 1}])
    );
    assert_eq!(l["GIDMappings"], json!([]));
    assert_eq!(l["Sysctl"], json!({"net.ipv4.ip_forward": "1"}));
    assert_eq!(
        l["Devices"],
        json!([{"Path": "/dev/fuse", "Type": "c", "Major": 10, "Minor": 229, "FileMode": 438, "UID": 0, "GID": 0}])
    );
    assert_eq!(l["RootfsPropagation"], "rslave");
    assert_eq!(l["MaskedPaths"], json!(["/proc/kcore"]));
    assert_eq!(l["ReadonlyPaths"], json!(["/proc/sys"]));
    assert_eq!(l["CgroupsPath"], "/kubepods/pod1/c1");
    assert_eq!(l["IntelRdt"], json!({"L3CacheSchema": "L3:0=f"}));
    assert_eq!(
        l["Resources"]["Memory"],
        json!({"Limit": 0, "Reservation": 0, "Swap": 0, "Kernel": 0, "KernelTCP": 7,
               "Swappiness": 60, "DisableOOMKiller": true})
    );
    assert_eq!(
        l["Resources"]["HugepageLimits"],
        json!([{"Pagesize": "2MB", "Limit": 0}])
    );
    assert_eq!(oci["Solaris"], Value::Null);
    assert_eq!(oci["Windows"], Value::Null);
}

fn bind(destination: &str, source: &Path) -> Value {
    json!({"destination": destination, "type": "bind", "source": source, "options": ["rbind", "rprivate", "ro"]})
}

#[test]
fn bind_mounts_are_copied_in_and_pointed_at_the_copies() {
    use std::os::unix::fs::MetadataExt as _;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let big = dir.path().join("big");
    let contents: Vec<u8> = (0..(2 * 1024 * 1024 + 5))
        .map(|i| (i % 251) as u8)
        .collect();
    std::fs::write(&big, &contents).expect("writing");
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").expect("writing");
    let volume = dir.path().join("volume");
    std::fs::create_dir_all(volume.join("sub")).expect("a directory");
    std::fs::write(volume.join("sub/b"), b"b").expect("writing");
    std::fs::write(volume.join("a"), b"a").expect("writing");
    std::os::unix::fs::symlink("sub/b", volume.join("link")).expect("a link");
    // A socket inside a volume is skipped; a socket as the source drops the mount.
    let _inner = std::os::unix::net::UnixListener::bind(volume.join("sock")).expect("a socket");
    let socket = dir.path().join("app.sock");
    let _outer = std::os::unix::net::UnixListener::bind(&socket).expect("a socket");

    let spec = container_spec(json!([
        {"destination": "/proc", "type": "proc", "source": "proc", "options": []},
        bind("/data/big.bin", &big),
        bind("/data/empty", &empty),
        bind("/etc/volume/", &volume),
        bind("/run/app.sock", &socket),
        {"destination": "/dev/shm", "type": "bind", "source": "/run/containerd/shm", "options": ["rbind", "ro"]},
        {"destination": "/sys/x", "type": "bind", "source": "/sys/kernel", "options": ["rbind"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
    ]));
    let requests =
        container_requests(&spec, CID, &bundle(), ContainerKind::Container).expect("the requests");
    let mounts = &serde_json::to_value(&requests.create).expect("serialising")["OCI"]["Mounts"];
    let mounts = mounts.as_array().expect("mounts");
    let destinations: Vec<&str> = mounts
        .iter()
        .map(|m| m["destination"].as_str().expect("a destination"))
        .collect();
    assert_eq!(
        destinations,
        [
            "/proc",
            "/data/big.bin",
            "/data/empty",
            "/etc/volume/",
            "/dev/shm",
            "/sys/x",
            "/tmp"
        ]
    );
    let source = |i: usize| mounts[i]["source"].as_str().expect("a source").to_owned();
    assert_eq!(source(0), "proc");
    assert!(shared_name(&source(1), "big.bin"), "{}", source(1));
    assert!(shared_name(&source(2), "empty"), "{}", source(2));
    assert!(shared_name(&source(3), "volume"), "{}", source(3));
    assert_eq!(mounts[1]["options"], json!(["rbind", "rprivate", "ro"]));
    assert_eq!(
        mounts[4],
        json!({"destination": "/dev/shm", "source": "/run/kata-containers/sandbox/shm", "type_": "bind", "options": ["rbind"]})
    );
    assert_eq!(source(5), "/sys/kernel");
    assert_eq!(source(6), "tmpfs");

    let meta = std::fs::metadata(&big).expect("metadata");
    let c = &requests.copies;
    let paths: Vec<&str> = c.iter().map(|r| r.path.as_str()).collect();
    let v = source(3);
    assert_eq!(
        paths,
        [
            source(1).as_str(),
            &source(1),
            &source(1),
            &source(2),
            &v,
            &format!("{v}/a"),
            &format!("{v}/link"),
            &format!("{v}/sub"),
            &format!("{v}/sub/b"),
        ]
    );
    // 1 MiB chunks of one file: the same size, offsets by the chunk.
    for (i, r) in c[..3].iter().enumerate() {
        assert_eq!(r.file_size, i64::try_from(contents.len()).expect("a size"));
        assert_eq!(r.offset, i64::try_from(i * 1024 * 1024).expect("an offset"));
        assert_eq!(r.file_mode, meta.mode());
        assert_eq!(r.dir_mode, COPY_DIR_MODE);
        assert_eq!(r.dir_mode, 2_147_484_136);
        assert_eq!(r.uid, i32::try_from(meta.uid()).expect("a uid"));
        assert_eq!(r.gid, i32::try_from(meta.gid()).expect("a gid"));
    }
    let joined: Vec<u8> = c[..3].iter().flat_map(|r| r.data.clone()).collect();
    assert_eq!(joined, contents);
    assert_eq!(c[2].data.len(), 5);
    // An empty file: one request without data.
    assert_eq!((c[3].file_size, c[3].offset, c[3].data.len()), (0, 0, 0));
    // A directory: its st_mode, no data.
    assert_eq!(c[4].file_mode & 0o170_000, 0o040_000);
    assert!(c[4].data.is_empty());
    // A symlink: its target as data, not followed.
    assert_eq!(c[6].file_mode & 0o170_000, 0o120_000);
    assert_eq!(c[6].data, b"sub/b");
    assert_eq!(c[6].file_size, 0);
}

#[test]
fn sandbox_request_has_the_hostname_dns_and_shared_memory() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 10.96.0.10\noptions ndots:5\n").expect("writing");
    let long = "h".repeat(70);
    let spec = json!({
        "hostname": long,
        "mounts": [{"destination": "/etc/resolv.conf", "type": "bind", "source": resolv, "options": ["rbind", "ro"]}],
    });
    let settings = SandboxSettings {
        shm_size: 65_536,
        ..SandboxSettings::default()
    };
    let req = create_sandbox_request(&spec, CID, &settings).expect("the request");
    let req = serde_json::to_value(&req).expect("serialising");
    assert_eq!(
        req,
        json!({
            "hostname": "h".repeat(64),
            "dns": ["nameserver 10.96.0.10", "options ndots:5", ""],
            "storages": [{
                "driver": "ephemeral", "driver_options": [], "source": "shm", "fstype": "tmpfs",
                "options": ["noexec", "nosuid", "nodev", "mode=1777", "size=65536"],
                "mount_point": "/run/kata-containers/sandbox/shm", "fs_group": null, "shared": false,
            }],
            "sandbox_pidns": false,
            "sandbox_id": CID,
            "guest_hook_path": "",
            "kernel_modules": [],
        })
    );
    // No resolv.conf mount, no DNS; no shared memory, no storage.
    let req =
        create_sandbox_request(&json!({}), CID, &SandboxSettings::default()).expect("the request");
    assert!(req.dns.is_empty());
    assert!(req.storages.is_empty());
}

#[test]
fn exec_sends_only_terminal_user_args_env_and_cwd() {
    let process = json!({
        "terminal": true,
        "user": {"uid": 7, "gid": 8, "additionalGids": [9], "username": "ignored", "umask": 18},
        "args": ["sh", "-c", "true"],
        "env": ["A=1", "NOVALUE", "B=x=y"],
        "cwd": "/srv",
        "capabilities": {"bounding": ["CAP_SYS_ADMIN"]},
        "noNewPrivileges": true,
        "apparmorProfile": "cri-containerd.apparmor.d",
        "selinuxLabel": "system_u:system_r:container_t:s0",
        "rlimits": [{"type": "RLIMIT_CORE", "hard": 1, "soft": 1}],
        "oomScoreAdj": 1000,
        "consoleSize": {"height": 1, "width": 2},
    });
    let req = exec_request(&process, CID, "exec-1").expect("the request");
    assert_eq!(
        serde_json::to_value(&req).expect("serialising"),
        json!({
            "container_id": CID,
            "exec_id": "exec-1",
            "string_user": null,
            "process": {
                "Terminal": true,
                "ConsoleSize": null,
                "User": {"UID": 7, "GID": 8, "AdditionalGids": [9], "Username": ""},
                "Args": ["sh", "-c", "true"],
                "Env": ["A=1", "NOVALUE=", "B=x=y"],
                "Cwd": "/srv",
                "Capabilities": null,
                "Rlimits": [],
                "NoNewPrivileges": false,
                "ApparmorProfile": "",
                "OOMScoreAdj": 0,
                "SelinuxLabel": "",
            },
            "stdin_port": 0,
            "stdout_port": 0,
            "stderr_port": 0,
        })
    );
}

#[test]
fn a_field_of_the_wrong_type_is_refused_by_its_path() {
    let mut spec = container_spec(json!([]));
    spec["process"]["user"]["uid"] = json!("1000");
    let err = container_requests(&spec, CID, &bundle(), ContainerKind::Container)
        .expect_err("a string uid");
    assert!(
        matches!(&err, SpecError::InvalidField { field, .. } if field == "process.user.uid"),
        "{err}"
    );
    let mut spec = container_spec(json!([]));
    spec["linux"]["namespaces"] = json!([{"type": 3}]);
    let err = container_requests(&spec, CID, &bundle(), ContainerKind::Container)
        .expect_err("a numeric type");
    assert!(
        err.to_string().starts_with("linux.namespaces[0].type: "),
        "{err}"
    );
}

#[test]
fn a_container_without_an_image_name_is_refused() {
    let mut spec = container_spec(json!([]));
    spec["annotations"]
        .as_object_mut()
        .expect("annotations")
        .remove("io.kubernetes.cri.image-name");
    let err =
        container_requests(&spec, CID, &bundle(), ContainerKind::Container).expect_err("no image");
    assert!(
        matches!(&err, SpecError::MissingField { field, .. } if field == "annotations.io.kubernetes.cri.image-name"),
        "{err}"
    );
}

#[test]
fn emptydir_volumes_become_guest_storages_not_copies() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let empty_dirs = dir.path().join("pods/u/volumes/kubernetes.io~empty-dir");
    let cache = empty_dirs.join("cache");
    std::fs::create_dir_all(&cache).expect("a directory");
    std::fs::write(cache.join("planted"), "host").expect("a host file");
    // A tmpfs, as kubelet mounts a memory-backed emptyDir (the tests run as root).
    let shm = empty_dirs.join("shm");
    std::fs::create_dir_all(&shm).expect("a directory");
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&shm)
        .status()
        .expect("running mount");
    assert!(mounted.success(), "mounting a tmpfs");
    let spec = container_spec(json!([bind("/cache", &cache), bind("/dev/shm", &shm)]));
    let requests = container_requests(&spec, CID, &bundle(), ContainerKind::Container);
    let _ = std::process::Command::new("umount").arg(&shm).status();
    let requests = requests.expect("the requests");
    assert!(requests.copies.is_empty(), "{:?}", requests.copies);
    let create = serde_json::to_value(&requests.create).expect("serialising");
    // A disk-backed one: a `local` directory below the sandbox's bundle, the mount keeps
    // its type `local` and containerd's options; a memory-backed one (even at /dev/shm,
    // which is then not the sandbox's shared memory): a guest tmpfs, bound.
    assert_eq!(
        create["OCI"]["Mounts"],
        json!([
            {"destination": "/cache", "type_": "local",
             "source": format!("/run/kata-containers/shared/containers/{CID}/rootfs/local/cache"),
             "options": ["rbind", "rprivate", "ro"]},
            {"destination": "/dev/shm", "type_": "bind",
             "source": "/run/kata-containers/sandbox/ephemeral/shm",
             "options": ["rbind", "rprivate", "ro"]},
        ])
    );
    // The root, then the ephemeral storages, then the local ones (ka.go:1580-1628).
    let storages = create["storages"].as_array().expect("storages");
    assert_eq!(storages.len(), 3);
    assert_eq!(storages[0]["driver"], "image_guest_pull");
    assert_eq!(
        storages[1],
        json!({"driver": "ephemeral", "driver_options": [], "source": "tmpfs", "fstype": "tmpfs",
               "options": [], "mount_point": "/run/kata-containers/sandbox/ephemeral/shm",
               "fs_group": null, "shared": false})
    );
    assert_eq!(
        storages[2],
        json!({"driver": "local", "driver_options": [], "source": "local", "fstype": "local",
               "options": ["mode=0777"],
               "mount_point": format!("/run/kata-containers/shared/containers/{CID}/rootfs/local/cache"),
               "fs_group": null, "shared": false})
    );
}

#[test]
fn an_emptydir_of_a_container_without_its_sandbox_is_refused() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let cache = dir
        .path()
        .join("pods/u/volumes/kubernetes.io~empty-dir/cache");
    std::fs::create_dir_all(&cache).expect("a directory");
    let mut spec = container_spec(json!([bind("/cache", &cache)]));
    spec["annotations"]
        .as_object_mut()
        .expect("annotations")
        .remove("io.kubernetes.cri.sandbox-id");
    let err = container_requests(&spec, CID, &bundle(), ContainerKind::Container)
        .expect_err("no sandbox");
    assert!(
        matches!(&err, SpecError::MissingField { field, .. } if field.contains("io.kubernetes.cri.sandbox-id")),
        "{err}"
    );
}

#[test]
fn an_emptydir_that_does_not_exist_is_an_error_naming_the_mount() {
    let spec = container_spec(json!([bind(
        "/cache",
        Path::new("/nonexistent/pods/u/volumes/kubernetes.io~empty-dir/cache")
    )]));
    let err = container_requests(&spec, CID, &bundle(), ContainerKind::Container)
        .expect_err("a missing volume");
    assert!(
        matches!(&err, SpecError::HostFile { field, .. } if field == "mounts[0].source"),
        "{err}"
    );
}

#[test]
fn an_unreadable_host_file_is_an_error_naming_the_mount() {
    let spec = container_spec(json!([bind(
        "/etc/x",
        Path::new("/nonexistent/contrast/x")
    )]));
    let err = container_requests(&spec, CID, &bundle(), ContainerKind::Container)
        .expect_err("a missing file");
    assert!(
        matches!(&err, SpecError::HostFile { field, .. } if field == "mounts[0].source"),
        "{err}"
    );
}

#[test]
fn an_unknown_container_type_is_refused() {
    let mut spec = container_spec(json!([]));
    spec["annotations"]["io.kubernetes.cri.container-type"] = json!("podsandbox");
    assert!(matches!(
        ContainerKind::from_spec(&spec),
        Err(SpecError::InvalidField { .. })
    ));
    assert!(ContainerKind::from_spec(&json!({})).is_err());
}
