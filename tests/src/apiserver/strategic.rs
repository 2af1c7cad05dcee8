//! Strategic merge patch, as the real server applies it to the kinds served
//! here. Maps merge recursively and `null` deletes a key; a list merges by
//! its merge key, unions as a set of primitives, or is replaced, according
//! to [`list_strategy`], the one table of the `patchStrategy` /
//! `patchMergeKey` tags that matter here (from k8s.io/api's Go types).
//!
//! Directives: `$patch: replace | delete | merge` in a map or list element,
//! `$deleteFromPrimitiveList/<field>`, `$setElementOrder/<field>` and
//! `$retainKeys` are honoured; none of them is ever stored.

use serde_json::{Map, Value};

/// How a list at a path merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ListStrategy {
    /// Elements are maps merged by this key.
    MergeByKey(&'static str),
    /// A set of primitives: the union, in order of first appearance.
    PrimitiveUnion,
    /// The patch's list replaces the whole list.
    Replace,
}

/// The merge strategy of the list at `path` (field names from the root).
///
/// `spec.taints` is absent on purpose: NodeSpec.Taints carries no
/// patchStrategy (only Taint.Key has an inert patchMergeKey tag), so the
/// real server replaces the whole list.
pub(crate) fn list_strategy(kind: &str, path: &[&str]) -> ListStrategy {
    match (kind, path) {
        (_, ["metadata", "finalizers"]) => ListStrategy::PrimitiveUnion,
        (_, ["metadata", "ownerReferences"]) => ListStrategy::MergeByKey("uid"),
        ("Node", ["spec", "podCIDRs"]) => ListStrategy::PrimitiveUnion,
        ("Node", ["status", "conditions"]) => ListStrategy::MergeByKey("type"),
        ("Node", ["status", "addresses"]) => ListStrategy::MergeByKey("type"),
        _ => ListStrategy::Replace,
    }
}

const DIRECTIVE: &str = "$patch";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";
const ELEMENT_ORDER: &str = "$setElementOrder/";
const RETAIN_KEYS: &str = "$retainKeys";

/// Applies `patch` to `original` (a whole object of `kind`).
pub(crate) fn apply(kind: &str, original: Value, patch: &Value) -> Result<Value, String> {
    let Value::Object(patch) = patch else {
        return Err("a strategic merge patch must be a JSON object".into());
    };
    let base = match original {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    Ok(merge_map(kind, &mut Vec::new(), base, patch)?
        .map(Value::Object)
        .unwrap_or(Value::Null))
}

/// None when the patch deletes the map.
fn merge_map(
    kind: &str,
    path: &mut Vec<String>,
    mut base: Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Option<Map<String, Value>>, String> {
    match patch.get(DIRECTIVE).and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => return Ok(Some(strip_directives(patch))),
        Some("merge") | None => {}
        Some(other) => return Err(format!("unknown patch type: {other:?}")),
    }
    for (key, value) in patch {
        if key == DIRECTIVE || key.starts_with(ELEMENT_ORDER) {
            continue;
        }
        if key == RETAIN_KEYS {
            let keep: Vec<&str> = value
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            base.retain(|k, _| keep.contains(&k.as_str()));
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM) {
            let gone = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = base.get_mut(field) {
                list.retain(|item| !gone.contains(item));
            }
            continue;
        }
        path.push(key.clone());
        let merged = merge_value(kind, path, base.remove(key), value)?;
        path.pop();
        if let Some(merged) = merged {
            base.insert(key.clone(), merged);
        }
    }
    for (key, order) in patch {
        if let (Some(field), Some(order)) = (key.strip_prefix(ELEMENT_ORDER), order.as_array()) {
            path.push(field.to_string());
            let strategy = strategy_at(kind, path);
            path.pop();
            if let Some(Value::Array(list)) = base.get_mut(field) {
                set_element_order(list, order, strategy);
            }
        }
    }
    Ok(Some(base))
}

fn strategy_at(kind: &str, path: &[String]) -> ListStrategy {
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    list_strategy(kind, &parts)
}

/// None when the key is to be removed.
fn merge_value(
    kind: &str,
    path: &mut Vec<String>,
    base: Option<Value>,
    patch: &Value,
) -> Result<Option<Value>, String> {
    match (base, patch) {
        (_, Value::Null) => Ok(None),
        (Some(Value::Object(base)), Value::Object(patch)) => {
            Ok(merge_map(kind, path, base, patch)?.map(Value::Object))
        }
        (None | Some(_), Value::Object(patch)) => {
            Ok(merge_map(kind, path, Map::new(), patch)?.map(Value::Object))
        }
        (base, Value::Array(items)) => {
            let base = match base {
                Some(Value::Array(base)) => base,
                _ => Vec::new(),
            };
            merge_list(kind, path, base, items).map(|list| Some(Value::Array(list)))
        }
        (_, scalar) => Ok(Some(scalar.clone())),
    }
}

fn merge_list(
    kind: &str,
    path: &mut Vec<String>,
    mut base: Vec<Value>,
    items: &[Value],
) -> Result<Vec<Value>, String> {
    // A {"$patch": "replace"} element replaces the list with the others.
    let replace = items
        .iter()
        .any(|item| item.get(DIRECTIVE).and_then(Value::as_str) == Some("replace"));
    let strategy = strategy_at(kind, path);
    if replace || strategy == ListStrategy::Replace {
        return Ok(items
            .iter()
            .filter(|item| item.get(DIRECTIVE).is_none())
            .map(clean)
            .collect());
    }
    match strategy {
        ListStrategy::PrimitiveUnion => {
            for item in items {
                if !base.contains(item) {
                    base.push(item.clone());
                }
            }
            Ok(base)
        }
        ListStrategy::MergeByKey(merge_key) => {
            for item in items {
                let Value::Object(element) = item else {
                    return Err(format!(
                        "{}: a list merged by {merge_key:?} needs maps",
                        path.join(".")
                    ));
                };
                let key = element.get(merge_key).cloned().unwrap_or(Value::Null);
                let position = base.iter().position(|b| b.get(merge_key) == Some(&key));
                let delete = element.get(DIRECTIVE).and_then(Value::as_str) == Some("delete");
                match (position, delete) {
                    (Some(i), true) => {
                        base.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        let existing = match base.remove(i) {
                            Value::Object(map) => map,
                            _ => Map::new(),
                        };
                        if let Some(merged) = merge_map(kind, path, existing, element)? {
                            base.insert(i, Value::Object(merged));
                        }
                    }
                    (None, false) => base.push(Value::Object(strip_directives(element))),
                }
            }
            Ok(base)
        }
        ListStrategy::Replace => Ok(base),
    }
}

/// Orders the list as `$setElementOrder` says; elements it does not name
/// keep their relative order after the named ones.
fn set_element_order(list: &mut [Value], order: &[Value], strategy: ListStrategy) {
    let rank = |item: &Value| {
        let key = match strategy {
            ListStrategy::MergeByKey(k) => order
                .iter()
                .position(|o| o.get(k).is_some() && o.get(k) == item.get(k)),
            _ => order.iter().position(|o| o == item),
        };
        key.unwrap_or(usize::MAX)
    };
    list.sort_by_key(rank);
}

fn strip_directives(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), clean(v)))
        .collect()
}

