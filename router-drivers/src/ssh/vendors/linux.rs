//! A Linux router reached over SSH, through iproute2.
//!
//! A batch is one `ip -batch -` run: it stops at the first failing line and
//! names it (`Command failed -:N`), so the changes after it are reported as
//! not attempted. Routes are listed as JSON with numeric protocols.
//!
//! Ownership: the route protocol number, as with the netlink driver.

use std::net::IpAddr;
use std::sync::LazyLock;

use ipnet::IpNet;
use regex::Regex;
use serde::Deserialize;

use super::sort_route;
use crate::ssh::vendor::{ApplyOptions, BatchReport, Dialogue, LineError, Vendor, no_prompt};
use crate::{Change, Ownership, RouterRoutes};

pub struct Linux;

/// `ip -batch` names the line it stopped at: `Command failed -:N`.
static FAILED_LINE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^Command failed -:(\d+)\s*$").expect("the ip error pattern is a valid regex")
});

/// One route of `ip -j -N route show`.
#[derive(Deserialize)]
struct IpRoute {
    dst: String,
    gateway: Option<String>,
    protocol: Option<serde_json::Value>,
    #[serde(rename = "type")]
    kind: Option<String>,
    dev: Option<String>,
}

impl IpRoute {
    fn protocol(&self) -> Option<u8> {
        match self.protocol.as_ref()? {
            serde_json::Value::Number(n) => n.as_u64().and_then(|n| u8::try_from(n).ok()),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// iproute2 writes a host route's destination without its length.
    fn destination(&self) -> Option<IpNet> {
        self.dst
            .parse::<IpNet>()
            .ok()
            .or_else(|| self.dst.parse::<IpAddr>().ok().map(IpNet::from))
    }
}

fn route_command(verb: &str, dst: IpNet, via: IpAddr, protocol: u8) -> String {
    format!("route {verb} {dst} via {via} proto {protocol}")
}

impl Vendor for Linux {
    fn name(&self) -> &'static str {
        "linux"
    }

    fn dialogue(&self) -> Dialogue {
        Dialogue::Batch
    }

    fn default_cli(&self) -> &'static str {
        "ip"
    }

    fn prompt(&self) -> &Regex {
        no_prompt()
    }

    fn list(&self, cli: &str) -> Vec<String> {
        vec![
            format!("{cli} -j -N -4 route show table main"),
            format!("{cli} -j -N -6 route show table main"),
        ]
    }

    fn parse_routes(&self, output: &str, ownership: &Ownership) -> Result<RouterRoutes, String> {
        let mut routes = RouterRoutes::default();
        for table in serde_json::Deserializer::from_str(output).into_iter::<Vec<IpRoute>>() {
            let table = table.map_err(|err| format!("`ip -j route` printed bad JSON: {err}"))?;
            for route in table {
                let Some(dst) = route.destination() else {
                    continue;
                };
                if route.kind.as_deref().is_some_and(|kind| kind != "unicast") {
                    continue;
                }
                let via = route.gateway.as_deref().and_then(|g| g.parse().ok());
                let protocol = route.protocol();
                let marked = protocol == Some(ownership.netlink_protocol);
                let detail = format!(
                    "proto {} dev {}",
                    protocol.map_or("?".to_owned(), |p| p.to_string()),
                    route.dev.as_deref().unwrap_or("?")
                );
                sort_route(&mut routes, ownership, dst, via, marked, &detail);
            }
        }
        Ok(routes)
    }

    fn begin(&self, _options: &ApplyOptions) -> Vec<String> {
        Vec::new()
    }

    fn render(&self, change: &Change, ownership: &Ownership) -> Vec<String> {
        let protocol = ownership.netlink_protocol;
        match *change {
            Change::Add(route) => vec![route_command("add", route.dst, route.via, protocol)],
            // The new next hop goes in beside the old one, and the old one
            // is deleted only then: `ip -batch` stops at a refused append,
            // so a next hop the kernel refuses leaves the route as it was.
            // Not `ip route replace` (nor `change`): the kernel keys a route
            // by table, destination, TOS and metric, not by protocol, and
            // replaces the first route with that key, which is someone
            // else's when they added one beside ours (`ip route prepend`).
            // An append adds a route of its own after any with the same key
            // (IPv6: a next hop of the same multipath route), and the delete
            // names our protocol and the old gateway: neither can touch a
            // foreign route.
            Change::Replace { route, old_via } => vec![
                route_command("append", route.dst, route.via, protocol),
                route_command("del", route.dst, old_via, protocol),
            ],
            Change::Remove(route) => vec![route_command("del", route.dst, route.via, protocol)],
        }
    }

    fn finish(&self, _options: &ApplyOptions) -> Vec<String> {
        Vec::new()
    }

    // `ip route add` of a route the kernel has fails (EEXIST).
    fn writes_merge_into_existing_routes(&self) -> bool {
        false
    }

    // `ip route del … proto N` matches our protocol only.
    fn removals_match_our_mark(&self) -> bool {
        true
    }

    fn batch_command(&self, cli: &str) -> String {
        format!("{cli} -batch -")
    }

    fn batch_report(
        &self,
        _stdout: &str,
        stderr: &str,
        status: Option<u32>,
        lines: &[String],
    ) -> Result<BatchReport, String> {
        let lines = lines.len();
        let Some(found) = FAILED_LINE.captures(stderr) else {
            if status == Some(0) {
                return Ok(BatchReport::default());
            }
            return Err(format!(
                "ip exited with {status:?} without naming a line: {}",
                stderr.trim()
            ));
        };
        let number: usize = found[1]
            .parse()
            .map_err(|_| format!("ip named line {:?}", &found[1]))?;
        if number == 0 || number > lines {
            return Err(format!("ip reported line {number} of a {lines}-line batch"));
        }
        // The kernel's words come before the line number.
        let message = stderr[..found.get(0).map_or(0, |m| m.start())]
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        Ok(BatchReport {
            errors: vec![LineError {
                line: number - 1,
                message: if message.is_empty() {
                    "refused".to_owned()
                } else {
                    message
                },
            }],
            stopped: true,
        })
    }
}
