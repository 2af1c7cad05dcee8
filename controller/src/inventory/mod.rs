//! Where nodes come from, in one shape whatever the source.
//!
//! A source delivers [`Snapshot`]s: every node it knows, with what was
//! recorded for it earlier (its subnets) and its annotations as written.
//! The file source ([`file`]) serves plain Docker or VM hosts; the
//! Kubernetes source ([`kubernetes`]) watches Node objects.

pub mod annotations;
pub mod file;
pub mod kubernetes;
pub mod source;
pub mod state;

pub use source::{NodeSource, SourceError};

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

/// One node as its source describes it; nothing here is trusted yet except
/// the parsed address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    pub name: String,
    /// The node's addresses (one per family at most), the default next hops.
    pub addresses: Vec<IpAddr>,
    /// Annotations as written (`nativeroute.io/…`), parsed later.
    pub annotations: BTreeMap<String, String>,
    /// Subnets assigned to this node earlier and recorded by the source.
    pub recorded: Vec<IpNet>,
    pub standing: Standing,
}

/// How a node stands in its source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Listed, with a usable entry.
    Listed,
    /// Listed, but its entry is unusable and no good copy is known: it keeps
    /// what it holds (subnets, routes) and nothing else changes for it
    /// until the entry is fixed.
    Frozen,
    /// No longer listed: its routes go, but its subnets stay reserved for
    /// it for a while, so that a node that was missing by mistake (a
    /// half-written inventory) comes back with the same subnet.
    Departed,
}

impl NodeRecord {
    /// Whether the source lists the node (usable or not).
    pub fn is_listed(&self) -> bool {
        self.standing != Standing::Departed
    }
}

/// Everything a source knows at one moment, oldest node first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Shared, so that a source that keeps its records between snapshots
    /// (the Kubernetes source) hands them over without copying.
    pub nodes: Vec<Arc<NodeRecord>>,
    /// Problems with entries the source could not use; each names the node.
    pub problems: Vec<SourceProblem>,
    /// The nodes that changed, appeared or went since the source's previous
    /// snapshot, when the source knows (a watch does; a re-read file, a
    /// re-list or a periodic resync does not): the rest are the very same
    /// records as before, so only these need working out again.
    pub changed: Option<BTreeSet<String>>,
}

/// An inventory entry that could not be used as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceProblem {
    pub node: String,
    /// The Event reason it is reported under.
    pub reason: crate::report::Reason,
    pub message: String,
}
