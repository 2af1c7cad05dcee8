//! Checkpoints: no events for a moment, every running fault ended, then
//! the routers are compared with what the API server's Nodes ask for until
//! they agree or a bound passes; foreign routes are compared with how the
//! operator left them.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;

use super::desired::{Desired, Diff, Routes, desired};
use super::kernel_router::{KernelRoute, foreign_of, kernel_routes};
use super::observe::{Router, in_reserved};
use super::run::Run;
use super::world::{GUARD_WINDOW, RESYNC};

/// Quiet time before comparing: the last burst's writes settle.
const QUIET: Duration = Duration::from_secs(2);
/// How long convergence may take: a lease to expire (15 s) and be taken,
/// a resync, and the guard's window for held withdrawals, with margin.
pub const CONVERGENCE_BOUND: Duration =
    Duration::from_secs(15 + RESYNC.as_secs() * 2 + GUARD_WINDOW.as_secs() + 30);

/// One comparison of the routers with the desired routes.
#[derive(Debug, Default)]
pub struct Check {
    pub desired: Desired,
    pub diffs: BTreeMap<Router, Diff>,
    /// What zebra installed in FRR's kernel against what FRR should hold:
    /// a route in FRR's config that zebra does not install forwards
    /// nothing.
    pub frr_kernel: Diff,
    /// Routes of ours with more than one next hop: FRR lines doubling a
    /// destination, multipath kernel routes.
    pub doubled: Vec<String>,
    /// A router that could not be read: why.
    pub unreadable: Vec<String>,
}

impl Check {
    pub fn converged(&self) -> bool {
        self.desired.unassigned.is_empty()
            && self.desired.mismatched.is_empty()
            && self.diffs.values().all(Diff::is_empty)
            && self.frr_kernel.is_empty()
            && self.doubled.is_empty()
            && self.unreadable.is_empty()
    }
}

#[derive(Debug)]
pub struct CheckpointResult {
    /// Since the run started.
    pub at: Duration,
    /// How long convergence took after the quiet time; None: not within
    /// the bound.
    pub converged_after: Option<Duration>,
    pub check: Check,
    pub routes: usize,
    /// Foreign routes not as the operator left them, per router.
    pub foreign_changed: Vec<String>,
}

impl Run {
    pub async fn checkpoint(&mut self) -> Result<()> {
        self.settle().await?;
        tokio::time::sleep(QUIET).await;
        let started = Instant::now();
        let (check, converged_after) = loop {
            self.fire_due_timers().await?;
            self.controllers.restart_crashed()?;
            let check = tokio::task::block_in_place(|| self.check_now());
            if check.converged() {
                break (check, Some(started.elapsed()));
            }
            if started.elapsed() > CONVERGENCE_BOUND {
                break (check, None);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let result = CheckpointResult {
            at: self.started.elapsed(),
            converged_after,
            routes: check
                .desired
                .routes
                .values()
                .map(Routes::len)
                .max()
                .unwrap_or(0),
            foreign_changed: tokio::task::block_in_place(|| self.foreign_changes()),
            check,
        };
        self.log(&format!(
            "checkpoint: {} routes, converged after {:?}, diff kernel {} / frr {} / frr's kernel {}, {} unassigned, {} mismatched, {} duplicates, foreign changed {:?}",
            result.routes,
            result.converged_after,
            result.check.diffs.get(&Router::Kernel).map_or(0, Diff::len),
            result.check.diffs.get(&Router::Frr).map_or(0, Diff::len),
            result.check.frr_kernel.len(),
            result.check.desired.unassigned.len(),
            result.check.desired.mismatched.len(),
            result.check.desired.duplicates.len(),
            result.foreign_changed,
        ));
        self.tally.checkpoints.push(result);
        Ok(())
    }

    /// The routers against the Nodes, now.
    pub fn check_now(&self) -> Check {
        let mut check = Check {
            desired: desired(&self.world.api.nodes()),
            ..Check::default()
        };
        let kernel: Option<Routes> = self.world.kernel.routes().map(|routes| {
            check
                .doubled
                .extend(multipath(&routes, |r| r.is_ours(), "netlink router"));
            routes
                .into_iter()
                .filter(|r| r.is_ours())
                .filter_map(|r| Some((r.dst, r.via?)))
                .collect()
        });
        let frr = self.world.frr.routes();
        let empty = Routes::new();
        let want = |router| check.desired.routes.get(&router).unwrap_or(&empty);
        let mut diffs = BTreeMap::new();
        match kernel {
            Some(have) => {
                diffs.insert(Router::Kernel, Diff::between(want(Router::Kernel), &have));
            }
            None => check
                .unreadable
                .push("the netlink router's namespace".to_owned()),
        }
        match frr {
            Ok(routes) => {
                diffs.insert(Router::Frr, Diff::between(want(Router::Frr), &routes.ours));
                check.doubled.extend(routes.doubled);
            }
            Err(err) => check.unreadable.push(format!("FRR: {err:#}")),
        }
        match kernel_routes(self.world.frr.netns()) {
            Some(routes) => {
                let ours = |r: &KernelRoute| !in_reserved(r.dst);
                check
                    .doubled
                    .extend(multipath(&routes, ours, "FRR's kernel"));
                let have: Routes = routes
                    .into_iter()
                    .filter(|r| !in_reserved(r.dst))
                    .filter_map(|r| Some((r.dst, r.via?)))
                    .collect();
                check.frr_kernel = Diff::between(want(Router::Frr), &have);
            }
            None => check.unreadable.push("FRR's namespace".to_owned()),
        }
        check.diffs = diffs;
        check
    }

    /// Foreign routes that differ from the operator's, per router.
    fn foreign_changes(&self) -> Vec<String> {
        let mut changed = Vec::new();
        let kernel = self.world.kernel.routes().map(|r| foreign_of(&r));
        if kernel.as_deref() != Some(self.world.kernel.foreign_baseline()) {
            changed.push(format!(
                "kernel: {:?}, operator's {:?}",
                kernel,
                self.world.kernel.foreign_baseline()
            ));
        }
        match self.world.frr.routes() {
            Ok(routes) if routes.foreign == self.world.frr.foreign_baseline() => {}
            Ok(routes) => changed.push(format!(
                "frr: {:?}, operator's {:?}",
                routes.foreign,
                self.world.frr.foreign_baseline()
            )),
            Err(err) => changed.push(format!("frr: unreadable ({err:#})")),
        }
        changed
    }
}

/// Multipath routes among `routes` that `ours` accepts, for the log.
fn multipath(
    routes: &[KernelRoute],
    ours: impl Fn(&KernelRoute) -> bool,
    router: &str,
) -> Vec<String> {
    routes
        .iter()
        .filter(|r| r.multipath && ours(r))
        .map(|r| format!("{router}: {} has several next hops", r.dst))
        .collect()
}
