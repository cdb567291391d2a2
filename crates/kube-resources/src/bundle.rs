//! The resources Contrast ships besides the user's workloads (docs/protocol.md §7.4,
//! docs/runtime.md §2): the runtime (RuntimeClass and node-installer DaemonSet), the Coordinator
//! bundle, and the port-forwarder for clusters without a load balancer.

use contrast_platforms::{Platform, RuntimeHandler};

use crate::workload::annotations;
use crate::yaml::{Map, Node};

/// Container images of the shipped resources. Builds stamp their version into the tag;
/// a release pins them by digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleImages {
    /// The Coordinator.
    pub coordinator: String,
    /// The node installer.
    pub runtime_installer: String,
    /// A pause container (the installer DaemonSet's main container).
    pub pause: String,
    /// The port-forwarder (`port-forwarder/`).
    pub port_forwarder: String,
}

impl BundleImages {
    /// The images of this build, version `version`.
    pub fn for_version(version: &str) -> BundleImages {
        BundleImages {
            coordinator: format!("ghcr.io/contrast-rs/coordinator:v{version}"),
            runtime_installer: format!("ghcr.io/contrast-rs/node-installer:v{version}"),
            // pause 3.9, pinned by its multi-platform index digest.
            pause: "registry.k8s.io/pause:3.9@sha256:7031c1b283388d2c2e09b57badb803c05ebed362dc88d84b480cc47f72a21097".to_owned(),
            port_forwarder: format!("ghcr.io/contrast-rs/port-forwarder:v{version}"),
        }
    }
}

/// The Coordinator's ports (docs/protocol.md §6.1).
pub mod ports {
    /// User API (aTLS gRPC).
    pub const USER_API: u16 = 1313;
    /// HTTP attestation API.
    pub const HTTP_API: u16 = 1314;
    /// Mesh API (mutual aTLS gRPC).
    pub const MESH_API: u16 = 7777;
    /// Probes and metrics.
    pub const PROBES: u16 = 9102;
    /// Transit engine (HTTPS, mesh mutual TLS).
    pub const TRANSIT: u16 = 8200;
}

fn s(value: &str) -> Node {
    Node::str(value)
}

fn m<const N: usize>(entries: [(&str, Node); N]) -> Node {
    Node::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    )
}

fn seq<const N: usize>(items: [Node; N]) -> Node {
    Node::Seq(items.into())
}

fn int(value: u16) -> Node {
    Node::Int(i64::from(value))
}

fn labels(name: &str) -> Node {
    m([("app.kubernetes.io/name", s(name))])
}

/// The optional Secret (namespace `kube-system`) whose key `contrast-imagepuller.toml` holds
/// registry credentials for image pulls in the pod VM; the node installer copies it to the
/// host (docs/runtime.md §9).
pub const IMAGEPULLER_CONFIG_SECRET: &str = "contrast-node-installer-imagepuller-config";

