//! What the policy data says for a pod spec: each rule of how kubelet and containerd
//! turn the spec and the image config into the container the agent is asked to create,
//! and each refusal of a spec the policy cannot express.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;

use common::Case;
use contrast_policy::{ImageConfig, PolicyError};
use serde_json::{Value, json};

const DIGEST: &str = "sha256:5555555555555555555555555555555555555555555555555555555555555555";
const IMAGE: &str =
    "registry.example/app@sha256:5555555555555555555555555555555555555555555555555555555555555555";

fn image_config() -> ImageConfig {
    ImageConfig {
        digest: DIGEST.to_owned(),
        env: vec![
            "PATH=/usr/bin:/bin".to_owned(),
            "LANG=C.UTF-8".to_owned(),
            "SHARED=from-image".to_owned(),
        ],
        entrypoint: vec!["/entrypoint".to_owned()],
        cmd: vec!["serve".to_owned(), "--port=80".to_owned()],
        working_dir: "/app".to_owned(),
        user: "1000:1001".to_owned(),
        volumes: Vec::new(),
    }
}

/// A pod with one container (`container` is merged into a minimal one) and `spec`
/// merged into the pod spec.
fn case(container: Value, spec: Value, config: ImageConfig) -> Case {
    let mut c = json!({"name": "app", "image": IMAGE});
    merge(&mut c, container);
    let mut s = json!({"containers": [c]});
    merge(&mut s, spec);
    Case {
        name: "app".to_owned(),
        namespace: "prod".to_owned(),
        spec: s,
        labels: BTreeMap::from([("app".to_owned(), "shop".to_owned())]),
        runtime: contrast_platforms::Platform::MetalQemuSnp.kata_runtime(),
        images: BTreeMap::from([(IMAGE.to_owned(), config)]),
        config_maps: vec![
            json!({"kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "prod"}, "data": {"a": "1", "b": "2", "bad=key": "x"}}),
        ],
        secrets: vec![
            json!({"kind": "Secret", "metadata": {"name": "sec"}, "data": {"pw": "aHVudGVyMg=="}}),
            json!({"kind": "Secret", "metadata": {"name": "binary"}, "data": {"bin": "/w=="}}),
        ],
    }
}

fn merge(target: &mut Value, patch: Value) {
    if let (Some(t), Value::Object(p)) = (target.as_object_mut(), patch) {
        for (k, v) in p {
            t.insert(k, v);
        }
    }
}

fn generate(case: &Case) -> Result<Value, PolicyError> {
    let policy = contrast_policy::policy_rego(&case.input())?;
    let data = policy.split("\npolicy_data := ").nth(1).unwrap();
    Ok(serde_json::from_str(data).unwrap())
}

fn app(container: Value) -> Value {
    let data = generate(&case(container, json!({}), image_config())).unwrap();
    data["containers"][0].clone()
}

fn error(container: Value, spec: Value, config: ImageConfig) -> PolicyError {
    generate(&case(container, spec, config)).unwrap_err()
}

fn path_of(err: &PolicyError) -> &str {
    match err {
        PolicyError::UnknownField { path }
        | PolicyError::Unsupported { path, .. }
        | PolicyError::Invalid { path, .. }
        | PolicyError::MissingImageConfig { path, .. }
        | PolicyError::ImageNotPinned { path, .. }
        | PolicyError::DigestMismatch { path, .. }
        | PolicyError::MissingObject { path, .. }
        | PolicyError::MissingKey { path, .. }
        | PolicyError::NonNumericUser { path, .. } => path,
        other => panic!("no path: {other}"),
    }
}

#[test]
fn env_is_the_image_env_with_the_pod_env_on_top() {
    let c = app(json!({"env": [
        {"name": "SHARED", "value": "from-pod"},
        {"name": "NEW", "value": "x"},
        {"name": "EMPTY"},
    ]}));
    assert_eq!(
        c["env"],
        json!({"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "SHARED": "from-pod", "NEW": "x", "EMPTY": ""})
    );
    assert_eq!(c["env_patterns"], json!({}));
}

#[test]
fn an_image_without_path_gets_containerds() {
    let mut config = image_config();
    config.env.clear();
    let data = generate(&case(json!({}), json!({}), config)).unwrap();
    assert_eq!(
        data["containers"][0]["env"],
        json!({"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"})
    );
}

#[test]
fn env_from_config_maps_and_secrets() {
    let c = app(json!({
        "envFrom": [
            {"configMapRef": {"name": "cm"}, "prefix": "CM_"},
            {"secretRef": {"name": "sec"}},
            {"configMapRef": {"name": "missing", "optional": true}},
            {"secretRef": {"name": "missing", "optional": true}},
        ],
        "env": [
            {"name": "CM_a", "value": "overridden by env"},
            {"name": "FROM_CM", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "b"}}},
            {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
            {"name": "NO_CM", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "x", "optional": true}}},
            {"name": "NO_KEY", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "x", "optional": true}}},
        ],
    }));
    let env = c["env"].as_object().unwrap();
    assert_eq!(env["CM_a"], "overridden by env");
    assert_eq!(env["CM_b"], "2");
    assert!(
        !env.contains_key("CM_bad=key"),
        "a key with '=' cannot be a variable"
    );
    assert_eq!(env["pw"], "hunter2");
    assert_eq!(env["FROM_CM"], "2");
    assert_eq!(env["FROM_SECRET"], "hunter2");
    assert!(!env.contains_key("NO_CM") && !env.contains_key("NO_KEY"));
}

