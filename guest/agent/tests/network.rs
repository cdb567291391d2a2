//! The pod's network through the agent, on this machine's kernel: the agent runs in a
//! network namespace of its own (`unshare --net`) with `eth0`, one end of a veth pair (this kernel has no dummy driver); the host side
//! sends what the Kata runtime sends, and iproute2 (`ip`, an independent netlink client)
//! reads back what the kernel now has.

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use contrast_agent::proto::agent::{
    ARPNeighbors, AddARPNeighborsRequest, ListInterfacesRequest, ListRoutesRequest, Routes,
    UpdateInterfaceRequest, UpdateRoutesRequest,
};
use contrast_agent::proto::agent_ttrpc::AgentServiceClient;
use contrast_agent::proto::types::{ARPNeighbor, IPAddress, IPFamily, Interface, Route};
use contrast_testkit::TempDir;
use serde_json::Value;
use ttrpc::context;

const MAC: &str = "02:00:00:00:00:01";

/// The agent in a fresh network namespace with eth0 (a veth end) of MAC [`MAC`].
struct Namespaced {
    child: Child,
    _dir: TempDir,
    client: AgentServiceClient,
}

impl Namespaced {
    async fn start() -> Namespaced {
        let dir = TempDir::new("agent-net");
        let policy = dir.0.join("policy.rego");
        let allowed = [
            "UpdateInterfaceRequest",
            "UpdateRoutesRequest",
            "ListInterfacesRequest",
            "ListRoutesRequest",
            "AddARPNeighborsRequest",
        ];
        let mut text = String::from("package agent_policy\n\n");
        for r in allowed {
            text.push_str(&format!("default {r} := true\n"));
        }
        std::fs::write(&policy, text).unwrap();
        let socket = dir.0.join("agent.sock");
        let child = Command::new("unshare")
            .args(["--net", "sh", "-c"])
            .arg(format!(
                "ip link add eth0 type veth peer name peer0 && ip link set eth0 address {MAC} && \
                 ip link set peer0 up && exec \"$0\" \
                 --listen unix://{} --policy {} --run-dir {}",
                socket.display(),
                policy.display(),
                dir.0.join("run").display()
            ))
            .arg(env!("CARGO_BIN_EXE_contrast-agent"))
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare (util-linux) and ip (iproute2)");
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = loop {
            if let Ok(c) =
                ttrpc::r#async::Client::connect(&format!("unix://{}", socket.display())).await
            {
                break c;
            }
            assert!(Instant::now() < deadline, "the agent did not listen");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        Namespaced {
            child,
            _dir: dir,
            client: AgentServiceClient::new(client),
        }
    }

    /// `ip -json <args>` inside the agent's namespace.
    fn ip(&self, args: &[&str]) -> Value {
        let output = Command::new("nsenter")
            .arg(format!("--net=/proc/{}/ns/net", self.child.id()))
            .args(["ip", "-json"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

impl Drop for Namespaced {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctx() -> ttrpc::context::Context {
    context::with_timeout(20_000_000_000)
}

#[tokio::test]
async fn the_pods_interface_routes_and_neighbours_reach_the_kernel() {
    let agent = Namespaced::start().await;

    let mut address = IPAddress::new();
    address.family = IPFamily::v4.into();
    address.address = "10.1.2.3".to_owned();
    address.mask = "24".to_owned();
    let mut iface = Interface::new();
    iface.name = "eth0".to_owned();
    iface.hwAddr = MAC.to_owned();
    iface.mtu = 1400;
    // The pod's interface had ARP off: the runtime passes IFF_NOARP.
    iface.raw_flags = 0x80;
    iface.IPAddresses = vec![address];
    let mut update = UpdateInterfaceRequest::new();
    update.interface = Some(iface).into();
    agent.client.update_interface(ctx(), &update).await.unwrap();

    let route = |dest: &str, gateway: &str, scope: u32| {
        let mut r = Route::new();
        r.dest = dest.to_owned();
        r.gateway = gateway.to_owned();
        r.device = "eth0".to_owned();
        r.scope = scope;
        r
    };
    let mut routes = Routes::new();
    // The gateway route first in the request: the agent adds direct routes first.
    // A gateway outside the interface's subnet takes RTNH_F_ONLINK (as Calico's and
    // Cilium's CNIs set up pods), and a route may carry its own MTU.
    let mut onlink = route("10.20.0.0/16", "169.254.1.1", 0);
    onlink.flags = 4;
    onlink.mtu = 1300;
    routes.Routes = vec![
        route("", "10.1.2.1", 0),
        route("10.9.0.0/16", "", 253),
        onlink,
    ];
    let mut update = UpdateRoutesRequest::new();
    update.routes = Some(routes).into();
    agent.client.update_routes(ctx(), &update).await.unwrap();

    let mut neighbor = ARPNeighbor::new();
    let mut to = IPAddress::new();
    to.address = "10.1.2.9".to_owned();
    neighbor.toIPAddress = Some(to).into();
    neighbor.device = "eth0".to_owned();
    neighbor.lladdr = "02:00:00:00:00:09".to_owned();
    neighbor.state = 128; // NUD_PERMANENT
    let mut neighbors = ARPNeighbors::new();
    neighbors.ARPNeighbors = vec![neighbor];
    let mut add = AddARPNeighborsRequest::new();
    add.neighbors = Some(neighbors).into();
    agent.client.add_arp_neighbors(ctx(), &add).await.unwrap();

    // What iproute2 reads from the kernel.
    let link = &agent.ip(&["addr", "show", "eth0"])[0];
    assert_eq!(link["mtu"], 1400, "{link}");
    assert!(
        link["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{link}"
    );
    assert!(
        link["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "NOARP"),
        "{link}"
    );
    let addresses: Vec<String> = link["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        // The kernel adds an IPv6 link-local address itself when the link comes up.
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    assert_eq!(addresses, ["10.1.2.3/24"], "{link}");
    let routes = agent.ip(&["route", "show"]);
    let text = routes.to_string();
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "default" && r["gateway"] == "10.1.2.1"),
        "{text}"
    );
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "10.9.0.0/16" && r["scope"] == "link"),
        "{text}"
    );
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["dst"] == "10.20.0.0/16"
                && r["gateway"] == "169.254.1.1"
                && r["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "onlink"))
                && r["metrics"][0]["mtu"] == 1300),
        "{text}"
    );
    let neighbours = agent.ip(&["neigh", "show", "dev", "eth0"]);
    assert!(
        neighbours
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["dst"] == "10.1.2.9"
                && n["lladdr"] == "02:00:00:00:00:09"
                && n["state"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|x| x == "PERMANENT"))),
        "{neighbours}"
    );

    // And what the agent lists.
    let listed = agent
        .client
        .list_interfaces(ctx(), &ListInterfacesRequest::new())
        .await
        .unwrap();
    let eth0 = listed.Interfaces.iter().find(|i| i.name == "eth0").unwrap();
    assert_eq!(eth0.hwAddr, MAC);
    assert_eq!(eth0.mtu, 1400);
    assert!(
        eth0.IPAddresses
            .iter()
            .any(|a| a.address == "10.1.2.3" && a.mask == "24"),
        "{:?}",
        eth0.IPAddresses
    );
    let listed = agent
        .client
        .list_routes(ctx(), &ListRoutesRequest::new())
        .await
        .unwrap();
    assert!(
        listed
            .Routes
            .iter()
            .any(|r| r.gateway == "10.1.2.1" && r.device == "eth0"),
        "{:?}",
        listed.Routes
    );
    // The kernel's flags and MTU, read back as the shim reads a pod's routes.
    assert!(
        listed
            .Routes
            .iter()
            .any(|r| r.gateway == "169.254.1.1" && r.flags & 4 != 0 && r.mtu == 1300),
        "{:?}",
        listed.Routes
    );

    // An interface by a MAC nobody has: refused by name.
    let mut other = Interface::new();
    other.name = "eth1".to_owned();
    other.hwAddr = "02:00:00:00:00:77".to_owned();
    let mut update = UpdateInterfaceRequest::new();
    update.interface = Some(other).into();
    let err = agent
        .client
        .update_interface(ctx(), &update)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("02:00:00:00:00:77"), "{err}");
}

#[tokio::test]
async fn an_interface_named_as_another_link_takes_the_name_and_they_swap() {
    // The guest names its NICs in PCI order; the pod's interfaces may come in another, so
    // the name asked for can be another link's (the Kata agent swaps the two).
    let agent = Namespaced::start().await;
    let address_of = |name: &str| {
        agent
            .ip(&["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["ifname"] == name)
            .map(|l| l["address"].as_str().unwrap().to_owned())
    };
    let peer_mac = address_of("peer0").unwrap();
    let mut iface = Interface::new();
    iface.name = "peer0".to_owned();
    iface.hwAddr = MAC.to_owned();
    iface.mtu = 1500;
    let mut update = UpdateInterfaceRequest::new();
    update.interface = Some(iface).into();
    agent.client.update_interface(ctx(), &update).await.unwrap();
    assert_eq!(address_of("peer0").as_deref(), Some(MAC));
    assert_eq!(address_of("eth0"), Some(peer_mac));
    assert_eq!(address_of("peer0_temp"), None);
}
