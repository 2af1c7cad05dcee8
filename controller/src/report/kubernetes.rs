//! Node Events in the Kubernetes API (events.k8s.io/v1). A repeat of an
//! event (same node, reason and note) within an hour adds to the series of
//! the Event already written instead of making a new object, as client-go's
//! correlator does. kube's `Recorder` is not used: it folds events by
//! reason alone, so a second, different complaint about the same node
//! would only bump the count of the first and never be shown.
//!
//! Events are sent by one task from a bounded queue at a bounded rate, so a
//! cold start with thousands of nodes cannot flood the API server: warnings
//! wait for their turn, while informational events beyond the budget are
//! dropped (they are still in the log, and counted in a metric).

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::json;
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
        publisher: EventPublisher,
        metrics: Arc<Metrics>,
        shutdown: watch::Receiver<bool>,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let (queue, pending) = mpsc::channel(QUEUE);
        let sender = send_events(publisher, pending, metrics.clone(), shutdown);
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
        self.send(node, reason, message, false);
    }

    fn node_event_in_bulk(&self, node: &str, reason: Reason, message: &str) {
        self.send(node, reason, message, true);
    }
}

impl EventReporter {
    fn send(&self, node: &str, reason: Reason, message: &str, in_bulk: bool) {
        if node == "-" || !self.log.say_in(node, reason, message, in_bulk) {
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
    publisher: EventPublisher,
    mut pending: mpsc::Receiver<NodeEvent>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut publisher = publisher;
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
        match publisher.publish(&event).await {
            Ok(()) => metrics.node_event("sent"),
            Err(err) => {
                metrics.node_event("failed");
                tracing::warn!(node = event.node, error = %err, "event not recorded in the API (it is in this log)");
            }
        }
    }
}

/// How long an Event's series stays open for repeats.
const SERIES_WINDOW: Duration = Duration::from_secs(3600);
/// Node Events live in this namespace (as the kubelet's do).
const NAMESPACE: &str = "default";

/// An Event already written, to add repeats to.
struct Written {
    name: String,
    count: i32,
    at: Instant,
}

/// Writes Events, folding repeats into series.
pub struct EventPublisher {
    api: Api<Event>,
    directory: NodeDirectory,
    instance: String,
    written: HashMap<(String, Reason, String), Written>,
}

impl EventPublisher {
    pub fn new(client: kube::Client, directory: NodeDirectory, instance: String) -> Self {
        EventPublisher {
            api: Api::namespaced(client, NAMESPACE),
            directory,
            instance,
            written: HashMap::new(),
        }
    }

    async fn publish(&mut self, event: &NodeEvent) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        self.written
            .retain(|_, written| written.at.elapsed() < SERIES_WINDOW);
        let key = (event.node.clone(), event.reason, event.message.clone());
        if let Some(written) = self.written.get_mut(&key) {
            let count = written.count + 1;
            let series = json!({"series": EventSeries {
                count,
                last_observed_time: MicroTime(now),
            }});
            match self
                .api
                .patch(
                    &written.name,
                    &PatchParams::default(),
                    &Patch::Merge(&series),
                )
                .await
            {
                Ok(_) => {
                    written.count = count;
                    return Ok(());
                }
                // Expired or deleted: write it anew.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(err) => return Err(err),
            }
        }
        // An object name is at most 253 characters; node names may be as long.
        let name = format!("{}.{:x}", prefix(&event.node, 230), now.as_nanosecond());
        let object = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(NAMESPACE.into()),
                ..ObjectMeta::default()
            },
            event_time: Some(MicroTime(now)),
            action: Some(action_of(event.reason).into()),
            reason: Some(event.reason.as_str().into()),
            note: Some(truncate(&event.message)),
            type_: Some(
                if event.reason.is_warning() {
                    "Warning"
                } else {
                    "Normal"
                }
                .into(),
            ),
            reporting_controller: Some(REPORTING_CONTROLLER.into()),
            // The API refuses a reporting instance over 128 characters.
            reporting_instance: Some(prefix(&self.instance, 128).to_owned()),
            regarding: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(event.node.clone()),
                uid: self.directory.uid_of(&event.node),
                ..ObjectReference::default()
            }),
            ..Event::default()
        };
        self.api.create(&PostParams::default(), &object).await?;
        self.written.insert(
            key,
            Written {
                name,
                count: 1,
                at: Instant::now(),
            },
        );
        Ok(())
    }
}

/// The reporting controller named on every Event.
const REPORTING_CONTROLLER: &str = "nativeroute.io/controller";

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

/// At most `limit` bytes of `text`, cut on a character boundary.
fn prefix(text: &str, limit: usize) -> &str {
    let mut end = limit.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
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
