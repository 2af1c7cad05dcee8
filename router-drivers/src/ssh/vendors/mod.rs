//! One file per vendor CLI. Each is a [`Vendor`]: data (prompts, command
//! words, error markers) plus small parsers.

mod arista_eos;
mod cisco_ios;
mod frr;
mod junos;
mod linux;
mod routeros;
mod vyos;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;

use super::Vendor;
use crate::{ForeignRoute, Ownership, Route, RouterRoutes};

/// The vendors nativeroute ships a profile for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VendorName {
    Frr,
    Linux,
    CiscoIos,
    AristaEos,
    Junos,
    Vyos,
    RouterOs,
}

impl VendorName {
    pub const ALL: [VendorName; 7] = [
        VendorName::Frr,
        VendorName::Linux,
        VendorName::CiscoIos,
        VendorName::AristaEos,
        VendorName::Junos,
        VendorName::Vyos,
        VendorName::RouterOs,
    ];

    pub fn as_str(self) -> &'static str {
        self.profile().name()
    }

    pub fn profile(self) -> &'static dyn Vendor {
        match self {
            VendorName::Frr => &frr::Frr,
            VendorName::Linux => &linux::Linux,
            VendorName::CiscoIos => &cisco_ios::CiscoIos,
            VendorName::AristaEos => &arista_eos::AristaEos,
            VendorName::Junos => &junos::Junos,
            VendorName::Vyos => &vyos::Vyos,
            VendorName::RouterOs => &routeros::RouterOs,
        }
    }

    /// Whether `commitConfirm` means anything for this vendor.
    pub fn has_commit_confirm(self) -> bool {
        matches!(self, VendorName::Junos | VendorName::AristaEos)
    }

    /// Whether a commit or a save is typed at this vendor's prompt, so that
    /// `commitTimeout` means something.
    pub fn has_commit(self) -> bool {
        matches!(
            self,
            VendorName::CiscoIos | VendorName::AristaEos | VendorName::Junos | VendorName::Vyos
        )
    }

    /// Whether `cliCommand` means anything for this vendor (it starts a
    /// program on a Unix host rather than logging in to a network OS).
    pub fn has_cli_command(self) -> bool {
        matches!(self, VendorName::Frr | VendorName::Linux)
    }

    /// How routes nativeroute owns are marked on this vendor, for
    /// `describe` and the docs.
    pub fn ownership_mark(self, ownership: &Ownership) -> String {
        match self {
            VendorName::Linux => format!("proto {}", ownership.netlink_protocol),
            VendorName::Vyos | VendorName::RouterOs => {
                format!("{} {:?}", self.mark_kind(), owner_comment(ownership))
            }
            _ => format!("tag {}", ownership.route_tag),
        }
    }

    fn mark_kind(self) -> &'static str {
        match self {
            VendorName::Vyos => "description",
            _ => "comment",
        }
    }
}

impl fmt::Display for VendorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VendorName {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        VendorName::ALL
            .into_iter()
            .find(|vendor| vendor.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = VendorName::ALL.iter().map(|v| v.as_str()).collect();
                format!("{text:?} is not a vendor: use one of {}", names.join(", "))
            })
    }
}

/// The comment or description that marks a route as nativeroute's on CLIs
/// without route tags. It carries the tag number, so two controllers with
/// different tags never take each other's routes.
pub fn owner_comment(ownership: &Ownership) -> String {
    format!("nativeroute-{}", ownership.route_tag)
}

/// Sorts one route the router showed into owned or foreign, or drops it
/// when it lies outside the pool. `via` is `None` for a route without a
/// gateway address (an interface, a blackhole).
fn sort_route(
    routes: &mut RouterRoutes,
    ownership: &Ownership,
    dst: IpNet,
    via: Option<IpAddr>,
    marked: bool,
    detail: &str,
) {
    if !ownership.in_pool(&dst) {
        return;
    }
    match via {
        Some(via) if marked && dst.trunc() == dst => routes.owned.push(Route::new(dst, via)),
        _ => routes.foreign.push(ForeignRoute {
            dst,
            via,
            detail: detail.trim().to_owned(),
        }),
    }
}

/// For CLIs that explain a refusal over several lines (the statement, the
/// reason, then the error): when any line of `answer` matches `error`,
/// all its lines but the context noise around every prompt, joined.
fn explained_error(
    answer: &str,
    error: &regex::Regex,
    noise: impl Fn(&str) -> bool,
) -> Option<String> {
    if !answer.lines().any(|line| error.is_match(line.trim())) {
        return None;
    }
    let said: Vec<&str> = answer
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !noise(line))
        .collect();
    Some(said.join("; "))
}

/// The value after `keyword` among whitespace-separated tokens.
fn value_after<'a>(tokens: &[&'a str], keyword: &str) -> Option<&'a str> {
    tokens
        .iter()
        .position(|token| *token == keyword)
        .and_then(|at| tokens.get(at + 1))
        .copied()
}

/// Whether the text after `keyword` is the ownership tag.
fn tagged(tokens: &[&str], ownership: &Ownership) -> bool {
    value_after(tokens, "tag").and_then(|tag| tag.parse::<u32>().ok()) == Some(ownership.route_tag)
}

#[cfg(test)]
mod tests;
