//! The agent requests a faithful runtime (containerd with the Kata runtime, guest pull,
//! no shared file system) sends for a pod, built from the same reading of the pod spec
//! as the policy, with concrete values where the policy has patterns.

use serde_json::{Value, json};

use crate::kata;
use crate::model::{ContainerRules, MountRule, PolicyData, StorageRule};
use crate::{PodInput, PolicyError, spec};

/// The requests a faithful runtime sends for the pod, in order: `CreateSandboxRequest`,
/// `CreateContainerRequest` for the pause container and for every init container and
/// container, `CopyFileRequest` for the files it copies in, and `ExecProcessRequest`
/// for every exec probe and exec lifecycle handler. Each is a request name and the
/// request as the agent serialises it for the policy. The policy generated for the same
/// input allows all of them; tests change one field to see a refusal.
///
/// IDs are fixed (container `n` has ID `format!("{:064x}", 0xc0de0000 + n)`, the pause
/// container `n = 0`, which is also the sandbox ID), so the output depends on the input
/// only.
pub fn expected_requests(input: &PodInput<'_>) -> Result<Vec<(String, Value)>, PolicyError> {
    let data = spec::resolve(input)?;
    let sandbox_id = id(0);
    let mut out: Vec<(String, Value)> = Vec::new();
    out.push((
        "CreateSandboxRequest".to_owned(),
        create_sandbox(&data, &sandbox_id),
    ));
    out.push((
        "CreateContainerRequest".to_owned(),
        create_pause(&data, &sandbox_id),
    ));
    let mut copies = Vec::new();
    let mut execs = Vec::new();
    for (i, c) in data.containers.iter().enumerate() {
        let container_id = id(i + 1);
        out.push((
            "CreateContainerRequest".to_owned(),
            create_container(&data, c, &sandbox_id, &container_id, i + 1),
        ));
        for m in c.mounts.iter().filter(|m| m.source == kata::COPIED_SOURCE) {
            let path = fill(&m.source_example, &sandbox_id, &container_id, i + 1);
            copies.push((
                "CopyFileRequest".to_owned(),
                // What the agent hands the policy for a CopyFileRequest: the request
                // without its data, with the file type read from the mode and a
                // symlink's target.
                json!({
                    "path": path,
                    "file_type": "Regular",
                    "symlink_target": null,
                    "file_size": 0,
                    "file_mode": 0o100_644,
                    "dir_mode": 0o755,
                    "uid": 0,
                    "gid": 0,
                    "offset": 0,
                }),
            ));
        }
        for (n, command) in c.exec.iter().enumerate() {
            execs.push((
                "ExecProcessRequest".to_owned(),
                json!({
                    "container_id": container_id,
                    "exec_id": format!("exec-{i}-{n}"),
                    "string_user": null,
                    "process": exec_process(&data, c, command),
                    "stdin_port": 0,
                    "stdout_port": 0,
                    "stderr_port": 0,
                }),
            ));
        }
    }
    out.extend(copies);
    out.extend(execs);
    Ok(out)
}

/// A container or sandbox ID: 64 characters of `[a-z0-9]`.
fn id(n: usize) -> String {
    format!("{:064x}", 0xc0de_0000_usize + n)
}

/// Fills the template variables of an example.
fn fill(template: &str, sandbox_id: &str, container_id: &str, n: usize) -> String {
    template
        .replace("$(cid)", container_id)
        .replace("$(sid)", sandbox_id)
        .replace("$(rand)", &format!("{:016x}", 0x5eed_0000_usize + n))
}

fn shm_storage() -> Value {
    json!({
        "driver": "ephemeral",
        "driver_options": [],
        "source": "shm",
        "fstype": "tmpfs",
        "options": ["noexec", "nosuid", "nodev", "mode=1777", "size=67108864"],
        "mount_point": kata::SANDBOX_SHM,
        "fs_group": null,
        "shared": false,
    })
}

fn create_sandbox(data: &PolicyData, sandbox_id: &str) -> Value {
    json!({
        "hostname": data.pod.hostname_example,
        "dns": [],
        "storages": [shm_storage()],
        // The runtime never sets it here (sandbox.go: SharePidNs is never set); containers
        // of a pod that shares its PID namespace say so in CreateContainer.
        "sandbox_pidns": false,
        "sandbox_id": sandbox_id,
        "guest_hook_path": data.pod.guest_hook_path,
        "kernel_modules": [],
    })
}

