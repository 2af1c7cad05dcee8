//! The test API server, driven by the real kube client, watcher and event
//! Recorder: each test proves one behaviour a controller relies on.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::ByteString;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Node};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use nativeroute_tests::apiserver::{ApiServer, Failure, Options, realistic_node};
use serde_json::json;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(10);

fn node(name: &str, labels: &[(&str, &str)]) -> Node {
    let ip: IpAddr = "10.0.0.1".parse().expect("an address");
    let mut node = realistic_node(name, ip);
    let all = node.metadata.labels.get_or_insert_with(BTreeMap::new);
    for (k, v) in labels {
        all.insert(k.to_string(), v.to_string());
    }
    node
}

async fn server() -> (ApiServer, Api<Node>) {
    let server = ApiServer::start()
        .await
        .expect("the test API server starts");
    let nodes = Api::all(server.client().expect("a client"));
    (server, nodes)
}

fn api_error(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// Runs kube's watcher (with its default backoff) in the background and
/// hands its events over a channel.
fn spawn_watcher(
    api: Api<Node>,
    config: watcher::Config,
) -> mpsc::UnboundedReceiver<watcher::Event<Node>> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = watcher(api, config).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            if let Ok(event) = event
                && tx.send(event).is_err()
            {
                return;
            }
        }
    });
    rx
}

/// Waits for the first watcher event that `want` accepts.
async fn wait_for(
    rx: &mut mpsc::UnboundedReceiver<watcher::Event<Node>>,
    what: &str,
    want: impl Fn(&watcher::Event<Node>) -> bool,
) {
    tokio::time::timeout(WAIT, async {
        while let Some(event) = rx.recv().await {
            if want(&event) {
                return;
            }
        }
        panic!("the watcher ended before {what}");
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

/// Waits until the server has an open watch stream.
async fn wait_for_open_watch(server: &ApiServer) {
    let faults = server.faults();
    tokio::time::timeout(WAIT, async {
        while faults.open_watches() == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("a watch opens");
}

fn applied(event: &watcher::Event<Node>, name: &str) -> bool {
    matches!(event, watcher::Event::Apply(n) | watcher::Event::InitApply(n) if n.name_any() == name)
}

#[tokio::test]
async fn nodes_are_created_read_and_listed_by_label_selector_in_pages() {
    let (server, nodes) = server().await;
    let pp = PostParams::default();
    for i in 0..7 {
        let zone = if i % 2 == 0 { "a" } else { "b" };
        nodes
            .create(
                &pp,
                &node(&format!("n{i}"), &[("zone", zone), ("tier", "edge")]),
            )
            .await
            .expect("created");
    }
    let n3 = nodes.get("n3").await.expect("n3 is there");
    assert!(n3.metadata.uid.is_some() && n3.metadata.creation_timestamp.is_some());
    assert_eq!(n3.metadata.generation, Some(1));
    let duplicate = api_error(
        nodes
            .create(&pp, &node("n3", &[]))
            .await
            .expect_err("a duplicate"),
    );
    assert_eq!(
        (duplicate.code, duplicate.reason.as_str()),
        (409, "AlreadyExists")
    );

    let zone_a = nodes
        .list(&ListParams::default().labels("zone=a,tier in (edge)"))
        .await
        .expect("listed");
    let names: Vec<String> = zone_a.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["n0", "n2", "n4", "n6"]);
    assert_eq!(
        zone_a.metadata.resource_version,
        Some(server.resource_version().to_string())
    );
    let not_a = nodes
        .list(&ListParams::default().labels("zone!=a,!missing"))
        .await
        .expect("listed");
    assert_eq!(not_a.items.len(), 3);

    let mut paged = Vec::new();
    let mut params = ListParams::default().limit(3);
    let mut pages = 0;
    loop {
        let page = nodes.list(&params).await.expect("a page");
        pages += 1;
        paged.extend(page.items.iter().map(ResourceExt::name_any));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(paged, ["n0", "n1", "n2", "n3", "n4", "n5", "n6"]);
}

#[tokio::test]
async fn kube_client_works_over_plain_http_from_a_written_kubeconfig() {
    let server = ApiServer::start().await.expect("starts");
    server.put_node(node("from-kubelet", &[])).expect("stored");
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path).expect("written");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path).expect("a readable kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("kube accepts it");
    assert_eq!(config.cluster_url.to_string(), format!("{}/", server.url()));
    let client = kube::Client::try_from(config).expect("a client");
    let listed = Api::<Node>::all(client)
        .list(&ListParams::default())
        .await
        .expect("listed over http");
    assert_eq!(listed.items[0].name_any(), "from-kubelet");
    let version = server
        .client()
        .expect("client")
        .apiserver_version()
        .await
        .expect("/version");
    assert_eq!(version.minor, "35");
}

#[tokio::test]
async fn a_watch_resumed_from_a_resource_version_sees_only_later_changes() {
    let (server, nodes) = server().await;
    server.put_node(node("early", &[])).expect("stored");
    let from = server.resource_version().to_string();
    server.put_node(node("late", &[])).expect("stored");
    let patch = Patch::Merge(json!({"metadata": {"labels": {"touched": "yes"}}}));
    nodes
        .patch("early", &PatchParams::default(), &patch)
        .await
        .expect("patched");

    let mut stream = nodes
        .watch(&WatchParams::default(), &from)
        .await
        .expect("watching")
        .boxed();
    let mut seen = Vec::new();
    for _ in 0..2 {
        let event = tokio::time::timeout(WAIT, stream.try_next())
            .await
            .expect("in time")
            .expect("no error");
        match event.expect("an event") {
            WatchEvent::Added(n) => seen.push(("ADDED", n.name_any())),
            WatchEvent::Modified(n) => seen.push(("MODIFIED", n.name_any())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        seen,
        [
            ("ADDED", "late".to_string()),
            ("MODIFIED", "early".to_string())
        ]
    );
}

#[tokio::test]
async fn a_watch_from_a_compacted_version_gets_410_and_the_kube_watcher_relists() {
    let (server, nodes) = server().await;
    server.put_node(node("first", &[])).expect("stored");
    let old = server.resource_version().to_string();
    server.put_node(node("second", &[])).expect("stored");
    server.compact();
    let mut raw = nodes
        .watch(&WatchParams::default(), &old)
        .await
        .expect("a 200 stream")
        .boxed();
    match tokio::time::timeout(WAIT, raw.try_next())
        .await
        .expect("in time")
        .expect("no error")
    {
        Some(WatchEvent::Error(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
            assert!(
                status
                    .message
                    .starts_with(&format!("too old resource version: {old} ("))
            );
        }
        other => panic!("expected an ERROR event, got {other:?}"),
    }
    assert!(
        raw.try_next().await.expect("no error").is_none(),
        "the stream ends after the ERROR"
    );

    let mut events = spawn_watcher(nodes.clone(), watcher::Config::default());
    wait_for(&mut events, "the initial list", |e| {
        matches!(e, watcher::Event::InitDone)
    })
    .await;
    wait_for_open_watch(&server).await;
    assert_eq!(server.count_requests("list", "nodes"), 1);
    // Refuse the watcher's re-watches while a change happens and the
    // history is compacted, so it can only resume from a version now gone.
    server.faults().fail(
        Failure::status(500)
            .path_contains("watch=true")
            .times(1_000),
    );
    server.faults().drop_watches();
    server.put_node(node("third", &[])).expect("stored");
    server.compact();
    server.faults().clear_failures();
    wait_for(&mut events, "the relisted third node", |e| {
        applied(e, "third")
    })
    .await;
    assert_eq!(
        server.count_requests("list", "nodes"),
        2,
        "the 410 made the watcher list again"
    );
}

#[tokio::test]
async fn a_patch_to_a_missing_node_is_404_and_creates_nothing() {
    let (server, nodes) = server().await;
    let patch = Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}}));
    let err = api_error(
        nodes
            .patch("ghost", &PatchParams::default(), &patch)
            .await
            .expect_err("404"),
    );
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    assert_eq!(err.message, "nodes \"ghost\" not found");
    let details = err.details.expect("details");
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("ghost", "nodes")
    );
    let status_patch =
        Patch::Strategic(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}));
    let err = api_error(
        nodes
            .patch_status("ghost", &PatchParams::default(), &status_patch)
            .await
            .expect_err("404"),
    );
    assert_eq!(err.code, 404);
    assert!(server.node("ghost").is_none());
    assert!(server.nodes().is_empty());
}

