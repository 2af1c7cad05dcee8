//! The verbs on one resource: list, get, create, update, patch, delete.

use std::collections::HashMap;
use std::fmt::Write as _;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Shared;
use super::meta;
use super::patch::{self, PatchType};
use super::resources::{ResourceType, Target};
use super::schema;
use super::selector::Filter;
use super::status::ApiError;
use super::store::{Key, WriteError};
use super::strategy;

pub(crate) type Query = HashMap<String, String>;

pub(crate) fn json_response(code: StatusCode, body: String) -> Response {
    (code, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn object_response(
    code: StatusCode,
    rt: ResourceType,
    stored: &Value,
) -> Result<Response, ApiError> {
    let shown = schema::encode(rt, stored)?;
    Ok(json_response(code, shown.to_string()))
}

fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|err| {
        ApiError::bad_request(format!(
            "couldn't get version/kind; json parse error: {err}"
        ))
    })
}

fn dry_run(query: &Query) -> bool {
    query.get("dryRun").is_some_and(|v| v == "All")
}

fn key(target: &Target) -> Key {
    (
        target.namespace_key().to_string(),
        target.name.clone().unwrap_or_default(),
    )
}

fn name(target: &Target) -> &str {
    target.name.as_deref().unwrap_or("")
}

fn write_failed(err: WriteError, rt: ResourceType, name: &str) -> ApiError {
    match err {
        WriteError::NotFound => ApiError::not_found(rt, name),
        WriteError::AlreadyExists => ApiError::already_exists(rt, name),
        WriteError::Rejected(err) => err,
    }
}

/// "{rv}/{namespace}/{name}": the version the list reads at and where the
/// next page starts. Opaque to clients, as the real token is.
fn continue_token(rv: u64, key: &Key) -> String {
    format!("{rv}/{}/{}", key.0, key.1)
}

fn parse_continue(token: &str) -> Option<(u64, Key)> {
    let (rv, rest) = token.split_once('/')?;
    let (namespace, name) = rest.split_once('/')?;
    Some((rv.parse().ok()?, (namespace.to_string(), name.to_string())))
}

