//! The manifests against the running controller.
//!
//! The RBAC that `kubectl apply -k manifests/` grants, against every request
//! the real controller makes: two controllers against the test API server
//! (which records each request) go through annotations, a pinned node, a
//! deletion, Events, the NetworkUnavailable condition and a leader
//! handover; each request must be allowed by the rendered ClusterRole and
//! Roles bound to the Deployment's ServiceAccount, and each granted verb must
//! have been used or be explained in [`NOT_EXERCISED`].
//!
//! The alerts and the dashboard of `manifests/monitoring/`, against the
//! metrics the controller exposes on /metrics.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding};
use nativeroute_tests::apiserver::RequestRecord;
use nativeroute_tests::kube_lab::{KubeConfig, KubeLab, LabRouter};
use nativeroute_tests::lab::{http_get, wait_until};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_yaml_ng::Value;

const MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests");

/// Granted verbs no request of this test uses, and why they are granted.
const NOT_EXERCISED: [(&str, &str, &str, &str); 1] = [(
    "events.k8s.io",
    "events",
    "patch",
    "an identical Event is said again only after a 10-minute quiet period, and then counted \
     in the first Event's series by a patch; no test waits that long",
)];

/// Paths outside the resource API that every authenticated client may
/// read (the default ClusterRoles system:public-info-viewer and
/// system:discovery), so the manifests need not grant them.
const OPEN_TO_EVERY_CLIENT: [&str; 3] = ["/version", "/api", "/apis"];

/// `kubectl kustomize manifests/<folder>`.
fn render(folder: &str) -> Vec<Value> {
    let output = Command::new("kubectl")
        .arg("kustomize")
        .arg(Path::new(MANIFESTS).join(folder))
        .output()
        .unwrap_or_else(|err| {
            panic!("cannot run kubectl ({err}): this test renders manifests/ with `kubectl kustomize`; install kubectl")
        });
    assert!(
        output.status.success(),
        "kubectl kustomize manifests/{folder} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("kubectl prints UTF-8");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| Value::deserialize(document).expect("kubectl prints valid YAML"))
        .filter(|value| !value.is_null())
        .collect()
}

fn of_kind<T: DeserializeOwned>(objects: &[Value], kind: &str) -> Vec<T> {
    objects
        .iter()
        .filter(|object| object["kind"].as_str() == Some(kind))
        .map(|object| {
            serde_yaml_ng::from_value(object.clone())
                .unwrap_or_else(|err| panic!("a {kind} does not parse: {err}"))
        })
        .collect()
}

/// One rule granted to the controller, and where it applies.
#[derive(Debug)]
struct Grant {
    /// "ClusterRole nativeroute", "Role default/nativeroute-events".
    role: String,
    /// None: every namespace and cluster-scoped objects (a ClusterRoleBinding).
    namespace: Option<String>,
    rule: PolicyRule,
}

/// The rules bound to the ServiceAccount the Deployment runs as.
fn grants(objects: &[Value]) -> Vec<Grant> {
    let deployments: Vec<Deployment> = of_kind(objects, "Deployment");
    assert_eq!(deployments.len(), 1);
    let namespace = deployments[0]
        .metadata
        .namespace
        .clone()
        .expect("a namespace");
    let account = deployments[0]
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .and_then(|pod| pod.service_account_name.clone())
        .expect("the pod names its ServiceAccount");
    let is_ours = |subjects: &Option<Vec<k8s_openapi::api::rbac::v1::Subject>>| {
        subjects.iter().flatten().any(|subject| {
            subject.kind == "ServiceAccount"
                && subject.name == account
                && subject.namespace.as_deref() == Some(namespace.as_str())
        })
    };
    let cluster_roles: Vec<ClusterRole> = of_kind(objects, "ClusterRole");
    let roles: Vec<Role> = of_kind(objects, "Role");
    let cluster_rules = |name: &str| -> Vec<PolicyRule> {
        cluster_roles
            .iter()
            .find(|role| role.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| {
                panic!("a binding refers to ClusterRole {name}, which is not rendered")
            })
            .rules
            .clone()
            .unwrap_or_default()
    };
    let mut grants = Vec::new();
    for binding in of_kind::<ClusterRoleBinding>(objects, "ClusterRoleBinding") {
        if is_ours(&binding.subjects) {
            assert_eq!(binding.role_ref.kind, "ClusterRole");
            for rule in cluster_rules(&binding.role_ref.name) {
                grants.push(Grant {
                    role: format!("ClusterRole {}", binding.role_ref.name),
                    namespace: None,
                    rule,
                });
            }
        }
    }
    for binding in of_kind::<RoleBinding>(objects, "RoleBinding") {
        if !is_ours(&binding.subjects) {
            continue;
        }
        let scope = binding
            .metadata
            .namespace
            .clone()
            .expect("a RoleBinding's namespace");
        let rules = match binding.role_ref.kind.as_str() {
            "ClusterRole" => cluster_rules(&binding.role_ref.name),
            _ => roles
                .iter()
                .find(|role| {
                    role.metadata.name.as_deref() == Some(binding.role_ref.name.as_str())
                        && role.metadata.namespace.as_deref() == Some(scope.as_str())
                })
                .unwrap_or_else(|| {
                    panic!(
                        "RoleBinding {scope}/{} refers to a Role that is not rendered",
                        binding.role_ref.name
                    )
                })
                .rules
                .clone()
                .unwrap_or_default(),
        };
        for rule in rules {
            grants.push(Grant {
                role: format!(
                    "{} {scope}/{}",
                    binding.role_ref.kind, binding.role_ref.name
                ),
                namespace: Some(scope.clone()),
                rule,
            });
        }
    }
    grants
}

/// A request as RBAC sees it.
#[derive(Debug)]
struct Access {
    verb: String,
    group: String,
    /// With its subresource: "nodes/status".
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
}

impl Access {
    fn of(record: &RequestRecord) -> Option<Access> {
        if record.resource.is_empty() {
            return None;
        }
        let group = match record
            .path
            .trim_start_matches('/')
            .split('/')
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["apis", group, ..] => (*group).to_owned(),
            _ => String::new(),
        };
        let resource = match record.subresource {
            "" => record.resource.to_owned(),
            sub => format!("{}/{sub}", record.resource),
        };
        Some(Access {
            verb: record.verb.to_owned(),
            group,
            resource,
            namespace: record.namespace.clone(),
            name: record.name.clone(),
        })
    }
}

