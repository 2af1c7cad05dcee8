//! Failures as the real API server reports them: a `Status` object whose
//! reason, code, message and details match what apimachinery's `errors`
//! package produces, so client code that matches on them behaves the same.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::resources::ResourceType;

/// One field-level validation failure (apimachinery's `field.Error`).
#[derive(Clone, Debug)]
pub(crate) struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
}

#[derive(Clone, Debug)]
pub(crate) enum FieldErrorKind {
    Forbidden(String),
    /// The value, already rendered as the real server renders it, and why.
    Invalid(String, String),
    Required(String),
    Duplicate(String),
    /// Why (the real server omits the value).
    TooLong(String),
}

impl FieldError {
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Forbidden(detail.into()),
        }
    }

    pub fn invalid(field: impl Into<String>, value: &str, detail: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid(format!("{value:?}"), detail.into()),
        }
    }

    /// An invalid value that is not a string, rendered the way Go's `%#v` would.
    pub fn invalid_raw(
        field: impl Into<String>,
        value: String,
        detail: impl Into<String>,
    ) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Invalid(value, detail.into()),
        }
    }

    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Required(detail.into()),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &str) -> FieldError {
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::Duplicate(format!("{value:?}")),
        }
    }

    /// `field.TooLong` with a limit in bytes, as apimachinery words it
    /// since Kubernetes 1.32 (before: "must have at most N bytes").
    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> FieldError {
        let unit = if max_bytes == 1 { "byte" } else { "bytes" };
        FieldError {
            field: field.into(),
            kind: FieldErrorKind::TooLong(format!("may not be more than {max_bytes} {unit}")),
        }
    }

    fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Forbidden(_) => "FieldValueForbidden",
            FieldErrorKind::Invalid(..) => "FieldValueInvalid",
            FieldErrorKind::Required(_) => "FieldValueRequired",
            FieldErrorKind::Duplicate(_) => "FieldValueDuplicate",
            FieldErrorKind::TooLong(_) => "FieldValueTooLong",
        }
    }

    /// The part after "field: ", as `field.Error.ErrorBody` writes it.
    fn body(&self) -> String {
        match &self.kind {
            FieldErrorKind::Forbidden(detail) => format!("Forbidden: {detail}"),
            FieldErrorKind::Invalid(value, detail) => format!("Invalid value: {value}: {detail}"),
            FieldErrorKind::Required(detail) if detail.is_empty() => "Required value".to_string(),
            FieldErrorKind::Required(detail) => format!("Required value: {detail}"),
            FieldErrorKind::Duplicate(value) => format!("Duplicate value: {value}"),
            FieldErrorKind::TooLong(detail) => format!("Too long: {detail}"),
        }
    }
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// A failed request, answered as a `Status` object.
#[derive(Clone, Debug)]
pub(crate) struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> ApiError {
        ApiError {
            code,
            reason,
            message,
            details: None,
            retry_after: None,
        }
    }

    fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    /// `details` naming the object by resource (plural), as NotFound,
    /// AlreadyExists and Conflict do.
    fn resource_details(rt: ResourceType, name: &str) -> Value {
        let mut details = Map::new();
        details.insert("name".into(), json!(name));
        if !rt.group().is_empty() {
            details.insert("group".into(), json!(rt.group()));
        }
        details.insert("kind".into(), json!(rt.plural()));
        Value::Object(details)
    }

    pub fn not_found(rt: ResourceType, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", rt.qualified()),
        )
        .with_details(Self::resource_details(rt, name))
    }

    pub fn already_exists(rt: ResourceType, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", rt.qualified()),
        )
        .with_details(Self::resource_details(rt, name))
    }

    pub fn conflict(rt: ResourceType, name: &str, why: &str) -> ApiError {
        let message = format!(
            "Operation cannot be fulfilled on {} {name:?}: {why}",
            rt.qualified()
        );
        ApiError::new(409, "Conflict", message).with_details(Self::resource_details(rt, name))
    }

    /// A stale `metadata.resourceVersion` in an update or patch.
    pub fn stale(rt: ResourceType, name: &str) -> ApiError {
        Self::conflict(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 Invalid with one cause per field error; the message lists them as
    /// `errors.NewInvalid` does (bare when one, bracketed when several).
    pub fn invalid(rt: ResourceType, name: &str, errors: &[FieldError]) -> ApiError {
        let listed = match errors {
            [one] => one.to_string(),
            many => {
                let all: Vec<String> = many.iter().map(ToString::to_string).collect();
                format!("[{}]", all.join(", "))
            }
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason(), "message": e.body(), "field": e.field}))
            .collect();
        let mut details = Map::new();
        details.insert("name".into(), json!(name));
        if !rt.group().is_empty() {
            details.insert("group".into(), json!(rt.group()));
        }
        details.insert("kind".into(), json!(rt.kind()));
        details.insert("causes".into(), Value::Array(causes));
        ApiError::new(
            422,
            "Invalid",
            format!("{} {name:?} is invalid: {listed}", rt.kind()),
        )
        .with_details(Value::Object(details))
    }

    /// 422 from applying a patch that does not fit the object.
    pub fn unprocessable(message: String) -> ApiError {
        ApiError::new(422, "Invalid", message)
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message.into())
    }

    pub fn expired(message: String) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn internal(message: &str) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
        .with_details(json!({"causes": [{"message": message}]}))
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource".into(),
        )
    }

    pub fn unknown_path() -> ApiError {
        ApiError::new(404, "NotFound", "the server could not find the requested resource".into())
            .with_details(json!({"causes": [{"reason": "UnexpectedServerResponse", "message": "404 page not found"}]}))
    }

    pub fn unsupported_media_type(content_type: &str) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: \
                 application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
            ),
        )
    }

    /// A failure injected by a test: the reason the real server gives for
    /// that code.
    pub fn injected(code: u16, message: Option<&str>, retry_after: Option<u32>) -> ApiError {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            405 => "MethodNotAllowed",
            409 => "Conflict",
            410 => "Expired",
            422 => "Invalid",
            429 => "TooManyRequests",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "InternalError",
        };
        let message = match (message, code) {
            (Some(m), _) => m.to_string(),
            (None, 429) => {
                "the server has received too many requests and has asked us to try again later"
                    .into()
            }
            (None, 500) => "Internal error occurred: injected fault".into(),
            (None, _) => format!("injected fault ({code})"),
        };
        let mut error = ApiError::new(code, reason, message);
        if let Some(seconds) = retry_after {
            error.retry_after = Some(seconds);
            error.details = Some(json!({"retryAfterSeconds": seconds}));
        }
        error
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let (Some(details), Some(map)) = (&self.details, status.as_object_mut()) {
            map.insert("details".into(), details.clone());
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = self.status().to_string();
        let mut response =
            (code, [(header::CONTENT_TYPE, "application/json")], body).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}
