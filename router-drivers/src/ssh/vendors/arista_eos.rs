//! Arista EOS, in privileged EXEC mode (the login must land at the `#`
//! prompt: privilege 15, or a role that allows what the docs list).
//!
//! Every batch runs in a configuration session: EOS checks each
//! line as it is entered but changes nothing until `commit`, so an error
//! abandons the whole batch with `abort` instead of leaving half of it in
//! the running config. With `commitConfirm`, `commit timer` applies the
//! session and EOS rolls it back unless `configure session NAME commit`
//! confirms it in time; `write memory` saves. EOS answers a bad line with a
//! message starting with `%`.
//!
//! A session that a broken connection left pending counts against EOS's
//! limit (5 by default) for a day, and once the limit is reached every
//! `configure session` is refused. So before each batch the pending
//! sessions are read, and ours (`nativeroute-<tag>-…`) are aborted as NAPALM
//! aborts its own (`configure session NAME abort`); anyone else's are left
//! alone. A limit reached by others' sessions is reported as the
//! configuration held by someone else. `write memory` gets 100 s and a
//! session's commit 120 s, as Netmiko gives its saves and commits.
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

pub struct AristaEos;

/// `leaf-1#`, `leaf-1(config-s-nativ)#`, and on a modular switch the
/// supervisor in between: `core-1(s1)(config)#`.
static PROMPT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9_.\-:]+(\([A-Za-z0-9_.\-/: ]+\))*[>#]\s*$")
        .expect("the EOS prompt pattern is a valid regex")
});

/// `% Invalid input`, `% Incomplete command`, `% Ambiguous command`.
static ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^\s*%\s*(.+?)\s*$").expect("the EOS error pattern is a valid regex")
});

/// What EOS says when every session slot is taken (the text Ansible's
/// arista.eos looks for).
static SESSIONS_FULL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^.*Maximum number of pending sessions has been reached.*$")
        .expect("the EOS session limit pattern is a valid regex")
});

/// EOS writes every static route with a prefix length, IPv4 and IPv6 alike.
fn route_words(dst: IpNet, via: IpAddr) -> String {
    let family = match dst {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ipv6",
    };
    format!("{family} route {dst} {via}")
}