fn mount(m: &MountRule, sandbox_id: &str, container_id: &str, n: usize) -> Value {
    let access = if m.read_only { "ro" } else { "rw" };
    // containerd's options for its default mounts (oci/mounts.go and the CRI's cgroup
    // mount, as genpolicy's containerd.rs has them): /dev must allow device nodes, so an
    // OCI runtime can run what these requests describe.
    let options: Vec<&str> = match (m.mount_type.as_str(), m.destination.as_str()) {
        // containerd's propagation option for the mount's `mountPropagation`.
        ("bind" | "local", _) if !m.propagation.is_empty() => {
            vec!["rbind", m.propagation.as_str(), access]
        }
        ("bind" | "local", _) => vec!["rbind", "rprivate", access],
        ("tmpfs", "/dev") => vec!["nosuid", "strictatime", "mode=755", "size=65536k"],
        ("devpts", "/dev/pts") => vec![
            "nosuid",
            "noexec",
            "newinstance",
            "ptmxmode=0666",
            "mode=0620",
            "gid=5",
        ],
        ("cgroup", _) => vec!["nosuid", "noexec", "nodev", "relatime", access],
        _ if m.read_only => vec!["nosuid", "noexec", "nodev", "ro"],
        _ => vec!["nosuid", "noexec", "nodev"],
    };
    json!({
        "destination": m.destination,
        "source": fill(&m.source_example, sandbox_id, container_id, n),
        "type_": m.mount_type,
        "options": options,
    })
}

fn storage(s: &StorageRule, sandbox_id: &str, container_id: &str, n: usize) -> Value {
    if let Some(block) = &s.block {
        return json!({
            "driver": s.driver,
            "driver_options": block.driver_options,
            "source": block.source_example,
            "fstype": s.fstype,
            "options": block.options,
            "mount_point": s.mount_point_example,
            "fs_group": block.fs_group,
            "shared": true,
        });
    }
    json!({
        "driver": s.driver,
        "driver_options": [],
        "source": s.source,
        "fstype": s.fstype,
        "options": s.options_example,
        "mount_point": fill(&s.mount_point_example, sandbox_id, container_id, n),
        "fs_group": null,
        "shared": false,
    })
}

fn guest_pull(image: &str, annotations: &Value, root: &str) -> Value {
    let metadata = json!({ "metadata": annotations });
    json!({
        "driver": "image_guest_pull",
        "driver_options": [format!("image_guest_pull={metadata}")],
        "source": image,
        "fstype": "overlay",
        "options": [],
        "mount_point": root,
        "fs_group": null,
        "shared": false,
    })
}

fn root_path(container_id: &str) -> String {
    format!("{}/{container_id}/rootfs", kata::CONTAINER_BASE)
}

/// The root propagation containerd sets for a container with `mounts`: `rshared` with a
/// Bidirectional one, else `rslave` with a HostToContainer one, else none.
fn rootfs_propagation(mounts: &[MountRule]) -> &'static str {
    let has = |p: &str| mounts.iter().any(|m| m.propagation == p);
    if has("rshared") {
        "rshared"
    } else if has("rslave") {
        "rslave"
    } else {
        ""
    }
}

fn linux(
    data: &PolicyData,
    masked: bool,
    container_id: &str,
    namespaces: &[String],
    mounts: &[MountRule],
) -> Value {
    let (masked_paths, readonly_paths): (&[&str], &[&str]) = if masked {
        (kata::MASKED_PATHS, kata::READONLY_PATHS)
    } else {
        (&[], &[])
    };
    json!({
        "UIDMappings": [],
        "GIDMappings": [],
        "Sysctl": data.pod.sysctls,
        "Resources": null,
        // containerd with the systemd cgroup driver.
        "CgroupsPath": format!(
            "kubepods-besteffort-pod0f0e0d0c_0b0a_4908_8706_050403020100.slice:cri-containerd:{container_id}"
        ),
        "Namespaces": namespaces
            .iter()
            .map(|t| json!({"Type": t, "Path": ""}))
            .collect::<Vec<_>>(),
        "Devices": [],
        "Seccomp": null,
        "RootfsPropagation": rootfs_propagation(mounts),
        "MaskedPaths": masked_paths,
        "ReadonlyPaths": readonly_paths,
        "MountLabel": "",
        "IntelRdt": null,
    })
}

