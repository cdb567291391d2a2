//! Finding the workloads in a set of documents, and their pod templates.

use crate::yaml::{Map, Node};

/// Annotation keys `contrast generate` reads (docs/protocol.md §9.6, §11.4, §12.1).
pub mod annotations {
    /// Skip the Initializer for this workload (`"true"`).
    pub const SKIP_INITIALIZER: &str = "contrast.edgeless.systems/skip-initializer";
    /// Service-mesh ingress configuration.
    pub const SERVICEMESH_INGRESS: &str = "contrast.edgeless.systems/servicemesh-ingress";
    /// Service-mesh egress configuration.
    pub const SERVICEMESH_EGRESS: &str = "contrast.edgeless.systems/servicemesh-egress";
    /// Service-mesh admin interface port.
    pub const SERVICEMESH_ADMIN_PORT: &str =
        "contrast.edgeless.systems/servicemesh-admin-interface-port";
    /// Encrypted persistent volume: `<device-volume>:<mount-volume>`.
    pub const SECURE_PV: &str = "contrast.edgeless.systems/secure-pv";
    /// The workload secret ID (default derived from the resource).
    pub const WORKLOAD_SECRET_ID: &str = "contrast.edgeless.systems/workload-secret-id";
    /// The pod role (`coordinator` for the Coordinator).
    pub const POD_ROLE: &str = "contrast.edgeless.systems/pod-role";
}

/// The workload kinds `contrast generate` makes confidential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    /// `v1/Pod`.
    Pod,
    /// `apps/v1/Deployment`.
    Deployment,
    /// `apps/v1/StatefulSet`.
    StatefulSet,
    /// `apps/v1/DaemonSet`.
    DaemonSet,
    /// `apps/v1/ReplicaSet`.
    ReplicaSet,
    /// `v1/ReplicationController`.
    ReplicationController,
    /// `batch/v1/Job`.
    Job,
    /// `batch/v1/CronJob`.
    CronJob,
}

impl WorkloadKind {
    /// The kind for a resource's `kind` field.
    pub fn from_kind(kind: &str) -> Option<WorkloadKind> {
        Some(match kind {
            "Pod" => WorkloadKind::Pod,
            "Deployment" => WorkloadKind::Deployment,
            "StatefulSet" => WorkloadKind::StatefulSet,
            "DaemonSet" => WorkloadKind::DaemonSet,
            "ReplicaSet" => WorkloadKind::ReplicaSet,
            "ReplicationController" => WorkloadKind::ReplicationController,
            "Job" => WorkloadKind::Job,
            "CronJob" => WorkloadKind::CronJob,
            _ => return None,
        })
    }

    /// The path from the resource to the object holding the pod's `metadata` and `spec`.
    pub fn pod_template_path(self) -> &'static [&'static str] {
        match self {
            WorkloadKind::Pod => &[],
            WorkloadKind::CronJob => &["spec", "jobTemplate", "spec", "template"],
            _ => &["spec", "template"],
        }
    }
}

/// A resource that is not what its `kind` promises.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    /// A field has the wrong type or is missing.
    #[error("{resource}: {path} is {found}; expected {expected}")]
    Shape {
        /// `Kind/name` of the resource.
        resource: String,
        /// The field path, e.g. `spec.template.spec`.
        path: String,
        /// What is there.
        found: &'static str,
        /// What should be there.
        expected: &'static str,
    },
}

/// One workload resource inside a document.
#[derive(Debug)]
pub struct Workload<'a> {
    /// Its kind.
    pub kind: WorkloadKind,
    /// Its `apiVersion` (`apps/v1`).
    pub api_version: String,
    /// `metadata.name` (or `generateName`).
    pub name: String,
    /// `name` is `metadata.generateName`, a prefix Kubernetes completes.
    pub generated_name: bool,
    /// `metadata.namespace`, `default` when absent.
    pub namespace: String,
    /// The resource names its namespace; without one, Kubernetes puts it where it is
    /// applied.
    pub namespace_given: bool,
    /// The whole resource.
    pub object: &'a mut Map,
}