pub(crate) fn list(shared: &Shared, target: &Target, query: &Query) -> Result<Response, ApiError> {
    let rt = target.resource;
    let param = |name: &str| {
        query
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let filter = Filter::parse(rt, param("labelSelector"), param("fieldSelector"))?;
    let limit = match param("limit") {
        Some(text) => Some(
            text.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit: {text:?}")))?,
        )
        .filter(|&n| n > 0),
        None => None,
    };
    let continued = match param("continue") {
        Some(token) => {
            if param("resourceVersion").is_some() {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let (rv, after) = parse_continue(token).ok_or_else(|| {
                ApiError::bad_request("continue key is not valid: malformed token")
            })?;
            if !shared.store.continuable(rt.storage(), rv) {
                return Err(ApiError::expired(
                    "The provided continue parameter is too old to display a consistent list result. \
                     You can start a new list without the continue parameter."
                        .into(),
                ));
            }
            Some((rv, after))
        }
        None => None,
    };
    let (page, now) = shared.store.list(
        rt.storage(),
        target.namespace.as_deref(),
        continued.as_ref().map(|(_, after)| after),
        limit,
        &|object| filter.matches(object),
    );
    // Every page of one list reads at its first page's version, so a watch
    // from there replays whatever changed while the pages were read.
    let rv = continued.map_or(now, |(rv, _)| rv);
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(next) = &page.next {
        metadata["continue"] = json!(continue_token(rv, next));
        if filter.is_empty() {
            metadata["remainingItemCount"] = json!(page.remaining);
        }
    }
    let mut body = format!(
        r#"{{"kind":"{}","apiVersion":"{}","metadata":{},"items":["#,
        rt.list_kind(),
        rt.api_version(),
        metadata
    );
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        match rt {
            ResourceType::Events => body.push_str(&schema::encode(rt, item)?.to_string()),
            _ => {
                let _ = write!(body, "{item}");
            }
        }
    }
    body.push_str("]}");
    Ok(json_response(StatusCode::OK, body))
}

pub(crate) fn get(shared: &Shared, target: &Target) -> Result<Response, ApiError> {
    let rt = target.resource;
    let object = shared
        .store
        .get(rt.storage(), &key(target))
        .ok_or_else(|| ApiError::not_found(rt, name(target)))?;
    object_response(StatusCode::OK, rt, &object)
}

pub(crate) fn create(
    shared: &Shared,
    target: &Target,
    query: &Query,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let incoming = schema::decode(target.resource, parse_body(body)?)?;
    create_object(shared, target, incoming, dry_run(query))
}

fn create_object(
    shared: &Shared,
    target: &Target,
    mut object: Value,
    dry_run: bool,
) -> Result<Response, ApiError> {
    let rt = target.resource;
    meta::before_create(&mut object, rt, target.namespace_key())?;
    strategy::prepare_and_validate_create(rt, &mut object)?;
    let name = meta::name(&object).to_string();
    let key = (target.namespace_key().to_string(), name.clone());
    let stored = shared
        .store
        .create(rt.storage(), key, object, dry_run)
        .map_err(|err| write_failed(err, rt, &name))?;
    object_response(StatusCode::CREATED, rt, &stored)
}

pub(crate) fn update(
    shared: &Shared,
    target: &Target,
    query: &Query,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let rt = target.resource;
    let incoming = schema::decode(rt, parse_body(body)?)?;
    let spare = (rt.create_on_update() && !target.status).then(|| incoming.clone());
    let result = shared
        .store
        .update(rt.storage(), &key(target), dry_run(query), |current| {
            let mut new = incoming.clone();
            meta::before_update(&mut new, current, rt, target.namespace_key(), name(target))?;
            strategy::prepare_and_validate_update(rt, &mut new, current, target.status)?;
            Ok(new)
        });
    match (result, spare) {
        (Ok(stored), _) => object_response(StatusCode::OK, rt, &stored),
        (Err(WriteError::NotFound), Some(mut object)) => {
            if meta::name(&object) != name(target) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({})",
                    meta::name(&object),
                    name(target)
                )));
            }
            if let Some(m) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            create_object(shared, target, object, dry_run(query))
        }
        (Err(err), _) => Err(write_failed(err, rt, name(target))),
    }
}

pub(crate) fn patch(
    shared: &Shared,
    target: &Target,
    query: &Query,
    content_type: &str,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let rt = target.resource;
    let patch_type = PatchType::from_content_type(content_type)?;
    let patch_body = parse_body(body)?;
    let stored = shared
        .store
        .update(rt.storage(), &key(target), dry_run(query), |current| {
            let shown = schema::encode(rt, current)?.into_owned();
            let patched = patch::apply(patch_type, rt.kind(), shown, &patch_body)?;
            let mut new = schema::decode(rt, patched)?;
            meta::before_update(&mut new, current, rt, target.namespace_key(), name(target))?;
            strategy::prepare_and_validate_update(rt, &mut new, current, target.status)?;
            Ok(new)
        })
        .map_err(|err| write_failed(err, rt, name(target)))?;
    object_response(StatusCode::OK, rt, &stored)
}

pub(crate) fn delete(
    shared: &Shared,
    target: &Target,
    query: &Query,
    body: &Bytes,
) -> Result<Response, ApiError> {
    let rt = target.resource;
    let options = if body.is_empty() {
        Value::Null
    } else {
        parse_body(body)?
    };
    let dry_run = dry_run(query)
        || options
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    let deleted = shared
        .store
        .delete(rt.storage(), &key(target), dry_run, |current| {
            meta::check_preconditions(options.get("preconditions"), current, rt)
        })
        .map_err(|err| write_failed(err, rt, name(target)))?;
    object_response(StatusCode::OK, rt, &deleted)
}
