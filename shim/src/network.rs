//! The pod's network, as the Kata runtime's `tcfilter` model gives it to the VM: CNI put
//! the pod's interfaces (a veth `eth0`, usually) into the sandbox's network namespace; the
//! shim reads them, starts QEMU inside that namespace with one tap per interface (QEMU
//! makes the tap), and joins each tap to its interface with two tc redirects (everything
//! that arrives on one leaves through the other). The guest's NIC carries the interface's
//! MAC, and the agent gets the interface's addresses, the routes CNI added and the static
//! neighbours, as UpdateInterface, UpdateRoutes and AddARPNeighbors.
//!
//! A pod without a network namespace of its own (a host-network pod) gets QEMU's user
//! network instead ([`crate::vm::user_network_requests`]).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use contrast_agent_protocol::proto::agent::{
    ARPNeighbors, AddARPNeighborsRequest, Routes, UpdateInterfaceRequest, UpdateRoutesRequest,
};
use contrast_agent_protocol::proto::types::{ARPNeighbor, Interface, Route};
use contrast_kernel_network::{IFF_LOOPBACK, IFF_NOARP, KernelInterface, KernelRoute, netlink};
use rtnetlink::Handle;
use rtnetlink::packet_route::route::RouteProtocol;

/// `ETH_P_ALL`, as the tc header carries it (network byte order).
const ETH_P_ALL: u16 = 0x0003_u16.to_be();

/// The ingress qdisc's handle (`ffff:`), the parent of the redirect filters.
const INGRESS: u32 = 0xffff_0000;

/// `NUD_PERMANENT`, `NUD_REACHABLE`.
const NUD_PERMANENT: i32 = 0x80;
const NUD_REACHABLE: i32 = 0x02;

/// How long QEMU may take to make its taps.
const TAP_TIMEOUT: Duration = Duration::from_secs(20);

/// Why the pod's network could not be given to the VM.
#[derive(Debug, thiserror::Error)]
pub enum PodNetworkError {
    /// The namespace could not be read or changed.
    #[error("the pod's network namespace {netns}")]
    Kernel {
        /// The namespace.
        netns: PathBuf,
        /// The cause.
        #[source]
        source: contrast_kernel_network::NetworkError,
    },
    /// An interface of the namespace cannot be joined to the VM with tc redirects.
    #[error(
        "the pod's interface {name} ({kind}) cannot be given to the VM: only veth, macvlan \
         and ipvlan interfaces with a MAC address are joined (Kata's tcfilter model); \
         check the pod's CNI configuration"
    )]
    Unsupported {
        /// The interface.
        name: String,
        /// Its kind and MAC, as found.
        kind: String,
    },
    /// QEMU did not make a tap it was asked for.
    #[error(
        "QEMU made no tap {tap} in the pod's network namespace {netns} within {} s",
        TAP_TIMEOUT.as_secs()
    )]
    NoTap {
        /// The namespace.
        netns: PathBuf,
        /// The tap.
        tap: String,
    },
}

/// A NIC of the VM: QEMU's tap in the pod's namespace, and the MAC the guest sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tap {
    /// The tap's name in the namespace (`tap0_kata`, as Kata names them).
    pub name: String,
    /// The NIC's MAC: the interface's own, which the CNI bridge expects to see.
    pub mac: String,
}

/// How the VM reaches the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestNetwork {
    /// QEMU's user network in the shim's own namespace (host-network pods).
    User,
    /// One tap per interface of the pod's namespace (none for a pod without interfaces).
    Taps(Vec<Tap>),
}

/// An interface of the pod's namespace handed to the guest.
#[derive(Debug, Clone, PartialEq)]
struct Endpoint {
    /// What the guest gets (UpdateInterface).
    interface: Interface,
    /// The interface's index in the namespace.
    index: u32,
    /// Its tap.
    tap: Tap,
}

/// The pod's network namespace and what the guest gets of it.
#[derive(Debug)]
pub struct PodNetwork {
    netns: PathBuf,
    handle: Handle,
    endpoints: Vec<Endpoint>,
    /// Per endpoint: whether its interface got our ingress qdisc (what `disconnect`
    /// removes; a qdisc that was there before is not ours).
    joined: Vec<AtomicBool>,
    routes: Vec<Route>,
    neighbors: Vec<ARPNeighbor>,
}

