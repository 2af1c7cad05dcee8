//! Cisco IOS and IOS XE, in privileged EXEC mode (the login must land at
//! the `#` prompt: privilege 15).
//!
//! Each line takes effect when it is entered, so an error keeps what came
//! before it; `end` leaves configuration and `write memory` saves (given
//! 100 s, as Netmiko gives it).
//!
//! Not every line starting with `%` is a refusal: a syslog message
//! (`%SYS-5-CONFIG_I: …`, with `terminal monitor` on) and the warning
//! `%No matching route to delete` (a route removed by hand before us) are
//! not. As Ansible's cisco.ios does, only known error texts refuse a line;
//! any other `%` line is logged. Removing a route that is gone counts as
//! done.
//!
//! Ownership: the static route's `tag`; the route is also named
//! `nativeroute` for the person reading the configuration.

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

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

/// The refusals: `% Invalid input detected at '^' marker.`, `% Incomplete
/// command.`, `% Ambiguous command: "…"`, `%Inconsistent address and
/// mask`, `% Bad mask`, `%Invalid next hop address (it's this router)`,
/// `% Error …`, `Command authorization failed.`, `Command rejected: …`
/// (after Ansible cisco.ios's `terminal_stderr_re`), and the removal of a
/// route that is not there, settled by [`CiscoIos::already_done`].
static ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?mi)^\s*(%\s*(?:invalid|incomplete command|ambiguous command|unknown command|inconsistent address|bad mask|error|no matching route|.*overlaps with).*?|command authorization failed.*?|command rejected.*?)\s*$",
    )
    .expect("the IOS error pattern is a valid regex")
});

/// `%No matching route to delete`: the route a `no ip route` names is gone.
static NO_MATCHING_ROUTE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?mi)^\s*%\s*no matching route to delete")
        .expect("the IOS absent-route pattern is a valid regex")
});

/// Any other `%` line that is not a syslog message (`%FAC-5-MNEMONIC:`,
/// after a timestamp when `service timestamps` is on).
static OTHER_PERCENT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^\s*(%.+?)\s*$").expect("the IOS percent pattern is a valid regex")
});
static SYSLOG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"%[A-Z0-9_]+-\d-[A-Z0-9_]+:").expect("the IOS syslog pattern is a valid regex")
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
            "terminal width 511".to_owned(),
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

    fn save_timeout(&self) -> Duration {
        Duration::from_secs(100)
    }

    fn error_in(&self, answer: &str) -> Option<String> {
        if let Some(found) = ERROR.captures(answer) {
            return Some(found[1].trim_start_matches('%').trim_start().to_owned());
        }
        for found in OTHER_PERCENT.captures_iter(answer) {
            if !SYSLOG.is_match(&found[1]) {
                tracing::warn!(said = %&found[1], "IOS printed a message nativeroute does not know; not taken as a refusal");
            }
        }
        None
    }

    fn already_done(&self, line: &str, answer: &str) -> bool {
        (line.starts_with("no ip route ") || line.starts_with("no ipv6 route "))
            && NO_MATCHING_ROUTE.is_match(answer)
            && ERROR
                .captures_iter(answer)
                .all(|found| NO_MATCHING_ROUTE.is_match(&found[1]))
    }

    fn configuration_probe(&self, _options: &ApplyOptions) -> Vec<String> {
        vec!["configure terminal".to_owned(), "end".to_owned()]
    }
}

#[cfg(test)]
mod tests {
    use super::CiscoIos;
    use crate::ssh::vendor::Vendor;

    #[test]
    fn only_known_error_texts_refuse_a_line() {
        let refused = [
            "                ^\n% Invalid input detected at '^' marker.",
            "% Incomplete command.",
            "% Ambiguous command:  \"ip route 11\"",
            "%Inconsistent address and mask",
            "%Invalid next hop address (it's this router)",
            "Command authorization failed.",
        ];
        for answer in refused {
            assert!(CiscoIos.error_in(answer).is_some(), "{answer:?}");
        }
        let not_refused = [
            // A syslog line with `terminal monitor` on (a real IOS sample).
            "*May 23 20:27:20.718: %SYS-5-CONFIG_I: Configured from console by console",
            "%LINK-3-UPDOWN: Interface GigabitEthernet0/1, changed state to up",
            "Building configuration...\n[OK]",
        ];
        for answer in not_refused {
            assert_eq!(CiscoIos.error_in(answer), None, "{answer:?}");
        }
        assert_eq!(
            CiscoIos
                .error_in("% Invalid input detected at '^' marker.")
                .as_deref(),
            Some("Invalid input detected at '^' marker.")
        );
    }

    #[test]
    fn a_removal_of_a_gone_route_is_done_and_nothing_else_is() {
        let gone = "%No matching route to delete";
        assert!(CiscoIos.error_in(gone).is_some());
        assert!(CiscoIos.already_done("no ip route 11.11.1.0 255.255.255.0 192.168.3.3", gone));
        assert!(CiscoIos.already_done("no ipv6 route fd11:11:0:3::/64 fd00:3::3", gone));
        assert!(!CiscoIos.already_done(
            "ip route 11.11.1.0 255.255.255.0 192.168.3.3 tag 1111 name nativeroute",
            gone
        ));
        let worse = "%No matching route to delete\n% Invalid input detected at '^' marker.";
        assert!(!CiscoIos.already_done("no ip route 11.11.1.0 255.255.255.0 192.168.3.3", worse));
    }
}
