//! The pod's network, as the runtime hands it over: the interface (found by its MAC,
//! renamed, addressed, brought up), its routes and static neighbours, applied with
//! rtnetlink (netlink from Rust, no `ip` tool). The policy has checked what reaches here
//! (no loopback addresses, routes or neighbours; never the `lo` interface).

use std::net::IpAddr;

use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourFlags, NeighbourState};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMetric, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::proto::types::{ARPNeighbor, IPAddress, IPFamily, Interface, Route};

/// The main routing table.
const MAIN_TABLE: u32 = 254;

/// Why a network change failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    /// A value of the request does not parse.
    #[error("{what} {value:?} is not valid: {detail}")]
    Invalid {
        /// Which field.
        what: &'static str,
        /// The value.
        value: String,
        /// Why.
        detail: String,
    },
    /// No interface matches.
    #[error("no network interface {0}")]
    NoLink(String),
    /// The kernel refused a change.
    #[error("netlink: {what}")]
    Netlink {
        /// What was asked.
        what: String,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
    /// The netlink socket could not be opened.
    #[error("opening a netlink socket")]
    Socket(#[source] std::io::Error),
}

fn netlink(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetworkError {
    let what = what.into();
    move |source| NetworkError::Netlink { what, source }
}

fn invalid(what: &'static str, value: &str, detail: impl ToString) -> NetworkError {
    NetworkError::Invalid {
        what,
        value: value.to_owned(),
        detail: detail.to_string(),
    }
}

/// A MAC address `aa:bb:cc:dd:ee:ff`.
fn parse_mac(mac: &str) -> Result<Vec<u8>, NetworkError> {
    let bytes: Result<Vec<u8>, _> = mac.split(':').map(|b| u8::from_str_radix(b, 16)).collect();
    match bytes {
        Ok(b) if b.len() == 6 => Ok(b),
        _ => Err(invalid("hardware address", mac, "not six hex bytes")),
    }
}

fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn link_name(link: &LinkMessage) -> String {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn link_mac(link: &LinkMessage) -> Option<&[u8]> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Address(a) => Some(a.as_slice()),
        _ => None,
    })
}

/// `10.0.0.0/24` (or an address alone, a host route), `""` for the default route.
fn parse_prefix(text: &str, family: IpAddr) -> Result<(IpAddr, u8), NetworkError> {
    if text.is_empty() || text == "default" {
        return Ok(match family {
            IpAddr::V4(_) => (IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0),
            IpAddr::V6(_) => (IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED), 0),
        });
    }
    let (address, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let address: IpAddr = address
        .parse()
        .map_err(|e| invalid("route destination", text, e))?;
    let full = if address.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= full)
            .ok_or_else(|| invalid("route destination", text, "bad prefix length"))?,
        None => full,
    };
    Ok((address, prefix))
}

/// The VM's network as the agent changes it.
#[derive(Debug, Clone)]
pub struct Network {
    handle: Handle,
}

