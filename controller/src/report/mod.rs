//! What the controller tells operators about a node: Events with the
//! reasons of DESIGN.md. They always go to the log; with Kubernetes also to
//! the API as Events on the Node ([`kubernetes`]). Repeats are
//! aggregated: the same (node, reason, message) is said once, again only
//! after it changed or after a quiet period.

pub mod kubernetes;

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Event reasons, reusing upstream names where upstream has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    SubnetAssigned,
    SubnetConflict,
    /// The pool is exhausted (kube-controller-manager's word for it).
    CidrNotAvailable,
    InvalidAnnotation,
    InvalidInventoryEntry,
    /// A Node field nativeroute reads (address, spec.podCIDR) is unusable.
    InvalidNodeSpec,
    /// nativeroute could not write its state (subnet, status) on the Node.
    FailedToUpdateNode,
    RouteCreated,
    FailedToCreateRoute,
    /// A removal failed or was refused by the mass-removal guard.
    FailedToDeleteRoute,
    RouteDeleted,
    ForeignRoute,
    Unroutable,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SubnetAssigned => "SubnetAssigned",
            Reason::SubnetConflict => "SubnetConflict",
            Reason::CidrNotAvailable => "CIDRNotAvailable",
            Reason::InvalidAnnotation => "InvalidAnnotation",
            Reason::InvalidInventoryEntry => "InvalidInventoryEntry",
            Reason::InvalidNodeSpec => "InvalidNodeSpec",
            Reason::FailedToUpdateNode => "FailedToUpdateNode",
            Reason::RouteCreated => "RouteCreated",
            Reason::FailedToCreateRoute => "FailedToCreateRoute",
            Reason::FailedToDeleteRoute => "FailedToDeleteRoute",
            Reason::RouteDeleted => "RouteDeleted",
            Reason::ForeignRoute => "ForeignRoute",
            Reason::Unroutable => "Unroutable",
        }
    }

    pub fn is_warning(self) -> bool {
        !matches!(
            self,
            Reason::SubnetAssigned | Reason::RouteCreated | Reason::RouteDeleted
        )
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where node Events go.
pub trait Reporter: Send + Sync {
    fn node_event(&self, node: &str, reason: Reason, message: &str);

    /// One of many routine Events at once (a cold start, a re-list): the
    /// same Event, but its log line is at debug, for the caller logs one
    /// summary line instead.
    fn node_event_in_bulk(&self, node: &str, reason: Reason, message: &str) {
        self.node_event(node, reason, message);
    }
}

/// More routine Events than this from one pass are logged as one summary
/// line (their own lines at debug): a cold start of 10,000 nodes would
/// otherwise write 20,000 lines before the last route goes in.
pub const BULK: usize = 20;

/// Events as log lines, with repeats held back for `quiet` after each.
pub struct LogReporter {
    quiet: Duration,
    /// When each (node, reason, message) was last said. Keyed by message
    /// too: two different complaints about one node must not take turns
    /// evicting each other and be said on every read.
    /// The message is kept as a hash: thousands of nodes times their
    /// messages would otherwise cost megabytes.
    last: Mutex<Remembered>,
}

#[derive(Default)]
struct Remembered {
    said: HashMap<(String, Reason, u64), Instant>,
    /// The size at which the next pruning happens. It doubles past what a
    /// pruning left: while every event is recent (a cold start of 20,000
    /// nodes), pruning at every insert past a fixed size would scan the
    /// whole map each time, quadratic in the nodes.
    prune_at: usize,
}

fn message_hash(message: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    message.hash(&mut hasher);
    hasher.finish()
}

/// Past this many remembered events, the ones older than the quiet period
/// are forgotten (they would be said again anyway).
const REMEMBERED: usize = 4096;

impl LogReporter {
    pub fn new(quiet: Duration) -> Self {
        LogReporter {
            quiet,
            last: Mutex::new(Remembered {
                said: HashMap::new(),
                prune_at: REMEMBERED,
            }),
        }
    }

    fn is_repeat(&self, node: &str, reason: Reason, message: &str) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        let now = Instant::now();
        let key = (node.to_owned(), reason, message_hash(message));
        if let Some(at) = last.said.get(&key)
            && now.duration_since(*at) < self.quiet
        {
            return true;
        }
        if last.said.len() >= last.prune_at {
            last.said
                .retain(|_, at| now.duration_since(*at) < self.quiet);
            last.prune_at = (last.said.len() * 2).max(REMEMBERED);
        }
        last.said.insert(key, now);
        false
    }
}

impl LogReporter {
    /// Logs the event unless it repeats; true when it was logged.
    pub fn say(&self, node: &str, reason: Reason, message: &str) -> bool {
        self.say_in(node, reason, message, false)
    }

    /// [`LogReporter::say`], at debug for a routine event `in_bulk`.
    pub fn say_in(&self, node: &str, reason: Reason, message: &str, in_bulk: bool) -> bool {
        if self.is_repeat(node, reason, message) {
            return false;
        }
        if reason.is_warning() {
            tracing::warn!(node, reason = reason.as_str(), "{message}");
        } else if in_bulk {
            tracing::debug!(node, reason = reason.as_str(), "{message}");
        } else {
            tracing::info!(node, reason = reason.as_str(), "{message}");
        }
        true
    }
}

impl Reporter for LogReporter {
    fn node_event(&self, node: &str, reason: Reason, message: &str) {
        self.say(node, reason, message);
    }

    fn node_event_in_bulk(&self, node: &str, reason: Reason, message: &str) {
        self.say_in(node, reason, message, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_events_are_said_once_per_quiet_period() {
        let reporter = LogReporter::new(Duration::from_secs(60));
        assert!(!reporter.is_repeat("node1", Reason::InvalidAnnotation, "bad"));
        assert!(reporter.is_repeat("node1", Reason::InvalidAnnotation, "bad"));
        assert!(!reporter.is_repeat("node1", Reason::InvalidAnnotation, "worse"));
        assert!(!reporter.is_repeat("node2", Reason::InvalidAnnotation, "worse"));
    }

    #[test]
    fn a_map_of_recent_events_is_pruned_again_only_once_it_doubled() {
        let reporter = LogReporter::new(Duration::from_secs(60));
        for i in 0..10_000 {
            assert!(!reporter.is_repeat(&format!("node{i}"), Reason::SubnetAssigned, "x"));
        }
        let last = reporter.last.lock().expect("not poisoned");
        // Every event is recent: nothing could be pruned, and the next
        // pruning waits until the map has doubled again.
        assert_eq!(last.said.len(), 10_000);
        assert!(last.prune_at > last.said.len(), "{}", last.prune_at);
        assert!(last.prune_at <= 2 * 10_000);
    }

    #[test]
    fn two_complaints_about_one_node_do_not_take_turns() {
        let reporter = LogReporter::new(Duration::from_secs(60));
        assert!(!reporter.is_repeat("node1", Reason::InvalidAnnotation, "bad routers"));
        assert!(!reporter.is_repeat("node1", Reason::InvalidAnnotation, "bad next-hop"));
        for _ in 0..3 {
            assert!(reporter.is_repeat("node1", Reason::InvalidAnnotation, "bad routers"));
            assert!(reporter.is_repeat("node1", Reason::InvalidAnnotation, "bad next-hop"));
        }
    }
}
