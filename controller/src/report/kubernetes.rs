//! Node Events in the Kubernetes API (events.k8s.io/v1, through kube's
//! `Recorder`, which folds repeats of one event into a series instead of
//! new objects).
//!
//! Events are sent by one task from a bounded queue at a bounded rate, so a
//! cold start with thousands of nodes cannot flood the API server: warnings
//! wait for their turn, while informational events beyond the budget are
//! dropped (they are still in the log, and counted in a metric).

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{LogReporter, Reason, Reporter};
use crate::inventory::kubernetes::NodeDirectory;
use crate::metrics::Metrics;

/// Events waiting to be sent; more are dropped (and logged).
const QUEUE: usize = 1024;
/// The sending budget: a burst, then a steady rate.
const BURST: f64 = 50.0;
const PER_SECOND: f64 = 10.0;

struct NodeEvent {
    node: String,
    reason: Reason,
    message: String,
}

/// A [`Reporter`] that logs every event and queues it for the API.
pub struct EventReporter {
    log: LogReporter,
    queue: mpsc::Sender<NodeEvent>,
    metrics: Arc<Metrics>,
}

impl EventReporter {
    /// The reporter, and the task that sends its events until `shutdown`.
    pub fn new(
        log: LogReporter,
        recorder: Recorder,
        directory: NodeDirectory,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (queue, pending) = mpsc::channel(QUEUE);
        let sender = send_events(recorder, directory, pending, metrics.clone(), shutdown);
        (
            EventReporter {
                log,
                queue,
                metrics,
            },
            sender,
        )
    }
}

impl Reporter for EventReporter {
    fn node_event(&self, node: &str, reason: Reason, message: &str) {
        if node == "-" || !self.log.say(node, reason, message) {
            return;
        }
        let event = NodeEvent {
            node: node.to_owned(),
            reason,
            message: message.to_owned(),
        };
        if self.queue.try_send(event).is_err() {
            self.metrics.node_event("dropped");
        }
    }
}

/// A token bucket: `BURST` at once, then `PER_SECOND`.
struct Budget {
    tokens: f64,
    at: Instant,
}

impl Budget {
    fn refill(&mut self) {
        let now = Instant::now();
        let earned = now.duration_since(self.at).as_secs_f64() * PER_SECOND;
        self.tokens = (self.tokens + earned).min(BURST);
        self.at = now;
    }

    /// How long until one token is there (zero if it is).
    fn wait(&mut self) -> Duration {
        self.refill();
        if self.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - self.tokens) / PER_SECOND)
        }
    }
}

async fn send_events(
    recorder: Recorder,
    directory: NodeDirectory,
    mut pending: mpsc::Receiver<NodeEvent>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut budget = Budget {
        tokens: BURST,
        at: Instant::now(),
    };
    loop {
        let event = tokio::select! {
            _ = shutdown.changed() => return,
            event = pending.recv() => match event { Some(event) => event, None => return },
        };
        let wait = budget.wait();
        if !wait.is_zero() {
            if !event.reason.is_warning() {
                metrics.node_event("dropped");
                continue;
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => budget.refill(),
            }
        }
        budget.tokens -= 1.0;
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(event.node.clone()),
            uid: directory.uid_of(&event.node),
            ..ObjectReference::default()
        };
        let published = recorder
            .publish(
                &Event {
                    type_: if event.reason.is_warning() {
                        EventType::Warning
                    } else {
                        EventType::Normal
                    },
                    reason: event.reason.as_str().into(),
                    note: Some(truncate(&event.message)),
                    action: action_of(event.reason).into(),
                    secondary: None,
                },
                &reference,
            )
            .await;
        match published {
            Ok(()) => metrics.node_event("sent"),
            Err(err) => {
                metrics.node_event("failed");
                tracing::debug!(node = event.node, error = %err, "event not recorded in the API");
            }
        }
    }
}

/// What nativeroute was doing (events.k8s.io/v1 `action`).
fn action_of(reason: Reason) -> &'static str {
    match reason {
        Reason::SubnetAssigned | Reason::SubnetConflict | Reason::CidrNotAvailable => {
            "AssignSubnet"
        }
        Reason::InvalidAnnotation | Reason::InvalidInventoryEntry | Reason::InvalidNodeSpec => {
            "ReadNode"
        }
        Reason::FailedToUpdateNode => "UpdateNode",
        Reason::RouteCreated | Reason::FailedToCreateRoute | Reason::ForeignRoute => "CreateRoute",
        Reason::RouteDeleted | Reason::FailedToDeleteRoute => "DeleteRoute",
        Reason::Unroutable => "ChooseRouters",
    }
}

/// The API refuses notes past 1 KiB.
fn truncate(message: &str) -> String {
    const LIMIT: usize = 1000;
    if message.len() <= LIMIT {
        return message.to_owned();
    }
    let mut end = LIMIT;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_a_burst_then_a_steady_rate() {
        let mut budget = Budget {
            tokens: BURST,
            at: Instant::now(),
        };
        for _ in 0..BURST as usize {
            assert!(budget.wait().is_zero());
            budget.tokens -= 1.0;
        }
        let wait = budget.wait();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs_f64(1.0 / PER_SECOND));
    }

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        let long = "é".repeat(600);
        let cut = truncate(&long);
        assert!(cut.len() <= 1000 + "…".len());
        assert!(cut.ends_with('…'));
    }
}
