//! Peer discovery (docs/protocol.md §7.3) and the Coordinator StatefulSet's owner
//! reference (§2.4).

use std::future::Future;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Api;
use kube::api::ListParams;

use crate::KubeStoreError;

/// The label selector of Coordinator pods.
pub const COORDINATOR_LABEL_SELECTOR: &str = "app.kubernetes.io/name=coordinator";
/// The pod-role annotation.
pub const POD_ROLE_ANNOTATION: &str = "contrast.edgeless.systems/pod-role";
/// The pod-role annotation's value on Coordinators.
pub const POD_ROLE_COORDINATOR: &str = "coordinator";

/// Runs one API call with a timeout, naming the call in errors.
pub(crate) async fn timed<T>(
    timeout: Duration,
    action: &'static str,
    object: &str,
    call: impl Future<Output = Result<T, kube::Error>>,
) -> Result<T, KubeStoreError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(KubeStoreError::Api {
            action,
            object: object.to_owned(),
            source,
        }),
        Err(_) => Err(KubeStoreError::Timeout {
            action,
            object: object.to_owned(),
            timeout,
        }),
    }
}

/// The IPs of the Coordinator peers among `pods`: annotated with the Coordinator pod role,
/// Ready, not `own_pod_name`, with a pod IP. (The label is the list's selector.)
pub fn ready_peer_ips(pods: &[Pod], own_pod_name: &str) -> Vec<IpAddr> {
    pods.iter()
        .filter(|pod| pod.metadata.name.as_deref() != Some(own_pod_name))
        .filter(|pod| {
            pod.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(POD_ROLE_ANNOTATION))
                .is_some_and(|role| role == POD_ROLE_COORDINATOR)
        })
        .filter(|pod| {
            pod.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|conditions| {
                    conditions
                        .iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
                })
        })
        .filter_map(|pod| {
            let ip = pod.status.as_ref()?.pod_ip.as_deref()?;
            match ip.parse() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    tracing::warn!(
                        pod = pod.metadata.name.as_deref().unwrap_or(""),
                        ip,
                        "ignoring a Coordinator peer whose pod IP does not parse"
                    );
                    None
                }
            }
        })
        .collect()
}

/// Lists the pods labelled `app.kubernetes.io/name=coordinator` in `namespace` and returns
/// the IPs of the ready Coordinator peers other than `own_pod_name` (see
/// [`ready_peer_ips`]). The list call has `timeout`.
pub async fn discover_peers(
    client: kube::Client,
    namespace: &str,
    own_pod_name: &str,
    timeout: Duration,
) -> Result<Vec<IpAddr>, KubeStoreError> {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let params = ListParams::default().labels(COORDINATOR_LABEL_SELECTOR);
    let list = timed(
        timeout,
        "list",
        &format!("pods in {namespace}"),
        pods.list(&params),
    )
    .await?;
    Ok(ready_peer_ips(&list.items, own_pod_name))
}

/// The owner reference to the `apps/v1` StatefulSet that owns pod `pod_name` (the
/// Coordinator's own pod, from `HOSTNAME`), for the history's ConfigMaps.
pub async fn statefulset_owner(
    client: kube::Client,
    namespace: &str,
    pod_name: &str,
    timeout: Duration,
) -> Result<OwnerReference, KubeStoreError> {
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let pod = timed(
        timeout,
        "get",
        &format!("pod {namespace}/{pod_name}"),
        pods.get(pod_name),
    )
    .await?;
    pod.metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .find(|owner| owner.api_version == "apps/v1" && owner.kind == "StatefulSet")
        .map(|owner| OwnerReference {
            api_version: owner.api_version,
            kind: owner.kind,
            name: owner.name,
            uid: owner.uid,
            ..OwnerReference::default()
        })
        .ok_or_else(|| KubeStoreError::NoStatefulSetOwner {
            namespace: namespace.to_owned(),
            pod: pod_name.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn pod(name: &str, role: Option<&str>, ready: &str, ip: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                annotations: role.map(|r| [(POD_ROLE_ANNOTATION.to_owned(), r.to_owned())].into()),
                ..ObjectMeta::default()
            },
            status: Some(PodStatus {
                pod_ip: ip.map(str::to_owned),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".to_owned(),
                    status: ready.to_owned(),
                    ..PodCondition::default()
                }]),
                ..PodStatus::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn filters_peers() {
        let pods = [
            pod(
                "coordinator-0",
                Some("coordinator"),
                "True",
                Some("10.0.0.1"),
            ),
            pod(
                "coordinator-1",
                Some("coordinator"),
                "True",
                Some("10.0.0.2"),
            ),
            pod("not-ready", Some("coordinator"), "False", Some("10.0.0.3")),
            pod("unknown", Some("coordinator"), "Unknown", Some("10.0.0.4")),
            pod("no-role", None, "True", Some("10.0.0.5")),
            pod("other-role", Some("initializer"), "True", Some("10.0.0.6")),
            pod("no-ip", Some("coordinator"), "True", None),
            pod("bad-ip", Some("coordinator"), "True", Some("not-an-ip")),
            pod("v6", Some("coordinator"), "True", Some("fd00::7")),
            Pod {
                status: None,
                ..pod("no-status", Some("coordinator"), "True", Some("10.0.0.8"))
            },
        ];
        let ips = ready_peer_ips(&pods, "coordinator-0");
        assert_eq!(
            ips,
            vec![
                "10.0.0.2".parse::<IpAddr>().unwrap(),
                "fd00::7".parse().unwrap()
            ]
        );
    }
}
