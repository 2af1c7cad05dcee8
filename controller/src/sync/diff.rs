//! The diff between what a router should hold and what it holds: pure, so
//! that `nativeroute plan` shows exactly what a sync would do.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;

use imbl::ordmap::DiffItem;
use ipnet::IpNet;
use nativeroute_router_drivers::{Change, ForeignRoute, Route};

use crate::config::RemovalGuard;
use crate::desired::{DesiredRoute, IgnoredOverride, RouterDesired};

/// What one sync will do to one router, and what it will not do and why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncPlan {
    /// Changes to apply, in one batch, by destination.
    pub changes: Vec<Change>,
    /// How many of `changes` withdraw or re-point a route: what they spend
    /// of the removal budget.
    pub withdrawals: usize,
    /// Desired routes a foreign route already holds: its destination (for
    /// an add) or its destination and next hop (for a replace).
    pub blocked_by_foreign: Vec<(Route, String, ForeignRoute)>,
    /// Withdrawals held back, and why; `None` when nothing is held.
    pub withheld: Option<Withheld>,
    /// Removals postponed until the node source has listed every node.
    pub postponed_removals: usize,
    /// Next-hop overrides this router cannot use (its own addresses).
    pub ignored_overrides: Vec<IgnoredOverride>,
}

/// Withdrawals held back together, for one reason.
#[derive(Clone, Debug, PartialEq)]
pub struct Withheld {
    pub reason: HoldReason,
    /// Each change with the node it concerns, when that node still exists.
    pub changes: Vec<(Change, Option<String>)>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HoldReason {
    /// The complete node list is empty: a wrong cluster, a selector that
    /// matches nothing, an emptied inventory. It never withdraws on its own.
    EmptyNodeList,
    /// More withdrawals than the removal budget has left in its window.
    OverBudget { allowed: usize },
}

impl fmt::Display for HoldReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HoldReason::EmptyNodeList => f.write_str(
                "the node list is empty, and an empty list never withdraws routes on its own",
            ),
            HoldReason::OverBudget { allowed } => write!(
                f,
                "over the removal budget: {allowed} more withdrawals allowed in removalGuard.window"
            ),
        }
    }
}

impl SyncPlan {
    pub fn has_no_changes(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn count(&self, action: nativeroute_router_drivers::Action) -> usize {
        self.changes.iter().filter(|c| c.action() == action).count()
    }

    /// How many changes are held back.
    pub fn withheld_count(&self) -> usize {
        self.withheld.as_ref().map_or(0, |held| held.changes.len())
    }
}

impl fmt::Display for SyncPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for change in &self.changes {
            let sign = match change.action() {
                nativeroute_router_drivers::Action::Add => '+',
                nativeroute_router_drivers::Action::Replace => '~',
                nativeroute_router_drivers::Action::Remove => '-',
            };
            writeln!(f, "  {sign} {change}")?;
        }
        for (route, node, foreign) in &self.blocked_by_foreign {
            writeln!(
                f,
                "  ! {route} (node {node}) not programmed: foreign route {foreign} holds it"
            )?;
        }
        for ignored in &self.ignored_overrides {
            writeln!(f, "  ! node {}: override ignored: {ignored}", ignored.node)?;
        }
        if let Some(withheld) = &self.withheld {
            writeln!(
                f,
                "  ! {} changes held: {} (release: nativeroute release)",
                withheld.changes.len(),
                withheld.reason
            )?;
            for (change, node) in &withheld.changes {
                match node {
                    Some(node) => writeln!(f, "  ! held: {change} (node {node} exists)")?,
                    None => writeln!(f, "  ! held: {change} (its node is gone)")?,
                }
            }
        }
        if self.postponed_removals > 0 {
            writeln!(
                f,
                "  ! {} removals postponed until every node is listed",
                self.postponed_removals
            )?;
        }
        Ok(())
    }
}

/// What a router holds: its last list and the changes applied since.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouterState {
    pub owned: Held,
    pub foreign: Vec<ForeignRoute>,
    /// The router's own addresses, where its driver knows them.
    pub own_addresses: Vec<IpAddr>,
    /// The desired routes the last sync left the router exactly in step
    /// with (every change taken, nothing held, blocked, postponed or
    /// re-pointed): from there only what changed in them needs a look.
    pub in_step_with: Option<RouterDesired>,
}

/// How many withdrawals (removals and re-points of routes the router
/// holds) one sync may send.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Budget {
    /// `None`: the router holds too few routes to be guarded.
    pub allowed: Option<usize>,
    /// Changes an operator let through: they go whatever the budget.
    pub released: HashSet<Change>,
}