impl PodNetwork {
    /// Reads the interfaces, routes and neighbours of the namespace at `netns`.
    pub async fn scan(netns: &Path) -> Result<Self, PodNetworkError> {
        let failed = |source| PodNetworkError::Kernel {
            netns: netns.to_owned(),
            source,
        };
        let handle = contrast_kernel_network::connect_in(netns).map_err(failed)?;
        let interfaces = contrast_kernel_network::interfaces(&handle)
            .await
            .map_err(failed)?;
        let routes = contrast_kernel_network::routes(&handle)
            .await
            .map_err(failed)?;
        let neighbors = contrast_kernel_network::neighbors(&handle)
            .await
            .map_err(failed)?;
        let endpoints = endpoints(interfaces)?;
        let routes = guest_routes(&endpoints, routes);
        let neighbors = guest_neighbors(&endpoints, &routes, neighbors);
        Ok(PodNetwork {
            netns: netns.to_owned(),
            handle,
            joined: endpoints.iter().map(|_| AtomicBool::new(false)).collect(),
            endpoints,
            routes,
            neighbors,
        })
    }

    /// The namespace's path.
    pub fn netns(&self) -> &Path {
        &self.netns
    }

    /// The VM's NICs.
    pub fn guest_network(&self) -> GuestNetwork {
        GuestNetwork::Taps(self.endpoints.iter().map(|e| e.tap.clone()).collect())
    }

