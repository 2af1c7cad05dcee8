//! Which routes each router should hold: for every node N with subnet S and
//! next hop H, every router that serves N holds `S via H`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use imbl::{HashMap, OrdMap, OrdSet};
use ipnet::IpNet;
use nativeroute_router_drivers::Route;

use crate::config::{Config, RouterConfig};
use crate::inventory::annotations::{NEXT_HOP, NodeSettings};
use crate::inventory::{NodeRecord, Standing};
use crate::ipam::Ipam;

/// One desired route and the node it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredRoute {
    pub via: IpAddr,
    pub node: String,
    /// Set when `via` comes from the node's next-hop override: the node's
    /// own address, which a router uses instead if the override turns out
    /// to be one of the router's own addresses (known only to its driver).
    pub fallback: Option<IpAddr>,
}

impl DesiredRoute {
    pub fn new(via: IpAddr, node: &str) -> Self {
        DesiredRoute {
            via,
            node: node.to_owned(),
            fallback: None,
        }
    }
}

/// What one router should hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouterDesired {
    /// False until the node source delivered its first complete list: until
    /// then nothing may be removed from the router.
    pub complete: bool,
    /// A persistent map: copies share their structure, and comparing two
    /// copies skips what they share.
    pub routes: OrdMap<IpNet, DesiredRoute>,
    /// Destinations whose routes stay as they are, whatever they are: the
    /// subnets of frozen nodes.
    pub keep: OrdSet<IpNet>,
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
    /// Every node with that address (two nodes may claim one by mistake),
    /// sorted by name.
    addresses: HashMap<IpAddr, Vec<String>>,
}

impl LiveNodes {
    /// The nodes behind a set of desired routes (for tests and `plan`).
    pub fn from_routes(routes: &OrdMap<IpNet, DesiredRoute>) -> Self {
        let mut addresses: HashMap<IpAddr, Vec<String>> = HashMap::new();
        for route in routes.values() {
            let holders = addresses.entry(route.via).or_default();
            holders.push(route.node.clone());
            holders.sort();
            holders.dedup();
        }
        LiveNodes {
            subnets: routes
                .iter()
                .map(|(dst, r)| (*dst, r.node.clone()))
                .collect(),
            addresses,
        }
    }

    /// Every entry, sorted: for comparing two in tests.
    #[cfg(test)]
    pub fn sorted(&self) -> String {
        let mut subnets: Vec<_> = self
            .subnets
            .iter()
            .map(|(subnet, node)| (*subnet, node.clone()))
            .collect();
        subnets.sort();
        let mut addresses: Vec<_> = self
            .addresses
            .iter()
            .map(|(address, nodes)| (*address, nodes.clone()))
            .collect();
        addresses.sort();
        format!("{subnets:?} {addresses:?}")
    }

    /// Whether no node is listed at all.
    pub fn is_empty(&self) -> bool {
        self.subnets.is_empty() && self.addresses.is_empty()
    }

    /// The existing node a route belongs to, by its subnet or its next hop.
    pub fn node_of(&self, route: &Route) -> Option<&str> {
        self.subnets
            .get(&route.dst)
            .or_else(|| {
                self.addresses
                    .get(&route.via)
                    .and_then(|holders| holders.first())
            })
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

/// A next-hop override that cannot be used, and what the node is routed
/// via instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IgnoredOverride {
    pub node: String,
    pub value: IpAddr,
    pub why: String,
    /// `None` when the node has no usable next hop of that family at all.
    pub instead: Option<IpAddr>,
}

impl std::fmt::Display for IgnoredOverride {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "annotation {NEXT_HOP}={} ignored: {}",
            self.value, self.why
        )?;
        match self.instead {
            Some(via) => write!(f, "; the node stays routed via {via}"),
            None => Ok(()),
        }
    }
}

/// A node with its parsed settings.
pub struct NodeView<'a> {
    pub record: &'a NodeRecord,
    pub settings: &'a NodeSettings,
    /// The node's last next-hop override that was usable (one per family at
    /// most): where it stays routed while a newer override is unusable.
    pub last_good_overrides: &'a [IpAddr],
}

/// What one node adds to the routers' desired routes, and what could not
/// be honoured for it. A node's share depends on that node alone (its
/// record, settings, subnets and last good overrides) and the config, so a
/// node that did not change keeps its share.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeShare {
    /// Its routes, with the routers that carry each (by their place in
    /// the config's list: 20,000 nodes need no 20,000 copies of a name).
    pub routes: Vec<(IpNet, DesiredRoute, Box<[u16]>)>,
    /// Its subnets that stay as they are on every router (a frozen node).
    pub keep: Vec<IpNet>,
    /// Its subnets and next hops, while it is listed.
    pub live_subnets: Vec<IpNet>,
    pub live_addresses: Vec<IpAddr>,
    pub unrouted: Vec<Unrouted>,
    pub ignored_overrides: Vec<IgnoredOverride>,
    /// The overrides in use, to remember as the last good ones.
    pub overrides_in_use: Vec<IpAddr>,
}

