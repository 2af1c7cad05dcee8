//! The diff between what a router should hold and what it holds: pure, so
//! that `nativeroute plan` shows exactly what a sync would do.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;
use nativeroute_router_drivers::{Change, ForeignRoute, Route};

use crate::config::RemovalGuard;
use crate::desired::RouterDesired;

/// What one sync will do to one router, and what it will not do and why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncPlan {
    /// Changes to apply, in one batch.
    pub changes: Vec<Change>,
    /// Desired routes a foreign route already holds: its destination (for
    /// an add) or its destination and next hop (for a replace).
    pub blocked_by_foreign: Vec<(Route, String, ForeignRoute)>,
    /// Removals held back by the mass-removal guard (route, its node).
    pub guarded: Vec<(Route, String)>,
    /// Removals postponed until the node source has listed every node.
    pub postponed_removals: usize,
}

impl SyncPlan {
    pub fn has_no_changes(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn count(&self, action: nativeroute_router_drivers::Action) -> usize {
        self.changes.iter().filter(|c| c.action() == action).count()
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
        for (route, node) in &self.guarded {
            writeln!(
                f,
                "  ! {route} (node {node} still exists) not removed: mass-removal guard"
            )?;
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

/// Diffs `desired` against `held` (the owned routes on the router, by
/// destination) and `foreign` (routes in the pool nativeroute does not own).
pub fn diff(
    desired: &RouterDesired,
    held: &Held,
    foreign: &[ForeignRoute],
    guard: &RemovalGuard,
) -> SyncPlan {
    let mut plan = SyncPlan::default();
    plan.changes
        .extend(held.duplicates.iter().copied().map(Change::Remove));
    for (dst, want) in &desired.routes {
        let route = Route::new(*dst, want.via);
        match held.routes.get(dst) {
            Some(via) if *via == want.via => {}
            // Router CLIs key a static route by destination and next hop
            // (FRR, IOS, EOS): writing ours onto a foreign route's next hop
            // would stamp our tag on it and make it ours. Ours, to the old
            // next hop, goes: the foreign route already forwards as wanted.
            Some(via) if let Some(blocking) = foreign_at(foreign, route) => {
                plan.blocked_by_foreign
                    .push((route, want.node.clone(), blocking.clone()));
                plan.changes.push(Change::Remove(Route::new(*dst, *via)));
            }
            Some(via) => plan.changes.push(Change::Replace {
                route,
                old_via: *via,
            }),
            None => match foreign.iter().find(|f| f.dst == *dst) {
                Some(blocking) => {
                    plan.blocked_by_foreign
                        .push((route, want.node.clone(), blocking.clone()))
                }
                None => plan.changes.push(Change::Add(route)),
            },
        }
    }

    let unwanted = held
        .routes
        .iter()
        .filter(|(dst, _)| !desired.routes.contains_key(*dst) && !desired.keep.contains(*dst))
        .map(|(dst, via)| Route::new(*dst, *via));
    if !desired.complete {
        plan.postponed_removals = unwanted.count();
        return plan;
    }
    let (of_live_nodes, of_gone_nodes): (Vec<Route>, Vec<Route>) =
        unwanted.partition(|route| desired.live.node_of(route).is_some());
    plan.changes
        .extend(of_gone_nodes.into_iter().map(Change::Remove));
    if guard_trips(guard, of_live_nodes.len(), held.routes.len()) {
        plan.guarded = of_live_nodes
            .into_iter()
            .map(|route| {
                let node = desired.live.node_of(&route).unwrap_or_default().to_owned();
                (route, node)
            })
            .collect();
    } else {
        plan.changes
            .extend(of_live_nodes.into_iter().map(Change::Remove));
    }
    plan
}

/// A foreign route with exactly `route`'s destination and next hop.
fn foreign_at(foreign: &[ForeignRoute], route: Route) -> Option<&ForeignRoute> {
    foreign
        .iter()
        .find(|f| f.dst == route.dst && f.via == Some(route.via))
}

/// Whether removing `removals` of `held` routes whose nodes still exist is
/// too many at once.
fn guard_trips(guard: &RemovalGuard, removals: usize, held: usize) -> bool {
    held >= guard.min_routes && removals as f64 > guard.max_share * held as f64
}