impl Network {
    /// Opens a netlink connection (driven by a task on the current runtime).
    pub fn connect() -> Result<Self, NetworkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetworkError::Socket)?;
        tokio::spawn(connection);
        Ok(Network { handle })
    }

    async fn links(&self) -> Result<Vec<LinkMessage>, NetworkError> {
        self.handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(netlink("listing links"))
    }

    async fn link_by_name(&self, name: &str) -> Result<LinkMessage, NetworkError> {
        self.links()
            .await?
            .into_iter()
            .find(|l| link_name(l) == name)
            .ok_or_else(|| NetworkError::NoLink(name.to_owned()))
    }

    /// Applies `iface` to the link with its MAC: down, addresses replaced, renamed, MTU,
    /// up. Answers the interface as it now is.
    pub async fn update_interface(&self, iface: &Interface) -> Result<Interface, NetworkError> {
        let mac = parse_mac(&iface.hwAddr)?;
        let link = self
            .links()
            .await?
            .into_iter()
            .find(|l| link_mac(l) == Some(mac.as_slice()))
            .ok_or_else(|| NetworkError::NoLink(format!("with MAC {}", iface.hwAddr)))?;
        let index = link.header.index;
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(index).down().build())
            .execute()
            .await
            .map_err(netlink(format!("setting link {index} down")))?;
        let existing: Vec<_> = self
            .handle
            .address()
            .get()
            .set_link_index_filter(index)
            .execute()
            .try_collect()
            .await
            .map_err(netlink("listing addresses"))?;
        for address in existing {
            self.handle
                .address()
                .del(address)
                .execute()
                .await
                .map_err(netlink("removing an old address"))?;
        }
        for address in &iface.IPAddresses {
            let ip: IpAddr = address
                .address
                .parse()
                .map_err(|e| invalid("interface address", &address.address, e))?;
            let full = if ip.is_ipv4() { 32 } else { 128 };
            let prefix = address
                .mask
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= full)
                .ok_or_else(|| invalid("address mask", &address.mask, "not a prefix length"))?;
            self.handle
                .address()
                .add(index, ip, prefix)
                .execute()
                .await
                .map_err(netlink(format!("adding {ip}/{prefix}")))?;
        }
        let mut change = LinkUnspec::new_with_index(index);
        if !iface.name.is_empty() && iface.name != link_name(&link) {
            change = change.name(iface.name.clone());
        }
        if let Ok(mtu) = u32::try_from(iface.mtu)
            && mtu > 0
        {
            change = change.mtu(mtu);
        }
        self.handle
            .link()
            .set(change.up().build())
            .execute()
            .await
            .map_err(netlink(format!("configuring link {index}")))?;
        tracing::info!(interface = %iface.name, mac = %iface.hwAddr, "interface updated");
        Ok(iface.clone())
    }

    /// Adds `routes` to the main table (replacing equal ones), routes without a gateway
    /// first so the gateways' routes exist when they are needed.
    pub async fn update_routes(&self, routes: &[Route]) -> Result<Vec<Route>, NetworkError> {
        let (direct, via): (Vec<&Route>, Vec<&Route>) =
            routes.iter().partition(|r| r.gateway.is_empty());
        for route in direct.into_iter().chain(via) {
            let link = self.link_by_name(&route.device).await?;
            let family = if route.family.value() == IPFamily::v6 as i32 {
                IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
            } else {
                IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
            };
            let (destination, prefix) = parse_prefix(&route.dest, family)?;
            let mut builder = RouteMessageBuilder::<IpAddr>::new()
                .destination_prefix(destination, prefix)
                .map_err(|e| invalid("route destination", &route.dest, format!("{e:?}")))?;
            if !route.gateway.is_empty() {
                let gateway: IpAddr = route
                    .gateway
                    .parse()
                    .map_err(|e| invalid("route gateway", &route.gateway, e))?;
                builder = builder
                    .gateway(gateway)
                    .map_err(|e| invalid("route gateway", &route.gateway, format!("{e:?}")))?;
            }
            if !route.source.is_empty() {
                let source: IpAddr = route
                    .source
                    .parse()
                    .map_err(|e| invalid("route source", &route.source, e))?;
                builder = builder
                    .pref_source(source)
                    .map_err(|e| invalid("route source", &route.source, format!("{e:?}")))?;
            }
            let mut message = builder
                .output_interface(link.header.index)
                .table_id(MAIN_TABLE)
                .protocol(RouteProtocol::Boot)
                .scope(RouteScope::from(u8::try_from(route.scope).unwrap_or(0)))
                .kind(RouteType::Unicast)
                .build();
            if route.mtu > 0 {
                message
                    .attributes
                    .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(route.mtu)]));
            }
            self.handle
                .route()
                .add(message)
                .replace()
                .execute()
                .await
                .map_err(netlink(format!("adding the route to {:?}", route.dest)))?;
        }
        Ok(routes.to_vec())
    }

    /// The links with their MACs, MTUs, flags and addresses.
    pub async fn list_interfaces(&self) -> Result<Vec<Interface>, NetworkError> {
        let addresses: Vec<_> = self
            .handle
            .address()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(netlink("listing addresses"))?;
        let mut out = Vec::new();
        for link in self.links().await? {
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
                let ip = address.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => Some(*ip),
                    _ => None,
                });
                if let Some(ip) = ip {
                    let mut entry = IPAddress::new();
                    entry.family = if ip.is_ipv4() {
                        IPFamily::v4
                    } else {
                        IPFamily::v6
                    }
                    .into();
                    entry.address = ip.to_string();
                    entry.mask = address.header.prefix_len.to_string();
                    iface.IPAddresses.push(entry);
                }
            }
            out.push(iface);
        }
        Ok(out)
    }

    /// The main table's routes (IPv4 and IPv6).
    pub async fn list_routes(&self) -> Result<Vec<Route>, NetworkError> {
        let names: std::collections::BTreeMap<u32, String> = self
            .links()
            .await?
            .iter()
            .map(|l| (l.header.index, link_name(l)))
            .collect();
        let mut out = Vec::new();
        for family in [
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
        ] {
            let query = match family {
                IpAddr::V4(_) => RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
                IpAddr::V6(_) => RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
            };
            let routes: Vec<_> = self
                .handle
                .route()
                .get(query)
                .execute()
                .try_collect()
                .await
                .map_err(netlink("listing routes"))?;
            for message in routes
                .iter()
                .filter(|m| u32::from(m.header.table) == MAIN_TABLE)
            {
                let mut route = Route::new();
                route.family = if family.is_ipv4() {
                    IPFamily::v4
                } else {
                    IPFamily::v6
                }
                .into();
                route.scope = u32::from(u8::from(message.header.scope));
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
                        _ => {}
                    }
                }
                out.push(route);
            }
        }
        Ok(out)
    }

    /// Adds static neighbour entries (replacing equal ones).
    pub async fn add_arp_neighbors(&self, neighbors: &[ARPNeighbor]) -> Result<(), NetworkError> {
        for neighbor in neighbors {
            let link = self.link_by_name(&neighbor.device).await?;
            let text = neighbor
                .toIPAddress
                .as_ref()
                .map(|a| a.address.clone())
                .unwrap_or_default();
            let ip: IpAddr = text
                .parse()
                .map_err(|e| invalid("neighbour address", &text, e))?;
            let mut request = self
                .handle
                .neighbours()
                .add(link.header.index, ip)
                .state(NeighbourState::from(
                    u16::try_from(neighbor.state).unwrap_or(0),
                ))
                .flags(NeighbourFlags::from_bits_retain(
                    u8::try_from(neighbor.flags).unwrap_or(0),
                ))
                .replace();
            if !neighbor.lladdr.is_empty() {
                request = request.link_layer_address(&parse_mac(&neighbor.lladdr)?);
            }
            request
                .execute()
                .await
                .map_err(netlink(format!("adding the neighbour {text}")))?;
        }
        Ok(())
    }
}