impl NodeShare {
    /// Whether some router carries a route of the node.
    pub fn is_routed(&self) -> bool {
        self.routes
            .iter()
            .any(|(_, _, routers)| !routers.is_empty())
    }
}

/// Works out one node's share.
pub fn share_of(config: &Config, node: &NodeView<'_>, ipam: &Ipam) -> NodeShare {
    let mut share = NodeShare::default();
    let name = &node.record.name;
    if node.record.standing == Standing::Frozen {
        share.keep = ipam.subnets_of(name).to_vec();
    }
    if !node.settings.exclude && node.record.standing == Standing::Listed {
        add_routes(config, node, ipam, &mut share);
    }
    if node.record.is_listed() {
        share.live_subnets = ipam.subnets_of(name).to_vec();
        share.live_addresses = node
            .record
            .addresses
            .iter()
            .chain(&node.settings.next_hops)
            .chain(&share.overrides_in_use)
            .copied()
            .collect();
        share.live_addresses.sort();
        share.live_addresses.dedup();
    }
    // Kept for as long as the node exists, tens of thousands of them: no
    // spare capacity.
    share.routes.shrink_to_fit();
    share.live_addresses.shrink_to_fit();
    share.overrides_in_use.shrink_to_fit();
    share
}

/// The node's routes, with the routers that carry them, and what could
/// not be honoured.
fn add_routes(config: &Config, node: &NodeView<'_>, ipam: &Ipam, share: &mut NodeShare) {
    let name = &node.record.name;
    for subnet in ipam.subnets_of(name) {
        let hop = choose_next_hop(config, node, subnet);
        if let Some(ignored) = hop.ignored {
            share.ignored_overrides.push(ignored);
        }
        let Some(via) = hop.via else {
            share.unrouted.push(Unrouted {
                node: name.clone(),
                subnet: *subnet,
                why: format!(
                    "the node has no {} address to route {subnet} to",
                    family_word(subnet)
                ),
            });
            continue;
        };
        if hop.from_override {
            share.overrides_in_use.push(via);
        }
        let routers: Box<[u16]> = serving_routers(config, node.settings, via)
            .filter_map(|(index, _)| u16::try_from(index).ok())
            .collect();
        if routers.is_empty() {
            share.unrouted.push(Unrouted {
                node: name.clone(),
                subnet: *subnet,
                why: format!("no router serves next hop {via} (check the routers' nodeNetworks or the node's nativeroute.io/routers)"),
            });
        }
        let route = DesiredRoute {
            fallback: hop.fallback,
            ..DesiredRoute::new(via, name)
        };
        share.routes.push((*subnet, route, routers));
    }
}

/// Every router's desired routes, built node by node: adding or taking
/// away one node's share costs O(log n) and a copy of the whole costs
/// O(1) (persistent maps), so a change of one node among 20,000 neither
/// rebuilds nor copies the rest.
#[derive(Clone, Debug)]
pub struct DesiredState {
    /// In the config's order, which routes refer to by place.
    routers: Vec<(String, RouterDesired)>,
    /// Whose each kept subnet is: a share worked out before its node lost
    /// the subnet must not take it from the node that holds it now.
    keepers: HashMap<IpNet, String>,
    live: LiveNodes,
}

impl DesiredState {
    /// Nothing desired yet on any of `config`'s routers.
    pub fn new(config: &Config, complete: bool) -> Self {
        let routers = config
            .routers
            .iter()
            .map(|router| {
                let empty = RouterDesired {
                    complete,
                    ..RouterDesired::default()
                };
                (router.name.to_string(), empty)
            })
            .collect();
        DesiredState {
            routers,
            keepers: HashMap::new(),
            live: LiveNodes::default(),
        }
    }

    /// Whether the node source's list was complete: until it is, nothing
    /// may be removed from a router.
    pub fn set_complete(&mut self, complete: bool) {
        for (_, router) in &mut self.routers {
            router.complete = complete;
        }
    }

    pub fn add(&mut self, node: &str, share: &NodeShare) {
        for (subnet, route, routers) in &share.routes {
            for index in routers {
                if let Some((_, router)) = self.routers.get_mut(usize::from(*index)) {
                    router.routes.insert(*subnet, route.clone());
                }
            }
        }
        for subnet in &share.keep {
            self.keepers.insert(*subnet, node.to_owned());
        }
        for (_, router) in &mut self.routers {
            router.keep.extend(share.keep.iter().copied());
        }
        for subnet in &share.live_subnets {
            self.live.subnets.insert(*subnet, node.to_owned());
        }
        for address in &share.live_addresses {
            let mut holders = self
                .live
                .addresses
                .get(address)
                .cloned()
                .unwrap_or_default();
            if let Err(at) = holders.binary_search_by(|held| held.as_str().cmp(node)) {
                holders.insert(at, node.to_owned());
            }
            self.live.addresses.insert(*address, holders);
        }
    }

