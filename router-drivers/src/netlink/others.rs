//! Everyone else's routes, as far as they matter to the driver: the
//! foreign routes in our table inside the pool (reported by `list`, and in
//! the way of a replace), the link routes that make gateways on-link, and
//! how many routes use each nexthop object (a nexthop deleted takes its
//! routes with it). "Everyone else's" is every route that is not in our
//! table with our protocol: those the driver reads afresh each time.
//!
//! Foreign routes inside the pool cannot be asked for: a dump filters by
//! table, protocol, type and interface, never by prefix, and a route lookup
//! (`RTM_GETROUTE` with `RTM_F_FIB_MATCH`) shows one route, the one a packet
//! would take, through the policy rules, skipping dead next hops, while
//! `NLM_F_REPLACE` takes the first route to the destination at its metric,
//! dead or alive. So the picture is seeded from one full read, and kept
//! current from the kernel's announcements (every route added, replaced
//! or deleted through netlink is announced, to a socket that listens).
//!
//! The picture errs on the safe side, and where it cannot it is dropped
//! and seeded again at the next read:
//!
//! - The kernel removes IPv4 routes without announcing them when a link
//!   goes down or away, or an address goes; any announcement of those
//!   marks the picture lost. It also removes every route using a nexthop
//!   object that is deleted: each read's nexthop dump shows which objects
//!   are gone, and their routes go from the picture with them.
//! - A replace announces the new route, not the one it replaced: when the
//!   picture holds a route there, it is lost.
//! - Announcements the socket had no room for are lost with it.
//! - Past [`RESEED_AFTER`] it is seeded again anyway, so that anything
//!   unforeseen is repaired within that time.
//!
//! Hearing has a price: the kernel announces our own changes too, and
//! reading those off costs about 1 µs each (11 ms of a cold start of
//! 10,000 routes). A router with fewer than [`HEAR_OTHERS_FROM`] routes of
//! others is therefore read in full at every read instead, without
//! listening: there a full read costs under ~25 ms (0.24 s for a million
//! routes), and the driver behaves as one that never listens. The size is
//! taken at each full read.
//!
//! Nexthop users are counted never below the kernel's: an unannounced
//! removal leaves the count high, which keeps a nexthop of ours that
//! nothing uses any more until the next seed; never the other way round.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use netlink_packet_core::NLM_F_REPLACE;
use netlink_packet_route::route::RouteHeader;

use super::NetlinkRouter;
use super::dump::{KernelNexthop, KernelRoute, RTM_DELROUTE, RTM_NEWROUTE, parse_route};
use super::reader::Message;
use crate::Ownership;

/// How long a picture is trusted before it is seeded again.
pub(super) const RESEED_AFTER: Duration = Duration::from_secs(15 * 60);
/// From this many routes of others on, the picture is kept from the
/// kernel's announcements; below it, every read reads them all.
pub const HEAR_OTHERS_FROM: usize = 100_000;

const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_DELADDR: u16 = 21;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Never read.
    Unread,
    /// A full read is under way.
    Seeding,
    Current {
        since: Instant,
    },
    Lost,
    /// Few enough to be read in full at every read, unheard.
    ReadEachTime,
}

pub(super) struct Others {
    table: u32,
    ownership: Ownership,
    /// Foreign routes in our table inside the pool, by destination.
    in_pool: HashMap<IpNet, Vec<KernelRoute>>,
    /// Link routes in the main table and in ours.
    links: Vec<KernelRoute>,
    /// How many routes of others use each nexthop object.
    users: HashMap<u32, u32>,
    state: State,
    /// Routes of others the last full read found.
    seen: usize,
    hear_from: usize,
}

impl Others {
    /// An unread picture, to be kept from announcements once there are
    /// `hear_from` routes of others or more.
    pub(super) fn new(router: &NetlinkRouter, hear_from: usize) -> Self {
        Self {
            table: router.table,
            ownership: router.ownership.clone(),
            in_pool: HashMap::new(),
            links: Vec::new(),
            users: HashMap::new(),
            state: State::Unread,
            seen: 0,
            hear_from,
        }
    }

    pub(super) fn hear_from(&self) -> usize {
        self.hear_from
    }

    /// Whether the next read must read everyone else's routes in full.
    pub(super) fn needs_seed(&self) -> bool {
        match self.state {
            State::Current { since } => since.elapsed() > RESEED_AFTER,
            State::Unread | State::Seeding | State::Lost | State::ReadEachTime => true,
        }
    }

    /// Whether the picture can be used as it is: current, or just read in
    /// full on a router read in full each time.
    pub(super) fn settled(&self) -> bool {
        self.state == State::ReadEachTime || !self.needs_seed()
    }

