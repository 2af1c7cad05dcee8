//! The summary of a run, as a Markdown table (it goes into
//! docs/benchmarks.md as printed), and the list of invariants it broke.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use ipnet::Ipv4Net;

use super::checkpoint::CheckpointResult;
use super::observe::{Held, Router};
use super::run::Tally;
use super::verdict::{Cause, Outage, Withdrawal};

/// Everything the summary shows.
pub struct Summary<'a> {
    pub seed: u64,
    pub digest: String,
    pub command: String,
    pub events: &'a BTreeMap<&'static str, usize>,
    pub initial_nodes: usize,
    pub final_nodes: usize,
    pub tally: &'a Tally,
    pub crashes: &'a [(String, String)],
    pub withdrawals: &'a [Withdrawal],
    pub outages: &'a [Outage],
    pub held: &'a BTreeMap<Router, Held>,
    /// Subnets seen on two Nodes at once between checkpoints.
    pub shared: &'a BTreeMap<(Ipv4Net, Vec<String>), Instant>,
    pub monitor_overruns: usize,
    /// 500s answered to the controller, and to the run's own patches.
    pub server_errors: (usize, usize),
    pub gone: usize,
    pub retried_patches: usize,
    pub budget_waits: Duration,
    pub started: Instant,
    pub run_time: Duration,
}

