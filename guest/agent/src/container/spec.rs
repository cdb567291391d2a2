//! The request's OCI spec (the Kata protocol's protobuf form) as the OCI runtime spec's
//! `config.json`, after the policy allowed it, with the changes the Kata agent makes
//! inside the guest: the root is the container's bundle, the sandbox's namespaces are
//! joined, the cgroup is the agent's, and what the guest has no use for is left out
//! (hooks: only guest hooks would run, and there are none; AppArmor and SELinux labels:
//! the guest kernel enforces neither).

use std::path::Path;

use serde_json::{Map, Value, json};

use crate::proto::oci;

/// What the agent decides about a container's spec beyond the request.
#[derive(Debug, Clone)]
pub struct Placement<'a> {
    /// The container's root file system in its bundle.
    pub rootfs: &'a Path,
    /// The sandbox's pause process, whose IPC and UTS namespaces (and PID namespace, when
    /// the pod shares it) the container joins; `None` for the pause container itself.
    pub pause_pid: Option<u32>,
    /// `CreateContainerRequest.sandbox_pidns`: the pod shares one PID namespace.
    pub share_pid: bool,
    /// The cgroup (cgroupfs path) the container runs in.
    pub cgroup: String,
    /// Where `/run/kata-containers` lies in this agent (the same path in the guest).
    pub run_dir: &'a Path,
    /// The initdata document the initdata check verified, if there is one: every
    /// workload container gets it read-only at [`INITDATA_MOUNT`].
    pub initdata: Option<&'a Path>,
}

/// Where a workload container finds the verified initdata document: the path the
/// Initializer reads by default, the same as in the guest.
pub const INITDATA_MOUNT: &str = "/run/measured-cfg/initdata.toml";

/// Where a workload container finds configfs (configfs-tsm for its own evidence).
pub const CONFIGFS_MOUNT: &str = "/sys/kernel/config";

/// `config.json` for `spec` placed as `placement` says. `net.*` sysctls are left out
/// here: the container shares the VM's network namespace, so the agent applies them
/// itself ([`net_sysctls`]).
pub fn config_json(spec: &oci::Spec, placement: &Placement<'_>) -> Value {
    let mut config = Map::new();
    config.insert(
        "ociVersion".into(),
        json!(if spec.Version.is_empty() {
            "1.1.0"
        } else {
            spec.Version.as_str()
        }),
    );
    if let Some(process) = spec.Process.as_ref() {
        config.insert("process".into(), process_json(process));
    }
    config.insert(
        "root".into(),
        json!({
            "path": placement.rootfs,
            "readonly": spec.Root.as_ref().is_some_and(|r| r.Readonly),
        }),
    );
    if !spec.Hostname.is_empty() {
        config.insert("hostname".into(), json!(spec.Hostname));
    }
    config.insert(
        "mounts".into(),
        Value::Array(
            spec.Mounts
                .iter()
                .map(|m| {
                    json!({
                        "destination": m.destination,
                        "type": m.type_,
                        "source": crate::storage::guest_path(&m.source, placement.run_dir)
                            .map_or_else(|| m.source.clone(), |p| p.display().to_string()),
                        "options": m.options,
                    })
                })
                .chain(guest_mounts(placement))
                .collect(),
        ),
    );
    if !spec.Annotations.is_empty() {
        let annotations: std::collections::BTreeMap<_, _> = spec.Annotations.iter().collect();
        config.insert("annotations".into(), json!(annotations));
    }
    config.insert("linux".into(), linux_json(spec.Linux.as_ref(), placement));
    Value::Object(config)
}

/// The mounts the agent adds to every container but the pause container, after the
/// policy allowed the request (so the policy never sees them), last so that they lie on
/// top of the spec's `/sys` and `/run`:
/// - configfs at `/sys/kernel/config`, as Contrast's patched Kata agent mounts it: the
///   Initializer gets its evidence through configfs-tsm from inside its container;
/// - the verified initdata document, read-only: the Initializer checks its digest against
///   its own evidence and dials only the Coordinator it names. It is no secret (the
///   policy is public) and, being re-checked, need not be trusted either.
fn guest_mounts(placement: &Placement<'_>) -> Vec<Value> {
    if placement.pause_pid.is_none() {
        return Vec::new();
    }
    let mut mounts = vec![json!({
        "destination": CONFIGFS_MOUNT,
        "type": "configfs",
        "source": "configfs",
        "options": ["nosuid", "noexec", "nodev", "relatime"],
    })];
    if let Some(initdata) = placement.initdata {
        mounts.push(json!({
            "destination": INITDATA_MOUNT,
            "type": "bind",
            "source": initdata,
            "options": ["bind", "ro", "nosuid", "noexec", "nodev"],
        }));
    }
    mounts
}

