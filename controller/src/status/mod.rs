//! Per node, whether every router that should hold its route holds it: the
//! `nativeroute.io/status` annotation (`core-1=programmed,tor-a=error`) and
//! the NetworkUnavailable condition.
//!
//! Workers publish what their last sync confirmed per route; the
//! reconciler publishes which nodes are routed and which are not (and
//! why). A task folds both into one status per node, and hands the ones
//! that changed to a [`StatusSink`] (the Node writer). It waits for a quiet
//! moment first: status is not on the path of a route, and a burst of
//! changes should become one write per node, not several.

pub mod board;
mod summary;

pub use summary::{NodeStatus, summarize};

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::select_all;
use ipnet::IpNet;
use tokio::sync::watch;

use crate::desired::RouterDesired;

/// How long status waits for changes to settle before it is written.
const SETTLE: Duration = Duration::from_millis(100);

/// What a router's last sync confirmed about one desired route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum RouteState {
    Programmed,
    /// Not confirmed yet (the router has not synced this route).
    Pending,
    /// A route nativeroute does not own holds the destination.
    Blocked,
    /// The router refused the change.
    Error,
}

impl RouteState {
    pub fn as_str(self) -> &'static str {
        match self {
            RouteState::Programmed => "programmed",
            RouteState::Pending => "pending",
            RouteState::Blocked => "blocked",
            RouteState::Error => "error",
        }
    }
}

/// One router's confirmed states, by destination, with the next hop they
/// were confirmed for (a state for an older next hop does not count).
/// A persistent map: a sync that changed one route publishes a copy that
/// shares the rest.
pub type RouteStates = imbl::HashMap<IpNet, (IpAddr, RouteState)>;

/// Whether and why a node is routed, as the reconciler decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeRouting {
    /// Its routes are in the routers' desired routes.
    Routed,
    /// `nativeroute.io/exclude`: nativeroute leaves it alone.
    Excluded,
    /// It should be routed but is not, for this reason.
    Unrouted(String),
}

/// What the reconciler hands the status task after each snapshot.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RoutingPlan {
    pub nodes: imbl::OrdMap<String, NodeRouting>,
    pub desired: BTreeMap<String, Arc<RouterDesired>>,
}

/// The NetworkUnavailable condition a node should show.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NetworkCondition {
    pub unavailable: bool,
    pub reason: &'static str,
    pub message: String,
    /// Written only over a condition with this reason (one nativeroute
    /// wrote), never over someone else's or where there is none.
    pub replaces_only: Option<&'static str>,
}

/// Where node statuses go.
pub trait StatusSink: Send + Sync {
    /// `condition` is `None` when the condition should stay as it is
    /// (nothing confirmed yet, or the node is excluded).
    fn set_status(&self, node: &str, summary: String, condition: Option<NetworkCondition>);
}

fn fingerprint(status: &NodeStatus) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    status.hash(&mut hasher);
    hasher.finish()
}

/// Folds plans and router states into node statuses until `shutdown`.
pub async fn run_status(
    mut plan: watch::Receiver<Arc<RoutingPlan>>,
    mut routers: BTreeMap<String, watch::Receiver<Arc<RouteStates>>>,
    sink: Arc<dyn StatusSink>,
    manage_condition: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    // What was last handed to the sink, as a hash: at thousands of nodes
    // keeping every status string twice would cost megabytes.
    let mut written: HashMap<String, u64> = HashMap::new();
    // Routers that finished a sync since this term began.
    let mut reported: BTreeSet<String> = BTreeSet::new();
    // Summing up every node costs milliseconds at 20,000 nodes: the wait
    // before the next round grows with it, so that status takes at most a
    // tenth of a core from the work that programs routes.
    let mut settle = SETTLE;
    loop {
        let names: Vec<String> = routers.keys().cloned().collect();
        {
            // Which router published, by its place among `routers`.
            let router_changed = async {
                if routers.is_empty() {
                    return futures::future::pending().await;
                }
                let waits = routers.values_mut().map(|r| Box::pin(r.changed()));
                let (changed, index, _) = select_all(waits).await;
                changed.map(|()| index)
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                changed = plan.changed() => if changed.is_err() { return },
                changed = router_changed => match changed {
                    Ok(index) => { reported.extend(names.get(index).cloned()); }
                    Err(_) => return,
                },
            }
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(settle) => {}
        }
        let round = std::time::Instant::now();
        let current_plan = plan.borrow_and_update().clone();
        for (name, receiver) in &routers {
            if receiver.has_changed().unwrap_or(false) {
                reported.insert(name.clone());
            }
        }
        let states: BTreeMap<String, Arc<RouteStates>> = routers
            .iter_mut()
            .map(|(name, r)| (name.clone(), r.borrow_and_update().clone()))
            .filter(|(name, _)| reported.contains(name))
            .collect();
        written.retain(|node, _| current_plan.nodes.contains_key(node));
        for (node, status) in summarize(&current_plan, &states) {
            let fingerprint = fingerprint(&status);
            if written.get(node) == Some(&fingerprint) {
                continue;
            }
            let NodeStatus { summary, condition } = status;
            sink.set_status(node, summary, condition.filter(|_| manage_condition));
            written.insert(node.to_owned(), fingerprint);
        }
        settle = SETTLE.max(round.elapsed() * 9);
    }
}
