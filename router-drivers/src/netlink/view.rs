//! The driver's picture of the kernel between two reads of it.
//!
//! A full read of a router with 10,000 nodes costs tens of milliseconds, so
//! it is taken by `list` (each resync) and whenever the picture is lost,
//! and otherwise kept current from the kernel's answers to our own changes.
//! Changes made by others in between show up as refusals (a nexthop deleted
//! by hand, a foreign route in the way): the controller then lists again,
//! which rebuilds the picture.

use std::collections::{HashMap, HashSet};

use ipnet::IpNet;

use super::NetlinkRouter;
use super::dump::{ConnectedNetworks, Snapshot};
use super::objects::Objects;

pub(super) struct View {
    /// Our routes in the configured table inside the pool: destination →
    /// the nexthop object they use (`None` for a plain gateway route).
    pub owned: HashMap<IpNet, Option<u32>>,
    /// Destinations in the configured table inside the pool held by others.
    pub foreign: HashSet<IpNet>,
    pub connected: ConnectedNetworks,
    pub objects: Objects,
    /// How many routes (any table, any protocol) and groups use each nexthop.
    pub users: HashMap<u32, i64>,
}

impl View {
    pub(super) fn new(snapshot: &Snapshot, router: &NetlinkRouter) -> Self {
        let mut owned = HashMap::new();
        let mut foreign = HashSet::new();
        let in_pool = snapshot
            .routes
            .iter()
            .filter(|route| route.table == router.table && router.ownership.in_pool(&route.dst));
        for route in in_pool {
            if route.protocol == router.ownership.netlink_protocol {
                owned.entry(route.dst).or_insert(route.nh_id);
            } else {
                foreign.insert(route.dst);
            }
        }
        Self {
            owned,
            foreign,
            connected: snapshot.connected_networks(router.table),
            objects: Objects::new(snapshot, router.ownership.netlink_protocol),
            users: snapshot.nexthop_users(),
        }
    }

    /// Counts one more (`delta` 1) or one less (-1) user of nexthop `id`.
    pub(super) fn count_user(&mut self, id: Option<u32>, delta: i64) {
        if let Some(id) = id {
            *self.users.entry(id).or_insert(0) += delta;
        }
    }

    /// Our nexthop objects that nothing uses, by this picture.
    pub(super) fn unused_nexthops(&self) -> Vec<u32> {
        let mut unused: Vec<u32> = self
            .objects
            .ours()
            .filter(|id| self.users.get(id).copied().unwrap_or(0) <= 0)
            .collect();
        unused.sort_unstable();
        unused
    }
}
