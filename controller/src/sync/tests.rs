use std::sync::Arc;

use nativeroute_router_drivers::Action;

use super::diff::*;
use crate::config::RemovalGuard;
use crate::desired::{DesiredRoute, LiveNodes, RouterDesired};

use std::net::IpAddr;

use ipnet::IpNet;
use nativeroute_router_drivers::{Change, ForeignRoute, Route};

const GUARD: RemovalGuard = RemovalGuard {
    max_share: 0.5,
    min_routes: 4,
    window: std::time::Duration::from_secs(600),
};

fn net(n: u8) -> IpNet {
    format!("11.11.{n}.0/24").parse().expect("cidr")
}

fn ip(n: u8) -> IpAddr {
    format!("192.168.3.{n}").parse().expect("ip")
}

fn desired(routes: &[(u8, u8)], complete: bool, live: LiveNodes) -> RouterDesired {
    RouterDesired {
        complete,
        routes: routes
            .iter()
            .map(|&(subnet, via)| {
                (
                    net(subnet),
                    DesiredRoute::new(ip(via), &format!("node{subnet}")),
                )
            })
            .collect(),
        keep: Default::default(),
        live: Arc::new(live),
    }
}

/// The plan of a sync with no withdrawals in the budget's window yet.
fn plan(desired: &RouterDesired, held: &Held, foreign: &[ForeignRoute]) -> SyncPlan {
    let budget = Budget::fresh(&GUARD, held.len());
    plan_with(desired, held, foreign, &budget)
}

fn plan_with(
    desired: &RouterDesired,
    held: &Held,
    foreign: &[ForeignRoute],
    budget: &Budget,
) -> SyncPlan {
    let router = RouterState {
        owned: held.clone(),
        foreign: foreign.to_vec(),
        own_addresses: vec![ip(254)],
        in_step_with: None,
    };
    diff(desired, &router, budget)
}

fn held(routes: &[(u8, u8)]) -> Held {
    Held {
        routes: routes
            .iter()
            .map(|&(subnet, via)| (net(subnet), ip(via)))
            .collect(),
        duplicates: Vec::new(),
    }
}

/// Live nodes as `compute` would see them: every desired route's node.
fn live_of(routes: &[(u8, u8)]) -> LiveNodes {
    let desired = desired(routes, true, LiveNodes::default());
    LiveNodes::from_routes(&desired.routes)
}

#[test]
fn missing_routes_are_added_changed_next_hops_replaced_and_matching_ones_left_alone() {
    let want = [(1, 1), (2, 2), (3, 3)];
    let plan = plan(
        &desired(&want, true, live_of(&want)),
        &held(&[(1, 1), (2, 9)]),
        &[],
    );
    assert_eq!(
        plan.changes,
        vec![
            Change::Replace {
                route: Route::new(net(2), ip(2)),
                old_via: ip(9)
            },
            Change::Add(Route::new(net(3), ip(3))),
        ]
    );
}

#[test]
fn routes_of_deleted_nodes_are_removed() {
    let want = [(1, 1)];
    let plan = plan(
        &desired(&want, true, live_of(&want)),
        &held(&[(1, 1), (2, 2)]),
        &[],
    );
    assert_eq!(
        plan.changes,
        vec![Change::Remove(Route::new(net(2), ip(2)))]
    );
}

#[test]
fn nothing_is_removed_before_the_inventory_is_complete() {
    let plan = plan(
        &desired(&[], false, LiveNodes::default()),
        &held(&[(1, 1), (2, 2)]),
        &[],
    );
    assert!(plan.changes.is_empty());
    assert_eq!(plan.postponed_removals, 2);
}

#[test]
fn a_foreign_route_holding_the_destination_blocks_the_add() {
    let want = [(1, 1)];
    let foreign = ForeignRoute {
        dst: net(1),
        via: Some(ip(7)),
        detail: "proto boot".into(),
    };
    let plan = plan(
        &desired(&want, true, live_of(&want)),
        &held(&[]),
        &[foreign],
    );
    assert!(plan.changes.is_empty());
    assert_eq!(plan.blocked_by_foreign.len(), 1);
}

