//! Nodes in, subnets and desired routes out: the source-neutral heart of
//! the controller. It owns the IPAM ledger; the caller persists what it
//! assigned (state file, Node annotations) before the routes are published.
//!
//! Two paths give the same result (a property test holds them to it): a
//! full pass over every node, for the first list, a re-list and each
//! periodic resync; and an incremental pass over the nodes the source says
//! changed, which is what a single node event costs in a large cluster.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::{Config, IpamMode};
use crate::desired::{DesiredState, IgnoredOverride, NodeShare, NodeView, RouterDesired};
use crate::inventory::annotations::{self, NodeSettings};
use crate::inventory::{NodeRecord, Snapshot, Standing};
use crate::ipam::{self, Claim, How, Ipam, Outcome};
use crate::report::{BULK, Reason, Reporter};
use crate::status::NodeRouting;

/// Above this share of the nodes changed at once, a full pass is cheaper
/// than finding each change's place.
const INCREMENTAL_MAX_SHARE: usize = 8;

/// Up to this many nodes to find, a list beats a hash set.
const FEW: usize = 16;

pub struct Reconciler {
    config: Arc<Config>,
    ipam: Ipam,
    reporter: Arc<dyn Reporter>,
    /// Every node of the last snapshot, with what was worked out for it.
    /// Boxed: the map's slots stay small, and it has one per node.
    tracked: HashMap<String, Box<Tracked>>,
    desired: DesiredState,
    routing: imbl::OrdMap<String, NodeRouting>,
    present: imbl::OrdSet<String>,
    /// Nodes whose claim did not get all it asked for (a conflict, a
    /// refusal, an exhausted pool): a subnet freed anywhere may settle it,
    /// so the incremental pass claims for them again, as a full pass would.
    waiting: BTreeSet<String>,
    /// Whether the last pass was over a complete list; `None` before the
    /// first pass. The incremental pass only follows a complete one.
    last_complete: Option<bool>,
}

/// What the reconciler worked out for one node.
struct Tracked {
    record: Arc<NodeRecord>,
    settings: NodeSettings,
    share: NodeShare,
}

/// The result of one snapshot.
pub struct Reconciled {
    /// Desired routes per router name.
    pub desired: BTreeMap<String, RouterDesired>,
    /// Names of the nodes the source lists (a persistent set: a node
    /// joining one of 20,000 copies none of the rest).
    pub present: imbl::OrdSet<String>,
    /// Whether and why each usable listed node is routed, for node status.
    pub routing: imbl::OrdMap<String, NodeRouting>,
    /// Nodes whose subnets may have changed in this pass (`None`: any).
    pub touched: Option<Vec<String>>,
}

impl Reconciler {
    pub fn new(config: Arc<Config>, reporter: Arc<dyn Reporter>) -> Self {
        let ipam = Ipam::new(&config.pool);
        let desired = DesiredState::new(&config, false);
        Reconciler {
            config,
            ipam,
            reporter,
            tracked: HashMap::new(),
            desired,
            routing: imbl::OrdMap::new(),
            present: imbl::OrdSet::new(),
            waiting: BTreeSet::new(),
            last_complete: None,
        }
    }

    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    /// Continues next-fit where it stopped before a restart (the subnets
    /// the ledger saved as "next", one per family).
    pub fn resume_after(&mut self, next: &[IpNet]) {
        for subnet in next {
            self.ipam.restore_cursor(*subnet);
        }
    }

    /// Next-hop overrides that cannot be used, for `plan` (the controller
    /// reports them as Events as it goes).
    pub fn ignored_overrides(&self) -> Vec<IgnoredOverride> {
        let mut ignored: Vec<IgnoredOverride> = self
            .tracked
            .values()
            .flat_map(|tracked| tracked.share.ignored_overrides.iter().cloned())
            .collect();
        ignored.sort_by(|a, b| (&a.node, a.value).cmp(&(&b.node, b.value)));
        ignored
    }

