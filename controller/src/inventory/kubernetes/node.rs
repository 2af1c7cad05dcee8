//! The slice of a Node that nativeroute reads, and what it makes of it.
//!
//! A Node as a kubelet writes it carries images, capacity, managed fields
//! and more: 5–10 KB each. Only the fields below are deserialized, so a
//! cluster of thousands of nodes costs the controller kilobytes per node
//! rather than the whole objects, and each is turned at once into an
//! [`ObservedNode`] of what matters.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::ClusterResourceScope;
use k8s_openapi::api::core::v1::{NodeAddress, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::core::{Selector, SelectorExt};
use serde::{Deserialize, Deserializer};

use crate::inventory::annotations;

/// The condition nativeroute manages (as the cloud route controller does).
pub const NETWORK_UNAVAILABLE: &str = "NetworkUnavailable";

/// A Node, reduced to the fields nativeroute reads.
#[derive(Clone, Debug, Deserialize)]
pub struct NodeObject {
    #[serde(deserialize_with = "slim_metadata")]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: NodeSpecSlice,
    #[serde(default)]
    pub status: NodeStatusSlice,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpecSlice {
    #[serde(default, rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    #[serde(default, rename = "podCIDRs")]
    pub pod_cidrs: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct NodeStatusSlice {
    #[serde(default)]
    pub addresses: Option<Vec<NodeAddress>>,
    #[serde(default, deserialize_with = "network_condition_only")]
    pub conditions: Option<Vec<NodeCondition>>,
}

/// The metadata fields nativeroute needs; managed fields, owner references
/// and the rest are skipped while parsing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetadataSlice {
    name: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    creation_timestamp: Option<Time>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
    #[serde(default)]
    annotations: Option<BTreeMap<String, String>>,
}

fn slim_metadata<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ObjectMeta, D::Error> {
    let slice = MetadataSlice::deserialize(deserializer)?;
    Ok(ObjectMeta {
        name: slice.name,
        uid: slice.uid,
        resource_version: slice.resource_version,
        creation_timestamp: slice.creation_timestamp,
        labels: slice.labels,
        annotations: slice.annotations,
        ..ObjectMeta::default()
    })
}

fn network_condition_only<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<NodeCondition>>, D::Error> {
    let conditions: Option<Vec<NodeCondition>> = Option::deserialize(deserializer)?;
    Ok(conditions.map(|all| {
        all.into_iter()
            .filter(|c| c.type_ == NETWORK_UNAVAILABLE)
            .collect()
    }))
}

impl kube::Resource for NodeObject {
    type DynamicType = ();
    type Scope = ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("Node")
    }
    fn group(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("")
    }
    fn version(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("v1")
    }
    fn plural(_: &()) -> Cow<'_, str> {
        Cow::Borrowed("nodes")
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// The NetworkUnavailable condition as it stands on a Node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionSeen {
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition: Option<Timestamp>,
}

/// What nativeroute keeps of one Node: a few hundred bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedNode {
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub created: Option<Timestamp>,
    /// Addresses of the configured type, one per family, parsed.
    pub addresses: Vec<IpAddr>,
    /// `nativeroute.io/` annotations only.
    pub annotations: BTreeMap<String, String>,
    /// spec.podCIDRs (or spec.podCIDR), as written.
    pub pod_cidrs: Vec<String>,
    pub condition: Option<ConditionSeen>,
    /// Values on the Node that could not be used, for Events.
    pub problems: Vec<String>,
    /// Whether `nodes.selector` selects it.
    pub selected: bool,
}

