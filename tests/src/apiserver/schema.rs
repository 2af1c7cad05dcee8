//! Objects pass through their typed k8s-openapi form on the way in, as the
//! real server decodes into Go structs: a field of the wrong type is a 400,
//! unknown fields are dropped, times are normalised. Events are stored in
//! their core/v1 form and converted for events.k8s.io/v1, as the real
//! server converts both to one internal type.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, EventSeries as CoreSeries, Node};
use k8s_openapi::api::events::v1::{Event, EventSeries};
use std::borrow::Cow;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::resources::ResourceType;
use super::status::ApiError;

/// A request body or patched object, in the API's form, to the stored form.
pub(crate) fn decode(rt: ResourceType, object: Value) -> Result<Value, ApiError> {
    check_type_meta(rt, &object)?;
    match rt {
        ResourceType::Nodes => round_trip::<Node>(rt, object),
        ResourceType::Leases => round_trip::<Lease>(rt, object),
        ResourceType::ConfigMaps => round_trip::<ConfigMap>(rt, object),
        ResourceType::CoreEvents => round_trip::<CoreEvent>(rt, object),
        ResourceType::Events => {
            let event: Event = typed(rt, object)?;
            to_value(&core_from_events(event))
        }
    }
}

/// A stored object in the form the API of `rt` shows it (borrowed when
/// the forms are the same).
pub(crate) fn encode(rt: ResourceType, stored: &Value) -> Result<Cow<'_, Value>, ApiError> {
    match rt {
        ResourceType::Events => {
            let core = CoreEvent::deserialize(stored)
                .map_err(|err| ApiError::internal(&err.to_string()))?;
            Ok(Cow::Owned(to_value(&events_from_core(core))?))
        }
        _ => Ok(Cow::Borrowed(stored)),
    }
}

/// An apiVersion or kind that names another type is refused, as the real
/// decoder refuses it.
fn check_type_meta(rt: ResourceType, object: &Value) -> Result<(), ApiError> {
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let kind = object.get("kind").and_then(Value::as_str).unwrap_or("");
    if (!api_version.is_empty() && api_version != rt.api_version())
        || (!kind.is_empty() && kind != rt.kind())
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({})",
            rt.api_version()
        )));
    }
    Ok(())
}

fn typed<T: DeserializeOwned>(rt: ResourceType, object: Value) -> Result<T, ApiError> {
    serde_json::from_value(object).map_err(|err| {
        ApiError::bad_request(format!(
            "{kind} in version \"v1\" cannot be handled as a {kind}: {err}",
            kind = rt.kind()
        ))
    })
}

fn to_value<T: Serialize>(object: &T) -> Result<Value, ApiError> {
    serde_json::to_value(object).map_err(|err| ApiError::internal(&err.to_string()))
}

fn round_trip<T: DeserializeOwned + Serialize>(
    rt: ResourceType,
    object: Value,
) -> Result<Value, ApiError> {
    let typed: T = typed(rt, object)?;
    to_value(&typed)
}

/// The field mapping of the real conversion (events.k8s.io/v1 ↔ core).
fn core_from_events(e: Event) -> CoreEvent {
    CoreEvent {
        action: e.action,
        count: e.deprecated_count,
        event_time: e.event_time,
        first_timestamp: e.deprecated_first_timestamp,
        involved_object: e.regarding.unwrap_or_default(),
        last_timestamp: e.deprecated_last_timestamp,
        message: e.note,
        metadata: e.metadata,
        reason: e.reason,
        related: e.related,
        reporting_component: e.reporting_controller,
        reporting_instance: e.reporting_instance,
        series: e.series.map(|s| CoreSeries {
            count: Some(s.count),
            last_observed_time: Some(s.last_observed_time),
        }),
        source: e.deprecated_source,
        type_: e.type_,
    }
}

fn events_from_core(c: CoreEvent) -> Event {
    let series = c.series.and_then(|s| {
        Some(EventSeries {
            count: s.count.unwrap_or_default(),
            last_observed_time: s.last_observed_time?,
        })
    });
    let regarding = (c.involved_object != Default::default()).then_some(c.involved_object);
    Event {
        action: c.action,
        deprecated_count: c.count,
        deprecated_first_timestamp: c.first_timestamp,
        deprecated_last_timestamp: c.last_timestamp,
        deprecated_source: c.source,
        event_time: c.event_time,
        metadata: c.metadata,
        note: c.message,
        reason: c.reason,
        regarding,
        related: c.related,
        reporting_controller: c.reporting_component,
        reporting_instance: c.reporting_instance,
        series,
        type_: c.type_,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_dropped_and_wrong_types_refused() {
        let node = decode(
            ResourceType::Nodes,
            json!({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.0.0.0/24", "bogus": 1}}),
        )
        .expect("a valid node");
        assert_eq!(node["kind"], "Node");
        assert!(node["spec"].get("bogus").is_none());
        let err =
            decode(ResourceType::Nodes, json!({"spec": {"podCIDR": 5}})).expect_err("wrong type");
        assert_eq!(err.code, 400);
    }

    #[test]
    fn an_events_api_event_reads_back_through_both_apis() {
        let stored = decode(
            ResourceType::Events,
            json!({"metadata": {"name": "e", "namespace": "default"}, "note": "hello",
                   "regarding": {"kind": "Node", "name": "n1"}, "reportingController": "c",
                   "series": {"count": 2, "lastObservedTime": "2025-01-01T00:00:00.000000Z"}}),
        )
        .expect("a valid event");
        assert_eq!(stored["message"], "hello");
        assert_eq!(stored["involvedObject"]["name"], "n1");
        assert_eq!(stored["reportingComponent"], "c");
        let back = encode(ResourceType::Events, &stored).expect("converts back");
        assert_eq!(back["note"], "hello");
        assert_eq!(back["series"]["count"], 2);
        assert_eq!(back["apiVersion"], "events.k8s.io/v1");
    }

    #[test]
    fn a_config_map_keeps_its_data_and_binary_data_must_be_base64() {
        let stored = decode(
            ResourceType::ConfigMaps,
            json!({"metadata": {"name": "cm"}, "data": {"a": "1"},
                   "binaryData": {"b": "AAEC"}, "immutable": true, "bogus": 1}),
        )
        .expect("a valid config map");
        assert_eq!(
            (&stored["apiVersion"], &stored["kind"]),
            (&json!("v1"), &json!("ConfigMap"))
        );
        assert_eq!(stored["data"], json!({"a": "1"}));
        assert_eq!(stored["binaryData"], json!({"b": "AAEC"}));
        assert_eq!(stored["immutable"], true);
        assert!(stored.get("bogus").is_none());
        let err = decode(
            ResourceType::ConfigMaps,
            json!({"metadata": {"name": "cm"}, "binaryData": {"b": "not base64!"}}),
        )
        .expect_err("binaryData is base64");
        assert_eq!(err.code, 400);
        assert!(
            err.message
                .starts_with("ConfigMap in version \"v1\" cannot be handled as a ConfigMap"),
            "{}",
            err.message
        );
        let err = decode(ResourceType::ConfigMaps, json!({"data": {"a": 1}})).expect_err("strings");
        assert_eq!(err.code, 400);
    }
}