impl Workload<'_> {
    /// `Kind/name`, for messages.
    pub fn display_name(&self) -> String {
        format!("{:?}/{}", self.kind, self.name)
    }

    /// The workload secret ID Contrast derives when the annotation does not set one:
    /// `<group or core>/<version>/<Kind>/<namespace>/<name>`.
    pub fn default_workload_secret_id(&self) -> String {
        let (group, version) = match self.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("core", self.api_version.as_str()),
        };
        format!(
            "{group}/{version}/{:?}/{}/{}",
            self.kind, self.namespace, self.name
        )
    }

    /// The object holding the pod's `metadata` and `spec` (the resource itself for a Pod);
    /// its `spec` is checked to be a mapping.
    pub fn pod_template(&mut self) -> Result<&mut Map, WorkloadError> {
        let resource = self.display_name();
        let path = self.kind.pod_template_path();
        let shape = |depth: usize, found: Option<&Node>, expected: &'static str| {
            let mut full: Vec<&str> = path[..depth.min(path.len())].to_vec();
            if depth > path.len() {
                full.push("spec");
            }
            WorkloadError::Shape {
                resource: resource.clone(),
                path: full.join("."),
                found: found.unwrap_or(&Node::Null).kind(),
                expected,
            }
        };
        let mut node: &mut Map = &mut *self.object;
        for (i, key) in path.iter().enumerate() {
            node = match node.get_mut(key) {
                Some(Node::Map(m)) => m,
                other => return Err(shape(i + 1, other.map(|n| &*n), "a mapping")),
            };
        }
        match node.get("spec") {
            Some(Node::Map(_)) => Ok(node),
            other => Err(shape(path.len() + 1, other, "a PodSpec")),
        }
    }

    /// The pod template's `spec`.
    pub fn pod_spec(&mut self) -> Result<&mut Map, WorkloadError> {
        let resource = self.display_name();
        let template = self.pod_template()?;
        template
            .get_mut("spec")
            .and_then(Node::as_map_mut)
            .ok_or(WorkloadError::Shape {
                resource,
                path: "spec".to_owned(),
                found: "null",
                expected: "a PodSpec",
            })
    }

    /// The value of a Contrast annotation: on the resource, else on the pod template.
    pub fn annotation(&self, key: &str) -> Option<String> {
        let from = |map: &Map| -> Option<String> {
            map.get("metadata")?
                .as_map()?
                .get("annotations")?
                .as_map()?
                .str(key)
                .map(str::to_owned)
        };
        if let Some(value) = from(self.object) {
            return Some(value);
        }
        let mut node: &Map = self.object;
        for key in self.kind.pod_template_path() {
            node = node.get(key)?.as_map()?;
        }
        from(node)
    }

    /// The pod spec's `runtimeClassName`.
    pub fn runtime_class_name(&mut self) -> Option<String> {
        self.pod_spec()
            .ok()?
            .str("runtimeClassName")
            .map(str::to_owned)
    }
}

/// Whether a runtime class name asks for a confidential pod: `contrast-cc…` (the
/// placeholder or an earlier generate's handler) or the older `kata-cc-isolation`.
pub fn is_confidential_runtime_class(name: &str) -> bool {
    name.starts_with("contrast-cc") || name == "kata-cc-isolation"
}

