//! The pod's network against the real kernel: a network namespace set up as CNI's bridge
//! plugin leaves it (a veth `eth0` with an address, a default route through the gateway,
//! a static neighbour), read by the shim into the agent's requests, then joined to a tap
//! (made here as QEMU makes it, with the kernel's tun driver) by the tc redirects; read
//! back with iproute2's `tc` and shown to carry traffic: what the host sends to the pod's
//! address leaves through the tap instead of reaching the namespace's own stack (a TCP
//! listener there), until the shim disconnects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use contrast_shim::network::{GuestNetwork, PodNetwork, Tap};

/// The policy of a one-container pod, as `contrast generate` makes it.
fn pod_policy() -> String {
    let image =
        "registry.test/app@sha256:0000000000000000000000000000000000000000000000000000000000000001";
    let spec = serde_json::json!({"containers": [{"name": "app", "image": image}]});
    let images = std::collections::BTreeMap::from([(
        image.to_owned(),
        contrast_policy::ImageConfig {
            digest: image.rsplit('@').next().unwrap().to_owned(),
            cmd: vec!["sh".to_owned()],
            ..Default::default()
        },
    )]);
    contrast_policy::policy_rego(&contrast_policy::PodInput {
        name: "app",
        generate_name: false,
        namespace: "default",
        pod_spec: &spec,
        labels: &std::collections::BTreeMap::new(),
        runtime: contrast_platforms::Platform::MetalQemuSnp.kata_runtime(),
        images: &images,
        config_maps: &[],
        secrets: &[],
    })
    .unwrap()
}

/// `ip` with `args`; panics with its output when it fails.
fn ip(args: &[&str]) -> String {
    let out = Command::new("ip").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A command in the namespace.
fn in_ns(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["netns", "exec", ns];
    all.extend_from_slice(args);
    ip(&all)
}

/// Whether a TCP connection from the host side reaches the listener in the namespace.
fn reached(address: std::net::SocketAddr) -> bool {
    std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(1)).is_ok()
}

/// The packets the redirect on `link`'s ingress has taken (tc's statistics of the mirred
/// action).
fn redirected_packets(ns: &str, link: &str) -> u64 {
    let text = in_ns(
        ns,
        &["tc", "-s", "-j", "filter", "show", "dev", link, "ingress"],
    );
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["options"]["actions"][0]["stats"]["packets"].as_u64())
        .sum()
}

/// The namespace and the host side of the veth, removed on drop.
struct Namespace {
    name: String,
    host_side: String,
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_side])
            .status();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[test]
