//! Reading the kernel: the routes in our table with our protocol (a dump
//! the kernel filters), every nexthop object, and, kept current by
//! [`Others`], what everyone else holds that matters to us.
//!
//! A router carrying a full Internet table holds a million routes, and we
//! want a few thousand of them. The kernel can filter a route dump by
//! table and protocol, so a read of ours costs it one walk of the table
//! (~35 ms for a million IPv4 routes) and sends only ours; it cannot filter
//! by prefix, so foreign routes inside the pool can only be found by
//! reading every route. On a router with many routes of others that full
//! read (the "seed") is taken once, and again only when the picture of
//! others may have gone wrong; in between the kernel's announcements keep
//! it current. A router with few is read in full at every read (see
//! [`Others`]).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::route::{RouteHeader, RouteScope, RouteType};
use nix::errno::Errno;

use super::NetlinkRouter;
use super::message::RtnlMessage;
use super::nexthop::{NexthopMessage, RTM_GETNEXTHOP, RTM_NEWNEXTHOP};
use super::others::Others;
use super::reader::{DumpEnd, Incoming};
use super::socket::Socket;
use crate::DriverError;

pub(super) const RTM_NEWROUTE: u16 = 24;
pub(super) const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTA_NH_ID: u16 = 30;
const NLA_TYPE_MASK: u16 = 0x3fff;
/// `sizeof(struct rtmsg)`.
const RTMSG_LEN: usize = 12;
const RTM_F_CLONED: u32 = 0x200;
const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
/// Reads that found the kernel changing under them, or the picture of
/// others lost, are taken again this many times at most.
const READ_ATTEMPTS: usize = 5;

/// One route as the kernel reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct KernelRoute {
    pub dst: IpNet,
    pub table: u32,
    pub protocol: u8,
    pub kind: RouteType,
    pub scope: RouteScope,
    pub tos: u8,
    pub priority: u32,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    pub nh_id: Option<u32>,
    /// A hash of its next hops, for a multipath route: two such routes
    /// differing only there are two routes.
    pub multipath: Option<u64>,
}

impl KernelRoute {
    /// A gateway-less route out of one interface: what makes a network
    /// directly attached. IPv6 prefix routes have universe scope; IPv4
    /// ones link scope.
    pub(super) fn is_link_route(&self) -> bool {
        self.kind == RouteType::Unicast
            && self.multipath.is_none()
            && self.gateway.is_none()
            && self.nh_id.is_none()
            && self.oif.is_some()
            && (self.dst.addr().is_ipv6() || self.scope == RouteScope::Link)
    }
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

/// One read of the kernel.
pub(super) struct Reading {
    /// Every route in our table with our protocol, whatever its
    /// destination: ours are those inside the pool.
    pub marked: Vec<KernelRoute>,
    pub nexthops: HashMap<u32, KernelNexthop>,
    pub others: Others,
}

impl Reading {
    /// Reads the kernel, keeping `others` current, or seeding it by a full
    /// read where it needs that.
    pub(super) async fn take(
        socket: &mut Socket,
        router: &NetlinkRouter,
        mut others: Others,
    ) -> Result<Self, DriverError> {
        for _ in 0..READ_ATTEMPTS {
            let seeding = others.needs_seed();
            if seeding {
                // Listening from before the full read, so that nothing
                // between the two goes unheard, in case it is to be kept.
                socket.reader.listen()?;
                // Everything announced so far is in the dump about to start.
                socket.reader.drain(&mut |_| {})?;
                socket.reader.overrun = false;
                others.start_seed();
            }
            let marked = read_routes(socket, router, &mut others, seeding).await?;
            let nexthops = read_nexthops(socket, &mut others).await?;
            if socket.reader.overrun {
                socket.reader.overrun = false;
                others.lose("the kernel's announcements overflowed the socket");
            }
            // An interrupted dump leaves a seed unfinished: taken again.
            let (Some(marked), Some(nexthops)) = (marked, nexthops) else {
                continue;
            };
            others.keep_to(&nexthops);
            if seeding {
                others.seeded();
            }
            if others.settled() {
                if !others.heard() {
                    socket.reader.stop_listening()?;
                }
                return Ok(Self {
                    marked,
                    nexthops,
                    others,
                });
            }
        }
        Err(DriverError::Request {
            router: router.name.clone(),
            operation: "reading the router",
            message: "the kernel kept changing its tables while they were read".to_owned(),
        })
    }

