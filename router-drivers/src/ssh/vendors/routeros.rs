//! MikroTik RouterOS v7 (`routing-table`; v6 had `routing-mark`), at the root menu
//! (`[admin@MikroTik] > `).
//!
//! Every command takes effect at once and is saved by RouterOS itself:
//! there is no configuration mode, commit or save, and an error keeps what
//! came before it. Commands use absolute paths (`/ip route add …`), so the
//! prompt never moves into a submenu. Terminal options travel in the login
//! name: `+ct511w4098h`, as Netmiko and scrapli send it, turns off colours
//! (`c`) and terminal detection (`t`) and sets 511 columns and 4098 rows (a
//! `/ipv6 route remove [find …]` line with full addresses and a long prompt
//! is over 200 characters, and its echo must not wrap); paging is off per
//! command (`without-paging`). Enter is "\r\n", as both drivers send it.
//!
//! RouterOS draws its prompt again and echoes a line twice (scrapli and
//! Netmiko both work around it), so no prompt can be trusted to end an
//! answer: every line is followed by `:put` of a marker, and the answer
//! ends at the marker's output. A freshly reset router asks whether to
//! show the licence and may ask for Enter before its first prompt; both are
//! answered as Netmiko answers them. One that asks for a new password is
//! left for a person.
//!
//! Ownership: the route's `comment` (`nativeroute-1111`). A removal finds
//! the route by destination, gateway, comment, the main table and enabled
//! together: exactly what the list calls ours.

use std::net::IpAddr;
use std::sync::LazyLock;
use std::time::Duration;

use ipnet::IpNet;
use regex::Regex;

use super::{owner_comment, sort_route};
use crate::ssh::terminal::{EndMarker, LoginQuestion, LoginReply};
use crate::ssh::vendor::{ApplyOptions, Dialogue, Vendor};
use crate::{Change, Ownership, RouterRoutes};

pub struct RouterOs;

/// `[admin@MikroTik] > `, `[admin@MikroTik] /ip/route> `,
/// `[admin@MikroTik] <SAFE> `.
static PROMPT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\[[^\[\]\s@]+@[^\[\]]+\] [^\[\]]*>\s*$")
        .expect("the RouterOS prompt pattern is a valid regex")
});

/// `failure: already have such route`, `syntax error (line 1 column 5)`,
/// `expected end of command (line 1 column 9)`, `bad command name x`,
/// `no such item`, `input does not match any value of gateway`,
/// `invalid value for argument dst-address`.
static ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?m)^\s*((?:failure:|syntax error|expected |bad command name|no such item|input does not match|invalid value|ambiguous value|missing value).*?)\s*$",
    )
    .expect("the RouterOS error pattern is a valid regex")
});

/// `Do you want to see the software license? [Y/n]: `
static LICENCE_QUESTION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"software license\? \[Y/n\]:?\s*$")
        .expect("the RouterOS licence question pattern is a valid regex")
});

/// `Please press "Enter" to continue!`
static PRESS_ENTER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)press "?enter"? to continue!?\s*$"#)
        .expect("the RouterOS Enter pattern is a valid regex")
});

/// `new password>` (RouterOS 7 at the first login after a reset).
static NEW_PASSWORD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)new password>\s*$").expect("the RouterOS password pattern is a valid regex")
});

/// The n-th end marker: a concatenation, so that the echo of the command
/// never holds the marker's output as one word.
fn end_marker(n: u64) -> EndMarker {
    EndMarker {
        command: format!(":put (\"nativeroute-end-\" . \"{n}\")"),
        output: format!("nativeroute-end-{n}"),
    }
}

fn menu(dst: IpNet) -> &'static str {
    match dst {
        IpNet::V4(_) => "/ip route",
        IpNet::V6(_) => "/ipv6 route",
    }
}

/// The properties of a route of ours, as `add` writes them.
fn ours(dst: IpNet, via: IpAddr, ownership: &Ownership) -> String {
    format!(
        "dst-address={dst} gateway={via} comment={}",
        owner_comment(ownership)
    )
}

/// The `find` arguments that pick out only what the list calls ours: the
/// same route in another table, or disabled, is someone else's even with
/// our comment. Property filters rather than a `where` expression: their
/// values are taken as written, so the comment needs no quotes.
fn find_ours(dst: IpNet, via: IpAddr, ownership: &Ownership) -> String {
    format!(
        "find {} routing-table=main disabled=no",
        ours(dst, via, ownership)
    )
}

/// One route as `print terse` shows it: the flags, and `key=value` pairs.
/// The comment comes first and unquoted (`comment=lab test dst-address=…`),
/// so bare words after it are part of it; other values with spaces are in
/// double quotes. A comment may also come as `;;; text`, as `print` shows
/// it.
#[derive(Default)]
struct Entry {
    flags: String,
    properties: Vec<(String, String)>,
    comment: Option<String>,
}

