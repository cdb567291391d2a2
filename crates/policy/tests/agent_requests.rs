//! Each generated policy, evaluated in regorus the way the Kata agent evaluates it:
//! the requests a faithful runtime sends for the pod are allowed, and each change an
//! attacker controlling the host could make is refused.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};
#[test]
fn every_request_of_a_faithful_runtime_is_allowed() {
    for file in ["web.json", "mesh.json"] {
        let case = Case::load(file);
        let policy = case.policy();
        let requests = case.requests();
        assert!(requests.len() > 4, "{file}");
        // In order, on one engine, as the agent decides them.
        let mut agent = contrast_policy::AgentPolicy::new(&policy).unwrap();
        for (name, request) in &requests {
            let e = agent.decide(name, request).unwrap();
            assert!(
                e.allowed,
                "{file}: {name} denied: {:?}\n{request:#}",
                e.prints
            );
        }
    }
}

fn env_mut(r: &mut Value) -> &mut Vec<Value> {
    r["OCI"]["Process"]["Env"].as_array_mut().unwrap()
}

fn mounts_mut(r: &mut Value) -> &mut Vec<Value> {
    r["OCI"]["Mounts"].as_array_mut().unwrap()
}

fn mount_at<'a>(r: &'a mut Value, destination: &str) -> &'a mut Value {
    mounts_mut(r)
        .iter_mut()
        .find(|m| m["destination"] == destination)
        .unwrap()
}

const OTHER_DIGEST: &str =
    "sha256:9999999999999999999999999999999999999999999999999999999999999999";

