//! A network namespace's links, addresses, routes and neighbours, read over rtnetlink into
//! the Kata agent protocol's `Interface`, `Route` and `ARPNeighbor`. Two sides read a
//! kernel's network the same way: the agent answers ListInterfaces and ListRoutes with it,
//! and the node shim turns the pod's CNI network namespace into the guest's
//! UpdateInterface, UpdateRoutes and AddARPNeighbors with it.
//!
//! What is read is reported as the kernel has it; which parts a guest gets (no loopback, no
//! routes the kernel made itself) is the caller's choice.

#![forbid(unsafe_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use contrast_agent_protocol::proto::types::{ARPNeighbor, IPAddress, IPFamily, Interface, Route};
use futures_util::TryStreamExt as _;
use rtnetlink::Handle;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMetric, RouteProtocol};
use rtnetlink::{IpVersion, RouteMessageBuilder};

/// The main routing table.
pub const MAIN_TABLE: u32 = 254;

/// `IFF_LOOPBACK` in a link's flags.
pub const IFF_LOOPBACK: u32 = 0x8;

/// `IFF_NOARP` in a link's flags.
pub const IFF_NOARP: u32 = 0x80;

/// Why the network could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// The netlink socket could not be opened.
    #[error("opening a netlink socket")]
    Socket(#[source] std::io::Error),
    /// The network namespace could not be entered.
    #[error("entering the network namespace {path}")]
    Namespace {
        /// The namespace's path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused a request.
    #[error("netlink: {what}")]
    Netlink {
        /// What was asked.
        what: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
}

/// Maps a netlink failure of `what`.
pub fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Netlink { what, source }
}

/// Runs `f` on a thread of its own inside the network namespace at `netns` (a
/// `/var/run/netns/…` or `/proc/<pid>/ns/net` path): what it opens (a netlink socket, a
/// process it starts) belongs to that namespace. The calling thread's namespace is not
/// touched.
pub fn in_namespace<T: Send>(
    netns: &Path,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NetworkError> {
    let failed = |source| NetworkError::Namespace {
        path: netns.to_owned(),
        source,
    };
    let file = std::fs::File::open(netns).map_err(failed)?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| failed(std::io::Error::from(e)))?;
                Ok(f())
            })
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// A netlink connection in this thread's network namespace, driven by a task on the
/// current runtime.
pub fn connect() -> Result<Handle, NetworkError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(NetworkError::Socket)?;
    tokio::spawn(connection);
    Ok(handle)
}

/// A netlink connection in the network namespace at `netns`, driven by a task on the
/// current runtime. The socket keeps the namespace alive until the handle (and every
/// clone of it) is dropped.
pub fn connect_in(netns: &Path) -> Result<Handle, NetworkError> {
    let runtime = tokio::runtime::Handle::current();
    let (connection, handle, _) = in_namespace(netns, || {
        let _entered = runtime.enter();
        rtnetlink::new_connection()
    })?
    .map_err(NetworkError::Socket)?;
    tokio::spawn(connection);
    Ok(handle)
}

/// A MAC address `aa:bb:cc:dd:ee:ff`; `None` unless six hex bytes.
pub fn parse_mac(mac: &str) -> Option<Vec<u8>> {
    let bytes: Result<Vec<u8>, _> = mac.split(':').map(|b| u8::from_str_radix(b, 16)).collect();
    bytes.ok().filter(|b| b.len() == 6)
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A link's name.
pub fn link_name(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

/// A link's hardware address.
pub fn link_mac(link: &LinkMessage) -> Option<&[u8]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(a) => Some(a.as_slice()),
        _ => None,
    })
}

/// A link's kind (`veth`, `bridge`, …), when it has one.
pub fn link_kind(link: &LinkMessage) -> Option<String> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(kind) => Some(kind.to_string()),
            _ => None,
        }),
        _ => None,
    })
}

/// The links of the namespace.
pub async fn links(handle: &Handle) -> Result<Vec<LinkMessage>, NetworkError> {
    handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(netlink("listing links"))
}

/// The links' names by index.
async fn link_names(
    handle: &Handle,
) -> Result<std::collections::BTreeMap<u32, String>, NetworkError> {
    Ok(links(handle)
        .await?
        .iter()
        .map(|l| (l.header.index, link_name(l)))
        .collect())
}

/// A link as the kernel has it.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelInterface {
    /// Name, MAC, MTU, the link's flags as `raw_flags` and every address.
    pub interface: Interface,
    /// The link's index.
    pub index: u32,
    /// Its kind, when it has one (`veth`, `bridge`, `tun`, …).
    pub kind: Option<String>,
}

/// Every link with its addresses (IPv4 and IPv6, any scope).
pub async fn interfaces(handle: &Handle) -> Result<Vec<KernelInterface>, NetworkError> {
    let addresses: Vec<_> = handle
        .address()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(netlink("listing addresses"))?;
    let mut out = Vec::new();
    for link in links(handle).await? {
        let mut iface = Interface::new();
        iface.name = link_name(&link);
        iface.device = iface.name.clone();
        iface.hwAddr = link_mac(&link).map(format_mac).unwrap_or_default();
        iface.mtu = link
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::Mtu(m) => Some(u64::from(*m)),
                _ => None,
            })
            .unwrap_or(0);
        iface.raw_flags = link.header.flags.bits();
        for address in addresses
            .iter()
            .filter(|a| a.header.index == link.header.index)
        {
            // The interface's own address is IFA_LOCAL where there is one: on a
            // point-to-point address IFA_ADDRESS is the peer's.
            let local = address.attributes.iter().find_map(|a| match a {
                AddressAttribute::Local(ip) => Some(*ip),
                _ => None,
            });
            let ip = local.or_else(|| {
                address.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                })
            });
            if let Some(ip) = ip {
                let mut entry = IPAddress::new();
                entry.family = family(&ip).into();
                entry.address = ip.to_string();
                entry.mask = address.header.prefix_len.to_string();
                iface.IPAddresses.push(entry);
            }
        }
        out.push(KernelInterface {
            index: link.header.index,
            kind: link_kind(&link),
            interface: iface,
        });
    }
    Ok(out)
}