impl Entry {
    fn read(line: &str) -> Entry {
        let mut entry = Entry::default();
        let mut comment: Option<Vec<String>> = None;
        for word in words(line) {
            if let Some((key, value)) = word.split_once('=').filter(|(key, _)| is_key(key)) {
                let value = value.trim_matches('"').to_owned();
                entry.properties.push((key.to_owned(), value));
            } else if word == ";;;" {
                comment = Some(Vec::new());
            } else if let Some((key, value)) = entry.properties.last_mut() {
                if key == "comment" {
                    value.push(' ');
                    value.push_str(&word);
                }
            } else if let Some(text) = comment.as_mut() {
                text.push(word);
            } else if !word.chars().all(|c| c.is_ascii_digit()) {
                // The item number is all digits; the flags are letters.
                entry.flags.push_str(&word);
            }
        }
        entry.comment = comment.map(|text| text.join(" "));
        entry
    }

    /// A key shown twice: a comment holding `key=value` text, which could
    /// pass for the route's own properties. Such an entry is never ours.
    fn ambiguous(&self) -> bool {
        let mut keys: Vec<&str> = self.properties.iter().map(|(k, _)| k.as_str()).collect();
        keys.sort_unstable();
        keys.windows(2).any(|pair| pair[0] == pair[1])
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.properties
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn is_key(word: &str) -> bool {
    !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

/// Splits on whitespace outside double quotes.
fn words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                word.push(c);
            }
            c if c.is_whitespace() && !quoted => {
                if !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
            }
            c => word.push(c),
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

impl Vendor for RouterOs {
    fn name(&self) -> &'static str {
        "routeros"
    }

    fn dialogue(&self) -> Dialogue {
        Dialogue::Prompted
    }

    fn prompt(&self) -> &Regex {
        &PROMPT
    }

    /// A name that already carries options (`netops+ct80w`) is the
    /// operator's choice and is sent as it is.
    fn login_name(&self, username: &str) -> String {
        if username.contains('+') {
            username.to_owned()
        } else {
            format!("{username}+ct511w4098h")
        }
    }

    // RouterOS draws its prompt again shortly after login.
    fn login_settle(&self) -> Duration {
        Duration::from_millis(250)
    }

    fn enter(&self) -> &'static str {
        "\r\n"
    }

    fn login_questions(&self) -> Vec<LoginQuestion> {
        vec![
            LoginQuestion {
                question: &LICENCE_QUESTION,
                reply: LoginReply::Key("n"),
            },
            LoginQuestion {
                question: &PRESS_ENTER,
                reply: LoginReply::Enter,
            },
            LoginQuestion {
                question: &NEW_PASSWORD,
                reply: LoginReply::Refuse(
                    "RouterOS wants a new password (the first login after a reset); log in once by hand and set one",
                ),
            },
        ]
    }

    fn end_marker(&self) -> Option<fn(u64) -> EndMarker> {
        Some(end_marker)
    }

