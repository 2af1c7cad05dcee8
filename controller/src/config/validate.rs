//! Cross-field checks: what each field means only next to the others.

use std::time::Duration;

use ipnet::IpNet;
use nativeroute_router_drivers::Ownership;
use nativeroute_router_drivers::netlink::known_route_protocol;

use super::raw::{RawConfig, RawIpam, RawNodeSource, RawNodes, RawPool};
use super::routers::check_routers;
use super::values::check_label_selector;
use super::{
    Config, InventoryFiles, IpamMode, NodesConfig, OwnershipConfig, PoolConfig, Problem, Problems,
    RemovalGuard,
};

const DEFAULT_RESYNC: Duration = Duration::from_secs(60);
const DEFAULT_MAX_REMOVAL_SHARE: f64 = 0.5;
const DEFAULT_GUARD_MIN_ROUTES: usize = 10;
const DEFAULT_GUARD_WINDOW: Duration = Duration::from_secs(600);
/// More subnets than this in one pool CIDR is a typo, not a plan.
const MAX_SUBNET_BITS: u8 = 32;

pub(super) fn validate(raw: RawConfig) -> Result<Config, Problems> {
    let mut problems = Vec::new();
    let mut report = |field: String, message: String| problems.push(Problem { field, message });

    let pool = check_pool(raw.pool, &mut report);
    let nodes = check_nodes(raw.nodes, &mut report);
    let resync_interval = raw.resync_interval.map_or(DEFAULT_RESYNC, |d| d.0);
    if resync_interval < Duration::from_secs(1) {
        report(
            "resyncInterval".into(),
            format!(
                "{} is too short: the periodic compare with each router must be at least 1s apart",
                humantime::format_duration(resync_interval)
            ),
        );
    }
    let netlink_protocol = raw
        .ownership
        .netlink_protocol
        .unwrap_or(Ownership::DEFAULT_NETLINK_PROTOCOL);
    if let Some(owner) = known_route_protocol(netlink_protocol) {
        report(
            "ownership.netlinkProtocol".into(),
            format!(
                "{netlink_protocol} is the route protocol of {owner}; nativeroute would claim \
                 routes it did not make. The default is 203 (0xcb)"
            ),
        );
    }
    let route_tag = raw
        .ownership
        .route_tag
        .unwrap_or(Ownership::DEFAULT_ROUTE_TAG);
    if route_tag == 0 {
        report(
            "ownership.routeTag".into(),
            "0 means 'no tag' on router CLIs; choose a non-zero tag (default 1111)".into(),
        );
    }
    let bgp_community = match raw.ownership.bgp_community.as_deref() {
        None => Ownership::DEFAULT_BGP_COMMUNITY,
        Some(text) => parse_community(text).unwrap_or_else(|message| {
            report("ownership.bgpCommunity".into(), message);
            Ownership::DEFAULT_BGP_COMMUNITY
        }),
    };
    let max_share = raw
        .removal_guard
        .max_share
        .unwrap_or(DEFAULT_MAX_REMOVAL_SHARE);
    if !(max_share > 0.0 && max_share <= 1.0) {
        report(
            "removalGuard.maxShare".into(),
            format!("{max_share} is not a share in (0, 1]; 1 turns the guard off"),
        );
    }
    let guard_window = raw
        .removal_guard
        .window
        .map_or(DEFAULT_GUARD_WINDOW, |d| d.0);
    if guard_window < Duration::from_secs(1) {
        report(
            "removalGuard.window".into(),
            format!(
                "{} is shorter than 1s; the share is judged over this window",
                humantime::format_duration(guard_window)
            ),
        );
    }
    let ipam = match raw.ipam {
        RawIpam::Allocate => IpamMode::Allocate,
        RawIpam::PodCidr => IpamMode::PodCidr,
    };
    if ipam == IpamMode::PodCidr && matches!(nodes, NodesConfig::File { .. }) {
        // A file inventory has no spec.podCIDR to route: every node would
        // quietly go without a subnet.
        report(
            "ipam".into(),
            "podCIDR routes the spec.podCIDR kube-controller-manager sets on each Node, \
             but nodes.source is file, whose nodes have none: use ipam: allocate with \
             nodes.source: file, or nodes.source: kubernetes"
                .into(),
        );
    }
    let routers = check_routers(raw.routers, &mut report);

    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    Ok(Config {
        pool,
        ipam,
        nodes,
        manage_node_condition: raw.manage_node_condition,
        resync_interval,
        ownership: OwnershipConfig {
            netlink_protocol,
            route_tag,
            bgp_community,
        },
        removal_guard: RemovalGuard {
            max_share,
            min_routes: raw
                .removal_guard
                .min_routes
                .unwrap_or(DEFAULT_GUARD_MIN_ROUTES),
            window: guard_window,
        },
        routers,
    })
}

