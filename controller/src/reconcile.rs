//! Nodes in, subnets and desired routes out: the source-neutral heart of
//! the controller. It owns the IPAM ledger; the caller persists what it
//! assigned (state file, Node annotations) before the routes are published.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::{Config, IpamMode};
use crate::desired::{self, IgnoredOverride, NodeView, RouterDesired};
use crate::inventory::annotations::{self, NodeSettings};
use crate::inventory::{Snapshot, Standing};
use crate::ipam::{self, Claim, How, Ipam, Outcome};
use crate::report::{BULK, Reason, Reporter};
use crate::status::NodeRouting;

pub struct Reconciler {
    config: Arc<Config>,
    ipam: Ipam,
    reporter: Arc<dyn Reporter>,
    /// Per node, the next-hop overrides last in use: where a node stays
    /// routed while its override is unusable (a typo never moves a route
    /// that worked). Lost on restart; the node's own address then serves.
    last_good_overrides: HashMap<String, Vec<IpAddr>>,
}

/// The result of one snapshot.
pub struct Reconciled {
    /// Desired routes per router name.
    pub desired: BTreeMap<String, RouterDesired>,
    /// Names of the nodes the source lists.
    pub present: Vec<String>,
    /// Whether and why each usable listed node is routed, for node status.
    pub routing: BTreeMap<String, NodeRouting>,
    /// Next-hop overrides that were ignored, for `plan`.
    pub ignored_overrides: Vec<IgnoredOverride>,
}

impl Reconciler {
    pub fn new(config: Arc<Config>, reporter: Arc<dyn Reporter>) -> Self {
        let ipam = Ipam::new(&config.pool);
        Reconciler {
            config,
            ipam,
            reporter,
            last_good_overrides: HashMap::new(),
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

    /// Applies a complete snapshot of the nodes.
    pub fn apply(&mut self, snapshot: &Snapshot, complete: bool) -> Reconciled {
        for problem in &snapshot.problems {
            self.reporter
                .node_event(&problem.node, problem.reason, &problem.message);
        }
        let known_routers: Vec<&str> = self
            .config
            .routers
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        let settings: Vec<NodeSettings> = snapshot
            .nodes
            .iter()
            .map(|node| {
                let (settings, invalid) = annotations::parse(&node.annotations, &known_routers);
                for bad in invalid {
                    self.reporter.node_event(
                        &node.name,
                        Reason::InvalidAnnotation,
                        &bad.to_string(),
                    );
                }
                settings
            })
            .collect();
        let present: Vec<String> = snapshot
            .nodes
            .iter()
            .filter(|node| node.is_listed())
            .map(|node| node.name.clone())
            .collect();

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
            for node in gone {
                let released = self.ipam.release(&node);
                tracing::info!(node, ?released, "node is gone; its subnets are free again");
            }
        }

        let allocate = self.config.ipam == IpamMode::Allocate;
        let claims = snapshot
            .nodes
            .iter()
            .zip(&settings)
            .map(|(node, settings)| Claim {
                node: node.name.clone(),
                recorded: node.recorded.clone(),
                pinned: settings.pinned.clone(),
                wants_subnet: allocate && !settings.exclude && node.standing == Standing::Listed,
            });
        let outcomes = ipam::assign(&mut self.ipam, claims);
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
        for outcome in outcomes {
            self.report_outcome(outcome, in_bulk);
        }

        let views: Vec<NodeView<'_>> = snapshot
            .nodes
            .iter()
            .zip(&settings)
            .map(|(record, settings)| NodeView {
                record,
                settings,
                last_good_overrides: self
                    .last_good_overrides
                    .get(&record.name)
                    .map_or(&[], Vec::as_slice),
            })
            .collect();
        let computed = desired::compute(&self.config, &views, &self.ipam, complete);
        let routing = self.routing_of(&views, &computed.desired, &computed.unrouted);
        self.last_good_overrides = computed.overrides_in_use.into_iter().collect();
        for ignored in &computed.ignored_overrides {
            self.reporter.node_event(
                &ignored.node,
                Reason::InvalidAnnotation,
                &ignored.to_string(),
            );
        }
        for gap in computed.unrouted {
            self.reporter.node_event(
                &gap.node,
                Reason::Unroutable,
                &format!("{} is not routed: {}", gap.subnet, gap.why),
            );
        }
        Reconciled {
            desired: computed.desired,
            present,
            routing,
            ignored_overrides: computed.ignored_overrides,
        }
    }

    /// Whether each usable node is routed, and if not why; frozen and
    /// departed nodes have no status to show.
    fn routing_of(
        &self,
        views: &[NodeView<'_>],
        desired: &BTreeMap<String, RouterDesired>,
        unrouted: &[desired::Unrouted],
    ) -> BTreeMap<String, NodeRouting> {
        let routed: HashSet<&str> = desired
            .values()
            .flat_map(|router| router.routes.values().map(|route| route.node.as_str()))
            .collect();
        views
            .iter()
            .filter(|view| view.record.standing == Standing::Listed)
            .map(|view| {
                let name = view.record.name.as_str();
                let routing = if view.settings.exclude {
                    NodeRouting::Excluded
                } else if routed.contains(name) {
                    NodeRouting::Routed
                } else if let Some(gap) = unrouted.iter().find(|gap| gap.node == name) {
                    NodeRouting::Unrouted(format!("{} is not routed: {}", gap.subnet, gap.why))
                } else if self.ipam.subnets_of(name).is_empty() {
                    NodeRouting::Unrouted("no subnet assigned (see the node's Events)".into())
                } else {
                    NodeRouting::Unrouted("no router holds a route for it".into())
                };
                (name.to_owned(), routing)
            })
            .collect()
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
            .record(reconciler.ipam(), &reconciled.present)
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
