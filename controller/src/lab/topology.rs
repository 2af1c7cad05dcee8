//! The seed-000 network in namespaces: one router, one switch, three nodes.
//!
//! ```text
//!   node1 eth0 192.168.2.1 ──── p3p1 192.168.2.2 ┐
//!                                                 rtr (ip_forward)
//!   sw2 br0 ── rtr ──────────── p3p2 192.168.3.2 ┘
//!        ├──── node2 ── eth0 192.168.3.3  (node2)
//!        └──── node3 ── eth0 192.168.3.4  (node3)
//! ```
//! Veths are created straight into their namespaces, so nothing appears in
//! the host's namespace and interface names never collide between labs.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Mutex, MutexGuard, PoisonError};

use anyhow::{Context, Result, bail};
use ipnet::{IpNet, Ipv4Net};

use super::LabRouter;
use super::netns::{self, Cmd};
use super::spec::LabSpec;
use super::teardown;

/// The container network of the seed.
pub const POOL: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(11, 11, 0, 0), 16);
/// node1's segment: a cable straight from the router's p3p1.
pub const DIRECT_NETWORK: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 2, 0), 24);
/// node2's and node3's segment: the router's p3p2 through switch sw2.
pub const SWITCHED_NETWORK: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 3, 0), 24);

const ROUTER_ROLE: &str = "rtr";
const SWITCH_ROLE: &str = "sw2";
const ROUTER_DIRECT_PORT: &str = "p3p1";
const ROUTER_SWITCH_PORT: &str = "p3p2";
const ROUTER_DIRECT_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 2, 2);
const ROUTER_SWITCH_ADDRESS: Ipv4Addr = Ipv4Addr::new(192, 168, 3, 2);
const SWITCH_BRIDGE: &str = "br0";
/// The switch port facing the router.
const SWITCH_UPLINK_PORT: &str = "rtr";
/// A node's interface towards the router (and a container's towards lbr0).
pub(crate) const UPLINK: &str = "eth0";

#[derive(Clone, Copy)]
enum Segment {
    Direct,
    Switched,
}

const NODE_PLAN: [(&str, Ipv4Addr, Segment); 3] = [
    ("node1", Ipv4Addr::new(192, 168, 2, 1), Segment::Direct),
    ("node2", Ipv4Addr::new(192, 168, 3, 3), Segment::Switched),
    ("node3", Ipv4Addr::new(192, 168, 3, 4), Segment::Switched),
];

/// The networks the router serves (its `nodeNetworks` in the config).
pub fn node_networks() -> Vec<IpNet> {
    vec![DIRECT_NETWORK.into(), SWITCHED_NETWORK.into()]
}

/// One node of the lab.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabNode {
    /// `node1`, `node2`, `node3`: also the name in the controller's inventory.
    pub name: String,
    /// The node's address on its segment: the next hop routers use.
    pub address: IpAddr,
    /// The router's address on the node's segment: the node's route to the pool.
    pub router_address: IpAddr,
}

/// A lab's namespaces, and the containers attached so far.
#[derive(Debug)]
pub struct Topology {
    spec: LabSpec,
    router_netns: String,
    nodes: Vec<LabNode>,
    /// node name → subnet of its attached container.
    containers: Mutex<BTreeMap<String, Ipv4Net>>,
    /// How the controller reaches the router.
    router: LabRouter,
}

impl Topology {
    /// The lab as planned for `spec`; touches nothing.
    pub(crate) fn plan(spec: LabSpec) -> Self {
        let nodes = NODE_PLAN
            .iter()
            .map(|&(name, address, segment)| LabNode {
                name: name.to_owned(),
                address: address.into(),
                router_address: match segment {
                    Segment::Direct => ROUTER_DIRECT_ADDRESS.into(),
                    Segment::Switched => ROUTER_SWITCH_ADDRESS.into(),
                },
            })
            .collect();
        Self {
            router_netns: spec.netns(ROUTER_ROLE),
            spec,
            nodes,
            containers: Mutex::new(BTreeMap::new()),
            router: LabRouter::Netlink,
        }
    }

