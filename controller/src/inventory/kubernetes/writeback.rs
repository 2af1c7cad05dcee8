//! What nativeroute writes on Nodes, kept in step like routes are: a wanted
//! value per node and field, compared with what the last watch event showed,
//! and patched only where they differ.
//!
//! Writes are queued per node (the latest wish wins), sent with a bounded
//! number in flight so that a cold start with thousands of nodes does not
//! flood the API server, and retried with backoff per node, so one node
//! that cannot be written never holds up the others.

use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::core::Selector;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::node::{NETWORK_UNAVAILABLE, NodeObject, ObservedNode};
use crate::inventory::annotations;
use crate::report::{Reason, Reporter};
use crate::status::{NetworkCondition, StatusSink};

/// Patches in flight at once.
const IN_FLIGHT: usize = 16;
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(30);

fn condition_status(condition: &NetworkCondition) -> &'static str {
    if condition.unavailable {
        "True"
    } else {
        "False"
    }
}

/// What nativeroute wants on one Node; `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Want {
    /// `nativeroute.io/subnet`, and spec.podCIDR(s) when those are empty.
    subnets: Option<Vec<IpNet>>,
    status: Option<String>,
    condition: Option<NetworkCondition>,
}

/// What the last watch event or patch answer showed of the fields above.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Seen {
    subnet: Option<String>,
    status: Option<String>,
    pod_cidrs: Vec<String>,
    condition: Option<(String, String, String)>,
    last_transition: Option<Timestamp>,
    /// The resourceVersion it was seen at, when it is a number (as every
    /// etcd-backed API server's is; otherwise newest-arrived wins).
    version: Option<u64>,
    /// Which Node object of that name it was.
    uid: String,
}

impl Seen {
    fn of(node: &ObservedNode) -> Seen {
        Seen {
            subnet: node.annotation(annotations::SUBNET).map(str::to_owned),
            status: node.annotation(annotations::STATUS).map(str::to_owned),
            pod_cidrs: node.pod_cidrs.clone(),
            condition: node
                .condition
                .as_ref()
                .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone())),
            last_transition: node.condition.as_ref().and_then(|c| c.last_transition),
            version: node.resource_version.parse().ok(),
            uid: node.uid.clone(),
        }
    }
}

/// How long what was wanted on a deleted Node is kept for a Node that
/// registers again under its name. Far longer than it takes the status
/// task to see the node gone (after which it writes afresh anyway).
const DEPARTED_KEEP: Duration = Duration::from_secs(600);

/// The status wanted on a Node that was deleted. A Node registered again
/// under that name (a kubelet after `kubectl delete node`, often within one
/// watch burst) is a new object that shows none of it, while the status
/// task knows nodes by name and sees nothing new to write.
#[derive(Debug)]
struct Departed {
    uid: String,
    /// Status and condition only: the subnets of a returning name are for
    /// the reconciler to hand over again, since it may have released them.
    want: Want,
    at: Instant,
}

#[derive(Default)]
struct Ledger {
    want: HashMap<String, Want>,
    seen: HashMap<String, Seen>,
    dirty: BTreeSet<String>,
    in_flight: BTreeSet<String>,
    /// Per node: failures in a row and when the next try may go.
    retry: HashMap<String, (u32, Instant)>,
    /// Failed writes in a row, whatever the node.
    failures_in_a_row: u32,
    /// No write starts before this (the API server keeps failing).
    paused_until: Option<Instant>,
    /// Deleted Nodes, by name, with what was wanted on them.
    departed: HashMap<String, Departed>,
}

impl Ledger {
    /// Changes what is wanted on a node; true when it became dirty.
    fn update(&mut self, name: &str, change: impl FnOnce(&mut Want)) -> bool {
        // Only nodes the watch has shown are written: a patch to a missing
        // Node is a 404, and a Node not seen yet may be about to appear.
        let Some(seen) = self.seen.get(name) else {
            if let Some(departed) = self.departed.get_mut(name) {
                change(&mut departed.want);
                departed.want.subnets = None;
            }
            return false;
        };
        let want = self.want.entry(name.to_owned()).or_default();
        let before = want.clone();
        change(want);
        if *want == before {
            return false;
        }
        let needed = patches_for(want, seen, Timestamp::now()) != Patches::default();
        needed && self.dirty.insert(name.to_owned())
    }