    /// Whether announcements keep the picture until the next read.
    pub(super) fn heard(&self) -> bool {
        matches!(self.state, State::Current { .. })
    }

    /// Forgets everything: a full read starts.
    pub(super) fn start_seed(&mut self) {
        self.in_pool.clear();
        self.links.clear();
        self.users.clear();
        self.seen = 0;
        self.state = State::Seeding;
    }

    /// The full read is complete; unless something lost the picture while
    /// it was taken, it is current, and kept from announcements if there
    /// are enough routes of others for that to pay.
    pub(super) fn seeded(&mut self) {
        if self.state == State::Seeding {
            self.state = if self.seen >= self.hear_from {
                State::Current {
                    since: Instant::now(),
                }
            } else {
                State::ReadEachTime
            };
        }
    }

    pub(super) fn lose(&mut self, why: &'static str) {
        if self.state != State::Lost {
            tracing::debug!(why, "routes of others to be read again");
        }
        self.state = State::Lost;
    }

    /// A route of the full read.
    pub(super) fn dumped(&mut self, route: KernelRoute) {
        self.seen += 1;
        self.add(route);
    }

    /// An announcement of a change someone else made.
    pub(super) fn hear(&mut self, message: Message) {
        match message.kind {
            RTM_NEWROUTE => {
                let Some(route) = parse_route(message.payload) else {
                    return;
                };
                if message.flags & NLM_F_REPLACE != 0 && self.holds_any(route.table, route.dst) {
                    self.lose("a route was replaced where others hold one");
                }
                self.add(route);
            }
            RTM_DELROUTE => {
                if let Some(route) = parse_route(message.payload) {
                    self.remove(&route);
                }
            }
            RTM_NEWLINK | RTM_DELLINK => self.lose("a link changed"),
            RTM_DELADDR => self.lose("an address was removed"),
            _ => {}
        }
    }

    /// Forgets the routes using nexthop objects that are gone: the kernel
    /// deleted them with the object, unannounced. `nexthops` is a complete
    /// dump, taken after every announcement handed over so far: one made
    /// while it was taken would have interrupted it.
    pub(super) fn keep_to(&mut self, nexthops: &HashMap<u32, KernelNexthop>) {
        let gone = |route: &KernelRoute| route.nh_id.is_some_and(|id| !nexthops.contains_key(&id));
        self.in_pool.retain(|_, routes| {
            routes.retain(|route| !gone(route));
            !routes.is_empty()
        });
        self.users.retain(|id, _| nexthops.contains_key(id));
    }

    /// Whether a foreign route is at `dst` in our table.
    pub(super) fn holds(&self, dst: IpNet) -> bool {
        self.in_pool
            .get(&dst)
            .is_some_and(|routes| !routes.is_empty())
    }

    /// The foreign routes in our table inside the pool.
    pub(super) fn in_pool(&self) -> impl Iterator<Item = &KernelRoute> {
        self.in_pool.values().flatten()
    }

    /// The link routes of others in the main table and in ours.
    pub(super) fn links(&self) -> impl Iterator<Item = &KernelRoute> {
        self.links.iter()
    }

    /// How many routes of others use nexthop `id`, never fewer than do.
    pub(super) fn users_of(&self, id: u32) -> u32 {
        self.users.get(&id).copied().unwrap_or(0)
    }

    fn is_marked(&self, route: &KernelRoute) -> bool {
        route.table == self.table && route.protocol == self.ownership.netlink_protocol
    }

    fn is_in_pool(&self, route: &KernelRoute) -> bool {
        route.table == self.table && self.ownership.in_pool(&route.dst)
    }

    fn is_link(&self, route: &KernelRoute) -> bool {
        let main = u32::from(RouteHeader::RT_TABLE_MAIN);
        route.is_link_route() && (route.table == main || route.table == self.table)
    }

    fn holds_any(&self, table: u32, dst: IpNet) -> bool {
        (table == self.table && self.holds(dst))
            || self
                .links
                .iter()
                .any(|link| link.table == table && link.dst == dst)
    }

    fn add(&mut self, route: KernelRoute) {
        if self.is_marked(&route) {
            return;
        }
        if let Some(id) = route.nh_id {
            *self.users.entry(id).or_insert(0) += 1;
        }
        // IPv6 announces a multipath route whole each time a next hop joins
        // or leaves it: which announcement replaces which is not said.
        let multipath_v6 = route.multipath.is_some() && route.dst.addr().is_ipv6();
        if self.is_in_pool(&route) {
            if multipath_v6 {
                self.lose("an IPv6 multipath route changed in the pool");
            }
            let routes = self.in_pool.entry(route.dst).or_default();
            if !routes.contains(&route) {
                routes.push(route);
            }
        } else if self.is_link(&route) && !self.links.contains(&route) {
            self.links.push(route);
        }
    }

