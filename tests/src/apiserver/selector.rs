//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, `key`, `!key`, `>`, `<`)
//! and field selectors (`=`, `==`, `!=` on the fields each kind allows),
//! parsed as apimachinery's `labels.Parse` and `fields.ParseSelector` do.

use serde_json::Value;

use super::meta;
use super::resources::ResourceType;
use super::status::ApiError;

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    GreaterThan(i64),
    LessThan(i64),
}

#[derive(Clone, Debug, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

impl Requirement {
    fn matches(&self, value: Option<&str>) -> bool {
        match (&self.op, value) {
            (Op::Equals(want), Some(v)) => v == want,
            (Op::In(set), Some(v)) => set.iter().any(|w| w == v),
            (Op::NotEquals(want), v) => v != Some(want.as_str()),
            (Op::NotIn(set), v) => v.is_none_or(|v| !set.iter().any(|w| w == v)),
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::GreaterThan(n), Some(v)) => v.parse::<i64>().is_ok_and(|v| v > *n),
            (Op::LessThan(n), Some(v)) => v.parse::<i64>().is_ok_and(|v| v < *n),
            _ => false,
        }
    }
}

/// A label selector and a field selector, both optional.
#[derive(Clone, Debug, Default)]
pub(crate) struct Filter {
    labels: Vec<Requirement>,
    fields: Vec<Requirement>,
}

impl Filter {
    pub fn parse(
        rt: ResourceType,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> Result<Filter, ApiError> {
        let labels = match labels {
            Some(text) => parse_labels(text).map_err(ApiError::bad_request)?,
            None => Vec::new(),
        };
        let fields = match fields {
            Some(text) => parse_fields(rt, text).map_err(ApiError::bad_request)?,
            None => Vec::new(),
        };
        Ok(Filter { labels, fields })
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty() && self.fields.is_empty()
    }

    /// Whether `object` (in the API's form) is selected.
    pub fn matches(&self, object: &Value) -> bool {
        let labels = meta::labels(object);
        let label_ok = self.labels.iter().all(|r| {
            let value = labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str);
            r.matches(value)
        });
        label_ok
            && self.fields.iter().all(|r| {
                let value = field_value(object, &r.key);
                // Every field has a value; a missing one reads as "".
                r.matches(Some(value.as_deref().unwrap_or("")))
            })
    }
}

fn field_value(object: &Value, path: &str) -> Option<String> {
    let mut at = object;
    for part in path.split('.') {
        at = at.get(part)?;
    }
    match at {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Splits at commas outside parentheses.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&text[start..]);
    terms
        .into_iter()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

fn parse_labels(text: &str) -> Result<Vec<Requirement>, String> {
    split_terms(text)
        .into_iter()
        .map(parse_label_term)
        .collect()
}

fn parse_label_term(term: &str) -> Result<Requirement, String> {
    let fail = || format!("unable to parse requirement: found '{term}', expected: identifier");
    let requirement = |key: &str, op: Op| -> Result<Requirement, String> {
        let key = key.trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(fail());
        }
        Ok(Requirement {
            key: key.to_string(),
            op,
        })
    };
    if let Some(key) = term.strip_prefix('!') {
        return requirement(key, Op::DoesNotExist);
    }
    for (sep, make) in [
        ("!=", Op::NotEquals as fn(String) -> Op),
        ("==", Op::Equals),
        ("=", Op::Equals),
    ] {
        if let Some((key, value)) = term.split_once(sep) {
            return requirement(key, make(value.trim().to_string()));
        }
    }
    for (sep, greater) in [(">", true), ("<", false)] {
        if let Some((key, value)) = term.split_once(sep) {
            let n: i64 = value.trim().parse().map_err(|_| {
                format!("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {value}")
            })?;
            return requirement(
                key,
                if greater {
                    Op::GreaterThan(n)
                } else {
                    Op::LessThan(n)
                },
            );
        }
    }
    let words: Vec<&str> = term.splitn(3, char::is_whitespace).collect();
    match words.as_slice() {
        [key] => requirement(key, Op::Exists),
        [key, op, set] if *op == "in" || *op == "notin" => {
            let inner = set
                .trim()
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(|| {
                    format!("unable to parse requirement: found '{set}', expected: '('")
                })?;
            let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
            requirement(
                key,
                if *op == "in" {
                    Op::In(values)
                } else {
                    Op::NotIn(values)
                },
            )
        }
        _ => Err(fail()),
    }
}

fn parse_fields(rt: ResourceType, text: &str) -> Result<Vec<Requirement>, String> {
    split_terms(text)
        .into_iter()
        .map(|term| {
            let (key, op) = if let Some((k, v)) = term.split_once("!=") {
                (k, Op::NotEquals(v.to_string()))
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, Op::Equals(v.to_string()))
            } else {
                return Err(format!(
                    "invalid selector: '{text}'; can't understand '{term}'"
                ));
            };
            let key = key.trim();
            let allowed = matches!(key, "metadata.name" | "metadata.namespace")
                || rt.selectable_fields().contains(&key);
            if !allowed {
                return Err(format!("field label not supported: {key}"));
            }
            Ok(Requirement {
                key: rt.stored_field(key),
                op,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(labels: Value) -> Value {
        json!({"metadata": {"name": "n1", "labels": labels}, "spec": {"unschedulable": true}})
    }

    fn selects(selector: &str, object: &Value) -> bool {
        Filter::parse(ResourceType::Nodes, Some(selector), None)
            .expect("parses")
            .matches(object)
    }

    #[test]
    fn every_label_operator_selects_as_kubernetes_does() {
        let n = node(json!({"zone": "a", "tier": "edge", "rank": "7"}));
        assert!(selects("zone=a", &n));
        assert!(selects("zone==a,tier", &n));
        assert!(!selects("zone!=a", &n));
        assert!(selects("missing!=a", &n));
        assert!(selects("zone in (a, b),tier notin (core)", &n));
        assert!(!selects("zone notin (a)", &n));
        assert!(selects("!missing", &n));
        assert!(!selects("!zone", &n));
        assert!(selects("rank>5,rank<8", &n));
    }

    #[test]
    fn field_selectors_read_allowed_fields_only() {
        let n = node(json!({}));
        let f = Filter::parse(
            ResourceType::Nodes,
            None,
            Some("metadata.name=n1,spec.unschedulable=true"),
        )
        .expect("parses");
        assert!(f.matches(&n));
        assert!(Filter::parse(ResourceType::Nodes, None, Some("status.phase=x")).is_err());
        assert!(Filter::parse(ResourceType::Nodes, Some("a in b"), None).is_err());
    }
}