/// Calls `f` on every workload resource in `documents`, including the items of a
/// `kind: List`. Other resources are left alone.
pub fn for_each_workload<E>(
    documents: &mut [Node],
    mut f: impl FnMut(Workload<'_>) -> Result<(), E>,
) -> Result<(), E> {
    for document in documents {
        visit(document, &mut f)?;
    }
    Ok(())
}

fn visit<E>(node: &mut Node, f: &mut impl FnMut(Workload<'_>) -> Result<(), E>) -> Result<(), E> {
    let Node::Map(map) = node else { return Ok(()) };
    let kind = map.str("kind").unwrap_or_default().to_owned();
    if kind == "List" || kind.ends_with("List") && map.get("items").is_some() {
        if let Some(Node::Seq(items)) = map.get_mut("items") {
            for item in items {
                visit(item, f)?;
            }
        }
        return Ok(());
    }
    let Some(kind) = WorkloadKind::from_kind(&kind) else {
        return Ok(());
    };
    let api_version = map.str("apiVersion").unwrap_or_default().to_owned();
    let metadata = map.get("metadata").and_then(Node::as_map);
    let given = metadata.and_then(|m| m.str("name"));
    let generated_name = given.is_none() && metadata.and_then(|m| m.str("generateName")).is_some();
    let name = given
        .or_else(|| metadata.and_then(|m| m.str("generateName")))
        .unwrap_or_default()
        .to_owned();
    let given_namespace = metadata.and_then(|m| m.str("namespace"));
    let namespace_given = given_namespace.is_some();
    let namespace = given_namespace.unwrap_or("default").to_owned();
    f(Workload {
        kind,
        api_version,
        name,
        generated_name,
        namespace,
        namespace_given,
        object: map,
    })
}

/// The ConfigMaps and Secrets among `documents` (inputs for env references), as JSON.
pub fn config_inputs(documents: &[Node]) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
    let mut config_maps = Vec::new();
    let mut secrets = Vec::new();
    let mut stack: Vec<&Node> = documents.iter().collect();
    while let Some(node) = stack.pop() {
        let Some(map) = node.as_map() else { continue };
        match map.str("kind") {
            Some("ConfigMap") => config_maps.push(node.to_json()),
            Some("Secret") => secrets.push(node.to_json()),
            Some(k) if k.ends_with("List") => {
                if let Some(items) = map.get("items").and_then(Node::as_seq) {
                    stack.extend(items.iter());
                }
            }
            _ => {}
        }
    }
    (config_maps, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml::parse_documents;

    #[test]
    fn finds_workloads_in_lists_and_cronjobs() {
        let mut docs = parse_documents(
            "apiVersion: v1\nkind: List\nitems:\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: web, namespace: shop}\n  spec: {template: {spec: {containers: []}}}\n---\napiVersion: batch/v1\nkind: CronJob\nmetadata: {name: nightly}\nspec: {jobTemplate: {spec: {template: {metadata: {annotations: {contrast.edgeless.systems/pod-role: x}}, spec: {runtimeClassName: contrast-cc}}}}}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\n",
        )
        .unwrap();
        let mut seen = Vec::new();
        for_each_workload(&mut docs, |mut w| -> Result<(), WorkloadError> {
            seen.push((
                w.display_name(),
                w.default_workload_secret_id(),
                w.annotation(annotations::POD_ROLE),
                w.runtime_class_name(),
            ));
            w.pod_spec()?;
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![
                (
                    "Deployment/web".to_owned(),
                    "apps/v1/Deployment/shop/web".to_owned(),
                    None,
                    None
                ),
                (
                    "CronJob/nightly".to_owned(),
                    "batch/v1/CronJob/default/nightly".to_owned(),
                    Some("x".to_owned()),
                    Some("contrast-cc".to_owned())
                ),
            ]
        );
    }

    #[test]
    fn core_group_and_bad_shapes() {
        let mut docs = parse_documents(
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {template: [1]}\n",
        )
        .unwrap();
        let mut results = Vec::new();
        for_each_workload(&mut docs, |mut w| -> Result<(), WorkloadError> {
            results.push((
                w.default_workload_secret_id(),
                w.pod_spec().map(|_| ()).map_err(|e| e.to_string()),
            ));
            Ok(())
        })
        .unwrap();
        assert_eq!(results[0], ("core/v1/Pod/default/p".to_owned(), Ok(())));
        assert_eq!(
            results[1].1,
            Err("Deployment/d: spec.template is a list; expected a mapping".to_owned())
        );
    }

    #[test]
    fn confidential_runtime_classes() {
        assert!(is_confidential_runtime_class("contrast-cc"));
        assert!(is_confidential_runtime_class(
            "contrast-cc-sim-snp-12345678"
        ));
        assert!(is_confidential_runtime_class("kata-cc-isolation"));
        assert!(!is_confidential_runtime_class("runc"));
        assert!(!is_confidential_runtime_class("kata"));
    }
}