    /// Applies a snapshot of the nodes: only its changed nodes when the
    /// source says which they are and the last pass was complete too,
    /// every node otherwise.
    pub fn apply(&mut self, snapshot: &Snapshot, complete: bool) -> Reconciled {
        let touched = match &snapshot.changed {
            Some(changed)
                if complete
                    && self.last_complete == Some(true)
                    && changed.len() <= snapshot.nodes.len() / INCREMENTAL_MAX_SHARE + 1 =>
            {
                Some(self.apply_changes(snapshot, changed))
            }
            _ => {
                self.apply_all(snapshot, complete);
                None
            }
        };
        self.last_complete = Some(complete);
        Reconciled {
            desired: self.desired.per_router(),
            present: self.present.clone(),
            routing: self.routing.clone(),
            touched,
        }
    }

    /// The full pass: every node worked out afresh.
    fn apply_all(&mut self, snapshot: &Snapshot, complete: bool) {
        for problem in &snapshot.problems {
            self.reporter
                .node_event(&problem.node, problem.reason, &problem.message);
        }
        if complete {
            // Departed nodes are in the snapshot too: they keep their subnets.
            let known: HashSet<&str> = snapshot
                .nodes
                .iter()
                .map(|node| node.name.as_str())
                .collect();
            let gone: Vec<String> = self
                .ipam
                .assignments()
                .map(|(node, _)| node.to_owned())
                .filter(|node| !known.contains(node.as_str()))
                .collect();
            self.release(gone);
        }
        let settings: Vec<NodeSettings> = snapshot
            .nodes
            .iter()
            .map(|node| self.settings_of(node))
            .collect();
        let nodes: Vec<(&Arc<NodeRecord>, &NodeSettings)> =
            snapshot.nodes.iter().zip(&settings).collect();
        self.waiting = self.claim(&nodes, snapshot);

        // Every node is worked out afresh, but a share that came out the
        // same stays in place: the maps keep what they share with the last
        // published ones, and a resync of 20,000 unchanged nodes changes
        // nothing downstream.
        let mut previous = std::mem::take(&mut self.tracked);
        self.desired.set_complete(complete);
        for (record, settings) in nodes {
            let old = previous.remove(&record.name);
            self.work_out(record, settings.clone(), old);
        }
        for (name, old) in previous {
            self.desired.remove(&name, &old.share);
            self.routing.remove(&name);
        }
        self.present = snapshot
            .nodes
            .iter()
            .filter(|node| node.is_listed())
            .map(|node| node.name.clone())
            .collect();
    }

    /// The incremental pass: only the nodes named in `changed` (and those
    /// waiting for a subnet) are worked out again. Returns the nodes whose
    /// subnets may have changed.
    fn apply_changes(&mut self, snapshot: &Snapshot, changed: &BTreeSet<String>) -> Vec<String> {
        for problem in snapshot
            .problems
            .iter()
            .filter(|problem| changed.contains(&problem.node))
        {
            self.reporter
                .node_event(&problem.node, problem.reason, &problem.message);
        }
        // The changed nodes and those waiting, oldest first as the claims
        // must be: one walk over the snapshot finds their places.
        let wanted: Vec<&str> = changed
            .iter()
            .chain(&self.waiting)
            .map(String::as_str)
            .collect();
        let found: Vec<&Arc<NodeRecord>> = if wanted.len() <= FEW {
            // Comparing a name with a few is cheaper than hashing it.
            snapshot
                .nodes
                .iter()
                .filter(|node| wanted.contains(&node.name.as_str()))
                .collect()
        } else {
            let wanted: HashSet<&str> = wanted.into_iter().collect();
            snapshot
                .nodes
                .iter()
                .filter(|node| wanted.contains(node.name.as_str()))
                .collect()
        };

        let still_here: HashSet<&str> = found.iter().map(|node| node.name.as_str()).collect();
        let gone: Vec<String> = changed
            .iter()
            .filter(|name| !still_here.contains(name.as_str()))
            .cloned()
            .collect();
        for name in &gone {
            if let Some(old) = self.tracked.remove(name) {
                self.desired.remove(name, &old.share);
                self.routing.remove(name);
                self.present.remove(name);
            }
        }
        self.release(gone.iter().cloned());
        for name in &gone {
            self.waiting.remove(name);
        }

        let settings: Vec<NodeSettings> = found
            .iter()
            .map(|node| match self.tracked.get(&node.name) {
                Some(known) if Arc::ptr_eq(&known.record, node) => known.settings.clone(),
                _ => self.settings_of(node),
            })
            .collect();
        let nodes: Vec<(&Arc<NodeRecord>, &NodeSettings)> =
            found.iter().copied().zip(&settings).collect();
        let waiting = self.claim(&nodes, snapshot);
        for (record, settings) in &nodes {
            let old = self.tracked.remove(&record.name);
            if record.is_listed() {
                if !self.present.contains(&record.name) {
                    self.present.insert(record.name.clone());
                }
            } else {
                self.present.remove(&record.name);
            }
            self.work_out(record, (*settings).clone(), old);
        }
        for (record, _) in &nodes {
            self.waiting.remove(&record.name);
        }
        self.waiting.extend(waiting);
        nodes
            .iter()
            .map(|(record, _)| record.name.clone())
            .chain(gone)
            .collect()
    }

