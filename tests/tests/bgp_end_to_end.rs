//! The controller binary with a BGP router: the seed-000 lab whose router
//! runs FRR (zebra and bgpd, configured as docs/drivers/bgp.md tells an
//! operator) and learns every node's subnet over the controller's session,
//! started from node1's namespace.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use nativeroute::lab::LabRouter;
use nativeroute_tests::kube_lab::{KubeConfig, KubeLab, LAB_LABEL};
use nativeroute_tests::lab::{
    ControllerProcess, TestLab, run_nativeroute, wait_until, write_atomically,
};
use nativeroute_tests::route_monitor::RouteMonitor;

/// The kernel's protocol number of the routes FRR's zebra installs.
const RTPROT_BGP: u8 = 186;

async fn bgp_lab() -> TestLab {
    TestLab::create_with_router(Duration::from_secs(30), LabRouter::Bgp).await
}

/// The router's BGP routes inside the pool: destination → next hop.
fn bgp_routes(lab: &TestLab) -> BTreeMap<IpNet, Option<IpAddr>> {
    lab.router_routes()
        .into_iter()
        .filter(|(_, (_, protocol))| protocol == "bgp")
        .map(|(dst, (via, _))| (dst, via))
        .collect()
}

/// What the router should hold once the controller assigned `subnets`.
fn expected(lab: &TestLab, subnets: &BTreeMap<String, IpNet>) -> BTreeMap<IpNet, Option<IpAddr>> {
    subnets
        .iter()
        .map(|(node, subnet)| {
            let address = lab.topology.node(node).expect("a lab node").address;
            (*subnet, Some(address))
        })
        .collect()
}

async fn wait_for_routes(
    lab: &TestLab,
    want: &BTreeMap<IpNet, Option<IpAddr>>,
    log: &dyn Fn() -> String,
) {
    let mut seen = BTreeMap::new();
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            seen = bgp_routes(lab);
            if &seen == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "the router holds {seen:?}, expected {want:?}; controller log:\n{}",
        log()
    );
}

/// Starts the controller and waits until every node has a subnet and the
/// router holds every route: (the controller, node → subnet, the routes).
async fn converged(
    lab: &TestLab,
) -> (
    ControllerProcess,
    BTreeMap<String, IpNet>,
    BTreeMap<IpNet, Option<IpAddr>>,
) {
    let controller = lab.start_controller();
    let subnets = lab
        .topology
        .wait_for_assignments(Duration::from_secs(20))
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{}", controller.log()));
    let want = expected(lab, &subnets);
    wait_for_routes(lab, &want, &|| controller.log()).await;
    (controller, subnets, want)
}

#[tokio::test(flavor = "multi_thread")]
async fn containers_ping_across_a_router_that_learns_the_subnets_over_bgp() {
    let lab = bgp_lab().await;
    let (_controller, subnets, _) = converged(&lab).await;
    lab.attach_containers(&subnets).await;
    for (from, to) in [("node1", "node2"), ("node2", "node3"), ("node3", "node1")] {
        assert!(lab.pings(from, to).await, "{from} → {to}");
    }
}

/// kill -9 of the controller: the router keeps every route (graceful
/// restart) and a route monitor in its kernel sees none leave, through the
/// restart and the next session's End-of-RIB. A node removed afterwards
/// is withdrawn, and only it.
#[tokio::test(flavor = "multi_thread")]
async fn a_controller_killed_and_started_again_withdraws_nothing_from_the_router() {
    let lab = bgp_lab().await;
    let monitor = RouteMonitor::start(lab.router_netns(), RTPROT_BGP).expect("a route monitor");
    let (controller, subnets, want) = converged(&lab).await;

    controller.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        bgp_routes(&lab),
        want,
        "the router dropped routes when the controller died"
    );
    let controller = lab.start_controller();
    wait_until(
        "the new session's End-of-RIB",
        Duration::from_secs(30),
        async || controller.log().matches("End-of-RIB sent").count() >= 2,
    )
    .await;
    // Time for the router to act on the End-of-RIB (drop stale routes).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bgp_routes(&lab), want);
    assert_eq!(monitor.withdrawals(), vec![], "{}", controller.log());
    assert_eq!(monitor.overruns(), 0);

    let gone = subnets.get("node3").copied().expect("node3's subnet");
    let inventory = std::fs::read_to_string(lab.inventory_path()).expect("the inventory");
    let without_node3: String = {
        let mut lines: Vec<&str> = inventory.lines().collect();
        let at = lines
            .iter()
            .position(|line| line.contains("node3"))
            .expect("node3 in the inventory");
        // `- name: node3` and its `address:` line.
        lines.drain(at..at + 2);
        lines.join("\n") + "\n"
    };
    write_atomically(&lab.inventory_path(), &without_node3);
    let mut after = want.clone();
    after.remove(&gone);
    wait_for_routes(&lab, &after, &|| controller.log()).await;
    let withdrawn: Vec<IpNet> = monitor
        .withdrawals()
        .into_iter()
        .map(|(_, dst)| IpNet::V4(dst))
        .collect();
    assert_eq!(withdrawn, vec![gone]);
}

