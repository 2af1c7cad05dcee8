//! Juniper Junos, from operational mode (`user@host>`; a login class, not
//! root, whose login lands in the Junos CLI rather than the shell).
//!
//! A batch edits a candidate configuration and takes effect at `commit`,
//! all of it or none. It is edited with `configure private`, a copy of our
//! own: only our changes are committed, and a batch abandoned half-way
//! (`rollback 0`, or a dropped session) leaves nothing behind. Junos refuses
//! a confirmed commit on a private copy, so with `commitConfirm` the batch
//! uses `configure exclusive` instead (which locks the candidate for the few
//! seconds of the batch and discards anything uncommitted on exit), commits
//! with `commit confirmed N` and confirms with a plain `commit`. A commit
//! is already persistent: there is nothing to save.
//!
//! Junos prints `[edit]` (and `{master:0}` on some chassis) on the line
//! above each configuration prompt, and points at a bad word with a caret
//! line before the message (`syntax error, expecting <command>.`,
//! `error: configuration check-out failed`).
//!
//! Someone else's uncommitted edits or exclusive lock stop every batch
//! (`error: shared configuration database modified`, `error: configuration
//! database modified`, `error: configuration database locked by: …`).
//! They are reported as the configuration held by someone else and the
//! batch is retried later; nothing of theirs is ever discarded. A commit
//! gets 120 s, as Netmiko gives it.
//!
//! Ownership: the static route's `tag`. nativeroute owns a route only when
//! its stanza holds exactly our tag and one next-hop address, so deleting
//! the whole stanza on removal takes nothing of anyone else's, as long as
//! the fresh list before the batch still shows it so (`fresh_list`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;

use super::{explained_error, sort_route};
use crate::ssh::vendor::{ApplyOptions, Dialogue, Vendor};
use crate::{Change, Ownership, RouterRoutes};

pub struct Junos;

/// `netops@mx1>` in operational mode, `netops@mx1#` in configuration mode.
static PROMPT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9_.\-]+@[A-Za-z0-9_.\-]+[>#]\s*$")
        .expect("the Junos prompt pattern is a valid regex")
});

/// The first line of each kind of refusal; `warning:` lines (a `delete` of
/// something already gone) are not errors.
static ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(error:|syntax error|unknown command|missing argument|invalid )")
        .expect("the Junos error pattern is a valid regex")
});

/// Someone else holds the candidate configuration.
static HELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^\s*error: (?:shared )?configuration database (?:modified|locked by)")
        .expect("the Junos lock pattern is a valid regex")
});

/// Where a static route lives: `inet.0` is the default, IPv6 routes are in
/// the `inet6.0` table.
fn route_path(dst: IpNet) -> String {
    match dst {
        IpNet::V4(_) => format!("routing-options static route {dst}"),
        IpNet::V6(_) => format!("routing-options rib inet6.0 static route {dst}"),
    }
}

/// `commit confirmed` counts whole minutes; round up.
fn minutes(window: Duration) -> u64 {
    window.as_secs().div_ceil(60).clamp(1, 65_535)
}

/// What `display set` shows of one static route, over all its lines.
#[derive(Default)]
struct Stanza<'a> {
    next_hops: Vec<IpAddr>,
    tag: Option<u32>,
    /// Anything but next-hop addresses and the tag: `discard`,
    /// `qualified-next-hop`, `preference`, an interface, a `deactivate`.
    other: bool,
    lines: Vec<&'a str>,
}

impl<'a> Stanza<'a> {
    fn read(&mut self, verb: &str, attribute: &[&str], line: &'a str) {
        self.lines.push(line.trim());
        match (verb, attribute) {
            ("set", ["next-hop", hop]) => match hop.parse::<IpAddr>() {
                Ok(hop) if !self.next_hops.contains(&hop) => self.next_hops.push(hop),
                Ok(_) => {}
                Err(_) => self.other = true,
            },
            ("set", ["tag", tag]) => self.tag = tag.parse().ok(),
            _ => self.other = true,
        }
    }
}