    /// Parses a node's annotations; what is invalid is reported and ignored.
    fn settings_of(&self, node: &NodeRecord) -> NodeSettings {
        let known_routers: Vec<&str> = self
            .config
            .routers
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        let (settings, invalid) = annotations::parse(&node.annotations, &known_routers);
        for bad in invalid {
            self.reporter
                .node_event(&node.name, Reason::InvalidAnnotation, &bad.to_string());
        }
        settings
    }

    /// Frees the subnets of nodes that no longer exist.
    fn release(&mut self, gone: impl IntoIterator<Item = String>) {
        for node in gone {
            if self.ipam.subnets_of(&node).is_empty() {
                continue;
            }
            let released = self.ipam.release(&node);
            tracing::info!(node, ?released, "node is gone; its subnets are free again");
        }
    }

    /// Runs the nodes' claims (oldest first) through the ledger, reports
    /// what became of them, and returns the nodes left waiting. `snapshot`
    /// holds every node, these and the rest.
    fn claim(
        &mut self,
        nodes: &[(&Arc<NodeRecord>, &NodeSettings)],
        snapshot: &Snapshot,
    ) -> BTreeSet<String> {
        let allocate = self.config.ipam == IpamMode::Allocate;
        let claims = nodes.iter().map(|(node, settings)| Claim {
            node: node.name.clone(),
            recorded: node.recorded.clone(),
            pinned: settings.pinned.clone(),
            wants_subnet: allocate && !settings.exclude && node.standing == Standing::Listed,
        });
        let everyone = snapshot.nodes.iter().rev().map(|node| node.name.as_str());
        let outcomes = ipam::assign_among(&mut self.ipam, claims.collect(), everyone);
        let assigned = outcomes
            .iter()
            .filter(|outcome| matches!(outcome, Outcome::Assigned { .. }))
            .count();
        let in_bulk = assigned > BULK;
        if in_bulk {
            let count = |wanted: How| {
                outcomes
                    .iter()
                    .filter(|o| matches!(o, Outcome::Assigned { how, .. } if *how == wanted))
                    .count()
            };
            tracing::info!(
                restored = count(How::Restored),
                pinned = count(How::Pinned),
                fresh = count(How::Fresh),
                "{assigned} subnets assigned"
            );
        }
        let mut waiting = BTreeSet::new();
        for outcome in outcomes {
            if let Outcome::Conflict { node, .. }
            | Outcome::Refused { node, .. }
            | Outcome::PoolExhausted { node, .. } = &outcome
            {
                waiting.insert(node.clone());
            }
            self.report_outcome(outcome, in_bulk);
        }
        waiting
    }

