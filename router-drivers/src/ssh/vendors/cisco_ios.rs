//! Cisco IOS and IOS XE, in privileged EXEC mode (the login must land at
//! the `#` prompt: privilege 15).
//!
//! Each line takes effect when it is entered, so an error keeps what came
//! before it; `end` leaves configuration and `write memory` saves.
//! IOS answers a bad line with a message starting with `%`.
//!
//! Ownership: the static route's `tag`; the route is also named
//! `nativeroute` for the person reading the configuration.

use std::net::IpAddr;
use std::sync::LazyLock;

use ipnet::IpNet;
use regex::Regex;

use super::{sort_route, tagged};
use crate::ssh::vendor::{ApplyOptions, Dialogue, Vendor};
use crate::{Change, Ownership, RouterRoutes};

pub struct CiscoIos;

/// `Router#`, `Router(config)#`, `core-1(config-if)#`; `>` is user EXEC.
static PROMPT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9_.\-/:@]+(\([A-Za-z0-9_.\-/: ]+\))?[>#]\s*$")
        .expect("the IOS prompt pattern is a valid regex")
});

/// `% Invalid input detected at '^' marker.`, `% Incomplete command.`,
/// `%Inconsistent address and mask`.
static ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^\s*%\s*(.+?)\s*$").expect("the IOS error pattern is a valid regex")
});

/// A route as IOS writes it: IPv4 with a dotted mask, IPv6 with a length.
fn route_words(dst: IpNet, via: IpAddr) -> String {
    match dst {
        IpNet::V4(net) => format!("ip route {} {} {via}", net.network(), net.netmask()),
        IpNet::V6(net) => format!("ipv6 route {net} {via}"),
    }
}

/// The destination of a shown route, and the index of the token after it.
fn destination(tokens: &[&str]) -> Option<(IpNet, usize)> {
    match tokens {
        ["ip", "route", address, mask, ..] => {
            let net = IpNet::with_netmask(address.parse().ok()?, mask.parse().ok()?).ok()?;
            Some((net, 4))
        }
        ["ipv6", "route", prefix, ..] => Some((prefix.parse().ok()?, 3)),
        _ => None,
    }
}

impl Vendor for CiscoIos {
    fn name(&self) -> &'static str {
        "cisco-ios"
    }

    fn dialogue(&self) -> Dialogue {
        Dialogue::Prompted
    }

    fn prompt(&self) -> &Regex {
        &PROMPT
    }

    fn terminal_setup(&self) -> Vec<String> {
        vec![
            "terminal length 0".to_owned(),
            "terminal width 0".to_owned(),
        ]
    }

    fn list(&self, _cli: &str) -> Vec<String> {
        vec!["show running-config | include ^ip route |^ipv6 route ".to_owned()]
    }

    fn parse_routes(&self, output: &str, ownership: &Ownership) -> Result<RouterRoutes, String> {
        let mut routes = RouterRoutes::default();
        for line in output.lines() {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            // `ip route vrf NAME …` is another table.
            if tokens.get(2) == Some(&"vrf") {
                continue;
            }
            let Some((dst, next)) = destination(&tokens) else {
                continue;
            };
            let via = tokens.get(next).and_then(|t| t.parse::<IpAddr>().ok());
            sort_route(
                &mut routes,
                ownership,
                dst,
                via,
                tagged(&tokens, ownership),
                line,
            );
        }
        Ok(routes)
    }

    fn begin(&self, _options: &ApplyOptions) -> Vec<String> {
        vec!["configure terminal".to_owned()]
    }

    fn render(&self, change: &Change, ownership: &Ownership) -> Vec<String> {
        let tag = ownership.route_tag;
        let add = |dst, via| format!("{} tag {tag} name nativeroute", route_words(dst, via));
        match *change {
            Change::Add(route) => vec![add(route.dst, route.via)],
            // New next hop first: the destination is never unrouted.
            Change::Replace { route, old_via } => vec![
                add(route.dst, route.via),
                format!("no {}", route_words(route.dst, old_via)),
            ],
            Change::Remove(route) => vec![format!("no {}", route_words(route.dst, route.via))],
        }
    }

    fn finish(&self, _options: &ApplyOptions) -> Vec<String> {
        vec!["end".to_owned()]
    }

    fn after_commit(&self, options: &ApplyOptions) -> Vec<String> {
        if options.save {
            vec!["write memory".to_owned()]
        } else {
            Vec::new()
        }
    }

    fn abort(&self, _options: &ApplyOptions) -> Vec<String> {
        vec!["end".to_owned()]
    }

    fn error_in(&self, answer: &str) -> Option<String> {
        ERROR.captures(answer).map(|found| found[1].to_owned())
    }
}
