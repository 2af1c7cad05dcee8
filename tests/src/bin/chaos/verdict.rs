//! After the run: which withdrawals hit a node that still existed and
//! still matched, and how long live nodes went without their route.
//!
//! A withdrawal of subnet S at time t is unjustified when one incarnation
//! holding S was routable for the whole time since S was last seen absent
//! on that router (less `SETTLING`, for a batch computed a moment before
//! it was applied): the route came back for that node, and the node never
//! stopped being routable before it went again. The incarnations' live
//! intervals are conservative (see `cluster::Incarnation`).

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use super::cluster::Incarnation;
use super::observe::{Change, RouteHistory, Router};

/// A sampled disappearance this soon after the route monitor saw the
/// withdrawal is that withdrawal.
const SAMPLE_SLACK: Duration = Duration::from_secs(2);
/// How long a route must have stood in a routable period to count as the
/// node's (see `outages_in`), and how much older than a route's return the
/// state a router worker acted on may be.
const SETTLING: Duration = Duration::from_secs(2);

/// A route taken from a node that was routable throughout.
#[derive(Clone, Debug)]
pub struct Withdrawal {
    pub router: Router,
    pub subnet: Ipv4Net,
    pub node: String,
    pub at: Instant,
    /// Routable since (at least) this moment.
    pub live_since: Instant,
    /// Seen by the route monitor (exact) or by sampling.
    pub exact: bool,
}

/// What was going on when an outage happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// A fault of this router (FRR restarted, sshd away, namespace
    /// re-created) took the route or kept it from the router.
    RouterFault,
    /// No controller could act: the API server away, the leader killed or
    /// handing over.
    ControlPlane,
    /// Nothing the run did explains it.
    None,
}

/// One outage of a live node's route.
#[derive(Clone, Debug)]
pub struct Outage {
    pub router: Router,
    pub node: String,
    pub subnet: Ipv4Net,
    pub from: Instant,
    pub length: Duration,
    /// The route had been there for this node (a gap) rather than not yet
    /// (from creation or re-selection to the first route).
    pub after_routed: bool,
    pub cause: Cause,
    /// The node stopped being routable before its route came.
    pub unfinished: bool,
}

/// A subnet's routable periods: (from, to, incarnation).
type LivePeriods<'a> = Vec<(Instant, Instant, &'a Incarnation)>;

pub struct Evidence<'a> {
    pub incarnations: &'a [Incarnation],
    pub subnets: &'a HashMap<String, Ipv4Net>,
    pub routes: &'a BTreeMap<Router, RouteHistory>,
    /// The netlink router's withdrawals as the kernel announced them.
    pub kernel_withdrawals: &'a [(Instant, Ipv4Net)],
    /// Per router, when a fault of the router itself took its routes.
    pub router_faults: &'a BTreeMap<Router, Vec<(Instant, Instant)>>,
    /// When no controller could act.
    pub control_faults: &'a [(Instant, Instant)],
    pub started: Instant,
    pub ended: Instant,
}