/// The timer of `commit timer`, whole seconds rounded up.
fn timer(window: Duration) -> String {
    let seconds = (window.as_secs() + u64::from(window.subsec_nanos() > 0)).max(1);
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

impl Vendor for AristaEos {
    fn name(&self) -> &'static str {
        "arista-eos"
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

    // A plain word, not an alternation: whatever EOS makes of `|` inside a
    // filter, the parser below keeps only top-level `ip route` lines.
    fn list(&self, _cli: &str) -> Vec<String> {
        vec!["show running-config | include route".to_owned()]
    }

    fn parse_routes(&self, output: &str, ownership: &Ownership) -> Result<RouterRoutes, String> {
        let mut routes = RouterRoutes::default();
        for line in output.lines() {
            if line.starts_with(char::is_whitespace) {
                continue;
            }
            let tokens: Vec<&str> = line.split_whitespace().collect();
            let (prefix, rest) = match tokens.as_slice() {
                // `ip route vrf NAME …` is another table.
                ["ip" | "ipv6", "route", "vrf", ..] => continue,
                ["ip" | "ipv6", "route", prefix, rest @ ..] => (*prefix, rest),
                _ => continue,
            };
            let Ok(dst) = prefix.parse::<IpNet>() else {
                continue;
            };
            // `P GATEWAY [DISTANCE] [tag N] [name X]`, or `P INTERFACE
            // [GATEWAY] …`: only a bare gateway address is a route of ours.
            let gateway = rest.first().and_then(|t| t.parse::<IpAddr>().ok());
            let via = gateway.or_else(|| rest.get(1).and_then(|t| t.parse::<IpAddr>().ok()));
            let marked = gateway.is_some() && tagged(&tokens, ownership);
            sort_route(&mut routes, ownership, dst, via, marked, line);
        }
        Ok(routes)
    }

    // A new session per batch, named by the driver: it starts from the
    // running config, and a session a broken connection left pending is
    // never entered again (EOS drops it after 24 hours).
    fn begin(&self, options: &ApplyOptions) -> Vec<String> {
        vec![format!("configure session {}", options.session_name)]
    }

    fn render(&self, change: &Change, ownership: &Ownership) -> Vec<String> {
        let tag = ownership.route_tag;
        let add = |dst, via| format!("{} tag {tag} name nativeroute", route_words(dst, via));
        match *change {
            Change::Add(route) => vec![add(route.dst, route.via)],
            // The session commits both at once, so the order does not
            // unroute anything; removing first keeps the route even if
            // the old and new next hop were the same.
            Change::Replace { route, old_via } => vec![
                format!("no {}", route_words(route.dst, old_via)),
                add(route.dst, route.via),
            ],
            Change::Remove(route) => vec![format!("no {}", route_words(route.dst, route.via))],
        }
    }

    fn finish(&self, options: &ApplyOptions) -> Vec<String> {
        match options.commit_confirm {
            None => vec!["commit".to_owned()],
            Some(window) => vec![
                format!("commit timer {}", timer(window)),
                format!("configure session {} commit", options.session_name),
            ],
        }
    }

    fn after_commit(&self, options: &ApplyOptions) -> Vec<String> {
        if options.save {
            vec!["write memory".to_owned()]
        } else {
            Vec::new()
        }
    }

    fn abort(&self, _options: &ApplyOptions) -> Vec<String> {
        vec!["abort".to_owned()]
    }

    fn commit_timeout(&self) -> Duration {
        Duration::from_secs(120)
    }

    fn save_timeout(&self) -> Duration {
        Duration::from_secs(100)
    }

    fn held_by_others(&self, answer: &str) -> Option<String> {
        SESSIONS_FULL.find(answer).map(|found| {
            found
                .as_str()
                .trim()
                .trim_start_matches('%')
                .trim()
                .to_owned()
        })
    }

    fn pending_sessions_query(&self) -> Option<&'static str> {
        Some("show configuration sessions")
    }

    /// The table lists `Name State User Terminal`; the session of the
    /// terminal asking is marked `*` before its name.
    fn drop_stale_sessions(&self, shown: &str, ownership: &Ownership) -> Vec<String> {
        let ours = format!("nativeroute-{}-", ownership.route_tag);
        shown
            .lines()
            .filter_map(|line| {
                let mut words = line.split_whitespace();
                let name = words.next().filter(|word| *word != "*")?;
                let state = words.next()?;
                let ours = name.starts_with(&ours)
                    && name[ours.len()..]
                        .chars()
                        .all(|c| c.is_ascii_digit() || c == '-');
                (ours && state == "pending").then(|| format!("configure session {name} abort"))
            })
            .collect()
    }

    fn configuration_probe(&self, options: &ApplyOptions) -> Vec<String> {
        vec![
            format!("configure session {}", options.session_name),
            "abort".to_owned(),
        ]
    }

    fn transactional(&self) -> bool {
        true
    }

    fn error_in(&self, answer: &str) -> Option<String> {
        ERROR.captures(answer).map(|found| found[1].to_owned())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{AristaEos, timer};
    use crate::Ownership;
    use crate::ssh::vendor::Vendor;

    /// The table as EOS prints it (the format of a real capture in
    /// ansible/ansible-modules-core#4945, the `*` of the asking terminal's
    /// own session as in a real capture of a later release).
    #[test]
    fn only_our_own_pending_sessions_are_dropped() {
        let shown = "Maximum number of completed sessions: 1\n\
                     Maximum number of pending sessions: 5\n\
                     \n\
                     \x20 Name                            State         User    Terminal\n\
                     \x20 ------------------------------ ------------- ------- --------\n\
                     \x20 nativeroute-1111-1764920000000-3    pending\n\
                     \x20 nativeroute-1111-1764920000000-4    completed\n\
                     \x20 * nativeroute-1111-1764920000001-5  pending       netops  vty4\n\
                     \x20 nativeroute-2222-1764920000000-1    pending\n\
                     \x20 napalm_123456                       pending\n\
                     \x20 nativeroute-1111-evil abort         pending\n";
        let ownership = Ownership {
            pool: vec!["11.11.0.0/16".parse().expect("pool")],
            netlink_protocol: Ownership::DEFAULT_NETLINK_PROTOCOL,
            route_tag: 1111,
            bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
        };
        assert_eq!(
            AristaEos.drop_stale_sessions(shown, &ownership),
            ["configure session nativeroute-1111-1764920000000-3 abort"]
        );
    }

    #[test]
    fn every_session_slot_taken_is_the_configuration_held_by_others() {
        let answer = "% Maximum number of pending sessions has been reached. Please commit or abort some sessions.";
        assert_eq!(
            AristaEos.held_by_others(answer).as_deref(),
            Some(
                "Maximum number of pending sessions has been reached. Please commit or abort some sessions."
            )
        );
        assert_eq!(AristaEos.held_by_others("% Invalid input"), None);
    }

    #[test]
    fn the_commit_timer_is_hours_minutes_seconds() {
        assert_eq!(timer(Duration::from_secs(300)), "00:05:00");
        assert_eq!(timer(Duration::from_secs(2 * 3600 + 61)), "02:01:01");
        assert_eq!(timer(Duration::from_millis(1500)), "00:00:02");
    }
}