fn check_pool(raw: RawPool, report: &mut impl FnMut(String, String)) -> PoolConfig {
    let cidrs: Vec<IpNet> = raw.cidrs.iter().map(|c| c.0).collect();
    let reserved: Vec<IpNet> = raw.reserved.iter().map(|c| c.0).collect();
    if cidrs.is_empty() {
        report(
            "pool.cidrs".into(),
            "the pool needs at least one CIDR".into(),
        );
    }
    if raw.node_mask_v4 > 32 {
        report(
            "pool.nodeMaskV4".into(),
            format!("{} is not an IPv4 prefix length (0-32)", raw.node_mask_v4),
        );
    }
    if raw.node_mask_v6 > 128 {
        report(
            "pool.nodeMaskV6".into(),
            format!("{} is not an IPv6 prefix length (0-128)", raw.node_mask_v6),
        );
    }
    for (index, cidr) in cidrs.iter().enumerate() {
        let (mask, mask_field) = match cidr {
            IpNet::V4(_) => (raw.node_mask_v4, "nodeMaskV4"),
            IpNet::V6(_) => (raw.node_mask_v6, "nodeMaskV6"),
        };
        if mask < cidr.prefix_len() {
            report(
                format!("pool.cidrs[{index}]"),
                format!(
                    "{cidr} is smaller than one node's subnet (pool.{mask_field} is /{mask}): \
                     use a larger pool or a longer node mask"
                ),
            );
        }
        if mask >= cidr.prefix_len() && mask - cidr.prefix_len() > MAX_SUBNET_BITS {
            report(
                format!("pool.cidrs[{index}]"),
                format!(
                    "{cidr} cut into /{mask}s would be more than 2^{MAX_SUBNET_BITS} subnets; \
                     use a smaller pool or a shorter pool.{mask_field}"
                ),
            );
        }
        for (other_index, other) in cidrs.iter().enumerate().skip(index + 1) {
            if overlaps(cidr, other) {
                report(
                    format!("pool.cidrs[{other_index}]"),
                    format!(
                        "{other} overlaps pool.cidrs[{index}] {cidr}: pool CIDRs must be disjoint"
                    ),
                );
            }
        }
    }
    for (index, range) in reserved.iter().enumerate() {
        let field = format!("pool.reserved[{index}]");
        if !cidrs.iter().any(|cidr| overlaps(cidr, range)) {
            report(
                field,
                format!(
                    "{range} lies outside every pool CIDR, so reserving it has no effect (a typo?)"
                ),
            );
        } else if let Some(covered) = cidrs.iter().find(|cidr| range.contains(*cidr)) {
            report(
                field,
                format!(
                    "{range} covers all of pool CIDR {covered}: nothing would be left to hand out"
                ),
            );
        }
    }
    PoolConfig {
        cidrs,
        node_mask_v4: raw.node_mask_v4,
        node_mask_v6: raw.node_mask_v6,
        reserved,
    }
}

fn check_nodes(raw: RawNodes, report: &mut impl FnMut(String, String)) -> NodesConfig {
    match raw.source {
        RawNodeSource::Kubernetes => {
            for (field, path) in [
                ("nodes.file", &raw.file),
                ("nodes.stateFile", &raw.state_file),
            ] {
                if let Some(path) = path {
                    report(
                        field.into(),
                        format!(
                            "{} is set but nodes.source is kubernetes; remove it or use source: file",
                            path.display()
                        ),
                    );
                }
            }
            let address_type = raw.address_type.unwrap_or_else(|| "InternalIP".into());
            if !matches!(address_type.as_str(), "InternalIP" | "ExternalIP") {
                report(
                    "nodes.addressType".into(),
                    format!(
                        "{address_type:?} is not a routable node address type: use InternalIP or ExternalIP"
                    ),
                );
            }
            if let Err(problem) = check_label_selector(&raw.selector) {
                report("nodes.selector".into(), problem);
            }
            NodesConfig::Kubernetes {
                selector: raw.selector,
                address_type,
            }
        }
        RawNodeSource::File => {
            if !raw.selector.is_empty() {
                report(
                    "nodes.selector".into(),
                    format!(
                        "{:?} only applies to nodes.source: kubernetes",
                        raw.selector
                    ),
                );
            }
            if let Some(address_type) = &raw.address_type {
                report(
                    "nodes.addressType".into(),
                    format!("{address_type:?} only applies to nodes.source: kubernetes"),
                );
            }
            let path = raw.file.unwrap_or_default();
            if path.as_os_str().is_empty() {
                report(
                    "nodes.file".into(),
                    "nodes.source is file, so nodes.file must name the inventory (e.g. /etc/nativeroute/nodes.yaml)".into(),
                );
            }
            let mut files = InventoryFiles::beside(&path);
            if let Some(state) = raw.state_file {
                if state.file_name().is_none() || state.as_os_str().to_string_lossy().ends_with('/')
                {
                    report(
                        "nodes.stateFile".into(),
                        format!(
                            "{:?} names no file: give the state file's path, e.g. /var/lib/nativeroute/nodes.state.json",
                            state.display()
                        ),
                    );
                } else if state == path {
                    report(
                        "nodes.stateFile".into(),
                        format!(
                            "{} is nodes.file itself: the state would overwrite the inventory",
                            state.display()
                        ),
                    );
                }
                files.state = state;
            }
            NodesConfig::File { path: files }
        }
    }
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// A standard community as written, `ASN:value` (RFC 1997), as one 32-bit
/// value. The well-known ones (65535:x, and 0:x) are refused: they mean
/// something to every router.
fn parse_community(text: &str) -> Result<u32, String> {
    let parsed = text
        .split_once(':')
        .and_then(|(asn, value)| Some((asn.parse::<u16>().ok()?, value.parse::<u16>().ok()?)));
    match parsed {
        Some((0 | 65535, _)) => Err(format!(
            "{text:?} is in a reserved range (0:x and 65535:x are well-known communities); the default is 64512:1111"
        )),
        Some((asn, value)) => Ok((u32::from(asn) << 16) | u32::from(value)),
        None => Err(format!(
            "{text:?} is not a community: write ASN:value, each 0 to 65535 (default 64512:1111)"
        )),
    }
}