    // The first of the commands Ansible's community.routeros facts module
    // runs.
    fn harmless_command(&self) -> Option<&'static str> {
        Some("/system identity print without-paging")
    }

    // Static routes only (`!dynamic`): connected and protocol routes are
    // not configuration, and a full BGP table would not fit a terminal.
    fn list(&self, _cli: &str) -> Vec<String> {
        vec![
            "/ip route print terse without-paging where !dynamic".to_owned(),
            "/ipv6 route print terse without-paging where !dynamic".to_owned(),
        ]
    }

    fn parse_routes(&self, output: &str, ownership: &Ownership) -> Result<RouterRoutes, String> {
        let mark = owner_comment(ownership);
        let mut routes = RouterRoutes::default();
        // Plain `print` puts the flags and `;;; comment` on a line of their
        // own above the properties; they belong to the item below.
        let mut head: Option<Entry> = None;
        for line in output.lines() {
            let mut entry = Entry::read(line);
            if entry.properties.is_empty() {
                head = Some(entry).filter(|head| head.comment.is_some());
                continue;
            }
            if let Some(head) = head.take() {
                entry.flags.push_str(&head.flags);
                entry.comment = entry.comment.or(head.comment);
            }
            let Some(dst) = entry
                .get("dst-address")
                .and_then(|d| d.parse::<IpNet>().ok())
            else {
                continue;
            };
            // Routes of another routing table (a VRF; `routing-mark` on v6)
            // are not ours to list.
            if entry
                .get("routing-table")
                .is_some_and(|table| table != "main")
                || entry.get("routing-mark").is_some()
            {
                continue;
            }
            let gateway = entry.get("gateway").unwrap_or_default();
            let address = gateway.parse::<IpAddr>().ok();
            // `192.168.3.3%ether2` names an interface: shown, never ours.
            let via = address.or_else(|| {
                gateway
                    .split_once('%')
                    .and_then(|(address, _)| address.parse().ok())
            });
            let comment = entry.get("comment").or(entry.comment.as_deref());
            let marked = address.is_some()
                && comment == Some(mark.as_str())
                && !entry.flags.contains('X')
                && !entry.ambiguous();
            sort_route(&mut routes, ownership, dst, via, marked, line);
        }
        Ok(routes)
    }

    fn begin(&self, _options: &ApplyOptions) -> Vec<String> {
        Vec::new()
    }

    fn render(&self, change: &Change, ownership: &Ownership) -> Vec<String> {
        let menu = menu(change.route().dst);
        let add = |dst, via| format!("{menu} add {}", ours(dst, via, ownership));
        let remove = |dst, via| format!("{menu} remove [{}]", find_ours(dst, via, ownership));
        match *change {
            Change::Add(route) => vec![add(route.dst, route.via)],
            // Applied line by line: the new next hop first, so the
            // destination is never unrouted.
            Change::Replace { route, old_via } => {
                vec![add(route.dst, route.via), remove(route.dst, old_via)]
            }
            Change::Remove(route) => vec![remove(route.dst, route.via)],
        }
    }

    fn finish(&self, _options: &ApplyOptions) -> Vec<String> {
        Vec::new()
    }

    // `add` makes a route of its own, with our comment, or fails with
    // "already have such route"; it never edits another.
    fn writes_merge_into_existing_routes(&self) -> bool {
        false
    }

    // `remove [find … comment=nativeroute-N …]` finds only ours.
    fn removals_match_our_mark(&self) -> bool {
        true
    }

    fn error_in(&self, answer: &str) -> Option<String> {
        ERROR.captures(answer).map(|found| found[1].to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::{LICENCE_QUESTION, NEW_PASSWORD, PRESS_ENTER, RouterOs, end_marker, words};
    use crate::ssh::vendor::Vendor;
    use crate::{Ownership, Route};

    fn ownership() -> Ownership {
        Ownership {
            pool: vec!["11.11.0.0/16".parse().expect("pool")],
            netlink_protocol: Ownership::DEFAULT_NETLINK_PROTOCOL,
            route_tag: 1111,
            bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
        }
    }

    #[test]
    fn the_login_name_carries_the_options_netmiko_and_scrapli_send() {
        assert_eq!(RouterOs.login_name("netops"), "netops+ct511w4098h");
        assert_eq!(RouterOs.login_name("netops+ct80w"), "netops+ct80w");
        assert_eq!(RouterOs.enter(), "\r\n");
    }

    #[test]
    fn first_login_questions_are_recognised() {
        assert!(LICENCE_QUESTION.is_match("Do you want to see the software license? [Y/n]: "));
        assert!(PRESS_ENTER.is_match(r#"Please press "Enter" to continue!"#));
        assert!(NEW_PASSWORD.is_match("new password> "));
        assert!(!LICENCE_QUESTION.is_match("[netops@edge-2] > "));
    }

    #[test]
    fn the_marker_output_is_never_a_word_of_its_own_echo() {
        let marker = end_marker(7);
        assert_eq!(marker.output, "nativeroute-end-7");
        assert!(!marker.command.contains(&marker.output));
    }

    #[test]
    fn quoted_values_keep_their_spaces() {
        assert_eq!(
            words(r#" 3  As  comment="lab test" gateway=192.168.3.4"#),
            ["3", "As", r#"comment="lab test""#, "gateway=192.168.3.4"]
        );
    }

    #[test]
    fn an_unquoted_comment_runs_until_the_next_property() {
        let output = " 0   s comment=nativeroute-1111 keep dst-address=11.11.1.0/24 \
                      routing-table=main gateway=192.168.3.3\n\
                      \x201   s comment=nativeroute-1111 dst-address=11.11.2.0/24 \
                      routing-table=main gateway=192.168.3.4\n";
        let routes = RouterOs.parse_routes(output, &ownership()).expect("parses");
        assert_eq!(
            routes.owned,
            [Route::new(
                "11.11.2.0/24".parse().expect("net"),
                "192.168.3.4".parse().expect("address")
            )]
        );
        assert_eq!(routes.foreign.len(), 1, "{:?}", routes.foreign);
    }

    #[test]
    fn a_comment_that_spells_properties_makes_the_route_foreign() {
        let output = " 0   s comment=nativeroute-1111 gateway=192.168.3.9 \
                      dst-address=11.11.1.0/24 routing-table=main gateway=192.168.3.3\n\
                      \x201   s dst-address=11.11.3.0/24 routing-mark=blue \
                      gateway=192.168.3.3 comment=nativeroute-1111\n";
        let routes = RouterOs.parse_routes(output, &ownership()).expect("parses");
        assert!(routes.owned.is_empty(), "{:?}", routes.owned);
        assert_eq!(
            routes.foreign.len(),
            1,
            "the marked VRF route is not listed"
        );
    }

    #[test]
    fn a_comment_line_above_the_properties_marks_the_route_below() {
        let output = " 0  As ;;; nativeroute-1111\n\
                      \x20      dst-address=11.11.1.0/24 routing-table=main gateway=192.168.3.3\n\
                      \x201 X s ;;; nativeroute-1111\n\
                      \x20      dst-address=11.11.2.0/24 routing-table=main gateway=192.168.3.4\n";
        let routes = RouterOs.parse_routes(output, &ownership()).expect("parses");
        assert_eq!(
            routes.owned,
            [Route::new(
                "11.11.1.0/24".parse().expect("net"),
                "192.168.3.3".parse().expect("address")
            )]
        );
        assert_eq!(routes.foreign.len(), 1, "the disabled route is foreign");
    }
}
