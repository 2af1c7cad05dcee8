//! A container per node, on the subnet the controller assigned: the node's
//! bridge lbr0 holds `.1`, the container's eth0 holds `.10` with its default
//! route via `.1` (the docker0-style setup of the seed).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{Context, Result, anyhow, bail};
use ipnet::{IpNet, Ipv4Net};
use serde::Deserialize;

use super::netns::{self, Cmd};
use super::topology::{Topology, UPLINK, address_add, container_role, link_up, veth, with_prefix};

const NODE_BRIDGE: &str = "lbr0";
/// The node's end of the cable to its container.
const CONTAINER_PORT: &str = "ctr0";
const GATEWAY_HOST: u32 = 1;
const CONTAINER_HOST: u32 = 10;

impl Topology {
    /// Gives each named node its bridge and container on the given subnet.
    /// Calling it again for a node that already has that subnet does
    /// nothing; asking for a different subnet is an error.
    pub async fn attach_containers(&self, assignments: &BTreeMap<String, IpNet>) -> Result<()> {
        for (node, subnet) in assignments {
            let subnet = container_subnet(node, *subnet)?;
            self.attach(node, subnet)
                .await
                .with_context(|| format!("attaching a container to {node} on {subnet}"))?;
        }
        Ok(())
    }

    /// The address of `node`'s container (`.10` of its subnet), once attached.
    pub fn container_address(&self, node: &str) -> Option<IpAddr> {
        let subnet = *self.containers_lock().get(node)?;
        Some(host(subnet, CONTAINER_HOST).into())
    }

    /// node name → subnet, for every node with a container.
    pub fn containers(&self) -> BTreeMap<String, IpNet> {
        self.containers_lock()
            .iter()
            .map(|(node, subnet)| (node.clone(), IpNet::from(*subnet)))
            .collect()
    }

    /// One ping (1 s timeout) from `from_node`'s container: `Ok(false)` when
    /// no reply came, `Err` when ping could not run at all.
    pub async fn ping(&self, from_node: &str, to: IpAddr) -> Result<bool> {
        netns::require_programs(&["ping"])?;
        let ns = self
            .container_netns(from_node)
            .ok_or_else(|| self.unknown_node(from_node))?;
        let cmd = Cmd::new("ip")
            .args([
                "netns", "exec", &ns, "ping", "-n", "-q", "-c", "1", "-W", "1",
            ])
            .arg(to.to_string());
        let output = cmd.output().await?;
        match output.status.code() {
            Some(0) => Ok(true),
            // iputils: 1 = no reply, 2 = other error.
            Some(1) => Ok(false),
            _ => Err(cmd.failure(&output)),
        }
    }

    async fn attach(&self, node: &str, subnet: Ipv4Net) -> Result<()> {
        let node_ns = self
            .node_netns(node)
            .ok_or_else(|| self.unknown_node(node))?;
        match self.read_container_subnet(node).await {
            Ok(Some(existing)) if existing == subnet => {
                self.record_container(node, subnet);
                return Ok(());
            }
            Ok(Some(existing)) => {
                bail!("{node} already has a container on {existing}")
            }
            // Missing, or half-made by an attach that died: start afresh.
            Ok(None) | Err(_) => self.remove_container(node, &node_ns).await,
        }
        if let Err(err) = self.build_container(node, &node_ns, subnet).await {
            self.remove_container(node, &node_ns).await;
            return Err(err);
        }
        self.record_container(node, subnet);
        Ok(())
    }

    async fn build_container(&self, node: &str, node_ns: &str, subnet: Ipv4Net) -> Result<()> {
        let gateway = host(subnet, GATEWAY_HOST);
        Cmd::ip_in(node_ns)
            .args(["link", "add", NODE_BRIDGE, "type", "bridge"])
            .run()
            .await?;
        address_add(node_ns, NODE_BRIDGE, with_prefix(gateway, subnet)).await?;
        link_up(node_ns, NODE_BRIDGE).await?;

        let container_ns = self.spec().netns(&container_role(node));
        netns::add(&container_ns).await?;
        veth(node_ns, CONTAINER_PORT, &container_ns, UPLINK).await?;
        Cmd::ip_in(node_ns)
            .args(["link", "set", CONTAINER_PORT, "master", NODE_BRIDGE])
            .run()
            .await?;
        let address = with_prefix(host(subnet, CONTAINER_HOST), subnet);
        address_add(&container_ns, UPLINK, address).await?;
        Cmd::ip_in(&container_ns)
            .args(["route", "add", "default", "via"])
            .arg(gateway.to_string())
            .run()
            .await?;
        Ok(())
    }

