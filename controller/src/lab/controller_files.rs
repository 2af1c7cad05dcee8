//! The files between the lab and its controller: the config and node
//! inventory the lab writes, and the state file in which the controller
//! records the subnets it assigned.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};

use super::LabRouter;
use super::bgp_router::{LAB_AS, ROUTER_BGP_ADDRESS};
use super::topology::{POOL, Topology, node_networks};

/// The name the router has in the controller config.
pub const ROUTER_NAME: &str = "rtr";
const NODE_MASK_V4: u8 = 24;
const STATE_POLL: Duration = Duration::from_millis(100);

impl Topology {
    /// Writes `config.yaml` (pool 11.11.0.0/16 in /24s with 11.11.0.0/24
    /// reserved, file inventory, one netlink router in the lab's router
    /// namespace) and `nodes.yaml` into the lab directory, creating it.
    /// Returns the config's path.
    pub fn write_controller_files(&self, resync_interval: Duration) -> Result<PathBuf> {
        let inventory_path = self.spec().inventory_path();
        let config_path = self.write_config(
            resync_interval,
            NodesSection {
                source: "file",
                file: Some(&inventory_path),
                selector: None,
            },
        )?;
        let inventory = Inventory {
            nodes: self
                .nodes()
                .iter()
                .map(|n| InventoryNode {
                    name: &n.name,
                    address: n.address,
                })
                .collect(),
        };
        write_yaml(&inventory_path, &inventory)?;
        Ok(config_path)
    }

    /// Writes `config.yaml` like [`write_controller_files`](Self::write_controller_files),
    /// with the nodes coming from the Kubernetes Nodes that match `selector`.
    pub fn write_kubernetes_controller_files(
        &self,
        resync_interval: Duration,
        selector: &str,
    ) -> Result<PathBuf> {
        self.write_config(
            resync_interval,
            NodesSection {
                source: "kubernetes",
                file: None,
                selector: Some(selector),
            },
        )
    }

    fn write_config(&self, resync_interval: Duration, nodes: NodesSection<'_>) -> Result<PathBuf> {
        let spec = self.spec();
        std::fs::create_dir_all(&spec.dir)
            .with_context(|| format!("creating lab directory {}", spec.dir.display()))?;
        let config = ConfigFile {
            pool: PoolSection {
                cidrs: vec![POOL.into()],
                node_mask_v4: NODE_MASK_V4,
                // Keeps the first /24 out so nodes get 11.11.1-3.0/24 as in the seed.
                reserved: vec![Ipv4Net::new_assert(POOL.network(), NODE_MASK_V4).into()],
            },
            ipam: "allocate",
            nodes,
            resync_interval: humantime::format_duration(resync_interval).to_string(),
            routers: vec![self.router_section()],
        };
        let config_path = spec.config_path();
        write_yaml(&config_path, &config)?;
        Ok(config_path)
    }

    fn router_section(&self) -> RouterSection {
        match self.router() {
            LabRouter::Netlink => RouterSection {
                name: ROUTER_NAME,
                driver: "netlink",
                netns: self.router_netns().to_owned(),
                address: None,
                local_as: None,
                peer_as: None,
                hold_time: None,
                node_networks: node_networks(),
            },
            LabRouter::Bgp => RouterSection {
                name: ROUTER_NAME,
                driver: "bgp",
                netns: self.spec().netns(&self.bgp_speaker().name),
                address: Some(ROUTER_BGP_ADDRESS.to_string()),
                local_as: Some(LAB_AS),
                peer_as: Some(LAB_AS),
                // Short, so that a router gone is noticed while you watch.
                hold_time: Some("9s"),
                node_networks: node_networks(),
            },
        }
    }

    /// Polls the controller's state file until every lab node has a subnet.
    /// The error on timeout names the nodes still waiting and the file.
    pub async fn wait_for_assignments(&self, timeout: Duration) -> Result<BTreeMap<String, IpNet>> {
        let path = self.spec().state_path();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let read = read_assignments(&path);
            if let Ok(assigned) = &read {
                if self.nodes().iter().all(|n| assigned.contains_key(&n.name)) {
                    return read;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                let waiting = match &read {
                    Ok(assigned) => self
                        .nodes()
                        .iter()
                        .filter(|n| !assigned.contains_key(&n.name))
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    Err(e) => format!("all ({e:#})"),
                };
                return Err(anyhow!(
                    "the controller did not assign a subnet to every node within {} (still without one: {waiting}; state file {})",
                    humantime::format_duration(timeout),
                    path.display()
                ));
            }
            tokio::time::sleep(STATE_POLL).await;
        }
    }
}