fn sandbox_annotations(data: &PolicyData, sandbox_id: &str) -> serde_json::Map<String, Value> {
    let mut a = serde_json::Map::new();
    a.insert("io.kubernetes.cri.sandbox-id".into(), sandbox_id.into());
    a.insert(
        "io.kubernetes.cri.sandbox-name".into(),
        data.pod.name_example.clone().into(),
    );
    a.insert(
        "io.kubernetes.cri.sandbox-namespace".into(),
        data.pod.namespace_example.clone().into(),
    );
    a.insert(
        "io.kubernetes.cri.sandbox-uid".into(),
        "0f0e0d0c-0b0a-4908-8706-050403020100".into(),
    );
    a
}

fn create_pause(data: &PolicyData, sandbox_id: &str) -> Value {
    let mut annotations = sandbox_annotations(data, sandbox_id);
    annotations.insert("io.kubernetes.cri.container-type".into(), "sandbox".into());
    annotations.insert(
        "io.kubernetes.cri.image-name".into(),
        kata::PAUSE_IMAGE_EXAMPLE.into(),
    );
    annotations.insert(
        "io.katacontainers.pkg.oci.container_type".into(),
        "pod_sandbox".into(),
    );
    let annotations = Value::Object(annotations);
    let root = root_path(sandbox_id);
    json!({
        "container_id": sandbox_id,
        "exec_id": sandbox_id,
        "string_user": null,
        "devices": [],
        "storages": [guest_pull(kata::PAUSE_IMAGE_EXAMPLE, &annotations, &root)],
        "OCI": {
            "Version": "1.1.0",
            "Process": {
                "Terminal": false,
                "ConsoleSize": null,
                "User": {
                    "UID": data.pause.uid,
                    "GID": data.pause.gids[0],
                    "AdditionalGids": data.pause.additional_gids,
                    "Username": "",
                },
                "Args": data.pause.args,
                "Env": data.pause.env,
                "Cwd": "/",
                "Capabilities": capabilities(kata::DEFAULT_CAPABILITIES),
                "Rlimits": [],
                "NoNewPrivileges": true,
                "ApparmorProfile": "",
                "OOMScoreAdj": -998,
                "SelinuxLabel": "",
            },
            "Root": {"Path": root, "Readonly": true},
            "Hostname": data.pod.hostname_example,
            "Mounts": data.pause.mounts.iter().map(|m| mount(m, sandbox_id, sandbox_id, 0)).collect::<Vec<_>>(),
            "Hooks": null,
            "Annotations": annotations,
            "Linux": linux(data, true, sandbox_id, &data.pause.namespaces, &data.pause.mounts),
            "Solaris": null,
            "Windows": null,
        },
        "sandbox_pidns": false,
        "shared_mounts": [],
        "stdin_port": 0,
        "stdout_port": 0,
        "stderr_port": 0,
    })
}

fn capabilities<S: AsRef<str>>(caps: &[S]) -> Value {
    let caps: Vec<&str> = caps.iter().map(AsRef::as_ref).collect();
    json!({
        "Bounding": caps,
        "Effective": caps,
        "Inheritable": [],
        "Permitted": caps,
        "Ambient": [],
    })
}

/// The environment a runtime sends: HOSTNAME, the container's variables, the API
/// server's service variables, and TERM for a terminal (unless the pod declares them).
fn environment(data: &PolicyData, c: &ContainerRules) -> Vec<String> {
    let declared = |entry: &str| {
        let name = entry.split_once('=').map_or(entry, |(n, _)| n);
        c.env.contains_key(name) || c.env_patterns.contains_key(name)
    };
    let mut env: Vec<String> = Vec::new();
    let (hostname, services) = data
        .pod
        .optional_env_examples
        .split_first()
        .map_or((None, &[][..]), |(h, s)| (Some(h), s));
    env.extend(hostname.filter(|h| !declared(h)).cloned());
    env.extend(c.env_example.iter().cloned());
    env.extend(services.iter().filter(|s| !declared(s)).cloned());
    if c.terminal && !declared("TERM") {
        env.push("TERM=xterm".to_owned());
    }
    env
}