    /// Best effort: whatever is left of a node's container and bridge.
    async fn remove_container(&self, node: &str, node_ns: &str) {
        let container_ns = self.spec().netns(&container_role(node));
        if let Ok(existing) = netns::list().await {
            if existing.contains(&container_ns) {
                let _ = Cmd::new("ip")
                    .args(["netns", "del", &container_ns])
                    .run()
                    .await;
            }
        }
        let _ = Cmd::ip_in(node_ns)
            .args(["link", "del", NODE_BRIDGE])
            .run()
            .await;
        self.containers_lock().remove(node);
    }

    /// The subnet on the container's eth0, `None` if it has no container.
    pub(crate) async fn read_container_subnet(&self, node: &str) -> Result<Option<Ipv4Net>> {
        let ns = self
            .container_netns(node)
            .ok_or_else(|| self.unknown_node(node))?;
        if !netns::list().await?.contains(&ns) {
            return Ok(None);
        }
        let out = Cmd::ip_in(&ns)
            .args(["-j", "addr", "show", "dev", UPLINK])
            .run()
            .await?;
        parse_ipv4_subnet(&out).map(Some)
    }

    fn unknown_node(&self, node: &str) -> anyhow::Error {
        let names: Vec<&str> = self.nodes().iter().map(|n| n.name.as_str()).collect();
        anyhow!("the lab has no node {node:?} (it has {})", names.join(", "))
    }
}

/// Checks a subnet can hold the lab's `.1` and `.10`.
fn container_subnet(node: &str, subnet: IpNet) -> Result<Ipv4Net> {
    match subnet {
        IpNet::V4(v4) if v4.prefix_len() <= 28 => Ok(v4.trunc()),
        IpNet::V4(_) => bail!("{node}'s subnet {subnet} is too small for the lab (/28 or larger)"),
        IpNet::V6(_) => bail!("{node}'s subnet {subnet}: lab containers are IPv4 only"),
    }
}

/// Host number `n` of a subnet (`11.11.1.0/24`, 10 → `11.11.1.10`).
fn host(subnet: Ipv4Net, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(subnet.network()) + n)
}

#[derive(Deserialize)]
struct IpLink {
    #[serde(default)]
    addr_info: Vec<IpAddrInfo>,
}

#[derive(Deserialize)]
struct IpAddrInfo {
    family: String,
    local: IpAddr,
    prefixlen: u8,
}

/// The first IPv4 subnet in `ip -j addr show` output.
fn parse_ipv4_subnet(json: &str) -> Result<Ipv4Net> {
    let links: Vec<IpLink> =
        serde_json::from_str(json).context("parsing `ip -j addr show` output")?;
    links
        .iter()
        .flat_map(|link| &link.addr_info)
        .find_map(|info| match (info.family.as_str(), info.local) {
            ("inet", IpAddr::V4(local)) => Ipv4Net::new(local, info.prefixlen).ok(),
            _ => None,
        })
        .map(|net| net.trunc())
        .ok_or_else(|| anyhow!("no IPv4 address on {UPLINK}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_and_gateway_are_dot_10_and_dot_1() {
        let subnet: Ipv4Net = "11.11.3.0/24".parse().expect("valid subnet");
        assert_eq!(host(subnet, CONTAINER_HOST), Ipv4Addr::new(11, 11, 3, 10));
        assert_eq!(host(subnet, GATEWAY_HOST), Ipv4Addr::new(11, 11, 3, 1));
    }

    #[test]
    fn subnets_too_small_or_ipv6_are_refused() {
        let small: IpNet = "11.11.3.0/29".parse().expect("valid subnet");
        assert!(container_subnet("node1", small).is_err());
        let v6: IpNet = "fd11:11::/64".parse().expect("valid subnet");
        assert!(container_subnet("node1", v6).is_err());
    }

    #[test]
    fn subnet_is_read_from_ip_json() {
        let json = r#"[{"ifindex":2,"ifname":"eth0","addr_info":[
            {"family":"inet6","local":"fe80::1","prefixlen":64},
            {"family":"inet","local":"11.11.2.10","prefixlen":24}]}]"#;
        let expected: Ipv4Net = "11.11.2.0/24".parse().expect("valid subnet");
        assert_eq!(parse_ipv4_subnet(json).expect("parses"), expected);
    }
}
