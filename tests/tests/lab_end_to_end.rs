//! The core loop end to end on the seed-000 topology: a node inventory goes
//! in, the router's kernel routing table comes out, and containers on
//! different nodes reach each other through the router.

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;
use nativeroute_tests::lab::{TestLab, http_get, router_routes, run_nativeroute, wait_until};

const RESYNC: Duration = Duration::from_secs(2);
const SOON: Duration = Duration::from_secs(10);

/// The seed's inventory with each node pinned to the seed's subnet, so
/// the containers can exist before the controller first runs.
const PINNED_INVENTORY: &str = "
nodes:
  - name: node1
    address: 192.168.2.1
    annotations:
      nativeroute.io/subnet: 11.11.1.0/24
  - name: node2
    address: 192.168.3.3
    annotations:
      nativeroute.io/subnet: 11.11.2.0/24
  - name: node3
    address: 192.168.3.4
    annotations:
      nativeroute.io/subnet: 11.11.3.0/24
";

fn net(text: &str) -> IpNet {
    text.parse().expect("cidr")
}

/// The next hop of the router's route to `dst`, as text ("" if none).
fn next_hop_of(routes: &BTreeMap<IpNet, (Option<std::net::IpAddr>, String)>, dst: &str) -> String {
    routes
        .get(&net(dst))
        .and_then(|(via, _)| *via)
        .map(|via| via.to_string())
        .unwrap_or_default()
}

fn seed_subnets() -> BTreeMap<String, IpNet> {
    [
        ("node1", "11.11.1.0/24"),
        ("node2", "11.11.2.0/24"),
        ("node3", "11.11.3.0/24"),
    ]
    .into_iter()
    .map(|(node, subnet)| (node.to_owned(), net(subnet)))
    .collect()
}

/// A lab with pinned nodes and containers attached, no controller yet.
async fn pinned_lab() -> TestLab {
    let lab = TestLab::create(RESYNC).await;
    lab.write_inventory(PINNED_INVENTORY);
    lab.attach_containers(&seed_subnets()).await;
    lab
}