/// Whether `grant` allows `access`, as the RBAC authorizer decides. A rule
/// with resourceNames allows no create and no list or watch: the name is
/// not in those requests' paths.
fn allows(grant: &Grant, access: &Access) -> bool {
    let rule = &grant.rule;
    let names = |list: &Option<Vec<String>>, wanted: &str| {
        list.iter()
            .flatten()
            .any(|item| item == wanted || item == "*")
    };
    let in_scope = match &grant.namespace {
        None => true,
        Some(namespace) => access.namespace.as_deref() == Some(namespace.as_str()),
    };
    let named = match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(allowed) => access
            .name
            .as_ref()
            .is_some_and(|name| allowed.contains(name)),
    };
    in_scope
        && named
        && names(&rule.api_groups, &access.group)
        && names(&rule.resources, &access.resource)
        && rule
            .verbs
            .iter()
            .any(|verb| *verb == access.verb || verb == "*")
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

/// Drives two controllers through what they do in a cluster; returns
/// every request they made.
async fn requests_of_a_controllers_life() -> Vec<RequestRecord> {
    // A BGP router: the one driver that also keeps objects of its own in
    // the cluster (what its sessions announced), so every grant is used.
    let converged = KubeLab::converged(KubeConfig {
        router: LabRouter::Bgp,
        ..KubeConfig::default()
    })
    .await;
    let lab = &converged.lab;
    let mut routes = converged.routes.clone();

    // Annotations: an invalid one (an Event), an exclusion (the route goes,
    // with an Event, and the status annotation says so), a new node with a pinned subnet (its
    // podCIDR is written, its route added).
    lab.annotate("node1", "nativeroute.io/routers", Some("tor-z"));
    lab.wait_for_event("node1", "InvalidAnnotation", &["tor-z"])
        .await;
    lab.annotate("node2", "nativeroute.io/exclude", Some("true"));
    routes.remove(&converged.subnets["node2"]);
    lab.wait_for_routes("excluded node2 has no route", &routes)
        .await;
    lab.wait_for_event("node2", "RouteDeleted", &[]).await;
    lab.put(KubeLab::pinned_node(
        "node4",
        ip("192.168.3.40"),
        "11.11.40.0/24",
    ));
    routes.insert(
        "11.11.40.0/24".parse().expect("a subnet"),
        ip("192.168.3.40"),
    );
    lab.wait_for_routes("pinned node4 is routed", &routes).await;
    wait_until(
        "node4's podCIDR is written",
        Duration::from_secs(10),
        async || {
            lab.node("node4")
                .spec
                .and_then(|spec| spec.pod_cidr)
                .as_deref()
                == Some("11.11.40.0/24")
        },
    )
    .await;

    // A deletion: the route goes.
    assert!(lab.api.delete_node("node4"));
    routes.remove(&"11.11.40.0/24".parse().expect("a subnet"));
    lab.wait_for_routes("deleted node4's route is gone", &routes)
        .await;

    // Leader election: a follower waits, the leader releases the Lease on
    // SIGTERM, the follower takes it and renews it.
    let mut follower = lab.start_controller("leader-b");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(lab.lease_holder().as_deref(), Some("leader-a"));
    converged.controller.stop(Duration::from_secs(15));
    wait_until("leader-b leads", Duration::from_secs(20), async || {
        lab.lease_holder().as_deref() == Some("leader-b")
    })
    .await;
    let renewed = || {
        lab.lease("nativeroute", "nativeroute")
            .and_then(|lease| lease.spec?.renew_time)
    };
    let taken = renewed();
    wait_until(
        "leader-b renews the Lease",
        Duration::from_secs(10),
        async || renewed() != taken,
    )
    .await;
    lab.wait_for_routes("leader-b keeps the routes", &routes)
        .await;
    follower.assert_running();
    lab.api.requests()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_the_controller_makes_is_allowed_by_the_manifests_and_every_grant_is_used() {
    let objects = render("");
    let grants = grants(&objects);
    assert!(
        !grants.is_empty(),
        "nothing is granted to the controller's ServiceAccount"
    );
    for grant in &grants {
        let rule = &grant.rule;
        let wildcard = rule
            .verbs
            .iter()
            .chain(rule.resources.iter().flatten())
            .chain(rule.api_groups.iter().flatten())
            .any(|word| word == "*");
        assert!(
            !wildcard,
            "{}: a wildcard also grants what a later Kubernetes adds: {rule:?}",
            grant.role
        );
    }

    let requests = requests_of_a_controllers_life().await;
    let mut denied = Vec::new();
    let mut used = BTreeSet::new();
    for record in &requests {
        let Some(access) = Access::of(record) else {
            if !OPEN_TO_EVERY_CLIENT.contains(&record.path.as_str()) {
                denied.push(format!(
                    "{} {} (a path the manifests cannot grant)",
                    record.method, record.path
                ));
            }
            continue;
        };
        match grants.iter().position(|grant| allows(grant, &access)) {
            Some(index) => {
                used.insert((index, access.verb.clone()));
            }
            None => denied.push(format!("{} {} ({access:?})", record.method, record.path)),
        }
    }
    denied.sort();
    denied.dedup();
    assert!(
        denied.is_empty(),
        "the manifests do not allow these requests of the controller:\n{}",
        denied.join("\n")
    );

    let mut unused = Vec::new();
    for (index, grant) in grants.iter().enumerate() {
        for verb in &grant.rule.verbs {
            let explained = NOT_EXERCISED
                .iter()
                .any(|(group, resource, unused_verb, _)| {
                    grant.rule.api_groups.iter().flatten().any(|g| g == group)
                        && grant.rule.resources.iter().flatten().any(|r| r == resource)
                        && unused_verb == verb
                });
            if !used.contains(&(index, verb.clone())) && !explained {
                unused.push(format!(
                    "{}: {verb} on {:?}",
                    grant.role, grant.rule.resources
                ));
            }
        }
    }
    assert!(
        unused.is_empty(),
        "granted but never used (remove them, or say in NOT_EXERCISED why they stay):\n{}",
        unused.join("\n")
    );
}

#[test]
fn the_rbac_check_denies_what_the_rules_do_not_name() {
    let grant = |namespace: Option<&str>, names: Option<Vec<&str>>| Grant {
        role: "Role test".into(),
        namespace: namespace.map(str::to_owned),
        rule: PolicyRule {
            api_groups: Some(vec!["coordination.k8s.io".into()]),
            resources: Some(vec!["leases".into()]),
            resource_names: names.map(|names| names.into_iter().map(str::to_owned).collect()),
            verbs: vec!["get".into(), "create".into()],
            ..PolicyRule::default()
        },
    };
    let access = |verb: &str, namespace: &str, name: Option<&str>| Access {
        verb: verb.into(),
        group: "coordination.k8s.io".into(),
        resource: "leases".into(),
        namespace: Some(namespace.into()),
        name: name.map(str::to_owned),
    };
    let scoped = grant(Some("nativeroute"), None);
    assert!(allows(&scoped, &access("get", "nativeroute", Some("x"))));
    assert!(
        !allows(&scoped, &access("get", "kube-system", Some("x"))),
        "another namespace"
    );
    assert!(
        !allows(&scoped, &access("update", "nativeroute", Some("x"))),
        "another verb"
    );
    let named = grant(Some("nativeroute"), Some(vec!["nativeroute"]));
    assert!(allows(
        &named,
        &access("get", "nativeroute", Some("nativeroute"))
    ));
    assert!(
        !allows(&named, &access("get", "nativeroute", Some("other"))),
        "another name"
    );
    assert!(
        !allows(&named, &access("create", "nativeroute", None)),
        "a create has no name to match"
    );
    let status = Access {
        resource: "leases/status".into(),
        ..access("get", "nativeroute", Some("x"))
    };
    assert!(
        !allows(&scoped, &status),
        "a subresource is a resource of its own"
    );
}

/// Metric names in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("nativeroute_") {
        let preceded_by_name = rest[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        if !preceded_by_name {
            names.insert(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// Every sample name /metrics can carry, from its TYPE lines (so families
/// with no sample yet count) and its samples.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        if let Some(declared) = line.strip_prefix("# TYPE ") {
            let mut words = declared.split_whitespace();
            let (Some(name), Some(kind)) = (words.next(), words.next()) else {
                continue;
            };
            let suffixes: &[&str] = match kind {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            names.extend(suffixes.iter().map(|suffix| format!("{name}{suffix}")));
        } else if !line.starts_with('#') {
            let end = line.find(['{', ' ']).unwrap_or(line.len());
            if end > 0 {
                names.insert(line[..end].to_owned());
            }
        }
    }
    names
}

/// Each alert of the PrometheusRule: (name, expression).
fn alerts(monitoring: &[Value]) -> Vec<(String, String)> {
    let rules: Vec<&Value> = monitoring
        .iter()
        .filter(|object| object["kind"].as_str() == Some("PrometheusRule"))
        .collect();
    assert_eq!(rules.len(), 1);
    rules[0]["spec"]["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .flat_map(|group| group["rules"].as_sequence().cloned().unwrap_or_default())
        .map(|rule| {
            (
                rule["alert"].as_str().expect("an alerting rule").to_owned(),
                rule["expr"].as_str().expect("an expression").to_owned(),
            )
        })
        .collect()
}

/// Each query of the Grafana dashboard: (panel title, expression).
fn dashboard_queries(monitoring: &[Value]) -> Vec<(String, String)> {
    let map = of_kind::<ConfigMap>(monitoring, "ConfigMap")
        .into_iter()
        .find(|map| {
            map.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("grafana_dashboard"))
                .map(String::as_str)
                == Some("1")
        })
        .expect("a ConfigMap labelled for Grafana's dashboard sidecar");
    let data = map.data.unwrap_or_default();
    assert_eq!(data.len(), 1);
    let file = std::fs::read_to_string(
        Path::new(MANIFESTS)
            .join("monitoring")
            .join("grafana-dashboard.json"),
    )
    .expect("monitoring/grafana-dashboard.json");
    let json = data.into_values().next().expect("the dashboard");
    assert_eq!(
        json, file,
        "the ConfigMap carries the dashboard file as it is"
    );
    let dashboard: serde_json::Value = serde_json::from_str(&json).expect("the dashboard is JSON");
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            panel["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(move |target| {
                    (
                        title.clone(),
                        target["expr"].as_str().expect("a PromQL target").to_owned(),
                    )
                })
        })
        .collect()
}