#[tokio::test]
async fn a_pod_cidr_is_set_once_and_a_change_is_refused_with_422_leaving_the_node_unchanged() {
    let (server, nodes) = server().await;
    server.put_node(node("n1", &[])).expect("stored");
    let pp = PatchParams::default();
    let set = Patch::Merge(json!({"spec": {"podCIDR": "10.244.1.0/24"}}));
    let assigned = nodes.patch("n1", &pp, &set).await.expect("set from empty");
    let spec = assigned.spec.expect("spec");
    assert_eq!(
        spec.pod_cidrs,
        Some(vec!["10.244.1.0/24".to_string()]),
        "podCIDRs defaulted from podCIDR"
    );

    let before = server.node("n1").expect("n1");
    let change =
        Patch::Merge(json!({"spec": {"podCIDR": "10.244.9.0/24", "podCIDRs": ["10.244.9.0/24"]}}));
    let err = api_error(nodes.patch("n1", &pp, &change).await.expect_err("refused"));
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        err.message,
        "Node \"n1\" is invalid: spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"
    );
    let cause = &err.details.expect("details").causes[0];
    assert_eq!(
        (cause.field.as_str(), cause.reason.as_str()),
        ("spec.podCIDRs", "FieldValueForbidden")
    );
    assert_eq!(
        server.node("n1").expect("n1"),
        before,
        "nothing changed, not even the resourceVersion"
    );

    server.put_node(node("n2", &[])).expect("stored");
    let garbage = Patch::Merge(json!({"spec": {"podCIDRs": ["not-a-cidr"]}}));
    let err = api_error(nodes.patch("n2", &pp, &garbage).await.expect_err("refused"));
    assert_eq!(err.code, 422);
    assert!(
        err.message
            .contains("spec.podCIDRs[0]: Invalid value: \"not-a-cidr\""),
        "{}",
        err.message
    );
}