#[test]
fn create_container_denials() {
    let case = Case::load("web.json");
    let policy = case.policy();
    let requests = case.requests();
    let web = create_request(&requests, "web");
    assert_allowed(&policy, "CreateContainerRequest", &web);

    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "another image digest",
            "image",
            changed(&web, |r| {
                let source = r["storages"][0]["source"].as_str().unwrap().to_owned();
                let (name, _) = source.split_once('@').unwrap();
                r["storages"][0]["source"] = json!(format!("{name}@{OTHER_DIGEST}"));
            }),
        ),
        (
            "the image by tag",
            "image",
            changed(&web, |r| {
                r["storages"][0]["source"] = json!("docker.io/library/nginx:latest");
            }),
        ),
        (
            "the digest followed by another",
            "image",
            changed(&web, |r| {
                let source = r["storages"][0]["source"].as_str().unwrap().to_owned();
                r["storages"][0]["source"] = json!(format!(
                    "evil.example/x@{OTHER_DIGEST}@{}",
                    source.rsplit_once('@').unwrap().1
                ));
            }),
        ),
        (
            "no guest pull",
            "image",
            changed(&web, |r| {
                r["storages"].as_array_mut().unwrap().remove(0);
            }),
        ),
        (
            "two guest pulls",
            "image",
            changed(&web, |r| {
                let pull = r["storages"][0].clone();
                r["storages"].as_array_mut().unwrap().push(pull);
            }),
        ),
        (
            "the root where a runtime with a shared file system puts it",
            "image, root",
            changed(&web, |r| {
                let id = r["container_id"].as_str().unwrap().to_owned();
                let shared = format!("/run/kata-containers/shared/containers/{id}/rootfs");
                r["OCI"]["Root"]["Path"] = json!(shared);
                r["storages"][0]["mount_point"] = json!(shared);
            }),
        ),
        (
            "the image pulled elsewhere than the root",
            "image",
            changed(&web, |r| {
                r["storages"][0]["mount_point"] =
                    json!("/run/kata-containers/shared/containers/x/rootfs");
            }),
        ),
        (
            "guest-pull metadata saying sandbox",
            "image",
            changed(&web, |r| {
                r["storages"][0]["driver_options"] = json!([
                    r#"image_guest_pull={"metadata":{"io.kubernetes.cri.container-type":"sandbox"}}"#
                ]);
            }),
        ),
        (
            "an added env var",
            "env",
            changed(&web, |r| env_mut(r).push(json!("LD_PRELOAD=/tmp/evil.so"))),
        ),
        (
            "a changed env var",
            "env",
            changed(&web, |r| {
                for e in env_mut(r) {
                    if e == "PORT=8080" {
                        *e = json!("PORT=9090");
                    }
                }
            }),
        ),
        (
            "a changed image env var",
            "env",
            changed(&web, |r| {
                for e in env_mut(r) {
                    if e.as_str().unwrap().starts_with("PATH=") {
                        *e = json!("PATH=/tmp:/usr/bin");
                    }
                }
            }),
        ),
        (
            "a removed env var",
            "env",
            changed(&web, |r| {
                env_mut(r).retain(|e| !e.as_str().unwrap().starts_with("API_TOKEN="))
            }),
        ),
        (
            "a duplicated env var",
            "env",
            changed(&web, |r| env_mut(r).push(json!("PORT=8080"))),
        ),
        (
            "a downward API value of the wrong shape",
            "env",
            changed(&web, |r| {
                for e in env_mut(r) {
                    if e.as_str().unwrap().starts_with("POD_IP=") {
                        *e = json!("POD_IP=evil.example");
                    }
                }
            }),
        ),
        (
            "another pod's name",
            "env",
            changed(&web, |r| {
                for e in env_mut(r) {
                    if e.as_str().unwrap().starts_with("POD_NAME=") {
                        *e = json!("POD_NAME=other");
                    }
                }
            }),
        ),
        (
            "an env entry without '='",
            "env",
            changed(&web, |r| env_mut(r).push(json!("JUSTANAME"))),
        ),
        (
            "a changed command",
            "args",
            changed(&web, |r| r["OCI"]["Process"]["Args"][0] = json!("/bin/sh")),
        ),
        (
            "an added argument",
            "args",
            changed(&web, |r| {
                r["OCI"]["Process"]["Args"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("-c"))
            }),
        ),
        (
            "another working directory",
            "cwd",
            changed(&web, |r| r["OCI"]["Process"]["Cwd"] = json!("/")),
        ),
        (
            "an added mount",
            "mounts",
            changed(&web, |r| {
                mounts_mut(r).push(json!({
            "destination": "/mnt/evil",
            "source": "/run/kata-containers/shared/containers/0000000000000000000000000000000000000000000000000000c0de0002-0123456789abcdef-evil",
            "type_": "bind",
            "options": ["rbind", "rprivate", "rw"],
        }))
            }),
        ),
        (
            "the secrets volume somewhere else",
            "mounts",
            changed(&web, |r| {
                mount_at(r, "/var/cache/nginx")["source"] =
                    json!("/run/kata-containers/sandbox/ephemeral/contrast-secrets");
                mount_at(r, "/var/cache/nginx")["type_"] = json!("bind");
            }),
        ),
        (
            "a declared mount missing",
            "mounts",
            changed(&web, |r| {
                mounts_mut(r).retain(|m| m["destination"] != "/contrast")
            }),
        ),
        (
            "a read-only mount writable",
            "mounts",
            changed(&web, |r| {
                mount_at(r, "/contrast")["options"] = json!(["rbind", "rprivate", "rw"])
            }),
        ),
        (
            "a read-only mount with rw too",
            "mounts",
            changed(&web, |r| {
                mount_at(r, "/etc/web-secret")["options"] = json!(["rbind", "ro", "rw"])
            }),
        ),
        (
            "a writable sysfs",
            "mounts",
            changed(&web, |r| mount_at(r, "/sys")["options"] = json!(["nosuid"])),
        ),
        (
            "a mount of another type",
            "mounts",
            changed(&web, |r| mount_at(r, "/proc")["type_"] = json!("bind")),
        ),
        (
            "two mounts at one destination",
            "mounts",
            changed(&web, |r| {
                // Each would be allowed alone: another copy of the hosts file.
                let mut hosts = mount_at(r, "/etc/hosts").clone();
                let source = hosts["source"].as_str().unwrap().to_owned();
                let (prefix, _) = source.rsplit_once("-hosts").unwrap();
                let (prefix, _) = prefix.rsplit_once('-').unwrap();
                hosts["source"] = json!(format!("{prefix}-fedcba9876543210-hosts"));
                mounts_mut(r).push(hosts);
            }),
        ),
        (
            "an emptyDir of another container id",
            "mounts",
            changed(&web, |r| {
                mount_at(r, "/etc/hosts")["source"] = json!(
                    "/run/kata-containers/shared/containers/0000000000000000000000000000000000000000000000000000c0de0001-0123456789abcdef-hosts"
                );
            }),
        ),
        (
            "privilege escalation",
            "no_new_privileges",
            changed(&web, |r| {
                r["OCI"]["Process"]["NoNewPrivileges"] = json!(false)
            }),
        ),
        (
            "an added capability",
            "capabilities",
            changed(&web, |r| {
                r["OCI"]["Process"]["Capabilities"]["Bounding"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("CAP_SYS_ADMIN"))
            }),
        ),
        (
            "an ambient capability",
            "capabilities",
            changed(&web, |r| {
                r["OCI"]["Process"]["Capabilities"]["Ambient"] = json!(["CAP_SYS_PTRACE"])
            }),
        ),
        (
            "no capabilities object",
            "capabilities",
            changed(&web, |r| r["OCI"]["Process"]["Capabilities"] = json!(null)),
        ),
        (
            "root",
            "user",
            changed(&web, |r| r["OCI"]["Process"]["User"]["UID"] = json!(0)),
        ),
        (
            "another group",
            "user",
            changed(&web, |r| r["OCI"]["Process"]["User"]["GID"] = json!(0)),
        ),
        (
            "an added supplementary group",
            "user",
            changed(&web, |r| {
                r["OCI"]["Process"]["User"]["AdditionalGids"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!(0))
            }),
        ),
        (
            "a writable root",
            "root",
            changed(&web, |r| r["OCI"]["Root"]["Readonly"] = json!(false)),
        ),
        (
            "another root path",
            "root",
            changed(&web, |r| r["OCI"]["Root"]["Path"] = json!("/")),
        ),
        (
            "a hook",
            "hooks",
            changed(
                &web,
                |r| {
                    r["OCI"]["Hooks"] =
                        json!({"Prestart": [{"Path": "/bin/sh", "Args": ["sh", "-c", "id"]}]})
                },
            ),
        ),
        (
            "no mount namespace",
            "namespaces",
            changed(&web, |r| {
                r["OCI"]["Linux"]["Namespaces"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|n| n["Type"] != "mount")
            }),
        ),
        (
            "the guest's mount namespace",
            "namespaces",
            changed(&web, |r| {
                for n in r["OCI"]["Linux"]["Namespaces"].as_array_mut().unwrap() {
                    if n["Type"] == "mount" {
                        n["Path"] = json!("/proc/1/ns/mnt");
                    }
                }
            }),
        ),
        (
            "unmasked /proc/kcore",
            "masked_paths",
            changed(&web, |r| {
                r["OCI"]["Linux"]["MaskedPaths"]
                    .as_array_mut()
                    .unwrap()
                    .retain(|p| p != "/proc/kcore")
            }),
        ),
        (
            "writable /proc/sys",
            "masked_paths",
            changed(&web, |r| r["OCI"]["Linux"]["ReadonlyPaths"] = json!([])),
        ),
        (
            "an added sysctl",
            "sysctls",
            changed(&web, |r| {
                r["OCI"]["Linux"]["Sysctl"]["kernel.shm_rmid_forced"] = json!("1")
            }),
        ),
        (
            "a changed sysctl",
            "sysctls",
            changed(&web, |r| {
                r["OCI"]["Linux"]["Sysctl"]["net.ipv4.tcp_keepalive_time"] = json!("1")
            }),
        ),
        (
            "the sandbox's PID namespace",
            "pid_namespace",
            changed(&web, |r| r["sandbox_pidns"] = json!(true)),
        ),
        (
            "another namespace",
            "sandbox",
            changed(&web, |r| {
                r["OCI"]["Annotations"]["io.kubernetes.cri.sandbox-namespace"] = json!("default")
            }),
        ),
        (
            "another pod",
            "sandbox",
            changed(&web, |r| {
                r["OCI"]["Annotations"]["io.kubernetes.cri.sandbox-name"] = json!("webshop")
            }),
        ),
        (
            "an undeclared container",
            "has no",
            changed(&web, |r| {
                r["OCI"]["Annotations"]["io.kubernetes.cri.container-name"] = json!("debug")
            }),
        ),
        (
            "another container's identity",
            "args, cwd, env, image, mounts, storages, user",
            changed(&web, |r| {
                r["OCI"]["Annotations"]["io.kubernetes.cri.container-name"] =
                    json!("contrast-initializer")
            }),
        ),
        (
            "an unknown container type",
            "has no",
            changed(&web, |r| {
                r["OCI"]["Annotations"]["io.kubernetes.cri.container-type"] = json!("ephemeral")
            }),
        ),
        (
            "a host-shared storage",
            "storages",
            changed(&web, |r| {
                r["storages"].as_array_mut().unwrap().push(json!({
            "driver": "virtio-fs", "driver_options": [], "source": "kataShared", "fstype": "virtiofs",
            "options": [], "mount_point": "/run/kata-containers/shared/containers/x", "fs_group": null,
        }))
            }),
        ),
        (
            "an emptyDir storage elsewhere",
            "storages",
            changed(&web, |r| {
                for s in r["storages"].as_array_mut().unwrap() {
                    if s["driver"] == "ephemeral" {
                        s["mount_point"] = json!("/run/measured-cfg");
                    }
                }
            }),
        ),
        (
            "a device",
            "devices",
            changed(
                &web,
                |r| r["devices"] = json!([{"id": "1", "type_": "blk", "vm_path": "/dev/vdb", "container_path": "/dev/sda", "options": []}]),
            ),
        ),
        (
            "a bad container id",
            "ids, image, mounts, root",
            changed(&web, |r| r["container_id"] = json!("../../etc")),
        ),
        (
            "a bad sandbox id",
            "ids",
            changed(&web, |r| {
                r["OCI"]["Annotations"]["io.kubernetes.cri.sandbox-id"] = json!(".*")
            }),
        ),
    ];
    for (why, failing, request) in &cases {
        assert_denied_by(&policy, "CreateContainerRequest", request, why, failing);
    }
}

