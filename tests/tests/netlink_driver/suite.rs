//! The netlink driver against a real kernel, each test in its own network
//! namespace: a router with 192.168.2.2/24 on p3p1 and 192.168.3.2/24 on
//! p3p2, so next hops in 192.168.2.x and 192.168.3.x are on-link.
//! Runs as root; never skipped. Run twice, by `netlink_driver.rs` and
//! `netlink_driver_hearing.rs`: with the driver's default way of reading a
//! router this small, and with the way it reads one carrying a full table.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use ipnet::IpNet;
use nativeroute_router_drivers::netlink::{NetlinkDriver, NetlinkRouter};
use nativeroute_router_drivers::{
    Change, ChangeError, DriverError, Fence, ForeignRoute, Ownership, Route, RouterDriver,
};
use nativeroute_tests::netns::{Netns, run};
use nativeroute_tests::route_monitor::RouteMonitor;

const MAIN: u32 = 254;

fn net(text: &str) -> IpNet {
    text.parse().expect("a CIDR")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an IP address")
}

fn route(dst: &str, via: &str) -> Route {
    Route::new(net(dst), ip(via))
}

fn ownership(pool: &[&str]) -> Ownership {
    Ownership {
        pool: pool.iter().map(|cidr| net(cidr)).collect(),
        netlink_protocol: Ownership::DEFAULT_NETLINK_PROTOCOL,
        route_tag: Ownership::DEFAULT_ROUTE_TAG,
        bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
    }
}

/// The seed router: two connected networks, each a veth pair.
fn router_namespace() -> Netns {
    let ns = Netns::new();
    ns.add_connected_network("p3p1", "192.168.2.2/24");
    ns.add_connected_network("p3p2", "192.168.3.2/24");
    ns
}

async fn driver_with(ns: &Netns, table: u32, pool: &[&str]) -> NetlinkDriver {
    let router = NetlinkRouter {
        name: "core-1".to_owned(),
        netns: Some(ns.name().to_owned()),
        table,
        ownership: ownership(pool),
    };
    let driver = NetlinkDriver::connect(router)
        .await
        .expect("driver connects");
    match crate::HEAR_OTHERS_FROM {
        Some(routes) => driver.hear_others_from(routes),
        None => driver,
    }
}

async fn driver(ns: &Netns, table: u32) -> NetlinkDriver {
    driver_with(ns, table, &["11.11.0.0/16", "fd11:11::/48"]).await
}

async fn apply_ok(driver: &mut NetlinkDriver, changes: &[Change]) {
    let outcomes = driver.apply(changes).await.expect("batch attempted");
    assert_eq!(outcomes.len(), changes.len());
    for (change, outcome) in changes.iter().zip(&outcomes) {
        assert_eq!(outcome, &Ok(()), "{change}");
    }
}

async fn owned(driver: &mut NetlinkDriver) -> Vec<Route> {
    driver.list().await.expect("list").owned
}

/// The `ip route` line for `dst` in `table`, if the kernel has one.
fn kernel_route(ns: &Netns, family: &str, table: u32, dst: &str) -> Option<String> {
    let shown = ns.ip(&format!("{family} route show table {table} {dst}"));
    shown.lines().next().map(str::to_owned)
}

/// iproute2 prints our protocol as a number, or by name if rt_protos.d names it.
fn marked_ours(line: &str) -> bool {
    line.contains("proto 203") || line.contains("proto nativeroute")
}

fn nexthops(ns: &Netns) -> Vec<String> {
    ns.ip("nexthop show").lines().map(str::to_owned).collect()
}