/// node name → its IPv4 subnet, from the controller's state file. Nodes
/// without an IPv4 subnet are left out.
pub fn read_assignments(state_path: &Path) -> Result<BTreeMap<String, IpNet>> {
    let text = std::fs::read_to_string(state_path)
        .with_context(|| format!("reading controller state {}", state_path.display()))?;
    parse_assignments(&text)
        .with_context(|| format!("parsing controller state {}", state_path.display()))
}

fn parse_assignments(text: &str) -> Result<BTreeMap<String, IpNet>> {
    let state: StateFile = serde_json::from_str(text)?;
    Ok(state
        .nodes
        .into_iter()
        .filter_map(|(name, node)| {
            let v4 = node
                .subnets
                .into_iter()
                .find(|s| matches!(s, IpNet::V4(_)))?;
            Some((name, v4))
        })
        .collect())
}

fn write_yaml(path: &Path, value: &impl Serialize) -> Result<()> {
    let text =
        serde_yaml_ng::to_string(value).with_context(|| format!("rendering {}", path.display()))?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConfigFile<'a> {
    pool: PoolSection,
    ipam: &'static str,
    nodes: NodesSection<'a>,
    resync_interval: String,
    routers: Vec<RouterSection>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PoolSection {
    cidrs: Vec<IpNet>,
    node_mask_v4: u8,
    reserved: Vec<IpNet>,
}

#[derive(Serialize)]
struct NodesSection<'a> {
    source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    file: Option<&'a Path>,
    #[serde(skip_serializing_if = "Option::is_none")]
    selector: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct RouterSection {
    name: &'static str,
    driver: &'static str,
    netns: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    local_as: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peer_as: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hold_time: Option<&'static str>,
    node_networks: Vec<IpNet>,
}

#[derive(Serialize)]
struct Inventory<'a> {
    nodes: Vec<InventoryNode<'a>>,
}

#[derive(Serialize)]
struct InventoryNode<'a> {
    name: &'a str,
    address: IpAddr,
}

/// Only what the lab needs of the controller's state; the rest is ignored.
#[derive(Deserialize)]
struct StateFile {
    #[serde(default)]
    nodes: BTreeMap<String, StateNode>,
}

#[derive(Deserialize)]
struct StateNode {
    #[serde(default)]
    subnets: Vec<IpNet>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::spec::LabSpec;

    #[test]
    fn state_file_yields_each_nodes_ipv4_subnet() {
        let text = r#"{"version":1,"nodes":{
            "node1":{"subnets":["fd11:11::/64","11.11.1.0/24"],"since":"2026-11-23T15:00:00Z"},
            "node2":{"subnets":[]},
            "node3":{"subnets":["11.11.3.0/24"],"extra":true}}}"#;
        let got = parse_assignments(text).expect("parses");
        let want: BTreeMap<String, IpNet> = [
            ("node1".to_owned(), "11.11.1.0/24".parse().expect("net")),
            ("node3".to_owned(), "11.11.3.0/24".parse().expect("net")),
        ]
        .into();
        assert_eq!(got, want);
    }

    #[test]
    fn config_names_the_router_netns_and_the_inventory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let topo = Topology::plan(LabSpec::new("t9-", dir.path()));
        let path = topo
            .write_controller_files(Duration::from_secs(10))
            .expect("writes");
        let config: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(path).expect("read")).expect("yaml");
        assert_eq!(config["routers"][0]["netns"].as_str(), Some("t9-rtr"));
        assert_eq!(config["pool"]["nodeMaskV4"].as_u64(), Some(24));
        assert_eq!(config["pool"]["reserved"][0].as_str(), Some("11.11.0.0/24"));
        assert_eq!(config["resyncInterval"].as_str(), Some("10s"));
        let inventory_path = dir.path().join("nodes.yaml");
        assert_eq!(config["nodes"]["file"].as_str(), inventory_path.to_str());
        let inventory: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(&std::fs::read_to_string(inventory_path).expect("read"))
                .expect("yaml");
        assert_eq!(
            inventory["nodes"][2]["address"].as_str(),
            Some("192.168.3.4")
        );
    }
}
