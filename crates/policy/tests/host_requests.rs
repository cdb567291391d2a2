//! The requests around the containers, evaluated in regorus the way the Kata agent does:
//! CreateSandbox, CopyFile, the network set-up, and the requests the host never gets. The
//! runtime's own requests are allowed; each change a malicious host could make is refused.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{Value, json};

#[test]
fn copy_file_only_to_the_runtime_copies() {
    let case = Case::load("web.json");
    let policy = case.policy();
    let requests = case.requests();
    let copies = request_named(&requests, "CopyFileRequest");
    assert!(
        copies.len() >= 10,
        "hosts, hostname, resolv.conf, … for each container"
    );
    for copy in &copies {
        assert_allowed(&policy, "CopyFileRequest", copy);
    }
    let id = format!("{:064x}", 0xc0de_0002_u64);
    let prefix = format!("/run/kata-containers/shared/containers/{id}-0123456789abcdef-config");
    for allowed in [
        prefix.clone(),
        format!("{prefix}/..data"),
        format!("{prefix}/..2026_01_01_00_00_00.000000000/mode"),
        format!("{prefix}/.hidden"),
        format!("{prefix}/a/b/c"),
    ] {
        assert_allowed(
            &policy,
            "CopyFileRequest",
            &changed(copies[0], |r| r["path"] = json!(allowed)),
        );
    }
    for (why, path) in [
        ("the guest's files", "/etc/passwd".to_owned()),
        ("the policy", "/run/measured-cfg/policy.rego".to_owned()),
        (
            "a container's root file system",
            format!("/run/kata-containers/shared/containers/{id}/rootfs/bin/sh"),
        ),
        (
            "a guest-pulled root file system",
            format!("/run/kata-containers/{id}/rootfs/bin/sh"),
        ),
        (
            "a parent directory",
            format!("{prefix}/../{id}/rootfs/bin/sh"),
        ),
        ("a dot component", format!("{prefix}/./x")),
        ("a trailing parent", format!("{prefix}/..")),
        (
            "a short container id",
            "/run/kata-containers/shared/containers/abc-0123456789abcdef-x".to_owned(),
        ),
        (
            "no name",
            format!("/run/kata-containers/shared/containers/{id}-0123456789abcdef-"),
        ),
        ("an empty path", String::new()),
    ] {
        assert_denied(
            &policy,
            "CopyFileRequest",
            &changed(copies[0], |r| r["path"] = json!(path)),
            why,
        );
    }
    let (_, prints) = decide(&policy, "CopyFileRequest", &json!({"path": "/etc/passwd"}));
    assert!(prints.contains("/etc/passwd"), "{prints}");
}

/// The agent tells the policy what kind of file a CopyFile makes and where a symlink
/// points; only files, directories and links that stay below the copied entry pass.
#[test]
fn copy_file_of_devices_and_escaping_symlinks_is_denied() {
    let case = Case::load("web.json");
    let policy = case.policy();
    let requests = case.requests();
    let copy = request_named(&requests, "CopyFileRequest")[0];
    let id = format!("{:064x}", 0xc0de_0002_u64);
    let prefix = format!("/run/kata-containers/shared/containers/{id}-0123456789abcdef-config");
    let link = |path: &str, target: &str| {
        changed(copy, |r| {
            r["path"] = json!(path);
            r["file_type"] = json!("Symlink");
            r["symlink_target"] = json!(target);
        })
    };
    assert_allowed(
        &policy,
        "CopyFileRequest",
        &changed(copy, |r| {
            r["path"] = json!(prefix);
            r["file_type"] = json!("Directory");
        }),
    );
    assert_allowed(
        &policy,
        "CopyFileRequest",
        &link(&format!("{prefix}/..data"), "..2026_01_01"),
    );
    assert_allowed(
        &policy,
        "CopyFileRequest",
        &link(&format!("{prefix}/key"), "..data/key"),
    );
    for (why, request) in [
        (
            "a device, FIFO or socket",
            changed(copy, |r| r["file_type"] = json!("Unknown")),
        ),
        (
            "no file type",
            changed(copy, |r| r["file_type"] = json!(null)),
        ),
        (
            "a symlink at the top of the shared directory",
            link(&prefix, "key"),
        ),
        (
            "a symlink pointing up",
            link(&format!("{prefix}/x"), "../abc"),
        ),
        (
            "a symlink pointing up in the middle",
            link(&format!("{prefix}/x"), "a/../../b"),
        ),
        (
            "a symlink pointing up at the end",
            link(&format!("{prefix}/x"), "foo/.."),
        ),
        (
            "a symlink to the parent",
            link(&format!("{prefix}/x"), ".."),
        ),
        (
            "a symlink with an absolute target",
            link(&format!("{prefix}/x"), "/etc/shadow"),
        ),
        (
            "a symlink without a target",
            link(&format!("{prefix}/x"), ""),
        ),
    ] {
        assert_denied_by(
            &policy,
            "CopyFileRequest",
            &request,
            why,
            if why.contains("symlink") {
                "symlink"
            } else {
                "file_type"
            },
        );
    }
}