#[tokio::test]
async fn strategic_merge_of_status_conditions_keeps_the_kubelets_and_replaces_the_same_type() {
    let (server, nodes) = server().await;
    server.put_node(node("n1", &[])).expect("stored");
    let pp = PatchParams::default();
    let condition = |status: &str, reason: &str| {
        Patch::Strategic(json!({"status": {"conditions": [{
            "type": "NetworkUnavailable", "status": status, "reason": reason,
            "message": "route", "lastTransitionTime": "2025-01-01T00:00:00Z"
        }]}}))
    };
    nodes
        .patch_status("n1", &pp, &condition("True", "NoRouteCreated"))
        .await
        .expect("patched");
    let after = nodes
        .patch_status("n1", &pp, &condition("False", "RouteCreated"))
        .await
        .expect("patched");
    let conditions = after
        .status
        .expect("status")
        .conditions
        .expect("conditions");
    let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(
        types,
        [
            "KernelDeadlock",
            "MemoryPressure",
            "DiskPressure",
            "PIDPressure",
            "Ready",
            "NetworkUnavailable"
        ]
    );
    let network = conditions
        .iter()
        .find(|c| c.type_ == "NetworkUnavailable")
        .expect("ours");
    assert_eq!(
        (network.status.as_str(), network.reason.as_deref()),
        ("False", Some("RouteCreated"))
    );
    let ready = conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("the kubelet's");
    assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
}

#[tokio::test]
async fn a_merge_patch_on_the_main_resource_cannot_change_status_nor_status_writes_the_spec() {
    let (server, nodes) = server().await;
    server.put_node(node("n1", &[])).expect("stored");
    let pp = PatchParams::default();
    let status_before = server.node("n1").expect("n1").status;
    let main = Patch::Merge(
        json!({"metadata": {"annotations": {"nativeroute.io/subnet": "10.244.1.0/24"}},
                                   "status": {"conditions": null, "addresses": []}}),
    );
    let answer = nodes.patch("n1", &pp, &main).await.expect("patched");
    assert_eq!(
        answer.annotations()["nativeroute.io/subnet"],
        "10.244.1.0/24"
    );
    assert_eq!(
        answer.status, status_before,
        "status is untouched through the main resource"
    );

    let via_status =
        Patch::Merge(json!({"spec": {"unschedulable": true, "podCIDR": "10.244.2.0/24"}}));
    let answer = nodes
        .patch_status("n1", &pp, &via_status)
        .await
        .expect("patched");
    let spec = answer.spec.expect("spec");
    assert_eq!(
        (spec.unschedulable, spec.pod_cidr),
        (None, None),
        "spec is untouched through /status"
    );
}

#[tokio::test]
async fn a_stale_resource_version_is_a_conflict_and_a_no_op_patch_writes_nothing() {
    let (server, nodes) = server().await;
    let stored = server.put_node(node("n1", &[])).expect("stored");
    let pp = PatchParams::default();
    nodes
        .patch(
            "n1",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"v": "2"}}})),
        )
        .await
        .expect("patched");
    let err = api_error(
        nodes
            .replace("n1", &PostParams::default(), &stored)
            .await
            .expect_err("stale"),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message.contains("the object has been modified"),
        "{}",
        err.message
    );
    let stale_rv = stored.resource_version().expect("a version");
    let guarded =
        Patch::Merge(json!({"metadata": {"resourceVersion": stale_rv, "labels": {"v": "3"}}}));
    assert_eq!(
        api_error(nodes.patch("n1", &pp, &guarded).await.expect_err("stale")).code,
        409
    );

    let current = nodes.get("n1").await.expect("n1");
    let same = Patch::Merge(json!({"metadata": {"labels": {"v": "2"}}}));
    let answer = nodes.patch("n1", &pp, &same).await.expect("patched");
    assert_eq!(
        answer.resource_version(),
        current.resource_version(),
        "no change, no new version"
    );
}