fn clean(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(strip_directives(map)),
        Value::Array(items) => Value::Array(items.iter().map(clean).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_merge_by_type_and_labels_merge_with_null_deleting() {
        let node = json!({
            "metadata": {"labels": {"a": "1", "b": "2"}},
            "status": {"conditions": [
                {"type": "Ready", "status": "True"},
                {"type": "NetworkUnavailable", "status": "True", "reason": "NoRoute"}
            ]}
        });
        let patch = json!({
            "metadata": {"labels": {"a": null, "c": "3"}},
            "status": {"conditions": [{"type": "NetworkUnavailable", "status": "False"}]}
        });
        let out = apply("Node", node.clone(), &patch).expect("applies");
        assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
        assert_eq!(out["status"]["conditions"][0]["type"], "Ready");
        assert_eq!(
            out["status"]["conditions"][1],
            json!({"type": "NetworkUnavailable", "status": "False", "reason": "NoRoute"})
        );
    }

    #[test]
    fn pod_cidrs_union_and_delete_from_primitive_list() {
        let node = json!({"spec": {"podCIDRs": ["10.0.0.0/24"]}});
        let out = apply(
            "Node",
            node,
            &json!({"spec": {"podCIDRs": ["fd00::/64", "10.0.0.0/24"]}}),
        )
        .expect("applies");
        assert_eq!(out["spec"]["podCIDRs"], json!(["10.0.0.0/24", "fd00::/64"]));
        let out = apply(
            "Node",
            out,
            &json!({"spec": {"$deleteFromPrimitiveList/podCIDRs": ["10.0.0.0/24"]}}),
        )
        .expect("applies");
        assert_eq!(out["spec"]["podCIDRs"], json!(["fd00::/64"]));
    }

    #[test]
    fn taints_are_replaced_and_directives_never_stored() {
        let node = json!({"spec": {"taints": [{"key": "a", "effect": "NoSchedule"}]},
                          "status": {"addresses": [{"type": "InternalIP", "address": "10.1.1.1"}, {"type": "Hostname", "address": "h"}]}});
        let patch = json!({
            "spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]},
            "status": {"$setElementOrder/addresses": [{"type": "Hostname"}, {"type": "InternalIP"}],
                       "addresses": [{"type": "InternalIP", "address": "10.1.1.2"}, {"type": "Old", "$patch": "delete"}]}
        });
        let out = apply("Node", node.clone(), &patch).expect("applies");
        assert_eq!(
            out["spec"]["taints"],
            json!([{"key": "b", "effect": "NoSchedule"}])
        );
        assert_eq!(
            out["status"]["addresses"],
            json!([{"type": "Hostname", "address": "h"}, {"type": "InternalIP", "address": "10.1.1.2"}])
        );
        assert!(!out.to_string().contains('$'));
    }

    #[test]
    fn a_replace_directive_replaces_a_map_or_a_list() {
        let node = json!({"metadata": {"labels": {"a": "1"}}, "status": {"conditions": [{"type": "Ready"}]}});
        let patch = json!({"metadata": {"labels": {"$patch": "replace", "b": "2"}},
                           "status": {"conditions": [{"$patch": "replace"}, {"type": "X"}]}});
        let out = apply("Node", node.clone(), &patch).expect("applies");
        assert_eq!(out["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(out["status"]["conditions"], json!([{"type": "X"}]));
    }
}
