//! FRRouting (and Quagga) through vtysh.
//!
//! A batch is one `vtysh -f` run reading the lines on its standard input:
//! a chain of `-c` arguments is super-linear in FRR (thousands of routes
//! take minutes), one file is not. vtysh reads the file as configuration,
//! so no `configure terminal` is needed, and it goes on after a failing
//! line, naming it by number. vtysh returns before zebra has put the
//! routes in the kernel; the next list reads FRR's configuration, which is
//! what vtysh accepted.
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
            Change::Add(route) => vec![route_line(route.dst, route.via, tag)],
            // New next hop first: the destination is never unrouted.
            Change::Replace { route, old_via } => vec![
                route_line(route.dst, route.via, tag),
                format!("no {}", route_line(route.dst, old_via, tag)),
            ],
            Change::Remove(route) => vec![format!("no {}", route_line(route.dst, route.via, tag))],
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
        lines: usize,
    ) -> Result<BatchReport, String> {
        let mut report = BatchReport::default();
        for text in [stdout, stderr] {
            for found in FAILED_LINE.captures_iter(text) {
                let number: usize = found[1]
                    .parse()
                    .map_err(|_| format!("vtysh named line {:?}", &found[1]))?;
                if number == 0 || number > lines {
                    return Err(format!(
                        "vtysh reported line {number} of a {lines}-line batch: {}",
                        &found[2]
                    ));
                }
                report.errors.push(LineError {
                    line: number - 1,
                    message: found[2].trim().to_owned(),
                });
            }
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

#[cfg(test)]
mod tests {
    use super::check_static_daemon;

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
}