#[test]
fn the_pause_container_runs_the_guest_bundle_only() {
    let case = Case::load("web.json");
    let policy = case.policy();
    let pause = pause_request(&case.requests());
    assert_allowed(&policy, "CreateContainerRequest", &pause);
    // The pause image reference does not matter: the guest runs its own bundle.
    let other_image = changed(&pause, |r| {
        r["storages"][0]["source"] = json!("evil.example/pause:1")
    });
    assert_allowed(&policy, "CreateContainerRequest", &other_image);

    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "metadata that makes the agent pull the image",
            "image",
            changed(&pause, |r| {
                r["storages"][0]["driver_options"] = json!([
                    r#"image_guest_pull={"metadata":{"io.kubernetes.cri.container-type":"container"}}"#
                ]);
            }),
        ),
        (
            "no metadata",
            "image",
            changed(&pause, |r| r["storages"][0]["driver_options"] = json!([])),
        ),
        (
            "metadata twice",
            "image",
            changed(&pause, |r| {
                let option = r["storages"][0]["driver_options"][0].clone();
                r["storages"][0]["driver_options"]
                    .as_array_mut()
                    .unwrap()
                    .push(option);
            }),
        ),
        (
            "metadata that is not JSON",
            "image",
            changed(&pause, |r| {
                r["storages"][0]["driver_options"] = json!(["image_guest_pull={"])
            }),
        ),
        (
            "a rootfs from the host",
            "image, storages",
            changed(&pause, |r| {
                r["storages"] = json!([{
                    "driver": "blk", "driver_options": [], "source": "/dev/vdb", "fstype": "ext4",
                    "options": [], "mount_point": r["OCI"]["Root"]["Path"], "fs_group": null,
                }])
            }),
        ),
        (
            "another command",
            "args",
            changed(&pause, |r| {
                r["OCI"]["Process"]["Args"] = json!(["/bin/sh", "-c", "id"])
            }),
        ),
        (
            "an env var",
            "env",
            changed(&pause, |r| env_mut(r).push(json!("LD_PRELOAD=/x.so"))),
        ),
        (
            "an added mount",
            "mounts",
            changed(&pause, |r| {
                mounts_mut(r).push(json!({
            "destination": "/secrets", "source": "/run/kata-containers/sandbox/ephemeral/contrast-secrets",
            "type_": "bind", "options": ["rbind"],
        }))
            }),
        ),
        (
            "a container id other than the sandbox's",
            "image, mounts",
            changed(&pause, |r| {
                let id = format!("{:064x}", 7);
                r["container_id"] = json!(id);
                r["OCI"]["Root"]["Path"] = json!(format!("/run/kata-containers/{id}/rootfs"));
                r["storages"][0]["mount_point"] = r["OCI"]["Root"]["Path"].clone();
            }),
        ),
        (
            "a device",
            "devices",
            changed(&pause, |r| {
                r["devices"] = json!([{"container_path": "/dev/mem"}])
            }),
        ),
        (
            "a hook",
            "hooks",
            changed(&pause, |r| {
                r["OCI"]["Hooks"] = json!({"Poststart": [{"Path": "/bin/true"}]})
            }),
        ),
        (
            "another pod",
            "sandbox",
            changed(&pause, |r| {
                r["OCI"]["Annotations"]["io.kubernetes.cri.sandbox-name"] = json!("other")
            }),
        ),
    ];
    for (why, failing, request) in &cases {
        assert_denied_by(&policy, "CreateContainerRequest", request, why, failing);
    }
}