impl ObservedNode {
    /// Reads `node`, taking the addresses of `address_type` (InternalIP…),
    /// and whether `selector` selects it.
    pub fn from_object(node: &NodeObject, address_type: &str, selector: &Selector) -> ObservedNode {
        let metadata = &node.metadata;
        let mut problems = Vec::new();
        let mut addresses: Vec<IpAddr> = Vec::new();
        for address in node.status.addresses.iter().flatten() {
            if address.type_ != address_type {
                continue;
            }
            match address.address.parse::<IpAddr>() {
                Ok(ip) if addresses.iter().any(|a| a.is_ipv4() == ip.is_ipv4()) => {}
                Ok(ip) => addresses.push(ip),
                Err(_) => problems.push(format!(
                    "status.addresses: {address_type} {:?} is not an IP address; ignored",
                    address.address
                )),
            }
        }
        let annotations = metadata
            .annotations
            .iter()
            .flatten()
            .filter(|(key, _)| key.starts_with(annotations::PREFIX))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let pod_cidrs = match (&node.spec.pod_cidrs, &node.spec.pod_cidr) {
            (Some(all), _) if !all.is_empty() => all.clone(),
            (_, Some(one)) if !one.is_empty() => vec![one.clone()],
            _ => Vec::new(),
        };
        let condition = node
            .status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == NETWORK_UNAVAILABLE)
            .map(|c| ConditionSeen {
                status: c.status.clone(),
                reason: c.reason.clone().unwrap_or_default(),
                message: c.message.clone().unwrap_or_default(),
                last_transition: c.last_transition_time.as_ref().map(|t| t.0),
            });
        ObservedNode {
            name: metadata.name.clone().unwrap_or_default(),
            uid: metadata.uid.clone().unwrap_or_default(),
            resource_version: metadata.resource_version.clone().unwrap_or_default(),
            created: metadata.creation_timestamp.as_ref().map(|t| t.0),
            addresses,
            annotations,
            pod_cidrs,
            condition,
            problems,
            selected: selector.matches(metadata.labels.as_ref().unwrap_or(&BTreeMap::new())),
        }
    }

    /// spec.podCIDRs parsed; a value that is not a CIDR is reported and skipped.
    pub fn parsed_pod_cidrs(&self) -> (Vec<IpNet>, Vec<String>) {
        let mut parsed = Vec::new();
        let mut problems = Vec::new();
        for text in &self.pod_cidrs {
            match text.parse::<IpNet>() {
                Ok(net) if net.trunc() == net => parsed.push(net),
                _ => problems.push(format!("spec.podCIDR {text:?} is not a valid CIDR")),
            }
        }
        (parsed, problems)
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(json: serde_json::Value) -> NodeObject {
        serde_json::from_value(json).expect("a node")
    }

    #[test]
    fn reads_only_what_it_needs_and_the_first_address_of_each_family() {
        let object = node(serde_json::json!({
            "metadata": {
                "name": "node1", "uid": "u-1", "resourceVersion": "7",
                "creationTimestamp": "2026-01-02T03:04:05Z",
                "annotations": {"nativeroute.io/exclude": "true", "kubeadm.alpha.kubernetes.io/cri-socket": "x"},
                "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}]
            },
            "spec": {"podCIDR": "11.11.1.0/24", "podCIDRs": ["11.11.1.0/24"]},
            "status": {
                "addresses": [
                    {"type": "Hostname", "address": "node1"},
                    {"type": "InternalIP", "address": "192.168.2.1"},
                    {"type": "InternalIP", "address": "192.168.2.9"},
                    {"type": "InternalIP", "address": "fd00::1"}
                ],
                "conditions": [
                    {"type": "Ready", "status": "True"},
                    {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated"}
                ],
                "images": [{"names": ["pause"], "sizeBytes": 1}]
            }
        }));
        let seen = ObservedNode::from_object(&object, "InternalIP", &Selector::default());
        assert_eq!(seen.name, "node1");
        assert_eq!(
            seen.addresses,
            vec![
                "192.168.2.1".parse::<IpAddr>().expect("ip"),
                "fd00::1".parse().expect("ip")
            ]
        );
        assert_eq!(
            seen.annotations.len(),
            1,
            "only nativeroute.io/ annotations"
        );
        assert_eq!(seen.pod_cidrs, vec!["11.11.1.0/24".to_string()]);
        assert_eq!(
            seen.condition.as_ref().map(|c| c.reason.as_str()),
            Some("RouteCreated")
        );
        assert!(seen.problems.is_empty());
    }

    #[test]
    fn a_garbage_address_or_pod_cidr_is_a_problem_not_a_failure() {
        let object = node(serde_json::json!({
            "metadata": {"name": "node2"},
            "spec": {"podCIDR": "11.11.300.0/24"},
            "status": {"addresses": [{"type": "InternalIP", "address": "$(reboot)"}]}
        }));
        let seen = ObservedNode::from_object(&object, "InternalIP", &Selector::default());
        assert!(seen.addresses.is_empty());
        assert_eq!(seen.problems.len(), 1);
        assert!(
            seen.problems[0].contains("$(reboot)"),
            "{:?}",
            seen.problems
        );
        let (parsed, problems) = seen.parsed_pod_cidrs();
        assert!(parsed.is_empty());
        assert!(problems[0].contains("11.11.300.0/24"));
    }
}