impl Summary<'_> {
    /// Every invariant the run broke, in words; empty for a pass.
    pub fn failures(&self) -> Vec<String> {
        let mut failed = Vec::new();
        let Some(last) = self.tally.checkpoints.last() else {
            return vec!["the run ended before its final checkpoint".into()];
        };
        for router in Router::ALL {
            if let Some(diff) = last.check.diffs.get(&router).filter(|d| !d.is_empty()) {
                failed.push(format!("final diff on {}: {diff}", router.name()));
            }
        }
        if !last.check.frr_kernel.is_empty() {
            failed.push(format!(
                "final diff in FRR's kernel (zebra): {}",
                last.check.frr_kernel
            ));
        }
        if !last.check.unreadable.is_empty() {
            failed.push(format!(
                "unreadable at the end: {:?}",
                last.check.unreadable
            ));
        }
        for (i, cp) in self.tally.checkpoints.iter().enumerate() {
            if cp.converged_after.is_none() {
                failed.push(format!(
                    "checkpoint {} at {:.0}s did not converge: {}",
                    i + 1,
                    cp.at.as_secs_f64(),
                    describe(cp)
                ));
            }
            if !cp.check.desired.duplicates.is_empty() {
                failed.push(format!(
                    "checkpoint {}: subnets shared by nodes: {:?}",
                    i + 1,
                    cp.check.desired.duplicates
                ));
            }
            if !cp.foreign_changed.is_empty() {
                failed.push(format!(
                    "checkpoint {}: foreign routes changed: {:?}",
                    i + 1,
                    cp.foreign_changed
                ));
            }
        }
        for ((subnet, names), at) in self.shared {
            failed.push(format!(
                "{subnet} held by {names:?} at once (spec.podCIDR, seen at {:.1}s)",
                self.offset(*at)
            ));
        }
        for w in self.withdrawals.iter().take(20) {
            failed.push(format!(
                "{} withdrew {} of {} at {:.1}s ({}), routable since {:.1}s",
                w.router.name(),
                w.subnet,
                w.node,
                self.offset(w.at),
                if w.exact { "route monitor" } else { "sampled" },
                self.offset(w.live_since),
            ));
        }
        for (identity, status) in self.crashes {
            failed.push(format!("controller {identity} exited on its own: {status}"));
        }
        for h in self.tally.handovers.iter().filter(|h| h.took.is_none()) {
            failed.push(format!("handover {} → {} never completed", h.from, h.to));
        }
        for n in self.tally.netns.iter().filter(|n| n.recovered.is_none()) {
            failed.push(format!(
                "the netlink router's re-created namespace was not re-programmed by the running controller (after a leader restart: {:?})",
                n.after_restart
            ));
        }
        failed
    }

    fn offset(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.started).as_secs_f64()
    }

    pub fn table(&self) -> String {
        let mut rows: Vec<(String, String)> = Vec::new();
        let mut row = |item: &str, value: String| rows.push((item.to_owned(), value));
        row("seed", format!("{} (plan {})", self.seed, self.digest));
        row("command", format!("`{}`", self.command));
        let total: usize = self.events.values().sum();
        row(
            "node events",
            format!("{total} ({})", join_counts(self.events)),
        );
        row(
            "node population",
            format!(
                "{} at start, {}–{} during, {} at the end",
                self.initial_nodes, self.tally.least_nodes, self.tally.most_nodes, self.final_nodes
            ),
        );
        row(
            "kill -9 restarts",
            format!(
                "{} ({} of the leader, {} right after a burst of writes)",
                self.tally.kills, self.tally.leader_kills, self.tally.mid_batch_kills
            ),
        );
        row("leader handovers (SIGTERM)", self.handovers());
        row("faults", self.faults());
        row("netns re-created", self.netns());
        row("checkpoints", self.checkpoints());
        if let Some(last) = self.tally.checkpoints.last() {
            for router in Router::ALL {
                let diff = last.check.diffs.get(&router).cloned().unwrap_or_default();
                row(
                    &format!("final diff, {}", router_label(router)),
                    format!("{diff} ({} routes desired)", last.routes),
                );
            }
            row(
                "final diff, FRR's kernel (what zebra installed)",
                last.check.frr_kernel.to_string(),
            );
        }
        let duplicates: usize = self
            .tally
            .checkpoints
            .iter()
            .map(|c| c.check.desired.duplicates.len())
            .sum();
        row(
            "duplicate subnets",
            format!(
                "{duplicates} at checkpoints, {} between them (spec.podCIDR sampled every 0.5 s)",
                self.shared.len()
            ),
        );
        let foreign: usize = self
            .tally
            .checkpoints
            .iter()
            .map(|c| c.foreign_changed.len())
            .sum();
        row(
            "foreign routes changed (all checkpoints)",
            foreign.to_string(),
        );
        row("live-node withdrawals", self.withdrawal_counts());
        row("withdrawals held by the guard", self.held());
        for (label, value) in self.outage_rows() {
            row(&label, value);
        }
        row("controller crashes", self.crashes.len().to_string());
        row(
            "the run's own pacing",
            format!(
                "{:.0} s waiting for its withdrawal budget; {} patches retried after an injected error",
                self.budget_waits.as_secs_f64(),
                self.retried_patches
            ),
        );
        row("run time", format!("{:.0} s", self.run_time.as_secs_f64()));
        let failures = self.failures();
        row(
            "result",
            if failures.is_empty() {
                "PASS".into()
            } else {
                format!("FAIL ({} invariant violations)", failures.len())
            },
        );
        let mut out = String::from("| | |\n| --- | --- |\n");
        for (item, value) in rows {
            let _ = writeln!(out, "| {item} | {} |", value.replace('|', "\\|"));
        }
        out
    }

    fn handovers(&self) -> String {
        let list: Vec<String> = self
            .tally
            .handovers
            .iter()
            .map(|h| match h.took {
                Some(took) => format!(
                    "{} → {} in {:.2} s, old leader {}",
                    h.from,
                    h.to,
                    took.as_secs_f64(),
                    h.exit
                ),
                None => format!("{} → {}: never", h.from, h.to),
            })
            .collect();
        format!("{} ({})", list.len(), list.join(", "))
    }

    fn faults(&self) -> String {
        let (to_controller, to_run) = self.server_errors;
        format!(
            "{}; API answers: 500 ×{to_controller} to the controllers (×{to_run} to the run's own patches, retried), 410 ×{}",
            join_counts(&self.tally.faults),
            self.gone
        )
    }

    fn netns(&self) -> String {
        if self.tally.netns.is_empty() {
            return "not in this run".into();
        }
        let list: Vec<String> = self
            .tally
            .netns
            .iter()
            .map(|n| match (n.recovered, n.after_restart) {
                (Some(took), _) => format!("re-programmed after {:.1} s", took.as_secs_f64()),
                (None, Some(took)) => format!(
                    "NOT re-programmed within 30 s; after a leader restart {:.1} s",
                    took.as_secs_f64()
                ),
                (None, None) => "NOT re-programmed, not even after a leader restart".into(),
            })
            .collect();
        list.join("; ")
    }

    fn checkpoints(&self) -> String {
        let all = &self.tally.checkpoints;
        let converged: Vec<Duration> = all.iter().filter_map(|c| c.converged_after).collect();
        let slowest = converged.iter().max().copied().unwrap_or_default();
        format!(
            "{}, {} converged (slowest {:.1} s after 2 s quiet)",
            all.len(),
            converged.len(),
            slowest.as_secs_f64()
        )
    }

    fn withdrawal_counts(&self) -> String {
        let count = |router: Router, exact: bool| {
            self.withdrawals
                .iter()
                .filter(|w| w.router == router && w.exact == exact)
                .count()
        };
        format!(
            "netlink {} (route monitor, {} overruns) + {} (sampled); frr {} (sampled every 250 ms)",
            count(Router::Kernel, true),
            self.monitor_overruns,
            count(Router::Kernel, false),
            count(Router::Frr, false)
        )
    }

    fn held(&self) -> String {
        let parts: Vec<String> = Router::ALL
            .iter()
            .map(|router| {
                let held = self.held.get(router).cloned().unwrap_or_default();
                format!(
                    "{}: most {}, {} episodes, longest {:.0} s, {} at the end",
                    router.name(),
                    held.most,
                    held.episodes,
                    held.longest.as_secs_f64(),
                    held.now
                )
            })
            .collect();
        parts.join("; ")
    }

    fn outage_rows(&self) -> Vec<(String, String)> {
        let longest = |keep: &dyn Fn(&Outage) -> bool| -> String {
            let matching: Vec<&Outage> = self.outages.iter().filter(|o| keep(o)).collect();
            matching
                .iter()
                .max_by_key(|o| o.length)
                .map_or("none".into(), |o| {
                    format!(
                        "{:.2} s ({} on {}, {} at {:.0} s{}) [{} in all]",
                        o.length.as_secs_f64(),
                        o.node,
                        o.router.name(),
                        o.subnet,
                        self.offset(o.from),
                        if o.unfinished {
                            ", left before it was routed"
                        } else {
                            ""
                        },
                        matching.len()
                    )
                })
        };
        vec![
            (
                "longest outage of a routed node, no fault around".into(),
                longest(&|o| o.after_routed && o.cause == Cause::None),
            ),
            (
                "longest outage of a routed node, during a control-plane fault".into(),
                longest(&|o| o.after_routed && o.cause == Cause::ControlPlane),
            ),
            (
                "longest outage of a routed node, during a fault of its router".into(),
                longest(&|o| o.after_routed && o.cause == Cause::RouterFault),
            ),
            (
                "longest wait for a first route (creation, re-selection), no fault around".into(),
                format!(
                    "{}; p50 {}, p99 {}",
                    longest(&|o| !o.after_routed && o.cause == Cause::None),
                    self.first_route_percentile(0.5),
                    self.first_route_percentile(0.99)
                ),
            ),
            (
                "longest wait for a first route, during a fault".into(),
                longest(&|o| !o.after_routed && o.cause != Cause::None),
            ),
        ]
    }
}