async fn wait_for_routes(lab: &TestLab, count: usize) {
    let netns = lab.router_netns().to_owned();
    wait_until(
        &format!("the router holds {count} routes in the pool"),
        SOON,
        async || router_routes(&netns).len() == count,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_reach_each_other_across_the_router_only_once_the_controller_runs() {
    let lab = pinned_lab().await;
    assert!(
        !lab.pings("node1", "node3").await,
        "node1 reached node3 with no route on the router"
    );

    let mut controller = lab.start_controller();
    wait_for_routes(&lab, 3).await;
    controller.assert_running();

    let routes = lab.router_routes();
    assert_eq!(next_hop_of(&routes, "11.11.1.0/24"), "192.168.2.1");
    assert_eq!(next_hop_of(&routes, "11.11.2.0/24"), "192.168.3.3");
    assert_eq!(next_hop_of(&routes, "11.11.3.0/24"), "192.168.3.4");
    for (dst, (_, protocol)) in &routes {
        assert!(
            protocol == "203" || protocol == "0xcb" || protocol == "nativeroute",
            "{dst} has protocol {protocol}"
        );
    }
    for (from, to) in [
        ("node1", "node3"),
        ("node3", "node1"),
        ("node2", "node3"),
        ("node1", "node2"),
    ] {
        assert!(lab.pings(from, to).await, "{from} cannot reach {to}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_removed_from_the_inventory_loses_its_route_and_then_its_subnet() {
    let lab = pinned_lab().await;
    let _controller = lab.start_controller();
    wait_for_routes(&lab, 3).await;
    assert!(lab.pings("node1", "node3").await);

    let without_node3 = &PINNED_INVENTORY[..PINNED_INVENTORY
        .find("  - name: node3")
        .expect("node3 entry")];
    lab.write_inventory(without_node3);
    wait_for_routes(&lab, 2).await;
    assert!(!lab.router_routes().contains_key(&net("11.11.3.0/24")));
    assert!(
        !lab.pings("node1", "node3").await,
        "node3 still reachable after its route went"
    );
    assert!(
        lab.pings("node1", "node2").await,
        "node2 lost its route with node3's"
    );
    // Once idle, the controller also deletes node3's nexthop object.
    wait_until("node3's nexthop object is gone", SOON, async || {
        let nexthops = lab.ip_in_router(&["nexthop", "show"]);
        nexthops.lines().count() == 2 && !nexthops.contains("192.168.3.4")
    })
    .await;
    // node3 no longer holds a subnet; it is only kept for it during the
    // grace period, in case it was missing by mistake.
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(lab.state_path()).expect("state file"))
            .expect("JSON");
    assert!(
        state["nodes"].get("node3").is_none(),
        "node3 still holds a subnet: {state}"
    );
    assert_eq!(
        state["departed"]["node3"]["subnets"][0], "11.11.3.0/24",
        "{state}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_route_deleted_by_hand_comes_back_within_one_resync() {
    let lab = pinned_lab().await;
    let _controller = lab.start_controller();
    wait_for_routes(&lab, 3).await;

    lab.ip_in_router(&["route", "del", "11.11.3.0/24"]);
    assert!(!lab.router_routes().contains_key(&net("11.11.3.0/24")));
    let netns = lab.router_netns().to_owned();
    let took = wait_until(
        "the deleted route is back",
        RESYNC * 2 + Duration::from_secs(1),
        async || router_routes(&netns).contains_key(&net("11.11.3.0/24")),
    )
    .await;
    assert!(
        took <= RESYNC + Duration::from_secs(1),
        "repair took {took:?}, resync is {RESYNC:?}"
    );
    assert!(lab.pings("node1", "node3").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_route_in_the_pool_is_left_alone() {
    let lab = pinned_lab().await;
    // An administrator's own routes: one in a free part of the pool, one on
    // node2's subnet (which blocks nativeroute's route there).
    lab.ip_in_router(&["route", "add", "11.11.200.0/24", "via", "192.168.3.4"]);
    lab.ip_in_router(&[
        "route",
        "add",
        "11.11.2.0/24",
        "via",
        "192.168.3.4",
        "proto",
        "static",
    ]);
    let before = lab.router_routes();

    let controller = lab.start_controller();
    wait_for_routes(&lab, 4).await; // node1, node3 and the two foreign routes
    let after = lab.router_routes();
    assert_eq!(
        after[&net("11.11.200.0/24")],
        before[&net("11.11.200.0/24")]
    );
    assert_eq!(after[&net("11.11.2.0/24")], before[&net("11.11.2.0/24")]);

    // Removing every node (on purpose: an empty list alone is held, and a
    // release lets it through) removes nativeroute's routes and nothing else.
    lab.write_inventory("nodes: []\n");
    wait_until("the empty list's withdrawals are held", SOON, async || {
        controller.log().contains("withdrawals held back")
    })
    .await;
    let (released, output) = run_nativeroute(&["release", "--pid", &controller.pid().to_string()]);
    assert!(released, "{output}");
    wait_for_routes(&lab, 2).await;
    let left = lab.router_routes();
    assert_eq!(
        left.keys().copied().collect::<Vec<_>>(),
        vec![net("11.11.2.0/24"), net("11.11.200.0/24")]
    );
    let log = controller.log();
    assert!(
        log.contains("ForeignRoute"),
        "the blocked route was not reported:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_controller_killed_and_restarted_removes_nothing_and_changes_nothing() {
    // The lab's own inventory: subnets assigned by the controller, not pinned.
    let (lab, controller, _) = assigned_lab().await;
    let routes_before = lab.router_fingerprint();
    let state_before = std::fs::read_to_string(lab.state_path()).expect("state file");

    controller.kill();
    assert_eq!(
        lab.router_fingerprint(),
        routes_before,
        "a killed controller changed the router"
    );

    let mut restarted = lab.start_controller();
    // Two resyncs: the restarted controller has listed and compared at least once.
    tokio::time::sleep(RESYNC * 2).await;
    restarted.assert_running();
    assert_eq!(
        lab.router_fingerprint(),
        routes_before,
        "the restart changed the router"
    );
    assert_eq!(
        std::fs::read_to_string(lab.state_path()).expect("state file"),
        state_before
    );
    assert!(lab.pings("node1", "node3").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_node_entry_costs_only_that_node() {
    let lab = pinned_lab().await;
    let _controller = lab.start_controller();
    wait_for_routes(&lab, 3).await;

    // node2's address becomes garbage: its route must stay (nothing is
    // applied for it), the others carry on, and a new good node is added.
    let broken = PINNED_INVENTORY.replace("192.168.3.3", "192.168.3.three")
        + "  - name: node4\n    address: 192.168.3.44\n    annotations:\n      nativeroute.io/subnet: 11.11.4.0/24\n";
    lab.write_inventory(&broken);
    wait_for_routes(&lab, 4).await;
    let routes = lab.router_routes();
    assert_eq!(next_hop_of(&routes, "11.11.2.0/24"), "192.168.3.3");
    assert_eq!(next_hop_of(&routes, "11.11.4.0/24"), "192.168.3.44");
    assert!(lab.pings("node1", "node2").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pin_outside_the_pool_is_refused_and_the_node_gets_a_subnet_from_the_pool() {
    let lab = TestLab::create(RESYNC).await;
    lab.write_inventory(&PINNED_INVENTORY.replace("11.11.3.0/24", "10.0.3.0/24"));
    let controller = lab.start_controller();
    wait_for_routes(&lab, 3).await;
    let routes = lab.router_routes();
    assert!(!routes.contains_key(&net("10.0.3.0/24")));
    let node3 = routes
        .iter()
        .find(|(_, (via, _))| *via == Some("192.168.3.4".parse().expect("ip")));
    assert!(node3.is_some(), "node3 has no route: {routes:?}");
    let log = controller.log();
    assert!(
        log.contains("10.0.3.0/24") && log.contains("outside the pool"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_shows_the_changes_and_makes_none() {
    let lab = pinned_lab().await;
    let config = lab.config.to_str().expect("utf-8 path").to_owned();
    let before = lab.router_fingerprint();
    let (ok, output) = run_nativeroute(&["plan", "--config", &config]);
    assert!(ok, "{output}");
    assert!(
        output.contains("3 to add, 0 to replace, 0 to remove"),
        "{output}"
    );
    assert!(
        output.contains("+ add 11.11.3.0/24 via 192.168.3.4"),
        "{output}"
    );
    assert_eq!(lab.router_fingerprint(), before, "plan changed the router");
    assert!(!lab.state_path().exists(), "plan wrote the state file");

    let (ok, output) = run_nativeroute(&["check", "--config", &config]);
    assert!(ok, "{output}");
    assert!(output.contains("router rtr: ok"), "{output}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_config_is_refused_with_the_field_and_value_and_touches_nothing() {
    let lab = pinned_lab().await;
    let text = std::fs::read_to_string(&lab.config).expect("config");
    for (bad, field, value) in [
        (
            text.replace("192.168.3.0/24", "192.168.3.0/33"),
            "routers[0].nodeNetworks[1]",
            "192.168.3.0/33",
        ),
        (
            text.replace("11.11.0.0/24", "11.0.0.0/8"),
            "pool.reserved[0]",
            "11.0.0.0/8",
        ),
        (
            text.replace("driver: netlink", "driver: telnet"),
            "routers[0].driver",
            "telnet",
        ),
    ] {
        assert_ne!(bad, text, "the substitution for {field} did not apply");
        let path = lab.config.with_file_name("bad.yaml");
        std::fs::write(&path, bad).expect("write");
        let path = path.to_str().expect("utf-8").to_owned();
        for command in ["run", "check", "plan"] {
            let (ok, output) = run_nativeroute(&[command, "--config", &path]);
            assert!(!ok, "{command} accepted a bad config");
            assert!(
                output.contains(field) && output.contains(value),
                "{command}: {output}"
            );
            assert!(!output.contains("panicked"), "{output}");
        }
    }
    assert!(lab.router_routes().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_and_probes_tell_what_the_router_holds() {
    let lab = pinned_lab().await;
    let (_controller, address) = lab.start_controller_with_metrics();
    wait_until("/healthz answers", SOON, async || {
        http_get(address, "/healthz").is_some_and(|(s, _)| s == 200)
    })
    .await;
    wait_for_routes(&lab, 3).await;
    wait_until("/readyz says ready", SOON, async || {
        http_get(address, "/readyz").is_some_and(|(s, _)| s == 200)
    })
    .await;
    let metrics = async || {
        http_get(address, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    };
    wait_until("the routes gauge says 3", SOON, async || {
        metrics()
            .await
            .contains("nativeroute_routes{router=\"rtr\"} 3")
    })
    .await;
    let text = metrics().await;
    assert!(
        text.contains("nativeroute_router_up{router=\"rtr\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "nativeroute_route_changes_total{router=\"rtr\",action=\"add\",result=\"ok\"} 3"
        ),
        "{text}"
    );
    assert!(
        text.contains("nativeroute_pool_subnets{family=\"ipv4\",state=\"used\"} 3"),
        "{text}"
    );
    assert!(
        text.contains("nativeroute_sync_duration_seconds_count{router=\"rtr\"}"),
        "{text}"
    );
    assert_eq!(http_get(address, "/nope").map(|(s, _)| s), Some(404));
}

/// Adds a router to the lab's config (the YAML as the lab wrote it).
fn add_router(lab: &TestLab, router: &str) {
    let text = std::fs::read_to_string(&lab.config).expect("config");
    let mut config: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).expect("lab config is YAML");
    let extra: serde_yaml_ng::Value = serde_yaml_ng::from_str(router).expect("router YAML");
    config
        .get_mut("routers")
        .and_then(|routers| routers.as_sequence_mut())
        .expect("routers list")
        .push(extra);
    std::fs::write(
        &lab.config,
        serde_yaml_ng::to_string(&config).expect("YAML"),
    )
    .expect("write config");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_router_or_change_is_retried_with_backoff_and_delays_nobody_else() {
    let lab = pinned_lab().await; // resync every 2 s
    // A router whose namespace does not exist, and a node whose next hop
    // the lab router cannot reach (not on any of its networks).
    add_router(
        &lab,
        "{name: ghost, driver: netlink, netns: nre-no-such-ns}",
    );
    lab.write_inventory(&format!(
        "{PINNED_INVENTORY}  - name: node9\n    address: 10.9.9.9\n    annotations:\n      nativeroute.io/routers: rtr\n"
    ));
    let controller = lab.start_controller();
    wait_for_routes(&lab, 3).await;
    assert!(
        lab.pings("node1", "node3").await,
        "the working router waited for the broken one"
    );

    let watched = Duration::from_secs(6);
    tokio::time::sleep(watched).await;
    let log = controller.log();
    let ghost_attempts = log
        .lines()
        .filter(|l| l.contains("sync failed") && l.contains("ghost"))
        .count();
    let refused_syncs = log
        .lines()
        .filter(|l| l.contains("router synced") && l.contains("failed=true"))
        .count();
    // Backoff from 200 ms doubling: about 6 attempts in 6 s, whatever the
    // resync interval. Without backoff it would be thousands.
    assert!(
        (3..=10).contains(&ghost_attempts),
        "{ghost_attempts} attempts on the missing router in {watched:?}"
    );
    assert!(
        (2..=10).contains(&refused_syncs),
        "{refused_syncs} syncs refusing node9 in {watched:?}"
    );
    assert!(
        log.contains("nre-no-such-ns"),
        "the missing namespace is not named in the log"
    );
    assert!(
        log.contains("10.9.9.9") && log.contains("not on-link"),
        "node9's failure is not explained"
    );

    // With node9's retries backed off by now, other nodes' changes still go
    // out at once, and housekeeping still runs.
    let node2 = "  - name: node2\n    address: 192.168.3.3\n    annotations:\n      nativeroute.io/subnet: 11.11.2.0/24\n";
    assert!(PINNED_INVENTORY.contains(node2));
    lab.write_inventory(&format!(
        "{}  - name: node9\n    address: 10.9.9.9\n    annotations:\n      nativeroute.io/routers: rtr\n  \
         - name: node4\n    address: 192.168.3.44\n    annotations:\n      nativeroute.io/subnet: 11.11.40.0/24\n",
        PINNED_INVENTORY.replace(node2, "")
    ));
    let netns = lab.router_netns().to_owned();
    let took = wait_until("node4 is routed", SOON, async || {
        router_routes(&netns).contains_key(&net("11.11.40.0/24"))
    })
    .await;
    assert!(
        took < Duration::from_secs(1),
        "node4's route took {took:?} behind node9's refusals"
    );
    // node2's departure is believed once it has been missing for a second.
    wait_until("node2 is no longer routed", SOON, async || {
        !router_routes(&netns).contains_key(&net("11.11.2.0/24"))
    })
    .await;
    wait_until("node2's nexthop object is gone", SOON, async || {
        !lab.ip_in_router(&["nexthop", "show"])
            .contains("192.168.3.3")
    })
    .await;
}

/// A lab on the lab's own inventory, with subnets assigned by the
/// controller and containers attached, all routes in place.
async fn assigned_lab() -> (
    TestLab,
    nativeroute_tests::lab::ControllerProcess,
    BTreeMap<String, IpNet>,
) {
    let lab = TestLab::create(RESYNC).await;
    let controller = lab.start_controller();
    let assigned = lab
        .topology
        .wait_for_assignments(SOON)
        .await
        .unwrap_or_else(|err| panic!("{err:#}"));
    lab.attach_containers(&assigned).await;
    wait_for_routes(&lab, 3).await;
    (lab, controller, assigned)
}

fn assignments(lab: &TestLab) -> BTreeMap<String, IpNet> {
    nativeroute::lab::read_assignments(&lab.state_path()).unwrap_or_else(|err| panic!("{err:#}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_half_written_inventory_withdraws_no_route_and_changes_no_subnet() {
    use std::io::Write as _;
    let (lab, _controller, assigned) = assigned_lab().await;
    let full = std::fs::read_to_string(lab.inventory_path()).expect("inventory");
    let cut = full.find("- name: node2").expect("node2 entry");

    // Watch the router all along: no route may go missing, not even briefly.
    let netns = lab.router_netns().to_owned();
    let watcher = tokio::task::spawn_blocking(move || {
        let until = std::time::Instant::now() + Duration::from_millis(2500);
        let mut gaps = Vec::new();
        while std::time::Instant::now() < until {
            let routes = router_routes(&netns);
            if routes.len() < 3 {
                gaps.push(
                    routes
                        .keys()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" "),
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        gaps
    });

    // A careless writer: truncate, write node1, pause, write the rest.
    let mut file = std::fs::File::create(lab.inventory_path()).expect("open for writing");
    file.write_all(&full.as_bytes()[..cut]).expect("write");
    file.sync_all().expect("sync");
    tokio::time::sleep(Duration::from_millis(400)).await;
    file.write_all(&full.as_bytes()[cut..]).expect("write");
    drop(file);

    let gaps = watcher.await.expect("route watcher");
    assert!(
        gaps.is_empty(),
        "routes went missing during the half-written read: {gaps:?}"
    );
    wait_for_routes(&lab, 3).await;
    tokio::time::sleep(RESYNC).await;
    assert_eq!(assignments(&lab), assigned, "a node's subnet changed");
    for (from, to) in [("node1", "node3"), ("node1", "node2")] {
        assert!(lab.pings(from, to).await, "{from} cannot reach {to}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_entry_broke_while_the_controller_was_down_keeps_its_route_and_subnet() {
    let (lab, controller, assigned) = assigned_lab().await;
    let routes_before = lab.router_fingerprint();
    controller.kill();

    let full = std::fs::read_to_string(lab.inventory_path()).expect("inventory");
    let broken = full.replace("192.168.3.3", "192.168.3.three");
    assert_ne!(broken, full);
    lab.write_inventory(&broken);

    let restarted = lab.start_controller();
    tokio::time::sleep(RESYNC * 2).await;
    assert_eq!(
        lab.router_fingerprint(),
        routes_before,
        "node2's route was touched"
    );
    assert_eq!(assignments(&lab), assigned);
    assert!(lab.pings("node1", "node2").await);
    let log = restarted.log();
    assert!(
        log.contains("192.168.3.three"),
        "the bad entry is not reported:\n{log}"
    );
}

/// The controller with the inventory's folder mounted read-only (as a
/// ConfigMap volume is), in a mount namespace of its own; output to `log`.
fn controller_beside_a_read_only_inventory(
    lab: &TestLab,
    config: &std::path::Path,
    log: &std::path::Path,
) -> std::process::Child {
    let folder = lab.inventory_path();
    let folder = folder.parent().expect("the inventory's folder");
    let log = std::fs::File::create(log).expect("the log file");
    std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@""#)
        .arg("sh")
        .arg(folder)
        .arg(nativeroute_tests::lab::nativeroute_binary())
        .args(["run", "--metrics-address", "off", "--config"])
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("the log file"))
        .stderr(log)
        .spawn()
        .expect("unshare starts the controller")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_inventory_on_a_read_only_mount_needs_a_state_file_elsewhere_and_says_so() {
    let lab = pinned_lab().await;
    let elsewhere = tempfile::tempdir().expect("a writable folder");
    let log = elsewhere.path().join("controller.log");
    let folder = lab.inventory_path();
    let folder = folder.parent().expect("the inventory's folder").to_owned();

    // The state file beside the inventory: refused at once, with the field
    // and the folder named, instead of retrying a write that cannot work.
    let mut refused = controller_beside_a_read_only_inventory(&lab, &lab.config, &log);
    let mut status = None;
    wait_until("the controller exits", SOON, async || {
        status = refused.try_wait().expect("the controller's status");
        status.is_some()
    })
    .await;
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.expect("exited").success(), "{output}");
    for piece in [
        "nodes.stateFile",
        &folder.display().to_string(),
        "Read-only file system",
    ] {
        assert!(output.contains(piece), "{piece:?} not in:\n{output}");
    }
    assert!(lab.router_routes().is_empty(), "nothing was programmed");

    // nodes.stateFile on a writable volume: the controller runs, programs
    // the router and records the assignments there.
    let state = elsewhere.path().join("state.json");
    let mut config: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(&lab.config).expect("the lab config"))
            .expect("YAML");
    config["nodes"]["stateFile"] = state.display().to_string().into();
    let moved = elsewhere.path().join("config.yaml");
    std::fs::write(
        &moved,
        serde_yaml_ng::to_string(&config).expect("the config as YAML"),
    )
    .expect("the config is written");
    let mut running = controller_beside_a_read_only_inventory(&lab, &moved, &log);
    wait_for_routes(&lab, 3).await;
    let recorded = std::fs::read_to_string(&state).unwrap_or_default();
    let exited = running.try_wait().expect("the controller's status");
    let _ = running.kill();
    let _ = running.wait();
    assert!(exited.is_none(), "the controller exited");
    assert!(recorded.contains("node3"), "state file: {recorded}");
    assert!(!lab.state_path().exists(), "no state beside the inventory");
}
