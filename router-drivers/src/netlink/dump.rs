//! What the kernel holds, read in one go: every route of both families in
//! every table, and every nexthop object. Re-read before each list and each
//! apply, so that hand-made changes (a nexthop deleted, taking its routes
//! with it) are always seen.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::message::RtnlMessage;
use super::nexthop::NexthopMessage;
use super::socket::Socket;
use crate::DriverError;

/// One route as the kernel reported it.
#[derive(Clone, Debug)]
pub(super) struct KernelRoute {
    pub dst: IpNet,
    pub table: u32,
    pub protocol: u8,
    pub kind: RouteType,
    pub scope: RouteScope,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub nh_id: Option<u32>,
    pub multipath: bool,
}

/// One nexthop object as the kernel reported it.
#[derive(Clone, Debug)]
pub(super) struct KernelNexthop {
    pub protocol: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub group_members: Vec<u32>,
    /// A plain "via gateway dev oif" nexthop (not a group, blackhole, …).
    pub plain: bool,
}

pub(super) struct Snapshot {
    pub routes: Vec<KernelRoute>,
    pub nexthops: HashMap<u32, KernelNexthop>,
}

impl Snapshot {
    pub(super) async fn take(socket: &mut Socket) -> Result<Self, DriverError> {
        let mut routes = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut request = RouteMessage::default();
            request.header.address_family = family;
            let replies = socket
                .dump(
                    "listing routes",
                    RtnlMessage::Route(RouteNetlinkMessage::GetRoute(request)),
                )
                .await?;
            routes.extend(replies.iter().filter_map(|reply| match reply {
                RtnlMessage::Route(RouteNetlinkMessage::NewRoute(route)) => parse_route(route),
                _ => None,
            }));
        }
        let replies = socket
            .dump(
                "listing nexthops",
                RtnlMessage::Nexthop(NexthopMessage::dump()),
            )
            .await?;
        let nexthops = replies
            .iter()
            .filter_map(|reply| match reply {
                RtnlMessage::Nexthop(nexthop) => parse_nexthop(nexthop),
                _ => None,
            })
            .collect();
        Ok(Self { routes, nexthops })
    }

    /// Where a route sends traffic: its own gateway, or its nexthop object's.
    pub(super) fn via(&self, route: &KernelRoute) -> Option<IpAddr> {
        route.gateway.or_else(|| {
            let nexthop = self.nexthops.get(&route.nh_id?)?;
            nexthop.plain.then_some(nexthop.gateway).flatten()
        })
    }

    /// How many routes (any table, any protocol) and groups use each nexthop.
    pub(super) fn nexthop_users(&self) -> HashMap<u32, i64> {
        let mut users = HashMap::new();
        let members = self
            .nexthops
            .values()
            .flat_map(|nexthop| &nexthop.group_members);
        for id in self
            .routes
            .iter()
            .filter_map(|route| route.nh_id.as_ref())
            .chain(members)
        {
            *users.entry(*id).or_insert(0) += 1;
        }
        users
    }

    /// The networks this router is directly attached to, as seen from
    /// `table`: link routes without a gateway in the main table or in
    /// `table`. Most specific first.
    pub(super) fn connected_networks(&self, table: u32) -> ConnectedNetworks {
        let mut networks: Vec<(IpNet, u32)> = self
            .routes
            .iter()
            .filter(|route| {
                route.table == u32::from(RouteHeader::RT_TABLE_MAIN) || route.table == table
            })
            .filter(|route| route.kind == RouteType::Unicast && !route.multipath)
            .filter(|route| route.gateway.is_none() && route.nh_id.is_none())
            // IPv6 prefix routes have universe scope; IPv4 ones link scope.
            .filter(|route| route.dst.addr().is_ipv6() || route.scope == RouteScope::Link)
            .filter_map(|route| Some((route.dst, route.oif?)))
            .collect();
        networks.sort_by_key(|(network, _)| std::cmp::Reverse(network.prefix_len()));
        ConnectedNetworks(networks)
    }
}

pub(super) struct ConnectedNetworks(Vec<(IpNet, u32)>);

impl ConnectedNetworks {
    /// The interface through which `gateway` is on-link, if any.
    pub(super) fn oif_for(&self, gateway: IpAddr) -> Option<u32> {
        self.0
            .iter()
            .find(|(network, _)| network.contains(&gateway))
            .map(|(_, oif)| *oif)
    }
}

/// Interface names by index, for telling the operator about foreign routes.
pub(super) async fn interface_names(
    socket: &mut Socket,
) -> Result<HashMap<u32, String>, DriverError> {
    let request = RtnlMessage::Route(RouteNetlinkMessage::GetLink(LinkMessage::default()));
    let replies = socket.dump("listing interfaces", request).await?;
    Ok(replies
        .iter()
        .filter_map(|reply| match reply {
            RtnlMessage::Route(RouteNetlinkMessage::NewLink(link)) => link
                .attributes
                .iter()
                .find_map(|attribute| match attribute {
                    LinkAttribute::IfName(name) => Some((link.header.index, name.clone())),
                    _ => None,
                }),
            _ => None,
        })
        .collect())
}

fn parse_route(message: &RouteMessage) -> Option<KernelRoute> {
    let header = &message.header;
    let mut route = KernelRoute {
        dst: default_route(header.address_family)?,
        table: u32::from(header.table),
        protocol: u8::from(header.protocol),
        kind: header.kind,
        scope: header.scope,
        gateway: None,
        oif: None,
        nh_id: None,
        multipath: false,
    };
    for attribute in &message.attributes {
        match attribute {
            RouteAttribute::Destination(address) => {
                route.dst = IpNet::new(ip(address)?, header.destination_prefix_length).ok()?;
            }
            RouteAttribute::Gateway(address) => route.gateway = ip(address),
            RouteAttribute::Oif(oif) => route.oif = Some(*oif),
            RouteAttribute::NhId(id) => route.nh_id = Some(*id),
            RouteAttribute::Table(table) => route.table = *table,
            RouteAttribute::MultiPath(_) => route.multipath = true,
            _ => {}
        }
    }
    Some(route)
}

fn default_route(family: AddressFamily) -> Option<IpNet> {
    match family {
        AddressFamily::Inet => IpNet::new(Ipv4Addr::UNSPECIFIED.into(), 0).ok(),
        AddressFamily::Inet6 => IpNet::new(Ipv6Addr::UNSPECIFIED.into(), 0).ok(),
        _ => None,
    }
}

fn ip(address: &RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(v4) => Some((*v4).into()),
        RouteAddress::Inet6(v6) => Some((*v6).into()),
        _ => None,
    }
}

fn parse_nexthop(message: &NexthopMessage) -> Option<(u32, KernelNexthop)> {
    let nexthop = KernelNexthop {
        protocol: message.header.protocol,
        gateway: message.gateway(),
        oif: message.oif(),
        group_members: message.group_members(),
        plain: message.is_plain(),
    };
    Some((message.id()?, nexthop))
}