fn family(ip: &IpAddr) -> IPFamily {
    if ip.is_ipv4() {
        IPFamily::v4
    } else {
        IPFamily::v6
    }
}

/// A route of the main table as the kernel has it.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelRoute {
    /// Destination (`""` for a default route), gateway, preferred source, device, scope,
    /// family, flags (`RTNH_F_ONLINK`, …), MTU.
    pub route: Route,
    /// Who made it: the kernel's own routes (`Kernel`) follow from an address and are not
    /// handed to a guest.
    pub protocol: RouteProtocol,
}

/// The main table's routes, IPv4 then IPv6.
pub async fn routes(handle: &Handle) -> Result<Vec<KernelRoute>, NetworkError> {
    let names = link_names(handle).await?;
    let mut out = Vec::new();
    for version in [IpVersion::V4, IpVersion::V6] {
        let query = match version {
            IpVersion::V4 => RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            IpVersion::V6 => RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        };
        let messages: Vec<_> = handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .map_err(netlink("listing routes"))?;
        for message in messages.iter().filter(|m| {
            m.attributes
                .iter()
                .find_map(|a| match a {
                    RouteAttribute::Table(t) => Some(*t),
                    _ => None,
                })
                .unwrap_or(u32::from(m.header.table))
                == MAIN_TABLE
        }) {
            let mut route = Route::new();
            route.family = match version {
                IpVersion::V4 => IPFamily::v4,
                IpVersion::V6 => IPFamily::v6,
            }
            .into();
            route.scope = u32::from(u8::from(message.header.scope));
            // RTNH_F_ONLINK and the rest, as the runtime passes them on.
            route.flags = message.header.flags.bits();
            let address = |a: &RouteAddress| match a {
                RouteAddress::Inet(ip) => ip.to_string(),
                RouteAddress::Inet6(ip) => ip.to_string(),
                _ => String::new(),
            };
            for attribute in &message.attributes {
                match attribute {
                    RouteAttribute::Destination(a) => {
                        route.dest = format!(
                            "{}/{}",
                            address(a),
                            message.header.destination_prefix_length
                        );
                    }
                    RouteAttribute::Gateway(a) => route.gateway = address(a),
                    RouteAttribute::PrefSource(a) => route.source = address(a),
                    RouteAttribute::Oif(index) => {
                        route.device = names.get(index).cloned().unwrap_or_default();
                    }
                    RouteAttribute::Metrics(metrics) => {
                        for metric in metrics {
                            if let RouteMetric::Mtu(mtu) = metric {
                                route.mtu = *mtu;
                            }
                        }
                    }
                    _ => {}
                }
            }
            out.push(KernelRoute {
                route,
                protocol: message.header.protocol,
            });
        }
    }
    Ok(out)
}

/// The neighbour tables (ARP and NDP) as the kernel has them: state, flags, link-layer
/// address, the neighbour's address and its device.
pub async fn neighbors(handle: &Handle) -> Result<Vec<ARPNeighbor>, NetworkError> {
    let names = link_names(handle).await?;
    let messages: Vec<_> = handle
        .neighbours()
        .get()
        .execute()
        .try_collect()
        .await
        .map_err(netlink("listing neighbours"))?;
    let mut out = Vec::new();
    for message in messages {
        let mut neighbor = ARPNeighbor::new();
        neighbor.device = names
            .get(&message.header.ifindex)
            .cloned()
            .unwrap_or_default();
        neighbor.state = i32::from(u16::from(message.header.state));
        neighbor.flags = i32::from(message.header.flags.bits());
        for attribute in &message.attributes {
            match attribute {
                NeighbourAttribute::Destination(address) => {
                    let ip = match address {
                        NeighbourAddress::Inet(ip) => IpAddr::V4(*ip),
                        NeighbourAddress::Inet6(ip) => IpAddr::V6(*ip),
                        _ => continue,
                    };
                    let mut to = IPAddress::new();
                    to.family = family(&ip).into();
                    to.address = ip.to_string();
                    neighbor.toIPAddress = Some(to).into();
                }
                NeighbourAttribute::LinkLayerAddress(mac) => neighbor.lladdr = format_mac(mac),
                _ => {}
            }
        }
        if neighbor.toIPAddress.is_some() {
            out.push(neighbor);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_parse_and_print_as_six_hex_bytes() {
        assert_eq!(
            parse_mac("0A:58:0a:f4:00:0e"),
            Some(vec![10, 0x58, 10, 0xf4, 0, 14])
        );
        assert_eq!(
            format_mac(&[10, 0x58, 10, 0xf4, 0, 14]),
            "0a:58:0a:f4:00:0e"
        );
        for bad in [
            "",
            "0a:58:0a:f4:00",
            "0a:58:0a:f4:00:0e:01",
            "zz:58:0a:f4:00:0e",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }
}