    /// Takes away what [`DesiredState::add`] added for the same share.
    pub fn remove(&mut self, node: &str, share: &NodeShare) {
        for (subnet, _, routers) in &share.routes {
            for index in routers {
                if let Some((_, router)) = self.routers.get_mut(usize::from(*index))
                    && router
                        .routes
                        .get(subnet)
                        .is_some_and(|route| route.node == node)
                {
                    router.routes.remove(subnet);
                }
            }
        }
        for subnet in &share.keep {
            if self.keepers.get(subnet).is_none_or(|keeper| keeper != node) {
                continue;
            }
            self.keepers.remove(subnet);
            for (_, router) in &mut self.routers {
                router.keep.remove(subnet);
            }
        }
        for subnet in &share.live_subnets {
            if self
                .live
                .subnets
                .get(subnet)
                .is_some_and(|holder| holder == node)
            {
                self.live.subnets.remove(subnet);
            }
        }
        for address in &share.live_addresses {
            let Some(mut holders) = self.live.addresses.get(address).cloned() else {
                continue;
            };
            holders.retain(|held| held != node);
            if holders.is_empty() {
                self.live.addresses.remove(address);
            } else {
                self.live.addresses.insert(*address, holders);
            }
        }
    }

    /// What each router should hold now (cheap: the maps are shared).
    pub fn per_router(&self) -> BTreeMap<String, RouterDesired> {
        let live = Arc::new(self.live.clone());
        self.routers
            .iter()
            .map(|(name, router)| {
                let desired = RouterDesired {
                    live: live.clone(),
                    ..router.clone()
                };
                (name.clone(), desired)
            })
            .collect()
    }
}

/// The routers that carry a node's routes via `via`, with their places in
/// the config: those its routers annotation names, or those whose
/// nodeNetworks contain `via`.
fn serving_routers<'a>(
    config: &'a Config,
    settings: &'a NodeSettings,
    via: IpAddr,
) -> impl Iterator<Item = (usize, &'a RouterConfig)> + 'a {
    config
        .routers
        .iter()
        .enumerate()
        .filter(move |(_, router)| match &settings.routers {
            Some(names) => names.iter().any(|n| n == router.name.as_str()),
            None => router.serves_next_hop(via),
        })
}

/// The next hop chosen for one subnet of a node.
struct NextHop {
    via: Option<IpAddr>,
    /// Whether `via` is an override (this one or the last good one).
    from_override: bool,
    /// The node's own address, when `via` is an override.
    fallback: Option<IpAddr>,
    ignored: Option<IgnoredOverride>,
}

/// The node's override for the subnet's family if it is usable, else its
/// last good override, else its own address. An unusable override never
/// takes the node's route away: it is reported and routing stays as it was.
fn choose_next_hop(config: &Config, node: &NodeView<'_>, subnet: &IpNet) -> NextHop {
    let same_family = |hop: &&IpAddr| hop.is_ipv4() == matches!(subnet, IpNet::V4(_));
    let own = node.record.addresses.iter().find(same_family).copied();
    let Some(wanted) = node.settings.next_hops.iter().find(same_family).copied() else {
        return NextHop {
            via: own,
            from_override: false,
            fallback: None,
            ignored: None,
        };
    };
    let Some(why) = unusable_override(config, node.settings, wanted) else {
        return NextHop {
            via: Some(wanted),
            from_override: true,
            fallback: own.filter(|own| *own != wanted),
            ignored: None,
        };
    };
    let last_good = node
        .last_good_overrides
        .iter()
        .find(same_family)
        .copied()
        .filter(|hop| unusable_override(config, node.settings, *hop).is_none());
    let via = last_good.or(own);
    NextHop {
        via,
        from_override: last_good.is_some(),
        fallback: last_good.and(own).filter(|own| Some(*own) != last_good),
        ignored: Some(IgnoredOverride {
            node: node.record.name.clone(),
            value: wanted,
            why,
            instead: via,
        }),
    }
}

/// Why a next-hop override cannot be used, if it cannot: one inside the
/// pool is a container behind some node, and one no router serves would
/// leave the node unrouted.
fn unusable_override(config: &Config, settings: &NodeSettings, hop: IpAddr) -> Option<String> {
    if let Some(cidr) = config.pool.cidrs.iter().find(|cidr| cidr.contains(&hop)) {
        return Some(format!(
            "{hop} lies inside the pool ({cidr}): it is a container address, not a node"
        ));
    }
    if serving_routers(config, settings, hop).next().is_none() {
        return Some(format!(
            "no router serves {hop} (no router's nodeNetworks contain it)"
        ));
    }
    None
}

fn family_word(subnet: &IpNet) -> &'static str {
    match subnet {
        IpNet::V4(_) => "IPv4",
        IpNet::V6(_) => "IPv6",
    }
}
