//! The Node rules of the real server (pkg/registry/core/node/strategy.go,
//! pkg/apis/core/validation ValidateNode / ValidateNodeUpdate, and the v1
//! NodeSpec conversion):
//!
//! - A write to the main resource keeps the stored `.status`; a write to
//!   `/status` keeps the stored `.spec`. Metadata (labels, annotations) may
//!   change through either, as nodeStatusStrategy resets only the spec.
//! - `spec.podCIDR` and `spec.podCIDRs` are one field: when both are given
//!   and differ, podCIDR wins (podCIDRs becomes [podCIDR]); when only
//!   podCIDR is given, podCIDRs becomes [podCIDR]; podCIDR always reads as
//!   podCIDRs[0].
//! - Once podCIDRs is set it cannot change (422 Forbidden); setting it from
//!   empty is allowed. Each entry must be a CIDR; two entries must be one
//!   IPv4 and one IPv6; no duplicates. providerID likewise cannot change
//!   once set.

use ipnet::IpNet;
use serde_json::{Value, json};

use super::status::FieldError;

const IMMUTABLE_CIDR: &str = "node updates may not change podCIDR except from \"\" to valid";
const IMMUTABLE_PROVIDER: &str = "node updates may not change providerID except from \"\" to valid";

/// Which part of a Node a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NodePart {
    Main,
    Status,
}

pub(crate) fn prepare_for_create(node: &mut Value) {
    normalise_pod_cidrs(node);
}

pub(crate) fn prepare_for_update(new: &mut Value, old: &Value, part: NodePart) {
    let kept = match part {
        NodePart::Main => "status",
        NodePart::Status => "spec",
    };
    if let Some(map) = new.as_object_mut() {
        match old.get(kept) {
            Some(value) => map.insert(kept.into(), value.clone()),
            None => map.remove(kept),
        };
    }
    normalise_pod_cidrs(new);
}

/// The v1 ↔ internal round trip of the real server, applied in place.
pub(crate) fn normalise_pod_cidrs(node: &mut Value) {
    let Some(spec) = node.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let single = spec
        .get("podCIDR")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut list: Vec<Value> = spec
        .get("podCIDRs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !single.is_empty() && list.first().and_then(Value::as_str) != Some(single.as_str()) {
        list = vec![json!(single)];
    }
    match list.first().cloned() {
        Some(first) => {
            spec.insert("podCIDR".into(), first);
            spec.insert("podCIDRs".into(), Value::Array(list));
        }
        None => {
            spec.remove("podCIDR");
            spec.remove("podCIDRs");
        }
    }
}

fn pod_cidrs(node: &Value) -> Vec<String> {
    node.pointer("/spec/podCIDRs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|v| v.as_str().unwrap_or("").to_string())
        .collect()
}

fn provider_id(node: &Value) -> &str {
    node.pointer("/spec/providerID")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// ValidateNode: the spec's CIDRs.
pub(crate) fn validate(node: &Value) -> Vec<FieldError> {
    let cidrs = pod_cidrs(node);
    let mut errors = Vec::new();
    let mut parsed = Vec::new();
    for (i, cidr) in cidrs.iter().enumerate() {
        match cidr.parse::<IpNet>() {
            Ok(net) => parsed.push(net),
            Err(_) => errors.push(FieldError::invalid(
                format!("spec.podCIDRs[{i}]"),
                cidr,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            )),
        }
    }
    if cidrs.len() > 1 {
        let dual_stack = parsed.len() == 2
            && matches!(
                (parsed[0], parsed[1]),
                (IpNet::V4(_), IpNet::V6(_)) | (IpNet::V6(_), IpNet::V4(_))
            );
        if !dual_stack || cidrs.len() > 2 {
            let shown: Vec<String> = cidrs.iter().map(|c| format!("{c:?}")).collect();
            errors.push(FieldError::invalid_raw(
                "spec.podCIDRs",
                format!("[]string{{{}}}", shown.join(", ")),
                "may specify no more than one CIDR for each IP family",
            ));
        }
        for (i, cidr) in cidrs.iter().enumerate() {
            if cidrs[..i].contains(cidr) {
                errors.push(FieldError::duplicate(format!("spec.podCIDRs[{i}]"), cidr));
            }
        }
    }
    errors
}

/// ValidateNode plus ValidateNodeUpdate.
pub(crate) fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errors = validate(new);
    let old_cidrs = pod_cidrs(old);
    if !old_cidrs.is_empty() && old_cidrs != pod_cidrs(new) {
        errors.push(FieldError::forbidden("spec.podCIDRs", IMMUTABLE_CIDR));
    }
    let old_provider = provider_id(old);
    if !old_provider.is_empty() && old_provider != provider_id(new) {
        errors.push(FieldError::forbidden("spec.providerID", IMMUTABLE_PROVIDER));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(spec: Value) -> Value {
        json!({"metadata": {"name": "n"}, "spec": spec})
    }

    #[test]
    fn pod_cidr_and_pod_cidrs_default_from_each_other_with_pod_cidr_winning() {
        let mut only_single = node(json!({"podCIDR": "10.0.1.0/24"}));
        normalise_pod_cidrs(&mut only_single);
        assert_eq!(only_single["spec"]["podCIDRs"], json!(["10.0.1.0/24"]));
        let mut only_list = node(json!({"podCIDRs": ["10.0.2.0/24", "fd00::/64"]}));
        normalise_pod_cidrs(&mut only_list);
        assert_eq!(only_list["spec"]["podCIDR"], "10.0.2.0/24");
        let mut both = node(json!({"podCIDR": "10.0.3.0/24", "podCIDRs": ["10.0.4.0/24"]}));
        normalise_pod_cidrs(&mut both);
        assert_eq!(
            both["spec"],
            json!({"podCIDR": "10.0.3.0/24", "podCIDRs": ["10.0.3.0/24"]})
        );
    }

    #[test]
    fn set_once_then_immutable_with_the_real_message() {
        let empty = node(json!({}));
        let set = node(json!({"podCIDR": "10.0.1.0/24", "podCIDRs": ["10.0.1.0/24"]}));
        assert!(validate_update(&set, &empty).is_empty());
        let changed = node(json!({"podCIDR": "10.0.9.0/24", "podCIDRs": ["10.0.9.0/24"]}));
        let errors = validate_update(&changed, &set);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"
        );
    }

    #[test]
    fn bad_cidrs_and_two_of_one_family_are_invalid() {
        assert_eq!(validate(&node(json!({"podCIDRs": ["nope"]}))).len(), 1);
        assert!(!validate(&node(json!({"podCIDRs": ["10.0.0.0/24", "10.0.1.0/24"]}))).is_empty());
        assert!(validate(&node(json!({"podCIDRs": ["10.0.0.0/24", "fd00::/64"]}))).is_empty());
    }
}