fn process(data: &PolicyData, c: &ContainerRules, args: &[String]) -> Value {
    json!({
        "Terminal": c.terminal,
        "ConsoleSize": null,
        "User": {
            "UID": c.uid,
            "GID": c.gids.first().copied().unwrap_or(0),
            "AdditionalGids": c.additional_gids,
            "Username": "",
        },
        "Args": args,
        "Env": environment(data, c),
        "Cwd": c.cwd,
        "Capabilities": capabilities(&c.capabilities),
        "Rlimits": [],
        "NoNewPrivileges": c.no_new_privileges,
        "ApparmorProfile": "",
        "OOMScoreAdj": 1000,
        "SelinuxLabel": "",
    })
}

/// The process of an exec as the runtime sends it (`cmdToKataProcess`: terminal, user,
/// args, env, working directory; everything else left at its protobuf default). Probes
/// and hooks run through the CRI's ExecSync, which asks for no terminal whatever the
/// container's `tty`; the environment is the container's, TERM included.
fn exec_process(data: &PolicyData, c: &ContainerRules, args: &[String]) -> Value {
    let mut process = process(data, c, args);
    process["Terminal"] = Value::Bool(false);
    process["Capabilities"] = Value::Null;
    process["NoNewPrivileges"] = Value::Bool(false);
    process["OOMScoreAdj"] = Value::from(0);
    process
}

fn create_container(
    data: &PolicyData,
    c: &ContainerRules,
    sandbox_id: &str,
    container_id: &str,
    n: usize,
) -> Value {
    let mut annotations = sandbox_annotations(data, sandbox_id);
    annotations.insert(
        "io.kubernetes.cri.container-type".into(),
        "container".into(),
    );
    annotations.insert(
        "io.kubernetes.cri.container-name".into(),
        c.name.clone().into(),
    );
    annotations.insert(
        "io.kubernetes.cri.image-name".into(),
        c.image.clone().into(),
    );
    annotations.insert(
        "io.katacontainers.pkg.oci.container_type".into(),
        "pod_container".into(),
    );
    annotations.insert(
        "io.katacontainers.pkg.oci.bundle_path".into(),
        format!("/run/containerd/io.containerd.runtime.v2.task/k8s.io/{container_id}").into(),
    );
    let mut annotations = Value::Object(annotations);
    let root = root_path(container_id);
    let mut storages = vec![guest_pull(&c.image, &annotations, &root)];
    // Cold-plugged GPUs: the runtime names each in a CDI annotation and passes no device.
    for n in 0..c.gpus {
        annotations[format!("cdi.k8s.io/vfio{n}")] = format!("nvidia.com/gpu={n}").into();
    }
    storages.extend(
        c.storages
            .iter()
            .map(|s| storage(s, sandbox_id, container_id, n)),
    );
    let devices: Vec<Value> = c
        .devices
        .iter()
        .enumerate()
        .map(|(i, path)| {
            // The platform's block device driver: the agent finds a virtio-scsi disk by
            // its SCSI address, a virtio-blk one by its PCI path (kata_agent.go
            // appendBlockDevice).
            let device_type = data.pod.device_types.first().map_or("scsi", String::as_str);
            let id = if device_type == "blk" {
                format!("{:02x}/00", 2 + i)
            } else {
                format!("0:{}", i + 1)
            };
            json!({
                "id": id,
                "type_": device_type,
                "vm_path": "",
                "container_path": path,
                "options": [],
            })
        })
        .collect();
    json!({
        "container_id": container_id,
        "exec_id": container_id,
        "string_user": null,
        "devices": devices,
        "storages": storages,
        "OCI": {
            "Version": "1.1.0",
            "Process": process(data, c, &c.args),
            "Root": {"Path": root, "Readonly": c.read_only_root},
            "Hostname": data.pod.hostname_example,
            "Mounts": c.mounts.iter().map(|m| mount(m, sandbox_id, container_id, n)).collect::<Vec<_>>(),
            "Hooks": null,
            "Annotations": annotations,
            "Linux": linux(
                data,
                c.require_masked_paths,
                container_id,
                &kata::namespaces(true),
                &c.mounts,
            ),
            "Solaris": null,
            "Windows": null,
        },
        "sandbox_pidns": data.pod.share_process_namespace,
        "shared_mounts": [],
        "stdin_port": 0,
        "stdout_port": 0,
        "stderr_port": 0,
    })
}