    /// Takes in what a watch event or a patch answer shows of a node,
    /// unless what is known already is newer (a watch event can arrive
    /// after the answer to a later patch).
    fn see(&mut self, node: &ObservedNode) {
        let seen = Seen::of(node);
        if let Some(known) = self.seen.get(&node.name)
            && let (Some(known), Some(new)) = (known.version, seen.version)
            && new < known
        {
            return;
        }
        self.seen.insert(node.name.clone(), seen);
    }

    /// The Node was deleted: nothing more is written on it, and its status
    /// is kept for a Node that comes back under its name.
    fn forget(&mut self, name: &str) {
        let want = self.want.remove(name);
        let seen = self.seen.remove(name);
        self.dirty.remove(name);
        self.retry.remove(name);
        let now = Instant::now();
        self.departed
            .retain(|_, departed| now.duration_since(departed.at) < DEPARTED_KEEP);
        if let (Some(want), Some(seen)) = (want, seen) {
            let want = Want {
                subnets: None,
                ..want
            };
            if want != Want::default() {
                let departed = Departed {
                    uid: seen.uid,
                    want,
                    at: now,
                };
                self.departed.insert(name.to_owned(), departed);
            }
        }
    }

    /// A Node appears under the name of one deleted before: it is another
    /// object (its uid differs), and is to show what the name should.
    fn welcome_back(&mut self, node: &ObservedNode) {
        if self.seen.contains_key(&node.name) {
            return;
        }
        let Some(departed) = self.departed.remove(&node.name) else {
            return;
        };
        if departed.uid == node.uid {
            return;
        }
        let want = self.want.entry(node.name.clone()).or_default();
        want.status = want.status.take().or(departed.want.status);
        want.condition = want.condition.take().or(departed.want.condition);
    }
}

/// The two requests one node may need.
#[derive(Debug, Default, PartialEq)]
struct Patches {
    /// Merge patch of the Node (annotations, spec.podCIDR(s)).
    node: Option<Value>,
    /// Strategic merge patch of its status: conditions merge by type, so
    /// the kubelet's own conditions are left alone.
    status: Option<Value>,
}

fn patches_for(want: &Want, seen: &Seen, now: Timestamp) -> Patches {
    let mut patches = Patches::default();
    let mut annotations_patch = serde_json::Map::new();
    let mut spec_patch = serde_json::Map::new();
    if let Some(subnets) = &want.subnets {
        let subnets: Vec<String> = subnets.iter().map(ToString::to_string).collect();
        let value = subnets.join(",");
        if seen.subnet.as_deref() != Some(value.as_str()) {
            annotations_patch.insert(annotations::SUBNET.into(), Value::String(value));
        }
        // spec.podCIDR is immutable once set: only ever filled when empty.
        if seen.pod_cidrs.is_empty() && !subnets.is_empty() {
            spec_patch.insert("podCIDR".into(), json!(subnets[0]));
            spec_patch.insert("podCIDRs".into(), json!(subnets));
        }
    }
    if let Some(status) = &want.status
        && seen.status.as_ref() != Some(status)
    {
        annotations_patch.insert(annotations::STATUS.into(), Value::String(status.clone()));
    }
    if !annotations_patch.is_empty() || !spec_patch.is_empty() {
        let mut patch = serde_json::Map::new();
        if !annotations_patch.is_empty() {
            patch.insert(
                "metadata".into(),
                json!({ "annotations": annotations_patch }),
            );
        }
        if !spec_patch.is_empty() {
            patch.insert("spec".into(), Value::Object(spec_patch));
        }
        patches.node = Some(Value::Object(patch));
    }
    if let Some(condition) = &want.condition
        && condition
            .replaces_only
            .is_none_or(|reason| seen.condition.as_ref().is_some_and(|c| c.1 == reason))
    {
        let wanted = (
            condition_status(condition).to_owned(),
            condition.reason.to_owned(),
            condition.message.clone(),
        );
        if seen.condition.as_ref() != Some(&wanted) {
            let status_changed = seen.condition.as_ref().map(|c| c.0.as_str()) != Some(&wanted.0);
            let transition = match seen.last_transition {
                Some(at) if !status_changed => at,
                _ => now,
            };
            patches.status = Some(json!({
                "status": {
                    "conditions": [{
                        "type": NETWORK_UNAVAILABLE,
                        "status": wanted.0,
                        "reason": wanted.1,
                        "message": wanted.2,
                        "lastTransitionTime": Time(transition),
                        "lastHeartbeatTime": Time(now),
                    }]
                }
            }));
        }
    }
    patches
}