    fn remove(&mut self, route: &KernelRoute) {
        if self.is_marked(route) {
            return;
        }
        // While seeding, the full read may not have counted this route yet:
        // a count taken down now could end below the kernel's.
        if let Some(id) = route.nh_id
            && self.state != State::Seeding
            && let Some(count) = self.users.get_mut(&id)
        {
            *count = count.saturating_sub(1);
        }
        if let Some(routes) = self.in_pool.get_mut(&route.dst) {
            routes.retain(|held| held != route);
            if routes.is_empty() {
                self.in_pool.remove(&route.dst);
            }
        }
        self.links.retain(|held| held != route);
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use netlink_packet_route::route::{RouteScope, RouteType};

    use super::*;

    const TABLE: u32 = 254;
    const OURS: u8 = 203;

    fn others() -> Others {
        let mut others = Others::new(
            &NetlinkRouter {
                name: "r".to_owned(),
                netns: None,
                table: TABLE,
                ownership: Ownership {
                    pool: vec!["11.0.0.0/8".parse().expect("cidr")],
                    netlink_protocol: OURS,
                    route_tag: 1,
                    bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
                },
            },
            0,
        );
        others.start_seed();
        others.seeded();
        others
    }

    fn route(dst: &str, protocol: u8, gateway: Option<&str>) -> KernelRoute {
        KernelRoute {
            dst: dst.parse().expect("cidr"),
            table: TABLE,
            protocol,
            kind: RouteType::Unicast,
            scope: if gateway.is_some() {
                RouteScope::Universe
            } else {
                RouteScope::Link
            },
            tos: 0,
            priority: 0,
            gateway: gateway.map(|text| text.parse::<IpAddr>().expect("ip")),
            oif: Some(2),
            nh_id: None,
            multipath: None,
        }
    }

    /// The payload of a route announcement, as the kernel builds it.
    fn announced(route: &KernelRoute) -> Vec<u8> {
        let v4 = route.dst.addr().is_ipv4();
        let mut payload = vec![
            if v4 { 2 } else { 10 },
            route.dst.prefix_len(),
            0,
            route.tos,
            254,
            route.protocol,
            u8::from(route.scope),
            u8::from(route.kind),
        ];
        payload.extend_from_slice(&0u32.to_ne_bytes());
        let mut attribute = |kind: u16, value: &[u8]| {
            payload
                .extend_from_slice(&u16::try_from(4 + value.len()).expect("short").to_ne_bytes());
            payload.extend_from_slice(&kind.to_ne_bytes());
            payload.extend_from_slice(value);
        };
        attribute(15, &route.table.to_ne_bytes());
        let octets = |address: IpAddr| match address {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        attribute(1, &octets(route.dst.addr()));
        if let Some(gateway) = route.gateway {
            attribute(5, &octets(gateway));
        }
        if let Some(oif) = route.oif {
            attribute(4, &oif.to_ne_bytes());
        }
        if let Some(id) = route.nh_id {
            attribute(30, &id.to_ne_bytes());
        }
        payload
    }

    fn hear(others: &mut Others, kind: u16, flags: u16, route: &KernelRoute) {
        let payload = announced(route);
        others.hear(Message {
            kind,
            flags,
            payload: &payload,
        });
    }

    #[test]
    fn an_announced_route_parses_back_to_itself() {
        let mut with_nexthop = route("11.1.0.0/24", 4, None);
        with_nexthop.nh_id = Some(9);
        for original in [route("11.1.0.0/24", 4, Some("10.0.0.1")), with_nexthop] {
            assert_eq!(parse_route(&announced(&original)), Some(original));
        }
    }

    #[test]
    fn a_foreign_route_added_and_deleted_in_the_pool_comes_and_goes() {
        let mut others = others();
        let theirs = route("11.1.0.0/24", 4, Some("10.0.0.9"));
        hear(&mut others, RTM_NEWROUTE, 0, &theirs);
        assert!(others.holds(theirs.dst));
        hear(&mut others, RTM_DELROUTE, 0, &theirs);
        assert!(!others.holds(theirs.dst));
        assert!(!others.needs_seed());
    }

    #[test]
    fn routes_outside_the_pool_or_of_ours_are_not_foreign_in_the_pool() {
        let mut others = others();
        hear(
            &mut others,
            RTM_NEWROUTE,
            0,
            &route("12.1.0.0/24", 4, Some("10.0.0.9")),
        );
        hear(
            &mut others,
            RTM_NEWROUTE,
            0,
            &route("11.1.0.0/24", OURS, Some("10.0.0.9")),
        );
        assert_eq!(others.in_pool().count(), 0);
    }

    #[test]
    fn a_replace_where_a_foreign_route_is_held_loses_the_picture() {
        let mut others = others();
        let theirs = route("11.1.0.0/24", 4, Some("10.0.0.9"));
        hear(&mut others, RTM_NEWROUTE, 0, &theirs);
        hear(
            &mut others,
            RTM_NEWROUTE,
            NLM_F_REPLACE,
            &route("11.1.0.0/24", 11, Some("10.0.0.8")),
        );
        assert!(others.needs_seed());
    }

    #[test]
    fn a_replace_where_nothing_of_others_is_held_keeps_the_picture() {
        let mut others = others();
        hear(
            &mut others,
            RTM_NEWROUTE,
            NLM_F_REPLACE,
            &route("11.1.0.0/24", 11, Some("10.0.0.8")),
        );
        assert!(!others.needs_seed());
        assert!(others.holds("11.1.0.0/24".parse().expect("cidr")));
    }

    #[test]
    fn link_changes_lose_the_picture() {
        for kind in [RTM_NEWLINK, RTM_DELLINK, RTM_DELADDR] {
            let mut others = others();
            others.hear(Message {
                kind,
                flags: 0,
                payload: &[],
            });
            assert!(others.needs_seed(), "{kind}");
        }
    }

    #[test]
    fn link_routes_of_main_are_kept_for_the_connected_networks() {
        let mut others = others();
        let link = route("10.200.0.0/16", 2, None);
        hear(&mut others, RTM_NEWROUTE, 0, &link);
        assert_eq!(others.links().collect::<Vec<_>>(), vec![&link]);
        hear(&mut others, RTM_DELROUTE, 0, &link);
        assert_eq!(others.links().count(), 0);
    }

    #[test]
    fn nexthop_users_are_counted_and_never_taken_below_zero() {
        let mut others = others();
        let mut theirs = route("12.1.0.0/24", 4, None);
        theirs.nh_id = Some(7);
        hear(&mut others, RTM_NEWROUTE, 0, &theirs);
        assert_eq!(others.users_of(7), 1);
        hear(&mut others, RTM_DELROUTE, 0, &theirs);
        hear(&mut others, RTM_DELROUTE, 0, &theirs);
        assert_eq!(others.users_of(7), 0);
    }

    #[test]
    fn a_router_with_few_routes_of_others_is_read_in_full_each_time() {
        let mut others = others();
        others.hear_from = 2;
        others.start_seed();
        others.dumped(route("12.1.0.0/24", 4, Some("10.0.0.9")));
        others.seeded();
        assert!(others.needs_seed() && others.settled() && !others.heard());
        others.start_seed();
        others.dumped(route("12.1.0.0/24", 4, Some("10.0.0.9")));
        others.dumped(route("12.2.0.0/24", 4, Some("10.0.0.9")));
        others.seeded();
        assert!(!others.needs_seed() && others.settled() && others.heard());
    }

    #[test]
    fn routes_using_a_nexthop_object_that_is_gone_go_with_it() {
        let mut others = others();
        let mut theirs = route("11.1.0.0/24", 4, None);
        theirs.nh_id = Some(7);
        let mut kept = route("11.2.0.0/24", 4, None);
        kept.nh_id = Some(8);
        hear(&mut others, RTM_NEWROUTE, 0, &theirs);
        hear(&mut others, RTM_NEWROUTE, 0, &kept);
        let only_8 = HashMap::from([(
            8,
            KernelNexthop {
                protocol: 4,
                gateway: None,
                oif: Some(2),
                group_members: Vec::new(),
                plain: true,
            },
        )]);
        others.keep_to(&only_8);
        assert!(!others.holds(theirs.dst));
        assert!(others.holds(kept.dst));
        assert_eq!((others.users_of(7), others.users_of(8)), (0, 1));
    }

    #[test]
    fn a_deletion_heard_while_seeding_leaves_the_count_high() {
        let mut others = others();
        others.start_seed();
        let mut theirs = route("12.1.0.0/24", 4, None);
        theirs.nh_id = Some(7);
        others.dumped(theirs.clone());
        hear(&mut others, RTM_DELROUTE, 0, &theirs);
        assert_eq!(others.users_of(7), 1);
    }
}
