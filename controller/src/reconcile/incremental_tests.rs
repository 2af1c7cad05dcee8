//! The incremental pass against the full pass: random sequences of node
//! events, and after every step the state the incremental pass reached
//! must be exactly the one a full pass over the same snapshot reaches.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;

use super::{Reconciled, Reconciler};
use crate::config::Config;
use crate::inventory::annotations::{EXCLUDE, NEXT_HOP, ROUTERS, SUBNET};
use crate::inventory::{NodeRecord, Snapshot, Standing};
use crate::report::LogReporter;

const NODES: usize = 6;

/// Three IPv4 subnets (a fourth is reserved) and four IPv6 ones: a few
/// nodes exhaust the pool, so conflicts and waiting nodes come up often.
fn config() -> Arc<Config> {
    let text = "pool:\n\
                \x20 cidrs: [11.11.0.0/28, 'fd11::/124']\n\
                \x20 nodeMaskV4: 30\n\
                \x20 nodeMaskV6: 126\n\
                \x20 reserved: [11.11.0.12/30]\n\
                nodes: {source: file, file: /nonexistent/nodes.yaml}\n\
                routers:\n\
                \x20 - {name: a, driver: netlink, nodeNetworks: [192.168.1.0/24, 'fd00:1::/64']}\n\
                \x20 - {name: b, driver: netlink, netns: rtr-b, nodeNetworks: [192.168.2.0/24]}\n";
    Arc::new(Config::parse(text).expect("the test config is valid"))
}

/// One node as the test's source holds it.
#[derive(Clone, Debug)]
struct Entry {
    born: u64,
    record: Arc<NodeRecord>,
}

#[derive(Clone, Debug)]
enum Step {
    /// The node appears or changes, with these fields.
    Upsert {
        node: usize,
        addresses: Vec<&'static str>,
        annotations: Vec<(&'static str, &'static str)>,
        standing: Standing,
    },
    /// The node is deleted.
    Remove { node: usize },
    /// The source writes back what the ledger holds for the node (a
    /// podCIDR or state file), as a real source does after a pass.
    RecordBack { node: usize },
    /// The node claims it holds `subnet` (someone else's, say).
    Forge { node: usize, subnet: &'static str },
    /// A periodic resync: the source does not say what changed.
    Resync,
}

fn step() -> impl Strategy<Value = Step> {
    let node = 0..NODES;
    let address = prop::sample::select(vec![
        "192.168.1.10",
        "192.168.1.11",
        "192.168.2.10",
        "192.168.3.10",
        "fd00:1::10",
    ]);
    let annotation = prop::sample::select(vec![
        (NEXT_HOP, "192.168.1.99"),
        (NEXT_HOP, "192.168.2.99"),
        (NEXT_HOP, "11.11.0.1"),
        (NEXT_HOP, "10.9.9.9"),
        (NEXT_HOP, "not-an-address"),
        (SUBNET, "11.11.0.4/30"),
        (SUBNET, "11.11.0.0/30"),
        (SUBNET, "11.11.0.12/30"),
        (SUBNET, "fd11::4/126"),
        (SUBNET, "11.11.0.3/32"),
        (ROUTERS, "a"),
        (ROUTERS, "b"),
        (ROUTERS, "nowhere"),
        (EXCLUDE, "true"),
    ]);
    let standing = prop::sample::select(vec![
        Standing::Listed,
        Standing::Listed,
        Standing::Listed,
        Standing::Frozen,
        Standing::Departed,
    ]);
    prop_oneof![
        6 => (node.clone(), prop::collection::vec(address, 0..3),
              prop::collection::vec(annotation, 0..3), standing)
            .prop_map(|(node, addresses, annotations, standing)| Step::Upsert {
                node, addresses, annotations, standing,
            }),
        2 => node.clone().prop_map(|node| Step::Remove { node }),
        3 => node.clone().prop_map(|node| Step::RecordBack { node }),
        1 => (node, prop::sample::select(vec!["11.11.0.0/30", "11.11.0.8/30", "fd11::/126"]))
            .prop_map(|(node, subnet)| Step::Forge { node, subnet }),
        1 => Just(Step::Resync),
    ]
}

/// The nodes of the test's source, and what changed since its last
/// snapshot.
#[derive(Default)]
struct Source {
    nodes: BTreeMap<String, Entry>,
    born: u64,
}

impl Source {
    /// Applies a step; returns the names it changed (`None`: a resync).
    fn take(&mut self, step: &Step, reconciler: &Reconciler) -> Option<BTreeSet<String>> {
        let name = |node: &usize| format!("node{node}");
        let mut changed = BTreeSet::new();
        match step {
            Step::Upsert {
                node,
                addresses,
                annotations,
                standing,
            } => {
                let name = name(node);
                let recorded = self
                    .nodes
                    .get(&name)
                    .map(|entry| entry.record.recorded.clone())
                    .unwrap_or_default();
                let mut parsed: Vec<std::net::IpAddr> = Vec::new();
                for address in addresses {
                    let address: std::net::IpAddr = address.parse().expect("test address");
                    if !parsed
                        .iter()
                        .any(|held| held.is_ipv4() == address.is_ipv4())
                    {
                        parsed.push(address);
                    }
                }
                let record = NodeRecord {
                    name: name.clone(),
                    addresses: parsed,
                    annotations: annotations
                        .iter()
                        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                        .collect(),
                    recorded,
                    standing: *standing,
                };
                self.put(&name, record);
                changed.insert(name);
            }
            Step::Remove { node } => {
                let name = name(node);
                if self.nodes.remove(&name).is_some() {
                    changed.insert(name);
                }
            }
            Step::RecordBack { node } => {
                let name = name(node);
                let held = reconciler.ipam().subnets_of(&name).to_vec();
                if let Some(entry) = self.nodes.get(&name)
                    && entry.record.recorded != held
                    && !held.is_empty()
                {
                    let record = NodeRecord {
                        recorded: held,
                        ..(*entry.record).clone()
                    };
                    self.put(&name, record);
                    changed.insert(name);
                }
            }
            Step::Forge { node, subnet } => {
                let name = name(node);
                if let Some(entry) = self.nodes.get(&name) {
                    let record = NodeRecord {
                        recorded: vec![subnet.parse().expect("test subnet")],
                        ..(*entry.record).clone()
                    };
                    self.put(&name, record);
                    changed.insert(name);
                }
            }
            Step::Resync => return None,
        }
        Some(changed)
    }