#[test]
fn exec_only_runs_declared_commands_as_declared() {
    let case = Case::load("web.json");
    let policy = case.policy();
    let requests = case.requests();
    let execs = request_named(&requests, "ExecProcessRequest");
    assert_eq!(
        execs.len(),
        1,
        "the readiness probe (the liveness probe is httpGet)"
    );
    let probe = execs[0];
    assert_eq!(probe["process"]["Args"], json!(["cat", "/srv/ready"]));
    // An exec runs in a container the sandbox created: not before.
    assert_denied(
        &policy,
        "ExecProcessRequest",
        probe,
        "before the container exists",
    );
    let policy = case.running();
    assert_allowed(&policy, "ExecProcessRequest", probe);
    // As the runtime sends it: no capabilities (the agent gives the exec the container's)
    // and no NoNewPrivileges (kata_agent.go cmdToKataProcess).
    assert_eq!(probe["process"]["Capabilities"], Value::Null);
    assert_eq!(probe["process"]["NoNewPrivileges"], json!(false));
    // Naming capabilities, even the container's own, is not what the runtime does.
    let create = create_request(&requests, "web");
    let named = changed(probe, |r| {
        r["process"]["Capabilities"] = create["OCI"]["Process"]["Capabilities"].clone()
    });
    assert_denied(&policy, "ExecProcessRequest", &named, "named capabilities");

    for (why, request) in [
        (
            "an undeclared command",
            changed(probe, |r| r["process"]["Args"] = json!(["/bin/sh"])),
        ),
        (
            "a declared command with more arguments",
            changed(probe, |r| {
                r["process"]["Args"] = json!(["cat", "/srv/ready", "/contrast/tls-config/key.pem"])
            }),
        ),
        (
            "kubectl exec",
            changed(probe, |r| {
                r["process"]["Args"] =
                    json!(["sh", "-c", "cat /contrast/secrets/workload-secret-seed"])
            }),
        ),
        (
            "an added env var",
            changed(probe, |r| {
                r["process"]["Env"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!("LD_PRELOAD=/tmp/x.so"))
            }),
        ),
        (
            "as root",
            changed(probe, |r| r["process"]["User"]["UID"] = json!(0)),
        ),
        (
            "with more capabilities",
            changed(probe, |r| {
                r["process"]["Capabilities"]["Effective"] = json!(["CAP_SYS_ADMIN"])
            }),
        ),
        (
            "in another directory",
            changed(probe, |r| r["process"]["Cwd"] = json!("/contrast")),
        ),
        (
            "with a bad container id",
            changed(probe, |r| r["container_id"] = json!("x")),
        ),
    ] {
        assert_denied(&policy, "ExecProcessRequest", &request, why);
    }
    let (_, prints) = decide(
        &policy,
        "ExecProcessRequest",
        &changed(probe, |r| r["process"]["Args"] = json!(["/bin/sh"])),
    );
    assert!(prints.contains("fails these checks: args"), "{prints}");
}

/// The agent keeps which container each ID was created as: an exec is held to the probes
/// of the container it targets, and a removed container takes no exec.
#[test]
fn exec_is_tied_to_the_container_it_targets() {
    let case = Case::load("mesh.json");
    let requests = case.requests();
    let running = case.running();
    let execs = request_named(&requests, "ExecProcessRequest");
    let probe = execs[0];
    assert_allowed(&running, "ExecProcessRequest", probe);
    let target = probe["container_id"].as_str().unwrap().to_owned();
    let sandbox_id = request_named(&requests, "CreateSandboxRequest")[0]["sandbox_id"].clone();
    let other = requests
        .iter()
        .find(|(n, r)| {
            n == "CreateContainerRequest"
                && r["container_id"] != json!(target)
                && r["container_id"] != sandbox_id
        })
        .map(|(_, r)| r["container_id"].clone())
        .unwrap();
    for (why, request) in [
        (
            "a probe of one container in another",
            changed(probe, |r| r["container_id"] = other.clone()),
        ),
        (
            "in the pause container",
            changed(probe, |r| r["container_id"] = sandbox_id.clone()),
        ),
        (
            "in a container never created",
            changed(probe, |r| r["container_id"] = json!(format!("{:064x}", 99))),
        ),
        (
            "as a user named by string",
            changed(probe, |r| {
                r["string_user"] = json!({"uid": "0", "gid": "0", "additionalGids": []})
            }),
        ),
        (
            "with an AppArmor profile",
            changed(probe, |r| {
                r["process"]["ApparmorProfile"] = json!("unconfined")
            }),
        ),
        (
            "with an SELinux label",
            changed(probe, |r| {
                r["process"]["SelinuxLabel"] = json!("system_u:system_r:spc_t:s0")
            }),
        ),
    ] {
        assert_denied(&running, "ExecProcessRequest", &request, why);
    }
    let mut removed = running.clone();
    let remove = json!({"container_id": target, "timeout": 0});
    assert!(
        removed
            .decide("RemoveContainerRequest", &remove)
            .unwrap()
            .allowed
    );
    assert_denied(
        &removed,
        "ExecProcessRequest",
        probe,
        "after RemoveContainer",
    );
    // Removing what is not there is allowed and changes nothing.
    assert!(
        removed
            .decide("RemoveContainerRequest", &remove)
            .unwrap()
            .allowed
    );
}

