//! The changes `contrast generate` makes to a confidential workload (docs/protocol.md
//! §9.2, §11, §12.1): runtime class, Initializer, service-mesh sidecar, encrypted volume.
//! Every change replaces what an earlier run added, so running twice changes nothing.

use std::collections::BTreeMap;

use contrast_mesh_config::{ConfigError, ProxyConfig};

use crate::workload::{Workload, WorkloadError, annotations, is_confidential_runtime_class};
use crate::yaml::{Map, Node};

/// Name of the injected Initializer container.
pub const INITIALIZER_NAME: &str = "contrast-initializer";
/// Name of the injected service-mesh sidecar.
pub const SERVICE_MESH_NAME: &str = "contrast-service-mesh";
/// The shared in-memory volume holding the workload's certificates and secrets.
pub const SECRETS_VOLUME: &str = "contrast-secrets";
/// Where every container sees [`SECRETS_VOLUME`].
pub const SECRETS_MOUNT_PATH: &str = "/contrast";
/// The Service through which workloads reach ready Coordinators.
pub const COORDINATOR_READY_HOST: &str = "coordinator-ready";
/// The block device path of an encrypted volume inside the Initializer.
pub const SECURE_PV_DEVICE_PATH: &str = "/dev/csi0";
/// Where the Initializer mounts the decrypted volume.
pub const SECURE_PV_MOUNT_PATH: &str = "/state";

/// The images of the containers generate injects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedImages {
    /// The Initializer.
    pub initializer: String,
    /// The service-mesh proxy.
    pub service_mesh: String,
}

/// How to mutate workloads.
#[derive(Debug, Clone)]
pub struct MutationOptions {
    /// The runtime handler name that replaces the `contrast-cc` placeholder.
    pub runtime_handler: String,
    /// `--skip-initializer`.
    pub skip_initializer: bool,
    /// `--skip-service-mesh`.
    pub skip_service_mesh: bool,
    /// Images of injected containers.
    pub images: InjectedImages,
    /// `--image-replacements`: image → replacement, applied to every container.
    pub image_replacements: BTreeMap<String, String>,
}

/// What [`mutate`] did to one workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mutation {
    /// The Initializer is in the pod.
    pub initializer: bool,
    /// The service-mesh sidecar is in the pod.
    pub service_mesh: bool,
    /// An encrypted volume is set up.
    pub secure_pv: bool,
    /// The pod's role annotation (`coordinator` for the Coordinator).
    pub role: String,
}