/// The RuntimeClass and the node-installer DaemonSet (namespace `kube-system`).
pub fn runtime(platform: Platform, handler: &RuntimeHandler, images: &BundleImages) -> Vec<Node> {
    let handler = handler.to_string();
    let installer_name = format!("{handler}-nodeinstaller");
    let runtime_class = m([
        ("apiVersion", s("node.k8s.io/v1")),
        ("kind", s("RuntimeClass")),
        (
            "metadata",
            m([
                ("name", s(&handler)),
                (
                    "labels",
                    m([("addonmanager.kubernetes.io/mode", s("Reconcile"))]),
                ),
            ]),
        ),
        ("handler", s(&handler)),
        (
            "overhead",
            m([(
                "podFixed",
                m([
                    (
                        "memory",
                        s(&format!("{}Mi", platform.runtime_class_overhead_mib())),
                    ),
                    ("cpu", s("250m")),
                ]),
            )]),
        ),
    ]);
    let mut installer_env = vec![
        m([
            ("name", s("CONTRAST_PLATFORM")),
            ("value", s(platform.name())),
        ]),
        m([
            ("name", s("CONTRAST_RUNTIME_HANDLER")),
            ("value", s(&handler)),
        ]),
        m([("name", s("CONTRAST_HOST_ROOT")), ("value", s("/host"))]),
    ];
    if platform.uses_snp_id_blocks() {
        // The image carries them; the installer picks the host's product line's.
        installer_env.push(m([
            ("name", s("CONTRAST_SNP_ID_BLOCKS")),
            (
                "value",
                s(contrast_platforms::node_installer::SNP_ID_BLOCKS),
            ),
        ]));
    }
    let installer = m([
        ("name", s("installer")),
        ("image", s(&images.runtime_installer)),
        (
            "command",
            seq([s(contrast_platforms::node_installer::PROGRAM)]),
        ),
        ("env", Node::Seq(installer_env)),
        (
            "resources",
            m([
                ("requests", m([("memory", s("700Mi"))])),
                ("limits", m([("memory", s("700Mi"))])),
            ]),
        ),
        ("securityContext", m([("privileged", Node::Bool(true))])),
        (
            "volumeMounts",
            seq([
                m([("name", s("host-mount")), ("mountPath", s("/host"))]),
                m([
                    ("name", s("target-config")),
                    ("mountPath", s("/target-config")),
                ]),
                // Registry credentials for pulls in the pod VM (docs/runtime.md §9).
                m([
                    ("name", s("imagepuller-config")),
                    ("mountPath", s("/imagepuller-config")),
                    ("readOnly", Node::Bool(true)),
                ]),
            ]),
        ),
    ]);
    let daemon_set = m([
        ("apiVersion", s("apps/v1")),
        ("kind", s("DaemonSet")),
        (
            "metadata",
            m([
                ("name", s(&installer_name)),
                ("namespace", s("kube-system")),
                ("labels", labels(&installer_name)),
            ]),
        ),
        (
            "spec",
            m([
                ("selector", m([("matchLabels", labels(&installer_name))])),
                (
                    "template",
                    m([
                        (
                            "metadata",
                            m([
                                ("labels", labels(&installer_name)),
                                (
                                    "annotations",
                                    m([
                                        (annotations::POD_ROLE, s("contrast-node-installer")),
                                        ("contrast.edgeless.systems/platform", s(platform.name())),
                                    ]),
                                ),
                            ]),
                        ),
                        (
                            "spec",
                            m([
                                ("hostPID", Node::Bool(true)),
                                ("tolerations", seq([m([("operator", s("Exists"))])])),
                                ("initContainers", seq([installer])),
                                (
                                    "containers",
                                    seq([m([
                                        ("name", s("pause")),
                                        ("image", s(&images.pause)),
                                        ("resources", m([("limits", m([("memory", s("16Mi"))]))])),
                                    ])]),
                                ),
                                (
                                    "volumes",
                                    seq([
                                        m([
                                            ("name", s("host-mount")),
                                            (
                                                "hostPath",
                                                m([("path", s("/")), ("type", s("Directory"))]),
                                            ),
                                        ]),
                                        m([
                                            ("name", s("target-config")),
                                            (
                                                "configMap",
                                                m([
                                                    (
                                                        "name",
                                                        s("contrast-node-installer-target-config"),
                                                    ),
                                                    ("optional", Node::Bool(true)),
                                                ]),
                                            ),
                                        ]),
                                        m([
                                            ("name", s("imagepuller-config")),
                                            (
                                                "secret",
                                                m([
                                                    ("secretName", s(IMAGEPULLER_CONFIG_SECRET)),
                                                    ("optional", Node::Bool(true)),
                                                ]),
                                            ),
                                        ]),
                                    ]),
                                ),
                            ]),
                        ),
                    ]),
                ),
            ]),
        ),
    ]);
    vec![runtime_class, daemon_set]
}

fn http_probe(path: &str, entries: &[(&str, i64)]) -> Node {
    let mut probe: Map = [(
        "httpGet".to_owned(),
        m([("path", s(path)), ("port", int(ports::PROBES))]),
    )]
    .into_iter()
    .collect();
    for (key, value) in entries {
        probe.insert(key, Node::Int(*value));
    }
    Node::Map(probe)
}

