//! A router's record in the form it is kept, and when it may be used.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::jiff::Timestamp;
use nativeroute_router_drivers::Route;
use nativeroute_router_drivers::bgp::Announced;
use serde::{Deserialize, Serialize};

/// How often a running session's record is confirmed as current, so that
/// the next process can tell a record the router may still hold (younger
/// than its restart time) from one it dropped long ago.
pub const CONFIRM_EVERY: Duration = Duration::from_secs(30);

/// One router's record: the address it was reached at, the namespace it
/// was reached from, and a line per route (`11.11.2.0/24 192.168.3.3`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    pub routes: String,
}

impl Kept {
    pub fn of(record: &Announced) -> Kept {
        let mut routes = String::with_capacity(record.routes.len() * 28);
        for route in &record.routes {
            let _ = writeln!(routes, "{} {}", route.dst, route.via);
        }
        Kept {
            address: record.address.to_string(),
            netns: record.netns.clone(),
            routes,
        }
    }

    /// The record, every value parsed into its type: a record with one
    /// line that does not parse is refused whole.
    pub fn read(self, router: &str) -> Result<Announced, String> {
        let address: SocketAddr = self
            .address
            .parse()
            .map_err(|_| format!("address {:?} is not an address and port", self.address))?;
        let routes = self
            .routes
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let mut fields = line.split_whitespace();
                let dst = fields.next().and_then(|text| text.parse::<IpNet>().ok());
                let via = fields.next().and_then(|text| text.parse::<IpAddr>().ok());
                match (dst, via, fields.next()) {
                    (Some(dst), Some(via), None) => Ok(Route::new(dst, via)),
                    _ => Err(format!("{line:?} is not a route (subnet, then next hop)")),
                }
            })
            .collect::<Result<Vec<Route>, String>>()?;
        Ok(Announced {
            router: router.to_owned(),
            address,
            netns: self.netns,
            routes,
            session_up: false,
        })
    }
}

/// The file form: every router's record, and when each was last confirmed.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeptFile {
    #[serde(default)]
    pub confirmed_at: BTreeMap<String, String>,
    pub routers: BTreeMap<String, Kept>,
}

/// Whether a router may still hold what a record says its sessions
/// announced: under graceful restart it keeps them for its restart time
/// after the last session ended, which was at most [`CONFIRM_EVERY`] after
/// the record was last confirmed. Past that the router has dropped them,
/// and announcing them again would bring back routes long gone.
pub fn still_held(
    confirmed_at: Option<Timestamp>,
    now: Timestamp,
    restart_time: Duration,
) -> Result<(), String> {
    if restart_time.is_zero() {
        return Err("graceful restart is off (gracefulRestart: 0s), so the router dropped the routes when the last session ended".to_owned());
    }
    let Some(confirmed_at) = confirmed_at else {
        return Err(
            "the record does not say when its session was last seen established".to_owned(),
        );
    };
    let age = Duration::try_from(now.duration_since(confirmed_at)).unwrap_or(Duration::ZERO);
    if age > restart_time + CONFIRM_EVERY {
        return Err(format!(
            "its session was last seen established {}s ago, and the router keeps the routes of an ended session for {}s",
            age.as_secs(),
            restart_time.as_secs()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(routes: &[(&str, &str)]) -> Announced {
        Announced {
            router: "core".to_owned(),
            address: "192.168.2.2:179".parse().expect("address"),
            netns: Some("mgmt".to_owned()),
            routes: routes
                .iter()
                .map(|(dst, via)| {
                    Route::new(dst.parse().expect("subnet"), via.parse().expect("address"))
                })
                .collect(),
            session_up: false,
        }
    }

    #[test]
    fn a_record_reads_back_as_it_was_kept() {
        let announced = record(&[
            ("11.11.1.0/24", "192.168.2.1"),
            ("fd11:11:0:1::/64", "fd00::1"),
        ]);
        let kept = Kept::of(&announced);
        assert_eq!(
            kept.routes,
            "11.11.1.0/24 192.168.2.1\nfd11:11:0:1::/64 fd00::1\n"
        );
        assert_eq!(kept.read("core"), Ok(announced));
    }

    #[test]
    fn a_record_with_one_bad_line_is_refused_whole() {
        let kept = Kept {
            address: "192.168.2.2:179".to_owned(),
            netns: None,
            routes: "11.11.1.0/24 192.168.2.1\n11.11.2.0/24 192.168.2.1; reboot\n".to_owned(),
        };
        let err = kept.read("core").expect_err("refused");
        assert!(err.contains("11.11.2.0/24 192.168.2.1; reboot"), "{err}");
        let kept = Kept {
            address: "core.example.net:179".to_owned(),
            netns: None,
            routes: String::new(),
        };
        let err = kept.read("core").expect_err("refused");
        assert!(err.contains("core.example.net"), "{err}");
    }

    #[test]
    fn a_record_is_announced_again_only_while_the_router_may_hold_it() {
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().expect("time");
        let ago = |secs: i64| Some(now - k8s_openapi::jiff::SignedDuration::from_secs(secs));
        let restart = Duration::from_secs(120);
        assert_eq!(still_held(ago(5), now, restart), Ok(()));
        // Confirmed every 30 s: the session may have ended up to 30 s later.
        assert_eq!(still_held(ago(150), now, restart), Ok(()));
        let err = still_held(ago(151), now, restart).expect_err("dropped");
        assert!(
            err.contains("151s ago") && err.contains("for 120s"),
            "{err}"
        );
        // A clock behind the last leader's: as good as new.
        assert_eq!(still_held(ago(-20), now, restart), Ok(()));
        assert!(still_held(None, now, restart).is_err());
        let err = still_held(ago(1), now, Duration::ZERO).expect_err("no graceful restart");
        assert!(err.contains("gracefulRestart: 0s"), "{err}");
    }
}