/// A workload generate cannot mutate as asked.
#[derive(Debug, thiserror::Error)]
pub enum MutateError {
    /// The resource has the wrong shape.
    #[error(transparent)]
    Shape(#[from] WorkloadError),
    /// A field has the wrong type.
    #[error("{resource}: {path} is {found}; expected {expected}")]
    Field {
        /// `Kind/name`.
        resource: String,
        /// Field path inside the pod spec.
        path: String,
        /// What is there.
        found: &'static str,
        /// What should be there.
        expected: &'static str,
    },
    /// A service-mesh annotation does not follow its grammar.
    #[error("{resource}: annotation {annotation}: {message}")]
    ServiceMesh {
        /// `Kind/name`.
        resource: String,
        /// The annotation key.
        annotation: &'static str,
        /// The parser's explanation (names the bad entry).
        message: String,
    },
    /// An annotation value is not usable.
    #[error("{resource}: annotation {annotation}={value:?}: {problem}")]
    Annotation {
        /// `Kind/name`.
        resource: String,
        /// The annotation key.
        annotation: &'static str,
        /// Its value.
        value: String,
        /// What is wrong and what to do.
        problem: String,
    },
}

/// Applies generate's changes to a confidential workload. Returns `None` (and changes
/// nothing) when the workload does not ask for a confidential runtime class.
pub fn mutate(
    workload: &mut Workload<'_>,
    options: &MutationOptions,
) -> Result<Option<Mutation>, MutateError> {
    let resource = workload.display_name();
    match workload.runtime_class_name() {
        Some(name) if is_confidential_runtime_class(&name) => {}
        _ => return Ok(None),
    }
    let role = workload
        .annotation(annotations::POD_ROLE)
        .unwrap_or_default();
    let skip_annotation = workload.annotation(annotations::SKIP_INITIALIZER);
    let skip_initializer = options.skip_initializer
        || skip_annotation.as_deref() == Some("true")
        || role == contrast_manifest::ROLE_COORDINATOR;
    let ingress = workload.annotation(annotations::SERVICEMESH_INGRESS);
    let egress = workload.annotation(annotations::SERVICEMESH_EGRESS);
    let admin_port = workload
        .annotation(annotations::SERVICEMESH_ADMIN_PORT)
        .unwrap_or_default();
    let secure_pv = workload.annotation(annotations::SECURE_PV);

    let mesh = if options.skip_service_mesh || (ingress.is_none() && egress.is_none()) {
        None
    } else {
        if egress.as_deref() == Some("") {
            return Err(MutateError::Annotation {
                resource,
                annotation: annotations::SERVICEMESH_EGRESS,
                value: String::new(),
                problem: "is empty; remove the annotation or give at least one \
                          <name>#<listenIP>:<listenPort>#<remoteHost>:<remotePort> entry"
                    .to_owned(),
            });
        }
        let ingress = ingress.unwrap_or_default();
        let egress = egress.unwrap_or_default();
        ProxyConfig::parse(&ingress, &egress, &admin_port).map_err(|e| mesh_error(&resource, e))?;
        Some((ingress, egress, admin_port))
    };

    let spec = workload.pod_spec()?;
    spec.insert("runtimeClassName", Node::str(&options.runtime_handler));

    let mut mutation = Mutation {
        role,
        ..Mutation::default()
    };
    if skip_initializer {
        // A skipped Initializer is the user's: leave whatever they wrote.
        if mesh.is_some() {
            mutation.service_mesh = true;
            set_service_mesh(spec, mesh.as_ref(), &options.images, &resource)?;
        } else {
            remove_container(spec, "initContainers", SERVICE_MESH_NAME, &resource)?;
        }
        replace_images(spec, &options.image_replacements, &resource)?;
        return Ok(Some(mutation));
    }

    ensure_secrets_volume(spec, &resource)?;
    let mut initializer = initializer_container(&options.images.initializer, mesh.is_none());
    if let Some(value) = &secure_pv {
        configure_secure_pv(spec, &mut initializer, value, &resource)?;
        mutation.secure_pv = true;
    }
    let init_containers = seq_field(spec, "initContainers", &resource)?;
    init_containers.retain(|c| container_name(c) != Some(INITIALIZER_NAME));
    init_containers.insert(0, Node::Map(initializer));
    mutation.initializer = true;

    set_service_mesh(spec, mesh.as_ref(), &options.images, &resource)?;
    mutation.service_mesh = mesh.is_some();
    mount_secrets_everywhere(spec, &resource)?;
    // Last, so injected containers are replaced too.
    replace_images(spec, &options.image_replacements, &resource)?;
    Ok(Some(mutation))
}

fn mesh_error(resource: &str, error: ConfigError) -> MutateError {
    use contrast_mesh_config::{ADMIN_PORT_ENV, EGRESS_ENV, INGRESS_ENV};
    let annotation = match &error {
        ConfigError::Entry { variable, .. } | ConfigError::NotUnicode { variable }
            if *variable == EGRESS_ENV =>
        {
            annotations::SERVICEMESH_EGRESS
        }
        ConfigError::Entry { variable, .. } | ConfigError::NotUnicode { variable }
            if *variable == INGRESS_ENV =>
        {
            annotations::SERVICEMESH_INGRESS
        }
        _ => annotations::SERVICEMESH_ADMIN_PORT,
    };
    // The parser names environment variables; the user wrote annotations.
    let message = error
        .to_string()
        .replace(&format!("{INGRESS_ENV}: "), "")
        .replace(&format!("{EGRESS_ENV}: "), "")
        .replace(&format!("{ADMIN_PORT_ENV}: "), "");
    MutateError::ServiceMesh {
        resource: resource.to_owned(),
        annotation,
        message,
    }
}

fn container_name(container: &Node) -> Option<&str> {
    container.as_map()?.str("name")
}

fn field_error(resource: &str, path: &str, found: &Node, expected: &'static str) -> MutateError {
    MutateError::Field {
        resource: resource.to_owned(),
        path: path.to_owned(),
        found: found.kind(),
        expected,
    }
}

/// The list under `key` of the pod spec, created when absent.
fn seq_field<'m>(
    spec: &'m mut Map,
    key: &str,
    resource: &str,
) -> Result<&'m mut Vec<Node>, MutateError> {
    if let Some(found) = spec.get(key)
        && !matches!(found, Node::Seq(_) | Node::Null)
    {
        return Err(field_error(
            resource,
            &format!("spec.{key}"),
            found,
            "a list",
        ));
    }
    spec.seq_entry(key)
        .ok_or_else(|| field_error(resource, &format!("spec.{key}"), &Node::Null, "a list"))
}