fn coordinator_ports() -> Node {
    seq([
        m([
            ("name", s("userapi")),
            ("containerPort", int(ports::USER_API)),
        ]),
        m([
            ("name", s("httpapi")),
            ("containerPort", int(ports::HTTP_API)),
        ]),
        m([
            ("name", s("meshapi")),
            ("containerPort", int(ports::MESH_API)),
        ]),
        m([
            ("name", s("transitapi")),
            ("containerPort", int(ports::TRANSIT)),
        ]),
    ])
}

fn service_ports() -> Node {
    let port = |name: &str, port: u16| {
        m([
            ("name", s(name)),
            ("port", int(port)),
            ("targetPort", int(port)),
        ])
    };
    seq([
        port("userapi", ports::USER_API),
        port("httpapi", ports::HTTP_API),
        port("meshapi", ports::MESH_API),
        port("transitapi", ports::TRANSIT),
    ])
}

/// The Coordinator bundle: ServiceAccount, Role, RoleBinding, StatefulSet and the
/// `coordinator` and `coordinator-ready` Services. The StatefulSet already carries the
/// platform's runtime handler; `contrast generate` adds its policy.
pub fn coordinator(
    platform: Platform,
    handler: &RuntimeHandler,
    images: &BundleImages,
) -> Vec<Node> {
    let name = "coordinator";
    let service_account = m([
        ("apiVersion", s("v1")),
        ("kind", s("ServiceAccount")),
        ("metadata", m([("name", s(name))])),
    ]);
    let role = m([
        ("apiVersion", s("rbac.authorization.k8s.io/v1")),
        ("kind", s("Role")),
        ("metadata", m([("name", s(name))])),
        (
            "rules",
            seq([
                m([
                    ("apiGroups", seq([s("")])),
                    ("resources", seq([s("configmaps")])),
                    (
                        "verbs",
                        seq([s("get"), s("create"), s("update"), s("watch")]),
                    ),
                ]),
                m([
                    ("apiGroups", seq([s("")])),
                    ("resources", seq([s("pods")])),
                    ("verbs", seq([s("get"), s("list")])),
                ]),
            ]),
        ),
    ]);
    let role_binding = m([
        ("apiVersion", s("rbac.authorization.k8s.io/v1")),
        ("kind", s("RoleBinding")),
        ("metadata", m([("name", s(name))])),
        (
            "roleRef",
            m([
                ("apiGroup", s("rbac.authorization.k8s.io")),
                ("kind", s("Role")),
                ("name", s(name)),
            ]),
        ),
        (
            "subjects",
            seq([m([("kind", s("ServiceAccount")), ("name", s(name))])]),
        ),
    ]);
    let container = m([
        ("name", s(name)),
        ("image", s(&images.coordinator)),
        (
            "env",
            seq([
                m([
                    ("name", s("CONTRAST_PLATFORM")),
                    ("value", s(platform.name())),
                ]),
                // The history lives in ConfigMaps; peers are found through the API.
                m([("name", s("CONTRAST_STORE")), ("value", s("kubernetes"))]),
                // The Coordinator owns its pod's network (it has NET_ADMIN for this).
                m([
                    ("name", s("CONTRAST_LIFT_DEFAULT_DENY")),
                    ("value", s("true")),
                ]),
            ]),
        ),
        ("ports", coordinator_ports()),
        (
            "resources",
            m([
                ("requests", m([("memory", s("200Mi"))])),
                ("limits", m([("memory", s("200Mi"))])),
            ]),
        ),
        (
            "securityContext",
            m([("capabilities", m([("add", seq([s("NET_ADMIN")]))]))]),
        ),
        (
            "startupProbe",
            http_probe(
                "/probe/startup",
                &[
                    ("initialDelaySeconds", 1),
                    ("periodSeconds", 1),
                    ("failureThreshold", 60),
                ],
            ),
        ),
        (
            "livenessProbe",
            http_probe(
                "/probe/liveness",
                &[("periodSeconds", 10), ("failureThreshold", 3)],
            ),
        ),
        (
            "readinessProbe",
            http_probe("/probe/readiness", &[("periodSeconds", 5)]),
        ),
    ]);
    let anti_affinity = m([(
        "podAntiAffinity",
        m([(
            "preferredDuringSchedulingIgnoredDuringExecution",
            seq([m([
                ("weight", Node::Int(100)),
                (
                    "podAffinityTerm",
                    m([
                        ("topologyKey", s("kubernetes.io/hostname")),
                        ("labelSelector", m([("matchLabels", labels(name))])),
                    ]),
                ),
            ])]),
        )]),
    )]);
    let stateful_set = m([
        ("apiVersion", s("apps/v1")),
        ("kind", s("StatefulSet")),
        ("metadata", m([("name", s(name)), ("labels", labels(name))])),
        (
            "spec",
            m([
                ("serviceName", s(name)),
                ("replicas", Node::Int(1)),
                ("selector", m([("matchLabels", labels(name))])),
                (
                    "persistentVolumeClaimRetentionPolicy",
                    m([("whenDeleted", s("Delete")), ("whenScaled", s("Delete"))]),
                ),
                (
                    "template",
                    m([
                        (
                            "metadata",
                            m([
                                ("labels", labels(name)),
                                (
                                    "annotations",
                                    m([
                                        (
                                            annotations::POD_ROLE,
                                            s(contrast_manifest::ROLE_COORDINATOR),
                                        ),
                                        // Prometheus's Kubernetes discovery finds the
                                        // metrics (served with CONTRAST_METRICS set).
                                        ("prometheus.io/scrape", s("true")),
                                        ("prometheus.io/port", s(&ports::PROBES.to_string())),
                                        ("prometheus.io/path", s("/metrics")),
                                    ]),
                                ),
                            ]),
                        ),
                        (
                            "spec",
                            m([
                                ("runtimeClassName", s(&handler.to_string())),
                                ("serviceAccountName", s(name)),
                                ("affinity", anti_affinity),
                                ("containers", seq([container])),
                            ]),
                        ),
                    ]),
                ),
            ]),
        ),
    ]);
    let service = |service_name: &str, all_addresses: bool| {
        let mut spec: Map = Map::new();
        if all_addresses {
            spec.insert("type", s("LoadBalancer"));
            spec.insert("publishNotReadyAddresses", Node::Bool(true));
        }
        spec.insert("selector", labels(name));
        spec.insert("ports", service_ports());
        let mut metadata: Map = [("name".to_owned(), s(service_name))].into_iter().collect();
        if all_addresses {
            metadata.insert(
                "annotations",
                m([("contrast.edgeless.systems/expose-service", s("true"))]),
            );
        }
        m([
            ("apiVersion", s("v1")),
            ("kind", s("Service")),
            ("metadata", Node::Map(metadata)),
            ("spec", Node::Map(spec)),
        ])
    };
    vec![
        service_account,
        role,
        role_binding,
        stateful_set,
        service(name, true),
        service(crate::mutate::COORDINATOR_READY_HOST, false),
    ]
}

/// A port-forwarder Pod for clusters without a load balancer: it relays `port` to the
/// `coordinator` Service and is reached with `kubectl port-forward pod/port-forwarder-coordinator`.
pub fn port_forwarder(images: &BundleImages, port: u16) -> Node {
    let forwarder = "port-forwarder-coordinator";
    m([
        ("apiVersion", s("v1")),
        ("kind", s("Pod")),
        (
            "metadata",
            m([("name", s(forwarder)), ("labels", labels(forwarder))]),
        ),
        (
            "spec",
            m([(
                "containers",
                seq([m([
                    ("name", s("port-forwarder")),
                    ("image", s(&images.port_forwarder)),
                    (
                        "command",
                        seq([
                            s("/usr/bin/port-forwarder"),
                            s("--listen"),
                            s(&format!("0.0.0.0:{port}")),
                            s("--to"),
                            s(&format!("coordinator:{port}")),
                        ]),
                    ),
                    ("ports", seq([m([("containerPort", int(port))])])),
                    ("resources", m([("limits", m([("memory", s("50Mi"))]))])),
                ])]),
            )]),
        ),
    ])
}
