//! The driver's picture of the kernel between two reads of it.
//!
//! A read of our routes costs the kernel a walk of our table (tens of
//! milliseconds with a full Internet table in it), so it is taken by
//! `list` (each resync), before a batch that replaces routes, by `tidy`,
//! and whenever the picture is lost; otherwise our routes are kept current
//! from the kernel's answers to our own changes, and everyone else's, on
//! a router with many, from the kernel's announcements ([`Others`]).
//! Changes made by others to our routes in between show up as refusals (a
//! nexthop deleted by hand): the controller then lists again, which
//! rebuilds the picture.

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::NetlinkRouter;
use super::dump::{ConnectedNetworks, Reading};
use super::objects::Objects;
use super::others::Others;

/// One route of ours, as the kernel holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OwnedRoute {
    /// The nexthop object it uses; `None` for a plain gateway route.
    pub nh_id: Option<u32>,
    /// Where it sends traffic; `None` when that is not one gateway (a
    /// group, a blackhole).
    pub via: Option<IpAddr>,
}

pub(super) struct View {
    /// Our routes in the configured table inside the pool, by destination,
    /// in the kernel's order: normally one, but nothing stops a second one
    /// through another next hop (appended by hand, or left by a replace
    /// elsewhere), and a removal must find the one it names.
    owned: HashMap<IpNet, Vec<OwnedRoute>>,
    pub connected: ConnectedNetworks,
    pub objects: Objects,
    /// How many routes in our table with our protocol, and groups, use
    /// each nexthop; the routes of others are counted by `others`.
    pub users: HashMap<u32, i64>,
    /// Our nexthops that may have no user of ours: those counted down to
    /// none, and those created and not yet counted. The one place unused
    /// ones can be, so housekeeping after each sync need not look at all
    /// of ours (tens of thousands of them on a large cluster).
    maybe_unused: HashSet<u32>,
    /// Everyone else's routes: the foreign ones inside the pool among them.
    pub others: Others,
}

impl View {
    pub(super) fn new(reading: Reading, router: &NetlinkRouter) -> Self {
        let mut owned = HashMap::new();
        let in_pool = reading
            .marked
            .iter()
            .filter(|route| router.ownership.in_pool(&route.dst));
        for route in in_pool {
            let ours = OwnedRoute {
                nh_id: route.nh_id,
                via: reading.via(route),
            };
            owned.entry(route.dst).or_insert_with(Vec::new).push(ours);
        }
        let connected = reading.connected_networks(router.table);
        let objects = Objects::new(&reading.nexthops, router.ownership.netlink_protocol);
        let users: HashMap<u32, i64> = reading.nexthop_users();
        let maybe_unused = objects
            .ours()
            .filter(|id| users.get(id).copied().unwrap_or(0) <= 0)
            .collect();
        Self {
            owned,
            connected,
            objects,
            users,
            maybe_unused,
            others: reading.others,
        }
    }

    /// Takes the picture of others out, for a new read to bring up to date.
    pub(super) fn take_others(&mut self, router: &NetlinkRouter) -> Others {
        let hear_from = self.others.hear_from();
        std::mem::replace(&mut self.others, Others::new(router, hear_from))
    }

    /// Our first route to `dst`: the one NLM_F_REPLACE would take.
    pub(super) fn first_owned(&self, dst: IpNet) -> Option<OwnedRoute> {
        self.owned
            .get(&dst)
            .and_then(|routes| routes.first())
            .copied()
    }

    /// Our route to `dst` through `via`: the unspecified address names one
    /// without a single gateway, as `list` shows it.
    pub(super) fn owned_via(&self, dst: IpNet, via: IpAddr) -> Option<OwnedRoute> {
        let wanted = (!via.is_unspecified()).then_some(via);
        self.owned
            .get(&dst)?
            .iter()
            .find(|route| route.via == wanted)
            .copied()
    }

    /// Our route `route` to `dst` is in the kernel, in place of `replaced`.
    pub(super) fn installed(
        &mut self,
        dst: IpNet,
        replaced: Option<OwnedRoute>,
        route: OwnedRoute,
    ) {
        let routes = self.owned.entry(dst).or_default();
        match replaced.and_then(|old| routes.iter().position(|r| *r == old)) {
            Some(at) => routes[at] = route,
            None => routes.push(route),
        }
        self.count_user(route.nh_id, 1);
        self.count_user(replaced.and_then(|old| old.nh_id), -1);
    }

    /// Our route `route` to `dst` is gone from the kernel.
    pub(super) fn withdrawn(&mut self, dst: IpNet, route: OwnedRoute) {
        if let Some(routes) = self.owned.get_mut(&dst) {
            routes.retain(|r| *r != route);
            if routes.is_empty() {
                self.owned.remove(&dst);
            }
        }
        self.count_user(route.nh_id, -1);
    }

    /// Counts one more (`delta` 1) or one less (-1) user of nexthop `id`.
    pub(super) fn count_user(&mut self, id: Option<u32>, delta: i64) {
        if let Some(id) = id {
            let users = self.users.entry(id).or_insert(0);
            *users += delta;
            if *users <= 0 {
                self.maybe_unused.insert(id);
            } else {
                self.maybe_unused.remove(&id);
            }
        }
    }

    /// Nexthop objects were created: until routes use them, they are not.
    pub(super) fn created_nexthops(&mut self) {
        for id in self.objects.take_created() {
            if self.users.get(&id).copied().unwrap_or(0) <= 0 {
                self.maybe_unused.insert(id);
            }
        }
    }

    /// Our nexthop objects that nothing uses, by this picture.
    pub(super) fn unused_nexthops(&self) -> Vec<u32> {
        let mut unused: Vec<u32> = self
            .maybe_unused
            .iter()
            .copied()
            .filter(|id| self.objects.is_ours(*id))
            .filter(|id| self.users.get(id).copied().unwrap_or(0) <= 0)
            .filter(|id| self.others.users_of(*id) == 0)
            .collect();
        unused.sort_unstable();
        unused
    }
}
