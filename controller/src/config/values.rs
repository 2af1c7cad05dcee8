//! Field values that are parsed, not trusted: each rejects bad text with a
//! message that quotes it, so that serde_path_to_error can add the field.

use std::fmt;
use std::str::FromStr;

use ipnet::IpNet;
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
