//! The ConfigMap rules of the real server (pkg/apis/core/validation
//! ValidateConfigMap / ValidateConfigMapUpdate; configMapStrategy prepares
//! nothing on create or update):
//!
//! - Every key of `data` and `binaryData` is a config key: at most 253
//!   characters of `[-._a-zA-Z0-9]`, neither "." nor "..", not starting
//!   with "..".
//! - No key is in both `data` and `binaryData`.
//! - The values of both together (binaryData decoded) hold at most 1 MiB
//!   (corev1.MaxSecretSize). Keys do not count, as upstream only adds up
//!   the values.
//! - Once the stored object has `immutable: true`, it stays true, and
//!   neither `data` nor `binaryData` may change.
//!
//! Upstream walks Go maps, so several key errors come in any order; here
//! they come in key order, `data` before `binaryData`. An absent map and an
//! empty one count as the same (upstream compares the decoded maps, and
//! the real server never stores an empty one).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use serde::Deserialize;
use serde_json::Value;

use super::status::FieldError;

/// corev1.MaxSecretSize, which limits ConfigMaps too.
pub(crate) const MAX_SIZE: usize = 1024 * 1024;
/// DNS1123SubdomainMaxLength, the longest config key.
const MAX_KEY: usize = 253;
/// validation.IsConfigMapKey's RegexError, double spaces included.
const KEY_RULE: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' \
     (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const DUPLICATE: &str = "duplicate of key present in binaryData";
const IMMUTABLE: &str = "field is immutable when `immutable` is set";

/// The stored form is a decoded ConfigMap already; a value that is not
/// one has nothing to check.
fn typed(object: &Value) -> ConfigMap {
    ConfigMap::deserialize(object).unwrap_or_default()
}

/// validation.IsConfigMapKey.
fn key_errors(key: &str) -> Vec<&'static str> {
    let mut errors = Vec::new();
    if key.len() > MAX_KEY {
        errors.push("must be no more than 253 characters");
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    if key.is_empty() || !key.bytes().all(allowed) {
        errors.push(KEY_RULE);
    }
    if key == "." {
        errors.push("must not be '.'");
    } else if key == ".." {
        errors.push("must not be '..'");
    } else if key.starts_with("..") {
        errors.push("must not start with '..'");
    }
    errors
}

fn check(config_map: &ConfigMap) -> Vec<FieldError> {
    let empty_data = BTreeMap::new();
    let empty_binary = BTreeMap::new();
    let data = config_map.data.as_ref().unwrap_or(&empty_data);
    let binary = config_map.binary_data.as_ref().unwrap_or(&empty_binary);
    let mut errors = Vec::new();
    let mut total = 0usize;
    for (key, value) in data {
        for why in key_errors(key) {
            errors.push(FieldError::invalid(format!("data[{key}]"), key, why));
        }
        if binary.contains_key(key) {
            errors.push(FieldError::invalid(format!("data[{key}]"), key, DUPLICATE));
        }
        total += value.len();
    }
    for (key, value) in binary {
        for why in key_errors(key) {
            errors.push(FieldError::invalid(format!("binaryData[{key}]"), key, why));
        }
        total += value.0.len();
    }
    if total > MAX_SIZE {
        // field.NewPath(""): the error is about the whole object.
        errors.push(FieldError::too_long("[]", MAX_SIZE));
    }
    errors
}

/// ValidateConfigMap.
pub(crate) fn validate(object: &Value) -> Vec<FieldError> {
    check(&typed(object))
}

/// ValidateConfigMapUpdate: the immutability rules, then ValidateConfigMap.
pub(crate) fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let (new, old) = (typed(new), typed(old));
    let mut errors = Vec::new();
    if old.immutable == Some(true) {
        if new.immutable != Some(true) {
            errors.push(FieldError::forbidden("immutable", IMMUTABLE));
        }
        if !same(new.data.as_ref(), old.data.as_ref()) {
            errors.push(FieldError::forbidden("data", IMMUTABLE));
        }
        if !same(new.binary_data.as_ref(), old.binary_data.as_ref()) {
            errors.push(FieldError::forbidden("binaryData", IMMUTABLE));
        }
    }
    errors.extend(check(&new));
    errors
}

