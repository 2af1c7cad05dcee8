//! The scale table of issue 12: the rows this run measured, each beside its
//! goal. A row the run did not measure at its goal's size says so; a row
//! measured at a reduced size (CI) is labelled with that size and has no
//! verdict, since the goal is for the full size.

use std::time::Duration;

use super::kubernetes::{self, millis};
use super::{file_cold_start, secs};

/// The Kubernetes sizes the goals are set at.
const SMALL: usize = 5_000;
const LARGE: usize = 20_000;
const FILE_NODES: usize = 10_000;

#[derive(Default)]
pub struct Table {
    rows: Vec<Row>,
}

struct Row {
    id: &'static str,
    measure: String,
    value: String,
    goal: &'static str,
    /// `None`: measured at another size than the goal's.
    met: Option<bool>,
}

impl Table {
    pub fn file_cold_start(&mut self, summary: file_cold_start::Summary) {
        let ratio = summary.controller.as_secs_f64() / summary.ip_batch.as_secs_f64();
        self.rows.push(Row {
            id: "a",
            measure: format!(
                "file inventory of {} nodes, process start → all routes in the kernel",
                summary.nodes
            ),
            value: format!(
                "{} = {ratio:.2}× ip -batch with nexthop objects ({})",
                secs(summary.controller),
                secs(summary.ip_batch)
            ),
            goal: "≤ 1.5× ip -batch with nexthop objects",
            met: (summary.nodes == FILE_NODES).then_some(ratio <= 1.5),
        });
    }

    pub fn kubernetes(&mut self, summary: kubernetes::Summary) {
        let nodes = summary.nodes;
        let at = |goal_size: usize| (nodes == goal_size).then_some(());
        let latency = format!(
            "p99 {} (p50 {})",
            millis(summary.created_p99),
            millis(summary.created_p50)
        );
        let (id, goal, limit) = if nodes == LARGE {
            ("b'", "p99 ≤ 10 ms", Duration::from_millis(10))
        } else {
            ("b", "p99 ≤ 5 ms", Duration::from_millis(5))
        };
        self.rows.push(Row {
            id,
            measure: format!("{nodes} kubelet-shaped nodes, node created → route in the kernel"),
            value: latency,
            goal,
            met: (nodes == SMALL || nodes == LARGE).then_some(summary.created_p99 <= limit),
        });
        if at(LARGE).is_some() {
            self.rows.push(Row {
                id: "c",
                measure: format!("{nodes} kubelet-shaped nodes, list received → converged"),
                value: secs(summary.list_to_converged),
                goal: "≤ 2 s",
                met: Some(summary.list_to_converged <= Duration::from_secs(2)),
            });
        }
        let (id, goal, limit) = if nodes == LARGE {
            ("d", "≤ 64 MiB", 64.0)
        } else {
            ("e", "≤ 40 MiB", 40.0)
        };
        self.rows.push(Row {
            id,
            measure: format!("{nodes} kubelet-shaped nodes, peak RSS"),
            value: format!("{:.1} MiB", summary.peak_rss_mib),
            goal,
            met: (nodes == SMALL || nodes == LARGE).then_some(summary.peak_rss_mib <= limit),
        });
        if let Some(idle) = summary.idle_cpu {
            self.rows.push(Row {
                id: "f",
                measure: format!("idle CPU after convergence, {nodes} nodes"),
                value: format!("{:.2} % of a core", idle * 100.0),
                goal: "< 1 % of a core",
                met: at(LARGE).map(|()| idle < 0.01),
            });
        }
    }

    pub fn print(&self) {
        if self.rows.is_empty() {
            return;
        }
        println!("\nIssue 12, scale: the rows this run measured (g and h: `--only full-table`)\n");
        println!("| # | measure | result | goal | |");
        println!("| --- | --- | --- | --- | --- |");
        for row in &self.rows {
            let verdict = match row.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "reduced size: no verdict",
            };
            println!(
                "| {} | {} | {} | {} | {verdict} |",
                row.id, row.measure, row.value, row.goal
            );
        }
    }
}
