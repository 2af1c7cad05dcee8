//! Each kind's create and update rules (the real registry's "strategies"),
//! on objects in their stored form, ending in a 422 when validation fails.

use serde_json::Value;

use super::config_map_rules;
use super::event_rules;
use super::meta;
use super::node_rules::{self, NodePart};
use super::resources::ResourceType;
use super::status::{ApiError, FieldError};

pub(crate) fn prepare_and_validate_create(
    rt: ResourceType,
    object: &mut Value,
) -> Result<(), ApiError> {
    let errors = match rt {
        ResourceType::Nodes => {
            node_rules::prepare_for_create(object);
            node_rules::validate(object)
        }
        ResourceType::CoreEvents | ResourceType::Events => {
            event_rules::validate(object, rt == ResourceType::Events)
        }
        ResourceType::Leases => validate_lease(object),
        ResourceType::ConfigMaps => config_map_rules::validate(object),
    };
    refuse(rt, object, &errors)
}

/// `status` is true for writes through the `/status` subresource.
pub(crate) fn prepare_and_validate_update(
    rt: ResourceType,
    new: &mut Value,
    old: &Value,
    status: bool,
) -> Result<(), ApiError> {
    let errors = match rt {
        ResourceType::Nodes => {
            let part = if status {
                NodePart::Status
            } else {
                NodePart::Main
            };
            node_rules::prepare_for_update(new, old, part);
            node_rules::validate_update(new, old)
        }
        ResourceType::CoreEvents | ResourceType::Events => {
            event_rules::validate_update(new, old, rt == ResourceType::Events)
        }
        ResourceType::Leases => validate_lease(new),
        ResourceType::ConfigMaps => config_map_rules::validate_update(new, old),
    };
    refuse(rt, new, &errors)
}

fn refuse(rt: ResourceType, object: &Value, errors: &[FieldError]) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(rt, meta::name(object), errors))
    }
}

/// ValidateLeaseSpec: durations, when given, are positive.
fn validate_lease(lease: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    for field in ["leaseDurationSeconds", "leaseTransitions"] {
        let Some(n) = lease
            .pointer(&format!("/spec/{field}"))
            .and_then(Value::as_i64)
        else {
            continue;
        };
        let bad = if field == "leaseDurationSeconds" {
            n <= 0
        } else {
            n < 0
        };
        if bad {
            let rule = if field == "leaseDurationSeconds" {
                "must be greater than 0"
            } else {
                "must be greater than or equal to 0"
            };
            errors.push(FieldError::invalid_raw(
                format!("spec.{field}"),
                n.to_string(),
                rule,
            ));
        }
    }
    errors
}
