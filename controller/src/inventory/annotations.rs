//! The `nativeroute.io/` annotations a user sets on a node, parsed into
//! typed values. A bad value is reported (key and value) and ignored; the
//! rest of the node's settings still apply.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

pub const PREFIX: &str = "nativeroute.io/";
pub const SUBNET: &str = "nativeroute.io/subnet";
pub const NEXT_HOP: &str = "nativeroute.io/next-hop";
pub const ROUTERS: &str = "nativeroute.io/routers";
pub const EXCLUDE: &str = "nativeroute.io/exclude";
pub const STATUS: &str = "nativeroute.io/status";

/// What a node's annotations ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeSettings {
    /// Subnets the user pins (one per family).
    pub pinned: Vec<IpNet>,
    /// Next hops to use instead of the node's addresses (one per family).
    pub next_hops: Vec<IpAddr>,
    /// Routers that serve the node instead of those chosen by nodeNetworks.
    pub routers: Option<Vec<String>>,
    pub exclude: bool,
}

/// A value that was ignored, for the `InvalidAnnotation` Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidAnnotation {
    pub key: String,
    pub value: String,
    pub reason: String,
}

impl std::fmt::Display for InvalidAnnotation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "annotation {}={:?} ignored: {}",
            self.key, self.value, self.reason
        )
    }
}

/// Parses a node's annotations. `known_routers` are the names in the config.
pub fn parse(
    annotations: &BTreeMap<String, String>,
    known_routers: &[&str],
) -> (NodeSettings, Vec<InvalidAnnotation>) {
    let mut settings = NodeSettings::default();
    let mut invalid = Vec::new();
    let mut reject = |key: &str, value: &str, reason: String| {
        invalid.push(InvalidAnnotation {
            key: key.into(),
            value: value.into(),
            reason,
        })
    };
    for (key, value) in annotations
        .iter()
        .filter(|(key, _)| key.starts_with(PREFIX))
    {
        match key.as_str() {
            SUBNET => match parse_per_family(value, parse_subnet) {
                Ok(subnets) => settings.pinned = subnets,
                Err(reason) => reject(key, value, reason),
            },
            NEXT_HOP => match parse_per_family(value, parse_address) {
                Ok(next_hops) => settings.next_hops = next_hops,
                Err(reason) => reject(key, value, reason),
            },
            ROUTERS => match parse_routers(value, known_routers) {
                Ok(routers) => settings.routers = Some(routers),
                Err(reason) => reject(key, value, reason),
            },
            EXCLUDE => match value.trim() {
                "true" => settings.exclude = true,
                "false" => settings.exclude = false,
                _ => reject(key, value, "expected \"true\" or \"false\"".into()),
            },
            STATUS => {}
            _ => reject(
                key,
                value,
                format!(
                    "unknown nativeroute annotation; known: {SUBNET}, {NEXT_HOP}, {ROUTERS}, {EXCLUDE}"
                ),
            ),
        }
    }
    (settings, invalid)
}

/// Comma-separated values, at most one per address family.
fn parse_per_family<T: Copy>(
    value: &str,
    parse_one: fn(&str) -> Result<(T, bool), String>,
) -> Result<Vec<T>, String> {
    let mut parsed: Vec<(T, bool)> = Vec::new();
    for part in value.split(',').map(str::trim) {
        let (item, is_v4) = parse_one(part)?;
        if parsed.iter().any(|(_, seen_v4)| *seen_v4 == is_v4) {
            return Err("more than one value for one address family".into());
        }
        parsed.push((item, is_v4));
    }
    Ok(parsed.into_iter().map(|(item, _)| item).collect())
}

fn parse_subnet(text: &str) -> Result<(IpNet, bool), String> {
    let net: IpNet = text
        .parse()
        .map_err(|_| format!("{text:?} is not a subnet in CIDR notation (e.g. 11.11.3.0/24)"))?;
    if net.trunc() != net {
        return Err(format!(
            "{text:?} has host bits set; the subnet is {}",
            net.trunc()
        ));
    }
    Ok((net, matches!(net, IpNet::V4(_))))
}

fn parse_address(text: &str) -> Result<(IpAddr, bool), String> {
    let addr: IpAddr = text
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address"))?;
    if addr.is_unspecified() || addr.is_multicast() || addr.is_loopback() {
        return Err(format!("{addr} cannot be a next hop"));
    }
    Ok((addr, addr.is_ipv4()))
}

fn parse_routers(value: &str, known: &[&str]) -> Result<Vec<String>, String> {
    let mut routers = Vec::new();
    for name in value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        if !known.contains(&name) {
            return Err(format!(
                "{name:?} is not a router in the config (known: {})",
                known.join(", ")
            ));
        }
        if !routers.iter().any(|seen| seen == name) {
            routers.push(name.to_owned());
        }
    }
    Ok(routers)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_one(key: &str, value: &str) -> (NodeSettings, Vec<InvalidAnnotation>) {
        let annotations = BTreeMap::from([(key.to_owned(), value.to_owned())]);
        parse(&annotations, &["core-1", "tor-a"])
    }

    #[test]
    fn valid_annotations_become_settings() {
        let annotations = BTreeMap::from([
            (
                SUBNET.to_owned(),
                "11.11.3.0/24, fd11:11::3:0/112".to_owned(),
            ),
            (NEXT_HOP.to_owned(), "192.168.3.9".to_owned()),
            (ROUTERS.to_owned(), "tor-a".to_owned()),
            (EXCLUDE.to_owned(), "false".to_owned()),
            ("other.io/key".to_owned(), "anything".to_owned()),
        ]);
        let (settings, invalid) = parse(&annotations, &["core-1", "tor-a"]);
        assert!(invalid.is_empty(), "{invalid:?}");
        assert_eq!(settings.pinned.len(), 2);
        assert_eq!(
            settings.next_hops,
            vec!["192.168.3.9".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(settings.routers, Some(vec!["tor-a".to_owned()]));
        assert!(!settings.exclude);
    }

    #[test]
    fn a_bad_value_is_reported_with_key_and_value_and_ignored() {
        for (key, value) in [
            (SUBNET, "11.11.3.0/33"),
            (SUBNET, "11.11.3.0/24,11.11.4.0/24"),
            (NEXT_HOP, "192.168.3.999"),
            (NEXT_HOP, "127.0.0.1"),
            (NEXT_HOP, "$(reboot)"),
            (ROUTERS, "core-1,nope"),
            (EXCLUDE, "yes"),
            ("nativeroute.io/subnets", "11.11.3.0/24"),
        ] {
            let (settings, invalid) = parse_one(key, value);
            assert_eq!(settings, NodeSettings::default(), "{key}={value}");
            assert_eq!(invalid.len(), 1, "{key}={value}");
            assert_eq!(invalid[0].key, key);
            assert_eq!(invalid[0].value, value);
            let message = invalid[0].to_string();
            assert!(
                message.contains(key) && message.contains(value),
                "{message}"
            );
        }
    }
}
