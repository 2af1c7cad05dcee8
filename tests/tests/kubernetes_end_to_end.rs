//! The Kubernetes path end to end: Node objects in the test API server, the
//! real controller binary watching them, the real kernel routing between
//! the lab's containers.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nativeroute_tests::apiserver::Failure;
use nativeroute_tests::kube_lab::{Converged, KubeConfig, KubeLab, annotation};
use nativeroute_tests::lab::{run_nativeroute, wait_until};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

const NODES: [&str; 3] = ["node1", "node2", "node3"];

#[tokio::test(flavor = "multi_thread")]
async fn nodes_get_subnets_and_pod_cidrs_and_their_containers_ping_across_the_router() {
    let lab = KubeLab::create(KubeConfig::default()).await;
    lab.register_lab_nodes();
    // A node outside the selector is not nativeroute's business.
    lab.put(nativeroute_tests::apiserver::realistic_node(
        "other",
        ip("192.168.3.99"),
    ));
    let mut controller = lab.start_controller("leader-a");

    let subnets = lab.wait_for_subnets(&NODES).await;
    lab.wait_for_routes(
        "the router holds a route per node",
        &lab.lab_routes(&subnets),
    )
    .await;
    for (name, subnet) in &subnets {
        let node = lab.node(name);
        let spec = node.spec.expect("a spec");
        assert_eq!(spec.pod_cidr.as_deref(), Some(subnet.to_string().as_str()));
        assert_eq!(spec.pod_cidrs, Some(vec![subnet.to_string()]));
    }
    let distinct: std::collections::BTreeSet<_> = subnets.values().collect();
    assert_eq!(distinct.len(), 3, "every node its own subnet: {subnets:?}");
    assert!(annotation(&lab.node("other"), "nativeroute.io/subnet").is_none());

    lab.lab.attach_containers(&subnets).await;
    assert!(lab.lab.pings("node1", "node3").await);
    assert!(lab.lab.pings("node3", "node2").await);

    // State back on the Node: status annotation, condition, Events; the
    // kubelet's own conditions survive the strategic merge.
    wait_until(
        "every node shows rtr=programmed",
        Duration::from_secs(10),
        async || {
            NODES.iter().all(|name| {
                annotation(&lab.node(name), "nativeroute.io/status").as_deref()
                    == Some("rtr=programmed")
            })
        },
    )
    .await;
    wait_until(
        "NetworkUnavailable is False/RouteCreated",
        Duration::from_secs(10),
        async || {
            lab.condition("node2", "NetworkUnavailable")
                .is_some_and(|c| c.status == "False" && c.reason.as_deref() == Some("RouteCreated"))
        },
    )
    .await;
    let ready = lab
        .condition("node2", "Ready")
        .expect("the kubelet's Ready condition stays");
    assert_eq!(ready.status, "True");
    let kind = lab
        .wait_for_event("node2", "SubnetAssigned", &[&subnets["node2"].to_string()])
        .await;
    assert_eq!(kind, "Normal");
    assert!(lab.lease("nativeroute", "nativeroute").is_some());
    controller.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deleted_node_loses_its_route_and_its_subnet_goes_back_to_the_pool() {
    let Converged {
        lab,
        mut controller,
        subnets,
        ..
    } = KubeLab::converged(KubeConfig::default()).await;

    assert!(lab.api.delete_node("node3"));
    let mut remaining = subnets.clone();
    remaining.remove("node3");
    lab.wait_for_routes("node3's route is withdrawn", &lab.lab_routes(&remaining))
        .await;

    // Freed: a node pinned to it gets exactly that subnet.
    let freed = subnets["node3"];
    lab.put(KubeLab::pinned_node(
        "node4",
        ip("192.168.3.4"),
        &freed.to_string(),
    ));
    wait_until(
        "node4's pod CIDR is node3's old subnet",
        Duration::from_secs(10),
        async || lab.node("node4").spec.and_then(|s| s.pod_cidr) == Some(freed.to_string()),
    )
    .await;
    let mut want = lab.lab_routes(&remaining);
    want.insert(freed, ip("192.168.3.4"));
    lab.wait_for_routes("node4 is routed on the freed subnet", &want)
        .await;
    controller.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_internal_ip_replaces_the_route() {
    let Converged {
        lab,
        controller: _controller,
        subnets,
        routes: mut want,
    } = KubeLab::converged(KubeConfig::default()).await;

    lab.edit("node2", |node| {
        let status = node.status.as_mut().expect("status");
        for address in status.addresses.iter_mut().flatten() {
            if address.type_ == "InternalIP" {
                address.address = "192.168.3.50".into();
            }
        }
    });
    want.insert(subnets["node2"], ip("192.168.3.50"));
    lab.wait_for_routes("node2's route follows its new address", &want)
        .await;
    assert_eq!(
        lab.subnet_of("node2"),
        Some(subnets["node2"]),
        "a new address never changes the subnet"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn annotations_apply_live_and_a_bad_value_is_a_warning_event_and_nothing_else() {
    let Converged {
        lab,
        mut controller,
        subnets,
        routes: mut want,
    } = KubeLab::converged(KubeConfig::default()).await;

    // next-hop: the route goes via the override.
    lab.annotate("node1", "nativeroute.io/next-hop", Some("192.168.2.77"));
    want.insert(subnets["node1"], ip("192.168.2.77"));
    lab.wait_for_routes("node1 is routed via its next-hop annotation", &want)
        .await;

    // exclude: the node's route goes.
    lab.annotate("node2", "nativeroute.io/exclude", Some("true"));
    want.remove(&subnets["node2"]);
    lab.wait_for_routes("excluded node2 has no route", &want)
        .await;
    wait_until(
        "node2's status says excluded",
        Duration::from_secs(10),
        async || {
            annotation(&lab.node("node2"), "nativeroute.io/status").as_deref() == Some("excluded")
        },
    )
    .await;

    // routers: naming no configured router is invalid; the route stays.
    lab.annotate("node3", "nativeroute.io/routers", Some("tor-z"));
    let kind = lab
        .wait_for_event(
            "node3",
            "InvalidAnnotation",
            &["nativeroute.io/routers", "tor-z"],
        )
        .await;
    assert_eq!(kind, "Warning");

    // A hostile value is refused by name and value; nothing else moves.
    lab.annotate("node3", "nativeroute.io/next-hop", Some("$(reboot)"));
    let kind = lab
        .wait_for_event(
            "node3",
            "InvalidAnnotation",
            &["nativeroute.io/next-hop", "$(reboot)"],
        )
        .await;
    assert_eq!(kind, "Warning");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(lab.routes(), want, "a bad value disturbs no route");

    // Repeats are aggregated: each of the two complaints standing on node3
    // is one Event object, however many times the node is read again.
    for round in 0..5 {
        lab.annotate("node3", "nativeroute.io/touch", Some(&round.to_string()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for complaint in ["$(reboot)", "tor-z"] {
        let objects = lab
            .events_of("node3")
            .into_iter()
            .filter(|(_, reason, note)| reason == "InvalidAnnotation" && note.contains(complaint))
            .count();
        assert_eq!(
            objects, 1,
            "one Event object for the repeated complaint {complaint}"
        );
    }

    // A pin on a new node is honoured.
    lab.put(KubeLab::pinned_node(
        "node4",
        ip("192.168.3.5"),
        "11.11.42.0/24",
    ));
    want.insert("11.11.42.0/24".parse().expect("net"), ip("192.168.3.5"));
    lab.wait_for_routes("pinned node4 is routed on its pin", &want)
        .await;
    controller.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_cidr_mode_routes_what_the_cluster_assigned_and_writes_no_subnet() {
    let lab = KubeLab::create(KubeConfig {
        ipam: "podCIDR",
        ..KubeConfig::default()
    })
    .await;
    let assigned = [
        ("node1", "11.11.21.0/24"),
        ("node2", "11.11.22.0/24"),
        ("node3", "garbage/99"),
    ];
    for (name, cidr) in assigned {
        let address = lab.lab.topology.node(name).expect("lab node").address;
        let mut node = KubeLab::kubelet_node(name, address);
        node.spec.get_or_insert_with(Default::default).pod_cidr = Some(cidr.into());
        lab.put(node);
    }
    let mut outside = KubeLab::kubelet_node("node4", ip("192.168.3.5"));
    outside.spec.get_or_insert_with(Default::default).pod_cidr = Some("10.244.1.0/24".into());
    lab.put(outside);
    let _controller = lab.start_controller("leader-a");
    let want: BTreeMap<IpNet, IpAddr> = [
        ("11.11.21.0/24".parse().expect("net"), ip("192.168.2.1")),
        ("11.11.22.0/24".parse().expect("net"), ip("192.168.3.3")),
    ]
    .into();
    lab.wait_for_routes("the kube-controller-manager's podCIDRs are routed", &want)
        .await;
    let kind = lab
        .wait_for_event("node3", "InvalidNodeSpec", &["garbage/99"])
        .await;
    assert_eq!(kind, "Warning");
    let kind = lab
        .wait_for_event(
            "node4",
            "InvalidNodeSpec",
            &["10.244.1.0/24", "outside the pool"],
        )
        .await;
    assert_eq!(kind, "Warning");
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (name, cidr) in assigned {
        let node = lab.node(name);
        assert_eq!(annotation(&node, "nativeroute.io/subnet"), None, "{name}");
        assert_eq!(node.spec.and_then(|s| s.pod_cidr).as_deref(), Some(cidr));
    }
    assert_eq!(lab.routes(), want);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_with_100_nodes_changes_no_subnet_and_no_route() {
    let lab = KubeLab::create(KubeConfig::default()).await;
    let names: Vec<String> = (0..100).map(|i| format!("n{i:03}")).collect();
    for (i, name) in names.iter().enumerate() {
        lab.put(KubeLab::kubelet_node(
            name,
            ip(&format!("192.168.3.{}", 10 + i)),
        ));
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let controller = lab.start_controller("first");
    let before = lab.wait_for_subnets(&refs).await;
    wait_until("100 routes", Duration::from_secs(10), async || {
        lab.routes().len() == 100
    })
    .await;
    // Only a controller that has written everything can be asked to write
    // nothing after its restart: the status annotations and conditions
    // trail the routes.
    lab.wait_for_everything_written(&refs).await;
    let routes_before = lab.routes();
    let fingerprint = lab.lab.router_fingerprint();
    controller.stop(Duration::from_secs(10));

    lab.api.clear_requests();
    let mut second = lab.start_controller("second");
    wait_until(
        "the second controller leads",
        Duration::from_secs(20),
        async || lab.lease_holder().as_deref() == Some("second"),
    )
    .await;
    // Give it time to list, reconcile and sync (and to do harm, if it would).
    tokio::time::sleep(Duration::from_secs(3)).await;
    second.assert_running();
    let after: BTreeMap<String, IpNet> = refs
        .iter()
        .filter_map(|name| Some((name.to_string(), lab.subnet_of(name)?)))
        .collect();
    assert_eq!(after, before, "no subnet changed");
    assert_eq!(lab.routes(), routes_before, "no route changed");
    assert_eq!(
        lab.lab.router_fingerprint(),
        fingerprint,
        "not even a nexthop id"
    );
    let node_writes: Vec<String> = lab
        .api
        .requests()
        .into_iter()
        .filter(|r| {
            r.resource == "nodes" && r.verb != "get" && r.verb != "list" && r.verb != "watch"
        })
        .map(|r| format!("{} {:?} {}", r.verb, r.name, r.subresource))
        .collect();
    assert_eq!(
        node_writes,
        Vec::<String>::new(),
        "a restart rewrites nothing on the Nodes"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_watch_a_410_and_failing_patches_are_recovered() {
    let Converged {
        lab,
        mut controller,
        routes: mut want,
        ..
    } = KubeLab::converged(KubeConfig::default()).await;

    // A dropped watch: the change made right after is still seen.
    lab.api.faults().drop_watches();
    lab.put(KubeLab::kubelet_node("node4", ip("192.168.3.5")));
    let node4 = lab.wait_for_subnets(&["node4"]).await["node4"];
    want.insert(node4, ip("192.168.3.5"));
    lab.wait_for_routes("node4 routed after a dropped watch", &want)
        .await;

    // History gone and the watch dropped: the resume gets 410 Gone, the
    // controller lists again, and a deletion made meanwhile is seen.
    lab.api.compact();
    lab.api.faults().drop_watches();
    assert!(lab.api.delete_node("node4"));
    want.remove(&node4);
    lab.wait_for_routes("node4's route withdrawn after a 410 re-list", &want)
        .await;

    // Patches failing with 500 for a while: the subnet is written once they pass.
    lab.api.faults().fail(
        Failure::status(500)
            .method("PATCH")
            .path_contains("/nodes/")
            .times(5),
    );
    lab.put(KubeLab::kubelet_node("node5", ip("192.168.3.6")));
    let node5 = lab.wait_for_subnets(&["node5"]).await["node5"];
    want.insert(node5, ip("192.168.3.6"));
    lab.wait_for_routes("node5 routed", &want).await;
    controller.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_server_away_for_30_seconds_removes_no_route_and_then_converges() {
    let Converged {
        lab,
        mut controller,
        subnets,
        routes: want,
    } = KubeLab::converged(KubeConfig::default()).await;

    lab.api.stop().await;
    // Meanwhile, in the cluster's store: node3 deleted, node4 registered.
    assert!(lab.api.delete_node("node3"));
    lab.put(KubeLab::kubelet_node("node4", ip("192.168.3.5")));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        assert_eq!(
            lab.routes(),
            want,
            "no route changes while the API server is away"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    controller.assert_running();
    lab.api.restart().await.expect("the API server comes back");

    let node4 = lab.wait_for_subnets(&["node4"]).await["node4"];
    let mut after = want.clone();
    after.remove(&subnets["node3"]);
    after.insert(node4, ip("192.168.3.5"));
    wait_until(
        "converged after the API server returned",
        Duration::from_secs(30),
        async || lab.routes() == after,
    )
    .await;
    controller.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_follower_takes_over_when_the_leader_dies_and_changes_nothing() {
    let Converged {
        lab,
        controller: leader,
        subnets,
        routes: want,
    } = KubeLab::converged(KubeConfig::default()).await;
    let mut follower = lab.start_controller("follower-b");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lab.lease_holder().as_deref(), Some("leader-a"));

    leader.kill();
    // Only after the lease (15 s) expires may the follower lead.
    wait_until("the follower leads", Duration::from_secs(30), async || {
        lab.lease_holder().as_deref() == Some("follower-b")
    })
    .await;
    lab.put(KubeLab::kubelet_node("node4", ip("192.168.3.5")));
    let node4 = lab.wait_for_subnets(&["node4"]).await["node4"];
    let mut after = want.clone();
    after.insert(node4, ip("192.168.3.5"));
    lab.wait_for_routes("the new leader routes a new node", &after)
        .await;
    for (name, subnet) in &subnets {
        assert_eq!(lab.subnet_of(name), Some(*subnet), "{name} kept its subnet");
    }
    follower.assert_running();
}

/// Runs the nativeroute binary off the async runtime.
async fn nativeroute(args: &[&str]) -> (bool, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run_nativeroute(&refs)
    })
    .await
    .expect("nativeroute ran")
}

#[tokio::test(flavor = "multi_thread")]
async fn lab_up_with_a_kubeconfig_registers_the_nodes_and_routes_them() {
    nativeroute_tests::netns::require_root();
    let api = nativeroute_tests::apiserver::ApiServer::start()
        .await
        .expect("the test API server starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let prefix = format!("nrk{}-", std::process::id() % 100_000);
    let spec = nativeroute::lab::LabSpec::new(prefix.clone(), dir.path().join("lab"));
    let lab_dir = spec.dir.display().to_string();
    let kubeconfig = kubeconfig.display().to_string();
    let lab = ["--prefix", prefix.as_str(), "--dir", lab_dir.as_str()];

    let (up_ok, up) =
        nativeroute(&[&["lab", "up", "--kubeconfig", &kubeconfig][..], &lab].concat()).await;
    let controller = nativeroute::lab::running_controller(&spec);
    let (status_ok, status) = nativeroute(&[&["lab", "status"][..], &lab].concat()).await;
    let lab_nodes: Vec<_> = api
        .nodes()
        .into_iter()
        .filter(|n| {
            n.metadata
                .name
                .as_deref()
                .is_some_and(|name| name.starts_with(&prefix))
        })
        .collect();
    let (down_ok, down) = nativeroute(&[&["lab", "down"][..], &lab].concat()).await;

    assert!(up_ok, "lab up failed:\n{up}");
    assert_eq!(lab_nodes.len(), 3, "three lab Nodes");
    for node in &lab_nodes {
        assert!(annotation(node, "nativeroute.io/subnet").is_some());
        assert_eq!(node.spec.as_ref().and_then(|s| s.unschedulable), Some(true));
    }
    assert!(
        status_ok,
        "lab status failed (its ping matrix included):\n{status}"
    );
    assert!(status.contains("Kubernetes Nodes"), "{status}");
    assert!(down_ok, "lab down failed:\n{down}");
    assert!(controller.is_some(), "lab up left its controller running");
    assert_eq!(
        nativeroute::lab::running_controller(&spec),
        None,
        "lab down stops the controller"
    );
    let left = api
        .nodes()
        .into_iter()
        .filter(|n| {
            n.metadata
                .name
                .as_deref()
                .is_some_and(|name| name.starts_with(&prefix))
        })
        .count();
    assert_eq!(left, 0, "lab down deletes the lab's Nodes");
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_check_read_the_nodes_and_write_nothing() {
    let lab = KubeLab::create(KubeConfig::default()).await;
    lab.register_lab_nodes();
    lab.api.clear_requests();
    let config = lab.config.display().to_string();
    let kubeconfig = lab.kubeconfig.display().to_string();
    let (plan_ok, plan) = {
        let (config, kubeconfig) = (config.clone(), kubeconfig.clone());
        tokio::task::spawn_blocking(move || {
            run_nativeroute(&["plan", "--config", &config, "--kubeconfig", &kubeconfig])
        })
        .await
        .expect("plan ran")
    };
    assert!(plan_ok, "plan failed:\n{plan}");
    assert!(plan.contains("router rtr: 3 to add"), "{plan}");
    assert!(plan.contains("via 192.168.3.4"), "{plan}");
    let (check_ok, check) = tokio::task::spawn_blocking(move || {
        run_nativeroute(&["check", "--config", &config, "--kubeconfig", &kubeconfig])
    })
    .await
    .expect("check ran");
    assert!(check_ok, "check failed:\n{check}");
    assert!(check.contains("nodes: 3 Kubernetes Nodes"), "{check}");
    let writes: Vec<_> = lab
        .api
        .requests()
        .into_iter()
        .filter(|r| !matches!(r.verb, "get" | "list" | "watch"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(writes.is_empty(), "plan and check wrote: {writes:?}");
    assert!(lab.routes().is_empty(), "plan changed the router");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_that_leaves_the_selector_loses_its_route_but_never_its_subnet() {
    let Converged {
        lab,
        mut controller,
        subnets,
        routes: mut want,
    } = KubeLab::converged(KubeConfig::default()).await;

    // Someone removes the label the controller selects on.
    lab.edit("node3", |node| {
        if let Some(labels) = node.metadata.labels.as_mut() {
            labels.remove(nativeroute_tests::kube_lab::LAB_LABEL);
        }
    });
    want.remove(&subnets["node3"]);
    lab.wait_for_routes("node3's route is withdrawn", &want)
        .await;

    // Its subnet is still its own: new nodes get others, even one that
    // asks for exactly that subnet.
    lab.put(KubeLab::pinned_node(
        "node4",
        ip("192.168.3.5"),
        &subnets["node3"].to_string(),
    ));
    lab.put(KubeLab::kubelet_node("node5", ip("192.168.3.6")));
    lab.wait_for_event(
        "node4",
        "SubnetConflict",
        &[&subnets["node3"].to_string(), "node3"],
    )
    .await;
    wait_until(
        "node4 is annotated with its fresh subnet",
        Duration::from_secs(10),
        async || lab.node("node4").spec.and_then(|s| s.pod_cidr).is_some(),
    )
    .await;
    let fresh = lab.wait_for_subnets(&["node4", "node5"]).await;
    assert!(
        !fresh.values().any(|s| *s == subnets["node3"]),
        "node3's subnet was handed out while node3 exists: {fresh:?}"
    );

    // Selected again: the same subnet, the route back.
    lab.edit("node3", |node| {
        node.metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(nativeroute_tests::kube_lab::LAB_LABEL.into(), "yes".into());
    });
    want.insert(subnets["node3"], ip("192.168.3.4"));
    want.insert(fresh["node4"], ip("192.168.3.5"));
    want.insert(fresh["node5"], ip("192.168.3.6"));
    lab.wait_for_routes("node3 is routed again on its own subnet", &want)
        .await;
    assert_eq!(lab.subnet_of("node3"), Some(subnets["node3"]));
    controller.assert_running();
}

/// A controller for `api` in a pid namespace of its own, where it is pid 1
/// (as in a container), on this machine's host name (as with hostNetwork),
/// with no identity given; its log goes to `log`.
fn pid_one_controller(
    config: &std::path::Path,
    kubeconfig: &std::path::Path,
    log: &std::path::Path,
) -> std::process::Child {
    let log = std::fs::File::create(log).expect("the log file");
    std::process::Command::new("unshare")
        .args(["--pid", "--fork", "--kill-child"])
        .arg(nativeroute_tests::lab::nativeroute_binary())
        .args(["run", "--metrics-address", "off", "--config"])
        .arg(config)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--lease-namespace", "nativeroute"])
        .env_remove("POD_NAME")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().expect("the log file"))
        .stderr(log)
        .spawn()
        .expect("unshare starts the controller")
}

#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_on_one_host_with_no_identity_given_never_both_lead() {
    nativeroute_tests::netns::require_root();
    let api = nativeroute_tests::apiserver::ApiServer::start()
        .await
        .expect("the test API server starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    api.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "pool: {cidrs: [11.11.0.0/16]}\n\
         nodes: {source: kubernetes}\n\
         routers: [{name: none, driver: plugin, command: [/bin/false]}]\n",
    )
    .expect("the config is written");
    let logs = [dir.path().join("a.log"), dir.path().join("b.log")];
    let mut replicas: Vec<std::process::Child> = logs
        .iter()
        .map(|log| pid_one_controller(&config, &kubeconfig, log))
        .collect();
    let holder = || {
        api.lease("nativeroute", "nativeroute")
            .and_then(|lease| lease.spec?.holder_identity)
    };
    wait_until("one replica leads", Duration::from_secs(10), async || {
        holder().is_some()
    })
    .await;
    // Several renewals (every 2 s) by both: a shared identity would have
    // let the second one "renew" the first one's lease by now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let leading: Vec<String> = logs
        .iter()
        .map(|log| std::fs::read_to_string(log).unwrap_or_default())
        .filter(|text| text.lines().any(|line| line.contains(": leading")))
        .collect();
    for replica in &mut replicas {
        assert!(
            replica.try_wait().expect("the replica's status").is_none(),
            "a replica exited"
        );
        let _ = replica.kill();
        let _ = replica.wait();
    }
    assert_eq!(leading.len(), 1, "exactly one replica leads: {leading:#?}");
    let identity = holder().expect("a holder");
    assert!(
        !identity.ends_with("_1"),
        "the identity {identity} is pid 1's"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn lease_timing_flags_are_checked_against_each_other_and_used() {
    let refused = nativeroute(&[
        "run",
        "--config",
        "/nonexistent.yaml",
        "--leader-elect-lease-duration",
        "8s",
    ])
    .await;
    assert!(!refused.0, "a renew deadline past the lease was accepted");
    assert!(
        refused.1.contains("--leader-elect-renew-deadline 10s")
            && refused.1.contains("--leader-elect-lease-duration 8s"),
        "{}",
        refused.1
    );

    let lab = KubeLab::create(KubeConfig::default()).await;
    let timing = [
        "--leader-elect-lease-duration",
        "4s",
        "--leader-elect-renew-deadline",
        "3s",
        "--leader-elect-retry-period",
        "1s",
    ];
    let mut extra = vec![
        "--kubeconfig".to_owned(),
        lab.kubeconfig.display().to_string(),
        "--lease-namespace".to_owned(),
        "nativeroute".to_owned(),
    ];
    extra.extend(timing.map(str::to_owned));
    let mut controller = nativeroute_tests::lab::ControllerProcess::start_with(
        &lab.config,
        &lab.log_path(),
        "off",
        &extra,
    );
    wait_until(
        "the Lease lasts the 4 s asked for",
        Duration::from_secs(10),
        async || {
            lab.lease("nativeroute", "nativeroute")
                .and_then(|lease| lease.spec?.lease_duration_seconds)
                == Some(4)
        },
    )
    .await;
    controller.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_deleted_and_registered_again_within_one_watch_burst_is_written_afresh() {
    let Converged {
        lab,
        mut controller,
        ..
    } = KubeLab::converged(KubeConfig::default()).await;
    let shows_everything = |name: &str| lab.shows_everything_written(name);
    wait_until(
        "node2 shows its subnet, status and condition",
        Duration::from_secs(10),
        async || shows_everything("node2"),
    )
    .await;
    let old_uid = lab.node("node2").metadata.uid;

    // `kubectl delete node node2`, and its kubelet registers it again: the
    // controller's watch delivers DELETED and ADDED in one read.
    let faults = lab.api.faults();
    faults.hold_watches();
    assert!(lab.api.delete_node("node2"));
    lab.put(KubeLab::kubelet_node("node2", ip("192.168.3.3")));
    assert_ne!(lab.node("node2").metadata.uid, old_uid, "a new Node object");
    faults.release_watches();

    wait_until(
        "the new node2 shows its subnet, pod CIDR, status and condition",
        Duration::from_secs(10),
        async || shows_everything("node2"),
    )
    .await;
    let subnet = lab.subnet_of("node2").expect("a subnet");
    assert_eq!(lab.routes().get(&subnet), Some(&ip("192.168.3.3")));
    controller.assert_running();
}

/// The node source of the controller library, on `api`, with watches of
/// `watch_timeout` (and so read timeouts just past it).
fn node_source(
    api: &nativeroute_tests::apiserver::ApiServer,
    watch_timeout: Duration,
) -> nativeroute::inventory::kubernetes::KubernetesSource {
    use nativeroute::inventory::kubernetes::{
        Clients, KubernetesNodes, KubernetesSource, NodeDirectory, NodeWriter,
    };
    let config = nativeroute::config::Config::parse(
        "pool: {cidrs: [11.11.0.0/16]}\n\
         nodes: {source: kubernetes}\n\
         resyncInterval: 1h\n\
         routers: [{name: none, driver: plugin, command: [/bin/false]}]\n",
    )
    .expect("a valid config");
    let mut settings = KubernetesNodes::of(&config).expect("Kubernetes settings");
    settings.watch_timeout = watch_timeout;
    let cluster = kube::Config::new(api.url().parse().expect("the server's URL"));
    let clients = Clients::with_watch_timeout(cluster, watch_timeout).expect("clients");
    KubernetesSource::new(
        kube::Api::all(clients.watch),
        settings,
        NodeWriter::new(),
        NodeDirectory::default(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_list_or_watch_that_never_answers_is_given_up_and_tried_again() {
    use nativeroute::inventory::NodeSource;
    let api = nativeroute_tests::apiserver::ApiServer::start()
        .await
        .expect("the test API server starts");
    for (name, address) in [("node1", "192.168.2.1"), ("node2", "192.168.3.3")] {
        api.put_node(KubeLab::kubelet_node(name, ip(address)))
            .expect("stored");
    }
    let faults = api.faults();
    // The initial list is accepted and never answered.
    faults.fail(Failure::hang().method("GET").path_contains("limit="));
    let watch_timeout = Duration::from_secs(2);
    let mut source = node_source(&api, watch_timeout);
    let progress = source.progress();
    let started = *progress.borrow();
    let first = tokio::time::timeout(Duration::from_secs(30), source.next_snapshot())
        .await
        .expect("the hung list was given up and the nodes listed again")
        .expect("a snapshot");
    assert_eq!(first.nodes.len(), 2);
    assert!(started.elapsed() > watch_timeout, "the first list did hang");
    assert!(*progress.borrow() > started, "the list was progress");

    // A watch start that never answers, after the watch was dropped: given
    // up too, and a Node registered meanwhile is seen.
    faults.fail(Failure::hang().method("GET").path_contains("watch=true"));
    faults.drop_watches();
    api.put_node(KubeLab::kubelet_node("node3", ip("192.168.3.4")))
        .expect("stored");
    let next = tokio::time::timeout(Duration::from_secs(30), source.next_snapshot())
        .await
        .expect("the hung watch was given up and watched again")
        .expect("a snapshot");
    assert!(
        next.nodes.iter().any(|node| node.name == "node3"),
        "{:?}",
        next.nodes
    );
    let hung = api
        .requests()
        .into_iter()
        .filter(|request| request.status == 0)
        .count();
    assert_eq!(hung, 2, "both hangs were met");
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_restart_a_just_released_subnet_is_not_handed_out_at_once() {
    let Converged {
        lab,
        controller,
        subnets,
        ..
    } = KubeLab::converged(KubeConfig::default()).await;
    // The oldest node goes: its subnet is free, and the one next-fit would
    // hand out first if it started over from the pool's beginning.
    assert!(lab.api.delete_node("node1"));
    let mut remaining = subnets.clone();
    remaining.remove("node1");
    lab.wait_for_routes("node1's route is withdrawn", &lab.lab_routes(&remaining))
        .await;
    controller.stop(Duration::from_secs(10));

    let mut second = lab.start_controller("second");
    lab.put(KubeLab::kubelet_node("node4", ip("192.168.3.5")));
    let node4 = lab.wait_for_subnets(&["node4"]).await["node4"];
    assert_ne!(
        node4, subnets["node1"],
        "the subnet released just before the restart went out again at once"
    );
    assert!(
        !remaining.values().any(|subnet| *subnet == node4),
        "{node4} is taken"
    );
    second.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_newest_nodes_subnet_released_before_a_restart_is_not_handed_out_at_once() {
    let Converged {
        lab,
        controller,
        subnets,
        ..
    } = KubeLab::converged(KubeConfig::default()).await;
    // The newest node goes: no Node left tells where next-fit stood, only
    // the cursor the leader keeps on its Lease.
    assert!(lab.api.delete_node("node3"));
    let mut remaining = subnets.clone();
    remaining.remove("node3");
    lab.wait_for_routes("node3's route is withdrawn", &lab.lab_routes(&remaining))
        .await;
    controller.stop(Duration::from_secs(10));

    let mut second = lab.start_controller("second");
    lab.put(KubeLab::kubelet_node("node4", ip("192.168.3.5")));
    let node4 = lab.wait_for_subnets(&["node4"]).await["node4"];
    assert_ne!(
        node4, subnets["node3"],
        "the newest node's subnet, released just before the restart, went out again at once"
    );
    second.assert_running();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_next_fit_cursor_goes_with_the_leader_lease_to_the_next_leader() {
    use nativeroute::inventory::NodeSource;
    use nativeroute::leader::{LeaderElection, LeaseSettings, LeaseTiming, TermEnd};
    let api = nativeroute_tests::apiserver::ApiServer::start()
        .await
        .expect("the test API server starts");
    let timing = LeaseTiming::new(
        Duration::from_secs(4),
        Duration::from_secs(3),
        Duration::from_secs(1),
    )
    .expect("timing");
    let election = |identity: &str| {
        let settings =
            LeaseSettings::new("nativeroute".into(), "nativeroute".into(), identity.into())
                .with_timing(timing);
        LeaderElection::new(api.client().expect("a client"), settings)
    };
    let (stop, mut shutdown) = tokio::sync::watch::channel(false);
    let mut first = election("first");
    assert!(first.acquire(&mut shutdown).await);
    let next: Vec<IpNet> = vec!["11.11.9.0/24".parse().expect("net")];
    first.next_fit().set(next.clone());
    // A renewal or two, then a shutdown: the cursor is on the Lease.
    let hold = first.hold(&mut shutdown);
    let ended = tokio::select! {
        ended = hold => ended,
        () = tokio::time::sleep(Duration::from_millis(2500)) => {
            let _ = stop.send(true);
            TermEnd::Shutdown
        }
    };
    assert_eq!(ended, TermEnd::Shutdown);
    first.release().await;
    let noted = api
        .lease("nativeroute", "nativeroute")
        .and_then(|lease| lease.metadata.annotations)
        .and_then(|annotations| annotations.get("nativeroute.io/next-fit").cloned());
    assert_eq!(noted.as_deref(), Some("11.11.9.0/24"));

    let (_keep, mut running) = tokio::sync::watch::channel(false);
    let mut second = election("second");
    assert!(second.next_fit().get().is_empty());
    assert!(second.acquire(&mut running).await);
    assert_eq!(second.next_fit().get(), next, "taken over with the Lease");
    let source = node_source(&api, Duration::from_secs(290)).resuming(second.next_fit());
    assert_eq!(
        source.resume_point(),
        next,
        "the term's source resumes there"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status_shows_the_nodes_the_leader_and_each_router_from_the_cluster() {
    let Converged {
        lab,
        mut controller,
        subnets,
        ..
    } = KubeLab::converged(KubeConfig::default()).await;
    let config = lab.config.display().to_string();
    let kubeconfig = lab.kubeconfig.display().to_string();
    let status = async |output: &str| {
        nativeroute(&[
            "status",
            "--config",
            &config,
            "--kubeconfig",
            &kubeconfig,
            "-o",
            output,
        ])
        .await
    };
    // The router board rides on the Lease's renewals, and node status on
    // the Nodes: wait for both.
    let mut json = serde_json::Value::Null;
    wait_until(
        "status shows the router and every node programmed",
        Duration::from_secs(15),
        async || {
            let (ok, out) = status("json").await;
            json = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
            ok && json["routers"]["rtr"]["routes"] == 3
                && json["nodes"].as_array().is_some_and(|nodes| {
                    nodes.len() == 3 && nodes.iter().all(|n| n["status"] == "rtr=programmed")
                })
        },
    )
    .await;
    assert_eq!(json["leader"], "leader-a", "{json:#}");
    assert_eq!(json["routers"]["rtr"]["up"], true);
    assert_eq!(json["routers"]["rtr"]["withheld"], 0);
    let node1 = json["nodes"]
        .as_array()
        .and_then(|nodes| nodes.iter().find(|n| n["name"] == "node1"))
        .expect("node1 listed");
    assert_eq!(node1["subnets"][0], subnets["node1"].to_string());

    let (ok, text) = status("text").await;
    assert!(ok, "{text}");
    assert!(
        text.contains("leader: leader-a")
            && text.contains("ROUTER")
            && text.contains("rtr=programmed"),
        "{text}"
    );
    let (_, yaml) = status("yaml").await;
    assert!(yaml.contains("leader: leader-a"), "{yaml}");
    controller.assert_running();
}
