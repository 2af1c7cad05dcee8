//! VyOS (1.4 and later: 1.3 has no `description` on a static route), from
//! operational mode (`vyos@vyos:~$`).
//!
//! A batch edits the working configuration after `configure` and takes
//! effect at `commit`, all of it or none; `discard` abandons it. `save`
//! writes the committed configuration to the boot config. VyOS prints
//! `[edit]` on the line above each configuration prompt, and explains a
//! refused line on indented lines ending in `Set failed`, `Delete failed`
//! or `Commit failed`.
//!
//! Ownership: the route's `description` (`nativeroute-1111`). VyOS has a
//! `tag` only for blackhole and reject routes, not for routes with a next
//! hop. nativeroute owns a route only when it holds exactly that description
//! and one plain next-hop address, so deleting the whole route on removal
//! takes nothing of anyone else's, as long as the fresh list before the
//! batch still shows it so (`fresh_list`).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;

use super::{explained_error, owner_comment, sort_route};
use crate::ssh::vendor::{ApplyOptions, Dialogue, Vendor};
use crate::{Change, Ownership, RouterRoutes};

pub struct Vyos;

/// `vyos@vyos:~$` in operational mode, `vyos@vyos#` in configuration mode.
static PROMPT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9_.\-]+@[A-Za-z0-9_.\-]+(:\S*\$|#)\s*$")
        .expect("the VyOS prompt pattern is a valid regex")
});

/// The last line of each refusal, or the first of one with no such line.
static ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        // `Failed to generate committed config` is a failed commit too, as
        // Netmiko's VyOS driver reads it.
        r"^(Set failed|Delete failed|Commit failed|Failed to generate committed config|Invalid command|Configuration path: .* is not valid)",
    )
    .expect("the VyOS error pattern is a valid regex")
});

fn route_path(dst: IpNet) -> String {
    let family = match dst {
        IpNet::V4(_) => "route",
        IpNet::V6(_) => "route6",
    };
    format!("protocols static {family} {dst}")
}

/// `show configuration commands` quotes values: `description 'x'`.
fn unquoted(value: &str) -> &str {
    value.trim_matches('\'')
}

/// What `show configuration commands` shows of one static route.
#[derive(Default)]
struct Stanza<'a> {
    next_hops: Vec<IpAddr>,
    description: Option<String>,
    /// Anything but plain next-hop addresses and the description: an
    /// interface, a blackhole, a disabled or distance-tuned next hop.
    other: bool,
    lines: Vec<&'a str>,
}

impl<'a> Stanza<'a> {
    fn read(&mut self, attribute: &[&str], line: &'a str) {
        self.lines.push(line.trim());
        match attribute {
            ["next-hop", hop, rest @ ..] => {
                match unquoted(hop).parse::<IpAddr>() {
                    Ok(hop) if !self.next_hops.contains(&hop) => self.next_hops.push(hop),
                    Ok(_) => {}
                    Err(_) => self.other = true,
                }
                self.other |= !rest.is_empty();
            }
            ["description", words @ ..] => {
                self.description = Some(unquoted(&words.join(" ")).to_owned());
            }
            _ => self.other = true,
        }
    }
}

impl Vendor for Vyos {
    fn name(&self) -> &'static str {
        "vyos"
    }

    fn dialogue(&self) -> Dialogue {
        Dialogue::Prompted
    }

    fn prompt(&self) -> &Regex {
        &PROMPT
    }

    fn terminal_setup(&self) -> Vec<String> {
        vec![
            "set terminal length 0".to_owned(),
            "set terminal width 511".to_owned(),
        ]
    }

    fn list(&self, _cli: &str) -> Vec<String> {
        vec![r#"show configuration commands | match "protocols static""#.to_owned()]
    }

    fn parse_routes(&self, output: &str, ownership: &Ownership) -> Result<RouterRoutes, String> {
        let mut stanzas: BTreeMap<IpNet, Stanza> = BTreeMap::new();
        for line in output.lines() {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            // Routes under `vrf name X protocols static` are another table.
            let [
                "set",
                "protocols",
                "static",
                "route" | "route6",
                prefix,
                attribute @ ..,
            ] = tokens.as_slice()
            else {
                continue;
            };
            let Ok(dst) = unquoted(prefix).parse::<IpNet>() else {
                continue;
            };
            stanzas.entry(dst).or_default().read(attribute, line);
        }
        let mark = owner_comment(ownership);
        let mut routes = RouterRoutes::default();
        for (dst, stanza) in stanzas {
            let via = match stanza.next_hops.as_slice() {
                [via] => Some(*via),
                _ => None,
            };
            let marked = stanza.description.as_deref() == Some(mark.as_str()) && !stanza.other;
            let detail = stanza.lines.join("; ");
            sort_route(&mut routes, ownership, dst, via, marked, &detail);
        }
        Ok(routes)
    }

    fn begin(&self, _options: &ApplyOptions) -> Vec<String> {
        vec!["configure".to_owned()]
    }

    // The description has no spaces, so it needs no quotes.
    fn render(&self, change: &Change, ownership: &Ownership) -> Vec<String> {
        let path = route_path(change.route().dst);
        match *change {
            Change::Add(route) => vec![
                format!("set {path} next-hop {}", route.via),
                format!("set {path} description {}", owner_comment(ownership)),
            ],
            // Committed at once: the order unroutes nothing, and deleting
            // first keeps the next hop even if old and new were the same.
            Change::Replace { route, old_via } => vec![
                format!("delete {path} next-hop {old_via}"),
                format!("set {path} next-hop {}", route.via),
            ],
            Change::Remove(route) => vec![
                format!("delete {path} next-hop {}", route.via),
                format!("delete {path}"),
            ],
        }
    }

    fn finish(&self, _options: &ApplyOptions) -> Vec<String> {
        vec!["commit".to_owned()]
    }

    fn after_commit(&self, options: &ApplyOptions) -> Vec<String> {
        let mut lines = Vec::new();
        if options.save {
            lines.push("save".to_owned());
        }
        lines.push("exit".to_owned());
        lines
    }

    // Nothing left to commit, so `exit` does not refuse to leave.
    fn abort(&self, _options: &ApplyOptions) -> Vec<String> {
        vec!["discard".to_owned(), "exit".to_owned()]
    }

    fn transactional(&self) -> bool {
        true
    }

    // As Netmiko gives them: a commit can take minutes on a large config.
    fn commit_timeout(&self) -> Duration {
        Duration::from_secs(120)
    }

    fn save_timeout(&self) -> Duration {
        Duration::from_secs(100)
    }

    fn configuration_probe(&self, _options: &ApplyOptions) -> Vec<String> {
        vec!["configure".to_owned(), "exit".to_owned()]
    }

    fn error_in(&self, answer: &str) -> Option<String> {
        explained_error(answer, &ERROR, |line| line == "[edit]")
    }
}
