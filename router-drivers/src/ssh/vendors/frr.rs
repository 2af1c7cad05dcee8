//! FRRouting (and Quagga) through vtysh.
//!
//! A batch is one `vtysh -f` run reading the lines on its standard input:
//! a chain of `-c` arguments is super-linear in FRR (thousands of routes
//! take minutes), one file is not. vtysh reads the file as configuration,
//! so no `configure terminal` is needed. vtysh returns before zebra has put
//! the routes in the kernel; the next list reads FRR's configuration, which
//! is what vtysh accepted.
//!
//! How FRR 8.4 refuses (tried against it): a line that does not parse
//! fails alone (`line N: % Unknown command…` on stderr, exit status 2) and
//! vtysh goes on with the next. A line staticd rejects (a gateway beside a
//! blackhole at the same distance) rejects the whole transaction vtysh
//! grouped it in, every line of the file so far, with `% Configuration
//! failed.`, the reason and the lines on stdout, and exit status 0.
//! Nothing else is refused: any well-formed prefix, next hop (unreachable,
//! the router's own, multicast, another family) and tag is taken, and a
//! next hop FRR cannot reach is kept inactive.
//!
//! A replace adds the new next hop in the batch and removes the old one in
//! a second run, only once the add was taken: a failed add then leaves the
//! old route, whichever way vtysh failed it.
//!
//! Ownership: the static route's `tag`.
//!
//! FRR keys a static route by prefix and next hop; the tag is an attribute,
//! so `ip route P H tag T` on a route someone else wrote as `ip route P H`
//! would retag theirs. The sync never writes onto a foreign route's prefix
//! and next hop for that reason.

use std::net::IpAddr;
use std::sync::LazyLock;

use ipnet::IpNet;
use regex::Regex;

use super::{sort_route, tagged};
use crate::ssh::vendor::{ApplyOptions, BatchReport, Dialogue, LineError, Vendor, no_prompt};
use crate::{Change, Ownership, RouterRoutes};

pub struct Frr;

/// vtysh -f reports a failing line as `line N: <message>`.
static FAILED_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^line (\d+): (.*)$").expect("the vtysh error pattern is a valid regex")
});

/// What `% Configuration failed.` starts: the transaction vtysh rejected.
const TRANSACTION_FAILED: &str = "% Configuration failed.";

fn route_line(dst: IpNet, via: IpAddr, tag: u32) -> String {
    let family = match dst {
        IpNet::V4(_) => "ip",
        IpNet::V6(_) => "ipv6",
    };
    format!("{family} route {dst} {via} tag {tag}")
}

/// `show daemons` lists the daemons vtysh reaches on one line (` zebra
/// staticd`), ahead of the running config. FRR keeps static routes in
/// staticd; Quagga, which has none, keeps them in zebra and does not print
/// `frr version` in its config.
fn check_static_daemon(output: &str) -> Result<(), String> {
    let (daemons, config) = output
        .split_once("Building configuration...")
        .unwrap_or(("", output));
    let daemons: Vec<&str> = daemons.split_whitespace().collect();
    let is_frr = config.lines().any(|line| line.starts_with("frr version"));
    if is_frr && !daemons.contains(&"staticd") {
        return Err(format!(
            "FRR's staticd is not running (vtysh reaches only {}): FRR would accept static \
             routes and drop them; start staticd",
            if daemons.is_empty() {
                "nothing".to_owned()
            } else {
                daemons.join(", ")
            }
        ));
    }
    Ok(())
}

