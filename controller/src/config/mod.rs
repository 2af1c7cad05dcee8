//! The controller's YAML config: loaded once at start, every field checked,
//! every error naming the field and the value it had.

mod raw;
mod routers;
mod validate;
mod values;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use nativeroute_router_drivers::Ownership;
use nativeroute_router_drivers::ssh::{Timeouts, VendorName};

pub use values::{Cidr, RouterName, parse_label_selector};

/// A config that passed every check.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub pool: PoolConfig,
    pub ipam: IpamMode,
    pub nodes: NodesConfig,
    pub manage_node_condition: bool,
    pub resync_interval: Duration,
    pub ownership: OwnershipConfig,
    pub removal_guard: RemovalGuard,
    pub routers: Vec<RouterConfig>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolConfig {
    pub cidrs: Vec<IpNet>,
    pub node_mask_v4: u8,
    pub node_mask_v6: u8,
    pub reserved: Vec<IpNet>,
}

impl PoolConfig {
    /// The size of the subnet a node gets in the family of `cidr`.
    pub fn node_mask_for(&self, cidr: &IpNet) -> u8 {
        match cidr {
            IpNet::V4(_) => self.node_mask_v4,
            IpNet::V6(_) => self.node_mask_v6,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpamMode {
    /// nativeroute assigns subnets from the pool.
    Allocate,
    /// The cluster already assigns `spec.podCIDR`; nativeroute only routes it.
    PodCidr,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodesConfig {
    Kubernetes {
        selector: String,
        address_type: String,
    },
    /// A file inventory. `path` names both the inventory and the state
    /// file its assignments are kept in.
    File { path: InventoryFiles },
}

/// A file inventory (`nodes.file`) and its state file (`nodes.stateFile`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InventoryFiles {
    pub inventory: PathBuf,
    pub state: PathBuf,
}

impl InventoryFiles {
    /// The inventory with its state file beside it, `<file>.state.json`
    /// (the default of `nodes.stateFile`).
    pub fn beside(inventory: &Path) -> InventoryFiles {
        let mut name = inventory.file_name().unwrap_or_default().to_os_string();
        name.push(".state.json");
        InventoryFiles {
            inventory: inventory.to_path_buf(),
            state: inventory.with_file_name(name),
        }
    }

    /// The inventory's path, for messages.
    pub fn display(&self) -> std::path::Display<'_> {
        self.inventory.display()
    }
}

impl From<&Path> for InventoryFiles {
    fn from(inventory: &Path) -> Self {
        InventoryFiles::beside(inventory)
    }
}

impl From<&PathBuf> for InventoryFiles {
    fn from(inventory: &PathBuf) -> Self {
        InventoryFiles::beside(inventory)
    }
}

impl From<&InventoryFiles> for InventoryFiles {
    fn from(files: &InventoryFiles) -> Self {
        files.clone()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnershipConfig {
    pub netlink_protocol: u8,
    pub route_tag: u32,
    pub bgp_community: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RemovalGuard {
    /// The largest share of a router's owned routes that may be withdrawn
    /// or re-pointed within one `window`; changes beyond it are held.
    pub max_share: f64,
    /// Routers holding fewer owned routes than this are not guarded: there
    /// a single node moving is already a large share.
    pub min_routes: usize,
    /// The sliding window the share is judged over, so that a slow bleed
    /// (100, then 50, then 25, ...) is held as surely as one big batch.
    pub window: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouterConfig {
    pub name: RouterName,
    pub driver: DriverConfig,
    /// Nodes whose next hop lies in one of these are served by this router;
    /// empty means every node.
    pub node_networks: Vec<IpNet>,
}

impl RouterConfig {
    /// Whether this router serves a node with next hop `via` (by network).
    pub fn serves_next_hop(&self, via: IpAddr) -> bool {
        self.node_networks.is_empty() || self.node_networks.iter().any(|net| net.contains(&via))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DriverConfig {
    Netlink {
        netns: Option<String>,
        table: u32,
    },
    // Boxed: far larger than the other drivers' settings.
    Ssh(Box<SshConfig>),
    Bgp(Box<BgpConfig>),
    Plugin {
        command: Vec<String>,
        timeout: Duration,
    },
}

/// A router's CLI over SSH.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshConfig {
    pub vendor: VendorName,
    pub host: String,
    pub port: u16,
    /// Connect from this network namespace (management); `None`: our own.
    pub netns: Option<String>,
    pub username: String,
    pub private_key_file: PathBuf,
    pub known_hosts_file: PathBuf,
    pub trust_on_first_use: bool,
    pub save_config: bool,
    pub commit_confirm: Option<Duration>,
    pub cli_command: Option<String>,
    pub timeouts: Timeouts,
}

/// A router reached over BGP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BgpConfig {
    pub address: std::net::SocketAddr,
    pub local_as: u32,
    pub peer_as: u32,
    pub router_id: Option<std::net::Ipv4Addr>,
    pub hold_time: Duration,
    pub graceful_restart: Duration,
    /// Read at each connect, so that a rotated Secret takes effect at the
    /// next session.
    pub password_file: Option<PathBuf>,
    pub netns: Option<String>,
    pub connect_timeout: Duration,
}

impl DriverConfig {
    /// Whether both drive the same routing table: two routers there would
    /// fight over each other's routes.
    pub fn same_target(&self, other: &DriverConfig) -> bool {
        match (self, other) {
            (DriverConfig::Netlink { netns: a, .. }, DriverConfig::Netlink { netns: b, .. }) => {
                a == b
            }
            (DriverConfig::Bgp(a), DriverConfig::Bgp(b)) => {
                a.address.ip() == b.address.ip() && a.netns == b.netns
            }
            (DriverConfig::Ssh(a), DriverConfig::Ssh(b)) => {
                a.host == b.host
                    && a.port == b.port
                    && a.netns == b.netns
                    && a.cli_command == b.cli_command
            }
            _ => false,
        }
    }
}

impl Config {
    /// Reads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|problems| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }

    /// Parses and checks config text; every problem found is returned.
    pub fn parse(text: &str) -> Result<Config, Problems> {
        let raw = raw::parse(text)?;
        validate::validate(raw)
    }

    /// The ownership rule the drivers apply.
    pub fn ownership(&self) -> Ownership {
        Ownership {
            pool: self.pool.cidrs.clone(),
            netlink_protocol: self.ownership.netlink_protocol,
            route_tag: self.ownership.route_tag,
            bgp_community: self.ownership.bgp_community,
        }
    }

    pub fn router(&self, name: &str) -> Option<&RouterConfig> {
        self.routers
            .iter()
            .find(|router| router.name.as_str() == name)
    }
}

/// One thing wrong with the config: where, and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() || self.field == "." {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// Everything wrong with a config, one problem per line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    pub fn one(field: impl Into<String>, message: impl Into<String>) -> Self {
        Problems(vec![Problem {
            field: field.into(),
            message: message.into(),
        }])
    }
}

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (index, problem) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "  {problem}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config {} is invalid:\n{problems}", path.display())]
    Invalid { path: PathBuf, problems: Problems },
}

#[cfg(test)]
mod tests;