fn remove_container(
    spec: &mut Map,
    key: &str,
    name: &str,
    resource: &str,
) -> Result<(), MutateError> {
    if spec.get(key).is_some() {
        seq_field(spec, key, resource)?.retain(|c| container_name(c) != Some(name));
        if matches!(spec.get(key), Some(Node::Seq(s)) if s.is_empty()) {
            spec.remove(key);
        }
    }
    Ok(())
}

/// Applies `--image-replacements` to every container.
fn replace_images(
    spec: &mut Map,
    replacements: &BTreeMap<String, String>,
    resource: &str,
) -> Result<(), MutateError> {
    if replacements.is_empty() {
        return Ok(());
    }
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        let Some(list) = spec.get_mut(key) else {
            continue;
        };
        let Some(list) = list.as_seq_mut() else {
            return Err(field_error(
                resource,
                &format!("spec.{key}"),
                list,
                "a list",
            ));
        };
        for container in list.iter_mut().filter_map(Node::as_map_mut) {
            if let Some(replacement) = container.str("image").and_then(|i| replacements.get(i)) {
                container.insert("image", Node::str(replacement));
            }
        }
    }
    Ok(())
}

fn ensure_secrets_volume(spec: &mut Map, resource: &str) -> Result<(), MutateError> {
    let volumes = seq_field(spec, "volumes", resource)?;
    for volume in volumes.iter() {
        let Some(volume) = volume.as_map() else {
            continue;
        };
        if volume.str("name") == Some(SECRETS_VOLUME) {
            return match volume.get("emptyDir") {
                Some(_) => Ok(()),
                None => Err(MutateError::Field {
                    resource: resource.to_owned(),
                    path: format!("spec.volumes[name={SECRETS_VOLUME}]"),
                    found: "not an emptyDir",
                    expected: "an emptyDir volume (or remove it and let generate add one)",
                }),
            };
        }
    }
    volumes.push(map([
        ("name", Node::str(SECRETS_VOLUME)),
        ("emptyDir", map([("medium", Node::str("Memory"))])),
    ]));
    Ok(())
}