impl Budget {
    /// The budget of a router with no withdrawals in its window yet (what
    /// `plan` assumes).
    pub fn fresh(guard: &RemovalGuard, held: usize) -> Budget {
        Budget {
            allowed: (held >= guard.min_routes).then(|| share_of(guard.max_share, held)),
            released: HashSet::new(),
        }
    }
}

/// `share` of `routes`, rounded down.
pub fn share_of(share: f64, routes: usize) -> usize {
    // Route counts are far below 2^52: the conversion is exact.
    (share * routes as f64).floor() as usize
}

/// The routes of nativeroute's a router holds: one per destination, plus
/// any second route of ours to a destination already held (left by a
/// replace whose removal of the old next hop was refused, or written by
/// hand with our mark). A sync removes the second ones; the destination
/// stays routed by the first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Held {
    pub routes: BTreeMap<IpNet, IpAddr>,
    pub duplicates: Vec<Route>,
}

impl Held {
    /// Sorts a router's owned routes, keeping per destination the one to
    /// the desired next hop when there is one.
    pub fn from_listed(owned: &[Route], desired: &RouterDesired) -> Held {
        let mut held = Held::default();
        for route in owned {
            match held.routes.get_mut(&route.dst) {
                None => {
                    held.routes.insert(route.dst, route.via);
                }
                Some(kept) => {
                    let wanted = desired.routes.get(&route.dst).map(|want| want.via);
                    let second = if wanted == Some(route.via) {
                        Route::new(route.dst, std::mem::replace(kept, route.via))
                    } else {
                        *route
                    };
                    held.duplicates.push(second);
                }
            }
        }
        held
    }

    /// Sorted again for `desired`: which route of two to one destination is
    /// the second depends on the desired next hop.
    pub fn sorted_for(&self, desired: &RouterDesired) -> Held {
        let mut listed: Vec<Route> = self
            .routes
            .iter()
            .map(|(dst, via)| Route::new(*dst, *via))
            .collect();
        listed.extend(self.duplicates.iter().copied());
        Held::from_listed(&listed, desired)
    }

    /// After `route` was removed from the router.
    pub fn forget(&mut self, route: Route) {
        if self.routes.get(&route.dst) == Some(&route.via) {
            self.routes.remove(&route.dst);
        } else {
            self.duplicates.retain(|duplicate| *duplicate != route);
        }
    }

    pub fn len(&self) -> usize {
        self.routes.len() + self.duplicates.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.duplicates.is_empty()
    }
}

/// Diffs `desired` against what `router` holds. Withdrawals (routes
/// removed, routes re-pointed) go only within `budget`, and never on an
/// empty node list; everything else goes at once.
pub fn diff(desired: &RouterDesired, router: &RouterState, budget: &Budget) -> SyncPlan {
    diff_within(desired, router, budget, None)
}

/// [`diff`], looking only at the destinations whose desired routes changed
/// since the router was last in step with them, when it was: the same plan
/// at the cost of the change, not of every route.
pub fn diff_since_in_step(
    desired: &RouterDesired,
    router: &RouterState,
    budget: &Budget,
) -> SyncPlan {
    let changed = router
        .in_step_with
        .as_ref()
        .filter(|last| {
            last.complete == desired.complete
                && last.keep == desired.keep
                && router.owned.duplicates.is_empty()
        })
        .map(|last| {
            last.routes
                .diff(&desired.routes)
                .map(|item| match item {
                    DiffItem::Add(dst, _) | DiffItem::Remove(dst, _) => *dst,
                    DiffItem::Update { new: (dst, _), .. } => *dst,
                })
                .collect::<BTreeSet<IpNet>>()
        });
    diff_within(desired, router, budget, changed.as_ref())
}

/// Whether a sync that ran `plan` to the end with every change taken left
/// the router exactly in step with its desired routes.
pub fn leaves_in_step(plan: &SyncPlan, router: &RouterState) -> bool {
    plan.withheld.is_none()
        && plan.blocked_by_foreign.is_empty()
        && plan.postponed_removals == 0
        && plan.ignored_overrides.is_empty()
        && router.owned.duplicates.is_empty()
}