/// What the controller would do: the changes that make `held` into `desired`.
fn diff(desired: &[Route], held: &[Route]) -> Vec<Change> {
    let held: BTreeMap<IpNet, IpAddr> = held.iter().map(|r| (r.dst, r.via)).collect();
    let wanted: BTreeMap<IpNet, IpAddr> = desired.iter().map(|r| (r.dst, r.via)).collect();
    let mut changes = Vec::new();
    for (&dst, &via) in &wanted {
        match held.get(&dst) {
            None => changes.push(Change::Add(Route::new(dst, via))),
            Some(&old_via) if old_via != via => changes.push(Change::Replace {
                route: Route::new(dst, via),
                old_via,
            }),
            Some(_) => {}
        }
    }
    for (&dst, &via) in &held {
        if !wanted.contains_key(&dst) {
            changes.push(Change::Remove(Route::new(dst, via)));
        }
    }
    changes
}

#[tokio::test]
async fn add_installs_routes_marked_ours_through_nexthop_objects() {
    let ns = router_namespace();
    let mut driver = driver(&ns, MAIN).await;
    let routes = [
        route("11.11.1.0/24", "192.168.2.1"),
        route("11.11.3.0/24", "192.168.3.4"),
    ];

    apply_ok(&mut driver, &routes.map(Change::Add)).await;

    for r in &routes {
        let line = kernel_route(&ns, "-4", MAIN, &r.dst.to_string()).expect("route installed");
        assert!(marked_ours(&line), "{line}");
        assert!(line.contains(&format!("via {} ", r.via)), "{line}");
        assert!(
            line.contains("nhid "),
            "installed through a nexthop object: {line}"
        );
    }
    let objects = nexthops(&ns);
    assert_eq!(objects.len(), 2, "{objects:?}");
    assert!(objects.iter().all(|nh| marked_ours(nh)), "{objects:?}");
    assert_eq!(owned(&mut driver).await, routes.to_vec());
}

#[tokio::test]
async fn replace_moves_the_route_and_tidy_leaves_no_old_nexthop_behind() {
    let ns = router_namespace();
    let mut driver = driver(&ns, MAIN).await;
    apply_ok(
        &mut driver,
        &[Change::Add(route("11.11.1.0/24", "192.168.2.1"))],
    )
    .await;

    let moved = route("11.11.1.0/24", "192.168.3.5");
    apply_ok(
        &mut driver,
        &[Change::Replace {
            route: moved,
            old_via: ip("192.168.2.1"),
        }],
    )
    .await;

    let line = kernel_route(&ns, "-4", MAIN, "11.11.1.0/24").expect("route still there");
    assert!(line.contains("via 192.168.3.5 dev p3p2"), "{line}");
    assert_eq!(nexthops(&ns).len(), 2, "the old nexthop waits for tidy");
    driver.tidy().await.expect("tidy");
    let objects = nexthops(&ns);
    assert_eq!(objects.len(), 1, "{objects:?}");
    assert!(objects[0].contains("via 192.168.3.5"), "{objects:?}");
    assert_eq!(owned(&mut driver).await, vec![moved]);
}

#[tokio::test]
async fn remove_withdraws_the_route_and_tidy_its_nexthop_once_unused() {
    let ns = router_namespace();
    let mut driver = driver(&ns, MAIN).await;
    let first = route("11.11.1.0/24", "192.168.2.1");
    let second = route("11.11.2.0/24", "192.168.2.1");
    apply_ok(&mut driver, &[Change::Add(first), Change::Add(second)]).await;
    assert_eq!(nexthops(&ns).len(), 1, "one nexthop object per gateway");

    apply_ok(&mut driver, &[Change::Remove(first)]).await;
    assert_eq!(kernel_route(&ns, "-4", MAIN, "11.11.1.0/24"), None);
    driver.tidy().await.expect("tidy");
    assert_eq!(nexthops(&ns).len(), 1, "still used by the other route");

    apply_ok(&mut driver, &[Change::Remove(second)]).await;
    assert_eq!(kernel_route(&ns, "-4", MAIN, "11.11.2.0/24"), None);
    assert_eq!(
        nexthops(&ns).len(),
        1,
        "withdrawing does not wait for the clean-up"
    );
    driver.tidy().await.expect("tidy");
    assert_eq!(nexthops(&ns), Vec::<String>::new());
    assert_eq!(owned(&mut driver).await, vec![]);
}