/// What the runtime may set that only shapes the container's own limits: a cgroup path in
/// either driver's form, an open-files limit, a core limit of zero.
#[test]
fn cgroup_paths_and_rlimits_of_a_real_runtime_are_allowed() {
    let case = Case::load("web.json");
    let requests = case.requests();
    let web = create_request(&requests, "web");
    let id = web["container_id"].as_str().unwrap().to_owned();
    let agent = before(&case.policy(), &requests, &web);
    for path in [
        format!("/kubepods/besteffort/pod0f0e0d0c-0b0a-4908-8706-050403020100/{id}"),
        format!(
            "kubepods-burstable-pod0f0e0d0c_0b0a_4908_8706_050403020100.slice:cri-containerd:{id}"
        ),
        String::new(),
    ] {
        assert_allowed(
            &agent,
            "CreateContainerRequest",
            &changed(&web, |r| r["OCI"]["Linux"]["CgroupsPath"] = json!(path)),
        );
    }
    for rlimits in [
        json!([{"Type": "RLIMIT_NOFILE", "Hard": 1_048_576, "Soft": 1_048_576}]),
        json!([{"Type": "RLIMIT_CORE", "Hard": 0, "Soft": 0}]),
    ] {
        assert_allowed(
            &agent,
            "CreateContainerRequest",
            &changed(&web, |r| r["OCI"]["Process"]["Rlimits"] = rlimits.clone()),
        );
    }
    for (why, path) in [
        ("a parent component", "/kubepods/../x"),
        ("a dot component", "/kubepods/./x"),
        ("a relative path", "kubepods/x"),
        ("a dot slice", ".:cri-containerd:x"),
        ("a slash in a systemd part", "a/b:cri-containerd:x"),
    ] {
        assert_denied_by(
            &agent,
            "CreateContainerRequest",
            &changed(&web, |r| r["OCI"]["Linux"]["CgroupsPath"] = json!(path)),
            why,
            "cgroups_path",
        );
    }
}