#[tokio::test]
async fn a_json_patch_applies_and_one_whose_test_fails_is_refused() {
    let (server, nodes) = server().await;
    server
        .put_node(node("n1", &[("pool", "blue")]))
        .expect("stored");
    let pp = PatchParams::default();
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/labels/pool", "value": "blue"},
        {"op": "replace", "path": "/metadata/labels/pool", "value": "green"}
    ]))
    .expect("a JSON patch");
    let answer = nodes
        .patch("n1", &pp, &Patch::Json::<()>(ops))
        .await
        .expect("applied");
    assert_eq!(answer.labels()["pool"], "green");
    let stale: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/labels/pool", "value": "blue"},
        {"op": "remove", "path": "/metadata/labels/pool"}
    ]))
    .expect("a JSON patch");
    let err = api_error(
        nodes
            .patch("n1", &pp, &Patch::Json::<()>(stale))
            .await
            .expect_err("test fails"),
    );
    assert_eq!(err.code, 422);
    assert_eq!(server.node("n1").expect("n1").labels()["pool"], "green");
}

#[tokio::test]
async fn leases_are_created_and_updated_with_optimistic_concurrency() {
    let server = ApiServer::start().await.expect("starts");
    let leases: Api<Lease> = Api::namespaced(server.client().expect("client"), "kube-system");
    let lease = Lease {
        metadata: kube::api::ObjectMeta {
            name: Some("nativeroute".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let created = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("created");
    let mut taken = created.clone();
    taken.spec.as_mut().expect("spec").holder_identity = Some("b".into());
    let updated = leases
        .replace("nativeroute", &PostParams::default(), &taken)
        .await
        .expect("updated");
    assert_ne!(updated.resource_version(), created.resource_version());
    let mut late = created.clone();
    late.spec.as_mut().expect("spec").holder_identity = Some("c".into());
    let err = api_error(
        leases
            .replace("nativeroute", &PostParams::default(), &late)
            .await
            .expect_err("stale"),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(err.message.starts_with(
        "Operation cannot be fulfilled on leases.coordination.k8s.io \"nativeroute\""
    ));
    let held = server.lease("kube-system", "nativeroute").expect("stored");
    assert_eq!(
        held.spec.expect("spec").holder_identity.as_deref(),
        Some("b")
    );
    leases
        .delete("nativeroute", &DeleteParams::default())
        .await
        .expect("deleted");
    assert_eq!(
        api_error(leases.get("nativeroute").await.expect_err("gone")).code,
        404
    );
}

#[tokio::test]
async fn the_recorder_publishing_twice_makes_one_event_with_a_series_of_two() {
    let server = ApiServer::start().await.expect("starts");
    let client = server.client().expect("client");
    let stored = server.put_node(node("n1", &[])).expect("stored");
    let reporter = Reporter {
        controller: "nativeroute".into(),
        instance: Some("test".into()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let reference = stored.object_ref(&());
    let event = Event {
        type_: EventType::Normal,
        reason: "SubnetAssigned".into(),
        note: Some("10.244.1.0/24".into()),
        action: "Assign".into(),
        secondary: None,
    };
    recorder
        .publish(&event, &reference)
        .await
        .expect("first publish");
    recorder
        .publish(&event, &reference)
        .await
        .expect("second publish");

    let events = server.events();
    assert_eq!(events.len(), 1);
    let series = events[0].series.as_ref().expect("a series");
    assert_eq!(series.count, 2);
    assert_eq!(events[0].metadata.namespace.as_deref(), Some("default"));
    assert_eq!(server.count_requests("create", "events"), 1);
    assert_eq!(server.count_requests("patch", "events"), 1);
    let core: Api<CoreEvent> = Api::namespaced(client, "default");
    let listed = core
        .list(&ListParams::default().fields("involvedObject.name=n1"))
        .await
        .expect("listed");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].message.as_deref(), Some("10.244.1.0/24"));
    assert_eq!(
        listed.items[0].reporting_component.as_deref(),
        Some("nativeroute")
    );
}

#[tokio::test]
async fn an_injected_500_reaches_the_client_and_a_429_is_retried_after_its_delay() {
    let (server, nodes) = server().await;
    server.put_node(node("n1", &[])).expect("stored");
    server.faults().fail(
        Failure::status(500)
            .method("GET")
            .path_contains("/nodes/n1"),
    );
    let err = api_error(nodes.get("n1").await.expect_err("injected"));
    assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));
    nodes.get("n1").await.expect("only the next request failed");

    server.clear_requests();
    server
        .faults()
        .fail(Failure::status(429).retry_after(1).method("GET"));
    let started = std::time::Instant::now();
    nodes
        .get("n1")
        .await
        .expect("kube's retry policy waits and retries");
    assert!(started.elapsed() >= Duration::from_millis(900));
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200]);
}

#[tokio::test]
async fn a_stopped_server_refuses_connections_and_restarts_with_the_same_data() {
    let (server, nodes) = server().await;
    server.put_node(node("n1", &[])).expect("stored");
    let before = nodes.get("n1").await.expect("n1");
    let faults = server.faults();
    faults.stop().await;
    assert!(!faults.is_running());
    let refused = std::net::TcpStream::connect(server.addr()).expect_err("nobody listens");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    let err = nodes.get("n1").await.expect_err("no server");
    assert!(
        !matches!(err, kube::Error::Api(_)),
        "a connection error, not an answer: {err:?}"
    );

    faults.restart().await.expect("restarts");
    let after = nodes.get("n1").await.expect("the client reconnects");
    assert_eq!(after, before);
}

