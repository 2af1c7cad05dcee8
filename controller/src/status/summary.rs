//! The pure part of status: plan and router states in, one status per node out.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use super::{NetworkCondition, NodeRouting, RouteState, RouteStates, RoutingPlan};

/// Reasons of the NetworkUnavailable condition, as the cloud route
/// controller writes them.
pub const ROUTE_CREATED: &str = "RouteCreated";
pub const NO_ROUTE_CREATED: &str = "NoRouteCreated";
pub const NODE_EXCLUDED: &str = "NodeExcluded";

/// One node's status.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeStatus {
    /// The `nativeroute.io/status` value.
    pub summary: String,
    pub condition: Option<NetworkCondition>,
}

/// One node's routes (destination, next hop), by router.
type RoutesByRouter<'a> = BTreeMap<&'a str, Vec<(IpNet, IpAddr)>>;

/// The status of every node in `plan` whose serving routers have all
/// reported (`states` holds only routers that finished a sync since this
/// term began: until then what the Node shows stays, so a restart or a
/// leader change never flips every node to "pending").
///
/// Yielded one at a time: collected, 20,000 statuses cost megabytes for
/// the moment of each round.
pub fn summarize<'a>(
    plan: &'a RoutingPlan,
    states: &'a BTreeMap<String, Arc<RouteStates>>,
) -> impl Iterator<Item = (&'a str, NodeStatus)> + 'a {
    let mut routes: BTreeMap<&str, RoutesByRouter<'_>> = BTreeMap::new();
    for (router, desired) in &plan.desired {
        for (dst, route) in &desired.routes {
            routes
                .entry(route.node.as_str())
                .or_default()
                .entry(router.as_str())
                .or_default()
                .push((*dst, route.via));
        }
    }
    plan.nodes.iter().filter_map(move |(node, routing)| {
        let status = match routing {
            NodeRouting::Excluded => excluded(),
            NodeRouting::Unrouted(why) => unrouted(why),
            NodeRouting::Routed => match routes.get(node.as_str()) {
                Some(by_router) => routed(by_router, states)?,
                None => unrouted("no router holds a route for it"),
            },
        };
        Some((node.as_str(), status))
    })
}

/// nativeroute leaves an excluded node alone, except that it takes back a
/// NetworkUnavailable=True it wrote itself before the node was excluded
/// (a gateway that joined before its exclude annotation stays tainted
/// otherwise).
fn excluded() -> NodeStatus {
    NodeStatus {
        summary: "excluded".into(),
        condition: Some(NetworkCondition {
            unavailable: false,
            reason: NODE_EXCLUDED,
            message: "nativeroute: excluded (nativeroute.io/exclude)".into(),
            replaces_only: Some(NO_ROUTE_CREATED),
        }),
    }
}

fn unrouted(why: &str) -> NodeStatus {
    NodeStatus {
        summary: "unrouted".into(),
        condition: Some(NetworkCondition {
            unavailable: true,
            reason: NO_ROUTE_CREATED,
            message: format!("nativeroute: {why}"),
            replaces_only: None,
        }),
    }
}

fn routed(
    by_router: &RoutesByRouter<'_>,
    states: &BTreeMap<String, Arc<RouteStates>>,
) -> Option<NodeStatus> {
    let mut per_router: Vec<(&str, RouteState)> = Vec::new();
    for (router, routes) in by_router {
        let confirmed = states.get(*router)?;
        let worst = routes
            .iter()
            .map(|(dst, via)| {
                confirmed
                    .get(dst)
                    .filter(|(confirmed_via, _)| confirmed_via == via)
                    .map_or(RouteState::Pending, |(_, state)| *state)
            })
            .max()
            .unwrap_or(RouteState::Pending);
        per_router.push((*router, worst));
    }
    let summary = per_router
        .iter()
        .map(|(router, state)| format!("{router}={}", state.as_str()))
        .collect::<Vec<_>>()
        .join(",");
    let failing: Vec<String> = per_router
        .iter()
        .filter(|(_, state)| matches!(state, RouteState::Error | RouteState::Blocked))
        .map(|(router, state)| format!("{router} ({})", state.as_str()))
        .collect();
    let condition = if !failing.is_empty() {
        Some(NetworkCondition {
            unavailable: true,
            reason: NO_ROUTE_CREATED,
            message: format!(
                "nativeroute: route not programmed on {}",
                failing.join(", ")
            ),
            replaces_only: None,
        })
    } else if per_router
        .iter()
        .all(|(_, state)| *state == RouteState::Programmed)
    {
        let routers: Vec<&str> = per_router.iter().map(|(router, _)| *router).collect();
        Some(NetworkCondition {
            unavailable: false,
            reason: ROUTE_CREATED,
            message: format!("nativeroute: route programmed on {}", routers.join(", ")),
            replaces_only: None,
        })
    } else {
        // Pending: nothing confirmed either way, so the condition stays.
        None
    };
    Some(NodeStatus { summary, condition })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{DesiredRoute, RouterDesired};

    fn net(text: &str) -> IpNet {
        text.parse().expect("net")
    }
    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    fn plan() -> RoutingPlan {
        let mut routes = imbl::OrdMap::new();
        routes.insert(
            net("11.11.1.0/24"),
            DesiredRoute::new(ip("192.168.2.1"), "node1"),
        );
        let desired = RouterDesired {
            complete: true,
            routes,
            ..RouterDesired::default()
        };
        let mut plan = RoutingPlan::default();
        plan.desired
            .insert("core-1".into(), Arc::new(desired.clone()));
        plan.desired.insert("tor-a".into(), Arc::new(desired));
        plan.nodes.insert("node1".into(), NodeRouting::Routed);
        plan.nodes.insert("router".into(), NodeRouting::Excluded);
        plan.nodes.insert(
            "node9".into(),
            NodeRouting::Unrouted("no subnet left in the pool".into()),
        );
        plan
    }

    fn states(entries: &[(&str, RouteState, &str)]) -> BTreeMap<String, Arc<RouteStates>> {
        entries
            .iter()
            .map(|(router, state, via)| {
                let mut map = RouteStates::new();
                map.insert(net("11.11.1.0/24"), (ip(via), *state));
                (router.to_string(), Arc::new(map))
            })
            .collect()
    }

    #[test]
    fn a_node_is_available_only_when_every_serving_router_holds_its_route() {
        let plan = plan();
        let ready = states(&[
            ("core-1", RouteState::Programmed, "192.168.2.1"),
            ("tor-a", RouteState::Programmed, "192.168.2.1"),
        ]);
        let all: BTreeMap<&str, NodeStatus> = summarize(&plan, &ready).collect();
        let node1 = &all["node1"];
        assert_eq!(node1.summary, "core-1=programmed,tor-a=programmed");
        let condition = node1.condition.as_ref().expect("a condition");
        assert!(!condition.unavailable);
        assert_eq!(condition.reason, ROUTE_CREATED);

        let failing = states(&[
            ("core-1", RouteState::Programmed, "192.168.2.1"),
            ("tor-a", RouteState::Error, "192.168.2.1"),
        ]);
        let one_failing: BTreeMap<&str, NodeStatus> = summarize(&plan, &failing).collect();
        let node1 = &one_failing["node1"];
        assert_eq!(node1.summary, "core-1=programmed,tor-a=error");
        let condition = node1.condition.as_ref().expect("a condition");
        assert!(condition.unavailable);
        assert!(condition.message.contains("tor-a"), "{}", condition.message);
    }

    #[test]
    fn nothing_confirmed_leaves_the_condition_alone() {
        // core-1 confirmed an older next hop; tor-a's sync found the route missing.
        let mut all_states = states(&[("core-1", RouteState::Programmed, "192.168.9.9")]);
        all_states.insert("tor-a".into(), Arc::new(RouteStates::new()));
        let plan = plan();
        let all: BTreeMap<&str, NodeStatus> = summarize(&plan, &all_states).collect();
        assert_eq!(all["node1"].summary, "core-1=pending,tor-a=pending");
        assert_eq!(all["node1"].condition, None);
    }

    #[test]
    fn a_node_whose_router_has_not_synced_since_start_keeps_what_it_shows() {
        let plan = plan();
        let core_only = states(&[("core-1", RouteState::Programmed, "192.168.2.1")]);
        let all: BTreeMap<&str, NodeStatus> = summarize(&plan, &core_only).collect();
        assert!(
            !all.contains_key("node1"),
            "tor-a has not reported: {all:?}"
        );
        assert!(all.contains_key("node9"), "unrouted nodes need no router");
    }

    #[test]
    fn excluded_and_unrouted_nodes_say_so() {
        let plan = plan();
        let none = BTreeMap::new();
        let all: BTreeMap<&str, NodeStatus> = summarize(&plan, &none).collect();
        assert_eq!(all["router"].summary, "excluded");
        let condition = all["router"].condition.as_ref().expect("a condition");
        assert!(!condition.unavailable);
        assert_eq!(condition.replaces_only, Some(NO_ROUTE_CREATED));
        assert_eq!(all["node9"].summary, "unrouted");
        assert!(
            all["node9"]
                .condition
                .as_ref()
                .is_some_and(|c| c.unavailable && c.message.contains("pool"))
        );
    }
}