fn same<V: PartialEq>(a: Option<&BTreeMap<String, V>>, b: Option<&BTreeMap<String, V>>) -> bool {
    a.filter(|m| !m.is_empty()) == b.filter(|m| !m.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config_map(data: Value, binary: Value) -> Value {
        json!({"metadata": {"name": "cm", "namespace": "default"}, "data": data, "binaryData": binary})
    }

    fn shown(errors: &[FieldError]) -> Vec<String> {
        errors.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn keys_are_config_keys_with_the_real_messages() {
        let good = config_map(
            json!({"a.b_C-9": "x", ".hidden": "y"}),
            json!({"bin": "AAE="}),
        );
        assert!(validate(&good).is_empty(), "{:?}", shown(&validate(&good)));
        let bad = config_map(json!({"a b": "x"}), json!({}));
        assert_eq!(
            shown(&validate(&bad)),
            [
                "data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric \
                 characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', \
                 regex used for validation is '[-._a-zA-Z0-9]+')"
            ]
        );
        let long = "k".repeat(254);
        let dots = config_map(json!({"..": "x", "..a": "y"}), json!({&long: "AA=="}));
        assert_eq!(
            shown(&validate(&dots)),
            [
                "data[..]: Invalid value: \"..\": must not be '..'",
                "data[..a]: Invalid value: \"..a\": must not start with '..'",
                &format!(
                    "binaryData[{long}]: Invalid value: \"{long}\": must be no more than 253 characters"
                ),
            ]
        );
        assert!(validate(&config_map(json!({&"k".repeat(253): "x"}), json!({}))).is_empty());
        assert_eq!(validate(&config_map(json!({"": "x"}), json!({}))).len(), 1);
    }

    #[test]
    fn a_key_in_both_maps_is_a_duplicate() {
        let both = config_map(json!({"k": "x"}), json!({"k": "AA=="}));
        assert_eq!(
            shown(&validate(&both)),
            ["data[k]: Invalid value: \"k\": duplicate of key present in binaryData"]
        );
    }

    #[test]
    fn values_may_hold_one_mebibyte_and_keys_do_not_count() {
        let half = MAX_SIZE / 2;
        // 3 bytes of binary data in 4 base64 characters.
        let binary = "AAAA".repeat(half / 3);
        let binary_len = half / 3 * 3;
        let at_limit = config_map(
            json!({"text": "x".repeat(MAX_SIZE - binary_len)}),
            json!({"bin": binary}),
        );
        assert!(validate(&at_limit).is_empty());
        let over = config_map(
            json!({"text": "x".repeat(MAX_SIZE - binary_len + 1)}),
            json!({"bin": binary}),
        );
        let errors = validate(&over);
        assert_eq!(
            shown(&errors),
            ["[]: Too long: may not be more than 1048576 bytes"]
        );
    }

    #[test]
    fn an_immutable_config_map_keeps_its_data_and_stays_immutable() {
        let mut old = config_map(json!({"a": "1"}), json!({"b": "AA=="}));
        old["immutable"] = json!(true);
        let mut relabelled = old.clone();
        relabelled["metadata"]["labels"] = json!({"x": "y"});
        assert!(validate_update(&relabelled, &old).is_empty());
        let mut changed = old.clone();
        changed["data"]["a"] = json!("2");
        changed["binaryData"] = json!({});
        assert_eq!(
            shown(&validate_update(&changed, &old)),
            [
                "data: Forbidden: field is immutable when `immutable` is set",
                "binaryData: Forbidden: field is immutable when `immutable` is set",
            ]
        );
        let mut thawed = old.clone();
        thawed["immutable"] = json!(false);
        assert_eq!(
            shown(&validate_update(&thawed, &old)),
            ["immutable: Forbidden: field is immutable when `immutable` is set"]
        );
        let mutable = config_map(json!({"a": "1"}), json!({}));
        let mut frozen = config_map(json!({"a": "2"}), json!({}));
        frozen["immutable"] = json!(true);
        assert!(
            validate_update(&frozen, &mutable).is_empty(),
            "a mutable one may change and freeze in one write"
        );
        let empty = config_map(json!({}), json!({}));
        let mut absent = json!({"metadata": {"name": "cm"}, "immutable": true});
        let mut old_empty = empty.clone();
        old_empty["immutable"] = json!(true);
        assert!(validate_update(&absent, &old_empty).is_empty());
        absent["data"] = json!({"new": "x"});
        assert_eq!(validate_update(&absent, &old_empty).len(), 1);
    }
}