/// `check` opens a session and reports what the router offers; `plan`
/// shows the announcements a first sync would make. Neither announces
/// anything.
#[tokio::test(flavor = "multi_thread")]
async fn check_and_plan_reach_the_bgp_router_and_announce_nothing() {
    let lab = bgp_lab().await;
    let config = lab.config.to_str().expect("utf-8 path").to_owned();
    let (ok, output) = run_nativeroute(&["check", "--config", &config]);
    assert!(ok, "{output}");
    for expected in [
        "router rtr: ok",
        "iBGP session to 192.168.2.2:179",
        "established from 192.168.2.1",
        "graceful restart yes, restart time 120 s",
    ] {
        assert!(output.contains(expected), "{expected}: {output}");
    }
    let (ok, output) = run_nativeroute(&["plan", "--config", &config]);
    assert!(ok, "{output}");
    assert!(
        output.contains("3 to add, 0 to replace, 0 to remove"),
        "{output}"
    );
    assert!(bgp_routes(&lab).is_empty(), "{:?}", bgp_routes(&lab));
}

/// The session cut under a controller that holds withdrawals back (its
/// node list went empty): the router keeps our routes as stale, the next
/// session starts with what the last one announced, the held withdrawals
/// stay held, and its End-of-RIB takes nothing. Without that, the removal
/// guard would be bypassed by any session flap.
#[tokio::test(flavor = "multi_thread")]
async fn a_session_cut_while_withdrawals_are_held_withdraws_nothing() {
    let lab = bgp_lab().await;
    let (controller, _, want) = converged(&lab).await;

    write_atomically(&lab.inventory_path(), "nodes: []\n");
    wait_until(
        "the withdrawals held back",
        Duration::from_secs(20),
        async || controller.log().contains("withdrawals held back"),
    )
    .await;
    let monitor = RouteMonitor::start(lab.router_netns(), RTPROT_BGP).expect("a route monitor");
    let sessions_before = controller.log().matches("BGP session established").count();
    // A reset from the router's side: no NOTIFICATION, so the router keeps
    // our routes as stale.
    let node1 = lab
        .topology
        .node("node1")
        .expect("node1")
        .address
        .to_string();
    nativeroute_tests::netns::run(
        "ip",
        &[
            "netns",
            "exec",
            lab.router_netns(),
            "ss",
            "-K",
            "-t",
            "dst",
            &node1,
        ],
    );
    wait_until("a new session", Duration::from_secs(30), async || {
        controller.log().matches("BGP session established").count() > sessions_before
    })
    .await;
    wait_until("its End-of-RIB", Duration::from_secs(30), async || {
        controller.log().matches("End-of-RIB sent").count() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(bgp_routes(&lab), want, "{}", controller.log());
    assert_eq!(monitor.withdrawals(), vec![], "{}", controller.log());
}

/// The routes a record of announced routes holds (`subnet next-hop` lines).
fn recorded_routes(text: &str) -> usize {
    text.lines()
        .filter(|line| {
            let mut fields = line.split_whitespace();
            fields
                .next()
                .is_some_and(|dst| dst.parse::<IpNet>().is_ok())
                && fields
                    .next()
                    .is_some_and(|via| via.parse::<IpAddr>().is_ok())
        })
        .count()
}

/// The removal guard spares routers of fewer than ten routes by default;
/// the lab's three are guarded too.
fn guard_three_routes(config: &std::path::Path) {
    let mut text = std::fs::read_to_string(config).expect("the controller's config");
    text.push_str("removalGuard:\n  minRoutes: 3\n");
    std::fs::write(config, text).expect("the controller's config is written");
}

/// Waits for a held withdrawal and the new session's End-of-RIB (in `log`,
/// the new controller's part of the log), gives the router time to drop
/// what it would drop, and checks that it dropped nothing.
async fn nothing_withdrawn_once_held(
    routes: &dyn Fn() -> BTreeMap<IpNet, Option<IpAddr>>,
    want: &BTreeMap<IpNet, Option<IpAddr>>,
    monitor: &RouteMonitor,
    log: &dyn Fn() -> String,
) {
    let held = tokio::time::timeout(Duration::from_secs(40), async {
        while !(log().contains("withdrawals held back") && log().contains("End-of-RIB sent")) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(
        held.is_ok(),
        "no withdrawal held back, or no End-of-RIB from the new session:\n{}",
        log()
    );
    // Time for the router to act on the End-of-RIB (drop stale routes).
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(&routes(), want, "{}", log());
    assert_eq!(monitor.withdrawals(), vec![], "{}", log());
    assert!(
        log().contains("what the router's last BGP sessions announced is restored"),
        "{}",
        log()
    );
}

/// A new process whose inventory lost most nodes (cut short by hand or by
/// a tool): the router keeps every route. The last process's sessions
/// recorded what they announced beside the state file; the new session
/// announces that again, so the removal guard sees the withdrawals and
/// holds them. Without the record, the new session's End-of-RIB would
/// take those routes past the guard.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_process_with_most_nodes_gone_from_its_inventory_withdraws_nothing() {
    let lab = bgp_lab().await;
    guard_three_routes(&lab.config);
    let monitor = RouteMonitor::start(lab.router_netns(), RTPROT_BGP).expect("a route monitor");
    let (controller, _, want) = converged(&lab).await;
    let mut record = lab.state_path().into_os_string();
    record.push(".bgp");
    wait_until(
        "the record of what the session announced",
        Duration::from_secs(10),
        async || {
            let text = std::fs::read_to_string(&record).unwrap_or_default();
            serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|json| {
                    Some(recorded_routes(
                        json.pointer("/routers/rtr/routes")?.as_str()?,
                    ))
                })
                == Some(want.len())
        },
    )
    .await;
    controller.kill();
    // The log file goes on with the next controller's lines.
    let earlier = std::fs::read_to_string(lab.log_path()).map_or(0, |log| log.len());

    let node1 = lab.topology.node("node1").expect("node1").address;
    write_atomically(
        &lab.inventory_path(),
        &format!("nodes:\n  - name: node1\n    address: {node1}\n"),
    );
    let controller = lab.start_controller();
    nothing_withdrawn_once_held(&|| bgp_routes(&lab), &want, &monitor, &|| {
        controller
            .log()
            .get(earlier..)
            .unwrap_or_default()
            .to_owned()
    })
    .await;
}

/// The same across a leader handover in a cluster: the new leader no
/// longer selects two of the three Nodes (a selector typo, labels taken
/// away). The old leader's record is a ConfigMap in its namespace; the new
/// leader reads it before its first session, and holds the withdrawals.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_leader_that_no_longer_selects_most_nodes_withdraws_nothing() {
    let lab = KubeLab::create(KubeConfig {
        router: LabRouter::Bgp,
        ..KubeConfig::default()
    })
    .await;
    guard_three_routes(&lab.config);
    let monitor = RouteMonitor::start(lab.lab.router_netns(), RTPROT_BGP).expect("a route monitor");
    lab.register_lab_nodes();
    let controller = lab.start_controller("leader-a");
    let subnets = lab.wait_for_subnets(&["node1", "node2", "node3"]).await;
    let want: BTreeMap<IpNet, Option<IpAddr>> = lab
        .lab_routes(&subnets)
        .into_iter()
        .map(|(dst, via)| (dst, Some(via)))
        .collect();
    wait_for_routes(&lab.lab, &want, &|| controller.log()).await;
    wait_until(
        "the ConfigMap recording what the session announced",
        Duration::from_secs(10),
        async || {
            lab.api
                .config_map("nativeroute", "nativeroute-bgp-rtr")
                .and_then(|map| map.data?.get("routes").cloned())
                .is_some_and(|routes| recorded_routes(&routes) == want.len())
        },
    )
    .await;
    let confirmed_at = lab
        .api
        .config_map("nativeroute", "nativeroute-bgp-rtr")
        .and_then(|map| {
            map.metadata
                .annotations?
                .get("nativeroute.io/confirmed-at")
                .cloned()
        });
    assert!(
        confirmed_at.is_some_and(|at| at.parse::<k8s_openapi::jiff::Timestamp>().is_ok()),
        "the record says when it was confirmed"
    );
    controller.kill();
    // The log file goes on with the next controller's lines.
    let earlier = std::fs::read_to_string(lab.log_path()).map_or(0, |log| log.len());

    for name in ["node2", "node3"] {
        lab.edit(name, |node| {
            if let Some(labels) = node.metadata.labels.as_mut() {
                labels.remove(LAB_LABEL);
            }
        });
    }
    let controller = lab.start_controller("leader-b");
    nothing_withdrawn_once_held(&|| bgp_routes(&lab.lab), &want, &monitor, &|| {
        controller
            .log()
            .get(earlier..)
            .unwrap_or_default()
            .to_owned()
    })
    .await;
}