/// The diff over the destinations in `only`, or over all.
fn diff_within(
    desired: &RouterDesired,
    router: &RouterState,
    budget: &Budget,
    only: Option<&BTreeSet<IpNet>>,
) -> SyncPlan {
    let held = &router.owned;
    let mut plan = SyncPlan::default();
    // A second route of ours to a held destination: removing it withdraws
    // nothing, the destination stays routed by the first. Which one is
    // second depends on the desired next hop, unknown before the list.
    if desired.complete {
        plan.changes
            .extend(held.duplicates.iter().copied().map(Change::Remove));
    } else {
        plan.postponed_removals += held.duplicates.len();
    }
    let mut withdrawals = Vec::new();
    let wanted: Box<dyn Iterator<Item = (&IpNet, &DesiredRoute)>> = match only {
        None => Box::new(desired.routes.iter()),
        Some(dsts) => Box::new(
            dsts.iter()
                .filter_map(|dst| desired.routes.get_key_value(dst)),
        ),
    };
    for (dst, want) in wanted {
        let via = next_hop_on(router, want, &mut plan.ignored_overrides);
        let route = Route::new(*dst, via);
        match held.routes.get(dst) {
            Some(held_via) if *held_via == via => {}
            // Router CLIs key a static route by destination and next hop
            // (FRR, IOS, EOS): writing ours onto a foreign route's next hop
            // would stamp our tag on it and make it ours. Ours, to the old
            // next hop, goes: the foreign route already forwards as wanted.
            Some(held_via) if let Some(blocking) = foreign_at(&router.foreign, route) => {
                plan.blocked_by_foreign
                    .push((route, want.node.clone(), blocking.clone()));
                plan.changes
                    .push(Change::Remove(Route::new(*dst, *held_via)));
            }
            Some(held_via) => withdrawals.push(Change::Replace {
                route,
                old_via: *held_via,
            }),
            None => match router.foreign.iter().find(|f| f.dst == *dst) {
                Some(blocking) => {
                    plan.blocked_by_foreign
                        .push((route, want.node.clone(), blocking.clone()))
                }
                None => plan.changes.push(Change::Add(route)),
            },
        }
    }

    let holding: Box<dyn Iterator<Item = (&IpNet, &IpAddr)>> = match only {
        None => Box::new(held.routes.iter()),
        Some(dsts) => Box::new(dsts.iter().filter_map(|dst| held.routes.get_key_value(dst))),
    };
    let unwanted = holding
        .filter(|(dst, _)| !desired.routes.contains_key(*dst) && !desired.keep.contains(*dst))
        .map(|(dst, via)| Change::Remove(Route::new(*dst, *via)));
    if desired.complete {
        withdrawals.extend(unwanted);
    } else {
        plan.postponed_removals += unwanted.count();
    }
    let (released, guarded): (Vec<Change>, Vec<Change>) = withdrawals
        .into_iter()
        .partition(|change| budget.released.contains(change));
    plan.withdrawals = released.len();
    plan.changes.extend(released);
    let hold = if desired.live.is_empty() && !guarded.is_empty() {
        Some(HoldReason::EmptyNodeList)
    } else {
        budget
            .allowed
            .filter(|allowed| guarded.len() > *allowed)
            .map(|allowed| HoldReason::OverBudget { allowed })
    };
    match hold {
        Some(reason) => {
            let changes = guarded
                .into_iter()
                .map(|change| (change, node_of(desired, &change)))
                .collect();
            plan.withheld = Some(Withheld { reason, changes });
        }
        None => {
            plan.withdrawals += guarded.len();
            plan.changes.extend(guarded);
        }
    }
    plan.changes.sort_by_key(|change| change.route().dst);
    plan
}

/// The next hop a desired route takes on this router: its override, unless
/// that is one of the router's own addresses (a loop or a black hole), then
/// the node's own address.
fn next_hop_on(
    router: &RouterState,
    want: &DesiredRoute,
    ignored: &mut Vec<IgnoredOverride>,
) -> IpAddr {
    match want.fallback {
        Some(fallback) if router.own_addresses.contains(&want.via) => {
            ignored.push(IgnoredOverride {
                node: want.node.clone(),
                value: want.via,
                why: "it is an address of this router itself, and a route via it would loop"
                    .to_owned(),
                instead: Some(fallback),
            });
            fallback
        }
        _ => want.via,
    }
}

/// The existing node a change concerns, if its node still exists.
fn node_of(desired: &RouterDesired, change: &Change) -> Option<String> {
    match change {
        Change::Replace { route, .. } => desired.routes.get(&route.dst).map(|r| r.node.clone()),
        _ => desired.live.node_of(&change.route()).map(str::to_owned),
    }
}

/// A foreign route with exactly `route`'s destination and next hop.
fn foreign_at(foreign: &[ForeignRoute], route: Route) -> Option<&ForeignRoute> {
    foreign
        .iter()
        .find(|f| f.dst == route.dst && f.via == Some(route.via))
}