/// The verb, the prefix and the rest of one `display set` line about a
/// static route in the default tables; `None` for any other line.
fn static_route<'t, 'a>(tokens: &'t [&'a str]) -> Option<(&'a str, IpNet, &'t [&'a str])> {
    let (verb, path) = match tokens {
        [verb @ ("set" | "deactivate"), "routing-options", path @ ..] => (*verb, path),
        _ => return None,
    };
    let (prefix, attribute) = match path {
        ["static", "route", prefix, attribute @ ..] => (prefix, attribute),
        [
            "rib",
            "inet.0" | "inet6.0",
            "static",
            "route",
            prefix,
            attribute @ ..,
        ] => (prefix, attribute),
        _ => return None,
    };
    Some((verb, prefix.parse().ok()?, attribute))
}

impl Vendor for Junos {
    fn name(&self) -> &'static str {
        "junos"
    }

    fn dialogue(&self) -> Dialogue {
        Dialogue::Prompted
    }

    fn prompt(&self) -> &Regex {
        &PROMPT
    }

    // Completion on space would rewrite an abbreviation in the echo; all
    // words sent are whole, but the echo must be exactly the line sent.
    fn terminal_setup(&self) -> Vec<String> {
        vec![
            "set cli screen-length 0".to_owned(),
            "set cli screen-width 511".to_owned(),
            "set cli complete-on-space off".to_owned(),
        ]
    }

    fn list(&self, _cli: &str) -> Vec<String> {
        // With inheritance: a static route from an apply-group is invisible
        // to a plain `show configuration`, and our lines would merge into it.
        vec!["show configuration routing-options | display inheritance | display set".to_owned()]
    }

    fn parse_routes(&self, output: &str, ownership: &Ownership) -> Result<RouterRoutes, String> {
        let mut stanzas: BTreeMap<IpNet, Stanza> = BTreeMap::new();
        for line in output.lines() {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            if let Some((verb, dst, attribute)) = static_route(&tokens) {
                stanzas.entry(dst).or_default().read(verb, attribute, line);
            }
        }
        let mut routes = RouterRoutes::default();
        for (dst, stanza) in stanzas {
            let via = match stanza.next_hops.as_slice() {
                [via] => Some(*via),
                _ => None,
            };
            let marked = stanza.tag == Some(ownership.route_tag) && !stanza.other;
            let detail = stanza.lines.join("; ");
            sort_route(&mut routes, ownership, dst, via, marked, &detail);
        }
        Ok(routes)
    }

    fn begin(&self, options: &ApplyOptions) -> Vec<String> {
        let mode = match options.commit_confirm {
            None => "configure private",
            Some(_) => "configure exclusive",
        };
        vec![mode.to_owned()]
    }

    fn render(&self, change: &Change, ownership: &Ownership) -> Vec<String> {
        let path = route_path(change.route().dst);
        match *change {
            Change::Add(route) => vec![
                format!("set {path} next-hop {}", route.via),
                format!("set {path} tag {}", ownership.route_tag),
            ],
            // Committed at once: the order unroutes nothing, and deleting
            // first keeps the next hop even if old and new were the same.
            Change::Replace { route, old_via } => vec![
                format!("delete {path} next-hop {old_via}"),
                format!("set {path} next-hop {}", route.via),
            ],
            // The next hop first, by name (a `warning: statement not found`
            // if it is gone already), then the stanza with our tag.
            Change::Remove(route) => vec![
                format!("delete {path} next-hop {}", route.via),
                format!("delete {path}"),
            ],
        }
    }

    // Both commits of a confirmed commit: a batch whose confirmation fails
    // is rolled back by the router, so it has failed.
    fn finish(&self, options: &ApplyOptions) -> Vec<String> {
        match options.commit_confirm {
            None => vec!["commit".to_owned()],
            Some(window) => vec![
                format!("commit confirmed {}", minutes(window)),
                "commit".to_owned(),
            ],
        }
    }

    fn after_commit(&self, _options: &ApplyOptions) -> Vec<String> {
        vec!["exit".to_owned()]
    }

    // Back to the last commit first, so that `exit` has nothing to ask
    // about (exclusive mode asks whether to discard uncommitted changes).
    fn abort(&self, _options: &ApplyOptions) -> Vec<String> {
        vec!["rollback 0".to_owned(), "exit".to_owned()]
    }

    fn transactional(&self) -> bool {
        true
    }

    fn commit_timeout(&self) -> Duration {
        Duration::from_secs(120)
    }

    /// The error with the users Junos lists as editing or holding it.
    fn held_by_others(&self, answer: &str) -> Option<String> {
        HELD.is_match(answer).then(|| {
            answer
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty() && *line != "[edit]")
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn configuration_probe(&self, _options: &ApplyOptions) -> Vec<String> {
        vec!["configure private".to_owned(), "exit".to_owned()]
    }

    // A commit explains itself over several lines (the statement, the
    // reason, then `error: …`); the caret line under a bad word, `[edit]`
    // and `{master:0}` are noise.
    fn error_in(&self, answer: &str) -> Option<String> {
        explained_error(answer, &ERROR, |line| {
            line.chars().all(|c| c == '^')
                || line == "[edit]"
                || (line.starts_with('{') && line.ends_with('}'))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Junos, minutes};
    use crate::ssh::vendor::Vendor;

    #[test]
    fn others_edits_or_locks_hold_the_configuration_and_say_who() {
        let modified = "Users currently editing the configuration:\n\
                        \x20 alice terminal p1 (pid 4242) on since 2026-12-05 09:00:00 UTC\n\
                        \x20     [edit]\n\
                        error: shared configuration database modified";
        let held = Junos.held_by_others(modified).expect("held");
        assert!(held.contains("alice terminal p1"), "{held}");
        assert!(held.ends_with("error: shared configuration database modified"));
        assert!(
            Junos
                .held_by_others("error: configuration database modified")
                .is_some()
        );
        let locked = "error: configuration database locked by:\n\
                      \x20 bob terminal p0 (pid 1234) on since 2026-12-05 08:00:00 UTC\n\
                      \x20     exclusive [edit]";
        assert!(Junos.held_by_others(locked).is_some());
        assert_eq!(
            Junos.held_by_others("error: configuration check-out failed"),
            None
        );
        assert_eq!(Junos.held_by_others("warning: statement not found"), None);
    }

    #[test]
    fn a_confirmed_commit_waits_whole_minutes() {
        assert_eq!(minutes(Duration::from_secs(300)), 5);
        assert_eq!(minutes(Duration::from_secs(301)), 6);
        assert_eq!(minutes(Duration::from_secs(10)), 1);
    }
}