    /// Builds router, switch and nodes (addresses, forwarding, each node's
    /// route to the pool) but no bridges, containers or router routes.
    /// Fails if any namespace of this lab exists; on failure it removes the
    /// namespaces it made.
    pub async fn create(spec: LabSpec) -> Result<Topology> {
        spec.check()?;
        netns::require_programs(&["ip", "sysctl"])?;
        let topo = Self::plan(spec);
        let taken = topo.existing_namespaces().await?;
        if !taken.is_empty() {
            bail!(
                "a lab with prefix {:?} already exists (namespaces {}): remove it first (`nativeroute lab down`)",
                topo.spec.prefix,
                taken.join(", ")
            );
        }
        if let Err(err) = topo.build().await {
            let spec = topo.spec.clone();
            let cleanup =
                tokio::task::spawn_blocking(move || teardown::delete_namespaces(&spec)).await;
            let err = err.context(format!("building the lab {:?}", topo.spec.prefix));
            return Err(match cleanup {
                Ok(Ok(())) => err,
                Ok(Err(e)) => err.context(format!("and cleaning up after it failed too: {e:#}")),
                Err(e) => err.context(format!("and cleaning up after it panicked: {e}")),
            });
        }
        Ok(topo)
    }

    /// A lab that is already up, with the containers found in it.
    pub async fn open(spec: LabSpec) -> Result<Topology> {
        spec.check()?;
        netns::require_programs(&["ip"])?;
        let topo = Self::plan(spec);
        let existing = netns::list().await?;
        if !existing.contains(&topo.router_netns) {
            bail!(
                "no lab with prefix {:?} is up (no namespace {}): start one with `nativeroute lab up`",
                topo.spec.prefix,
                topo.router_netns
            );
        }
        for node in &topo.nodes {
            let container = topo.spec.netns(&container_role(&node.name));
            if existing.contains(&container) {
                if let Ok(Some(subnet)) = topo.read_container_subnet(&node.name).await {
                    topo.record_container(&node.name, subnet);
                }
            }
        }
        Ok(topo)
    }

    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    pub fn router(&self) -> LabRouter {
        self.router
    }

    /// Turns the router into a BGP router: FRR in its namespace, taking
    /// the node subnets from the controller's session (which starts from
    /// node1, on the router's direct segment). The controller files written
    /// afterwards name a `driver: bgp` router.
    pub async fn start_bgp_router(&mut self) -> Result<()> {
        let controller = match self.bgp_speaker().address {
            IpAddr::V4(address) => address,
            IpAddr::V6(_) => bail!("the lab's nodes have IPv4 addresses"),
        };
        super::bgp_router::start(&self.spec, &self.router_netns, controller, POOL, 24).await?;
        self.router = LabRouter::Bgp;
        Ok(())
    }

    /// The node whose namespace the controller's BGP session starts from.
    pub(crate) fn bgp_speaker(&self) -> &LabNode {
        &self.nodes[0]
    }

    /// The router's namespace: give it to the netlink driver.
    pub fn router_netns(&self) -> &str {
        &self.router_netns
    }

    pub fn nodes(&self) -> &[LabNode] {
        &self.nodes
    }

    pub fn node(&self, name: &str) -> Option<&LabNode> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn node_netns(&self, node: &str) -> Option<String> {
        self.node(node).map(|n| self.spec.netns(&n.name))
    }

    pub fn container_netns(&self, node: &str) -> Option<String> {
        self.node(node)
            .map(|n| self.spec.netns(&container_role(&n.name)))
    }

    /// Every namespace name this lab uses, made or not.
    pub fn namespaces(&self) -> Vec<String> {
        let mut names = vec![self.router_netns.clone(), self.spec.netns(SWITCH_ROLE)];
        for node in &self.nodes {
            names.push(self.spec.netns(&node.name));
            names.push(self.spec.netns(&container_role(&node.name)));
        }
        names
    }

    /// The lab's namespaces that exist right now.
    pub(crate) async fn existing_namespaces(&self) -> Result<Vec<String>> {
        let existing = netns::list().await?;
        Ok(self
            .namespaces()
            .into_iter()
            .filter(|n| existing.contains(n))
            .collect())
    }

    pub(crate) fn containers_lock(&self) -> MutexGuard<'_, BTreeMap<String, Ipv4Net>> {
        // A panic elsewhere cannot leave the map half-written: one insert.
        self.containers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn record_container(&self, node: &str, subnet: Ipv4Net) {
        self.containers_lock().insert(node.to_owned(), subnet);
    }

    async fn build(&self) -> Result<()> {
        for ns in [&self.router_netns, &self.spec.netns(SWITCH_ROLE)] {
            netns::add(ns).await?;
        }
        for node in &self.nodes {
            netns::add(&self.spec.netns(&node.name)).await?;
        }
        self.build_switch().await?;
        for (node, &(_, address, segment)) in self.nodes.iter().zip(NODE_PLAN.iter()) {
            self.build_node(node, address, segment).await?;
        }
        let rtr = &self.router_netns;
        let ports = [
            (ROUTER_DIRECT_PORT, ROUTER_DIRECT_ADDRESS, DIRECT_NETWORK),
            (ROUTER_SWITCH_PORT, ROUTER_SWITCH_ADDRESS, SWITCHED_NETWORK),
        ];
        for (port, address, network) in ports {
            address_add(rtr, port, with_prefix(address, network)).await?;
            link_up(rtr, port).await?;
        }
        netns::sysctl(rtr, "net.ipv4.ip_forward", "1").await
    }