/// node1 moves from 192.168.3.1 to 192.168.3.7 while a foreign route to
/// its subnet points at 192.168.3.`foreign_via`.
fn plan_of_a_move_beside_a_foreign_route(foreign_via: u8) -> SyncPlan {
    let want = [(1, 7)];
    let foreign = ForeignRoute {
        dst: net(1),
        via: Some(ip(foreign_via)),
        detail: format!("ip route 11.11.1.0/24 192.168.3.{foreign_via}"),
    };
    plan(
        &desired(&want, true, live_of(&want)),
        &held(&[(1, 1)]),
        &[foreign],
    )
}

#[test]
fn a_replace_onto_a_foreign_routes_next_hop_is_blocked_and_the_old_route_removed() {
    // On a CLI, writing ours onto their prefix and next hop would retag it.
    let plan = plan_of_a_move_beside_a_foreign_route(7);
    assert_eq!(
        plan.changes,
        vec![Change::Remove(Route::new(net(1), ip(1)))]
    );
    assert_eq!(plan.blocked_by_foreign.len(), 1);
}

#[test]
fn a_foreign_route_on_another_next_hop_does_not_block_a_replace() {
    let plan = plan_of_a_move_beside_a_foreign_route(9);
    assert_eq!(
        plan.changes,
        vec![Change::Replace {
            route: Route::new(net(1), ip(7)),
            old_via: ip(1)
        }]
    );
    assert!(plan.blocked_by_foreign.is_empty());
}

#[test]
fn removing_most_routes_of_nodes_that_still_exist_is_refused() {
    let all = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)];
    // Only node1 is still routed here, but all five nodes exist.
    let plan = plan(&desired(&all[..1], true, live_of(&all)), &held(&all), &[]);
    assert!(plan.changes.is_empty(), "{plan}");
    assert_eq!(plan.withheld_count(), 4);
    assert_eq!(plan.count(Action::Remove), 0);
}

#[test]
fn removing_most_routes_of_departed_nodes_is_held_too() {
    // A selector typo or a relabelled pool: the nodes look deleted.
    let all = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)];
    let remaining = &all[..1];
    let plan = plan(
        &desired(remaining, true, live_of(remaining)),
        &held(&all),
        &[],
    );
    assert_eq!(plan.count(Action::Remove), 0, "{plan}");
    let withheld = plan.withheld.expect("held");
    assert_eq!(withheld.reason, HoldReason::OverBudget { allowed: 2 });
    assert!(
        withheld.changes.iter().all(|(_, node)| node.is_none()),
        "departed nodes have no Node to tell"
    );
}

#[test]
fn a_complete_but_empty_node_list_withdraws_nothing_even_on_a_small_router() {
    let all = [(1, 1), (2, 2)];
    let plan = plan(&desired(&[], true, LiveNodes::default()), &held(&all), &[]);
    assert!(plan.changes.is_empty(), "{plan}");
    assert_eq!(
        plan.withheld.map(|held| held.reason),
        Some(HoldReason::EmptyNodeList)
    );
}

#[test]
fn re_pointing_most_routes_at_once_is_held() {
    // addressType flipped: every node's next hop changes.
    let before = [(1, 1), (2, 2), (3, 3), (4, 4)];
    let after = [(1, 11), (2, 12), (3, 13), (4, 14)];
    let plan = plan(&desired(&after, true, live_of(&after)), &held(&before), &[]);
    assert_eq!(plan.count(Action::Replace), 0, "{plan}");
    assert_eq!(plan.withheld_count(), 4);
}

#[test]
fn released_withdrawals_go_whatever_the_budget() {
    let all = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)];
    let want = desired(&all[..1], true, live_of(&all[..1]));
    let held_back = plan(&want, &held(&all), &[]).withheld.expect("held");
    let budget = Budget {
        allowed: Some(0),
        released: held_back
            .changes
            .iter()
            .map(|(change, _)| *change)
            .collect(),
    };
    let plan = plan_with(&want, &held(&all), &[], &budget);
    assert_eq!(plan.count(Action::Remove), 4, "{plan}");
    assert_eq!(plan.withdrawals, 4);
    assert!(plan.withheld.is_none());
}