impl Vendor for Frr {
    fn name(&self) -> &'static str {
        "frr"
    }

    fn dialogue(&self) -> Dialogue {
        Dialogue::Batch
    }

    fn default_cli(&self) -> &'static str {
        "vtysh"
    }

    fn prompt(&self) -> &Regex {
        no_prompt()
    }

    // The daemons first: an FRR whose staticd is down shows no static
    // route and accepts new ones without a word, dropping them. One vtysh
    // for both: each start costs tens of milliseconds, and a list precedes
    // every batch that writes.
    fn list(&self, cli: &str) -> Vec<String> {
        vec![format!("{cli} -c 'show daemons' -c 'show running-config'")]
    }

    fn parse_routes(&self, output: &str, ownership: &Ownership) -> Result<RouterRoutes, String> {
        check_static_daemon(output)?;
        let mut routes = RouterRoutes::default();
        // Only top-level lines: routes indented under `vrf NAME` belong to
        // another table.
        for line in output.lines() {
            let tokens: Vec<&str> = line.split_whitespace().collect();
            if line.starts_with(char::is_whitespace)
                || !matches!(tokens.as_slice(), ["ip" | "ipv6", "route", ..])
            {
                continue;
            }
            let Some(dst) = tokens.get(2).and_then(|t| t.parse::<IpNet>().ok()) else {
                continue;
            };
            let via = tokens.get(3).and_then(|t| t.parse::<IpAddr>().ok());
            let other_table = tokens
                .iter()
                .any(|t| matches!(*t, "vrf" | "table" | "nexthop-vrf"));
            let marked = tagged(&tokens, ownership) && !other_table;
            sort_route(&mut routes, ownership, dst, via, marked, line);
        }
        Ok(routes)
    }

    fn begin(&self, _options: &ApplyOptions) -> Vec<String> {
        Vec::new()
    }

    fn render(&self, change: &Change, ownership: &Ownership) -> Vec<String> {
        let tag = ownership.route_tag;
        match *change {
            // A replace's new next hop goes in beside the old one, which
            // goes in a second run (below): never unrouted, and a refused
            // add leaves the old route.
            Change::Add(route) | Change::Replace { route, .. } => {
                vec![route_line(route.dst, route.via, tag)]
            }
            Change::Remove(route) => vec![format!("no {}", route_line(route.dst, route.via, tag))],
        }
    }

    fn render_once_taken(&self, change: &Change, ownership: &Ownership) -> Vec<String> {
        match *change {
            Change::Replace { route, old_via } => vec![format!(
                "no {}",
                route_line(route.dst, old_via, ownership.route_tag)
            )],
            Change::Add(_) | Change::Remove(_) => Vec::new(),
        }
    }

    fn finish(&self, _options: &ApplyOptions) -> Vec<String> {
        Vec::new()
    }

    fn batch_command(&self, cli: &str) -> String {
        format!("{cli} -f /dev/stdin")
    }

    fn batch_report(
        &self,
        stdout: &str,
        stderr: &str,
        status: Option<u32>,
        lines: &[String],
    ) -> Result<BatchReport, String> {
        let mut report = BatchReport::default();
        for text in [stdout, stderr] {
            for found in FAILED_LINE.captures_iter(text) {
                let number: usize = found[1]
                    .parse()
                    .map_err(|_| format!("vtysh named line {:?}", &found[1]))?;
                if number == 0 || number > lines.len() {
                    return Err(format!(
                        "vtysh reported line {number} of a {}-line batch: {}",
                        lines.len(),
                        &found[2]
                    ));
                }
                report.errors.push(LineError {
                    line: number - 1,
                    message: found[2].trim().to_owned(),
                });
            }
            report.errors.extend(rejected_transactions(text, lines)?);
        }
        if report.errors.is_empty() && status != Some(0) {
            return Err(format!(
                "vtysh exited with {status:?} without naming a line: {}",
                stderr.trim()
            ));
        }
        Ok(report)
    }

    fn save_command(&self, cli: &str) -> Option<String> {
        Some(format!("{cli} -c 'write memory'"))
    }
}