/// What the real containerd 1.6 sends for a pause container (seen through our shim in
/// qemu-tests/tests/containerd.rs): `/dev/shm` twice (its default tmpfs and the sandbox's
/// bind, both turned into the same bind of the guest's shm by the runtime), and in a
/// host-network pod no UTS namespace.
#[test]
fn the_pause_container_as_containerd_sends_it_is_allowed() {
    let case = Case::load("web.json");
    let requests = case.requests();
    let pause = pause_request(&requests);
    let agent = before(&case.policy(), &requests, &pause);
    let shm_twice = changed(&pause, |r| {
        let shm = mount_at(r, "/dev/shm").clone();
        mounts_mut(r).push(shm);
    });
    assert_allowed(&agent, "CreateContainerRequest", &shm_twice);
    let without_uts = |r: &mut Value| {
        r["OCI"]["Linux"]["Namespaces"]
            .as_array_mut()
            .unwrap()
            .retain(|ns| ns["Type"] != "uts");
    };
    // Not in a pod with its own network: its sandbox has its own hostname.
    assert_denied_by(
        &agent,
        "CreateContainerRequest",
        &changed(&pause, without_uts),
        "no UTS namespace in a pod-network pod",
        "namespaces",
    );

    let mut host = Case::load("web.json");
    host.spec["hostNetwork"] = json!(true);
    let requests = host.requests();
    let pause = pause_request(&requests);
    let namespaces: Vec<&str> = pause["OCI"]["Linux"]["Namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ns| ns["Type"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["ipc", "mount"]);
    let agent = before(&host.policy(), &requests, &pause);
    assert_allowed(&agent, "CreateContainerRequest", &pause);
    assert_denied_by(
        &agent,
        "CreateContainerRequest",
        &changed(&pause, |r| {
            r["OCI"]["Linux"]["Namespaces"]
                .as_array_mut()
                .unwrap()
                .insert(1, json!({"Type": "uts", "Path": ""}));
        }),
        "a UTS namespace of its own in a host-network pod",
        "namespaces",
    );
    // The app containers keep their own UTS namespace.
    let web = create_request(&requests, "web");
    assert_eq!(
        web["OCI"]["Linux"]["Namespaces"].as_array().unwrap().len(),
        3
    );
}

/// A downward-API variable of a label the pod sets must carry that label's value (the
/// control plane could otherwise choose it).
#[test]
fn a_label_variable_carries_the_label_value() {
    let mut case = Case::load("web.json");
    case.labels = [("tier".to_owned(), "frontend".to_owned())].into();
    let web = case.spec["containers"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|c| c["name"] == "web")
        .unwrap();
    web["env"].as_array_mut().unwrap().push(
        json!({"name": "TIER", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['tier']"}}}),
    );
    let requests = case.requests();
    let create = create_request(&requests, "web");
    let env = create["OCI"]["Process"]["Env"].as_array().unwrap();
    assert!(env.contains(&json!("TIER=frontend")), "{env:?}");
    let agent = before(&case.policy(), &requests, &create);
    assert_allowed(&agent, "CreateContainerRequest", &create);
    let relabelled = changed(&create, |r| {
        for e in r["OCI"]["Process"]["Env"].as_array_mut().unwrap() {
            if e == "TIER=frontend" {
                *e = json!("TIER=backend");
            }
        }
    });
    assert_denied_by(
        &agent,
        "CreateContainerRequest",
        &relabelled,
        "another label value",
        "env",
    );
}

/// With virtio-blk the runtime names a block volume by its PCI path, with virtio-scsi by
/// its SCSI address: each policy admits its platform's type only.
#[test]
fn block_devices_come_as_the_platforms_driver_sends_them() {
    use contrast_platforms::kata::BlockDeviceDriver;
    let mut case = Case::load("mesh.json");
    for (driver, device_type, other) in [
        (BlockDeviceDriver::VirtioScsi, "scsi", "blk"),
        (BlockDeviceDriver::VirtioBlk, "blk", "scsi"),
    ] {
        case.runtime.block_device_driver = driver;
        let requests = case.requests();
        let create = requests
            .iter()
            .find(|(n, r)| {
                n == "CreateContainerRequest"
                    && r["devices"].as_array().is_some_and(|d| !d.is_empty())
            })
            .unwrap()
            .1
            .clone();
        assert_eq!(create["devices"][0]["type_"], device_type);
        let agent = before(&case.policy(), &requests, &create);
        assert_allowed(&agent, "CreateContainerRequest", &create);
        let swapped = changed(&create, |r| {
            r["devices"][0]["type_"] = json!(other);
            r["devices"][0]["id"] = json!(if other == "blk" { "02/00" } else { "0:1" });
        });
        assert_denied_by(&agent, "CreateContainerRequest", &swapped, other, "devices");
    }
}

/// A resource that names no namespace runs where it is applied (Kubernetes fills the
/// namespace in): the policy admits any namespace, the one the sandbox's first container
/// names, and `metadata.namespace` variables carry it.
#[test]
fn a_pod_without_a_namespace_runs_in_the_one_it_is_applied_to() {
    let mut case = Case::load("web.json");
    case.namespace = String::new();
    for object in case.config_maps.iter_mut().chain(case.secrets.iter_mut()) {
        object["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("namespace");
    }
    let policy = case.policy();
    let requests: Vec<(String, Value)> = case
        .requests()
        .into_iter()
        .map(|(name, mut r)| {
            if let Some(a) = r["OCI"]["Annotations"].as_object_mut() {
                a.insert(
                    "io.kubernetes.cri.sandbox-namespace".into(),
                    json!("team-a"),
                );
            }
            for pointer in ["/OCI/Process/Env", "/process/Env"] {
                let list = r.pointer_mut(pointer).and_then(Value::as_array_mut);
                for e in list.into_iter().flatten() {
                    if e == "POD_NAMESPACE=default" {
                        *e = json!("POD_NAMESPACE=team-a");
                    }
                }
            }
            (name, r)
        })
        .collect();
    let web = create_request(&requests, "web");
    assert!(
        web["OCI"]["Process"]["Env"]
            .as_array()
            .unwrap()
            .contains(&json!("POD_NAMESPACE=team-a"))
    );
    let mut agent = contrast_policy::AgentPolicy::new(&policy).unwrap();
    let mut before_web = None;
    for (name, request) in &requests {
        if request == &web {
            before_web = Some(agent.clone());
        }
        let e = agent.decide(name, request).unwrap();
        assert!(e.allowed, "{name}: {:?}", e.prints);
    }
    let before_web = before_web.unwrap();
    assert_denied_by(
        &before_web,
        "CreateContainerRequest",
        &changed(&web, |r| {
            r["OCI"]["Annotations"]["io.kubernetes.cri.sandbox-namespace"] = json!("team-b");
        }),
        "a container in another namespace than its sandbox's",
        "env, sandbox_state",
    );
    assert_denied_by(
        &before_web,
        "CreateContainerRequest",
        &changed(&web, |r| {
            for e in r["OCI"]["Process"]["Env"].as_array_mut().unwrap() {
                if e == "POD_NAMESPACE=team-a" {
                    *e = json!("POD_NAMESPACE=default");
                }
            }
        }),
        "a namespace variable that is not the sandbox's",
        "env",
    );
    assert_denied_by(
        &policy,
        "CreateContainerRequest",
        &changed(&pause_request(&requests), |r| {
            r["OCI"]["Annotations"]["io.kubernetes.cri.sandbox-namespace"] = json!("Team_B");
        }),
        "a namespace that is no namespace name",
        "sandbox",
    );
    // Where the resource names its namespace, only that one.
    let named = Case::load("web.json");
    assert_denied_by(
        &named.policy(),
        "CreateContainerRequest",
        &pause_request(&requests),
        "the resource's namespace is shop",
        "sandbox",
    );
}

#[test]
fn a_privileged_sidecar_with_probes_a_terminal_and_no_service_links() {
    let case = Case::load("mesh.json");
    let policy = case.policy();
    let requests = case.requests();
    let mesh = create_request(&requests, "contrast-service-mesh");
    let app = create_request(&requests, "app");

    // Privileged: every capability, writable sysfs, no masked paths.
    assert_eq!(
        mesh["OCI"]["Process"]["Capabilities"]["Bounding"]
            .as_array()
            .unwrap()
            .len(),
        41
    );
    assert_allowed(
        &policy,
        "CreateContainerRequest",
        &changed(&mesh, |r| {
            mount_at(r, "/sys")["options"] = json!(["nosuid", "noexec", "nodev"]);
            r["OCI"]["Linux"]["MaskedPaths"] = json!([]);
        }),
    );
    // Shared PID namespace as declared.
    assert_eq!(app["sandbox_pidns"], json!(true));
    // A Deployment's pod names.
    for name in ["emoji-7d9f8b6c5d-x2x4z", "emoji-0", "emoji"] {
        let renamed = changed(&app, |r| {
            r["OCI"]["Annotations"]["io.kubernetes.cri.sandbox-name"] = json!(name);
        });
        assert_allowed(&policy, "CreateContainerRequest", &renamed);
    }
    for name in ["emojix", "emoji-a-b-c", "other-emoji"] {
        let renamed = changed(&app, |r| {
            r["OCI"]["Annotations"]["io.kubernetes.cri.sandbox-name"] = json!(name)
        });
        assert_denied_by(&policy, "CreateContainerRequest", &renamed, name, "sandbox");
    }
    // The namespace defaults to "default".
    assert_eq!(
        app["OCI"]["Annotations"]["io.kubernetes.cri.sandbox-namespace"],
        json!("default")
    );
    // A terminal gets TERM; without one, TERM is an added variable.
    assert!(
        app["OCI"]["Process"]["Env"]
            .as_array()
            .unwrap()
            .contains(&json!("TERM=xterm"))
    );
    assert_denied_by(
        &policy,
        "CreateContainerRequest",
        &changed(&mesh, |r| env_mut(r).push(json!("TERM=xterm"))),
        "TERM",
        "env",
    );
    // Without service links, only the API server's service variables.
    assert_allowed(
        &policy,
        "CreateContainerRequest",
        &changed(&app, |r| {
            env_mut(r).push(json!("KUBERNETES_SERVICE_PORT_METRICS=8443"))
        }),
    );
    assert_denied_by(
        &policy,
        "CreateContainerRequest",
        &changed(&app, |r| env_mut(r).push(json!("DB_SERVICE_HOST=10.0.0.9"))),
        "service link",
        "env",
    );
    // The declared block device, and no other.
    assert_eq!(app["devices"][0]["container_path"], json!("/dev/csi0"));
    assert_denied_by(
        &policy,
        "CreateContainerRequest",
        &changed(&app, |r| {
            r["devices"][0]["container_path"] = json!("/dev/vda")
        }),
        "device",
        "devices",
    );
    // Image user 65532 without a group: GID 0 or 65532.
    assert_eq!(app["OCI"]["Process"]["User"]["UID"], json!(65532));
    for gid in [0, 65532] {
        assert_allowed(
            &policy,
            "CreateContainerRequest",
            &changed(&app, |r| r["OCI"]["Process"]["User"]["GID"] = json!(gid)),
        );
    }
    assert_denied_by(
        &policy,
        "CreateContainerRequest",
        &changed(&app, |r| r["OCI"]["Process"]["User"]["GID"] = json!(100)),
        "gid",
        "user",
    );
    // No service account token was asked for.
    let token_source = format!(
        "/run/kata-containers/shared/containers/{}-0123456789abcdef-token",
        app["container_id"].as_str().unwrap()
    );
    assert_denied_by(
        &policy,
        "CreateContainerRequest",
        &changed(&app, |r| {
            mounts_mut(r).push(json!({
                "destination": "/var/run/secrets/kubernetes.io/serviceaccount",
                "source": token_source,
                "type_": "bind", "options": ["rbind", "ro"],
            }))
        }),
        "token",
        "mounts",
    );

    // Exec: the startup probe of the sidecar and the preStop handler of the app.
    let execs: Vec<&Value> = request_named(&requests, "ExecProcessRequest");
    let commands: Vec<&Value> = execs.iter().map(|e| &e["process"]["Args"]).collect();
    assert_eq!(
        commands,
        [
            &json!(["test", "-f", "/ready"]),
            &json!(["/bin/healthcheck", "--live"]),
            &json!(["/bin/sh", "-c", "sleep 5"])
        ]
    );
    // A command declared for one container, with another container's process, is refused.
    let swapped = changed(execs[1], |r| r["process"] = execs[0]["process"].clone());
    let swapped = changed(&swapped, |r| {
        r["process"]["Args"] = json!(["/bin/healthcheck", "--live"])
    });
    assert_denied(
        &policy,
        "ExecProcessRequest",
        &swapped,
        "the sidecar's process for the app's probe",
    );
}

/// A pod named by `generateName` gets the API server's five random characters after the
/// prefix: its requests carry that name, and the policy admits it and no other.
#[test]
fn a_generate_name_pod_is_admitted_by_its_generated_name() {
    let mut case = Case::load("web.json");
    case.name = "web-".to_owned();
    let generated = contrast_policy::PodInput {
        generate_name: true,
        ..case.input()
    };
    let policy = contrast_policy::policy_rego(&generated).unwrap();
    let requests = contrast_policy::expected_requests(&generated).unwrap();
    let web = create_request(&requests, "web");
    assert_eq!(
        web["OCI"]["Annotations"]["io.kubernetes.cri.sandbox-name"],
        "web-x7k2p"
    );
    let mut agent = contrast_policy::AgentPolicy::new(&policy).unwrap();
    for (name, request) in &requests {
        assert!(agent.decide(name, request).unwrap().allowed, "{name}");
    }
    for other in ["web-", "web-x7k2", "web-x7k2p9", "web-X7K2P", "other-x7k2p"] {
        let renamed = changed(&web, |r| {
            r["OCI"]["Annotations"]["io.kubernetes.cri.sandbox-name"] = json!(other)
        });
        assert_denied(&policy, "CreateContainerRequest", &renamed, other);
    }
    // Read as a plain name, the prefix admits no generated name.
    let plain = contrast_policy::policy_rego(&case.input()).unwrap();
    assert_denied(&plain, "CreateContainerRequest", &web, "a plain name");
}

/// The web pod with its disk-backed emptyDir (`cache`) as the runtime's block-encrypted
/// mode gives it: each mount a block device of its own, formatted under an ephemeral key.
fn block_encrypted_web() -> Case {
    let mut case = Case::load("web.json");
    case.runtime.emptydir_mode = contrast_platforms::kata::EmptyDirMode::BlockEncrypted;
    // A subpath of a block device is refused at generation (one device per mount).
    case.spec["containers"][0]["volumeMounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m.get("subPath").is_none());
    case
}

#[test]
fn block_encrypted_empty_dirs_are_admitted_as_the_runtime_sends_them() {
    let case = block_encrypted_web();
    let policy = case.policy();
    let requests = case.requests();
    let web = create_request(&requests, "web");
    let cache = web["storages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["driver"] == "scsi")
        .unwrap_or_else(|| panic!("no block storage: {:#}", web["storages"]))
        .clone();
    // The pod's fsGroup, a SCSI address and its mount point, as kata_agent.go sends them.
    assert_eq!(cache["fs_group"]["group_id"], 2000, "{cache:#}");
    let mount_point = cache["mount_point"].as_str().unwrap().to_owned();
    assert!(
        mount_point.starts_with("/run/kata-containers/sandbox/storage/"),
        "{mount_point}"
    );
    let agent = before(&policy, &requests, &web);
    assert_allowed(&agent, "CreateContainerRequest", &web);
    // As genpolicy: the mount may be left out; the agent's decoding fills a missing change
    // policy with 0.
    assert_allowed(
        &agent,
        "CreateContainerRequest",
        &changed(&web, |r| {
            mounts_mut(r).retain(|m| m["destination"] != "/var/cache/nginx");
        }),
    );
    // The request's block storage.
    fn storage(r: &mut Value) -> &mut Value {
        r["storages"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|s| s["driver"] == "scsi" || s["driver"] == "blk")
            .unwrap()
    }
    assert_allowed(
        &agent,
        "CreateContainerRequest",
        &changed(&web, |r| {
            storage(r)["fs_group"]
                .as_object_mut()
                .unwrap()
                .remove("group_change_policy");
        }),
    );

    type Change = Box<dyn Fn(&mut Value)>;
    let storage_changes: Vec<(&str, Change)> = vec![
        (
            "a disk the host filled: no ephemeral key",
            Box::new(|r| storage(r)["driver_options"] = json!(["create_filesystem"])),
        ),
        (
            "a disk not formatted anew",
            Box::new(|r| storage(r)["driver_options"] = json!(["encryption_key=ephemeral"])),
        ),
        (
            "another file system",
            Box::new(|r| storage(r)["fstype"] = json!("xfs")),
        ),
        (
            "mount options",
            Box::new(|r| storage(r)["options"] = json!(["exec"])),
        ),
        (
            "not kept for the sandbox",
            Box::new(|r| storage(r)["shared"] = json!(false)),
        ),
        (
            "another group",
            Box::new(|r| storage(r)["fs_group"]["group_id"] = json!(0)),
        ),
        (
            "no group",
            Box::new(|r| storage(r)["fs_group"] = Value::Null),
        ),
        (
            "a mount point its address does not give",
            Box::new(|r| {
                let elsewhere = json!("/run/kata-containers/sandbox/storage/MDoy");
                storage(r)["mount_point"] = elsewhere.clone();
                mount_at(r, "/var/cache/nginx")["source"] = elsewhere;
            }),
        ),
        (
            "a virtio-blk address on a virtio-scsi platform",
            Box::new(|r| {
                storage(r)["driver"] = json!("blk");
                storage(r)["source"] = json!("02/00");
                let mount_point = json!("/run/kata-containers/sandbox/storage/MDIvMDA=");
                storage(r)["mount_point"] = mount_point.clone();
                mount_at(r, "/var/cache/nginx")["source"] = mount_point;
            }),
        ),
        (
            "an address of no device",
            Box::new(|r| storage(r)["source"] = json!("../..")),
        ),
    ];
    for (why, change) in storage_changes {
        assert_denied_by(
            &agent,
            "CreateContainerRequest",
            &changed(&web, |r| change(r)),
            why,
            "storages",
        );
    }
    let mount_changes: Vec<(&str, Change)> = vec![
        (
            "propagation",
            Box::new(|r| {
                mount_at(r, "/var/cache/nginx")["options"] = json!(["rbind", "rshared", "rw"])
            }),
        ),
        (
            "a source that is no block storage's mount point",
            Box::new(|r| {
                mount_at(r, "/var/cache/nginx")["source"] =
                    json!("/run/kata-containers/sandbox/storage")
            }),
        ),
        (
            "the same mount twice",
            Box::new(|r| {
                let again = mount_at(r, "/var/cache/nginx").clone();
                mounts_mut(r).push(again);
            }),
        ),
    ];
    for (why, change) in mount_changes {
        assert_denied_by(
            &agent,
            "CreateContainerRequest",
            &changed(&web, |r| change(r)),
            why,
            "mounts",
        );
    }
}

/// The mesh pod with the secure-pv layout: an emptyDir `decrypted` that the privileged
/// sidecar mounts Bidirectional and the app HostToContainer.
fn propagating_mesh() -> Case {
    let mut case = Case::load("mesh.json");
    let spec = &mut case.spec;
    spec["volumes"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "decrypted", "emptyDir": {}}));
    for (list, propagation) in [
        ("initContainers", "Bidirectional"),
        ("containers", "HostToContainer"),
    ] {
        spec[list][0]["volumeMounts"]
            .as_array_mut()
            .unwrap()
            .push(json!({
                "name": "decrypted",
                "mountPath": "/state",
                "mountPropagation": propagation,
            }));
    }
    case
}

#[test]
fn empty_dir_mount_propagation_is_admitted_as_containerd_gives_it() {
    let case = propagating_mesh();
    let policy = case.policy();
    let requests = case.requests();
    let sidecar = create_request(&requests, "contrast-service-mesh");
    let app = create_request(&requests, "app");
    // containerd's options and root propagation for Bidirectional and HostToContainer.
    for (request, option) in [(&sidecar, "rshared"), (&app, "rslave")] {
        let mut request = request.clone();
        assert_eq!(
            mount_at(&mut request, "/state")["options"],
            json!(["rbind", option, "rw"])
        );
        assert_eq!(request["OCI"]["Linux"]["RootfsPropagation"], json!(option));
        assert_allowed(&policy, "CreateContainerRequest", &request);
        // No root propagation (what the Kata runtime may send) is fine too.
        assert_allowed(
            &policy,
            "CreateContainerRequest",
            &changed(&request, |r| {
                r["OCI"]["Linux"]["RootfsPropagation"] = json!("")
            }),
        );
    }
    // The app may not propagate its mounts back, nor its root.
    assert_denied_by(
        &policy,
        "CreateContainerRequest",
        &changed(&app, |r| {
            mount_at(r, "/state")["options"] = json!(["rbind", "rshared", "rw"]);
        }),
        "a Bidirectional app mount",
        "mounts",
    );
    assert_denied_by(
        &policy,
        "CreateContainerRequest",
        &changed(&app, |r| {
            r["OCI"]["Linux"]["RootfsPropagation"] = json!("rshared")
        }),
        "a shared app root",
        "rootfs_propagation",
    );
    // The explanation gives what the app's mounts allow.
    let shared_root = changed(&app, |r| {
        r["OCI"]["Linux"]["RootfsPropagation"] = json!("rshared")
    });
    let explained =
        contrast_policy::explain(&policy, "CreateContainerRequest", &shared_root).unwrap();
    let check = explained
        .failed
        .iter()
        .find(|f| f.check == "rootfs_propagation")
        .unwrap();
    assert_eq!(check.expected, json!({"one of": ["", "rslave"]}));
    assert_eq!(check.actual, json!("rshared"));
    // Only the emptyDir mount carries propagation.
    assert_denied_by(
        &policy,
        "CreateContainerRequest",
        &changed(&sidecar, |r| {
            mount_at(r, "/contrast")["options"] = json!(["rbind", "rshared", "rw"]);
        }),
        "propagation on another mount",
        "mounts",
    );
}

#[test]
fn an_unknown_mount_propagation_is_refused_when_generating() {
    let mut case = propagating_mesh();
    case.spec["containers"][0]["volumeMounts"][1]["mountPropagation"] = json!("Sideways");
    let err = contrast_policy::policy_rego(&case.input())
        .unwrap_err()
        .to_string();
    assert!(err.contains("\"Sideways\""), "{err}");
    assert!(err.contains("mountPropagation"), "{err}");
}
