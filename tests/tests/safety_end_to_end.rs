//! Never a mass outage, end to end on the real kernel: an emptied node
//! list, a node file cut short, a selector that matches nothing or a slow
//! bleed of removals withdraws nothing until an operator releases it; an
//! unusable next-hop override never takes a node's route away. Each test
//! watches the router's kernel for withdrawals while it runs.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use nativeroute_tests::kube_lab::{KubeConfig, KubeLab};
use nativeroute_tests::lab::{
    ControllerProcess, TestLab, http_get, router_routes, run_nativeroute, wait_until,
};
use nativeroute_tests::route_monitor::RouteMonitor;

const RESYNC: Duration = Duration::from_secs(2);
const SOON: Duration = Duration::from_secs(10);
const OUR_PROTOCOL: u8 = 203;

fn net(text: &str) -> IpNet {
    text.parse().expect("cidr")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

/// An inventory of the three lab nodes on the seed's subnets, plus
/// `extra` nodes on the router's second segment (routable, though no host
/// answers there), each pinned to 11.11.(10+i).0/24.
fn inventory(extra: usize, node3_annotations: &[(&str, &str)]) -> String {
    let mut text = String::from(
        "nodes:\n\
         \x20 - {name: node1, address: 192.168.2.1, annotations: {nativeroute.io/subnet: 11.11.1.0/24}}\n\
         \x20 - {name: node2, address: 192.168.3.3, annotations: {nativeroute.io/subnet: 11.11.2.0/24}}\n\
         \x20 - name: node3\n\
         \x20   address: 192.168.3.4\n\
         \x20   annotations:\n\
         \x20     nativeroute.io/subnet: 11.11.3.0/24\n",
    );
    for (key, value) in node3_annotations {
        text.push_str(&format!("      {key}: \"{value}\"\n"));
    }
    for i in 0..extra {
        text.push_str(&format!(
            "  - {{name: extra{i}, address: 192.168.3.{}, annotations: {{nativeroute.io/subnet: 11.11.{}.0/24}}}}\n",
            100 + i,
            10 + i
        ));
    }
    text
}

async fn wait_for_route_count(lab: &TestLab, what: &str, count: usize) {
    let netns = lab.router_netns().to_owned();
    wait_until(what, SOON, async || router_routes(&netns).len() == count).await;
}

/// The value of `nativeroute_withdrawals_held` for the lab's router.
fn withdrawals_held(metrics: SocketAddr) -> Option<u64> {
    let (_, body) = http_get(metrics, "/metrics")?;
    body.lines()
        .find(|line| line.starts_with("nativeroute_withdrawals_held{router=\"rtr\"}"))?
        .split_whitespace()
        .last()?
        .parse()
        .ok()
}

async fn wait_for_held(metrics: SocketAddr, count: u64) {
    wait_until(
        &format!("nativeroute_withdrawals_held says {count}"),
        SOON,
        async || withdrawals_held(metrics) == Some(count),
    )
    .await;
}

fn release(controller: &ControllerProcess) {
    let (ok, output) = run_nativeroute(&["release", "--pid", &controller.pid().to_string()]);
    assert!(ok, "nativeroute release failed: {output}");
}

fn assert_no_withdrawal(monitor: &RouteMonitor, when: &str) {
    let withdrawn = monitor.withdrawals();
    assert!(
        withdrawn.is_empty(),
        "{when}: routes were withdrawn: {:?}",
        withdrawn.iter().map(|(_, dst)| dst).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_emptied_node_file_withdraws_nothing_until_an_operator_releases_it() {
    let lab = TestLab::create(RESYNC).await;
    lab.write_inventory(&inventory(0, &[]));
    let (mut controller, metrics) = lab.start_controller_with_metrics();
    wait_for_route_count(&lab, "the three nodes are routed", 3).await;
    let monitor = RouteMonitor::start(lab.router_netns(), OUR_PROTOCOL).expect("route monitor");

    lab.write_inventory("nodes: []\n");
    wait_for_held(metrics, 3).await;
    // Several resyncs: the hold is not a delay, it stands.
    tokio::time::sleep(RESYNC * 2).await;
    assert_eq!(lab.router_routes().len(), 3);
    assert_no_withdrawal(&monitor, "with an empty node list");
    let log = controller.log();
    assert!(
        log.contains("withdrawals held back") && log.contains("the node list is empty"),
        "the hold is not logged with its reason:\n{log}"
    );
    let (_, plan) = run_nativeroute(&["plan", "--config", &lab.config.display().to_string()]);
    assert!(
        plan.contains("3 changes held") && plan.contains("the node list is empty"),
        "plan does not show the held withdrawals:\n{plan}"
    );

    // Decommissioning on purpose: one step lets them through.
    release(&controller);
    wait_for_route_count(&lab, "the released withdrawals went", 0).await;
    wait_for_held(metrics, 0).await;
    controller.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_file_cut_short_is_held_and_a_slow_bleed_is_held_within_the_window() {
    let lab = TestLab::create(RESYNC).await;
    lab.write_inventory(&inventory(9, &[]));
    let (mut controller, metrics) = lab.start_controller_with_metrics();
    wait_for_route_count(&lab, "twelve nodes are routed", 12).await;
    let monitor = RouteMonitor::start(lab.router_netns(), OUR_PROTOCOL).expect("route monitor");

    // Cut to the three lab nodes: 9 of 12 would go, 6 may.
    lab.write_inventory(&inventory(0, &[]));
    wait_for_held(metrics, 9).await;
    assert_eq!(lab.router_routes().len(), 12);
    assert_no_withdrawal(&monitor, "with 9 of 12 nodes gone at once");

    // Back to all twelve, then a bleed: 4 go (within 6), then 4 more are
    // held, since the window has spent 4 of its 6.
    lab.write_inventory(&inventory(9, &[]));
    wait_for_held(metrics, 0).await;
    lab.write_inventory(&inventory(5, &[]));
    wait_for_route_count(&lab, "four departures within the budget went", 8).await;
    lab.write_inventory(&inventory(1, &[]));
    wait_for_held(metrics, 4).await;
    tokio::time::sleep(RESYNC).await;
    assert_eq!(lab.router_routes().len(), 8, "the bleed went on");

    release(&controller);
    wait_for_route_count(&lab, "the released withdrawals went", 4).await;
    controller.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_next_hop_in_the_node_file_keeps_the_route_and_a_valid_one_moves_it() {
    let lab = TestLab::create(RESYNC).await;
    lab.write_inventory(&inventory(0, &[]));
    let mut controller = lab.start_controller();
    wait_for_route_count(&lab, "the three nodes are routed", 3).await;
    let monitor = RouteMonitor::start(lab.router_netns(), OUR_PROTOCOL).expect("route monitor");
    let node3 = net("11.11.3.0/24");
    let via_of = |lab: &TestLab| lab.router_routes().get(&node3).and_then(|(via, _)| *via);

    for (value, why) in [
        ("8.8.8.8", "no router serves 8.8.8.8"),
        ("11.11.1.10", "inside the pool"),
        ("192.168.3.2", "address of this router itself"),
    ] {
        lab.write_inventory(&inventory(0, &[("nativeroute.io/next-hop", value)]));
        wait_until(
            &format!("the ignored override {value} is logged"),
            SOON,
            async || {
                let log = controller.log();
                log.contains("InvalidAnnotation") && log.contains(value) && log.contains(why)
            },
        )
        .await;
        tokio::time::sleep(RESYNC).await;
        assert_eq!(via_of(&lab), Some(ip("192.168.3.4")), "next hop {value}");
    }
    assert_no_withdrawal(&monitor, "with unusable overrides");

    // A valid override moves the route; a typo afterwards keeps it there;
    // removing the annotation brings it back to the node's address.
    lab.write_inventory(&inventory(0, &[("nativeroute.io/next-hop", "192.168.3.9")]));
    wait_until("node3 is routed via its override", SOON, async || {
        via_of(&lab) == Some(ip("192.168.3.9"))
    })
    .await;
    lab.write_inventory(&inventory(0, &[("nativeroute.io/next-hop", "8.8.4.4")]));
    tokio::time::sleep(RESYNC).await;
    assert_eq!(
        via_of(&lab),
        Some(ip("192.168.3.9")),
        "a typo moved the route off its last good override"
    );
    lab.write_inventory(&inventory(0, &[]));
    wait_until(
        "node3 is routed via its own address again",
        SOON,
        async || via_of(&lab) == Some(ip("192.168.3.4")),
    )
    .await;
    assert_no_withdrawal(&monitor, "moving the override");
    controller.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn unusable_next_hop_annotations_are_warnings_and_the_node_stays_routed() {
    let converged = KubeLab::converged(KubeConfig::default()).await;
    let (lab, mut controller, subnets) = (converged.lab, converged.controller, converged.subnets);
    let mut want: BTreeMap<IpNet, IpAddr> = converged.routes;
    let monitor = RouteMonitor::start(lab.lab.router_netns(), OUR_PROTOCOL).expect("route monitor");

    for (node, value, why) in [
        ("node2", "8.8.8.8", "no router serves 8.8.8.8"),
        ("node2", "11.11.1.10", "inside the pool"),
        ("node3", "192.168.3.2", "address of this router itself"),
    ] {
        lab.annotate(node, "nativeroute.io/next-hop", Some(value));
        let kind = lab
            .wait_for_event(
                node,
                "InvalidAnnotation",
                &["nativeroute.io/next-hop", value, why],
            )
            .await;
        assert_eq!(kind, "Warning");
        tokio::time::sleep(RESYNC).await;
        assert_eq!(lab.routes(), want, "next hop {value} on {node}");
    }
    assert_no_withdrawal(&monitor, "with unusable overrides");

    lab.annotate("node3", "nativeroute.io/next-hop", Some("192.168.3.9"));
    want.insert(subnets["node3"], ip("192.168.3.9"));
    lab.wait_for_routes("node3 is routed via its override", &want)
        .await;
    lab.annotate("node3", "nativeroute.io/next-hop", None);
    want.insert(subnets["node3"], ip("192.168.3.4"));
    lab.wait_for_routes("node3 is routed via its address again", &want)
        .await;
    assert_no_withdrawal(&monitor, "moving the override");
    controller.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_with_a_selector_that_matches_nothing_withdraws_nothing() {
    let converged = KubeLab::converged(KubeConfig::default()).await;
    let (lab, controller) = (converged.lab, converged.controller);
    let want = converged.routes;
    let monitor = RouteMonitor::start(lab.lab.router_netns(), OUR_PROTOCOL).expect("route monitor");
    controller.stop(SOON);

    let config = std::fs::read_to_string(&lab.config).expect("config");
    let typo = config.replace("nativeroute.io/e2e=yes", "nativeroute.io/e2e=yse");
    assert_ne!(config, typo, "the selector was not found in the config");
    std::fs::write(&lab.config, typo).expect("config written");
    let mut restarted = lab.start_controller("leader-b");
    wait_until("the hold is logged", SOON, async || {
        std::fs::read_to_string(lab.log_path())
            .unwrap_or_default()
            .contains("withdrawals held back")
    })
    .await;
    tokio::time::sleep(RESYNC * 2).await;
    assert_eq!(lab.routes(), want);
    assert_no_withdrawal(&monitor, "with a selector that matches nothing");
    restarted.assert_running();
}