    /// A node keeps its age through changes; a new one is the youngest.
    fn put(&mut self, name: &str, record: NodeRecord) {
        let born = match self.nodes.get(name) {
            Some(entry) => entry.born,
            None => {
                self.born += 1;
                self.born
            }
        };
        let record = Arc::new(record);
        self.nodes.insert(name.to_owned(), Entry { born, record });
    }

    /// Oldest first; unchanged nodes are the very same records as before.
    fn snapshot(&self, changed: Option<BTreeSet<String>>) -> Snapshot {
        let mut entries: Vec<&Entry> = self.nodes.values().collect();
        entries.sort_by_key(|entry| entry.born);
        Snapshot {
            nodes: entries.iter().map(|entry| entry.record.clone()).collect(),
            problems: Vec::new(),
            changed,
        }
    }
}

/// Everything a pass decides, in a form two reconcilers can be compared by.
#[derive(Debug, PartialEq)]
struct Outcome {
    desired: BTreeMap<String, String>,
    /// Compared by content (hash maps print in no stable order).
    live: Vec<crate::desired::LiveNodes>,
    routing: String,
    present: Vec<String>,
    assignments: BTreeMap<String, Vec<ipnet::IpNet>>,
    cursors: String,
    ignored_overrides: String,
}

fn outcome(reconciler: &Reconciler, reconciled: &Reconciled) -> Outcome {
    Outcome {
        desired: reconciled
            .desired
            .iter()
            .map(|(router, desired)| {
                let routes: Vec<_> = desired.routes.iter().collect();
                let keep: Vec<_> = desired.keep.iter().collect();
                (
                    router.clone(),
                    format!(
                        "complete={} routes={routes:?} keep={keep:?}",
                        desired.complete
                    ),
                )
            })
            .collect(),
        live: reconciled
            .desired
            .values()
            .map(|desired| (*desired.live).clone())
            .collect(),
        routing: format!("{:?}", reconciled.routing.iter().collect::<Vec<_>>()),
        present: reconciled.present.iter().cloned().collect(),
        assignments: reconciler
            .ipam()
            .assignments()
            .map(|(node, subnets)| (node.to_owned(), subnets.to_vec()))
            .collect(),
        cursors: format!("{:?}", reconciler.ipam().cursors()),
        ignored_overrides: format!("{:?}", reconciler.ignored_overrides()),
    }
}

/// What a pass decided, rebuilt from scratch out of the shares and
/// settings the reconciler keeps per node: the persistent maps it updates
/// in place must hold exactly that.
fn from_scratch(config: &Config, reconciler: &Reconciler) -> (String, String) {
    let mut desired = crate::desired::DesiredState::new(config, true);
    let mut routing = BTreeMap::new();
    for (name, tracked) in &reconciler.tracked {
        desired.add(name, &tracked.share);
        if tracked.record.standing == Standing::Listed {
            let node_routing =
                reconciler.routing_of(&tracked.record, &tracked.settings, &tracked.share);
            routing.insert(name.clone(), node_routing);
        }
    }
    (
        describe(&desired.per_router()),
        format!("{:?}", routing.iter().collect::<Vec<_>>()),
    )
}

fn describe(desired: &BTreeMap<String, crate::desired::RouterDesired>) -> String {
    desired
        .iter()
        .map(|(router, desired)| {
            format!(
                "{router}: complete={} routes={:?} keep={:?} live={:?}\n",
                desired.complete,
                desired.routes.iter().collect::<Vec<_>>(),
                desired.keep.iter().collect::<Vec<_>>(),
                desired.live.sorted(),
            )
        })
        .collect()
}

fn reconciler(config: &Arc<Config>) -> Reconciler {
    Reconciler::new(config.clone(), Arc::new(LogReporter::new(Duration::ZERO)))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_incremental_pass_reaches_what_a_full_pass_reaches(
        steps in prop::collection::vec(step(), 1..40)
    ) {
        let config = config();
        let mut incremental = reconciler(&config);
        let mut full = reconciler(&config);
        let mut source = Source::default();
        let first = source.snapshot(None);
        incremental.apply(&first, true);
        full.apply(&first, true);
        for (index, step) in steps.iter().enumerate() {
            let changed = source.take(step, &incremental);
            let told = changed.is_some();
            let by_changes = incremental.apply(&source.snapshot(changed), true);
            let by_all = full.apply(&source.snapshot(None), true);
            // Every step changes one node at most: always small enough.
            prop_assert_eq!(by_changes.touched.is_some(), told, "step {}: {:?}", index, step);
            prop_assert!(by_all.touched.is_none());
            prop_assert_eq!(
                outcome(&incremental, &by_changes),
                outcome(&full, &by_all),
                "after step {}: {:?}", index, step
            );
            let kept = (
                describe(&by_changes.desired),
                format!("{:?}", by_changes.routing.iter().collect::<Vec<_>>()),
            );
            prop_assert_eq!(kept, from_scratch(&config, &incremental), "after step {}", index);
        }
    }
}