    /// Works out a node's share of the desired routes and its routing, puts
    /// them in place of what was worked out for it before (`old`), and
    /// reports what cannot be honoured.
    fn work_out(
        &mut self,
        record: &Arc<NodeRecord>,
        settings: NodeSettings,
        old: Option<Box<Tracked>>,
    ) {
        let last_good: &[IpAddr] = old
            .as_ref()
            .map_or(&[], |old| old.share.overrides_in_use.as_slice());
        let view = NodeView {
            record,
            settings: &settings,
            last_good_overrides: last_good,
        };
        let share = crate::desired::share_of(&self.config, &view, &self.ipam);
        match &old {
            Some(old) if old.share == share => {}
            Some(old) => {
                self.desired.remove(&record.name, &old.share);
                self.desired.add(&record.name, &share);
            }
            None => self.desired.add(&record.name, &share),
        }
        if record.standing == Standing::Listed {
            let routing = self.routing_of(record, &settings, &share);
            if self.routing.get(&record.name) != Some(&routing) {
                self.routing.insert(record.name.clone(), routing);
            }
        } else {
            self.routing.remove(&record.name);
        }
        for ignored in &share.ignored_overrides {
            self.reporter.node_event(
                &ignored.node,
                Reason::InvalidAnnotation,
                &ignored.to_string(),
            );
        }
        for gap in &share.unrouted {
            self.reporter.node_event(
                &gap.node,
                Reason::Unroutable,
                &format!("{} is not routed: {}", gap.subnet, gap.why),
            );
        }
        self.tracked.insert(
            record.name.clone(),
            Box::new(Tracked {
                record: record.clone(),
                settings,
                share,
            }),
        );
    }

    /// Whether a usable node is routed, and if not why.
    fn routing_of(
        &self,
        record: &NodeRecord,
        settings: &NodeSettings,
        share: &NodeShare,
    ) -> NodeRouting {
        if settings.exclude {
            NodeRouting::Excluded
        } else if share.is_routed() {
            NodeRouting::Routed
        } else if let Some(gap) = share.unrouted.first() {
            NodeRouting::Unrouted(format!("{} is not routed: {}", gap.subnet, gap.why))
        } else if self.ipam.subnets_of(&record.name).is_empty() {
            NodeRouting::Unrouted("no subnet assigned (see the node's Events)".into())
        } else {
            NodeRouting::Unrouted("no router holds a route for it".into())
        }
    }

    /// Tells the node what became of its claim; an assignment among many
    /// (`in_bulk`) only at debug in the log, which has had a summary.
    fn report_outcome(&self, outcome: Outcome, in_bulk: bool) {
        let routine = matches!(outcome, Outcome::Assigned { .. });
        let (node, reason, message) = match outcome {
            Outcome::Assigned { node, subnet, how } => (
                node,
                Reason::SubnetAssigned,
                format!("subnet {subnet} assigned ({how:?})").to_lowercase(),
            ),
            Outcome::Conflict {
                node,
                subnet,
                holder,
                given_fresh,
            } => {
                let consequence = if given_fresh {
                    "a fresh subnet was assigned instead"
                } else {
                    "the node keeps no subnet of that family until the conflict is resolved"
                };
                (
                    node,
                    Reason::SubnetConflict,
                    format!("subnet {subnet} is held by older node {holder}; {consequence}"),
                )
            }
            Outcome::Refused {
                node,
                refused,
                pinned,
            } => {
                let what = if pinned {
                    "pinned subnet"
                } else {
                    "recorded subnet (the node keeps no route until this is resolved: free the \
                     subnet, or remove the node and add it back for a fresh one)"
                };
                let reason = if pinned {
                    Reason::InvalidAnnotation
                } else {
                    Reason::SubnetConflict
                };
                (node, reason, format!("{what} refused: {refused}"))
            }
            Outcome::PinIgnored {
                node,
                pinned,
                holds,
            } => (
                node,
                Reason::InvalidAnnotation,
                format!(
                    "annotation {}={pinned} ignored: the node holds {holds}, and a node's subnet never changes while it exists",
                    annotations::SUBNET
                ),
            ),
            Outcome::PoolExhausted { node, family } => (
                node,
                Reason::CidrNotAvailable,
                format!(
                    "no {family} subnet left in the pool; add a CIDR to pool.cidrs or free a subnet"
                ),
            ),
        };
        if routine && in_bulk {
            self.reporter.node_event_in_bulk(&node, reason, &message);
        } else {
            self.reporter.node_event(&node, reason, &message);
        }
    }
}

