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

/// One node's status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    /// The `nativeroute.io/status` value.
    pub summary: String,
    pub condition: Option<NetworkCondition>,
}

/// One node's routes (destination, next hop), by router.
type RoutesByRouter<'a> = BTreeMap<&'a str, Vec<(IpNet, IpAddr)>>;

/// The status of every node in `plan`.
pub fn summarize(
    plan: &RoutingPlan,
    states: &BTreeMap<String, Arc<RouteStates>>,
) -> BTreeMap<String, NodeStatus> {
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
    plan.nodes
        .iter()
        .map(|(node, routing)| {
            let status = match routing {
                NodeRouting::Excluded => NodeStatus {
                    summary: "excluded".into(),
                    condition: None,
                },
                NodeRouting::Unrouted(why) => unrouted(why),
                NodeRouting::Routed => match routes.get(node.as_str()) {
                    Some(by_router) => routed(by_router, states),
                    None => unrouted("no router holds a route for it"),
                },
            };
            (node.clone(), status)
        })
        .collect()
}

fn unrouted(why: &str) -> NodeStatus {
    NodeStatus {
        summary: "unrouted".into(),
        condition: Some(NetworkCondition {
            unavailable: true,
            reason: NO_ROUTE_CREATED,
            message: format!("nativeroute: {why}"),
        }),
    }
}

fn routed(
    by_router: &RoutesByRouter<'_>,
    states: &BTreeMap<String, Arc<RouteStates>>,
) -> NodeStatus {
    let per_router: Vec<(&str, RouteState)> = by_router
        .iter()
        .map(|(router, routes)| {
            let worst = routes
                .iter()
                .map(|(dst, via)| {
                    states
                        .get(*router)
                        .and_then(|s| s.get(dst))
                        .filter(|(confirmed_via, _)| confirmed_via == via)
                        .map_or(RouteState::Pending, |(_, state)| *state)
                })
                .max()
                .unwrap_or(RouteState::Pending);
            (*router, worst)
        })
        .collect();
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
        })
    } else {
        // Pending: nothing confirmed either way, so the condition stays.
        None
    };
    NodeStatus { summary, condition }
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
        let mut routes = BTreeMap::new();
        routes.insert(
            net("11.11.1.0/24"),
            DesiredRoute {
                via: ip("192.168.2.1"),
                node: "node1".into(),
            },
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
        let all = summarize(
            &plan(),
            &states(&[
                ("core-1", RouteState::Programmed, "192.168.2.1"),
                ("tor-a", RouteState::Programmed, "192.168.2.1"),
            ]),
        );
        let node1 = &all["node1"];
        assert_eq!(node1.summary, "core-1=programmed,tor-a=programmed");
        let condition = node1.condition.as_ref().expect("a condition");
        assert!(!condition.unavailable);
        assert_eq!(condition.reason, ROUTE_CREATED);

        let one_failing = summarize(
            &plan(),
            &states(&[
                ("core-1", RouteState::Programmed, "192.168.2.1"),
                ("tor-a", RouteState::Error, "192.168.2.1"),
            ]),
        );
        let node1 = &one_failing["node1"];
        assert_eq!(node1.summary, "core-1=programmed,tor-a=error");
        let condition = node1.condition.as_ref().expect("a condition");
        assert!(condition.unavailable);
        assert!(condition.message.contains("tor-a"), "{}", condition.message);
    }

    #[test]
    fn nothing_confirmed_leaves_the_condition_alone() {
        // tor-a has not synced; core-1 confirmed an older next hop.
        let all = summarize(
            &plan(),
            &states(&[("core-1", RouteState::Programmed, "192.168.9.9")]),
        );
        assert_eq!(all["node1"].summary, "core-1=pending,tor-a=pending");
        assert_eq!(all["node1"].condition, None);
    }

    #[test]
    fn excluded_and_unrouted_nodes_say_so() {
        let all = summarize(&plan(), &BTreeMap::new());
        assert_eq!(all["router"].summary, "excluded");
        assert_eq!(all["router"].condition, None);
        assert_eq!(all["node9"].summary, "unrouted");
        assert!(
            all["node9"]
                .condition
                .as_ref()
                .is_some_and(|c| c.unavailable && c.message.contains("pool"))
        );
    }
}
