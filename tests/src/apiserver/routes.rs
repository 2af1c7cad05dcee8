//! One entry point for every request: log it, delay it, fail it if a fault
//! is due, else route it to the verb.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Shared;
use super::faults::Injected;
use super::handlers::{self, json_response};
use super::requests::RequestRecord;
use super::resources::{Target, parse_path};
use super::status::ApiError;
use super::watch;

/// The real server's default request body limit.
const MAX_BODY: usize = 3 * 1024 * 1024;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(handle).with_state(shared)
}

fn verb(method: &Method, target: Option<&Target>, query: &HashMap<String, String>) -> &'static str {
    let Some(target) = target else { return "other" };
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method.as_str(), target.name.is_some()) {
        ("GET", false) if watching => "watch",
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "other",
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_string();
    let query_text = parts.uri.query().unwrap_or("").to_string();
    let target = parse_path(&path);
    let query = Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
        .map(|q| q.0)
        .unwrap_or_default();
    let verb = verb(&parts.method, target.as_ref(), &query);
    let latency = shared.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let injected = shared
        .faults
        .take_failure(parts.method.as_str(), &format!("{path}?{query_text}"));
    let response = match injected {
        Some(Injected::Answer(err)) => err.into_response(),
        Some(Injected::Hang) => {
            // Logged now, as never answered (status 0): it never will be.
            shared.requests.push(RequestRecord {
                method: parts.method.to_string(),
                path,
                query: query_text,
                verb,
                resource: target.as_ref().map_or("", |t| t.resource.plural()),
                subresource: "",
                name: target.as_ref().and_then(|t| t.name.clone()),
                namespace: target.as_ref().and_then(|t| t.namespace.clone()),
                status: 0,
                at: std::time::Instant::now(),
            });
            return std::future::pending().await;
        }
        None => answer(
            &shared,
            &parts.method,
            &path,
            target.as_ref(),
            &query,
            &content_type,
            body,
        )
        .await
        .unwrap_or_else(IntoResponse::into_response),
    };
    shared.requests.push(RequestRecord {
        method: parts.method.to_string(),
        path,
        query: query_text,
        verb,
        resource: target.as_ref().map_or("", |t| t.resource.plural()),
        subresource: if target.as_ref().is_some_and(|t| t.status) {
            "status"
        } else {
            ""
        },
        name: target.as_ref().and_then(|t| t.name.clone()),
        namespace: target.as_ref().and_then(|t| t.namespace.clone()),
        status: response.status().as_u16(),
        at: std::time::Instant::now(),
    });
    response
}

async fn answer(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    target: Option<&Target>,
    query: &HashMap<String, String>,
    content_type: &str,
    body: Body,
) -> Result<Response, ApiError> {
    if path == "/version" && method == Method::GET {
        return Ok(version());
    }
    let target = target.ok_or_else(ApiError::unknown_path)?;
    let body: Bytes = axum::body::to_bytes(body, MAX_BODY)
        .await
        .map_err(|err| ApiError::bad_request(format!("cannot read the request body: {err}")))?;
    let watching = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    match (method.as_str(), target.name.is_some(), target.status) {
        ("GET", false, _) if watching => watch::start(shared.clone(), target, query),
        ("GET", false, _) => handlers::list(shared, target, query),
        ("GET", true, _) => handlers::get(shared, target),
        ("POST", false, false) => handlers::create(shared, target, query, &body),
        ("PUT", true, _) => handlers::update(shared, target, query, &body),
        ("PATCH", true, _) => handlers::patch(shared, target, query, content_type, &body),
        ("DELETE", true, false) => handlers::delete(shared, target, query, &body),
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn version() -> Response {
    let body = json!({
        "major": "1",
        "minor": "35",
        "gitVersion": "v1.35.0",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-12-17T00:00:00Z",
        "goVersion": "go1.25.5",
        "compiler": "gc",
        "platform": "linux/amd64"
    });
    json_response(StatusCode::OK, body.to_string())
}