/// `process` of the config.
pub fn process_json(process: &oci::Process) -> Value {
    let mut out = Map::new();
    out.insert("terminal".into(), json!(process.Terminal));
    if process.Terminal
        && let Some(size) = process.ConsoleSize.as_ref()
    {
        out.insert(
            "consoleSize".into(),
            json!({"height": size.Height, "width": size.Width}),
        );
    }
    let user = process.User.as_ref();
    out.insert(
        "user".into(),
        json!({
            "uid": user.map_or(0, |u| u.UID),
            "gid": user.map_or(0, |u| u.GID),
            "additionalGids": user.map(|u| u.AdditionalGids.clone()).unwrap_or_default(),
        }),
    );
    out.insert("args".into(), json!(process.Args));
    out.insert("env".into(), json!(process.Env));
    out.insert(
        "cwd".into(),
        json!(if process.Cwd.is_empty() {
            "/"
        } else {
            process.Cwd.as_str()
        }),
    );
    if let Some(caps) = process.Capabilities.as_ref() {
        out.insert(
            "capabilities".into(),
            json!({
                "bounding": caps.Bounding,
                "effective": caps.Effective,
                "inheritable": caps.Inheritable,
                "permitted": caps.Permitted,
                "ambient": caps.Ambient,
            }),
        );
    }
    out.insert(
        "rlimits".into(),
        Value::Array(
            process
                .Rlimits
                .iter()
                .map(|r| json!({"type": r.Type, "hard": r.Hard, "soft": r.Soft}))
                .collect(),
        ),
    );
    out.insert("noNewPrivileges".into(), json!(process.NoNewPrivileges));
    out.insert("oomScoreAdj".into(), json!(process.OOMScoreAdj));
    Value::Object(out)
}

fn linux_json(linux: Option<&oci::Linux>, placement: &Placement<'_>) -> Value {
    let mut out = Map::new();
    out.insert("cgroupsPath".into(), json!(placement.cgroup));
    out.insert("namespaces".into(), namespaces(linux, placement));
    let Some(linux) = linux else {
        return Value::Object(out);
    };
    let mapping = |m: &oci::LinuxIDMapping| json!({"containerID": m.ContainerID, "hostID": m.HostID, "size": m.Size});
    if !linux.UIDMappings.is_empty() {
        out.insert(
            "uidMappings".into(),
            Value::Array(linux.UIDMappings.iter().map(mapping).collect()),
        );
        out.insert(
            "gidMappings".into(),
            Value::Array(linux.GIDMappings.iter().map(mapping).collect()),
        );
    }
    let sysctl: std::collections::BTreeMap<_, _> = linux
        .Sysctl
        .iter()
        .filter(|(k, _)| !k.starts_with("net."))
        .collect();
    if !sysctl.is_empty() {
        out.insert("sysctl".into(), json!(sysctl));
    }
    if let Some(resources) = linux.Resources.as_ref() {
        out.insert("resources".into(), resources_json(resources));
    }
    out.insert(
        "devices".into(),
        Value::Array(
            linux
                .Devices
                .iter()
                .map(|d| {
                    json!({
                        "path": d.Path, "type": d.Type, "major": d.Major, "minor": d.Minor,
                        "fileMode": d.FileMode, "uid": d.UID, "gid": d.GID,
                    })
                })
                .collect(),
        ),
    );
    if let Some(seccomp) = linux.Seccomp.as_ref() {
        out.insert("seccomp".into(), seccomp_json(seccomp));
    }
    if !linux.RootfsPropagation.is_empty() {
        out.insert("rootfsPropagation".into(), json!(linux.RootfsPropagation));
    }
    out.insert("maskedPaths".into(), json!(linux.MaskedPaths));
    out.insert("readonlyPaths".into(), json!(linux.ReadonlyPaths));
    Value::Object(out)
}

/// The Kata agent's namespaces: a new mount namespace; IPC and UTS of the sandbox (new
/// for the pause container, joined for the others); PID new, or the sandbox's when the
/// pod shares it; no network namespace of its own (the VM's is the pod's). The host's
/// list decides none of this: the runtime sends only empty paths, and the policy checked
/// it.
fn namespaces(linux: Option<&oci::Linux>, placement: &Placement<'_>) -> Value {
    let join = |kind: &str| match placement.pause_pid {
        Some(pid) => json!({"type": kind, "path": format!("/proc/{pid}/ns/{kind}")}),
        None => json!({"type": kind}),
    };
    let mut list = vec![json!({"type": "mount"}), join("ipc"), join("uts")];
    list.push(if placement.share_pid {
        join("pid")
    } else {
        json!({"type": "pid"})
    });
    // A cgroup namespace, as containerd gives containers on cgroup v2, if asked for.
    if linux.is_some_and(|l| l.Namespaces.iter().any(|n| n.Type == "cgroup")) {
        list.push(json!({"type": "cgroup"}));
    }
    Value::Array(list)
}