    /// Where a route sends traffic: its own gateway, or its nexthop object's.
    pub(super) fn via(&self, route: &KernelRoute) -> Option<IpAddr> {
        route.gateway.or_else(|| {
            let nexthop = self.nexthops.get(&route.nh_id?)?;
            nexthop.plain.then_some(nexthop.gateway).flatten()
        })
    }

    /// How many of our marked routes and nexthop groups use each nexthop;
    /// the routes of others are counted by [`Others`].
    pub(super) fn nexthop_users(&self) -> HashMap<u32, i64> {
        let mut users = HashMap::new();
        let members = self
            .nexthops
            .values()
            .flat_map(|nexthop| &nexthop.group_members);
        for id in self
            .marked
            .iter()
            .filter_map(|route| route.nh_id.as_ref())
            .chain(members)
        {
            *users.entry(*id).or_insert(0) += 1;
        }
        users
    }

    /// The networks this router is directly attached to, as seen from
    /// `table`: link routes in the main table or in `table`. Most specific
    /// first.
    pub(super) fn connected_networks(&self, table: u32) -> ConnectedNetworks {
        let main = u32::from(RouteHeader::RT_TABLE_MAIN);
        let mut networks: Vec<(IpNet, u32)> = self
            .others
            .links()
            .chain(self.marked.iter().filter(|route| route.is_link_route()))
            .filter(|route| route.table == main || route.table == table)
            .filter_map(|route| Some((route.dst, route.oif?)))
            .collect();
        networks.sort_by_key(|(network, _)| std::cmp::Reverse(network.prefix_len()));
        ConnectedNetworks(networks)
    }
}

/// Brings `others` up to date with what the kernel announced since.
pub(super) fn catch_up(socket: &mut Socket, others: &mut Others) -> Result<(), DriverError> {
    socket.reader.drain(&mut |message| others.hear(message))?;
    if std::mem::take(&mut socket.reader.overrun) {
        others.lose("the kernel's announcements overflowed the socket");
    }
    Ok(())
}

/// Our table's routes with our protocol, both families; `None` when a dump
/// was interrupted and the read must be taken again.
async fn read_routes(
    socket: &mut Socket,
    router: &NetlinkRouter,
    others: &mut Others,
    seeding: bool,
) -> Result<Option<Vec<KernelRoute>>, DriverError> {
    let protocol = router.ownership.netlink_protocol;
    let mut marked = Vec::new();
    let mut complete = true;
    for family in [AF_INET, AF_INET6] {
        loop {
            let filter = (!seeding).then_some((router.table, protocol));
            let end = socket
                .reader
                .dump(
                    "listing routes",
                    RTM_GETROUTE,
                    &route_request(family, filter),
                    &mut |incoming| match incoming {
                        Incoming::Reply(message) if message.kind == RTM_NEWROUTE => {
                            let Some(route) = parse_route(message.payload) else {
                                return;
                            };
                            if route.table == router.table && route.protocol == protocol {
                                marked.push(route);
                            } else if seeding {
                                others.dumped(route);
                            }
                        }
                        Incoming::Reply(_) => {}
                        Incoming::Heard(message) => others.hear(message),
                    },
                )
                .await?;
            match end {
                DumpEnd::Complete | DumpEnd::NoTable => {}
                DumpEnd::Interrupted => complete = false,
                // A kernel that takes strict checking but not this filter:
                // read everything, and filter here.
                DumpEnd::Refused(refusal)
                    if refusal.errno == Errno::EINVAL && socket.reader.filters() && !seeding =>
                {
                    tracing::debug!(router = %router.name, %refusal, "filtered route dump refused");
                    socket.reader.stop_filtering();
                    marked.retain(|route| route.dst.addr().is_ipv4() != (family == AF_INET));
                    continue;
                }
                DumpEnd::Refused(refusal) => {
                    return Err(DriverError::Request {
                        router: router.name.clone(),
                        operation: "listing routes",
                        message: refusal.to_string(),
                    });
                }
            }
            break;
        }
    }
    Ok(complete.then_some(marked))
}

async fn read_nexthops(
    socket: &mut Socket,
    others: &mut Others,
) -> Result<Option<HashMap<u32, KernelNexthop>>, DriverError> {
    let mut nexthops = HashMap::new();
    let end = socket
        .reader
        .dump(
            "listing nexthops",
            RTM_GETNEXTHOP,
            // struct nhmsg, all zero: every family, no filter.
            &[0; 8],
            &mut |incoming| match incoming {
                Incoming::Reply(message) if message.kind == RTM_NEWNEXTHOP => {
                    if let Some((id, nexthop)) =
                        NexthopMessage::parse(message.kind, message.payload)
                            .ok()
                            .as_ref()
                            .and_then(parse_nexthop)
                    {
                        nexthops.insert(id, nexthop);
                    }
                }
                Incoming::Reply(_) => {}
                Incoming::Heard(message) => others.hear(message),
            },
        )
        .await?;
    match end {
        DumpEnd::Complete | DumpEnd::NoTable => Ok(Some(nexthops)),
        DumpEnd::Interrupted => Ok(None),
        DumpEnd::Refused(refusal) => Err(DriverError::Request {
            router: socket.router.clone(),
            operation: "listing nexthops",
            message: refusal.to_string(),
        }),
    }
}

/// A route dump request: `struct rtmsg` of `family`, and with `filter`
/// the table (as `RTA_TABLE`, which holds any table id) and protocol the
/// kernel is to keep to. Every other field stays zero, as strict checking
/// requires.
fn route_request(family: u8, filter: Option<(u32, u8)>) -> Vec<u8> {
    let mut request = vec![0; RTMSG_LEN];
    request[0] = family;
    if let Some((table, protocol)) = filter {
        request[5] = protocol;
        request.extend_from_slice(&8u16.to_ne_bytes());
        request.extend_from_slice(&RTA_TABLE.to_ne_bytes());
        request.extend_from_slice(&table.to_ne_bytes());
    }
    request
}

/// A route message's payload (`struct rtmsg` and attributes), read in
/// place. `None` for what is not a route: a cached exception
/// (`RTM_F_CLONED`), a family other than IPv4 and IPv6, a message cut short.
pub(super) fn parse_route(payload: &[u8]) -> Option<KernelRoute> {
    let header = payload.get(..RTMSG_LEN)?;
    let flags = u32::from_ne_bytes(header[8..12].try_into().ok()?);
    if flags & RTM_F_CLONED != 0 {
        return None;
    }
    let family = header[0];
    let unspecified: IpAddr = match family {
        AF_INET => Ipv4Addr::UNSPECIFIED.into(),
        AF_INET6 => Ipv6Addr::UNSPECIFIED.into(),
        _ => return None,
    };
    let mut route = KernelRoute {
        dst: IpNet::new(unspecified, 0).ok()?,
        table: u32::from(header[4]),
        protocol: header[5],
        kind: RouteType::from(header[7]),
        scope: RouteScope::from(header[6]),
        tos: header[3],
        priority: 0,
        gateway: None,
        oif: None,
        nh_id: None,
        multipath: None,
    };
    let mut attributes = &payload[RTMSG_LEN..];
    while attributes.len() >= 4 {
        let length = usize::from(u16::from_ne_bytes(attributes[0..2].try_into().ok()?));
        let kind = u16::from_ne_bytes(attributes[2..4].try_into().ok()?) & NLA_TYPE_MASK;
        let value = attributes.get(4..length)?;
        match kind {
            RTA_DST => route.dst = IpNet::new(address(family, value)?, header[1]).ok()?,
            RTA_GATEWAY => route.gateway = address(family, value),
            RTA_OIF => route.oif = Some(u32_of(value)?),
            RTA_PRIORITY => route.priority = u32_of(value)?,
            RTA_TABLE => route.table = u32_of(value)?,
            RTA_NH_ID => route.nh_id = Some(u32_of(value)?),
            RTA_MULTIPATH => {
                let mut hasher = DefaultHasher::new();
                value.hash(&mut hasher);
                route.multipath = Some(hasher.finish());
            }
            _ => {}
        }
        attributes = attributes.get(length.next_multiple_of(4)..).unwrap_or(&[]);
    }
    Some(route)
}

fn address(family: u8, value: &[u8]) -> Option<IpAddr> {
    match family {
        AF_INET => Some(Ipv4Addr::from(<[u8; 4]>::try_from(value).ok()?).into()),
        AF_INET6 => Some(Ipv6Addr::from(<[u8; 16]>::try_from(value).ok()?).into()),
        _ => None,
    }
}

fn u32_of(value: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(value.try_into().ok()?))
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