#[tokio::test]
async fn list_reports_owned_routes_and_foreign_ones_in_the_pool_and_nothing_else() {
    let ns = router_namespace();
    ns.ip("route add 11.11.9.0/24 via 192.168.2.9");
    ns.ip("route add 10.50.0.0/16 via 192.168.2.9");
    ns.ip("route add 10.60.0.0/16 via 192.168.2.9 proto 203");
    let untouched = || {
        ["11.11.9.0/24", "10.50.0.0/16", "10.60.0.0/16"]
            .map(|dst| kernel_route(&ns, "-4", MAIN, dst).expect("route present"))
    };
    let before = untouched();
    let mut driver = driver(&ns, MAIN).await;
    let ours = route("11.11.1.0/24", "192.168.2.1");
    apply_ok(&mut driver, &[Change::Add(ours)]).await;

    let listed = driver.list().await.expect("list");
    assert_eq!(listed.owned, vec![ours]);
    let foreign = ForeignRoute {
        dst: net("11.11.9.0/24"),
        via: Some(ip("192.168.2.9")),
        detail: "proto boot dev p3p1".to_owned(),
    };
    assert_eq!(listed.foreign, vec![foreign]);

    let added = route("11.11.8.0/24", "192.168.3.8");
    apply_ok(&mut driver, &[Change::Add(added), Change::Remove(ours)]).await;
    assert_eq!(untouched(), before);
    assert_eq!(owned(&mut driver).await, vec![added]);
}

#[tokio::test]
async fn foreign_nexthops_and_the_routes_using_them_are_never_touched() {
    let ns = router_namespace();
    ns.ip("nexthop add id 7 via 192.168.2.50 dev p3p1");
    ns.ip("nexthop add id 8 via 192.168.2.1 dev p3p1 proto 4");
    ns.ip("route add 11.11.7.0/24 nhid 7");
    let before = nexthops(&ns);
    let mut driver = driver(&ns, MAIN).await;

    let listed = driver.list().await.expect("list");
    assert_eq!(listed.foreign.len(), 1);
    assert_eq!(listed.foreign[0].via, Some(ip("192.168.2.50")));
    assert!(
        listed.foreign[0].detail.contains("nhid 7"),
        "{:?}",
        listed.foreign[0]
    );

    // Same gateway as foreign nexthop 8: ours is a separate object.
    let ours = route("11.11.1.0/24", "192.168.2.1");
    apply_ok(&mut driver, &[Change::Add(ours)]).await;
    assert_eq!(nexthops(&ns).len(), 3);
    apply_ok(&mut driver, &[Change::Remove(ours)]).await;
    driver.tidy().await.expect("tidy");
    assert_eq!(nexthops(&ns), before);
    assert!(kernel_route(&ns, "-4", MAIN, "11.11.7.0/24").is_some());
}

#[tokio::test]
async fn a_foreign_route_holding_the_destination_is_in_the_way() {
    let ns = router_namespace();
    ns.ip("route add 11.11.9.0/24 via 192.168.2.9");
    let before = kernel_route(&ns, "-4", MAIN, "11.11.9.0/24");
    let mut driver = driver(&ns, MAIN).await;
    let wanted = route("11.11.9.0/24", "192.168.2.1");

    let outcomes = driver
        .apply(&[
            Change::Add(wanted),
            Change::Replace {
                route: wanted,
                old_via: ip("192.168.2.9"),
            },
        ])
        .await
        .expect("batch attempted");

    let in_the_way = Err(ChangeError::ForeignRouteInTheWay { dst: wanted.dst });
    assert_eq!(outcomes, vec![in_the_way.clone(), in_the_way]);
    assert_eq!(kernel_route(&ns, "-4", MAIN, "11.11.9.0/24"), before);
    driver.tidy().await.expect("tidy");
    assert_eq!(kernel_route(&ns, "-4", MAIN, "11.11.9.0/24"), before);
    assert_eq!(
        nexthops(&ns),
        Vec::<String>::new(),
        "no unused nexthop of ours left"
    );
}