#[test]
fn the_sandbox_pid_namespace_is_never_asked_for_in_create_sandbox() {
    let case = Case::load("web.json");
    let policy = case.policy();
    let requests = case.requests();
    let sandbox = request_named(&requests, "CreateSandboxRequest")[0];
    assert_eq!(sandbox["sandbox_pidns"], json!(false));
    assert_denied(
        &policy,
        "CreateSandboxRequest",
        &changed(sandbox, |r| r["sandbox_pidns"] = json!(true)),
        "a shared PID namespace the pod does not ask for",
    );
    // The runtime never sets it in CreateSandbox; a pod that shares its PID namespace
    // says so in each CreateContainer.
    let mut shared = case;
    shared.spec["shareProcessNamespace"] = json!(true);
    let shared_requests = shared.requests();
    assert_eq!(
        request_named(&shared_requests, "CreateSandboxRequest")[0]["sandbox_pidns"],
        json!(false)
    );
    assert_eq!(
        create_request(&shared_requests, "web")["sandbox_pidns"],
        json!(true)
    );
    assert_denied(
        &shared.policy(),
        "CreateSandboxRequest",
        &changed(sandbox, |r| r["sandbox_pidns"] = json!(true)),
        "a PID namespace in CreateSandbox",
    );
}

/// What genpolicy refuses of the host's network set-up: loopback in any spelling, flags
/// beyond IFF_NOARP, a zero hardware address, neighbour entries that are not static.
#[test]
fn network_requests_that_reach_loopback_or_set_flags_are_denied() {
    let policy = Case::load("web.json").policy();
    let interface = |f: &dyn Fn(&mut Value)| {
        let mut r = json!({"interface": {"IPAddresses": [{"address": "10.244.0.14", "family": 0, "mask": "24"}, {"address": "fe80::6474:9fff:fe6a:9601", "family": 1, "mask": "64"}], "device": "eth0", "hwAddr": "66:74:9f:6a:96:01", "mtu": 1500, "name": "eth0", "pciPath": "", "raw_flags": 0, "type_": ""}});
        f(&mut r["interface"]);
        r
    };
    assert_allowed(&policy, "UpdateInterfaceRequest", &interface(&|_| {}));
    assert_allowed(
        &policy,
        "UpdateInterfaceRequest",
        &interface(&|i| i["raw_flags"] = json!(128)),
    );
    for (why, request) in [
        ("IFF_LOOPBACK", interface(&|i| i["raw_flags"] = json!(8))),
        ("IFF_NOTRAILERS", interface(&|i| i["raw_flags"] = json!(64))),
        (
            "a zero hardware address",
            interface(&|i| i["hwAddr"] = json!("00:00:00:00:00:00")),
        ),
        (
            "a zero hardware address spelt short",
            interface(&|i| i["hwAddr"] = json!("0:0:0:0:0:0")),
        ),
        (
            "no hardware address",
            interface(&|i| i["hwAddr"] = json!("")),
        ),
        (
            "a loopback address",
            interface(&|i| i["IPAddresses"][0]["address"] = json!("127.0.0.2")),
        ),
    ] {
        assert_denied(&policy, "UpdateInterfaceRequest", &request, why);
    }
    let route = |source: &str| json!({"routes": {"Routes": [{"dest": "", "device": "eth0", "family": 0, "gateway": "10.244.0.1", "scope": 0, "source": source}]}});
    assert_allowed(&policy, "UpdateRoutesRequest", &route(""));
    assert_allowed(&policy, "UpdateRoutesRequest", &route("10.244.0.14"));
    for source in [
        "127.0.0.1",
        "::1",
        "00::001",
        "0:0:0:0:0:0:0:1",
        "::ffff:127.0.0.1",
    ] {
        assert_denied(&policy, "UpdateRoutesRequest", &route(source), source);
    }
    let neighbor = |f: &dyn Fn(&mut Value)| {
        let mut n = json!({"device": "eth0", "flags": 0, "lladdr": "00:00:5e:00:53:01", "state": 128, "toIPAddress": {"address": "10.0.0.1", "family": 0, "mask": ""}});
        f(&mut n);
        json!({"neighbors": {"ARPNeighbors": [n]}})
    };
    for (why, request) in [
        ("permanent", neighbor(&|_| {})),
        ("reachable", neighbor(&|n| n["state"] = json!(2))),
        ("NTF_PROXY", neighbor(&|n| n["flags"] = json!(8))),
        ("NTF_ROUTER", neighbor(&|n| n["flags"] = json!(128))),
    ] {
        assert!(
            decide(&policy, "AddARPNeighborsRequest", &request).0,
            "{why}"
        );
    }
    for (why, request) in [
        ("on lo", neighbor(&|n| n["device"] = json!("lo"))),
        (
            "for a loopback address",
            neighbor(&|n| n["toIPAddress"]["address"] = json!("127.1.2.3")),
        ),
        (
            "for ::1",
            neighbor(&|n| n["toIPAddress"]["address"] = json!("::1")),
        ),
        (
            "with a mask",
            neighbor(&|n| n["toIPAddress"]["mask"] = json!("8")),
        ),
        ("incomplete", neighbor(&|n| n["state"] = json!(0))),
        ("with other flags", neighbor(&|n| n["flags"] = json!(5))),
    ] {
        assert_denied(&policy, "AddARPNeighborsRequest", &request, why);
    }
}

