//! One worker per router: a slow or broken router never delays another.
//!
//! The worker wakes when the desired routes change (a `watch` channel, so a
//! burst of node changes coalesces into the latest state and one batch), at
//! every resync interval (a fresh list from the router repairs drift), and
//! when a failed sync is due for a retry (exponential backoff).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use nativeroute_router_drivers::{
    Action, Change, ChangeOutcome, DriverError, Fence, ForeignRoute, Ownership, RouterDriver,
};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use super::budget::RemovalBudget;
use imbl::ordmap::DiffItem;

use super::diff::{Held, RouterState, SyncPlan, diff_since_in_step, leaves_in_step};
use crate::config::{RemovalGuard, RouterConfig};
use crate::desired::RouterDesired;
use crate::metrics::Metrics;
use crate::report::{BULK, Reason, Reporter};
use crate::routers;
use crate::status::board::RouterBoard;
use crate::status::{RouteState, RouteStates};

#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub resync: Duration,
    pub guard: RemovalGuard,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl WorkerSettings {
    pub fn new(resync: Duration, guard: RemovalGuard) -> Self {
        WorkerSettings {
            resync,
            guard,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
        self.backoff_min
            .saturating_mul(factor)
            .min(self.backoff_max)
    }
}

struct Worker {
    router: RouterConfig,
    ownership: Ownership,
    settings: WorkerSettings,
    observers: Observers,
    driver: Option<Box<dyn RouterDriver>>,
    /// What the worker believes the router holds, from its last list plus
    /// the changes applied since.
    view: Option<RouterState>,
    budget: RemovalBudget,
    /// The withdrawals the last sync held back, and those an operator
    /// released since (they go at the next sync, whatever the budget).
    withheld: HashSet<Change>,
    released: HashSet<Change>,
    /// What each sync confirmed, for node status.
    states: watch::Sender<Arc<RouteStates>>,
}

/// What a worker listens to.
pub struct WorkerInputs {
    pub desired: watch::Receiver<Arc<RouterDesired>>,
    /// Turns true when the term ends (shutdown or leadership lost).
    pub shutdown: watch::Receiver<bool>,
    /// Bumped when an operator releases held withdrawals.
    pub release: watch::Receiver<u64>,
}

/// Where a worker tells what it did: node events and metrics.
#[derive(Clone)]
pub struct Observers {
    pub reporter: Arc<dyn Reporter>,
    pub metrics: Arc<Metrics>,
    pub board: RouterBoard,
}

/// Runs until `shutdown` turns true or the desired-state sender is gone.
/// Shutting down withdraws nothing: routes stay on the router.
pub async fn run_worker(
    router: RouterConfig,
    ownership: Ownership,
    inputs: WorkerInputs,
    settings: WorkerSettings,
    observers: Observers,
    states: watch::Sender<Arc<RouteStates>>,
) {
    let WorkerInputs {
        mut desired,
        mut shutdown,
        mut release,
    } = inputs;
    let mut worker = Worker {
        router,
        ownership,
        budget: RemovalBudget::new(settings.guard),
        settings,
        observers,
        driver: None,
        view: None,
        withheld: HashSet::new(),
        released: HashSet::new(),
        states,
    };
    // The router itself failing (unreachable, session lost) and the router
    // refusing single changes are backed off differently: the first stops
    // all syncing until the retry, the second only paces the retries of
    // what was refused, so one bad route never delays the other nodes.
    let mut router_failures: u32 = 0;
    let mut refusals: u32 = 0;
    let mut retry_at = Some(Instant::now());
    let mut resync_at = Instant::now() + worker.settings.resync;
    loop {
        let far = Instant::now() + Duration::from_secs(86_400);
        let moved = worker
            .driver
            .as_ref()
            .and_then(|driver| driver.changes_on_its_own());
        tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            () = router_moved(moved.as_deref()) => {
                // The router's side changed without us (a BGP session
                // went down): what it holds is read again now, not at the
                // next resync.
                worker.view = None;
            }
            changed = desired.changed() => if changed.is_err() { break },
            released = release.changed() => {
                if released.is_err() { break }
                worker.release_withheld();
            }
            _ = sleep_until(resync_at) => {
                resync_at = Instant::now() + worker.settings.resync;
                worker.view = None;
            }
            _ = sleep_until(retry_at.unwrap_or(far)), if retry_at.is_some() => {
                // What the router refused may be explained by what it holds
                // (a foreign route in the way): retries start from a list.
                if refusals > 0 {
                    worker.view = None;
                }
            }
        }
        if *shutdown.borrow() {
            break;
        }
        if router_failures > 0 && retry_at.is_some_and(|at| Instant::now() < at) {
            continue;
        }
        let want = desired.borrow_and_update().clone();
        match worker.sync(&want, &shutdown).await {
            Ok(all_taken) => {
                router_failures = 0;
                if all_taken {
                    refusals = 0;
                    retry_at = None;
                } else {
                    refusals += 1;
                    retry_at = Some(Instant::now() + worker.settings.backoff(refusals));
                }
                // Housekeeping only when no change waits for this router,
                // and never after the term ended: deleting a nexthop object
                // the next leader's routes use would withdraw them.
                if !desired.has_changed().unwrap_or(true) && !*shutdown.borrow() {
                    worker.tidy().await;
                }
            }
            Err(err) => {
                router_failures += 1;
                let name = worker.router.name.as_str();
                worker.observers.metrics.sync_failed(name);
                let held = matches!(err, DriverError::HeldByOthers { .. });
                worker.observers.metrics.router_up(name, held);
                worker.observers.metrics.config_held(name, held);
                if held {
                    worker
                        .observers
                        .board
                        .held_by_others(name, &err.to_string());
                } else {
                    worker.observers.board.failed(name, &err.to_string());
                }
                let delay = worker.settings.backoff(router_failures);
                tracing::warn!(router = %worker.router.name, error = %err, retry_in = ?delay, "sync failed");
                worker.driver = None;
                worker.view = None;
                retry_at = Some(Instant::now() + delay);
            }
        }
    }
    tracing::info!(router = %worker.router.name, "router worker stopped; routes left in place");
}