fn resources_json(resources: &oci::LinuxResources) -> Value {
    let mut out = Map::new();
    // A zero in the protobuf form means "not set": an OCI limit of 0 would mean none at all.
    let positive = |v: i64| (v > 0).then_some(v);
    if let Some(memory) = resources.Memory.as_ref() {
        let mut m = Map::new();
        if let Some(limit) = positive(memory.Limit) {
            m.insert("limit".into(), json!(limit));
        }
        if let Some(reservation) = positive(memory.Reservation) {
            m.insert("reservation".into(), json!(reservation));
        }
        if memory.Swap != 0 {
            m.insert("swap".into(), json!(memory.Swap));
        }
        if memory.DisableOOMKiller {
            m.insert("disableOOMKiller".into(), json!(true));
        }
        out.insert("memory".into(), Value::Object(m));
    }
    if let Some(cpu) = resources.CPU.as_ref() {
        let mut c = Map::new();
        if cpu.Shares > 0 {
            c.insert("shares".into(), json!(cpu.Shares));
        }
        if let Some(quota) = positive(cpu.Quota) {
            c.insert("quota".into(), json!(quota));
        }
        if cpu.Period > 0 {
            c.insert("period".into(), json!(cpu.Period));
        }
        if !cpu.Cpus.is_empty() {
            c.insert("cpus".into(), json!(cpu.Cpus));
        }
        if !cpu.Mems.is_empty() {
            c.insert("mems".into(), json!(cpu.Mems));
        }
        out.insert("cpu".into(), Value::Object(c));
    }
    if let Some(limit) = resources.Pids.as_ref().and_then(|p| positive(p.Limit)) {
        out.insert("pids".into(), json!({"limit": limit}));
    }
    if !resources.Devices.is_empty() {
        out.insert(
            "devices".into(),
            Value::Array(
                resources
                    .Devices
                    .iter()
                    .map(|d| {
                        json!({
                            "allow": d.Allow, "type": d.Type, "major": d.Major,
                            "minor": d.Minor, "access": d.Access,
                        })
                    })
                    .collect(),
            ),
        );
    }
    if !resources.HugepageLimits.is_empty() {
        out.insert(
            "hugepageLimits".into(),
            Value::Array(
                resources
                    .HugepageLimits
                    .iter()
                    .map(|h| json!({"pageSize": h.Pagesize, "limit": h.Limit}))
                    .collect(),
            ),
        );
    }
    Value::Object(out)
}

fn seccomp_json(seccomp: &oci::LinuxSeccomp) -> Value {
    let syscalls: Vec<Value> = seccomp
        .Syscalls
        .iter()
        .map(|s| {
            let mut call = Map::new();
            call.insert("names".into(), json!(s.Names));
            call.insert("action".into(), json!(s.Action));
            if let Some(oci::linux_syscall::ErrnoRet::Errnoret(errno)) = &s.ErrnoRet {
                call.insert("errnoRet".into(), json!(errno));
            }
            if !s.Args.is_empty() {
                call.insert(
                    "args".into(),
                    Value::Array(
                        s.Args
                            .iter()
                            .map(|a| {
                                json!({
                                    "index": a.Index, "value": a.Value,
                                    "valueTwo": a.ValueTwo, "op": a.Op,
                                })
                            })
                            .collect(),
                    ),
                );
            }
            Value::Object(call)
        })
        .collect();
    json!({
        "defaultAction": seccomp.DefaultAction,
        "architectures": seccomp.Architectures,
        "flags": seccomp.Flags,
        "syscalls": syscalls,
    })
}

/// The spec's `net.*` sysctls: the container shares the VM's network namespace (the
/// pod's), so the agent writes them there before the container starts.
pub fn net_sysctls(spec: &oci::Spec) -> Vec<(String, String)> {
    let mut sysctls: Vec<(String, String)> = spec
        .Linux
        .as_ref()
        .map(|l| {
            l.Sysctl
                .iter()
                .filter(|(k, _)| k.starts_with("net."))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default();
    sysctls.sort();
    sysctls
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount_destinations(config: &Value) -> Vec<&str> {
        config["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn workload_containers_get_configfs_and_the_initdata_after_the_specs_mounts() {
        let mut spec = oci::Spec::new();
        let mut sys = oci::Mount::new();
        sys.destination = "/sys".to_owned();
        sys.type_ = "sysfs".to_owned();
        sys.source = "sysfs".to_owned();
        spec.Mounts.push(sys);
        let rootfs = Path::new("/run/kata-containers/c1/rootfs");
        let initdata = Path::new("/run/measured-cfg/initdata.toml");
        let mut placement = Placement {
            rootfs,
            pause_pid: Some(7),
            share_pid: false,
            cgroup: "/contrast/c1/container".to_owned(),
            run_dir: Path::new("/run/kata-containers"),
            initdata: Some(initdata),
        };
        let config = config_json(&spec, &placement);
        assert_eq!(
            mount_destinations(&config),
            ["/sys", CONFIGFS_MOUNT, INITDATA_MOUNT]
        );
        let initdata_mount = &config["mounts"][2];
        assert_eq!(initdata_mount["source"], "/run/measured-cfg/initdata.toml");
        assert!(
            initdata_mount["options"]
                .as_array()
                .unwrap()
                .contains(&json!("ro"))
        );

        // Without a verified document: configfs only.
        placement.initdata = None;
        assert_eq!(
            mount_destinations(&config_json(&spec, &placement)),
            ["/sys", CONFIGFS_MOUNT]
        );
        // The pause container gets neither.
        placement.initdata = Some(initdata);
        placement.pause_pid = None;
        assert_eq!(
            mount_destinations(&config_json(&spec, &placement)),
            ["/sys"]
        );
    }
}