#[test]
fn secret_string_data_wins_and_binary_values_are_refused() {
    let mut case = case(
        json!({"env": [{"name": "U", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "u"}}}]}),
        json!({}),
        image_config(),
    );
    case.secrets =
        vec![json!({"metadata": {"name": "s2"}, "data": {"u": "YQ=="}, "stringData": {"u": "b"}})];
    assert_eq!(generate(&case).unwrap()["containers"][0]["env"]["U"], "b");

    let err = error(
        json!({"env": [{"name": "BIN", "valueFrom": {"secretKeyRef": {"name": "binary", "key": "bin"}}}]}),
        json!({}),
        image_config(),
    );
    assert!(err.to_string().contains("UTF-8"), "{err}");
}

#[test]
fn missing_references_name_what_to_add() {
    let err = error(
        json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k"}}}]}),
        json!({}),
        image_config(),
    );
    assert!(
        matches!(
            err,
            PolicyError::MissingObject {
                kind: "ConfigMap",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        path_of(&err),
        "spec.containers[0].env[0].valueFrom.configMapKeyRef"
    );
    assert!(
        err.to_string().contains("\"nope\"") && err.to_string().contains("\"prod\""),
        "{err}"
    );

    let err = error(
        json!({"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "nokey"}}}]}),
        json!({}),
        image_config(),
    );
    assert!(
        matches!(err, PolicyError::MissingKey { kind: "Secret", .. }),
        "{err}"
    );

    let err = error(
        json!({"envFrom": [{"secretRef": {"name": "nope"}}]}),
        json!({}),
        image_config(),
    );
    assert_eq!(path_of(&err), "spec.containers[0].envFrom[0].secretRef");

    // A ConfigMap of another namespace is not this pod's.
    let mut other = case(
        json!({"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "a"}}}]}),
        json!({}),
        image_config(),
    );
    other.namespace = "staging".to_owned();
    assert!(matches!(
        generate(&other).unwrap_err(),
        PolicyError::MissingObject { .. }
    ));
}

#[test]
fn downward_api_values_known_later_are_patterns() {
    let field = |path: &str| json!({"valueFrom": {"fieldRef": {"fieldPath": path}}});
    let mut env = Vec::new();
    for (name, path) in [
        ("NAME", "metadata.name"),
        ("NS", "metadata.namespace"),
        ("UID", "metadata.uid"),
        ("NODE", "spec.nodeName"),
        ("SA", "spec.serviceAccountName"),
        ("IP", "status.podIP"),
        ("IPS", "status.podIPs"),
        ("HOST_IP", "status.hostIP"),
        ("LABEL", "metadata.labels['app']"),
        ("HASH", "metadata.labels['pod-template-hash']"),
        ("ANNOTATION", "metadata.annotations['note']"),
    ] {
        let mut var = field(path);
        var["name"] = json!(name);
        env.push(var);
    }
    env.push(json!({"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}}}));
    let c = app(json!({"env": env}));
    assert_eq!(c["env"]["NS"], "prod");
    assert_eq!(c["env"]["SA"], "default");
    // A label the resource sets carries its value; one a controller adds, any label value.
    assert_eq!(c["env"]["LABEL"], "shop");
    let patterns = c["env_patterns"].as_object().unwrap();
    assert_eq!(patterns["NAME"], r"^app(-[a-z0-9]+){0,2}$");
    for name in [
        "UID",
        "NODE",
        "IP",
        "IPS",
        "HOST_IP",
        "HASH",
        "ANNOTATION",
        "CPU",
    ] {
        assert!(patterns.contains_key(name), "{name}");
    }

    let err = error(
        json!({"env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "status.phase"}}}]}),
        json!({}),
        image_config(),
    );
    assert!(matches!(err, PolicyError::Unsupported { .. }), "{err}");
    assert_eq!(
        path_of(&err),
        "spec.containers[0].env[0].valueFrom.fieldRef.fieldPath"
    );
    let err = error(
        json!({"env": [{"name": "X", "valueFrom": {"fileKeyRef": {"path": "a", "key": "b", "volumeName": "v"}}}]}),
        json!({}),
        image_config(),
    );
    assert_eq!(
        path_of(&err),
        "spec.containers[0].env[0].valueFrom.fileKeyRef"
    );
    let err = error(
        json!({"env": [{"name": "X", "valueFrom": {"resourceFieldRef": {"resource": "limits.gpu"}}}]}),
        json!({}),
        image_config(),
    );
    assert!(matches!(err, PolicyError::Unsupported { .. }), "{err}");
}

#[test]
fn variables_expand_in_env_command_and_args() {
    let c = app(json!({
        "env": [
            {"name": "A", "value": "1"},
            {"name": "B", "value": "$(A)-$(LATER)-$$(A)"},
            {"name": "LATER", "value": "2"},
        ],
        "command": ["/bin/run", "$(B)"],
        "args": ["--later=$(LATER)", "$(UNDEFINED)"],
    }));
    assert_eq!(c["env"]["B"], "1-$(LATER)-$(A)");
    assert_eq!(
        c["args"],
        json!(["/bin/run", "1-$(LATER)-$(A)", "--later=2", "$(UNDEFINED)"])
    );

    let err = error(
        json!({"env": [{"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}], "args": ["--ip=$(IP)"]}),
        json!({}),
        image_config(),
    );
    assert_eq!(path_of(&err), "spec.containers[0].args[0]");
}

#[test]
fn command_and_args_replace_entrypoint_and_cmd() {
    assert_eq!(
        app(json!({}))["args"],
        json!(["/entrypoint", "serve", "--port=80"])
    );
    assert_eq!(
        app(json!({"args": ["debug"]}))["args"],
        json!(["/entrypoint", "debug"])
    );
    assert_eq!(
        app(json!({"command": ["/bin/other"]}))["args"],
        json!(["/bin/other"]),
        "command drops the image's Cmd"
    );
    assert_eq!(
        app(json!({"command": ["/bin/other"], "args": ["x"]}))["args"],
        json!(["/bin/other", "x"])
    );
    assert_eq!(
        app(json!({"command": [], "args": []}))["args"],
        json!(["/entrypoint", "serve", "--port=80"]),
        "empty lists are unset"
    );

    let mut config = image_config();
    config.entrypoint.clear();
    config.cmd.clear();
    let err = error(json!({}), json!({}), config);
    assert!(err.to_string().contains("command"), "{err}");
}

#[test]
fn working_dir_from_the_spec_the_image_or_root() {
    assert_eq!(app(json!({"workingDir": "/data"}))["cwd"], "/data");
    assert_eq!(app(json!({}))["cwd"], "/app");
    let mut config = image_config();
    config.working_dir.clear();
    assert_eq!(
        generate(&case(json!({}), json!({}), config)).unwrap()["containers"][0]["cwd"],
        "/"
    );
}

#[test]
fn users_and_groups() {
    // The image's "1000:1001".
    let c = app(json!({}));
    assert_eq!(
        (c["uid"].clone(), c["gids"].clone()),
        (json!(1000), json!([1001]))
    );
    // runAsUser replaces the image's user and group; the group is then looked up, which
    // we cannot do: 0 or the UID.
    let c = app(json!({"securityContext": {"runAsUser": 2000}}));
    assert_eq!(
        (c["uid"].clone(), c["gids"].clone()),
        (json!(2000), json!([0, 2000]))
    );
    let c = app(json!({"securityContext": {"runAsUser": 2000, "runAsGroup": 3000}}));
    assert_eq!(
        (c["uid"].clone(), c["gids"].clone()),
        (json!(2000), json!([3000]))
    );
    // The pod's settings, overridden by the container's.
    let data = generate(&case(
        json!({"securityContext": {"runAsGroup": 7}}),
        json!({"securityContext": {"runAsUser": 5, "runAsGroup": 6, "supplementalGroups": [10, 7], "fsGroup": 11}}),
        image_config(),
    ))
    .unwrap();
    let c = &data["containers"][0];
    assert_eq!(
        (c["uid"].clone(), c["gids"].clone()),
        (json!(5), json!([7]))
    );
    assert_eq!(c["additional_gids"], json!([7, 10, 11]));

    let mut config = image_config();
    for (user, uid, gids) in [
        ("", 0, json!([0])),
        ("0", 0, json!([0])),
        ("42", 42, json!([0, 42])),
        ("42:0", 42, json!([0])),
    ] {
        config.user = user.to_owned();
        let data = generate(&case(json!({}), json!({}), config.clone())).unwrap();
        assert_eq!(data["containers"][0]["uid"], json!(uid), "{user:?}");
        assert_eq!(data["containers"][0]["gids"], gids, "{user:?}");
    }

    // A user name needs /etc/passwd: refused unless runAsUser is set.
    for user in ["nginx", "nginx:nginx", "1000:staff"] {
        config.user = user.to_owned();
        let err = error(json!({}), json!({}), config.clone());
        assert!(
            matches!(&err, PolicyError::NonNumericUser { user: u, .. } if u == user),
            "{err}"
        );
        assert_eq!(path_of(&err), "spec.containers[0].image");
        assert!(err.to_string().contains("runAsUser"), "{err}");
    }
    config.user = "nginx".to_owned();
    let data = generate(&case(
        json!({"securityContext": {"runAsUser": 101, "runAsGroup": 101}}),
        json!({}),
        config,
    ))
    .unwrap();
    assert_eq!(data["containers"][0]["uid"], json!(101));

    let err = error(
        json!({"securityContext": {"runAsNonRoot": true, "runAsUser": 0}}),
        json!({}),
        image_config(),
    );
    assert_eq!(
        path_of(&err),
        "spec.containers[0].securityContext.runAsNonRoot"
    );
    let err = error(
        json!({"securityContext": {"runAsUser": -1}}),
        json!({}),
        image_config(),
    );
    assert_eq!(
        path_of(&err),
        "spec.containers[0].securityContext.runAsUser"
    );
}

#[test]
fn privileges_and_capabilities() {
    let c = app(json!({}));
    assert_eq!(c["capabilities"].as_array().unwrap().len(), 14);
    assert_eq!(
        c["no_new_privileges"],
        json!(false),
        "Kubernetes allows escalation unless told not to"
    );
    assert_eq!(c["require_masked_paths"], json!(true));
    assert_eq!(c["read_only_root"], json!(false));

    let c = app(
        json!({"securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true}}),
    );
    assert_eq!(c["no_new_privileges"], json!(true));
    assert_eq!(c["read_only_root"], json!(true));

    let c = app(
        json!({"securityContext": {"capabilities": {"drop": ["ALL"], "add": ["net_bind_service", "CAP_CHOWN"]}}}),
    );
    assert_eq!(
        c["capabilities"],
        json!(["CAP_CHOWN", "CAP_NET_BIND_SERVICE"])
    );
    let c =
        app(json!({"securityContext": {"capabilities": {"add": ["ALL"], "drop": ["SYS_ADMIN"]}}}));
    assert_eq!(c["capabilities"].as_array().unwrap().len(), 40);
    assert!(
        !c["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("CAP_SYS_ADMIN"))
    );
    let c = app(json!({"securityContext": {"capabilities": {"drop": ["NET_RAW"]}}}));
    assert!(
        !c["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("CAP_NET_RAW"))
    );

    let c = app(json!({"securityContext": {"privileged": true}}));
    assert_eq!(c["capabilities"].as_array().unwrap().len(), 41);
    assert_eq!(c["require_masked_paths"], json!(false));
    let sys = c["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == "/sys")
        .unwrap();
    assert_eq!(sys["read_only"], json!(false));
    assert_eq!(
        app(json!({"securityContext": {"procMount": "Unmasked"}}))["require_masked_paths"],
        json!(false)
    );

    let err = error(
        json!({"securityContext": {"capabilities": {"add": ["SUPERPOWER"]}}}),
        json!({}),
        image_config(),
    );
    assert_eq!(
        path_of(&err),
        "spec.containers[0].securityContext.capabilities.add[0]"
    );
    let err = error(
        json!({"securityContext": {"privileged": true, "allowPrivilegeEscalation": false}}),
        json!({}),
        image_config(),
    );
    assert_eq!(
        path_of(&err),
        "spec.containers[0].securityContext.allowPrivilegeEscalation"
    );
}

fn mount<'a>(c: &'a Value, destination: &str) -> Option<&'a Value> {
    c["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["destination"] == destination)
}

#[test]
fn mounts_from_volumes() {
    let spec = json!({"volumes": [
        {"name": "mem", "emptyDir": {"medium": "Memory"}},
        {"name": "disk", "emptyDir": {"sizeLimit": "1Gi"}},
        {"name": "cm", "configMap": {"name": "cm"}},
        {"name": "claim", "persistentVolumeClaim": {"claimName": "c", "readOnly": true}},
        {"name": "eph", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        {"name": "host", "hostPath": {"path": "/etc"}},
    ]});
    let container = json!({"volumeMounts": [
        {"name": "mem", "mountPath": "/mem"},
        {"name": "disk", "mountPath": "/disk/", "readOnly": true},
        {"name": "disk", "mountPath": "/sub", "subPath": "a/b"},
        {"name": "cm", "mountPath": "/etc/hosts"},
        {"name": "claim", "mountPath": "/claim"},
        {"name": "eph", "mountPath": "/eph"},
    ]});
    let data = generate(&case(container, spec.clone(), image_config())).unwrap();
    let c = &data["containers"][0];
    let mem = mount(c, "/mem").unwrap();
    assert_eq!(
        (mem["type"].clone(), mem["required"].clone()),
        (json!("bind"), json!(true))
    );
    assert_eq!(
        mem["source"],
        r"^/run/kata\-containers/sandbox/ephemeral/mem$"
    );
    let disk = mount(c, "/disk").unwrap();
    assert_eq!(
        (disk["type"].clone(), disk["read_only"].clone()),
        (json!("local"), json!(true))
    );
    assert_eq!(
        mount(c, "/sub").unwrap()["source"],
        r"^/run/kata\-containers/shared/containers/$(sid)/(rootfs/)?local/disk/a/b$"
    );
    let hosts: Vec<_> = c["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["destination"] == "/etc/hosts")
        .collect();
    assert_eq!(
        hosts.len(),
        1,
        "the volume replaces the runtime's /etc/hosts"
    );
    assert_eq!(
        (hosts[0]["read_only"].clone(), hosts[0]["required"].clone()),
        (json!(true), json!(true))
    );
    assert_eq!(mount(c, "/claim").unwrap()["read_only"], json!(true));
    assert_eq!(mount(c, "/eph").unwrap()["read_only"], json!(false));
    assert_eq!(
        c["storages"].as_array().unwrap().len(),
        2,
        "one storage per emptyDir"
    );
    assert!(mount(c, "/var/run/secrets/kubernetes.io/serviceaccount").is_some());

    let err = error(
        json!({"volumeMounts": [{"name": "host", "mountPath": "/host"}]}),
        spec.clone(),
        image_config(),
    );
    assert!(matches!(err, PolicyError::Unsupported { .. }), "{err}");
    assert_eq!(path_of(&err), "spec.volumes[5].hostPath");
    // Not mounted, a host path volume can back a block device.
    let data = generate(&case(
        json!({"volumeDevices": [{"name": "host", "devicePath": "/dev/xvda"}]}),
        spec.clone(),
        image_config(),
    ))
    .unwrap();
    assert_eq!(data["containers"][0]["devices"], json!(["/dev/xvda"]));

    let err = error(
        json!({"volumeMounts": [{"name": "nope", "mountPath": "/x"}]}),
        spec.clone(),
        image_config(),
    );
    assert_eq!(path_of(&err), "spec.containers[0].volumeMounts[0].name");
    let err = error(
        json!({"volumeMounts": [{"name": "disk", "mountPath": "/x", "subPathExpr": "$(POD)"}]}),
        spec.clone(),
        image_config(),
    );
    assert_eq!(
        path_of(&err),
        "spec.containers[0].volumeMounts[0].subPathExpr"
    );
    let err = error(
        json!({"volumeMounts": [{"name": "disk", "mountPath": "/x", "subPath": "../etc"}]}),
        spec.clone(),
        image_config(),
    );
    assert_eq!(path_of(&err), "spec.containers[0].volumeMounts[0].subPath");
    let err = error(
        json!({"volumeMounts": [{"name": "mem", "mountPath": "/a"}, {"name": "disk", "mountPath": "/a/"}]}),
        spec,
        image_config(),
    );
    assert_eq!(
        path_of(&err),
        "spec.containers[0].volumeMounts[1].mountPath"
    );
    let err = error(
        json!({}),
        json!({"volumes": [{"name": "x", "futureVolume": {}}]}),
        image_config(),
    );
    assert!(matches!(err, PolicyError::UnknownField { .. }));
    assert_eq!(path_of(&err), "spec.volumes[0].futureVolume");
    let err = error(
        json!({}),
        json!({"volumes": [{"name": "x", "emptyDir": {"medium": "HugePages"}}]}),
        image_config(),
    );
    assert_eq!(path_of(&err), "spec.volumes[0].emptyDir.medium");
}

#[test]
fn runtime_mounts_follow_the_spec() {
    let c = app(json!({"terminationMessagePath": "/tmp/msg"}));
    assert!(mount(&c, "/tmp/msg").is_some() && mount(&c, "/dev/termination-log").is_none());
    let data = generate(&case(
        json!({}),
        json!({"automountServiceAccountToken": false}),
        image_config(),
    ))
    .unwrap();
    assert!(
        mount(
            &data["containers"][0],
            "/var/run/secrets/kubernetes.io/serviceaccount"
        )
        .is_none()
    );
    let mut config = image_config();
    config.volumes = vec!["/var/lib/app/".to_owned()];
    let data = generate(&case(json!({}), json!({}), config)).unwrap();
    let volume = mount(&data["containers"][0], "/var/lib/app").unwrap();
    assert_eq!(
        volume["required"],
        json!(false),
        "an image volume is the runtime's, not declared"
    );
    for m in data["containers"][0]["mounts"].as_array().unwrap() {
        assert_eq!(m["required"], json!(false), "nothing declared: {m}");
    }
}

#[test]
fn exec_commands_from_probes_and_lifecycle_handlers() {
    let c = app(json!({
        "livenessProbe": {"exec": {"command": ["check", "live"]}},
        "readinessProbe": {"exec": {"command": ["check", "live"]}},
        "startupProbe": {"tcpSocket": {"port": 80}},
        "lifecycle": {"postStart": {"exec": {"command": ["warm", "up"]}}, "preStop": {"sleep": {"seconds": 3}}},
    }));
    assert_eq!(c["exec"], json!([["check", "live"], ["warm", "up"]]));
    assert_eq!(app(json!({}))["exec"], json!([]));
    let err = error(
        json!({"livenessProbe": {"exec": {}}}),
        json!({}),
        image_config(),
    );
    assert_eq!(
        path_of(&err),
        "spec.containers[0].livenessProbe.exec.command"
    );
}

#[test]
fn images_must_be_pinned_to_the_configs_digest() {
    let unpinned = "registry.example/app:1.0";
    let mut c = case(json!({}), json!({}), image_config());
    c.spec["containers"][0]["image"] = json!(unpinned);
    c.images = BTreeMap::from([(unpinned.to_owned(), image_config())]);
    let err = generate(&c).unwrap_err();
    assert!(matches!(err, PolicyError::ImageNotPinned { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("{unpinned}@{DIGEST}")),
        "{err}"
    );

    let mut config = image_config();
    config.digest = format!("sha256:{}", "6".repeat(64));
    let err = error(json!({}), json!({}), config);
    assert!(matches!(err, PolicyError::DigestMismatch { .. }), "{err}");

    let mut config = image_config();
    config.digest = "sha256:abc".to_owned();
    let err = error(json!({}), json!({}), config);
    assert!(matches!(err, PolicyError::Invalid { .. }), "{err}");

    let mut c = case(json!({}), json!({}), image_config());
    c.images.clear();
    let err = generate(&c).unwrap_err();
    assert!(
        matches!(err, PolicyError::MissingImageConfig { .. }),
        "{err}"
    );
    assert_eq!(path_of(&err), "spec.containers[0].image");
}

#[test]
fn unknown_fields_are_refused_and_irrelevant_ones_ignored() {
    for (container, spec, path) in [
        (
            json!({"lifecycel": {}}),
            json!({}),
            "spec.containers[0].lifecycel",
        ),
        (
            json!({"securityContext": {"runAsUsr": 1}}),
            json!({}),
            "spec.containers[0].securityContext.runAsUsr",
        ),
        (
            json!({"lifecycle": {"postStart": {"exec": {"command": ["x"], "user": "root"}}}}),
            json!({}),
            "spec.containers[0].lifecycle.postStart.exec.user",
        ),
        (
            json!({"lifecycle": {"postStart": {"magic": {}}}}),
            json!({}),
            "spec.containers[0].lifecycle.postStart.magic",
        ),
        (
            json!({"env": [{"name": "A", "value": "1", "secret": true}]}),
            json!({}),
            "spec.containers[0].env[0].secret",
        ),
        (json!({}), json!({"hostMagic": true}), "spec.hostMagic"),
        (
            json!({}),
            json!({"securityContext": {"magic": 1}}),
            "spec.securityContext.magic",
        ),
    ] {
        let err = error(container, spec, image_config());
        assert!(matches!(err, PolicyError::UnknownField { .. }), "{err}");
        assert_eq!(path_of(&err), path);
        assert!(err.to_string().starts_with(path), "{err}");
    }
    let data = generate(&case(
        json!({
            "imagePullPolicy": "Always", "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}},
            "terminationMessagePolicy": "FallbackToLogsOnError", "stdin": true,
            "livenessProbe": {"httpGet": {"port": 80}, "periodSeconds": 3},
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}, "appArmorProfile": {"type": "RuntimeDefault"}},
        }),
        json!({
            "nodeSelector": {"a": "b"}, "tolerations": [], "affinity": {}, "dnsPolicy": "None", "dnsConfig": {},
            "hostAliases": [], "priorityClassName": "high", "terminationGracePeriodSeconds": 5,
            "runtimeClassName": "contrast-cc", "restartPolicy": "Always", "imagePullSecrets": [],
        }),
        image_config(),
    ));
    assert!(data.is_ok(), "{data:?}");
}

#[test]
fn the_pod_as_a_whole() {
    let err = error(json!({}), json!({"containers": []}), image_config());
    assert_eq!(path_of(&err), "spec.containers");
    let err = error(
        json!({}),
        json!({"initContainers": [{"name": "app", "image": IMAGE}]}),
        image_config(),
    );
    assert!(err.to_string().contains("\"app\""), "{err}");
    let mut c = case(json!({}), json!({}), image_config());
    c.name = String::new();
    assert_eq!(path_of(&generate(&c).unwrap_err()), "metadata.name");
    let err = generate(&Case {
        spec: json!([]),
        ..case(json!({}), json!({}), image_config())
    })
    .unwrap_err();
    assert_eq!(path_of(&err), "spec");

    let data = generate(&case(
        json!({}),
        json!({
            "shareProcessNamespace": true,
            "securityContext": {"sysctls": [{"name": "net.core.somaxconn", "value": "1024"}]},
            "hostname": "db", "subdomain": "dbs", "setHostnameAsFQDN": true,
        }),
        image_config(),
    ))
    .unwrap();
    assert_eq!(data["pod"]["share_process_namespace"], json!(true));
    assert_eq!(data["pod"]["sysctls"]["net.core.somaxconn"], "1024");

    assert_eq!(
        data["pod"]["optional_env"][0],
        r"^HOSTNAME=db(\.dbs\.prod\.svc\.[-a-z0-9.]+)?$"
    );
    assert_eq!(data["pod"]["namespace"], "prod");

    // YAML writes a number without quotes; it is the same sysctl.
    let data = generate(&case(
        json!({}),
        json!({"securityContext": {"sysctls": [{"name": "net.ipv4.ip_forward", "value": 1}]}}),
        image_config(),
    ))
    .unwrap();
    assert_eq!(data["pod"]["sysctls"]["net.ipv4.ip_forward"], "1");
    let err = generate(&case(
        json!({}),
        json!({"securityContext": {"sysctls": [{"name": "x", "value": ["1"]}]}}),
        image_config(),
    ))
    .unwrap_err();
    assert_eq!(path_of(&err), "spec.securityContext.sysctls[0].value");
}

#[test]
fn the_same_input_gives_the_same_policy() {
    let case = Case::load("web.json");
    let a = contrast_policy::policy_rego(&case.input()).unwrap();
    let b = contrast_policy::policy_rego(&case.input()).unwrap();
    assert_eq!(a, b);
    assert!(a.starts_with(contrast_policy::RULES));
    assert!(a[contrast_policy::RULES.len()..].starts_with("\npolicy_data := {\n"));
    assert!(a.ends_with("}\n"));
}

/// The platform's Kata runtime decides what the requests look like; a platform whose
/// requests the rules cannot admit yet is refused when the policy is generated, not when
/// every container is refused in the pod.
#[test]
fn platforms_whose_runtime_the_rules_do_not_admit_are_refused() {
    use contrast_platforms::Platform;
    let c = case(json!({}), json!({}), image_config());
    // AKS: the node's snapshotter hands the guest the layers (tardev).
    let input = contrast_policy::PodInput {
        runtime: Platform::AksClhSnp.kata_runtime(),
        ..c.input()
    };
    let err = contrast_policy::policy_rego(&input)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("spec.runtimeClassName: "), "{err}");
    for platform in Platform::ALL {
        let runtime = platform.kata_runtime();
        if runtime.image_pull != contrast_platforms::kata::ImagePull::InGuest {
            continue;
        }
        let input = contrast_policy::PodInput {
            runtime,
            ..c.input()
        };
        contrast_policy::policy_rego(&input).unwrap();
    }
}

/// GPUs: only on a GPU platform, where the sandbox names the guest image's hook directory
/// and a container with an `nvidia.com/pgpu` limit gets that many GPUs, cold-plugged (CDI
/// annotations only) or hot-plugged (a VFIO device per annotation); elsewhere the limit
/// is refused by its path.
#[test]
fn gpus_are_admitted_on_gpu_platforms_as_many_as_the_limit_says() {
    use contrast_platforms::Platform;
    let c = case(
        json!({"resources": {"limits": {"nvidia.com/pgpu": "2"}}}),
        json!({}),
        image_config(),
    );
    let err = contrast_policy::policy_rego(&c.input())
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("spec.containers[0].resources.limits[\"nvidia.com/pgpu\"]: "),
        "{err}"
    );
    let input = contrast_policy::PodInput {
        runtime: Platform::MetalQemuSnpGpu.kata_runtime(),
        ..c.input()
    };
    let policy = contrast_policy::policy_rego(&input).unwrap();
    let requests = contrast_policy::expected_requests(&input).unwrap();
    let mut agent = contrast_policy::AgentPolicy::new(&policy).unwrap();
    for (name, request) in &requests {
        let e = agent.decide(name, request).unwrap();
        assert!(e.allowed, "{name}: {:?}", e.prints);
    }
    let sandbox = &requests[0].1;
    assert_eq!(sandbox["guest_hook_path"], "/usr/share/oci/hooks");
    let app = requests
        .iter()
        .rfind(|(name, _)| name == "CreateContainerRequest")
        .unwrap()
        .1
        .clone();
    assert_eq!(
        app["OCI"]["Annotations"]["cdi.k8s.io/vfio1"],
        "nvidia.com/gpu=1"
    );
    let decide = |request: &Value| {
        let mut agent = common::before(&policy, &requests, &app);
        agent.explain("CreateContainerRequest", request).unwrap()
    };
    // Hot plug: a VFIO device for each annotation.
    let mut hot = app.clone();
    hot["devices"] = json!([0, 1].map(|n| json!({
        "container_path": format!("/dev/vfio/devices/vfio{n}"), "id": format!("vfio{n}"),
        "type_": "vfio-pci-gk", "vm_path": "", "options": [format!("0000:6{n}:00.0=06/00")],
    })));
    assert!(decide(&hot).evaluation.allowed);
    // One GPU fewer than the limit, a device of another number, another device type.
    let mut fewer = app.clone();
    fewer["OCI"]["Annotations"]
        .as_object_mut()
        .unwrap()
        .remove("cdi.k8s.io/vfio1");
    let mut other_number = hot.clone();
    other_number["devices"][1]["container_path"] = json!("/dev/vfio/devices/vfio7");
    other_number["devices"][1]["id"] = json!("vfio7");
    let mut other_type = hot.clone();
    other_type["devices"][0]["type_"] = json!("vfio-pci");
    for refused in [fewer, other_number, other_type] {
        let e = decide(&refused);
        assert!(!e.evaluation.allowed);
        assert!(e.failed.iter().any(|f| f.check == "gpus"), "{:?}", e.failed);
    }
    // A CreateSandbox without the platform's hook directory is refused.
    let mut no_hooks = sandbox.clone();
    no_hooks["guest_hook_path"] = json!("");
    let e = contrast_policy::AgentPolicy::new(&policy)
        .unwrap()
        .decide("CreateSandboxRequest", &no_hooks)
        .unwrap();
    assert!(!e.allowed);
}

/// A GPU limit that is not a whole number is refused by its path.
#[test]
fn a_gpu_limit_that_is_not_a_whole_number_is_refused() {
    for limit in [json!("1.5"), json!(-1), json!("two")] {
        let c = case(
            json!({"resources": {"limits": {"nvidia.com/pgpu": limit}}}),
            json!({}),
            image_config(),
        );
        let input = contrast_policy::PodInput {
            runtime: contrast_platforms::Platform::MetalQemuSnpGpu.kata_runtime(),
            ..c.input()
        };
        let err = contrast_policy::policy_rego(&input)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with(
                "spec.containers[0].resources.limits[\"nvidia.com/pgpu\"]: must be a whole number"
            ),
            "{limit}: {err}"
        );
    }
}
