//! What each router should hold, computed from the API server's Nodes
//! alone, independently of the controller's code: every selected, not
//! excluded Node's subnet (spec.podCIDR, which the subnet annotation must
//! match) via its InternalIP, or via its next-hop override where a router
//! can use it. Also the cluster-wide rule that no two Nodes share a subnet.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;

use super::model::LABEL;
use super::observe::Router;

const POOL: &str = "11.11.0.0/16";
const NODE_NETWORKS: [&str; 2] = ["192.168.2.0/24", "192.168.3.0/24"];

/// Each router's own addresses, where an override would loop: every
/// interface address of the netlink router's namespace; the address the
/// SSH driver logs in to on FRR.
fn own_addresses(router: Router) -> &'static [Ipv4Addr] {
    const KERNEL: [Ipv4Addr; 2] = [Ipv4Addr::new(192, 168, 2, 2), Ipv4Addr::new(192, 168, 3, 2)];
    const FRR: [Ipv4Addr; 1] = [Ipv4Addr::new(192, 168, 3, 2)];
    match router {
        Router::Kernel => &KERNEL,
        Router::Frr => &FRR,
    }
}

pub type Routes = BTreeMap<Ipv4Net, Ipv4Addr>;

#[derive(Debug, Default)]
pub struct Desired {
    pub routes: BTreeMap<Router, Routes>,
    /// Routable Nodes without a subnet yet.
    pub unassigned: Vec<String>,
    /// Routable Nodes whose subnet annotation is not their spec.podCIDR.
    pub mismatched: Vec<String>,
    /// Subnets held by more than one Node (spec.podCIDR).
    pub duplicates: Vec<(Ipv4Net, Vec<String>)>,
}

pub fn desired(nodes: &[Node]) -> Desired {
    let mut out = Desired::default();
    for router in Router::ALL {
        out.routes.insert(router, Routes::new());
    }
    let mut holders: BTreeMap<Ipv4Net, Vec<String>> = BTreeMap::new();
    for node in nodes {
        let name = node.metadata.name.clone().unwrap_or_default();
        let pod_cidr: Option<Ipv4Net> = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .and_then(|c| c.parse().ok());
        if let Some(cidr) = pod_cidr {
            holders.entry(cidr).or_default().push(name.clone());
        }
        if !routable(node) {
            continue;
        }
        let Some(subnet) = pod_cidr else {
            out.unassigned.push(name);
            continue;
        };
        if annotation(node, "nativeroute.io/subnet").and_then(|a| a.trim().parse().ok())
            != Some(subnet)
        {
            out.mismatched.push(name.clone());
        }
        let Some(own) = internal_ip(node) else {
            continue;
        };
        let wanted = usable_override(annotation(node, "nativeroute.io/next-hop"));
        for (router, routes) in &mut out.routes {
            let via = match wanted {
                Some(hop) if !own_addresses(*router).contains(&hop) || hop == own => hop,
                _ => own,
            };
            routes.insert(subnet, via);
        }
    }
    out.duplicates = holders
        .into_iter()
        .filter(|(_, names)| names.len() > 1)
        .collect();
    out
}

/// Selected by the controller's selector and not excluded.
fn routable(node: &Node) -> bool {
    let selected = node
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL))
        .is_some_and(|v| v == "yes");
    let excluded = annotation(node, "nativeroute.io/exclude").is_some_and(|v| v.trim() == "true");
    selected && !excluded
}

fn annotation<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .find(|a| a.type_ == "InternalIP")?
        .address
        .parse()
        .ok()
}

/// The IPv4 next-hop override a router may use: the annotation must be
/// valid as a whole (addresses, at most one per family), and the IPv4 one
/// outside the pool and on a node network some router serves. The run
/// never writes a refused value over a usable one the controller still
/// remembers, so a refused value means the node's own address.
fn usable_override(value: Option<&str>) -> Option<Ipv4Addr> {
    let mut v4 = None;
    let mut v6 = false;
    for part in value?.split(',').map(str::trim) {
        let address: IpAddr = part.parse().ok()?;
        if address.is_unspecified() || address.is_multicast() || address.is_loopback() {
            return None;
        }
        match address {
            IpAddr::V4(a) if v4.is_none() => v4 = Some(a),
            IpAddr::V6(_) if !v6 => v6 = true,
            _ => return None,
        }
    }
    let hop = v4?;
    let inside = |net: &str| net.parse::<Ipv4Net>().is_ok_and(|n| n.contains(&hop));
    (!inside(POOL) && NODE_NETWORKS.iter().any(|n| inside(n))).then_some(hop)
}

/// How a router's routes differ from what it should hold.
#[derive(Clone, Debug, Default)]
pub struct Diff {
    pub missing: Vec<(Ipv4Net, Ipv4Addr)>,
    pub extra: Vec<(Ipv4Net, Ipv4Addr)>,
    /// (destination, wanted next hop, held next hop).
    pub wrong: Vec<(Ipv4Net, Ipv4Addr, Ipv4Addr)>,
}

impl Diff {
    pub fn between(want: &Routes, have: &Routes) -> Diff {
        let mut diff = Diff::default();
        for (dst, via) in want {
            match have.get(dst) {
                None => diff.missing.push((*dst, *via)),
                Some(held) if held != via => diff.wrong.push((*dst, *via, *held)),
                Some(_) => {}
            }
        }
        diff.extra = have
            .iter()
            .filter(|(dst, _)| !want.contains_key(dst))
            .map(|(dst, via)| (*dst, *via))
            .collect();
        diff
    }

    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.wrong.is_empty()
    }

    pub fn len(&self) -> usize {
        self.missing.len() + self.extra.len() + self.wrong.len()
    }
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return write!(f, "none");
        }
        let mut parts = Vec::new();
        let few = |items: Vec<String>| {
            let more = items.len().saturating_sub(5);
            let mut shown: Vec<String> = items.into_iter().take(5).collect();
            if more > 0 {
                shown.push(format!("… {more} more"));
            }
            shown.join(", ")
        };
        if !self.missing.is_empty() {
            parts.push(format!(
                "missing {}: {}",
                self.missing.len(),
                few(self
                    .missing
                    .iter()
                    .map(|(d, v)| format!("{d} via {v}"))
                    .collect())
            ));
        }
        if !self.extra.is_empty() {
            parts.push(format!(
                "extra {}: {}",
                self.extra.len(),
                few(self
                    .extra
                    .iter()
                    .map(|(d, v)| format!("{d} via {v}"))
                    .collect())
            ));
        }
        if !self.wrong.is_empty() {
            parts.push(format!(
                "wrong next hop {}: {}",
                self.wrong.len(),
                few(self
                    .wrong
                    .iter()
                    .map(|(d, w, h)| format!("{d} via {h} (want {w})"))
                    .collect())
            ));
        }
        write!(f, "{}", parts.join("; "))
    }
}