/// Queues and sends the writes; cheap to clone.
#[derive(Clone)]
pub struct NodeWriter {
    ledger: Arc<Mutex<Ledger>>,
    wake: Arc<Notify>,
}

impl Default for NodeWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeWriter {
    pub fn new() -> Self {
        NodeWriter {
            ledger: Arc::new(Mutex::new(Ledger::default())),
            wake: Arc::new(Notify::new()),
        }
    }

    fn ledger(&self) -> MutexGuard<'_, Ledger> {
        // A panic while holding the lock cannot leave the ledger torn in a
        // way that matters: every entry is re-derived on the next event.
        self.ledger
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The node as the latest watch event shows it.
    pub fn observe(&self, node: &ObservedNode) {
        let mut ledger = self.ledger();
        ledger.welcome_back(node);
        ledger.see(node);
        let differs = match (ledger.want.get(&node.name), ledger.seen.get(&node.name)) {
            (Some(want), Some(seen)) => {
                patches_for(want, seen, Timestamp::now()) != Patches::default()
            }
            _ => false,
        };
        if differs && ledger.dirty.insert(node.name.clone()) {
            drop(ledger);
            self.wake.notify_one();
        }
    }

    /// The node was deleted: nothing more to write on it (until a Node of
    /// that name appears again).
    pub fn forget(&self, name: &str) {
        self.ledger().forget(name);
    }

    /// The subnets nativeroute is writing (or wrote) on a node.
    pub fn wanted_subnets(&self, name: &str) -> Option<Vec<IpNet>> {
        self.ledger().want.get(name)?.subnets.clone()
    }

