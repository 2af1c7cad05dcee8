//! The run's own judgement, checked with plain values: the plan replays
//! from its seed, the desired routes follow the controller's documented
//! rules, and a withdrawal is blamed only when the node was routable the
//! whole time.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use nativeroute_tests::apiserver::realistic_node;

use super::cluster::Incarnation;
use super::desired::{Diff, desired};
use super::model::LABEL;
use super::observe::{RouteHistory, Router};
use super::plan::{Plan, Step, sizes};
use super::verdict::{Cause, Evidence};

fn net(text: &str) -> Ipv4Net {
    text.parse().expect("a subnet")
}

fn ip(text: &str) -> Ipv4Addr {
    text.parse().expect("an address")
}

#[test]
fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
    let mut small = sizes(false);
    small.events = 300;
    let first = Plan::generate(42, &small);
    assert_eq!(first.digest(), Plan::generate(42, &small).digest());
    assert_ne!(first.digest(), Plan::generate(43, &small).digest());
    assert_eq!(first.events(), 300);
    let kills = first
        .steps
        .iter()
        .filter(|s| matches!(s, Step::Kill { .. }))
        .count();
    assert_eq!(kills, small.restarts);
    assert!(
        matches!(first.steps.last(), Some(Step::Checkpoint)),
        "the run ends with a checkpoint"
    );
}

/// A Node as the controller leaves it: selected, its subnet written to
/// spec.podCIDR and the annotation, `annotations` on top.
fn node(name: &str, address: &str, subnet: &str, annotations: &[(&str, &str)]) -> Node {
    let mut node = realistic_node(name, address.parse().expect("an address"));
    node.metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(LABEL.into(), "yes".into());
    let notes = node.metadata.annotations.get_or_insert_with(BTreeMap::new);
    notes.insert("nativeroute.io/subnet".into(), subnet.into());
    for (key, value) in annotations {
        notes.insert((*key).into(), (*value).into());
    }
    node.spec.get_or_insert_with(Default::default).pod_cidr = Some(subnet.into());
    node
}

#[test]
fn desired_routes_follow_overrides_each_router_can_use() {
    let nodes = [
        node("plain", "192.168.2.10", "11.11.1.0/24", &[]),
        node(
            "moved",
            "192.168.2.11",
            "11.11.2.0/24",
            &[("nativeroute.io/next-hop", "192.168.3.233")],
        ),
        // The netlink router's own address: it keeps the node's address
        // there, FRR (which logs in on 192.168.3.2) uses the override.
        node(
            "own",
            "192.168.2.12",
            "11.11.3.0/24",
            &[("nativeroute.io/next-hop", "192.168.2.2")],
        ),
        node(
            "typo",
            "192.168.2.13",
            "11.11.4.0/24",
            &[("nativeroute.io/next-hop", "8.8.8.8")],
        ),
        node(
            "pool",
            "192.168.2.14",
            "11.11.5.0/24",
            &[("nativeroute.io/next-hop", "11.11.7.10")],
        ),
        node(
            "two",
            "192.168.2.15",
            "11.11.6.0/24",
            &[("nativeroute.io/next-hop", "192.168.2.201,192.168.3.233")],
        ),
        node(
            "excluded",
            "192.168.2.16",
            "11.11.8.0/24",
            &[("nativeroute.io/exclude", " true ")],
        ),
        node(
            "typo-excluded",
            "192.168.2.17",
            "11.11.9.0/24",
            &[("nativeroute.io/exclude", "yes")],
        ),
    ];
    let want = desired(&nodes);
    let kernel = &want.routes[&Router::Kernel];
    let frr = &want.routes[&Router::Frr];
    assert_eq!(kernel[&net("11.11.1.0/24")], ip("192.168.2.10"));
    assert_eq!(kernel[&net("11.11.2.0/24")], ip("192.168.3.233"));
    assert_eq!(kernel[&net("11.11.3.0/24")], ip("192.168.2.12"));
    assert_eq!(frr[&net("11.11.3.0/24")], ip("192.168.2.2"));
    assert_eq!(kernel[&net("11.11.4.0/24")], ip("192.168.2.13"));
    assert_eq!(kernel[&net("11.11.5.0/24")], ip("192.168.2.14"));
    assert_eq!(kernel[&net("11.11.6.0/24")], ip("192.168.2.15"));
    assert!(!kernel.contains_key(&net("11.11.8.0/24")));
    assert_eq!(kernel[&net("11.11.9.0/24")], ip("192.168.2.17"));
    assert!(want.duplicates.is_empty() && want.mismatched.is_empty());
}

#[test]
fn shared_subnets_unselected_nodes_and_stale_annotations_are_found() {
    let mut unselected = node("unselected", "192.168.3.10", "11.11.1.0/24", &[]);
    unselected.metadata.labels = None;
    let mut pinned_over = node("pinned-over", "192.168.3.11", "11.11.2.0/24", &[]);
    pinned_over
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert("nativeroute.io/subnet".into(), "11.11.9.0/24".into());
    let mut fresh = node("fresh", "192.168.3.12", "11.11.3.0/24", &[]);
    fresh.spec = None;
    let nodes = [
        node("holder", "192.168.3.13", "11.11.1.0/24", &[]),
        unselected,
        pinned_over,
        fresh,
    ];
    let want = desired(&nodes);
    assert_eq!(want.duplicates.len(), 1, "{:?}", want.duplicates);
    assert_eq!(want.mismatched, vec!["pinned-over".to_owned()]);
    assert_eq!(want.unassigned, vec!["fresh".to_owned()]);
    assert_eq!(want.routes[&Router::Kernel].len(), 2);
}