/// The real controller scraped once every family the alerts may name has a
/// sample: a family without one is not exposed at all. So it runs against
/// the test API server (node Events) with the lab's router and a second
/// router whose plugin always fails (sync errors).
async fn scrape_the_controller() -> String {
    let lab = KubeLab::create(KubeConfig::default()).await;
    let mut config = std::fs::read_to_string(&lab.config).expect("the lab's config");
    config.push_str("  - {name: broken, driver: plugin, command: [/bin/false]}\n");
    std::fs::write(&lab.config, config).expect("the config with a broken router");
    lab.register_lab_nodes();
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        listener.local_addr().expect("its address")
    };
    let _controller = lab.start_controller_with("metrics", &address.to_string());
    let mut text = String::new();
    wait_until(
        "the controller has routed the nodes, sent Events and failed the broken router",
        Duration::from_secs(20),
        async || {
            text = http_get(address, "/metrics")
                .map(|(_, body)| body)
                .unwrap_or_default();
            [
                "nativeroute_routes{",
                "nativeroute_node_events_total{",
                "nativeroute_sync_errors_total{",
            ]
            .iter()
            .all(|family| text.contains(family))
        },
    )
    .await;
    text
}

#[tokio::test(flavor = "multi_thread")]
async fn every_alert_and_dashboard_query_names_metrics_the_controller_exports() {
    let exported = exported_names(&scrape_the_controller().await);
    let monitoring = render("monitoring");
    let mut used = BTreeSet::new();
    for (what, expr) in alerts(&monitoring)
        .into_iter()
        .map(|(alert, expr)| (format!("alert {alert}"), expr))
        .chain(
            dashboard_queries(&monitoring)
                .into_iter()
                .map(|(panel, expr)| (format!("panel {panel}"), expr)),
        )
    {
        let names = metric_names(&expr);
        assert!(
            !names.is_empty(),
            "{what} names no nativeroute metric: {expr}"
        );
        for name in &names {
            assert!(
                exported.contains(name),
                "{what} names {name}, which the controller does not export: {expr}\nexported: {exported:?}"
            );
        }
        used.extend(names);
    }
    // What the alerts must watch: router down, pool usage, held removals,
    // failing changes (no metric counts unprogrammed nodes), sync errors,
    // leadership.
    let alerted: BTreeSet<String> = alerts(&monitoring)
        .into_iter()
        .flat_map(|(_, expr)| metric_names(&expr))
        .collect();
    for name in [
        "nativeroute_router_up",
        "nativeroute_pool_subnets",
        "nativeroute_withdrawals_held",
        "nativeroute_route_changes_total",
        "nativeroute_sync_errors_total",
        "nativeroute_leader",
    ] {
        assert!(alerted.contains(name), "no alert watches {name}");
    }
    for name in [
        "nativeroute_routes",
        "nativeroute_router_up",
        "nativeroute_sync_duration_seconds_bucket",
        "nativeroute_route_changes_total",
        "nativeroute_withdrawals_held",
        "nativeroute_pool_subnets",
        "nativeroute_leader",
    ] {
        assert!(
            used.contains(name),
            "neither an alert nor the dashboard shows {name}"
        );
    }
}

#[test]
fn metric_names_are_read_from_promql_and_from_the_exposition() {
    assert_eq!(
        metric_names(
            r#"sum without (state) (nativeroute_pool_subnets{state="free"}) / x_nativeroute_y and on (job) nativeroute_leader == 1"#
        ),
        BTreeSet::from([
            "nativeroute_pool_subnets".to_owned(),
            "nativeroute_leader".to_owned()
        ])
    );
    let text = "# HELP nativeroute_sync_errors Syncs.\n# TYPE nativeroute_sync_errors counter\n\
                # TYPE nativeroute_sync_duration_seconds histogram\n# UNIT nativeroute_sync_duration_seconds seconds\n\
                nativeroute_leader 1\n# EOF\n";
    let names = exported_names(text);
    for name in [
        "nativeroute_sync_errors_total",
        "nativeroute_sync_duration_seconds_bucket",
        "nativeroute_leader",
    ] {
        assert!(names.contains(name), "{name}: {names:?}");
    }
    assert!(
        !names.contains("nativeroute_sync_errors"),
        "a counter's samples end in _total"
    );
}
