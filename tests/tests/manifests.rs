//! The shipped manifests: every object parses into its Kubernetes type,
//! and the ConfigMap's config is one the controller accepts.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::ClusterRole;
use nativeroute::config::Config;
use serde::Deserialize;

const MANIFEST: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/nativeroute.yaml");

fn documents() -> Vec<serde_yaml_ng::Value> {
    let text = std::fs::read_to_string(MANIFEST).expect("the manifest is readable");
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|document| serde_yaml_ng::Value::deserialize(document).expect("valid YAML"))
        .filter(|value| !value.is_null())
        .collect()
}

fn of_kind<T: serde::de::DeserializeOwned>(kind: &str) -> Vec<T> {
    documents()
        .into_iter()
        .filter(|value| value["kind"].as_str() == Some(kind))
        .map(|value| {
            serde_yaml_ng::from_value(value)
                .unwrap_or_else(|err| panic!("a {kind} does not parse: {err}"))
        })
        .collect()
}

#[test]
fn the_configmaps_config_is_accepted_by_the_controller() {
    let maps: Vec<ConfigMap> = of_kind("ConfigMap");
    assert_eq!(maps.len(), 1);
    let text = maps[0]
        .data
        .as_ref()
        .and_then(|data| data.get("config.yaml"))
        .expect("the ConfigMap holds config.yaml");
    if let Err(err) = Config::parse(text) {
        panic!("the shipped config is refused: {err}");
    }
}

#[test]
fn the_deployment_reads_the_config_the_configmap_holds() {
    let deployments: Vec<Deployment> = of_kind("Deployment");
    assert_eq!(deployments.len(), 1);
    let spec = deployments[0]
        .spec
        .as_ref()
        .and_then(|spec| spec.template.spec.as_ref())
        .expect("a pod spec");
    let args = spec.containers[0].args.clone().unwrap_or_default();
    assert!(
        args.iter()
            .any(|arg| arg == "--config=/etc/nativeroute/config.yaml"),
        "{args:?}"
    );
}

#[test]
fn the_cluster_role_grants_what_the_controller_uses_on_nodes_and_no_more() {
    let roles: Vec<ClusterRole> = of_kind("ClusterRole");
    let rules = roles[0].rules.clone().unwrap_or_default();
    let node_rule = rules
        .iter()
        .find(|rule| {
            rule.resources
                .as_ref()
                .is_some_and(|r| r.contains(&"nodes".to_owned()))
        })
        .expect("a rule for nodes");
    let mut verbs = node_rule.verbs.clone();
    verbs.sort();
    assert_eq!(verbs, ["get", "list", "patch", "watch"]);
    assert!(
        rules
            .iter()
            .all(|rule| !rule.verbs.contains(&"*".to_owned())
                && !rule.verbs.contains(&"delete".to_owned())),
        "a wildcard or delete verb: {rules:?}"
    );
}
