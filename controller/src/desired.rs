//! Which routes each router should hold: for every node N with subnet S and
//! next hop H, every router that serves N holds `S via H`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use nativeroute_router_drivers::Route;

use crate::config::Config;
use crate::inventory::annotations::NodeSettings;
use crate::inventory::{NodeRecord, Standing};
use crate::ipam::Ipam;

/// One desired route and the node it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredRoute {
    pub via: IpAddr,
    pub node: String,
}

/// What one router should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouterDesired {
    /// False until the node source delivered its first complete list: until
    /// then nothing may be removed from the router.
    pub complete: bool,
    pub routes: BTreeMap<IpNet, DesiredRoute>,
    /// Destinations whose routes stay as they are, whatever they are: the
    /// subnets of frozen nodes.
    pub keep: BTreeSet<IpNet>,
    pub live: Arc<LiveNodes>,
}

impl RouterDesired {
    /// Whether both ask the router for the same routes.
    pub fn holds_the_same_as(&self, other: &RouterDesired) -> bool {
        self.complete == other.complete && self.routes == other.routes && self.keep == other.keep
    }
}

/// The nodes that exist right now, to tell a removal for a deleted node
/// from a removal while the node still exists (the mass-removal guard).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveNodes {
    subnets: HashMap<IpNet, String>,
    addresses: HashMap<IpAddr, String>,
}

impl LiveNodes {
    /// The nodes behind a set of desired routes (for tests and `plan`).
    pub fn from_routes(routes: &BTreeMap<IpNet, DesiredRoute>) -> Self {
        LiveNodes {
            subnets: routes
                .iter()
                .map(|(dst, r)| (*dst, r.node.clone()))
                .collect(),
            addresses: routes.values().map(|r| (r.via, r.node.clone())).collect(),
        }
    }

    /// The existing node a route belongs to, by its subnet or its next hop.
    pub fn node_of(&self, route: &Route) -> Option<&str> {
        self.subnets
            .get(&route.dst)
            .or_else(|| self.addresses.get(&route.via))
            .map(String::as_str)
    }

    /// The existing node whose subnet is, or contains, `dst`: a foreign
    /// route to it takes (some of) that node's traffic.
    pub fn node_hit_by(&self, dst: &IpNet) -> Option<&str> {
        (0..=dst.prefix_len())
            .rev()
            .filter_map(|len| IpNet::new(dst.network(), len).ok())
            .find_map(|net| self.subnets.get(&net.trunc()))
            .map(String::as_str)
    }
}

/// A node subnet that no router will carry, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unrouted {
    pub node: String,
    pub subnet: IpNet,
    pub why: String,
}

/// A node with its parsed settings.
pub struct NodeView<'a> {
    pub record: &'a NodeRecord,
    pub settings: &'a NodeSettings,
}

/// Computes every router's desired routes.
pub fn compute(
    config: &Config,
    nodes: &[NodeView<'_>],
    ipam: &Ipam,
    complete: bool,
) -> (BTreeMap<String, RouterDesired>, Vec<Unrouted>) {
    let mut live = LiveNodes::default();
    for node in nodes.iter().filter(|node| node.record.is_listed()) {
        let name = &node.record.name;
        for subnet in ipam.subnets_of(name) {
            live.subnets.insert(*subnet, name.clone());
        }
        for address in next_hops(node) {
            live.addresses.insert(address, name.clone());
        }
    }
    let live = Arc::new(live);
    let mut desired: BTreeMap<String, RouterDesired> = config
        .routers
        .iter()
        .map(|router| {
            let empty = RouterDesired {
                complete,
                routes: BTreeMap::new(),
                keep: BTreeSet::new(),
                live: live.clone(),
            };
            (router.name.to_string(), empty)
        })
        .collect();
    let mut unrouted = Vec::new();
    for node in nodes
        .iter()
        .filter(|node| node.record.standing == Standing::Frozen)
    {
        for router in desired.values_mut() {
            router.keep.extend(ipam.subnets_of(&node.record.name));
        }
    }
    for node in nodes
        .iter()
        .filter(|node| !node.settings.exclude && node.record.standing == Standing::Listed)
    {
        let name = &node.record.name;
        for subnet in ipam.subnets_of(name) {
            let Some(via) =
                next_hops(node).find(|hop| hop.is_ipv4() == matches!(subnet, IpNet::V4(_)))
            else {
                unrouted.push(Unrouted {
                    node: name.clone(),
                    subnet: *subnet,
                    why: format!(
                        "the node has no {} address to route {subnet} to",
                        family_word(subnet)
                    ),
                });
                continue;
            };
            let mut served = false;
            for router in &config.routers {
                let chosen = match &node.settings.routers {
                    Some(names) => names.iter().any(|n| n == router.name.as_str()),
                    None => router.serves_next_hop(via),
                };
                if !chosen {
                    continue;
                }
                if let Some(routes) = desired.get_mut(router.name.as_str()) {
                    routes.routes.insert(
                        *subnet,
                        DesiredRoute {
                            via,
                            node: name.clone(),
                        },
                    );
                    served = true;
                }
            }
            if !served {
                unrouted.push(Unrouted {
                    node: name.clone(),
                    subnet: *subnet,
                    why: format!("no router serves next hop {via} (check the routers' nodeNetworks or the node's nativeroute.io/routers)"),
                });
            }
        }
    }
    (desired, unrouted)
}

/// The node's next hops: the override annotation where it gives one for a
/// family, the node's own address otherwise.
fn next_hops<'a>(node: &'a NodeView<'a>) -> impl Iterator<Item = IpAddr> + 'a {
    let overrides = &node.settings.next_hops;
    let defaults = node
        .record
        .addresses
        .iter()
        .filter(move |address| !overrides.iter().any(|o| o.is_ipv4() == address.is_ipv4()));
    overrides.iter().chain(defaults).copied()
}

fn family_word(subnet: &IpNet) -> &'static str {
    match subnet {
        IpNet::V4(_) => "IPv4",
        IpNet::V6(_) => "IPv6",
    }
}