#[tokio::test]
async fn a_dropped_watch_is_resumed_by_the_kube_watcher_without_relisting() {
    let (server, nodes) = server().await;
    server.put_node(node("n1", &[])).expect("stored");
    let mut events = spawn_watcher(nodes, watcher::Config::default());
    wait_for(&mut events, "the initial list", |e| {
        matches!(e, watcher::Event::InitDone)
    })
    .await;
    wait_for_open_watch(&server).await;
    server.faults().drop_watches();
    server.put_node(node("n2", &[])).expect("stored");
    wait_for(&mut events, "n2", |e| applied(e, "n2")).await;
    assert_eq!(
        server.count_requests("list", "nodes"),
        1,
        "resumed from its version, no relist"
    );
    assert!(server.count_requests("watch", "nodes") >= 2);
}

#[tokio::test]
async fn a_stopped_and_restarted_server_is_rejoined_by_the_kube_watcher() {
    let (server, nodes) = server().await;
    server.put_node(node("n1", &[])).expect("stored");
    let mut events = spawn_watcher(nodes, watcher::Config::default());
    wait_for(&mut events, "the initial list", |e| {
        matches!(e, watcher::Event::InitDone)
    })
    .await;
    wait_for_open_watch(&server).await;
    server.stop().await;
    server.put_node(node("while-down", &[])).expect("stored");
    server.restart().await.expect("restarts");
    wait_for(&mut events, "the node written while down", |e| {
        applied(e, "while-down")
    })
    .await;
}

#[tokio::test]
async fn the_kube_watcher_with_streaming_lists_gets_initial_events_and_their_end_bookmark() {
    let (server, nodes) = server().await;
    server.put_node(node("n1", &[])).expect("stored");
    let mut events = spawn_watcher(nodes, watcher::Config::default().streaming_lists());
    wait_for(&mut events, "n1", |e| applied(e, "n1")).await;
    wait_for(&mut events, "the end of initial events", |e| {
        matches!(e, watcher::Event::InitDone)
    })
    .await;
    server.put_node(node("n2", &[])).expect("stored");
    wait_for(&mut events, "n2", |e| applied(e, "n2")).await;
    assert_eq!(server.count_requests("list", "nodes"), 0);
}

#[tokio::test]
async fn bookmarks_arrive_periodically_and_a_watch_ends_at_its_timeout() {
    let options = Options {
        bookmark_interval: Duration::from_millis(200),
        ..Options::default()
    };
    let server = ApiServer::start_with(options).await.expect("starts");
    let nodes: Api<Node> = Api::all(server.client().expect("client"));
    server.put_node(node("n1", &[])).expect("stored");
    let now = server.resource_version().to_string();
    let started = std::time::Instant::now();
    let mut stream = nodes
        .watch(&WatchParams::default().timeout(1), &now)
        .await
        .expect("watching")
        .boxed();
    match tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("in time")
        .expect("no error")
    {
        Some(WatchEvent::Bookmark(bookmark)) => assert_eq!(bookmark.metadata.resource_version, now),
        other => panic!("expected a bookmark, got {other:?}"),
    }
    while tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("in time")
        .expect("no error")
        .is_some()
    {}
    let lasted = started.elapsed();
    assert!(
        lasted >= Duration::from_millis(900) && lasted < Duration::from_secs(3),
        "{lasted:?}"
    );
}

async fn next<K>(
    stream: &mut futures::stream::BoxStream<'static, kube::Result<WatchEvent<K>>>,
) -> WatchEvent<K> {
    let event = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("in time");
    event.expect("no error").expect("an event")
}

#[tokio::test]
async fn a_filtered_watch_sees_a_node_leaving_its_selection_as_deleted() {
    let (server, nodes) = server().await;
    server
        .put_node(node("n1", &[("pool", "blue")]))
        .expect("stored");
    let params = WatchParams::default()
        .labels("pool=blue")
        .disable_bookmarks();
    let mut stream = nodes.watch(&params, "0").await.expect("watching").boxed();
    assert!(matches!(next(&mut stream).await, WatchEvent::Added(n) if n.name_any() == "n1"));
    server
        .put_node(node("n1", &[("pool", "green")]))
        .expect("relabelled");
    assert!(matches!(next(&mut stream).await, WatchEvent::Deleted(n) if n.name_any() == "n1"));
    server
        .put_node(node("n1", &[("pool", "blue")]))
        .expect("relabelled");
    assert!(matches!(next(&mut stream).await, WatchEvent::Added(n) if n.name_any() == "n1"));
    assert!(server.delete_node("n1"));
    assert!(matches!(next(&mut stream).await, WatchEvent::Deleted(n) if n.name_any() == "n1"));
}