/// Every line of every transaction vtysh rejected as a whole, each failed
/// with the reason FRR gave:
///
/// ```text
/// % Configuration failed.
///
/// Error type: validation
/// Error description: Route cannot have blackhole and non-blackhole nexthops simultaneously
/// The following commands were dynamically grouped into the same transaction and rejected:
/// - ip route 11.11.31.0/24 192.168.3.3 tag 1111
/// - ip route 11.11.30.0/24 192.168.3.3 tag 1111
/// ```
///
/// `Err` when a rejection does not name its lines, or names one that was
/// not sent: then nothing can be said of any change.
fn rejected_transactions(output: &str, lines: &[String]) -> Result<Vec<LineError>, String> {
    let mut errors = Vec::new();
    for (start, _) in output.match_indices(TRANSACTION_FAILED) {
        let block = &output[start + TRANSACTION_FAILED.len()..];
        let block = &block[..block.find(TRANSACTION_FAILED).unwrap_or(block.len())];
        let said = |label: &str| {
            block
                .lines()
                .find_map(|line| line.trim().strip_prefix(label))
                .map(|text| text.trim().to_owned())
        };
        let reason = said("Error description:")
            .or_else(|| said("Error type:"))
            .unwrap_or_else(|| "no reason given".to_owned());
        let message = format!(
            "FRR rejected the transaction this line was part of: {reason} (see the other \
             changes of this batch)"
        );
        let rejected: Vec<&str> = block
            .lines()
            .skip_while(|line| !line.contains("rejected:"))
            .skip(1)
            .map_while(|line| line.trim().strip_prefix("- "))
            .collect();
        if rejected.is_empty() {
            return Err(format!(
                "vtysh rejected a transaction without naming its lines: {reason}"
            ));
        }
        for command in rejected {
            let mut found = false;
            for (line, _) in lines
                .iter()
                .enumerate()
                .filter(|(_, sent)| sent.trim() == command.trim())
            {
                found = true;
                errors.push(LineError {
                    line,
                    message: message.clone(),
                });
            }
            if !found {
                return Err(format!(
                    "vtysh rejected {command:?}, which this batch did not send: {reason}"
                ));
            }
        }
    }
    Ok(errors)
}

#[cfg(test)]
mod tests {
    use super::{check_static_daemon, rejected_transactions};

    const CONFIG: &str = "Building configuration...\n\nCurrent configuration:\n!\n\
                          frr version 8.4.4\nfrr defaults traditional\nhostname rtr\n!\nend\n";

    #[test]
    fn an_frr_without_staticd_is_an_error_naming_the_daemons_it_has() {
        let err = check_static_daemon(&format!(" zebra\n\n{CONFIG}")).expect_err("no staticd");
        assert!(
            err.contains("staticd is not running") && err.contains("zebra"),
            "{err}"
        );
        assert!(check_static_daemon(&format!(" zebra staticd\n\n{CONFIG}")).is_ok());
    }

    #[test]
    fn quagga_keeps_static_routes_in_zebra_and_needs_no_staticd() {
        let quagga =
            "Building configuration...\n\nCurrent configuration:\n!\nhostname rtr\n!\nend\n";
        assert!(check_static_daemon(&format!(" zebra\n\n{quagga}")).is_ok());
    }

    /// As FRR 8.4 printed it, with a line for a route that did not exist
    /// (a warning, part of no transaction) before it.
    const REJECTED: &str = "% Refusing to remove a non-existent route\n\
                            % Configuration failed.\n\n\
                            Error type: validation\n\
                            Error description: Route cannot have blackhole and non-blackhole \
                            nexthops simultaneously\n\
                            The following commands were dynamically grouped into the same \
                            transaction and rejected:\n\
                            - ip route 11.11.31.0/24 192.168.3.3 tag 1111\n\
                            - ip route 11.11.30.0/24 192.168.3.3 tag 1111\n";

    fn lines(text: &[&str]) -> Vec<String> {
        text.iter().map(|line| (*line).to_owned()).collect()
    }

    #[test]
    fn a_rejected_transaction_fails_every_line_it_names_with_frrs_reason() {
        let sent = lines(&[
            "ip route 11.11.31.0/24 192.168.3.3 tag 1111",
            "no ip route 11.11.7.0/24 192.168.3.9 tag 1111",
            "ip route 11.11.30.0/24 192.168.3.3 tag 1111",
        ]);
        let errors = rejected_transactions(REJECTED, &sent).expect("readable");
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [0, 2]);
        assert!(
            errors[0]
                .message
                .contains("Route cannot have blackhole and non-blackhole nexthops"),
            "{}",
            errors[0].message
        );
    }

    #[test]
    fn a_rejection_naming_a_line_not_sent_is_unreadable() {
        let sent = lines(&["ip route 11.11.31.0/24 192.168.3.3 tag 1111"]);
        let err = rejected_transactions(REJECTED, &sent).expect_err("a line not sent");
        assert!(err.contains("11.11.30.0/24"), "{err}");
        let bare = "% Configuration failed.\n\nError type: validation\n";
        assert!(rejected_transactions(bare, &sent).is_err());
        assert_eq!(rejected_transactions("", &sent), Ok(Vec::new()));
    }
}
