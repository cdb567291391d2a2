//! The pod's network, as the runtime hands it over: the interface (found by its MAC,
//! renamed, addressed, brought up), its routes and static neighbours, applied with
//! rtnetlink (netlink from Rust, no `ip` tool). The policy has checked what reaches here
//! (no loopback addresses, routes or neighbours; never the `lo` interface).

use std::net::IpAddr;

use contrast_kernel_network::{MAIN_TABLE, link_mac, link_name, netlink};
use futures_util::TryStreamExt as _;
use rtnetlink::packet_route::link::LinkMessage;
use rtnetlink::packet_route::neighbour::{NeighbourFlags, NeighbourState};
use rtnetlink::packet_route::route::{
    RouteAttribute, RouteFlags, RouteMetric, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use crate::proto::types::{ARPNeighbor, IPFamily, Interface, Route};

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
    /// The kernel's network could not be read or changed.
    #[error(transparent)]
    Kernel(#[from] contrast_kernel_network::NetworkError),
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
    contrast_kernel_network::parse_mac(mac)
        .ok_or_else(|| invalid("hardware address", mac, "not six hex bytes"))
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
        Ok(Network {
            handle: contrast_kernel_network::connect()?,
        })
    }

    async fn links(&self) -> Result<Vec<LinkMessage>, NetworkError> {
        Ok(contrast_kernel_network::links(&self.handle).await?)
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
        // ARP as the pod's interface had it (IFF_NOARP is the one flag the runtime passes).
        let mut change = LinkUnspec::new_with_index(index)
            .arp(iface.raw_flags & contrast_kernel_network::IFF_NOARP == 0);
        let old_name = link_name(&link);
        // Another link with the wanted name (the guest named its NICs in PCI order, the pod's
        // interfaces may be in another) is renamed aside and then takes this link's old
        // name, as the Kata agent swaps them.
        let mut holder = None;
        if !iface.name.is_empty() && iface.name != old_name {
            if let Some(other) = self
                .links()
                .await?
                .into_iter()
                .find(|l| link_name(l) == iface.name)
            {
                let aside = format!("{}_temp", iface.name);
                self.handle
                    .link()
                    .set(
                        LinkUnspec::new_with_index(other.header.index)
                            .down()
                            .name(aside.clone())
                            .build(),
                    )
                    .execute()
                    .await
                    .map_err(netlink(format!("renaming {} to {aside}", iface.name)))?;
                holder = Some(other.header.index);
            }
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
        if let Some(other) = holder {
            self.handle
                .link()
                .set(
                    LinkUnspec::new_with_index(other)
                        .name(old_name.clone())
                        .build(),
                )
                .execute()
                .await
                .map_err(netlink(format!("renaming link {other} to {old_name}")))?;
        }
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
            // RTNH_F_ONLINK and the rest, as the pod's route had them (a gateway outside the
            // interface's subnet needs onlink).
            message.header.flags = RouteFlags::from_bits_retain(route.flags);
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
        Ok(contrast_kernel_network::interfaces(&self.handle)
            .await?
            .into_iter()
            .map(|i| i.interface)
            .collect())
    }

    /// The main table's routes (IPv4 and IPv6).
    pub async fn list_routes(&self) -> Result<Vec<Route>, NetworkError> {
        Ok(contrast_kernel_network::routes(&self.handle)
            .await?
            .into_iter()
            .map(|r| r.route)
            .collect())
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