#[test]
fn withdrawals_within_the_budget_go_and_are_counted() {
    let all = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)];
    let want = desired(&all[..4], true, live_of(&all[..4]));
    let plan = plan(&want, &held(&all), &[]);
    assert_eq!(plan.count(Action::Remove), 1);
    assert_eq!(plan.withdrawals, 1);
}

#[test]
fn an_override_that_is_the_routers_own_address_routes_via_the_node_instead() {
    let mut want = desired(&[(1, 254)], true, LiveNodes::default());
    if let Some(route) = want.routes.get_mut(&net(1)) {
        route.fallback = Some(ip(1));
    }
    let plan = plan(&want, &held(&[(1, 1)]), &[]);
    assert!(
        plan.changes.is_empty(),
        "the route via the node stays: {plan}"
    );
    assert_eq!(plan.ignored_overrides.len(), 1);
    assert_eq!(plan.ignored_overrides[0].instead, Some(ip(1)));
    assert!(plan.to_string().contains("override ignored"), "{plan}");
}

#[test]
fn a_few_removals_of_live_nodes_pass_the_guard() {
    let all = [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)];
    let plan = plan(&desired(&all[..3], true, live_of(&all)), &held(&all), &[]);
    assert_eq!(plan.count(Action::Remove), 2);
}

#[test]
fn a_route_whose_next_hop_is_a_live_nodes_address_counts_as_that_nodes() {
    let all = [(1, 1), (2, 2), (3, 3), (4, 4)];
    // The router holds the nodes' routes under subnets nobody holds now
    // (a lost state file): the next hops still name live nodes.
    let stale = [(11, 1), (12, 2), (13, 3), (14, 4)];
    let plan = plan(&desired(&all, true, live_of(&all)), &held(&stale), &[]);
    assert_eq!(plan.withheld_count(), 4, "{plan}");
}

#[test]
fn a_foreign_route_on_or_inside_a_nodes_subnet_hits_that_node_and_a_wider_one_hits_none() {
    let live = live_of(&[(1, 1), (2, 2)]);
    let inside: IpNet = "11.11.2.128/25".parse().expect("cidr");
    let wider: IpNet = "11.11.0.0/16".parse().expect("cidr");
    assert_eq!(live.node_hit_by(&inside), Some("node2"));
    assert_eq!(live.node_hit_by(&net(2)), Some("node2"));
    assert_eq!(live.node_hit_by(&wider), None);
    assert_eq!(live.node_hit_by(&net(9)), None);
}

#[test]
fn a_second_route_of_ours_to_a_destination_is_removed_and_the_wanted_one_kept() {
    let want = [(1, 3)];
    let listed = [
        Route::new(net(1), ip(9)),
        Route::new(net(1), ip(3)),
        Route::new(net(1), ip(8)),
    ];
    let desired = desired(&want, true, live_of(&want));

    let held = Held::from_listed(&listed, &desired);
    let plan = plan(&desired, &held, &[]);

    assert_eq!(held.routes.get(&net(1)), Some(&ip(3)));
    assert_eq!(
        plan.changes,
        vec![
            Change::Remove(Route::new(net(1), ip(9))),
            Change::Remove(Route::new(net(1), ip(8)))
        ]
    );
    let mut held = held;
    held.forget(Route::new(net(1), ip(9)));
    assert_eq!(held.duplicates, vec![Route::new(net(1), ip(8))]);
    assert_eq!(
        held.routes.get(&net(1)),
        Some(&ip(3)),
        "the kept route stays"
    );
}

#[test]
fn duplicates_wait_for_the_node_list_and_the_wanted_copy_is_kept_once_it_is_known() {
    let listed = [Route::new(net(1), ip(3)), Route::new(net(1), ip(9))];
    let before_the_list = desired(&[], false, LiveNodes::default());
    let held = Held::from_listed(&listed, &before_the_list);
    let early = plan(&before_the_list, &held, &[]);
    assert!(early.changes.is_empty(), "{early}");
    assert_eq!(
        early.postponed_removals, 2,
        "the second copy and the first, which nothing wants yet"
    );

    let want = [(1, 9)];
    let known = desired(&want, true, live_of(&want));
    let plan = plan(&known, &held.sorted_for(&known), &[]);
    assert_eq!(
        plan.changes,
        vec![Change::Remove(Route::new(net(1), ip(3)))],
        "the copy via the desired next hop stays"
    );
}