#[test]
fn a_diff_names_missing_extra_and_moved_routes() {
    let want = BTreeMap::from([
        (net("11.11.1.0/24"), ip("192.168.2.10")),
        (net("11.11.2.0/24"), ip("192.168.2.11")),
    ]);
    let have = BTreeMap::from([
        (net("11.11.2.0/24"), ip("192.168.2.99")),
        (net("11.11.3.0/24"), ip("192.168.2.12")),
    ]);
    let diff = Diff::between(&want, &have);
    assert_eq!(
        diff.missing,
        vec![(net("11.11.1.0/24"), ip("192.168.2.10"))]
    );
    assert_eq!(diff.extra, vec![(net("11.11.3.0/24"), ip("192.168.2.12"))]);
    assert_eq!(diff.wrong.len(), 1);
    assert!(Diff::between(&want, &want).is_empty());
}

/// Incarnations of chaos-001 holding 11.11.1.0/24 via 192.168.2.10, each
/// live over its (ms after `t0`, live) changes, and FRR's route history
/// of (ms, present).
struct Scene {
    t0: Instant,
    incarnations: Vec<Incarnation>,
    subnets: HashMap<String, Ipv4Net>,
    routes: BTreeMap<Router, RouteHistory>,
}

impl Scene {
    fn new(lives: &[&[(u64, bool)]], route: &[(u64, bool)]) -> Scene {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let incarnations: Vec<Incarnation> = lives
            .iter()
            .enumerate()
            .map(|(i, live)| Incarnation {
                name: "chaos-001".into(),
                uid: format!("uid-{i}"),
                next_hops: vec![ip("192.168.2.10")],
                live: live.iter().map(|(ms, l)| (at(*ms), *l)).collect(),
            })
            .collect();
        let subnets = incarnations
            .iter()
            .map(|i| (i.uid.clone(), net("11.11.1.0/24")))
            .collect();
        let mut history = RouteHistory::default();
        history.changes.insert(
            net("11.11.1.0/24"),
            route
                .iter()
                .map(|(ms, present)| (at(*ms), present.then_some(ip("192.168.2.10"))))
                .collect(),
        );
        Scene {
            t0,
            incarnations,
            subnets,
            routes: BTreeMap::from([(Router::Frr, history)]),
        }
    }

    fn evidence<'a>(
        &'a self,
        faults: &'a BTreeMap<Router, Vec<(Instant, Instant)>>,
    ) -> Evidence<'a> {
        Evidence {
            incarnations: &self.incarnations,
            subnets: &self.subnets,
            routes: &self.routes,
            kernel_withdrawals: &[],
            router_faults: faults,
            control_faults: &[],
            started: self.t0,
            ended: self.t0 + Duration::from_secs(100),
        }
    }
}

#[test]
fn a_route_gone_while_its_node_stayed_routable_is_a_live_withdrawal() {
    let scene = Scene::new(
        &[&[(0, true)]],
        &[(5_000, true), (50_000, false), (51_000, true)],
    );
    let faults = BTreeMap::new();
    let evidence = scene.evidence(&faults);
    let found = evidence.live_withdrawals();
    assert_eq!(found.len(), 1, "{found:?}");
    let outages = evidence.outages();
    let gap = outages
        .iter()
        .find(|o| o.after_routed)
        .expect("the gap is an outage");
    assert_eq!(gap.length, Duration::from_secs(1));
    assert_eq!(gap.cause, Cause::None);
}

#[test]
fn a_route_gone_after_its_node_stopped_being_routable_is_not_blamed() {
    // Relabelled out at 40 s, back in at 45 s; the route went at 50 s
    // (late, but the controller may have seen the node out).
    let scene = Scene::new(
        &[&[(0, true), (40_000, false), (45_000, true)]],
        &[(5_000, true), (50_000, false), (51_000, true)],
    );
    let faults = BTreeMap::new();
    assert!(scene.evidence(&faults).live_withdrawals().is_empty());
    // During a fault of the router itself, a sampled loss is not blamed either.
    let scene = Scene::new(
        &[&[(0, true)]],
        &[(5_000, true), (50_000, false), (51_000, true)],
    );
    let faults = BTreeMap::from([(
        Router::Frr,
        vec![(
            scene.t0 + Duration::from_secs(49),
            scene.t0 + Duration::from_secs(52),
        )],
    )]);
    assert!(scene.evidence(&faults).live_withdrawals().is_empty());
}

#[test]
fn a_node_registered_again_under_its_name_may_lose_the_old_route_a_moment() {
    // Deleted at 10.0 s and created again (same subnet pinned) at 10.1 s;
    // a slow router adds the first incarnation's route at 10.3 s, removes
    // it for the deletion at 10.5 s and adds it for the new one at 11 s.
    let scene = Scene::new(
        &[&[(0, true), (10_000, false)], &[(10_100, true)]],
        &[(10_300, true), (10_500, false), (11_000, true)],
    );
    let faults = BTreeMap::new();
    assert!(scene.evidence(&faults).live_withdrawals().is_empty());
}