#[tokio::test]
async fn a_held_watch_sends_nothing_until_released_and_then_every_change_at_once() {
    let (server, nodes) = server().await;
    server.put_node(node("kept", &[])).expect("stored");
    let from = server.resource_version().to_string();
    let mut stream = nodes
        .watch(&WatchParams::default(), &from)
        .await
        .expect("watching")
        .boxed();
    wait_for_open_watch(&server).await;
    server.faults().hold_watches();
    assert!(server.delete_node("kept"));
    server.put_node(node("kept", &[])).expect("stored again");
    let early = tokio::time::timeout(Duration::from_millis(300), stream.try_next()).await;
    assert!(early.is_err(), "a held watch sent {early:?}");

    server.faults().release_watches();
    let first = tokio::time::timeout(WAIT, stream.try_next())
        .await
        .expect("in time")
        .expect("no error");
    assert!(matches!(first, Some(WatchEvent::Deleted(_))), "{first:?}");
    // Written with the first: already there, no waiting.
    let second = futures::FutureExt::now_or_never(stream.try_next())
        .expect("the second change came in the same write")
        .expect("no error");
    assert!(matches!(second, Some(WatchEvent::Added(_))), "{second:?}");
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

async fn config_maps(namespace: &str) -> (ApiServer, Api<ConfigMap>) {
    let server = ApiServer::start()
        .await
        .expect("the test API server starts");
    let api = Api::namespaced(server.client().expect("a client"), namespace);
    (server, api)
}

fn data(map: &ConfigMap) -> Vec<(String, String)> {
    map.data.clone().unwrap_or_default().into_iter().collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The fields of a 422's causes, in order.
fn cause_fields(status: &kube::core::Status) -> Vec<String> {
    status
        .details
        .as_ref()
        .map(|d| d.causes.iter().map(|c| c.field.clone()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn config_maps_are_created_read_replaced_listed_and_deleted() {
    let (server, maps) = config_maps("nativeroute").await;
    let pp = PostParams::default();
    let mut wanted = config_map("routes", &[("a", "1")]);
    wanted.binary_data = Some([("blob".to_string(), ByteString(vec![0, 1, 255]))].into());
    let created = maps.create(&pp, &wanted).await.expect("created");
    assert_eq!(created.namespace().as_deref(), Some("nativeroute"));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(
        created.binary_data.as_ref().expect("binaryData")["blob"],
        ByteString(vec![0, 1, 255])
    );
    let read = maps.get("routes").await.expect("read back");
    assert_eq!(read, created);

    let mut changed = read.clone();
    changed.data = Some([("a".to_string(), "2".to_string())].into());
    let replaced = maps
        .replace("routes", &pp, &changed)
        .await
        .expect("replaced");
    assert_ne!(replaced.resource_version(), created.resource_version());
    assert_eq!(replaced.metadata.uid, created.metadata.uid);
    assert_eq!(data(&replaced), pairs(&[("a", "2")]));
    assert_eq!(
        server.config_map("nativeroute", "routes"),
        Some(replaced.clone())
    );

    let duplicate = api_error(maps.create(&pp, &wanted).await.expect_err("exists"));
    assert_eq!(
        (duplicate.code, duplicate.reason.as_str()),
        (409, "AlreadyExists")
    );
    assert_eq!(duplicate.message, "configmaps \"routes\" already exists");
    let missing = api_error(
        maps.replace("ghost", &pp, &config_map("ghost", &[]))
            .await
            .expect_err("no create on update"),
    );
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, "configmaps \"ghost\" not found");
    assert!(server.config_map("nativeroute", "ghost").is_none());

    let elsewhere: Api<ConfigMap> = Api::namespaced(server.client().expect("client"), "other");
    elsewhere
        .create(&pp, &config_map("routes", &[("b", "1")]))
        .await
        .expect("the same name in another namespace");
    let here = maps.list(&ListParams::default()).await.expect("listed");
    assert_eq!(here.items, [replaced]);
    let everywhere: Api<ConfigMap> = Api::all(server.client().expect("client"));
    let all = everywhere
        .list(&ListParams::default())
        .await
        .expect("listed");
    let names: Vec<(String, String)> = all
        .iter()
        .map(|m| (m.namespace().unwrap_or_default(), m.name_any()))
        .collect();
    assert_eq!(
        names,
        pairs(&[("nativeroute", "routes"), ("other", "routes")])
    );
    assert_eq!(server.config_maps().len(), 2);

    maps.delete("routes", &DeleteParams::default())
        .await
        .expect("deleted");
    assert_eq!(
        api_error(maps.get("routes").await.expect_err("gone")).code,
        404
    );
    assert!(server.config_map("nativeroute", "routes").is_none());
    assert!(server.config_map("other", "routes").is_some());
}

#[tokio::test]
async fn a_config_map_replaced_from_a_stale_version_is_a_conflict() {
    let (server, maps) = config_maps("default").await;
    let pp = PostParams::default();
    let created = maps
        .create(&pp, &config_map("routes", &[("a", "1")]))
        .await
        .expect("created");
    let mut first = created.clone();
    first.data = Some([("a".to_string(), "first".to_string())].into());
    maps.replace("routes", &pp, &first).await.expect("replaced");
    let mut late = created.clone();
    late.data = Some([("a".to_string(), "late".to_string())].into());
    let err = api_error(maps.replace("routes", &pp, &late).await.expect_err("stale"));
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        err.message,
        "Operation cannot be fulfilled on configmaps \"routes\": the object has been modified; \
         please apply your changes to the latest version and try again"
    );
    let kept = server.config_map("default", "routes").expect("stored");
    assert_eq!(data(&kept), pairs(&[("a", "first")]));
}

#[tokio::test]
async fn config_map_data_is_patched_by_merge_strategic_and_json_patches() {
    let (server, maps) = config_maps("default").await;
    maps.create(
        &PostParams::default(),
        &config_map("routes", &[("a", "1"), ("b", "2")]),
    )
    .await
    .expect("created");
    let pp = PatchParams::default();
    let merged = maps
        .patch(
            "routes",
            &pp,
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .expect("merge patched");
    assert_eq!(data(&merged), pairs(&[("b", "2"), ("c", "3")]));
    let strategic = maps
        .patch(
            "routes",
            &pp,
            &Patch::Strategic(json!({"data": {"d": "4"}})),
        )
        .await
        .expect("strategic merge patched");
    assert_eq!(
        data(&strategic),
        pairs(&[("b", "2"), ("c", "3"), ("d", "4")])
    );
    let ops: json_patch::Patch = serde_json::from_value(json!([
        {"op": "test", "path": "/data/b", "value": "2"},
        {"op": "replace", "path": "/data/b", "value": "two"}
    ]))
    .expect("a JSON patch");
    let patched = maps
        .patch("routes", &pp, &Patch::Json::<()>(ops))
        .await
        .expect("JSON patched");
    assert_eq!(
        data(&patched),
        pairs(&[("b", "two"), ("c", "3"), ("d", "4")])
    );
    assert_eq!(
        server.config_map("default", "routes"),
        Some(patched.clone())
    );

    let same = maps
        .patch("routes", &pp, &Patch::Merge(json!({"data": {"c": "3"}})))
        .await
        .expect("patched");
    assert_eq!(
        same.resource_version(),
        patched.resource_version(),
        "no change, no new version"
    );
    let missing = api_error(
        maps.patch("ghost", &pp, &Patch::Merge(json!({"data": {"a": "1"}})))
            .await
            .expect_err("no such config map"),
    );
    assert_eq!(missing.code, 404);
}

#[tokio::test]
async fn a_config_map_over_one_mebibyte_is_invalid_and_keys_do_not_count() {
    let (server, maps) = config_maps("default").await;
    let pp = PostParams::default();
    let limit = 1024 * 1024;
    let full = "x".repeat(limit);
    maps.create(
        &pp,
        &config_map("full", &[("a-rather-long-key-name", &full)]),
    )
    .await
    .expect("exactly 1 MiB of values fits, whatever the keys");
    let over = "x".repeat(limit + 1);
    let err = api_error(
        maps.create(&pp, &config_map("over", &[("a", &over)]))
            .await
            .expect_err("too large"),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        err.message,
        "ConfigMap \"over\" is invalid: []: Too long: may not be more than 1048576 bytes"
    );
    assert_eq!(cause_fields(&err), ["[]"]);
    let cause = &err.details.as_ref().expect("details").causes[0];
    assert_eq!(cause.reason, "FieldValueTooLong");
    assert!(server.config_map("default", "over").is_none());

    // Binary data counts decoded, and an update is held to the limit too.
    let grown = Patch::Merge(json!({"binaryData": {"extra": "AA=="}}));
    let err = api_error(
        maps.patch("full", &PatchParams::default(), &grown)
            .await
            .expect_err("one byte over"),
    );
    assert_eq!(err.code, 422);
    assert!(err.message.contains("1048576"), "{}", err.message);
    let kept = server.config_map("default", "full").expect("stored");
    assert!(kept.binary_data.is_none());
}

#[tokio::test]
async fn a_config_map_with_a_bad_or_duplicated_key_is_invalid() {
    let (server, maps) = config_maps("default").await;
    let pp = PostParams::default();
    let err = api_error(
        maps.create(
            &pp,
            &config_map("bad", &[("no spaces", "x"), ("fine", "y")]),
        )
        .await
        .expect_err("a bad key"),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        err.message,
        "ConfigMap \"bad\" is invalid: data[no spaces]: Invalid value: \"no spaces\": a valid config key \
         must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  \
         or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
    );
    assert_eq!(cause_fields(&err), ["data[no spaces]"]);
    assert!(server.config_map("default", "bad").is_none());

    let mut both = config_map("both", &[("k", "x")]);
    both.binary_data = Some([("k".to_string(), ByteString(vec![1]))].into());
    let err = api_error(maps.create(&pp, &both).await.expect_err("a duplicate"));
    assert_eq!(err.code, 422);
    assert_eq!(
        err.message,
        "ConfigMap \"both\" is invalid: data[k]: Invalid value: \"k\": duplicate of key present in binaryData"
    );

    maps.create(&pp, &config_map("good", &[("a", "1")]))
        .await
        .expect("created");
    let err = api_error(
        maps.patch(
            "good",
            &PatchParams::default(),
            &Patch::Merge(json!({"binaryData": {"..": "AA=="}})),
        )
        .await
        .expect_err("a bad key by patch"),
    );
    assert_eq!(err.code, 422);
    assert_eq!(cause_fields(&err), ["binaryData[..]"]);
    assert!(err.message.ends_with("must not be '..'"), "{}", err.message);
}

#[tokio::test]
async fn an_immutable_config_map_refuses_data_changes_but_takes_new_labels() {
    let (server, maps) = config_maps("default").await;
    let mut frozen = config_map("frozen", &[("a", "1")]);
    frozen.immutable = Some(true);
    maps.create(&PostParams::default(), &frozen)
        .await
        .expect("created");
    let pp = PatchParams::default();
    let err = api_error(
        maps.patch("frozen", &pp, &Patch::Merge(json!({"data": {"a": "2"}})))
            .await
            .expect_err("immutable"),
    );
    assert_eq!((err.code, err.reason.as_str()), (422, "Invalid"));
    assert_eq!(
        err.message,
        "ConfigMap \"frozen\" is invalid: data: Forbidden: field is immutable when `immutable` is set"
    );
    let err = api_error(
        maps.patch("frozen", &pp, &Patch::Merge(json!({"immutable": false})))
            .await
            .expect_err("stays immutable"),
    );
    assert_eq!(cause_fields(&err), ["immutable"]);
    let labelled = maps
        .patch(
            "frozen",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"tier": "edge"}}})),
        )
        .await
        .expect("metadata may change");
    assert_eq!(labelled.labels()["tier"], "edge");
    assert_eq!(
        data(&server.config_map("default", "frozen").expect("stored")),
        pairs(&[("a", "1")])
    );
}