mod in_step {
    //! The diff from where the router was last in step against the full
    //! diff: random changes of the desired routes (routes, next hops,
    //! overrides onto the router's own address, frozen subnets, foreign
    //! routes in the way), and the two plans must be the same.

    use super::*;
    use proptest::prelude::*;

    /// A desired route: (subnet, next hop, whether the next hop is an
    /// override with the node's own address as fallback).
    type Wanted = Vec<(u8, u8, bool)>;

    fn wanted() -> impl Strategy<Value = Wanted> {
        prop::collection::vec(
            (
                0u8..12,
                prop::sample::select(vec![1u8, 2, 3, 254]),
                any::<bool>(),
            ),
            0..10,
        )
    }

    fn desired_of(routes: &Wanted, keep: &[u8], complete: bool) -> RouterDesired {
        let routes: imbl::OrdMap<IpNet, DesiredRoute> = routes
            .iter()
            .map(|&(subnet, via, overridden)| {
                let route = DesiredRoute {
                    fallback: overridden.then(|| ip(100 + subnet)),
                    ..DesiredRoute::new(ip(via), &format!("node{subnet}"))
                };
                (net(subnet), route)
            })
            .collect();
        let live = LiveNodes::from_routes(&routes);
        RouterDesired {
            complete,
            routes,
            keep: keep.iter().map(|subnet| net(*subnet)).collect(),
            live: Arc::new(live),
        }
    }

    /// What the router holds after `plan` ran with every change taken.
    fn after(mut held: Held, plan: &SyncPlan) -> Held {
        for change in &plan.changes {
            match change {
                Change::Remove(route) => held.forget(*route),
                Change::Add(route) | Change::Replace { route, .. } => {
                    held.routes.insert(route.dst, route.via);
                }
            }
        }
        held
    }

    #[test]
    fn the_diff_since_the_router_was_in_step_is_the_full_diff() {
        use proptest::test_runner::{Config, TestRunner};
        use std::sync::atomic::{AtomicUsize, Ordering};

        let steps = prop::collection::vec(
            (
                wanted(),
                prop::collection::vec(0u8..12, 0..2),
                any::<bool>(),
                prop::collection::vec(0u8..12, 0..2),
            ),
            1..8,
        );
        // Steps that started in step: where the two diffs differ in how
        // they look, so the property says something only there.
        let in_step = AtomicUsize::new(0);
        let mut runner = TestRunner::new(Config {
            cases: 512,
            ..Config::default()
        });
        let result = runner.run(&steps, |steps| {
            let mut router = RouterState {
                own_addresses: vec![ip(254)],
                ..RouterState::default()
            };
            for (routes, keep, complete, foreign) in steps {
                let desired = desired_of(&routes, &keep, complete || routes.len() % 3 != 0);
                router.foreign = foreign
                    .iter()
                    .map(|subnet| ForeignRoute {
                        dst: net(*subnet),
                        via: Some(ip(1)),
                        detail: "static".into(),
                    })
                    .collect();
                let budget = Budget::default();
                let full = diff(&desired, &router, &budget);
                if router.in_step_with.is_some() {
                    in_step.fetch_add(1, Ordering::Relaxed);
                }
                let since = diff_since_in_step(&desired, &router, &budget);
                prop_assert_eq!(&since, &full);
                router.owned = after(router.owned.clone(), &full);
                router.in_step_with = leaves_in_step(&full, &router).then(|| desired.clone());
            }
            Ok(())
        });
        if let Err(failure) = result {
            panic!("{failure}");
        }
        let in_step = in_step.load(Ordering::Relaxed);
        assert!(in_step > 200, "only {in_step} steps started in step");
    }
}
