//! Nodes in, subnets and desired routes out: the source-neutral heart of
//! the controller. It owns the IPAM ledger; the caller persists what it
//! assigned (state file, Node annotations) before the routes are published.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{Config, IpamMode};
use crate::desired::{self, NodeView, RouterDesired};
use crate::inventory::Snapshot;
use crate::inventory::annotations::{self, NodeSettings};
use crate::ipam::{self, Claim, Ipam, Outcome};
use crate::report::{Reason, Reporter};

pub struct Reconciler {
    config: Arc<Config>,
    ipam: Ipam,
    reporter: Arc<dyn Reporter>,
}

/// The result of one snapshot.
pub struct Reconciled {
    /// Desired routes per router name.
    pub desired: BTreeMap<String, RouterDesired>,
    /// Names of the nodes in the snapshot.
    pub present: Vec<String>,
}

impl Reconciler {
    pub fn new(config: Arc<Config>, reporter: Arc<dyn Reporter>) -> Self {
        let ipam = Ipam::new(&config.pool);
        Reconciler {
            config,
            ipam,
            reporter,
        }
    }

    pub fn ipam(&self) -> &Ipam {
        &self.ipam
    }

    pub fn ipam_mut(&mut self) -> &mut Ipam {
        &mut self.ipam
    }

    /// Applies a complete snapshot of the nodes.
    pub fn apply(&mut self, snapshot: &Snapshot, complete: bool) -> Reconciled {
        for problem in &snapshot.problems {
            self.reporter.node_event(
                &problem.node,
                Reason::InvalidInventoryEntry,
                &problem.message,
            );
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
            .map(|node| node.name.clone())
            .collect();

        if complete {
            let gone: Vec<String> = self
                .ipam
                .assignments()
                .map(|(node, _)| node.to_owned())
                .filter(|node| !present.contains(node))
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
                wants_subnet: allocate && !settings.exclude && !node.frozen,
            });
        for outcome in ipam::assign(&mut self.ipam, claims) {
            self.report_outcome(outcome);
        }

        let views: Vec<NodeView<'_>> = snapshot
            .nodes
            .iter()
            .zip(&settings)
            .map(|(record, settings)| NodeView { record, settings })
            .collect();
        let (desired, unrouted) = desired::compute(&self.config, &views, &self.ipam, complete);
        for gap in unrouted {
            self.reporter.node_event(
                &gap.node,
                Reason::Unroutable,
                &format!("{} is not routed: {}", gap.subnet, gap.why),
            );
        }
        Reconciled { desired, present }
    }

    fn report_outcome(&self, outcome: Outcome) {
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
                    "recorded subnet"
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
        self.reporter.node_event(&node, reason, &message);
    }
}