impl Summary<'_> {
    /// A percentile of the waits for a first route outside any fault
    /// (sampled every 250 ms: shorter waits read as up to one sample).
    fn first_route_percentile(&self, share: f64) -> String {
        let mut waits: Vec<Duration> = self
            .outages
            .iter()
            .filter(|o| !o.after_routed && o.cause == Cause::None && !o.unfinished)
            .map(|o| o.length)
            .collect();
        if waits.is_empty() {
            return "-".into();
        }
        waits.sort();
        let index = ((waits.len() as f64 * share).ceil() as usize).clamp(1, waits.len()) - 1;
        format!("{:.2} s", waits[index].as_secs_f64())
    }
}

fn router_label(router: Router) -> &'static str {
    match router {
        Router::Kernel => "netlink router",
        Router::Frr => "FRR over SSH",
    }
}

fn describe(cp: &CheckpointResult) -> String {
    let mut parts = Vec::new();
    for (router, diff) in &cp.check.diffs {
        if !diff.is_empty() {
            parts.push(format!("{}: {diff}", router.name()));
        }
    }
    if !cp.check.frr_kernel.is_empty() {
        parts.push(format!("FRR's kernel: {}", cp.check.frr_kernel));
    }
    let d = &cp.check.desired;
    if !d.unassigned.is_empty() {
        parts.push(format!("no subnet: {:?}", d.unassigned));
    }
    if !d.mismatched.is_empty() {
        parts.push(format!("annotation ≠ podCIDR: {:?}", d.mismatched));
    }
    if !cp.check.doubled.is_empty() {
        parts.push(format!("doubled FRR routes: {:?}", cp.check.doubled));
    }
    parts.extend(cp.check.unreadable.iter().cloned());
    parts.join("; ")
}

fn join_counts(counts: &BTreeMap<&'static str, usize>) -> String {
    counts
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