#[tokio::test]
async fn a_config_map_watch_sees_its_namespace_added_modified_and_deleted() {
    let (server, maps) = config_maps("watched").await;
    let params = WatchParams::default().disable_bookmarks();
    let mut stream = maps.watch(&params, "0").await.expect("watching").boxed();
    let elsewhere: Api<ConfigMap> = Api::namespaced(server.client().expect("client"), "other");
    let pp = PostParams::default();
    elsewhere
        .create(&pp, &config_map("routes", &[]))
        .await
        .expect("created elsewhere");
    let created = maps
        .create(&pp, &config_map("routes", &[("a", "1")]))
        .await
        .expect("created");
    match next(&mut stream).await {
        WatchEvent::Added(m) => assert_eq!(
            (m.namespace().as_deref(), m.resource_version()),
            (Some("watched"), created.resource_version())
        ),
        other => panic!("expected ADDED, got {other:?}"),
    }
    let patched = maps
        .patch(
            "routes",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "2"}})),
        )
        .await
        .expect("patched");
    match next(&mut stream).await {
        WatchEvent::Modified(m) => {
            assert_eq!(m.resource_version(), patched.resource_version());
            assert_eq!(data(&m), pairs(&[("a", "2")]));
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    maps.delete("routes", &DeleteParams::default())
        .await
        .expect("deleted");
    assert!(matches!(next(&mut stream).await, WatchEvent::Deleted(m) if m.name_any() == "routes"));
    assert_eq!(server.count_requests("watch", "configmaps"), 1);
}

#[tokio::test]
async fn a_fault_injected_on_config_maps_reaches_the_client_and_leaves_nodes_alone() {
    let (server, maps) = config_maps("default").await;
    let nodes: Api<Node> = Api::all(server.client().expect("client"));
    server.put_node(node("n1", &[])).expect("stored");
    maps.create(&PostParams::default(), &config_map("routes", &[("a", "1")]))
        .await
        .expect("created");
    server
        .faults()
        .fail(Failure::status(500).path_contains("/configmaps/").times(2));
    nodes.get("n1").await.expect("nodes are not targeted");
    let err = api_error(maps.get("routes").await.expect_err("injected"));
    assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));
    let err = api_error(
        maps.patch(
            "routes",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "2"}})),
        )
        .await
        .expect_err("injected"),
    );
    assert_eq!(err.code, 500);
    assert_eq!(
        data(&server.config_map("default", "routes").expect("stored")),
        pairs(&[("a", "1")]),
        "the failed patch wrote nothing"
    );
    maps.get("routes").await.expect("only two requests failed");
    assert_eq!(server.count_requests("get", "configmaps"), 2);
    assert_eq!(server.count_requests("patch", "configmaps"), 1);
}