fn a_cni_namespace_is_read_into_the_agents_requests_and_joined_to_the_vms_tap() {
    let id = std::process::id() % 10_000;
    let ns = Namespace {
        name: format!("contrast-shim-{id}"),
        host_side: format!("vshim{id}"),
    };
    let subnet = format!("10.{}.{}", 200 + id % 50, id % 250);
    let (pod_ip, gateway) = (format!("{subnet}.2"), format!("{subnet}.1"));
    ip(&["netns", "add", &ns.name]);
    ip(&[
        "link",
        "add",
        &ns.host_side,
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        &ns.name,
    ]);
    ip(&[
        "addr",
        "add",
        &format!("{gateway}/24"),
        "dev",
        &ns.host_side,
    ]);
    ip(&["link", "set", &ns.host_side, "up"]);
    in_ns(&ns.name, &["ip", "link", "set", "lo", "up"]);
    in_ns(&ns.name, &["ip", "link", "set", "eth0", "mtu", "1450"]);
    in_ns(
        &ns.name,
        &["ip", "addr", "add", &format!("{pod_ip}/24"), "dev", "eth0"],
    );
    in_ns(&ns.name, &["ip", "link", "set", "eth0", "up"]);
    in_ns(
        &ns.name,
        &[
            "ip", "route", "add", "default", "via", &gateway, "dev", "eth0",
        ],
    );
    in_ns(
        &ns.name,
        &[
            "ip",
            "neigh",
            "add",
            &format!("{subnet}.7"),
            "lladdr",
            "0a:58:00:00:00:07",
            "dev",
            "eth0",
            "nud",
            "permanent",
        ],
    );
    let mac = {
        let text = in_ns(&ns.name, &["ip", "-j", "link", "show", "eth0"]);
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json[0]["address"].as_str().unwrap().to_owned()
    };
    let netns = std::path::PathBuf::from("/var/run/netns").join(&ns.name);
    // A listener of the namespace's own stack on the pod's address.
    let listener = contrast_kernel_network::in_namespace(&netns, || {
        std::net::TcpListener::bind((pod_ip.as_str(), 0))
    })
    .unwrap()
    .unwrap();
    let pod_address = listener.local_addr().unwrap();
    assert!(
        reached(pod_address),
        "the namespace answers before the VM joins"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let network = PodNetwork::scan(&netns).await.unwrap();
        assert_eq!(
            network.guest_network(),
            GuestNetwork::Taps(vec![Tap {
                name: "tap0_kata".into(),
                mac: mac.clone()
            }]),
            "one NIC, with the veth's MAC (lo is not the guest's)"
        );
        let (interfaces, routes, neighbors) = network.requests();
        assert_eq!(interfaces.len(), 1);
        let interface = &interfaces[0].interface;
        assert_eq!((interface.name.as_str(), interface.mtu), ("eth0", 1450));
        assert_eq!(interface.hwAddr, mac);
        assert!(
            interface
                .IPAddresses
                .iter()
                .any(|a| a.address == pod_ip && a.mask == "24"),
            "{interface:?}"
        );
        // The default route CNI added, not the subnet route the kernel made.
        let routes = &routes.routes.Routes;
        assert_eq!(routes.len(), 1, "{routes:?}");
        assert_eq!(
            (routes[0].dest.as_str(), routes[0].gateway.as_str()),
            ("", gateway.as_str())
        );
        assert_eq!(routes[0].device, "eth0");
        let neighbors = neighbors.expect("the static neighbour").neighbors;
        assert_eq!(neighbors.ARPNeighbors.len(), 1);
        assert_eq!(neighbors.ARPNeighbors[0].lladdr, "0a:58:00:00:00:07");
        assert_eq!(neighbors.ARPNeighbors[0].state, 0x80);

        // The requests pass the policy `contrast generate` makes of a pod.
        let mut policy = contrast_policy::AgentPolicy::new(&pod_policy()).unwrap();
        let (interfaces, routes, neighbors) = network.requests();
        let mut requests: Vec<(&str, serde_json::Value)> = interfaces
            .iter()
            .map(|r| ("UpdateInterfaceRequest", serde_json::to_value(r).unwrap()))
            .collect();
        requests.push((
            "UpdateRoutesRequest",
            serde_json::to_value(&routes).unwrap(),
        ));
        requests.push((
            "AddARPNeighborsRequest",
            serde_json::to_value(neighbors.unwrap()).unwrap(),
        ));
        for (name, input) in requests {
            let verdict = policy.explain(name, &input).unwrap();
            assert!(verdict.evaluation.allowed, "{name}: {verdict:?}");
        }

        // QEMU makes its tap in the namespace when it starts; here the kernel's tun driver
        // makes the same (without QEMU reading it, it drops what it is given; tc counts what it redirected).
        in_ns(
            &ns.name,
            &["ip", "tuntap", "add", "tap0_kata", "mode", "tap"],
        );
        let (_running, exited) = tokio::sync::watch::channel(None);
        network.connect_taps(&exited).await.unwrap();
        for (from, to) in [("eth0", "tap0_kata"), ("tap0_kata", "eth0")] {
            let text = in_ns(
                &ns.name,
                &["tc", "-j", "filter", "show", "dev", from, "ingress"],
            );
            assert!(text.contains(r#""protocol":"all""#), "{from}: {text}");
            assert!(text.contains(r#""kind":"mirred""#), "{from}: {text}");
            assert!(
                text.contains(&format!(r#""to_dev":"{to}""#)),
                "{from} → {to}: {text}"
            );
        }
        let link: serde_json::Value =
            serde_json::from_str(&in_ns(&ns.name, &["ip", "-j", "link", "show", "tap0_kata"]))
                .unwrap();
        assert_eq!(link[0]["mtu"], 1450, "the interface's MTU: {link}");
        assert!(
            link[0]["flags"]
                .as_array()
                .unwrap()
                .iter()
                .any(|f| f == "UP"),
            "brought up: {link}"
        );

        // What reaches eth0 now leaves through the tap: the namespace no longer answers.
        let before = redirected_packets(&ns.name, "eth0");
        assert!(
            !reached(pod_address),
            "the namespace's own stack still answers"
        );
        let after = redirected_packets(&ns.name, "eth0");
        assert!(
            after > before,
            "nothing was redirected to the tap ({before} → {after})"
        );

        // After the VM: the namespace is as CNI left it.
        in_ns(
            &ns.name,
            &["ip", "tuntap", "del", "tap0_kata", "mode", "tap"],
        );
        network.disconnect().await;
        let qdiscs = in_ns(&ns.name, &["tc", "-j", "qdisc", "show", "dev", "eth0"]);
        assert!(!qdiscs.contains("ingress"), "{qdiscs}");
        assert!(reached(pod_address), "the namespace answers again");
    });
}

#[test]
fn a_network_namespace_that_is_not_there_is_named_in_the_error() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let err = runtime
        .block_on(PodNetwork::scan(std::path::Path::new(
            "/var/run/netns/cni-not-there",
        )))
        .unwrap_err();
    let text = contrast_platforms::error_chain(&err);
    assert!(
        text.contains("/var/run/netns/cni-not-there") && text.contains("No such file"),
        "{text}"
    );
}

#[test]
fn a_sandbox_network_entry_without_a_path_is_refused_not_given_the_hosts_network() {
    use contrast_shim::spec::sandbox_network_namespace;
    let entry = |namespaces: serde_json::Value| {
        sandbox_network_namespace(&serde_json::json!({"linux": {"namespaces": namespaces}}))
    };
    // A host-network pod has no entry: QEMU's user network.
    assert_eq!(entry(serde_json::json!([{"type": "pid"}])).unwrap(), None);
    assert_eq!(
        entry(serde_json::json!([{"type": "network", "path": "/var/run/netns/cni-1"}])).unwrap(),
        Some(std::path::PathBuf::from("/var/run/netns/cni-1"))
    );
    let err = entry(serde_json::json!([{"type": "pid"}, {"type": "network"}])).unwrap_err();
    assert!(
        err.to_string().contains("path") && err.to_string().contains("network namespace"),
        "{err}"
    );
}