#[tokio::test]
async fn an_off_link_next_hop_fails_only_its_own_change() {
    let ns = router_namespace();
    let mut driver = driver(&ns, MAIN).await;
    let first = route("11.11.1.0/24", "192.168.2.1");
    let off_link = route("11.11.2.0/24", "10.99.0.1");
    let third = route("11.11.3.0/24", "192.168.3.4");

    let outcomes = driver
        .apply(&[
            Change::Add(first),
            Change::Add(off_link),
            Change::Add(third),
        ])
        .await
        .expect("batch attempted");

    let not_on_link = ChangeError::NextHopNotOnLink {
        dst: off_link.dst,
        via: off_link.via,
    };
    assert_eq!(outcomes, vec![Ok(()), Err(not_on_link), Ok(())]);
    assert_eq!(owned(&mut driver).await, vec![first, third]);
}

#[tokio::test]
async fn a_change_the_kernel_refuses_is_reported_and_the_rest_goes_through() {
    let ns = router_namespace();
    let mut driver = driver(&ns, MAIN).await;
    let host_bits_set = route("11.11.1.5/24", "192.168.2.1");
    let fine = route("11.11.2.0/24", "192.168.2.1");

    let outcomes = driver
        .apply(&[Change::Add(host_bits_set), Change::Add(fine)])
        .await
        .expect("batch attempted");

    match &outcomes[0] {
        Err(ChangeError::Refused { dst, message }) => {
            assert_eq!(*dst, host_bits_set.dst);
            assert!(message.contains("(EINVAL)"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(outcomes[1], Ok(()));
    assert_eq!(owned(&mut driver).await, vec![fine]);
}

/// A replace goes to the kernel as one NLM_F_REPLACE of our route, after
/// the nexthop object for the new next hop exists: a next hop the driver
/// sees is off-link, or one the kernel refuses (the connected network's
/// broadcast address: "Nexthop has invalid gateway"), is reported, and the
/// route keeps its old next hop.
#[tokio::test]
async fn a_replace_onto_a_refused_next_hop_keeps_the_old_route() {
    let ns = router_namespace();
    let mut driver = driver(&ns, MAIN).await;
    let ours = route("11.11.1.0/24", "192.168.2.1");
    apply_ok(&mut driver, &[Change::Add(ours)]).await;
    let before = kernel_route(&ns, "-4", MAIN, "11.11.1.0/24");

    let off_link = route("11.11.1.0/24", "10.99.0.1");
    let broadcast = route("11.11.1.0/24", "192.168.2.255");
    for refused in [off_link, broadcast] {
        let outcomes = driver
            .apply(&[Change::Replace {
                route: refused,
                old_via: ours.via,
            }])
            .await
            .expect("batch attempted");

        assert!(
            matches!(
                &outcomes[..],
                [Err(
                    ChangeError::NextHopNotOnLink { .. } | ChangeError::Refused { .. }
                )]
            ),
            "{refused}: {outcomes:?}"
        );
        assert_eq!(kernel_route(&ns, "-4", MAIN, "11.11.1.0/24"), before);
        assert_eq!(owned(&mut driver).await, vec![ours]);
    }
}

/// The controller asks to remove our route to P via A, from a list that
/// showed it; since then our route to P moved to another next hop (our own
/// replace, or one made by hand with our protocol), or someone else's route
/// took P. The removal takes only our route through A: none of those.
#[tokio::test]
async fn a_removal_takes_only_our_route_through_the_next_hop_it_names() {
    let ns = router_namespace();
    let mut driver = driver(&ns, MAIN).await;
    let a = "192.168.2.1";
    let listed = [
        route("11.11.1.0/24", a),
        route("11.11.2.0/24", a),
        route("11.11.3.0/24", a),
    ];
    apply_ok(&mut driver, &listed.map(Change::Add)).await;
    assert_eq!(owned(&mut driver).await, listed.to_vec());

    // Ours, moved by our own replace.
    let moved = route("11.11.1.0/24", "192.168.2.7");
    apply_ok(
        &mut driver,
        &[Change::Replace {
            route: moved,
            old_via: ip(a),
        }],
    )
    .await;
    // Ours, moved by hand (a plain route with our protocol), and someone
    // else's, both seen by a read of the driver's since.
    ns.ip("route replace 11.11.2.0/24 via 192.168.2.9 proto 203");
    ns.ip("route replace 11.11.3.0/24 via 192.168.2.9 proto static");
    driver.list().await.expect("list");
    let before: Vec<_> = ["11.11.1.0/24", "11.11.2.0/24", "11.11.3.0/24"]
        .map(|dst| kernel_route(&ns, "-4", MAIN, dst))
        .to_vec();

    apply_ok(&mut driver, &listed.map(Change::Remove)).await;

    let after: Vec<_> = ["11.11.1.0/24", "11.11.2.0/24", "11.11.3.0/24"]
        .map(|dst| kernel_route(&ns, "-4", MAIN, dst))
        .to_vec();
    assert_eq!(after, before);
    assert!(before.iter().all(Option::is_some), "{before:?}");
    assert_eq!(
        owned(&mut driver).await,
        vec![moved, route("11.11.2.0/24", "192.168.2.9")]
    );
}

/// Two routes of ours to one destination (the kernel keeps a second one
/// appended beside the first): a removal names the next hop, and only the
/// route through it goes.
#[tokio::test]
async fn a_removal_of_one_of_two_routes_of_ours_to_a_destination_takes_that_one() {
    let ns = router_namespace();
    let mut driver = driver(&ns, MAIN).await;
    let first = route("11.11.1.0/24", "192.168.2.1");
    apply_ok(&mut driver, &[Change::Add(first)]).await;
    ns.ip("route append 11.11.1.0/24 via 192.168.2.9 proto 203");
    let second = route("11.11.1.0/24", "192.168.2.9");
    let mut both = owned(&mut driver).await;
    both.sort();
    assert_eq!(both, vec![first, second]);

    apply_ok(&mut driver, &[Change::Remove(second)]).await;

    assert_eq!(owned(&mut driver).await, vec![first]);
    let left = ns.ip("route show table main 11.11.1.0/24");
    assert!(
        left.contains("via 192.168.2.1 ") && !left.contains("192.168.2.9"),
        "{left}"
    );
}

#[tokio::test]
async fn reapplying_what_the_router_holds_changes_nothing() {
    let ns = router_namespace();
    let mut driver = driver(&ns, MAIN).await;
    let desired = [
        route("11.11.1.0/24", "192.168.2.1"),
        route("11.11.2.0/24", "192.168.3.3"),
    ];
    apply_ok(&mut driver, &desired.map(Change::Add)).await;
    let state = || (ns.ip("route show table all"), nexthops(&ns));
    let before = state();

    assert_eq!(diff(&desired, &owned(&mut driver).await), vec![]);
    apply_ok(&mut driver, &desired.map(Change::Add)).await;
    let same_via = desired.map(|route| Change::Replace {
        route,
        old_via: route.via,
    });
    apply_ok(&mut driver, &same_via).await;

    assert_eq!(state(), before);
    assert_eq!(owned(&mut driver).await, desired.to_vec());
}

#[tokio::test]
async fn a_named_table_holds_the_routes_and_main_stays_clean() {
    let ns = router_namespace();
    let mut table_100 = driver(&ns, 100).await;
    let routes = [
        route("11.11.1.0/24", "192.168.2.1"),
        route("11.11.2.0/24", "192.168.3.3"),
    ];

    apply_ok(&mut table_100, &routes.map(Change::Add)).await;

    for r in &routes {
        let line = kernel_route(&ns, "-4", 100, &r.dst.to_string()).expect("in table 100");
        assert!(marked_ours(&line), "{line}");
        assert_eq!(kernel_route(&ns, "-4", MAIN, &r.dst.to_string()), None);
    }
    assert_eq!(owned(&mut table_100).await, routes.to_vec());
    assert_eq!(owned(&mut driver(&ns, MAIN).await).await, vec![]);

    apply_ok(&mut table_100, &routes.map(Change::Remove)).await;
    assert_eq!(ns.ip("route show table 100"), "");
    table_100.tidy().await.expect("tidy");
    assert_eq!(nexthops(&ns), Vec::<String>::new());
}

#[tokio::test]
async fn ipv6_routes_work_like_ipv4_ones() {
    let ns = router_namespace();
    ns.ip("address add fd00:2::2/64 dev p3p1 nodad");
    ns.ip("address add fd00:3::2/64 dev p3p2 nodad");
    let mut driver = driver(&ns, MAIN).await;
    let first = route("fd11:11:0:1::/64", "fd00:2::1");

    apply_ok(&mut driver, &[Change::Add(first)]).await;
    let line = kernel_route(&ns, "-6", MAIN, "fd11:11:0:1::/64").expect("route installed");
    assert!(
        marked_ours(&line) && line.contains("via fd00:2::1"),
        "{line}"
    );
    assert_eq!(owned(&mut driver).await, vec![first]);

    let moved = route("fd11:11:0:1::/64", "fd00:3::7");
    apply_ok(
        &mut driver,
        &[Change::Replace {
            route: moved,
            old_via: first.via,
        }],
    )
    .await;
    assert_eq!(owned(&mut driver).await, vec![moved]);
    driver.tidy().await.expect("tidy");
    assert_eq!(nexthops(&ns).len(), 1);

    apply_ok(&mut driver, &[Change::Remove(moved)]).await;
    assert_eq!(kernel_route(&ns, "-6", MAIN, "fd11:11:0:1::/64"), None);
    driver.tidy().await.expect("tidy");
    assert_eq!(nexthops(&ns), Vec::<String>::new());
}

#[tokio::test]
async fn a_nexthop_deleted_by_hand_shows_its_routes_missing_until_re_added() {
    let ns = router_namespace();
    let mut driver = driver(&ns, MAIN).await;
    let desired = [route("11.11.1.0/24", "192.168.2.1")];
    apply_ok(&mut driver, &desired.map(Change::Add)).await;
    let id = nexthops(&ns)[0]
        .split_whitespace()
        .nth(1)
        .expect("nexthop id")
        .to_owned();

    ns.ip(&format!("nexthop del id {id}"));

    let repair = diff(&desired, &owned(&mut driver).await);
    assert_eq!(repair, vec![Change::Add(desired[0])]);
    apply_ok(&mut driver, &repair).await;
    assert_eq!(owned(&mut driver).await, desired.to_vec());
}

/// A namespace deleted and made again under the same name is another
/// namespace. The driver's socket in the old one would take every write
/// and show its old routes, with no drift ever seen: the next list sees the
/// new namespace as it is, the next batch programs it, and a namespace
/// that is gone is an error, not a success.
#[tokio::test]
async fn a_namespace_deleted_and_made_again_is_the_one_programmed_next() {
    let ns = router_namespace();
    let mut driver = driver(&ns, MAIN).await;
    let ours = route("11.11.1.0/24", "192.168.2.1");
    apply_ok(&mut driver, &[Change::Add(ours)]).await;

    run("ip", &["netns", "del", ns.name()]);
    let error = driver.list().await.expect_err("the namespace is gone");
    assert!(
        matches!(&error, DriverError::Netns { netns, .. } if netns == ns.name()),
        "{error}"
    );
    run("ip", &["netns", "add", ns.name()]);
    ns.ip("link set lo up");
    ns.add_connected_network("p3p1", "192.168.2.2/24");

    assert_eq!(
        owned(&mut driver).await,
        vec![],
        "the new namespace holds nothing yet"
    );
    apply_ok(&mut driver, &[Change::Add(ours)]).await;
    let line = kernel_route(&ns, "-4", MAIN, "11.11.1.0/24").expect("in the new namespace");
    assert!(marked_ours(&line), "{line}");
    assert_eq!(owned(&mut driver).await, vec![ours]);
}

#[tokio::test]
async fn a_missing_namespace_is_a_netns_error_naming_router_and_namespace() {
    nativeroute_tests::netns::require_root();
    let router = NetlinkRouter {
        name: "core-1".to_owned(),
        netns: Some("nrt-missing".to_owned()),
        table: MAIN,
        ownership: ownership(&["11.11.0.0/16"]),
    };

    let error = NetlinkDriver::connect(router)
        .await
        .err()
        .expect("connect fails");

    assert!(
        matches!(&error, DriverError::Netns { router, netns, .. }
        if router == "core-1" && netns == "nrt-missing"),
        "{error:?}"
    );
    assert!(error.to_string().contains("core-1"), "{error}");
}

/// `count` routes 11.x.y.0/24, each via its own gateway on 10.200.0.0/16.
fn distinct_gateway_routes(count: usize) -> Vec<Route> {
    (0..count)
        .map(|i| {
            let dst = format!("11.{}.{}.0/24", i / 256, i % 256);
            let via = format!("10.200.{}.{}", i / 250, i % 250 + 2);
            route(&dst, &via)
        })
        .collect()
}

async fn add_and_remove_distinct_gateways(count: usize) {
    let ns = Netns::new();
    ns.add_connected_network("p1", "10.200.0.1/16");
    let mut driver = driver_with(&ns, MAIN, &["11.0.0.0/8"]).await;
    let routes = distinct_gateway_routes(count);
    let adds: Vec<Change> = routes.iter().copied().map(Change::Add).collect();
    let removes: Vec<Change> = routes.iter().copied().map(Change::Remove).collect();

    let started = Instant::now();
    apply_ok(&mut driver, &adds).await;
    let added = started.elapsed();
    let mut listed = owned(&mut driver).await;
    listed.sort();
    let mut expected = routes.clone();
    expected.sort();
    assert_eq!(listed, expected);
    assert_eq!(nexthops(&ns).len(), count);

    let started = Instant::now();
    apply_ok(&mut driver, &removes).await;
    let removed = started.elapsed();
    assert_eq!(owned(&mut driver).await, vec![]);
    let started = Instant::now();
    driver.tidy().await.expect("tidy");
    let tidied = started.elapsed();
    assert_eq!(nexthops(&ns), Vec::<String>::new());
    println!(
        "{count} routes with distinct gateways: add {added:?}, remove {removed:?}, tidy {tidied:?}"
    );
}

#[tokio::test]
async fn a_thousand_routes_with_distinct_gateways_in_one_batch_all_succeed() {
    add_and_remove_distinct_gateways(1_000).await;
}

/// Also prints how long 10,000 take (`-- --nocapture`); no timing is asserted.
#[tokio::test]
async fn ten_thousand_routes_with_distinct_gateways_in_one_batch_all_succeed() {
    add_and_remove_distinct_gateways(10_000).await;
}

#[tokio::test]
async fn a_replace_never_overwrites_a_foreign_route_that_took_the_destination_since_the_last_read()
{
    let ns = router_namespace();
    let mut driver = driver(&ns, MAIN).await;
    let ours = route("11.11.1.0/24", "192.168.2.1");
    apply_ok(&mut driver, &[Change::Add(ours)]).await;
    assert_eq!(owned(&mut driver).await, vec![ours]);

    // An administrator takes the destination over by hand after our last read.
    ns.ip("route replace 11.11.1.0/24 via 192.168.2.9 proto static");
    let theirs = kernel_route(&ns, "-4", MAIN, "11.11.1.0/24");

    let moved = route("11.11.1.0/24", "192.168.2.7");
    let outcomes = driver
        .apply(&[Change::Replace {
            route: moved,
            old_via: ours.via,
        }])
        .await
        .expect("batch attempted");
    assert_eq!(
        outcomes,
        vec![Err(ChangeError::ForeignRouteInTheWay { dst: moved.dst })]
    );
    assert_eq!(kernel_route(&ns, "-4", MAIN, "11.11.1.0/24"), theirs);
}

#[tokio::test]
async fn a_replace_never_takes_a_foreign_route_that_shares_the_destination_with_ours() {
    let ns = router_namespace();
    let mut driver = driver(&ns, MAIN).await;
    let ours = route("11.11.1.0/24", "192.168.2.1");
    apply_ok(&mut driver, &[Change::Add(ours)]).await;
    // The kernel lets a second IPv4 route to the same destination sit beside ours.
    ns.ip("route prepend 11.11.1.0/24 via 192.168.2.9 proto static");
    let both = ns.ip("route show table main 11.11.1.0/24");

    let moved = route("11.11.1.0/24", "192.168.2.7");
    let outcomes = driver
        .apply(&[Change::Replace {
            route: moved,
            old_via: ours.via,
        }])
        .await
        .expect("batch attempted");
    assert_eq!(
        outcomes,
        vec![Err(ChangeError::ForeignRouteInTheWay { dst: moved.dst })]
    );
    assert_eq!(ns.ip("route show table main 11.11.1.0/24"), both);
}

/// The kernel takes a batch in chunks, one sendmsg each, and the driver
/// looks at the fence before each. Here the term ends as soon as the
/// kernel announces the first route of a large batch: the changes reported
/// done are exactly the routes the kernel holds, the rest are fenced, and
/// there are some of each.
#[tokio::test]
async fn a_term_ending_mid_batch_stops_it_between_chunks() {
    let ns = router_namespace();
    let mut driver = driver_with(&ns, MAIN, &["11.11.0.0/16"]).await;
    let routes: Vec<Route> = (0..20_000u32)
        .map(|i| {
            let dst = format!("11.11.{}.{}/32", i / 256, i % 256);
            route(&dst, &format!("192.168.2.{}", i % 200 + 3))
        })
        .collect();
    let adds: Vec<Change> = routes.iter().copied().map(Change::Add).collect();
    let monitor = RouteMonitor::start(ns.name(), Ownership::DEFAULT_NETLINK_PROTOCOL)
        .expect("the route monitor starts");
    let (ended, term) = tokio::sync::watch::channel(false);
    let watcher = std::thread::spawn(move || {
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        while monitor.present() == 0 && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_micros(100));
        }
        ended.send_replace(true);
    });

    let outcomes = driver
        .apply_fenced(&adds, &Fence::new(term))
        .await
        .expect("a fenced batch is no failure of the router");
    let _ = watcher.join();

    let mut done = Vec::new();
    let mut fenced = 0;
    for (route, outcome) in routes.iter().zip(&outcomes) {
        match outcome {
            Ok(()) => done.push(*route),
            Err(ChangeError::Fenced { dst }) if *dst == route.dst => fenced += 1,
            Err(other) => panic!("{route}: {other}"),
        }
    }
    println!(
        "{} of {} routes went in before the term ended",
        done.len(),
        routes.len()
    );
    assert!(
        !done.is_empty(),
        "nothing went in: the term ended too early"
    );
    assert!(
        fenced > 0,
        "the whole batch went in: the fence was never seen"
    );
    let mut held = owned(&mut driver).await;
    held.sort();
    done.sort();
    assert_eq!(held, done);
}