#[cfg(test)]
mod incremental_tests;
#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::file::FileInventory;
    use std::time::Duration;

    use crate::report::LogReporter;

    fn config(dir: &std::path::Path, reserved: &str) -> Arc<Config> {
        config_with_pool(
            dir,
            &format!("{{cidrs: [11.11.0.0/16], reserved: [{reserved}]}}"),
        )
    }

    fn config_with_pool(dir: &std::path::Path, pool: &str) -> Arc<Config> {
        let text = format!(
            "pool: {pool}\n\
             nodes: {{source: file, file: {}}}\n\
             routers: [{{name: rtr, driver: netlink}}]\n",
            dir.join("nodes.yaml").display()
        );
        Arc::new(Config::parse(&text).expect("valid config"))
    }

    fn state(dir: &std::path::Path) -> crate::inventory::state::State {
        crate::inventory::state::State::load(&dir.join("nodes.yaml.state.json")).expect("state")
    }

    /// One controller cycle as `run` does it: read, reconcile, record.
    fn cycle(config: &Arc<Config>, dir: &std::path::Path) -> Reconciler {
        let mut inventory = FileInventory::open(&dir.join("nodes.yaml")).expect("open");
        let mut reconciler =
            Reconciler::new(config.clone(), Arc::new(LogReporter::new(Duration::ZERO)));
        reconciler.resume_after(&inventory.state().next);
        let snapshot = inventory.read().expect("read");
        let reconciled = reconciler.apply(&snapshot, true);
        inventory
            .record(
                reconciler.ipam(),
                &reconciled.present.iter().cloned().collect::<Vec<_>>(),
            )
            .expect("record");
        reconciler
    }

    #[test]
    fn a_refused_recorded_subnet_is_never_swapped_for_a_fresh_one_on_a_later_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("nodes.yaml"),
            "nodes:\n  - {name: node1, address: 192.168.2.1}\n  - {name: node2, address: 192.168.3.3}\n",
        )
        .expect("write");
        let first = cycle(&config(dir.path(), "11.11.100.0/24"), dir.path());
        let node2 = first.ipam().subnets_of("node2").to_vec();
        assert_eq!(node2.len(), 1);

        // node2's subnet becomes reserved: its recorded subnet is refused.
        let reserved = config(dir.path(), &node2[0].to_string());
        for _ in 0..3 {
            let again = cycle(&reserved, dir.path());
            assert!(
                again.ipam().subnets_of("node2").is_empty(),
                "node2 got a fresh subnet"
            );
            assert_eq!(
                again.ipam().subnets_of("node1"),
                first.ipam().subnets_of("node1")
            );
        }
        // Once the reservation is lifted, node2 gets its own subnet back.
        let lifted = cycle(&config(dir.path(), "11.11.100.0/24"), dir.path());
        assert_eq!(lifted.ipam().subnets_of("node2"), node2.as_slice());
    }

    #[test]
    fn a_node_missing_from_one_read_comes_back_with_the_same_subnet_and_nobody_takes_it_meanwhile()
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = dir.path().join("nodes.yaml");
        let both = "nodes:\n  - {name: node1, address: 192.168.2.1}\n  - {name: node2, address: 192.168.3.3}\n";
        std::fs::write(&nodes, both).expect("write");
        let config = config(dir.path(), "11.11.100.0/24");
        let first = cycle(&config, dir.path());
        let node2 = first.ipam().subnets_of("node2").to_vec();

        // node2 is missing (a half-written file); a new node arrives.
        std::fs::write(&nodes, "nodes:\n  - {name: node1, address: 192.168.2.1}\n  - {name: node3, address: 192.168.3.4}\n")
            .expect("write");
        let missing = cycle(&config, dir.path());
        assert_ne!(
            missing.ipam().subnets_of("node3"),
            node2.as_slice(),
            "node2's subnet was handed out"
        );
        assert_eq!(
            missing.ipam().holder_of(&node2[0]),
            Some("node2"),
            "node2's subnet is not held for it"
        );

        let desired = {
            let mut inventory = FileInventory::open(&nodes).expect("open");
            let mut reconciler =
                Reconciler::new(config.clone(), Arc::new(LogReporter::new(Duration::ZERO)));
            reconciler
                .apply(&inventory.read().expect("read"), true)
                .desired
        };
        assert!(
            !desired["rtr"].routes.contains_key(&node2[0]),
            "a departed node is still routed"
        );

        std::fs::write(
            &nodes,
            format!("{both}  - {{name: node3, address: 192.168.3.4}}\n"),
        )
        .expect("write");
        let back = cycle(&config, dir.path());
        assert_eq!(back.ipam().subnets_of("node2"), node2.as_slice());
        let state =
            std::fs::read_to_string(dir.path().join("nodes.yaml.state.json")).expect("state");
        assert!(!state.contains("departed"), "{state}");
    }

    #[test]
    fn a_node_back_after_its_grace_never_revives_a_subnet_someone_else_holds_now() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nodes = dir.path().join("nodes.yaml");
        let small = config_with_pool(dir.path(), "{cidrs: [11.11.0.0/23]}"); // two subnets
        std::fs::write(
            &nodes,
            "nodes:\n  - {name: a, address: 192.168.2.1}\n  - {name: x, address: 192.168.2.2}\n",
        )
        .expect("write");
        let first = cycle(&small, dir.path());
        let x_subnet = first.ipam().subnets_of("x")[0];
        std::fs::write(&nodes, "nodes:\n  - {name: a, address: 192.168.2.1}\n").expect("write");
        cycle(&small, dir.path());

        // The grace runs out while the controller is down.
        let state_path = dir.path().join("nodes.yaml.state.json");
        let mut expired = state(dir.path());
        expired.departed.get_mut("x").expect("x departed").since = 0;
        expired.save(&state_path).expect("save");

        // z arrives, and x comes back in the same read, after z.
        std::fs::write(
            &nodes,
            "nodes:\n  - {name: a, address: 192.168.2.1}\n  - {name: z, address: 192.168.2.3}\n  - {name: x, address: 192.168.2.2}\n",
        )
        .expect("write");
        let after = cycle(&small, dir.path());
        assert_eq!(after.ipam().subnets_of("z"), &[x_subnet]);
        assert!(after.ipam().subnets_of("x").is_empty(), "the pool is full");
        let recorded = state(dir.path());
        assert!(
            !recorded.nodes.contains_key("x"),
            "x's expired subnet was revived: {recorded:?}"
        );
        assert_eq!(recorded.nodes["z"].subnets, vec![x_subnet]);
    }

    #[test]
    fn a_refused_subnet_of_one_family_stays_recorded_while_the_other_family_is_held() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("nodes.yaml"),
            "nodes:\n  - {name: node1, address: '192.168.2.1, fd00::1'}\n",
        )
        .expect("write");
        let dual = |reserved: &str| {
            config_with_pool(
                dir.path(),
                &format!("{{cidrs: [11.11.0.0/16, 'fd11:11::/48'], reserved: [{reserved}]}}"),
            )
        };
        let first = cycle(&dual("11.11.200.0/24"), dir.path());
        let both = first.ipam().subnets_of("node1").to_vec();
        assert_eq!(both.len(), 2);

        let v4 = both.iter().find(|s| matches!(s, IpNet::V4(_))).expect("v4");
        let refused = cycle(&dual(&v4.to_string()), dir.path());
        assert_eq!(
            refused.ipam().subnets_of("node1").len(),
            1,
            "only the IPv6 subnet is held"
        );
        assert_eq!(
            state(dir.path()).nodes["node1"].subnets,
            both,
            "the refused IPv4 subnet was forgotten"
        );

        let lifted = cycle(&dual("11.11.200.0/24"), dir.path());
        assert_eq!(lifted.ipam().subnets_of("node1"), both.as_slice());
    }
}