impl Evidence<'_> {
    fn live_periods(&self) -> BTreeMap<Ipv4Net, LivePeriods<'_>> {
        let mut periods: BTreeMap<Ipv4Net, LivePeriods<'_>> = BTreeMap::new();
        for incarnation in self.incarnations {
            let Some(subnet) = self.subnets.get(&incarnation.uid) else {
                continue;
            };
            for (from, to) in incarnation.live_intervals() {
                periods.entry(*subnet).or_default().push((
                    from,
                    to.unwrap_or(self.ended),
                    incarnation,
                ));
            }
        }
        periods
    }

    /// Withdrawals from live nodes: exact on the netlink router, sampled
    /// on both (outside the router's own faults).
    pub fn live_withdrawals(&self) -> Vec<Withdrawal> {
        let periods = self.live_periods();
        let mut found = Vec::new();
        for router in Router::ALL {
            let history = self.routes.get(&router);
            let mut moments: BTreeMap<Ipv4Net, Vec<Instant>> = BTreeMap::new();
            let mut sampled: Vec<(Instant, Ipv4Net)> = Vec::new();
            let exact: &[(Instant, Ipv4Net)] = match router {
                Router::Kernel => self.kernel_withdrawals,
                Router::Frr => &[],
            };
            for (dst, changes) in history.map(|h| &h.changes).into_iter().flatten() {
                let mut was_present = false;
                for &(at, via) in changes {
                    if was_present != via.is_some() {
                        moments.entry(*dst).or_default().push(at);
                    }
                    // The netlink router's withdrawals are known exactly;
                    // a sampled one the monitor saw is not counted twice.
                    let seen_exactly = exact.iter().any(|(when, d)| {
                        d == dst && *when <= at && at.duration_since(*when) < SAMPLE_SLACK
                    });
                    if was_present && via.is_none() && !seen_exactly && !self.in_fault(router, at) {
                        sampled.push((at, *dst));
                    }
                    was_present = via.is_some();
                }
            }
            for (at, dst) in exact {
                moments.entry(*dst).or_default().push(*at);
            }
            for list in moments.values_mut() {
                list.sort();
            }
            let judged = exact
                .iter()
                .map(|w| (*w, true))
                .chain(sampled.into_iter().map(|w| (w, false)));
            for ((at, dst), is_exact) in judged {
                // A worker applies what it computed when its batch began,
                // up to a batch earlier (FRR takes a few hundred ms): the
                // state that put the route back may be that much older.
                let absent = moments
                    .get(&dst)
                    .and_then(|list| list.iter().rev().find(|m| **m < at).copied())
                    .and_then(|m| m.checked_sub(SETTLING))
                    .unwrap_or(self.started);
                let covering = periods
                    .get(&dst)
                    .into_iter()
                    .flatten()
                    .find(|(from, to, _)| *from <= absent && at <= *to);
                if let Some((from, _, incarnation)) = covering {
                    found.push(Withdrawal {
                        router,
                        subnet: dst,
                        node: incarnation.name.clone(),
                        at,
                        live_since: *from,
                        exact: is_exact,
                    });
                }
            }
        }
        found
    }

    fn in_fault(&self, router: Router, at: Instant) -> bool {
        self.router_faults
            .get(&router)
            .into_iter()
            .flatten()
            .any(|(from, to)| *from <= at && at <= *to)
    }

    fn cause(&self, router: Router, from: Instant, to: Instant) -> Cause {
        let overlaps = |(a, b): &(Instant, Instant)| *a <= to && from <= *b;
        if self
            .router_faults
            .get(&router)
            .into_iter()
            .flatten()
            .any(overlaps)
        {
            Cause::RouterFault
        } else if self.control_faults.iter().any(overlaps) {
            Cause::ControlPlane
        } else {
            Cause::None
        }
    }

    /// Every stretch a routable node went without a route to one of its
    /// next hops on a router.
    pub fn outages(&self) -> Vec<Outage> {
        let mut out = Vec::new();
        let periods = self.live_periods();
        for router in Router::ALL {
            let Some(history) = self.routes.get(&router) else {
                continue;
            };
            for (subnet, list) in &periods {
                let changes = history
                    .changes
                    .get(subnet)
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                for (from, to, incarnation) in list {
                    let period = Period {
                        router,
                        subnet: *subnet,
                        incarnation,
                        from: *from,
                        to: *to,
                    };
                    out.extend(self.outages_in(&period, changes));
                }
            }
        }
        out
    }

    fn outages_in(&self, period: &Period<'_>, changes: &[Change]) -> Vec<Outage> {
        let routed = |via: Option<Ipv4Addr>| {
            via.is_some_and(|via| period.incarnation.next_hops.contains(&via))
        };
        let mut now_routed = routed(
            changes
                .iter()
                .take_while(|(at, _)| *at <= period.from)
                .last()
                .and_then(|(_, via)| *via),
        );
        let mut down_since = (!now_routed).then_some(period.from);
        // Whether the route stood for this node: a route still there when
        // the period began and gone within `SETTLING` was the previous
        // state's (the node was out a moment ago), so what follows is a
        // wait for the first route, not a gap.
        let mut routed_before = false;
        let mut out = Vec::new();
        let outage = |start: Instant, end: Instant, after: bool, unfinished: bool| Outage {
            router: period.router,
            node: period.incarnation.name.clone(),
            subnet: period.subnet,
            from: start,
            length: end.saturating_duration_since(start),
            after_routed: after,
            cause: self.cause(period.router, start, end),
            unfinished,
        };
        let inside = changes
            .iter()
            .filter(|(at, _)| *at > period.from && *at < period.to);
        for &(at, via) in inside {
            match (now_routed, routed(via)) {
                (false, true) => {
                    if let Some(start) = down_since.take() {
                        out.push(outage(start, at, routed_before, false));
                    }
                    routed_before = true;
                }
                (true, false) => {
                    routed_before |= at.duration_since(period.from) >= SETTLING;
                    down_since = Some(if routed_before { at } else { period.from });
                }
                _ => {}
            }
            now_routed = routed(via);
        }
        if let Some(start) = down_since {
            out.push(outage(
                start,
                period.to,
                routed_before,
                period.to < self.ended,
            ));
        }
        out
    }
}

/// One routable period of one incarnation on one router.
struct Period<'a> {
    router: Router,
    subnet: Ipv4Net,
    incarnation: &'a Incarnation,
    from: Instant,
    to: Instant,
}
