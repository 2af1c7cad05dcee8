//! Object metadata as the real server's generic registry handles it on
//! create (`rest.BeforeCreate`: uid, creationTimestamp, generation, name
//! from generateName) and on update (`rest.BeforeUpdate`: system fields kept
//! from the stored object, resourceVersion and uid as preconditions).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::resources::ResourceType;
use super::status::{ApiError, FieldError};

pub(crate) fn metadata(object: &Value) -> Option<&Map<String, Value>> {
    object.get("metadata")?.as_object()
}

fn metadata_mut(object: &mut Value) -> Option<&mut Map<String, Value>> {
    if !object.get("metadata").is_some_and(Value::is_object) {
        object.as_object_mut()?.insert("metadata".into(), json!({}));
    }
    object.get_mut("metadata")?.as_object_mut()
}

pub(crate) fn str_field<'a>(object: &'a Value, field: &str) -> &'a str {
    metadata(object)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn set_field(object: &mut Value, field: &str, value: Value) {
    if let Some(meta) = metadata_mut(object) {
        if value.is_null() {
            meta.remove(field);
        } else {
            meta.insert(field.into(), value);
        }
    }
}

pub(crate) fn name(object: &Value) -> &str {
    str_field(object, "name")
}

pub(crate) fn namespace(object: &Value) -> &str {
    str_field(object, "namespace")
}

pub(crate) fn resource_version(object: &Value) -> Option<u64> {
    str_field(object, "resourceVersion").parse().ok()
}

pub(crate) fn set_resource_version(object: &mut Value, rv: u64) {
    set_field(object, "resourceVersion", json!(rv.to_string()));
}

pub(crate) fn labels(object: &Value) -> Option<&Map<String, Value>> {
    metadata(object)?.get("labels")?.as_object()
}

/// "2025-06-01T12:00:00Z": metav1.Time's form.
pub(crate) fn now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A random version-4 style UID.
pub(crate) fn new_uid() -> String {
    let a = random_u64();
    let b = random_u64();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | (b >> 48 & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// The namespace in the body must agree with the URL's; an empty one takes
/// the URL's. Cluster-scoped objects carry none.
fn settle_namespace(
    object: &mut Value,
    rt: ResourceType,
    url_namespace: &str,
) -> Result<(), ApiError> {
    if !rt.namespaced() {
        set_field(object, "namespace", Value::Null);
        return Ok(());
    }
    match namespace(object) {
        "" => set_field(object, "namespace", json!(url_namespace)),
        ns if ns == url_namespace => {}
        _ => {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
    }
    Ok(())
}

/// Fills what the server owns on a new object.
pub(crate) fn before_create(
    object: &mut Value,
    rt: ResourceType,
    url_namespace: &str,
) -> Result<(), ApiError> {
    if !object.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be an object",
        ));
    }
    settle_namespace(object, rt, url_namespace)?;
    if name(object).is_empty() {
        let prefix = str_field(object, "generateName").to_string();
        if prefix.is_empty() {
            let missing = FieldError::required("metadata.name", "name or generateName is required");
            return Err(ApiError::invalid(rt, "", &[missing]));
        }
        let generated = format!("{prefix}{}", random_suffix());
        set_field(object, "name", json!(generated));
    }
    if !str_field(object, "resourceVersion").is_empty() {
        return Err(ApiError::internal(
            "resourceVersion should not be set on objects to be created",
        ));
    }
    set_field(object, "uid", json!(new_uid()));
    set_field(object, "creationTimestamp", json!(now()));
    set_field(object, "generation", json!(1));
    set_field(object, "deletionTimestamp", Value::Null);
    set_field(object, "deletionGracePeriodSeconds", Value::Null);
    set_field(object, "selfLink", Value::Null);
    Ok(())
}

/// Five characters as `names.SimpleNameGenerator` picks them.
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut bits = random_u64();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(bits % ALPHABET.len() as u64) as usize] as char;
            bits /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// Checks `new` against the stored `old` and carries over what the client
/// may not change. A resourceVersion or uid in `new` is a precondition.
pub(crate) fn before_update(
    new: &mut Value,
    old: &Value,
    rt: ResourceType,
    url_namespace: &str,
    url_name: &str,
) -> Result<(), ApiError> {
    if !new.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be an object",
        ));
    }
    let body_name = name(new);
    if body_name.is_empty() {
        set_field(new, "name", json!(url_name));
    } else if body_name != url_name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
        )));
    }
    settle_namespace(new, rt, url_namespace)?;
    let rv = str_field(new, "resourceVersion");
    if !rv.is_empty() && rv != str_field(old, "resourceVersion") {
        return Err(ApiError::stale(rt, url_name));
    }
    let uid = str_field(new, "uid");
    let old_uid = str_field(old, "uid");
    if !uid.is_empty() && uid != old_uid {
        let why = format!(
            "Precondition failed: UID in precondition: {uid}, UID in object meta: {old_uid}"
        );
        return Err(ApiError::conflict(rt, url_name, &why));
    }
    for system in [
        "uid",
        "creationTimestamp",
        "generation",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        let kept = metadata(old)
            .and_then(|m| m.get(system))
            .cloned()
            .unwrap_or(Value::Null);
        set_field(new, system, kept);
    }
    set_field(new, "selfLink", Value::Null);
    Ok(())
}

/// DeleteOptions.preconditions.
pub(crate) fn check_preconditions(
    preconditions: Option<&Value>,
    current: &Value,
    rt: ResourceType,
) -> Result<(), ApiError> {
    let Some(pre) = preconditions else {
        return Ok(());
    };
    let name = name(current);
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        let wanted = pre.get(field).and_then(Value::as_str).unwrap_or("");
        let actual = str_field(current, field);
        if !wanted.is_empty() && wanted != actual {
            let why = format!(
                "Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}"
            );
            return Err(ApiError::conflict(rt, name, &why));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_look_like_uuids_and_differ() {
        let (a, b) = (new_uid(), new_uid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(
            a.split('-').map(str::len).collect::<Vec<_>>(),
            [8, 4, 4, 4, 12]
        );
    }

    #[test]
    fn an_update_keeps_system_fields_and_refuses_a_stale_version() {
        let old = json!({"metadata": {"name": "n", "uid": "u1", "resourceVersion": "5", "creationTimestamp": "t"}});
        let mut new = json!({"metadata": {"name": "n", "labels": {"a": "b"}}});
        before_update(&mut new, &old, ResourceType::Nodes, "", "n").expect("accepted");
        assert_eq!(new["metadata"]["uid"], "u1");
        assert_eq!(new["metadata"]["creationTimestamp"], "t");
        let mut stale = json!({"metadata": {"name": "n", "resourceVersion": "4"}});
        let err = before_update(&mut stale, &old, ResourceType::Nodes, "", "n").expect_err("stale");
        assert_eq!((err.code, err.reason), (409, "Conflict"));
    }
}
