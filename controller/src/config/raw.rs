//! The config as written, before cross-field checks. Unknown keys are
//! errors: a typo in a key must not silently fall back to a default.

use serde::Deserialize;

use super::values::{Cidr, HumanDuration, RouterName};
use super::{Problem, Problems};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawConfig {
    pub pool: RawPool,
    #[serde(default)]
    pub ipam: RawIpam,
    pub nodes: RawNodes,
    #[serde(default)]
    pub manage_node_condition: bool,
    #[serde(default)]
    pub resync_interval: Option<HumanDuration>,
    #[serde(default)]
    pub ownership: RawOwnership,
    #[serde(default)]
    pub removal_guard: RawRemovalGuard,
    #[serde(default)]
    pub routers: Vec<RawRouter>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawPool {
    pub cidrs: Vec<Cidr>,
    #[serde(default = "default_node_mask_v4")]
    pub node_mask_v4: u8,
    #[serde(default = "default_node_mask_v6")]
    pub node_mask_v6: u8,
    #[serde(default)]
    pub reserved: Vec<Cidr>,
}

fn default_node_mask_v4() -> u8 {
    24
}

fn default_node_mask_v6() -> u8 {
    64
}

#[derive(Debug, Default, Deserialize)]
pub(super) enum RawIpam {
    #[default]
    #[serde(rename = "allocate")]
    Allocate,
    #[serde(rename = "podCIDR")]
    PodCidr,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawNodes {
    pub source: RawNodeSource,
    #[serde(default)]
    pub selector: String,
    #[serde(default)]
    pub address_type: Option<String>,
    #[serde(default)]
    pub file: Option<std::path::PathBuf>,
    #[serde(default)]
    pub state_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawNodeSource {
    Kubernetes,
    File,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawOwnership {
    pub netlink_protocol: Option<u8>,
    pub route_tag: Option<u32>,
    pub bgp_community: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawRemovalGuard {
    pub max_share: Option<f64>,
    pub min_routes: Option<usize>,
    pub window: Option<HumanDuration>,
}

/// Every key any driver takes; which ones a router may use depends on its
/// driver and is checked in `validate`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawRouter {
    pub name: RouterName,
    pub driver: String,
    #[serde(default)]
    pub node_networks: Vec<Cidr>,
    // netlink
    pub netns: Option<String>,
    pub table: Option<u32>,
    // ssh
    pub vendor: Option<String>,
    pub address: Option<String>,
    pub username: Option<String>,
    pub private_key_file: Option<std::path::PathBuf>,
    pub known_hosts_file: Option<std::path::PathBuf>,
    pub trust_on_first_use: Option<bool>,
    pub save_config: Option<bool>,
    pub commit_confirm: Option<HumanDuration>,
    pub cli_command: Option<String>,
    pub connect_timeout: Option<HumanDuration>,
    pub auth_timeout: Option<HumanDuration>,
    pub command_timeout: Option<HumanDuration>,
    pub commit_timeout: Option<HumanDuration>,
    pub keepalive_interval: Option<HumanDuration>,
    // bgp (also netns, address, connectTimeout)
    pub local_as: Option<u32>,
    pub peer_as: Option<u32>,
    pub router_id: Option<String>,
    pub hold_time: Option<HumanDuration>,
    pub graceful_restart: Option<HumanDuration>,
    pub password_file: Option<std::path::PathBuf>,
    // plugin
    pub command: Option<Vec<String>>,
    pub timeout: Option<HumanDuration>,
}

pub(super) fn parse(text: &str) -> Result<RawConfig, Problems> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let field = err.path().to_string();
        Problems(vec![Problem {
            field,
            message: err.into_inner().to_string(),
        }])
    })
}