/// Resolves when the driver says the router changed on its own; never for
/// a driver that cannot tell, or when there is no driver.
async fn router_moved(notify: Option<&tokio::sync::Notify>) {
    match notify {
        Some(notify) => notify.notified().await,
        None => std::future::pending().await,
    }
}

impl Worker {
    /// An operator let the held withdrawals through: exactly those the last
    /// sync held go at the next one, and the budget's window starts afresh.
    fn release_withheld(&mut self) {
        let router = self.router.name.as_str();
        if self.withheld.is_empty() {
            tracing::info!(router, "release requested; nothing is held");
            return;
        }
        tracing::warn!(
            router,
            released = self.withheld.len(),
            "release requested: the held withdrawals go now"
        );
        self.released = std::mem::take(&mut self.withheld);
        self.budget.restart();
    }

    async fn tidy(&mut self) {
        let Some(driver) = self.driver.as_mut() else {
            return;
        };
        if let Err(err) = driver.tidy().await {
            tracing::warn!(router = %self.router.name, error = %err, "router housekeeping failed; retried after the next sync");
            self.driver = None;
        }
    }

    /// One sync. `Ok(true)` when every change took effect.
    async fn sync(
        &mut self,
        want: &RouterDesired,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<bool, DriverError> {
        let started = std::time::Instant::now();
        let driver = match self.driver.as_mut() {
            Some(driver) => driver,
            None => self
                .driver
                .insert(routers::connect(&self.router, &self.ownership).await?),
        };
        let view = match self.view.as_mut() {
            Some(view) => view,
            None => {
                let routes = driver.list().await?;
                let view = RouterState {
                    owned: Held::from_listed(&routes.owned, want),
                    foreign: routes.foreign,
                    own_addresses: driver.own_addresses().await?,
                    in_step_with: None,
                };
                self.view.insert(view)
            }
        };
        if !view.owned.duplicates.is_empty() {
            view.owned = view.owned.sorted_for(want);
        }
        let name = self.router.name.as_str();
        let metrics = &self.observers.metrics;
        metrics.router_up(name, true);
        metrics.config_held(name, false);
        let now = Instant::now();
        let budget = self
            .budget
            .for_sync(now, view.owned.len(), self.released.clone());
        let was_in_step = view.in_step_with.take();
        view.in_step_with = was_in_step.clone();
        let plan = diff_since_in_step(want, view, &budget);
        report_held_back(
            &*self.observers.reporter,
            &self.router,
            want,
            &plan,
            &view.foreign,
        );
        let withheld: HashSet<Change> = plan
            .withheld
            .iter()
            .flat_map(|held| held.changes.iter().map(|(change, _)| *change))
            .collect();
        metrics.removals_refused(name, withheld.difference(&self.withheld).count());
        metrics.withdrawals_held(name, withheld.len());
        self.withheld = withheld;
        if plan.has_no_changes() {
            self.observers
                .board
                .synced(name, view.owned.len(), self.withheld.len());
            metrics.routes_held(name, view.owned.len(), view.foreign.len());
            metrics.sync_finished(name, started.elapsed());
            view.in_step_with = leaves_in_step(&plan, view).then(|| want.clone());
            publish_states(&self.states, want, view, &plan, was_in_step.as_ref());
            return Ok(true);
        }
        // Connecting and listing can take seconds on an SSH router; a term
        // that ended meanwhile (leadership lost) must not send a batch.
        if *shutdown.borrow() {
            return Ok(false);
        }
        let outcomes = driver
            .apply_fenced(&plan.changes, &Fence::new(shutdown.clone()))
            .await?;
        self.budget.spend(now, plan.withdrawals);
        self.released.clear();
        let tally = take_outcomes(
            &*self.observers.reporter,
            name,
            want,
            view,
            &plan.changes,
            outcomes,
        );
        let all_ok = tally.values().all(|(_, failed)| *failed == 0);
        view.in_step_with = (all_ok && leaves_in_step(&plan, view)).then(|| want.clone());
        for (action, (ok, failed)) in tally {
            metrics.route_changes(name, action.as_str(), ok, failed);
        }
        self.observers
            .board
            .synced(name, view.owned.len(), self.withheld.len());
        metrics.routes_held(name, view.owned.len(), view.foreign.len());
        metrics.sync_finished(name, started.elapsed());
        publish_states(&self.states, want, view, &plan, was_in_step.as_ref());
        tracing::info!(
            router = name,
            added = plan.count(Action::Add),
            replaced = plan.count(Action::Replace),
            removed = plan.count(Action::Remove),
            failed = !all_ok,
            took_ms = started.elapsed().as_secs_f64() * 1000.0,
            "router synced"
        );
        Ok(all_ok)
    }
}

/// Publishes what this sync confirmed for every desired route: held as
/// wanted, blocked by a foreign route, or refused (anything else that did
/// not take effect in a sync that reached the router). `was_in_step`: the
/// desired routes the router was in step with before this sync, if it was.
fn publish_states(
    sender: &watch::Sender<Arc<RouteStates>>,
    want: &RouterDesired,
    view: &RouterState,
    plan: &SyncPlan,
    was_in_step: Option<&RouterDesired>,
) {
    // In step before and after: every desired route was and is held as
    // wanted, so the published states change only where the routes did.
    if let (Some(before), Some(_)) = (was_in_step, &view.in_step_with) {
        sender.send_if_modified(|current| {
            let mut states = (**current).clone();
            let mut changed = false;
            for item in before.routes.diff(&want.routes) {
                changed = true;
                match item {
                    DiffItem::Add(dst, route)
                    | DiffItem::Update {
                        new: (dst, route), ..
                    } => {
                        states.insert(*dst, (route.via, RouteState::Programmed));
                    }
                    DiffItem::Remove(dst, _) => {
                        states.remove(dst);
                    }
                }
            }
            if changed {
                *current = Arc::new(states);
            }
            changed
        });
        return;
    }
    let withheld = plan
        .withheld
        .iter()
        .flat_map(|held| held.changes.iter().map(|(change, _)| change.route().dst));
    let blocked: HashSet<IpNet> = plan
        .blocked_by_foreign
        .iter()
        .map(|(route, _, _)| route.dst)
        .chain(withheld)
        .collect();
    let states: RouteStates = want
        .routes
        .iter()
        .map(|(dst, route)| {
            let on_router = plan
                .ignored_overrides
                .iter()
                .find(|ignored| ignored.node == route.node)
                .and_then(|ignored| ignored.instead)
                .unwrap_or(route.via);
            let state = if view.owned.routes.get(dst) == Some(&on_router) {
                RouteState::Programmed
            } else if blocked.contains(dst) {
                RouteState::Blocked
            } else {
                RouteState::Error
            };
            (*dst, (route.via, state))
        })
        .collect();
    sender.send_if_modified(|current| {
        if **current == states {
            return false;
        }
        *current = Arc::new(states);
        true
    });
}

/// Brings the worker's view of the router in step with what took effect,
/// tells each node what happened to its route, and counts the outcomes per
/// action as (ok, failed).
fn take_outcomes(
    reporter: &dyn Reporter,
    router: &str,
    want: &RouterDesired,
    view: &mut RouterState,
    changes: &[Change],
    outcomes: Vec<ChangeOutcome>,
) -> BTreeMap<Action, (u64, u64)> {
    let mut tally: BTreeMap<Action, (u64, u64)> = BTreeMap::new();
    // Routine outcomes of a large batch are summed up by "router synced".
    let in_bulk = changes.len() > BULK;
    for (change, outcome) in changes.iter().zip(outcomes) {
        let route = change.route();
        let node = match change {
            Change::Remove(_) => want.live.node_of(&route).map(str::to_owned),
            _ => want
                .routes
                .get(&route.dst)
                .map(|desired| desired.node.clone()),
        };
        let node = node.as_deref().unwrap_or("-");
        let counts = tally.entry(change.action()).or_default();
        let removal = change.action() == Action::Remove;
        match outcome {
            Ok(()) => {
                counts.0 += 1;
                if removal {
                    view.owned.forget(route);
                } else {
                    view.owned.routes.insert(route.dst, route.via);
                }
                let (reason, verb) = if removal {
                    (Reason::RouteDeleted, "removed")
                } else {
                    (Reason::RouteCreated, "programmed")
                };
                let message = format!("router {router}: {verb} {route}");
                if in_bulk {
                    reporter.node_event_in_bulk(node, reason, &message);
                } else {
                    reporter.node_event(node, reason, &message);
                }
            }
            Err(err) => {
                counts.1 += 1;
                let reason = if removal {
                    Reason::FailedToDeleteRoute
                } else {
                    Reason::FailedToCreateRoute
                };
                reporter.node_event(
                    node,
                    reason,
                    &format!("router {router}: {change} failed: {err}"),
                );
            }
        }
    }
    tally
}

fn report_held_back(
    reporter: &dyn Reporter,
    router: &RouterConfig,
    want: &RouterDesired,
    plan: &SyncPlan,
    foreign: &[ForeignRoute],
) {
    for (route, node, blocking) in &plan.blocked_by_foreign {
        reporter.node_event(
            node,
            Reason::ForeignRoute,
            &format!("router {}: {route} not programmed: a route nativeroute does not own holds it: {blocking}", router.name),
        );
    }
    for blocking in foreign.iter().filter(|f| !want.routes.contains_key(&f.dst)) {
        if let Some(node) = want.live.node_hit_by(&blocking.dst) {
            reporter.node_event(
                node,
                Reason::ForeignRoute,
                &format!(
                    "router {}: foreign route {blocking} inside the node's subnet; left alone",
                    router.name
                ),
            );
        } else {
            tracing::debug!(router = %router.name, route = %blocking, "foreign route inside the pool; left alone");
        }
    }
    for ignored in &plan.ignored_overrides {
        reporter.node_event(
            &ignored.node,
            Reason::InvalidAnnotation,
            &format!("router {}: {ignored}", router.name),
        );
    }
    if let Some(withheld) = &plan.withheld {
        tracing::warn!(
            router = %router.name,
            held = withheld.changes.len(),
            reason = %withheld.reason,
            "withdrawals held back; check the node list, the selector, nodeNetworks and the \
             node addresses, and run `nativeroute release` if they are meant"
        );
        for (change, node) in &withheld.changes {
            if let Some(node) = node {
                reporter.node_event(
                    node,
                    Reason::FailedToDeleteRoute,
                    &format!(
                        "router {}: {change} held: {} (nativeroute release lets it through)",
                        router.name, withheld.reason
                    ),
                );
            }
        }
    }
    if plan.postponed_removals > 0 {
        tracing::info!(router = %router.name, postponed = plan.postponed_removals, "removals wait for the complete node list");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::{DesiredRoute, LiveNodes};

    fn desired(routes: &[(u8, u8)]) -> RouterDesired {
        let routes: imbl::OrdMap<IpNet, DesiredRoute> = routes
            .iter()
            .map(|&(subnet, via)| {
                let dst: IpNet = format!("11.11.{subnet}.0/24").parse().expect("cidr");
                let via: std::net::IpAddr = format!("192.168.3.{via}").parse().expect("ip");
                (dst, DesiredRoute::new(via, &format!("node{subnet}")))
            })
            .collect();
        let live = Arc::new(LiveNodes::from_routes(&routes));
        RouterDesired {
            complete: true,
            routes,
            keep: Default::default(),
            live,
        }
    }

    /// The router holding exactly `want`, in step with it.
    fn in_step(want: &RouterDesired) -> RouterState {
        RouterState {
            owned: Held {
                routes: want.routes.iter().map(|(dst, r)| (*dst, r.via)).collect(),
                duplicates: Vec::new(),
            },
            in_step_with: Some(want.clone()),
            ..RouterState::default()
        }
    }

    #[test]
    fn states_published_from_the_last_step_are_those_worked_out_from_scratch() {
        let before = desired(&[(1, 1), (2, 2), (3, 3), (4, 4)]);
        let after = desired(&[(1, 1), (2, 9), (4, 4), (5, 5)]);
        let sender = watch::Sender::new(Arc::new(RouteStates::new()));
        let plan = SyncPlan::default();
        publish_states(&sender, &before, &in_step(&before), &plan, None);
        publish_states(&sender, &after, &in_step(&after), &plan, Some(&before));

        let scratch = watch::Sender::new(Arc::new(RouteStates::new()));
        publish_states(&scratch, &after, &in_step(&after), &plan, None);
        assert_eq!(**sender.borrow(), **scratch.borrow());
        assert_eq!(sender.borrow().len(), 4);
    }
}
