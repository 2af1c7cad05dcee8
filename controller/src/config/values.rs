//! Field values that are parsed, not trusted: each rejects bad text with a
//! message that quotes it, so that serde_path_to_error can add the field.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
use kube::core::{Expression, Selector};
use serde::{Deserialize, Deserializer, de};

/// A network in CIDR notation whose host bits are zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr(pub IpNet);

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let net: IpNet = text.trim().parse().map_err(|_| {
            format!("{text:?} is not a network in CIDR notation (e.g. 11.11.0.0/16)")
        })?;
        if net.trunc() != net {
            return Err(format!(
                "{text:?} has host bits set; the network is {}",
                net.trunc()
            ));
        }
        Ok(Cidr(net))
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// A router's name: a DNS label, because it appears in the status
/// annotation, in metric labels and in logs.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouterName(String);

impl RouterName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RouterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for RouterName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let valid_chars = text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        let valid_ends = !text.starts_with('-') && !text.ends_with('-');
        if text.is_empty() || text.len() > 63 || !valid_chars || !valid_ends {
            return Err(format!(
                "{text:?} is not a valid router name: use 1 to 63 lowercase letters, digits \
                 and '-', not starting or ending with '-'"
            ));
        }
        Ok(RouterName(text.to_owned()))
    }
}

impl<'de> Deserialize<'de> for RouterName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// A duration written the human way ("60s", "2m", "500ms").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HumanDuration(pub std::time::Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim())
            .map(HumanDuration)
            .map_err(|err| {
                de::Error::custom(format!("{text:?} is not a duration like 60s or 5m: {err}"))
            })
    }
}

/// A network namespace name as `ip netns` accepts it: it becomes a path
/// under /run/netns, so no slashes and no dot-only names.
pub fn check_netns_name(text: &str) -> Result<(), String> {
    let valid_chars = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if text.is_empty() || text.len() > 64 || !valid_chars || text == "." || text == ".." {
        return Err(format!(
            "{text:?} is not a valid network namespace name: use 1 to 64 letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

/// Checks a Kubernetes label selector (`key`, `!key`, `key=v`, `key==v`,
/// `key!=v`, `key in (a,b)`, `key notin (a,b)`, comma-separated), so that a
/// typo is a config error at start rather than a watch the API server
/// refuses over and over.
pub fn check_label_selector(text: &str) -> Result<(), String> {
    parse_label_selector(text).map(|_| ())
}

/// Parses a label selector into kube's [`Selector`], to match labels the
/// same way the API server does.
pub fn parse_label_selector(text: &str) -> Result<Selector, String> {
    if text.trim().is_empty() {
        return Ok(Selector::default());
    }
    split_requirements(text)
        .into_iter()
        .map(|requirement| {
            parse_requirement(requirement.trim()).ok_or_else(|| {
                format!(
                    "{text:?} is not a label selector: {:?} is not a requirement like key=value, key!=value, key in (a,b), key or !key",
                    requirement.trim()
                )
            })
        })
        .collect()
}

fn parse_requirement(requirement: &str) -> Option<Expression> {
    if let Some(key) = requirement.strip_prefix('!') {
        let key = key.trim();
        return is_label_key(key).then(|| Expression::DoesNotExist(key.into()));
    }
    if let Some((key, values, negated)) = set_requirement(requirement) {
        let valid = is_label_key(key) && values.iter().all(|v| is_label_value(v));
        let values = values.into_iter().map(str::to_owned).collect();
        return valid.then(|| {
            if negated {
                Expression::NotIn(key.into(), values)
            } else {
                Expression::In(key.into(), values)
            }
        });
    }
    let (key, value, equal) = if let Some((key, value)) = requirement.split_once("!=") {
        (key, value, false)
    } else if let Some((key, value)) = requirement
        .split_once("==")
        .or_else(|| requirement.split_once('='))
    {
        (key, value, true)
    } else {
        return is_label_key(requirement).then(|| Expression::Exists(requirement.into()));
    };
    let (key, value) = (key.trim(), value.trim());
    if !is_label_key(key) || !is_label_value(value) {
        return None;
    }
    Some(if equal {
        Expression::Equal(key.into(), value.into())
    } else {
        Expression::NotEqual(key.into(), value.into())
    })
}

/// Splits on the commas between requirements, not those inside `( )`.
fn split_requirements(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `key in (a,b)` or `key notin (a,b)`: the key, the values, and whether negated.
fn set_requirement(text: &str) -> Option<(&str, Vec<&str>, bool)> {
    let (head, rest) = text.split_once('(')?;
    let values = rest.strip_suffix(')')?;
    let mut words = head.split_whitespace();
    let (key, operator) = (words.next()?, words.next()?);
    if words.next().is_some() || !matches!(operator, "in" | "notin") {
        return None;
    }
    Some((
        key,
        values.split(',').map(str::trim).collect(),
        operator == "notin",
    ))
}

/// `[prefix/]name`: prefix a DNS subdomain, name up to 63 characters.
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            })
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

/// Up to 63 letters, digits, '-', '_' or '.', starting and ending with a
/// letter or digit (empty is allowed for values).
fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes.first().is_none_or(u8::is_ascii_alphanumeric)
        && bytes.last().is_none_or(u8::is_ascii_alphanumeric)
}

#[cfg(test)]
mod selector_tests {
    use super::{check_label_selector, parse_label_selector};
    use kube::core::SelectorExt;
    use std::collections::BTreeMap;

    #[test]
    fn a_parsed_selector_matches_labels_as_the_api_server_does() {
        let selector = parse_label_selector(
            "zone in (a, b), tier!=edge, !node-role.kubernetes.io/control-plane, nativeroute.io/lab",
        )
        .expect("valid");
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(selector.matches(&labels(&[("zone", "a"), ("nativeroute.io/lab", "")])));
        assert!(!selector.matches(&labels(&[("zone", "c"), ("nativeroute.io/lab", "")])));
        assert!(!selector.matches(&labels(&[
            ("zone", "a"),
            ("tier", "edge"),
            ("nativeroute.io/lab", "")
        ])));
        assert!(!selector.matches(&labels(&[
            ("zone", "b"),
            ("nativeroute.io/lab", ""),
            ("node-role.kubernetes.io/control-plane", "")
        ])));
        assert!(
            parse_label_selector("")
                .expect("empty")
                .matches(&labels(&[]))
        );
    }

    #[test]
    fn selectors_of_every_form_pass_and_typos_are_named() {
        for good in [
            "",
            "node-role.kubernetes.io/worker",
            "!node-role.kubernetes.io/control-plane",
            "nativeroute.io/lab=nrlab",
            "zone in (a, b),tier!=edge",
            "env notin (dev)",
        ] {
            assert_eq!(check_label_selector(good), Ok(()), "{good}");
        }
        for bad in [
            "ro le=x",
            "=x",
            "a b",
            "zone in a,b",
            "key=val=ue",
            "-bad=x",
        ] {
            let err = check_label_selector(bad).expect_err(bad);
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