fn map<const N: usize>(entries: [(&str, Node); N]) -> Node {
    Node::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn env_var(name: &str, value: &str) -> Node {
    map([("name", Node::str(name)), ("value", Node::str(value))])
}

fn memory(amount: &str) -> Node {
    map([
        ("requests", map([("memory", Node::str(amount))])),
        ("limits", map([("memory", Node::str(amount))])),
    ])
}

fn secrets_mount() -> Node {
    map([
        ("name", Node::str(SECRETS_VOLUME)),
        ("mountPath", Node::str(SECRETS_MOUNT_PATH)),
    ])
}

fn initializer_container(image: &str, mesh_disabled: bool) -> Map {
    let mut env = vec![env_var("COORDINATOR_HOST", COORDINATOR_READY_HOST)];
    if mesh_disabled {
        env.push(env_var("CONTRAST_SERVICE_MESH_DISABLED", "true"));
    }
    let Node::Map(container) = map([
        ("name", Node::str(INITIALIZER_NAME)),
        ("image", Node::str(image)),
        ("env", Node::Seq(env)),
        ("resources", memory("50Mi")),
        (
            "securityContext",
            map([(
                "capabilities",
                map([("add", Node::Seq(vec![Node::str("NET_ADMIN")]))]),
            )]),
        ),
        ("volumeMounts", Node::Seq(vec![secrets_mount()])),
    ]) else {
        return Map::new();
    };
    container
}

/// `<device-volume>:<mount-volume>` (docs/protocol.md §12.1).
fn configure_secure_pv(
    spec: &mut Map,
    initializer: &mut Map,
    value: &str,
    resource: &str,
) -> Result<(), MutateError> {
    let bad = |problem: String| MutateError::Annotation {
        resource: resource.to_owned(),
        annotation: annotations::SECURE_PV,
        value: value.to_owned(),
        problem,
    };
    let parts: Vec<&str> = value.split(':').collect();
    let [device, mount] = parts.as_slice() else {
        return Err(bad(
            "expected <device-volume>:<mount-volume> with exactly one colon".to_owned(),
        ));
    };
    if device.is_empty() || mount.is_empty() || device == mount {
        return Err(bad(
            "expected two different, non-empty volume names: <device-volume>:<mount-volume>"
                .to_owned(),
        ));
    }
    // The device volume: a PVC, an ephemeral PVC or iSCSI in the pod, or a claim template
    // of the StatefulSet (not visible from the pod spec, so an unknown name is accepted
    // only if no pod volume has it).
    let volumes = seq_field(spec, "volumes", resource)?;
    if let Some(volume) = volumes
        .iter()
        .filter_map(Node::as_map)
        .find(|v| v.str("name") == Some(device))
        && !["persistentVolumeClaim", "ephemeral", "iscsi"]
            .iter()
            .any(|k| volume.get(k).is_some())
    {
        return Err(bad(format!(
            "volume {device:?} must be a persistentVolumeClaim, ephemeral or iscsi volume \
             (a raw block device)"
        )));
    }
    match volumes
        .iter()
        .filter_map(Node::as_map)
        .find(|v| v.str("name") == Some(mount))
    {
        Some(volume) if volume.get("emptyDir").is_none() => {
            return Err(bad(format!(
                "volume {mount:?} must be an emptyDir (or absent: generate then adds one)"
            )));
        }
        Some(_) => {}
        None => volumes.push(map([("name", Node::str(*mount)), ("emptyDir", map([]))])),
    }

    if let Some(env) = initializer.seq_entry("env") {
        env.push(env_var("CRYPTSETUP_DEVICE", SECURE_PV_DEVICE_PATH));
    }
    initializer.insert(
        "volumeDevices",
        Node::Seq(vec![map([
            ("name", Node::str(*device)),
            ("devicePath", Node::str(SECURE_PV_DEVICE_PATH)),
        ])]),
    );
    if let Some(mounts) = initializer.seq_entry("volumeMounts") {
        mounts.push(map([
            ("name", Node::str(*mount)),
            ("mountPath", Node::str(SECURE_PV_MOUNT_PATH)),
            ("mountPropagation", Node::str("Bidirectional")),
        ]));
    }
    initializer.insert(
        "securityContext",
        map([
            ("privileged", Node::Bool(true)),
            (
                "capabilities",
                map([("add", Node::Seq(vec![Node::str("NET_ADMIN")]))]),
            ),
        ]),
    );
    initializer.insert("resources", memory("100Mi"));
    initializer.insert(
        "startupProbe",
        map([
            (
                "exec",
                map([(
                    "command",
                    Node::Seq(vec![Node::str("test"), Node::str("-f"), Node::str("/done")]),
                )]),
            ),
            ("periodSeconds", Node::Int(5)),
            ("failureThreshold", Node::Int(20)),
        ]),
    );
    initializer.insert("restartPolicy", Node::str("Always"));

    // Application containers see the decrypted mount through HostToContainer propagation.
    for key in ["containers", "initContainers"] {
        let Some(list) = spec.get_mut(key).and_then(Node::as_seq_mut) else {
            continue;
        };
        for container in list.iter_mut().filter_map(Node::as_map_mut) {
            if container.str("name") == Some(INITIALIZER_NAME) {
                continue;
            }
            let Some(mounts) = container.get_mut("volumeMounts").and_then(Node::as_seq_mut) else {
                continue;
            };
            for m in mounts.iter_mut().filter_map(Node::as_map_mut) {
                if m.str("name") == Some(*mount) {
                    m.insert("mountPropagation", Node::str("HostToContainer"));
                }
            }
        }
    }
    Ok(())
}

fn set_service_mesh(
    spec: &mut Map,
    mesh: Option<&(String, String, String)>,
    images: &InjectedImages,
    resource: &str,
) -> Result<(), MutateError> {
    let Some((ingress, egress, admin_port)) = mesh else {
        return remove_container(spec, "initContainers", SERVICE_MESH_NAME, resource);
    };
    let mut env = vec![
        env_var("CONTRAST_INGRESS_PROXY_CONFIG", ingress),
        env_var("CONTRAST_EGRESS_PROXY_CONFIG", egress),
    ];
    if !admin_port.is_empty() {
        env.push(env_var("CONTRAST_ADMIN_PORT", admin_port));
    }
    let sidecar = map([
        ("name", Node::str(SERVICE_MESH_NAME)),
        ("image", Node::str(&images.service_mesh)),
        ("restartPolicy", Node::str("Always")),
        ("env", Node::Seq(env)),
        ("resources", memory("50Mi")),
        (
            "securityContext",
            map([
                ("privileged", Node::Bool(true)),
                (
                    "capabilities",
                    map([("add", Node::Seq(vec![Node::str("NET_ADMIN")]))]),
                ),
            ]),
        ),
        (
            "startupProbe",
            map([
                (
                    "exec",
                    map([(
                        "command",
                        Node::Seq(vec![
                            Node::str("test"),
                            Node::str("-f"),
                            Node::str("/ready"),
                        ]),
                    )]),
                ),
                ("periodSeconds", Node::Int(1)),
                ("failureThreshold", Node::Int(60)),
            ]),
        ),
        ("volumeMounts", Node::Seq(vec![secrets_mount()])),
    ]);
    let init_containers = seq_field(spec, "initContainers", resource)?;
    init_containers.retain(|c| container_name(c) != Some(SERVICE_MESH_NAME));
    // Right after the Initializer: the proxy needs the certificates it writes.
    let position = usize::from(
        init_containers
            .first()
            .is_some_and(|c| container_name(c) == Some(INITIALIZER_NAME)),
    );
    init_containers.insert(position, sidecar);
    Ok(())
}

fn mount_secrets_everywhere(spec: &mut Map, resource: &str) -> Result<(), MutateError> {
    for key in ["initContainers", "containers"] {
        let Some(list) = spec.get_mut(key) else {
            continue;
        };
        let Some(list) = list.as_seq_mut() else {
            return Err(field_error(
                resource,
                &format!("spec.{key}"),
                list,
                "a list",
            ));
        };
        for (index, container) in list.iter_mut().enumerate() {
            let Some(container) = container.as_map_mut() else {
                return Err(field_error(
                    resource,
                    &format!("spec.{key}[{index}]"),
                    container,
                    "a container",
                ));
            };
            let path = format!("spec.{key}[{index}].volumeMounts");
            if let Some(found) = container.get("volumeMounts")
                && !matches!(found, Node::Seq(_) | Node::Null)
            {
                return Err(field_error(resource, &path, found, "a list"));
            }
            let Some(mounts) = container.seq_entry("volumeMounts") else {
                continue;
            };
            if !mounts
                .iter()
                .filter_map(Node::as_map)
                .any(|m| m.str("name") == Some(SECRETS_VOLUME))
            {
                mounts.push(secrets_mount());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::for_each_workload;
    use crate::yaml::{emit_documents, parse_documents};

    fn options() -> MutationOptions {
        MutationOptions {
            runtime_handler: "contrast-cc-sim-snp-0123abcd".to_owned(),
            skip_initializer: false,
            skip_service_mesh: false,
            images: InjectedImages {
                initializer: "registry.test/initializer@sha256:aa".to_owned(),
                service_mesh: "registry.test/mesh@sha256:bb".to_owned(),
            },
            image_replacements: BTreeMap::new(),
        }
    }

    fn run(
        text: &str,
        options: &MutationOptions,
    ) -> Result<(String, Vec<Option<Mutation>>), MutateError> {
        let mut docs = parse_documents(text).unwrap();
        let mut results = Vec::new();
        for_each_workload(&mut docs, |mut w| {
            results.push(mutate(&mut w, options)?);
            Ok::<(), MutateError>(())
        })?;
        Ok((emit_documents(&docs), results))
    }

    const WEB: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  annotations:
    contrast.edgeless.systems/servicemesh-ingress: \"web#8080#false\"
    contrast.edgeless.systems/servicemesh-egress: \"api#127.137.0.1:8081#api:8081\"
spec:
  replicas: 1
  template:
    metadata:
      labels:
        app: web
    spec:
      runtimeClassName: contrast-cc
      containers:
        - name: web
          image: nginx:1.27
          command: [\"nginx\", \"-g\", \"daemon off;\"]
          unknownFutureField: kept
";

    #[test]
    fn injects_initializer_and_mesh_and_is_idempotent() {
        let (once, results) = run(WEB, &options()).unwrap();
        let mutation = results[0].clone().unwrap();
        assert!(mutation.initializer && mutation.service_mesh && !mutation.secure_pv);
        assert!(once.contains("runtimeClassName: contrast-cc-sim-snp-0123abcd"));
        assert!(once.contains("unknownFutureField: kept"));
        let docs = parse_documents(&once).unwrap();
        let spec = &docs[0].to_json()["spec"]["template"]["spec"];
        assert_eq!(spec["initContainers"][0]["name"], INITIALIZER_NAME);
        assert_eq!(spec["initContainers"][1]["name"], SERVICE_MESH_NAME);
        assert_eq!(spec["initContainers"][1]["restartPolicy"], "Always");
        assert_eq!(
            spec["initContainers"][0]["env"][0]["value"],
            "coordinator-ready"
        );
        assert_eq!(
            spec["initContainers"][0]["env"].as_array().unwrap().len(),
            1
        );
        assert_eq!(spec["volumes"][0]["emptyDir"]["medium"], "Memory");
        assert_eq!(
            spec["containers"][0]["volumeMounts"][0]["mountPath"],
            "/contrast"
        );
        let (twice, _) = run(&once, &options()).unwrap();
        assert_eq!(once, twice, "a second run changes nothing");
    }

    #[test]
    fn non_confidential_workloads_are_untouched() {
        let text = WEB.replace("runtimeClassName: contrast-cc", "runtimeClassName: runc");
        let (out, results) = run(&text, &options()).unwrap();
        assert_eq!(results, vec![None]);
        assert_eq!(
            parse_documents(&out).unwrap(),
            parse_documents(&text).unwrap()
        );
    }

    #[test]
    fn skip_initializer_by_flag_annotation_and_coordinator_role() {
        let mut opts = options();
        opts.skip_initializer = true;
        let (out, results) = run(WEB, &opts).unwrap();
        assert!(!results[0].as_ref().unwrap().initializer);
        assert!(!out.contains(INITIALIZER_NAME));
        assert!(out.contains(SERVICE_MESH_NAME));

        let annotated = WEB.replace(
            "  annotations:\n",
            "  annotations:\n    contrast.edgeless.systems/skip-initializer: \"true\"\n",
        );
        let (out, _) = run(&annotated, &options()).unwrap();
        assert!(!out.contains(INITIALIZER_NAME));

        let coordinator = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: coordinator}\nspec:\n  template:\n    metadata:\n      annotations:\n        contrast.edgeless.systems/pod-role: coordinator\n    spec:\n      runtimeClassName: contrast-cc\n      containers: [{name: coordinator, image: c}]\n";
        let (out, results) = run(coordinator, &options()).unwrap();
        let m = results[0].clone().unwrap();
        assert_eq!(m.role, "coordinator");
        assert!(!m.initializer);
        assert!(!out.contains(INITIALIZER_NAME));
        assert!(out.contains("contrast-cc-sim-snp-0123abcd"));
    }

    #[test]
    fn mesh_annotation_errors_name_the_annotation_and_entry() {
        let bad = WEB.replace("web#8080#false", "web#8080#maybe");
        let err = run(&bad, &options()).unwrap_err().to_string();
        assert!(err.contains("Deployment/web"), "{err}");
        assert!(err.contains("servicemesh-ingress"), "{err}");
        assert!(err.contains("web#8080#maybe"), "{err}");
        assert!(!err.contains("CONTRAST_INGRESS"), "{err}");

        let bad = WEB.replace(
            "api#127.137.0.1:8081#api:8081",
            "api#10.0.0.1:8081#api:8081",
        );
        let err = run(&bad, &options()).unwrap_err().to_string();
        assert!(err.contains("servicemesh-egress"), "{err}");

        let empty = WEB.replace("\"api#127.137.0.1:8081#api:8081\"", "\"\"");
        let err = run(&empty, &options()).unwrap_err().to_string();
        assert!(
            err.contains("servicemesh-egress") && err.contains("empty"),
            "{err}"
        );
    }

    #[test]
    fn removing_the_mesh_annotation_removes_the_sidecar() {
        let (once, _) = run(WEB, &options()).unwrap();
        let without = once
            .lines()
            .filter(|l| !l.contains("servicemesh-"))
            .collect::<Vec<_>>()
            .join("\n");
        let (out, results) = run(&without, &options()).unwrap();
        assert!(!results[0].as_ref().unwrap().service_mesh);
        assert!(!out.contains(SERVICE_MESH_NAME));
        assert!(out.contains("CONTRAST_SERVICE_MESH_DISABLED"));
    }

    #[test]
    fn secure_pv_configures_the_initializer() {
        let text = "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  annotations:
    contrast.edgeless.systems/secure-pv: \"disk:state\"
spec:
  template:
    spec:
      runtimeClassName: contrast-cc
      containers:
        - name: db
          image: postgres
          volumeMounts:
            - name: state
              mountPath: /var/lib/postgresql
  volumeClaimTemplates:
    - metadata: {name: disk}
      spec: {volumeMode: Block}
";
        let (out, results) = run(text, &options()).unwrap();
        assert!(results[0].as_ref().unwrap().secure_pv);
        let docs = parse_documents(&out).unwrap();
        let spec = &docs[0].to_json()["spec"]["template"]["spec"];
        let init = &spec["initContainers"][0];
        assert_eq!(init["volumeDevices"][0]["devicePath"], "/dev/csi0");
        assert_eq!(init["volumeMounts"][1]["mountPropagation"], "Bidirectional");
        assert_eq!(init["restartPolicy"], "Always");
        assert_eq!(init["securityContext"]["privileged"], true);
        assert_eq!(init["env"][2]["name"], "CRYPTSETUP_DEVICE");
        assert_eq!(
            spec["containers"][0]["volumeMounts"][0]["mountPropagation"],
            "HostToContainer"
        );
        assert!(
            spec["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["name"] == "state")
        );
        let (twice, _) = run(&out, &options()).unwrap();
        assert_eq!(out, twice);

        for bad in ["disk", "a:b:c", ":x", "x:x"] {
            let text = text.replace("disk:state", bad);
            let err = run(&text, &options()).unwrap_err().to_string();
            assert!(err.contains("secure-pv"), "{bad}: {err}");
        }
        let wrong_kind = text.replace(
            "      containers:\n",
            "      volumes:\n        - name: state\n          configMap: {name: x}\n      containers:\n",
        );
        let err = run(&wrong_kind, &options()).unwrap_err().to_string();
        assert!(err.contains("must be an emptyDir"), "{err}");
    }

    #[test]
    fn image_replacements_apply_to_all_containers() {
        let mut opts = options();
        opts.image_replacements.insert(
            "nginx:1.27".to_owned(),
            "127.0.0.1:5000/nginx@sha256:cc".to_owned(),
        );
        opts.image_replacements.insert(
            "registry.test/initializer@sha256:aa".to_owned(),
            "127.0.0.1:5000/initializer:v1".to_owned(),
        );
        let (out, _) = run(WEB, &opts).unwrap();
        let docs = parse_documents(&out).unwrap();
        let spec = &docs[0].to_json()["spec"]["template"]["spec"];
        assert_eq!(
            spec["containers"][0]["image"],
            "127.0.0.1:5000/nginx@sha256:cc"
        );
        assert_eq!(
            spec["initContainers"][0]["image"],
            "127.0.0.1:5000/initializer:v1"
        );
        assert!(!out.contains("nginx:1.27"));
    }

    #[test]
    fn refuses_wrong_shapes_with_the_field_path() {
        let text = WEB.replace(
            "      containers:\n",
            "      volumes:\n        - name: contrast-secrets\n          hostPath: {path: /x}\n      containers:\n",
        );
        let err = run(&text, &options()).unwrap_err().to_string();
        assert!(
            err.contains("contrast-secrets") && err.contains("emptyDir"),
            "{err}"
        );

        let text = WEB.replace(
            "      containers:\n",
            "      initContainers: 5\n      containers:\n",
        );
        let err = run(&text, &options()).unwrap_err().to_string();
        assert!(
            err.contains("spec.initContainers is an integer; expected a list"),
            "{err}"
        );
    }
}