    /// Once QEMU runs in the namespace: waits for its taps, gives each its interface's MTU,
    /// brings it up and redirects both ways between it and its interface (Kata's
    /// `setupTCFiltering`). `exited` ends the wait when QEMU has ended.
    pub async fn connect_taps(
        &self,
        exited: &tokio::sync::watch::Receiver<Option<String>>,
    ) -> Result<(), PodNetworkError> {
        let failed = |source| PodNetworkError::Kernel {
            netns: self.netns.clone(),
            source,
        };
        // One deadline for all taps: QEMU makes them together, at its start.
        let started = Instant::now();
        for (endpoint, joined) in self.endpoints.iter().zip(&self.joined) {
            let tap = loop {
                let links = contrast_kernel_network::links(&self.handle)
                    .await
                    .map_err(failed)?;
                if let Some(tap) = links
                    .iter()
                    .find(|l| contrast_kernel_network::link_name(l) == endpoint.tap.name)
                {
                    break tap.header.index;
                }
                if started.elapsed() > TAP_TIMEOUT || exited.borrow().is_some() {
                    return Err(PodNetworkError::NoTap {
                        netns: self.netns.clone(),
                        tap: endpoint.tap.name.clone(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            };
            self.redirect(endpoint, tap, joined).await.map_err(failed)?;
        }
        Ok(())
    }

    async fn redirect(
        &self,
        endpoint: &Endpoint,
        tap: u32,
        joined: &AtomicBool,
    ) -> Result<(), contrast_kernel_network::NetworkError> {
        let mut change = rtnetlink::LinkUnspec::new_with_index(tap).up();
        if let Ok(mtu) = u32::try_from(endpoint.interface.mtu)
            && mtu > 0
        {
            change = change.mtu(mtu);
        }
        self.handle
            .link()
            .set(change.build())
            .execute()
            .await
            .map_err(netlink(format!("bringing up {}", endpoint.tap.name)))?;
        for (from, to) in [(endpoint.index, tap), (tap, endpoint.index)] {
            let index = i32::try_from(from).unwrap_or(i32::MAX);
            self.handle
                .qdisc()
                .add(index)
                .ingress()
                .execute()
                .await
                .map_err(netlink(format!("adding an ingress qdisc to link {from}")))?;
            if from == endpoint.index {
                joined.store(true, Ordering::SeqCst);
            }
            self.handle
                .traffic_filter(index)
                .add()
                .parent(INGRESS)
                .protocol(ETH_P_ALL)
                .redirect(to)
                .map_err(netlink(format!("a redirect from link {from} to {to}")))?
                .execute()
                .await
                .map_err(netlink(format!("redirecting link {from} to {to}")))?;
        }
        tracing::info!(
            interface = %endpoint.interface.name,
            tap = %endpoint.tap.name,
            "pod interface joined to the VM"
        );
        Ok(())
    }

    /// The agent's requests: one UpdateInterface per interface, then UpdateRoutes, then
    /// AddARPNeighbors (none when there are no static neighbours), as the Kata runtime
    /// sends them.
    pub fn requests(
        &self,
    ) -> (
        Vec<UpdateInterfaceRequest>,
        UpdateRoutesRequest,
        Option<AddARPNeighborsRequest>,
    ) {
        let interfaces = self
            .endpoints
            .iter()
            .map(|e| {
                let mut request = UpdateInterfaceRequest::new();
                request.interface = Some(e.interface.clone()).into();
                request
            })
            .collect();
        let mut routes = Routes::new();
        routes.Routes = self.routes.clone();
        let mut update_routes = UpdateRoutesRequest::new();
        update_routes.routes = Some(routes).into();
        let neighbors = (!self.neighbors.is_empty()).then(|| {
            let mut neighbors = ARPNeighbors::new();
            neighbors.ARPNeighbors = self.neighbors.clone();
            let mut request = AddARPNeighborsRequest::new();
            request.neighbors = Some(neighbors).into();
            request
        });
        (interfaces, update_routes, neighbors)
    }

    /// After QEMU ended (its taps went with it): removes the ingress qdiscs, and with them
    /// the redirects, from the pod's interfaces, so the namespace is as CNI left it.
    pub async fn disconnect(self) {
        for (endpoint, joined) in self.endpoints.iter().zip(&self.joined) {
            if !joined.load(Ordering::SeqCst) {
                continue;
            }
            let index = i32::try_from(endpoint.index).unwrap_or(i32::MAX);
            let mut request = self.handle.qdisc().del(index);
            request.message_mut().header.parent = rtnetlink::packet_route::tc::TcHandle::INGRESS;
            request.message_mut().header.handle = INGRESS.into();
            if let Err(e) = request.execute().await {
                // Gone already when CNI removed the interface first.
                tracing::debug!(interface = %endpoint.interface.name, error = %e, "ingress qdisc not removed");
            }
        }
    }
}

/// The interfaces a guest gets: configured (at least one address), not loopback, in the
/// namespace's order; each with its tap `tap<n>_kata`. Only IFF_NOARP is kept of the
/// link's flags (the Kata runtime's `RawFlags`), and the type is Kata's endpoint type.
/// Kinds the tcfilter model does not join (a tun without a MAC, a tunnel, a physical NIC,
/// which Kata passes through with VFIO) are refused by name.
fn endpoints(interfaces: Vec<KernelInterface>) -> Result<Vec<Endpoint>, PodNetworkError> {
    interfaces
        .into_iter()
        .filter(|i| {
            i.interface.raw_flags & IFF_LOOPBACK == 0 && !i.interface.IPAddresses.is_empty()
        })
        .enumerate()
        .map(|(n, mut i)| {
            let type_ = match i.kind.as_deref() {
                Some("veth") => "virtual",
                Some("macvlan") => "macvlan",
                Some("ipvlan") => "ipvlan",
                _ => "",
            };
            if type_.is_empty() || contrast_kernel_network::parse_mac(&i.interface.hwAddr).is_none()
            {
                return Err(PodNetworkError::Unsupported {
                    name: i.interface.name,
                    kind: format!(
                        "kind {}, MAC {:?}",
                        i.kind.as_deref().unwrap_or("none: a physical NIC"),
                        i.interface.hwAddr
                    ),
                });
            }
            i.interface.raw_flags &= IFF_NOARP;
            i.interface.type_ = type_.to_owned();
            Ok(Endpoint {
                tap: Tap {
                    name: format!("tap{n}_kata"),
                    mac: i.interface.hwAddr.clone(),
                },
                index: i.index,
                interface: i.interface,
            })
        })
        .collect()
}

/// The routes a guest gets: those of the guest's interfaces that the kernel did not make
/// itself (an address's subnet route is made again by the guest's kernel).
fn guest_routes(endpoints: &[Endpoint], routes: Vec<KernelRoute>) -> Vec<Route> {
    routes
        .into_iter()
        .filter(|r| {
            r.protocol != RouteProtocol::Kernel
                && endpoints.iter().any(|e| e.interface.name == r.route.device)
        })
        .map(|r| r.route)
        .collect()
}

/// The neighbours a guest gets: static ones with a MAC, and a reachable default gateway
/// (Kata's `validGuestNeighbor`: no ARP storm for the gateway when many pods start).
fn guest_neighbors(
    endpoints: &[Endpoint],
    routes: &[Route],
    neighbors: Vec<ARPNeighbor>,
) -> Vec<ARPNeighbor> {
    let gateways: Vec<&str> = routes
        .iter()
        .filter(|r| r.dest.is_empty() && !r.gateway.is_empty())
        .map(|r| r.gateway.as_str())
        .collect();
    neighbors
        .into_iter()
        .filter(|n| {
            let address = n
                .toIPAddress
                .as_ref()
                .map(|a| a.address.as_str())
                .unwrap_or_default();
            !n.lladdr.is_empty()
                && endpoints.iter().any(|e| e.interface.name == n.device)
                && (n.state == NUD_PERMANENT
                    || (n.state == NUD_REACHABLE && gateways.contains(&address)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use contrast_agent_protocol::proto::types::{IPAddress, IPFamily};

    use super::*;

    fn interface(
        name: &str,
        index: u32,
        flags: u32,
        addresses: &[(&str, &str)],
    ) -> KernelInterface {
        let mut interface = Interface::new();
        interface.name = name.to_owned();
        interface.device = name.to_owned();
        interface.hwAddr = format!("0a:58:0a:f4:00:{index:02x}");
        interface.mtu = 1450;
        interface.raw_flags = flags;
        interface.IPAddresses = addresses
            .iter()
            .map(|(address, mask)| {
                let mut a = IPAddress::new();
                a.address = (*address).to_owned();
                a.mask = (*mask).to_owned();
                a.family = if address.contains(':') {
                    IPFamily::v6
                } else {
                    IPFamily::v4
                }
                .into();
                a
            })
            .collect();
        KernelInterface {
            interface,
            index,
            kind: Some("veth".to_owned()),
        }
    }

    fn route(dest: &str, gateway: &str, device: &str, protocol: RouteProtocol) -> KernelRoute {
        let mut route = Route::new();
        route.dest = dest.to_owned();
        route.gateway = gateway.to_owned();
        route.device = device.to_owned();
        KernelRoute { route, protocol }
    }

    fn neighbor(address: &str, mac: &str, device: &str, state: i32) -> ARPNeighbor {
        let mut to = IPAddress::new();
        to.address = address.to_owned();
        let mut n = ARPNeighbor::new();
        n.toIPAddress = Some(to).into();
        n.lladdr = mac.to_owned();
        n.device = device.to_owned();
        n.state = state;
        n
    }

    #[test]
    fn the_guest_gets_the_configured_interfaces_with_their_own_macs_and_taps() {
        let found = endpoints(vec![
            interface("lo", 1, IFF_LOOPBACK | 0x1, &[("127.0.0.1", "8")]),
            // Unconfigured (a tunnel base device): not the guest's.
            interface("tunl0", 2, 0x80, &[]),
            interface(
                "eth0",
                3,
                0x1003 | IFF_NOARP,
                &[("10.244.0.14", "24"), ("fe80::1", "64")],
            ),
            interface("net1", 4, 0x1003, &[("192.168.7.2", "24")]),
        ])
        .unwrap();
        let names: Vec<_> = found.iter().map(|e| e.interface.name.as_str()).collect();
        assert_eq!(names, ["eth0", "net1"]);
        assert_eq!(found[0].tap.name, "tap0_kata");
        assert_eq!(found[1].tap.name, "tap1_kata");
        assert_eq!(found[0].tap.mac, "0a:58:0a:f4:00:03", "the veth's MAC");
        assert_eq!(found[0].interface.hwAddr, found[0].tap.mac);
        assert_eq!(
            found[0].interface.raw_flags, IFF_NOARP,
            "only NOARP is kept"
        );
        assert_eq!(found[1].interface.raw_flags, 0);
        assert_eq!(found[0].interface.type_, "virtual");
        assert_eq!(found[0].interface.IPAddresses.len(), 2);
        assert_eq!(found[0].index, 3);
    }

    #[test]
    fn interfaces_tc_cannot_join_are_refused_by_name() {
        let mut tun = interface("tun0", 5, 0x1091, &[("10.8.0.2", "24")]);
        tun.kind = Some("tun".to_owned());
        tun.interface.hwAddr = String::new();
        let mut nic = interface("ens5", 6, 0x1003, &[("192.168.1.5", "24")]);
        nic.kind = None;
        for (refused, name) in [(tun, "tun0"), (nic, "ens5")] {
            let err = endpoints(vec![
                interface("eth0", 3, 0x1003, &[("10.244.0.14", "24")]),
                refused,
            ])
            .unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn the_guest_gets_the_routes_cni_made_and_the_static_or_gateway_neighbours() {
        let found =
            endpoints(vec![interface("eth0", 3, 0x1003, &[("10.244.0.14", "24")])]).unwrap();
        let routes = guest_routes(
            &found,
            vec![
                route("10.244.0.0/24", "", "eth0", RouteProtocol::Kernel),
                route("", "10.244.0.1", "eth0", RouteProtocol::Boot),
                route("10.96.0.0/12", "10.244.0.1", "eth0", RouteProtocol::Static),
                // Not a guest interface's.
                route("", "192.168.0.1", "other", RouteProtocol::Boot),
            ],
        );
        let dests: Vec<_> = routes.iter().map(|r| r.dest.as_str()).collect();
        assert_eq!(dests, ["", "10.96.0.0/12"]);
        let neighbors = guest_neighbors(
            &found,
            &routes,
            vec![
                neighbor("10.244.0.1", "0a:58:0a:f4:00:01", "eth0", NUD_REACHABLE),
                neighbor("10.244.0.9", "0a:58:0a:f4:00:09", "eth0", NUD_REACHABLE),
                neighbor("10.244.0.7", "0a:58:0a:f4:00:07", "eth0", NUD_PERMANENT),
                neighbor("10.244.0.8", "", "eth0", NUD_PERMANENT),
                neighbor("10.244.0.6", "0a:58:0a:f4:00:06", "other", NUD_PERMANENT),
            ],
        );
        let addresses: Vec<_> = neighbors
            .iter()
            .map(|n| n.toIPAddress.address.as_str())
            .collect();
        assert_eq!(addresses, ["10.244.0.1", "10.244.0.7"]);
    }
}
