//! The three patch types the real server takes for built-in kinds, chosen by
//! Content-Type. Server-side apply (`application/apply-patch+yaml`) is not
//! served: it needs managed fields, which this server does not keep.

use serde_json::Value;

use super::status::ApiError;
use super::strategic;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchType {
    Merge,
    Strategic,
    Json,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Result<PatchType, ApiError> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/json-patch+json" => Ok(PatchType::Json),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// `object` (in the API's form, of `kind`) with `patch` applied.
pub(crate) fn apply(
    patch_type: PatchType,
    kind: &str,
    mut object: Value,
    patch: &Value,
) -> Result<Value, ApiError> {
    match patch_type {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            json_patch::merge(&mut object, patch);
            Ok(object)
        }
        PatchType::Strategic => {
            strategic::apply(kind, object, patch).map_err(ApiError::bad_request)
        }
        PatchType::Json => {
            let operations: json_patch::Patch =
                serde_json::from_value(patch.clone()).map_err(|err| {
                    ApiError::bad_request(format!("the json patch could not be decoded: {err}"))
                })?;
            json_patch::patch(&mut object, &operations).map_err(|err| {
                ApiError::unprocessable(format!(
                    "the server rejected our request due to an error in our request: {err}"
                ))
            })?;
            Ok(object)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_replaces_lists_and_json_patch_test_failure_is_unprocessable() {
        let node =
            json!({"spec": {"podCIDRs": ["10.0.0.0/24"]}, "metadata": {"labels": {"a": "1"}}});
        let out = apply(
            PatchType::Merge,
            "Node",
            node.clone(),
            &json!({"spec": {"podCIDRs": ["10.1.0.0/24"]}}),
        )
        .expect("applies");
        assert_eq!(out["spec"]["podCIDRs"], json!(["10.1.0.0/24"]));
        let failed_test = json!([{"op": "test", "path": "/metadata/labels/a", "value": "2"}]);
        let err = apply(PatchType::Json, "Node", node, &failed_test).expect_err("test op fails");
        assert_eq!(err.code, 422);
        assert!(PatchType::from_content_type("application/apply-patch+yaml").is_err());
        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8")
                .expect("known"),
            PatchType::Merge
        );
    }
}