    /// The subnets to record on each node. Called for every node on every
    /// snapshot, so an unchanged wish costs a lookup and a comparison only.
    pub fn want_subnets<'a>(&self, wishes: impl IntoIterator<Item = (&'a str, &'a [IpNet])>) {
        let mut ledger = self.ledger();
        let mut woken = false;
        for (name, subnets) in wishes {
            let unchanged = ledger
                .want
                .get(name)
                .is_some_and(|want| want.subnets.as_deref() == Some(subnets));
            if unchanged {
                continue;
            }
            woken |= ledger.update(name, |want| want.subnets = Some(subnets.to_vec()));
        }
        drop(ledger);
        if woken {
            self.wake.notify_one();
        }
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut Want)) {
        let mut ledger = self.ledger();
        let woken = ledger.update(name, change);
        drop(ledger);
        if woken {
            self.wake.notify_one();
        }
    }

    /// Sends the queued writes until `shutdown` turns true.
    pub async fn run(
        self,
        api: Api<NodeObject>,
        reporter: Arc<dyn Reporter>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut in_flight = Patching::default();
        loop {
            let next_retry = self.start_due(&api, &mut in_flight);
            let far = Instant::now() + Duration::from_secs(3600);
            tokio::select! {
                _ = shutdown.changed() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(next_retry.unwrap_or(far)) => {}
                Some(done) = in_flight.tasks.join_next_with_id(), if !in_flight.tasks.is_empty() => {
                    let (id, result) = match done {
                        Ok((id, result)) => (id, result),
                        // A patch task that panicked: its node is retried.
                        Err(err) => (err.id(), Err(kube::Error::Service(err.to_string().into()))),
                    };
                    if let Some(name) = in_flight.nodes.remove(&id) {
                        self.finish(&name, result, &*reporter);
                    }
                }
            }
        }
    }

    /// Starts patches for dirty nodes that are due, up to the limit; returns
    /// when the earliest waiting retry is due.
    fn start_due(&self, api: &Api<NodeObject>, in_flight: &mut Patching) -> Option<Instant> {
        let now = Instant::now();
        let mut ledger = self.ledger();
        if let Some(until) = ledger.paused_until {
            if until > now {
                return Some(until);
            }
            ledger.paused_until = None;
        }
        let mut next_retry: Option<Instant> = None;
        // Walked one name at a time, not copied whole: after a cold start
        // 20,000 names wait, and this runs each time a patch finishes.
        let mut after: Option<String> = None;
        while ledger.in_flight.len() < IN_FLIGHT {
            let next = match &after {
                None => ledger.dirty.first(),
                Some(last) => ledger
                    .dirty
                    .range::<String, _>((Bound::Excluded(last), Bound::Unbounded))
                    .next(),
            };
            let Some(name) = next.cloned() else {
                break;
            };
            after = Some(name.clone());
            if ledger.in_flight.contains(&name) {
                continue;
            }
            if let Some((_, due)) = ledger.retry.get(&name)
                && *due > now
            {
                next_retry = Some(next_retry.map_or(*due, |at| at.min(*due)));
                continue;
            }
            ledger.dirty.remove(&name);
            let (Some(want), Some(seen)) = (ledger.want.get(&name), ledger.seen.get(&name)) else {
                continue;
            };
            let patches = patches_for(want, seen, Timestamp::now());
            if patches == Patches::default() {
                continue;
            }
            ledger.in_flight.insert(name.clone());
            let api = api.clone();
            let node = name.clone();
            let task = in_flight
                .tasks
                .spawn(async move { send(&api, &node, patches).await });
            in_flight.nodes.insert(task.id(), name);
        }
        next_retry
    }

    fn finish(
        &self,
        name: &str,
        result: Result<Option<ObservedNode>, kube::Error>,
        reporter: &dyn Reporter,
    ) {
        let mut ledger = self.ledger();
        ledger.in_flight.remove(name);
        if !ledger.want.contains_key(name) {
            // Forgotten (deleted) while the patch was in flight.
            return;
        }
        match result {
            Ok(answer) => {
                ledger.retry.remove(name);
                ledger.failures_in_a_row = 0;
                if let Some(node) = answer {
                    ledger.see(&node);
                }
                // Another wish may have arrived while this one was in flight.
                let pending = match (ledger.want.get(name), ledger.seen.get(name)) {
                    (Some(want), Some(seen)) => {
                        patches_for(want, seen, Timestamp::now()) != Patches::default()
                    }
                    _ => false,
                };
                if pending {
                    ledger.dirty.insert(name.to_owned());
                }
            }
            Err(kube::Error::Api(status))
                if status.code == 404 && !ledger.seen.contains_key(name) =>
            {
                // Deleted meanwhile, and the watch said so.
                ledger.want.remove(name);
                ledger.retry.remove(name);
            }
            Err(err) => {
                let failures = ledger.retry.get(name).map_or(0, |(n, _)| *n) + 1;
                let delay = backoff(failures);
                ledger
                    .retry
                    .insert(name.to_owned(), (failures, Instant::now() + delay));
                ledger.dirty.insert(name.to_owned());
                // Many failures in a row, across nodes: the API server itself
                // is in trouble, so every write pauses, not just this node's.
                ledger.failures_in_a_row += 1;
                if ledger.failures_in_a_row >= IN_FLIGHT as u32 {
                    let pause = backoff(ledger.failures_in_a_row / IN_FLIGHT as u32);
                    ledger.paused_until = Some(Instant::now() + pause);
                }
                drop(ledger);
                self.wake.notify_one();
                let refused = matches!(&err, kube::Error::Api(status) if status.code == 422);
                if refused || failures == 3 {
                    reporter.node_event(
                        name,
                        Reason::FailedToUpdateNode,
                        &format!(
                            "cannot write nativeroute's state on the Node (retrying in {delay:?}): {err}"
                        ),
                    );
                } else {
                    tracing::debug!(node = name, error = %err, retry_in = ?delay, "node write failed");
                }
                return;
            }
        }
        drop(ledger);
        self.wake.notify_one();
    }
}