#[test]
fn set_policy_and_host_controls_are_always_denied() {
    for file in ["web.json", "mesh.json"] {
        let policy = Case::load(file).policy();
        assert_denied(
            &policy,
            "SetPolicyRequest",
            &json!({"policy": "package agent_policy\ndefault CreateContainerRequest := true\n"}),
            "SetPolicy",
        );
        for request in [
            "SetGuestDateTimeRequest",
            "ReseedRandomDevRequest",
            "SetIPTablesRequest",
            "WriteStreamRequest",
            "UpdateContainerRequest",
            "UpdateEphemeralMountsRequest",
            "AddSwapRequest",
            "MemHotplugByProbeRequest",
            "PullImageRequest",
            "AllowRequestsFailingPolicy",
            "SomeFutureRequest",
        ] {
            assert_denied(&policy, request, &json!({}), request);
        }
        for request in [
            "StartContainerRequest",
            "WaitProcessRequest",
            "ReadStreamRequest",
            "SignalProcessRequest",
            "DestroySandboxRequest",
        ] {
            assert_allowed(&policy, request, &json!({"container_id": "x"}));
        }
    }
}

#[test]
fn sandbox_and_network_requests() {
    let case = Case::load("web.json");
    let policy = case.policy();
    let requests = case.requests();
    let sandbox = request_named(&requests, "CreateSandboxRequest")[0];
    assert_allowed(&policy, "CreateSandboxRequest", sandbox);
    for (why, request) in [
        (
            "a kernel module",
            changed(sandbox, |r| {
                r["kernel_modules"] = json!([{"name": "evil", "parameters": []}])
            }),
        ),
        (
            "guest hooks",
            changed(sandbox, |r| {
                r["guest_hook_path"] = json!("/usr/share/oci/hooks")
            }),
        ),
        (
            "a storage",
            changed(sandbox, |r| {
                r["storages"].as_array_mut().unwrap().push(json!({
            "driver": "blk", "source": "/dev/vdc", "fstype": "ext4", "mount_point": "/run/x", "options": [],
        }))
            }),
        ),
    ] {
        assert_denied(&policy, "CreateSandboxRequest", &request, why);
    }

    let route = |dest: &str, device: &str| json!({"routes": {"Routes": [{"dest": dest, "gateway": "", "device": device, "source": "", "scope": 0, "family": 0}]}});
    assert_allowed(
        &policy,
        "UpdateRoutesRequest",
        &route("10.0.0.0/24", "eth0"),
    );
    assert_allowed(&policy, "UpdateRoutesRequest", &route("", "eth0"));
    assert_denied(
        &policy,
        "UpdateRoutesRequest",
        &route("127.137.0.0/16", "eth0"),
        "a loopback route",
    );
    assert_denied(
        &policy,
        "UpdateRoutesRequest",
        &route("::1/128", "eth0"),
        "the IPv6 loopback",
    );
    assert_denied(
        &policy,
        "UpdateRoutesRequest",
        &route("10.0.0.0/24", "lo"),
        "a route over lo",
    );
    assert_allowed(
        &policy,
        "UpdateInterfaceRequest",
        &json!({"interface": {"name": "eth0", "device": "eth0", "hwAddr": "66:74:9f:6a:96:01", "IPAddresses": []}}),
    );
    assert_denied(
        &policy,
        "UpdateInterfaceRequest",
        &json!({"interface": {"name": "lo", "device": "lo"}}),
        "loopback",
    );
}

#[test]
fn the_policy_checks_the_json_shapes_the_agent_sends() {
    // Missing and null fields are refusals, not errors.
    let policy = Case::load("web.json").policy();
    for request in [
        "CreateContainerRequest",
        "ExecProcessRequest",
        "CopyFileRequest",
    ] {
        for input in [
            json!({}),
            json!(null),
            json!({"OCI": null, "storages": null}),
            json!([1, 2]),
        ] {
            assert_denied(&policy, request, &input, request);
        }
    }
}