    /// sw2's bridge, and the cable from it to the router's p3p2.
    async fn build_switch(&self) -> Result<()> {
        let sw2 = self.spec.netns(SWITCH_ROLE);
        Cmd::ip_in(&sw2)
            .args(["link", "add", SWITCH_BRIDGE, "type", "bridge"])
            .run()
            .await?;
        link_up(&sw2, SWITCH_BRIDGE).await?;
        veth(
            &self.router_netns,
            ROUTER_SWITCH_PORT,
            &sw2,
            SWITCH_UPLINK_PORT,
        )
        .await?;
        switch_port(&sw2, SWITCH_UPLINK_PORT).await
    }

    async fn build_node(&self, node: &LabNode, address: Ipv4Addr, segment: Segment) -> Result<()> {
        let ns = self.spec.netns(&node.name);
        let (network, router) = match segment {
            Segment::Direct => {
                veth(&self.router_netns, ROUTER_DIRECT_PORT, &ns, UPLINK).await?;
                (DIRECT_NETWORK, ROUTER_DIRECT_ADDRESS)
            }
            Segment::Switched => {
                let sw2 = self.spec.netns(SWITCH_ROLE);
                veth(&ns, UPLINK, &sw2, &node.name).await?;
                switch_port(&sw2, &node.name).await?;
                (SWITCHED_NETWORK, ROUTER_SWITCH_ADDRESS)
            }
        };
        address_add(&ns, UPLINK, with_prefix(address, network)).await?;
        link_up(&ns, UPLINK).await?;
        Cmd::ip_in(&ns)
            .args(["route", "add"])
            .arg(POOL.to_string())
            .arg("via")
            .arg(router.to_string())
            .args(["dev", UPLINK])
            .run()
            .await?;
        netns::sysctl(&ns, "net.ipv4.ip_forward", "1").await
    }
}

/// The role of a node's container namespace: `node1` → `node1-c`.
pub(crate) fn container_role(node: &str) -> String {
    format!("{node}-c")
}

pub(crate) fn with_prefix(address: Ipv4Addr, network: Ipv4Net) -> Ipv4Net {
    Ipv4Net::new_assert(address, network.prefix_len())
}

/// A veth pair with each end created directly in its namespace.
pub(crate) async fn veth(ns_a: &str, name_a: &str, ns_b: &str, name_b: &str) -> Result<()> {
    Cmd::new("ip")
        .args(["link", "add", name_a, "netns", ns_a])
        .args(["type", "veth", "peer", "name", name_b, "netns", ns_b])
        .run()
        .await
        .with_context(|| format!("cabling {ns_a}/{name_a} to {ns_b}/{name_b}"))?;
    link_up(ns_a, name_a).await?;
    link_up(ns_b, name_b).await
}

pub(crate) async fn link_up(ns: &str, dev: &str) -> Result<()> {
    Cmd::ip_in(ns)
        .args(["link", "set", dev, "up"])
        .run()
        .await?;
    Ok(())
}

pub(crate) async fn address_add(ns: &str, dev: &str, address: Ipv4Net) -> Result<()> {
    Cmd::ip_in(ns)
        .args(["addr", "add"])
        .arg(address.to_string())
        .args(["dev", dev])
        .run()
        .await?;
    Ok(())
}

async fn switch_port(sw2: &str, port: &str) -> Result<()> {
    Cmd::ip_in(sw2)
        .args(["link", "set", port, "master", SWITCH_BRIDGE])
        .run()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_matches_the_seed() {
        let topo = Topology::plan(LabSpec::new("t-", "/tmp/t"));
        assert_eq!(topo.router_netns(), "t-rtr");
        let node1 = topo.node("node1").expect("node1 planned");
        assert_eq!(node1.address, IpAddr::from([192, 168, 2, 1]));
        assert_eq!(node1.router_address, IpAddr::from([192, 168, 2, 2]));
        let node3 = topo.node("node3").expect("node3 planned");
        assert_eq!(node3.router_address, IpAddr::from([192, 168, 3, 2]));
        assert_eq!(topo.container_netns("node3").as_deref(), Some("t-node3-c"));
        assert_eq!(topo.namespaces().len(), 8);
    }
}