fn backoff(failures: u32) -> Duration {
    RETRY_MIN
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(RETRY_MAX)
}

/// Patches in flight, and which node each task writes.
#[derive(Default)]
struct Patching {
    tasks: JoinSet<Result<Option<ObservedNode>, kube::Error>>,
    nodes: HashMap<tokio::task::Id, String>,
}

impl StatusSink for NodeWriter {
    fn set_status(&self, node: &str, summary: String, condition: Option<NetworkCondition>) {
        self.update(node, |want| {
            want.status = Some(summary);
            if condition.is_some() {
                want.condition = condition;
            }
        });
    }
}

/// Sends one node's patches; answers the node as the last answer showed it.
async fn send(
    api: &Api<NodeObject>,
    name: &str,
    patches: Patches,
) -> Result<Option<ObservedNode>, kube::Error> {
    let params = PatchParams::default();
    let mut answer = None;
    if let Some(patch) = patches.node {
        answer = Some(api.patch(name, &params, &Patch::Merge(&patch)).await?);
    }
    if let Some(patch) = patches.status {
        answer = Some(
            api.patch_status(name, &params, &Patch::Strategic(&patch))
                .await?,
        );
    }
    // The answer is only used for the written fields, so the address type
    // and the selector do not matter here.
    Ok(answer.map(|node| ObservedNode::from_object(&node, "", &Selector::default())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excluded_node_only_loses_a_condition_nativeroute_wrote() {
        let want = Want {
            condition: Some(NetworkCondition {
                unavailable: false,
                reason: "NodeExcluded",
                message: "excluded".into(),
                replaces_only: Some("NoRouteCreated"),
            }),
            ..Want::default()
        };
        let ours = Seen {
            condition: Some(("True".into(), "NoRouteCreated".into(), "x".into())),
            ..Seen::default()
        };
        assert!(patches_for(&want, &ours, Timestamp::now()).status.is_some());
        let someone_elses = Seen {
            condition: Some(("True".into(), "CalicoIsDown".into(), "x".into())),
            ..Seen::default()
        };
        assert_eq!(
            patches_for(&want, &someone_elses, Timestamp::now()),
            Patches::default()
        );
        assert_eq!(
            patches_for(&want, &Seen::default(), Timestamp::now()),
            Patches::default()
        );
    }

    fn seen_empty() -> Seen {
        Seen::default()
    }

    #[test]
    fn a_fresh_subnet_fills_the_annotation_and_the_empty_pod_cidrs() {
        let want = Want {
            subnets: Some(vec!["11.11.3.0/24".parse().expect("net")]),
            ..Want::default()
        };
        let patches = patches_for(&want, &seen_empty(), Timestamp::now());
        assert_eq!(
            patches.node,
            Some(json!({
                "metadata": {"annotations": {"nativeroute.io/subnet": "11.11.3.0/24"}},
                "spec": {"podCIDR": "11.11.3.0/24", "podCIDRs": ["11.11.3.0/24"]}
            }))
        );
        assert_eq!(patches.status, None);
    }

    #[test]
    fn a_pod_cidr_already_set_is_never_written_again() {
        let want = Want {
            subnets: Some(vec!["11.11.3.0/24".parse().expect("net")]),
            ..Want::default()
        };
        let seen = Seen {
            pod_cidrs: vec!["10.244.1.0/24".into()],
            ..Seen::default()
        };
        let patches = patches_for(&want, &seen, Timestamp::now());
        assert_eq!(
            patches.node,
            Some(json!({"metadata": {"annotations": {"nativeroute.io/subnet": "11.11.3.0/24"}}}))
        );
    }

    #[test]
    fn nothing_is_written_when_the_node_already_shows_it() {
        let want = Want {
            subnets: Some(vec!["11.11.3.0/24".parse().expect("net")]),
            status: Some("rtr=programmed".into()),
            condition: Some(NetworkCondition {
                unavailable: false,
                reason: "RouteCreated",
                message: "m".into(),
                replaces_only: None,
            }),
        };
        let seen = Seen {
            subnet: Some("11.11.3.0/24".into()),
            status: Some("rtr=programmed".into()),
            pod_cidrs: vec!["11.11.3.0/24".into()],
            condition: Some(("False".into(), "RouteCreated".into(), "m".into())),
            last_transition: None,
            version: None,
            ..Seen::default()
        };
        assert_eq!(
            patches_for(&want, &seen, Timestamp::now()),
            Patches::default()
        );
    }

    #[test]
    fn the_condition_keeps_its_transition_time_while_its_status_holds() {
        let earlier: Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        let want = Want {
            condition: Some(NetworkCondition {
                unavailable: true,
                reason: "NoRouteCreated",
                message: "new words".into(),
                replaces_only: None,
            }),
            ..Want::default()
        };
        let seen = Seen {
            condition: Some(("True".into(), "NoRouteCreated".into(), "old words".into())),
            last_transition: Some(earlier),
            ..Seen::default()
        };
        let patch = patches_for(&want, &seen, Timestamp::now())
            .status
            .expect("a status patch");
        assert_eq!(
            patch["status"]["conditions"][0]["lastTransitionTime"],
            json!(Time(earlier))
        );
        assert_eq!(
            patch["status"]["conditions"][0]["type"],
            json!("NetworkUnavailable")
        );
    }

    fn node_object(uid: &str, version: &str) -> ObservedNode {
        ObservedNode {
            name: "node2".into(),
            uid: uid.into(),
            resource_version: version.into(),
            created: None,
            addresses: Vec::new(),
            annotations: Default::default(),
            pod_cidrs: Vec::new(),
            condition: None,
            problems: Vec::new(),
            selected: true,
        }
    }

    fn programmed() -> NetworkCondition {
        NetworkCondition {
            unavailable: false,
            reason: "RouteCreated",
            message: "m".into(),
            replaces_only: None,
        }
    }

    #[test]
    fn a_node_registered_again_under_its_name_is_written_its_status_but_not_its_old_subnets() {
        let writer = NodeWriter::new();
        writer.observe(&node_object("uid-old", "10"));
        writer.want_subnets([("node2", &["11.11.2.0/24".parse().expect("net")][..])]);
        writer.set_status("node2", "rtr=programmed".into(), Some(programmed()));
        writer.forget("node2");
        // The status task writes by name: what it asks while the name is
        // gone is what the next Node of that name should show.
        writer.set_status("node2", "rtr=pending".into(), None);
        assert!(writer.ledger().dirty.is_empty());

        writer.observe(&node_object("uid-new", "12"));
        let ledger = writer.ledger();
        assert!(ledger.dirty.contains("node2"), "the new Node needs writing");
        let want = &ledger.want["node2"];
        assert_eq!(want.status.as_deref(), Some("rtr=pending"));
        assert_eq!(want.condition, Some(programmed()));
        assert_eq!(want.subnets, None, "subnets come from the reconciler again");
    }

    #[test]
    fn the_same_node_object_seen_again_after_a_delete_gets_nothing_back() {
        let writer = NodeWriter::new();
        writer.observe(&node_object("uid-1", "10"));
        writer.set_status("node2", "rtr=programmed".into(), None);
        writer.forget("node2");
        writer.observe(&node_object("uid-1", "10"));
        assert!(!writer.ledger().want.contains_key("node2"));
    }
}
