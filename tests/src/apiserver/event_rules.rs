//! Event validation of the real server (pkg/apis/core/validation/events.go),
//! on the stored core/v1 form, with the stricter rules for objects written
//! through events.k8s.io/v1. Field names are the core ones, as the real
//! messages use them.

use serde_json::Value;

use super::status::FieldError;

const MAX_NAME: usize = 128;
const MAX_NOTE: usize = 1024;

fn text<'a>(event: &'a Value, field: &str) -> &'a str {
    event.get(field).and_then(Value::as_str).unwrap_or("")
}

fn set(event: &Value, field: &str) -> bool {
    event.get(field).is_some_and(|v| !v.is_null())
}

/// The event's namespace must be the regarded object's; a cluster-scoped
/// object's events live in "default" (kube's Recorder puts them there).
fn namespace_errors(event: &Value, new_api: bool) -> Vec<FieldError> {
    let namespace = event
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let involved = event
        .pointer("/involvedObject/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let ok = if involved.is_empty() {
        namespace.is_empty() || namespace == "default" || (new_api && namespace == "kube-system")
    } else {
        namespace == involved
    };
    if ok {
        Vec::new()
    } else {
        vec![FieldError::invalid(
            "involvedObject.namespace",
            involved,
            "does not match event.namespace",
        )]
    }
}

/// ValidateEventCreate. `new_api` is true for events.k8s.io/v1 requests.
pub(crate) fn validate(event: &Value, new_api: bool) -> Vec<FieldError> {
    let mut errors = namespace_errors(event, new_api);
    let legacy_without_time = !new_api && !set(event, "eventTime");
    if legacy_without_time {
        return errors;
    }
    if new_api {
        if !set(event, "eventTime") {
            errors.push(FieldError::required("eventTime", ""));
        }
        let kind = text(event, "type");
        if kind != "Normal" && kind != "Warning" {
            errors.push(FieldError::invalid(
                "type",
                "",
                format!("has invalid value: {kind}"),
            ));
        }
        for (field, shown) in [
            ("firstTimestamp", "deprecatedFirstTimestamp"),
            ("lastTimestamp", "deprecatedLastTimestamp"),
            ("count", "deprecatedCount"),
            ("source", "deprecatedSource"),
        ] {
            let value = &event[field];
            let empty = *value == 0
                || value
                    .as_object()
                    .is_some_and(|m| m.values().all(|v| *v == ""));
            if set(event, field) && !empty {
                errors.push(FieldError::invalid(shown, "", "needs to be unset"));
            }
        }
    }
    let controller_field = if new_api {
        "reportingController"
    } else {
        "reportingComponent"
    };
    for (field, shown, limit) in [
        ("reportingComponent", controller_field, usize::MAX),
        ("reportingInstance", "reportingInstance", MAX_NAME),
        ("action", "action", MAX_NAME),
        ("reason", "reason", MAX_NAME),
    ] {
        let value = text(event, field);
        if value.is_empty() {
            errors.push(FieldError::required(shown, ""));
        } else if value.len() > limit {
            errors.push(FieldError::invalid(
                shown,
                "",
                format!("can have at most {limit} characters"),
            ));
        }
    }
    if text(event, "message").len() > MAX_NOTE {
        let shown = if new_api { "note" } else { "message" };
        errors.push(FieldError::invalid(
            shown,
            "",
            format!("can have at most {MAX_NOTE} characters"),
        ));
    }
    if let Some(series) = event.get("series").filter(|s| !s.is_null()) {
        let count = series.get("count").and_then(Value::as_i64).unwrap_or(0);
        if count < 2 {
            errors.push(FieldError::invalid_raw(
                "series.count",
                count.to_string(),
                "should be at least 2",
            ));
        }
        if !set(series, "lastObservedTime") {
            errors.push(FieldError::required("series.lastObservedTime", ""));
        }
    }
    errors
}

/// ValidateEventUpdate for events.k8s.io/v1: what the event says cannot
/// change; only its series (and metadata) may.
pub(crate) fn validate_update(new: &Value, old: &Value, new_api: bool) -> Vec<FieldError> {
    let mut errors = validate(new, new_api);
    if !new_api {
        return errors;
    }
    for (field, shown) in [
        ("involvedObject", "regarding"),
        ("reason", "reason"),
        ("message", "note"),
        ("related", "related"),
        ("reportingComponent", "reportingController"),
        ("reportingInstance", "reportingInstance"),
        ("type", "type"),
        ("action", "action"),
        ("eventTime", "eventTime"),
    ] {
        if new.get(field) != old.get(field) {
            let value = new.get(field).map(Value::to_string).unwrap_or_default();
            errors.push(FieldError::invalid_raw(shown, value, "field is immutable"));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn recorder_event(namespace: &str) -> Value {
        json!({
            "metadata": {"name": "n1.1", "namespace": namespace},
            "involvedObject": {"kind": "Node", "name": "n1"},
            "eventTime": "2025-01-01T00:00:00.000000Z",
            "type": "Normal", "reason": "Assigned", "action": "Assign",
            "reportingComponent": "nativeroute", "reportingInstance": "host"
        })
    }

    #[test]
    fn a_node_event_belongs_in_default() {
        assert!(validate(&recorder_event("default"), true).is_empty());
        assert_eq!(validate(&recorder_event("other"), true).len(), 1);
    }

    #[test]
    fn an_events_api_event_needs_its_reporting_fields_and_keeps_its_note() {
        let mut event = recorder_event("default");
        event["reportingComponent"] = Value::Null;
        assert_eq!(validate(&event, true).len(), 1);
        let old = recorder_event("default");
        let mut repeated = old.clone();
        repeated["series"] = json!({"count": 2, "lastObservedTime": "2025-01-01T00:00:01.000000Z"});
        assert!(validate_update(&repeated, &old, true).is_empty());
        repeated["message"] = json!("changed");
        assert_eq!(validate_update(&repeated, &old, true).len(), 1);
    }
}
