//! Nodes from the Kubernetes API: a watch on Node objects, turned into
//! snapshots. Nothing is delivered before the first complete list, and a
//! re-list (after a dropped watch, a 410 Gone or an API server that was
//! away) replaces the known nodes only once it is complete, so an API
//! server that misbehaves never makes nodes look deleted.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use ipnet::IpNet;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::ListParams;
use kube::core::Selector;
use kube::runtime::WatchStreamExt;
use kube::runtime::utils::Backoff;
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use super::NodeDirectory;
use super::node::{NodeObject, ObservedNode};
use super::writeback::NodeWriter;
use crate::config::{Config, IpamMode, NodesConfig, PoolConfig, parse_label_selector};
use crate::inventory::annotations;
use crate::inventory::{NodeRecord, NodeSource, Snapshot, SourceError, SourceProblem, Standing};
use crate::ipam::{Ipam, NextFit};
use crate::report::Reason;

/// At most this many events already waiting are folded into one snapshot.
const DRAIN_LIMIT: usize = 10_000;

/// How the source reads Nodes.
#[derive(Clone, Debug)]
pub struct KubernetesNodes {
    /// `nodes.selector` as written, for logs.
    pub selector_text: String,
    pub selector: Selector,
    pub address_type: String,
    pub ipam: IpamMode,
    pub pool: PoolConfig,
    pub resync: Duration,
    /// How long one watch request lasts; the watch client's read timeout
    /// must be a little longer (see [`super::Clients::with_watch_timeout`]).
    pub watch_timeout: Duration,
}

impl KubernetesNodes {
    /// The settings of `config`'s Kubernetes node source.
    pub fn of(config: &Config) -> Result<KubernetesNodes, SourceError> {
        let NodesConfig::Kubernetes {
            selector,
            address_type,
        } = &config.nodes
        else {
            return Err(SourceError::Kubernetes(
                "nodes.source is not kubernetes".into(),
            ));
        };
        Ok(KubernetesNodes {
            selector_text: selector.clone(),
            selector: parse_label_selector(selector)
                .map_err(|problem| SourceError::Kubernetes(format!("nodes.selector: {problem}")))?,
            address_type: address_type.clone(),
            ipam: config.ipam,
            pool: config.pool.clone(),
            resync: config.resync_interval,
            watch_timeout: super::WATCH_TIMEOUT,
        })
    }
}

pub struct KubernetesSource {
    settings: KubernetesNodes,
    stream: BoxStream<'static, Result<Event<NodeObject>, watcher::Error>>,
    nodes: KnownNodes,
    /// Nodes of a list in progress; they replace `nodes` when it completes.
    relisting: Option<HashMap<String, Known>>,
    /// The nodes whose routing changed since the last snapshot handed out;
    /// `None` after a (re-)list, when every node counts as changed.
    changed: Option<BTreeSet<String>>,
    listed: bool,
    /// The ledger's generation and the number of nodes last recorded.
    recorded: Option<(u64, usize)>,
    writer: NodeWriter,
    directory: NodeDirectory,
    resync_at: Instant,
    /// When the API server last answered the source: a list page or a
    /// watch event.
    progress: watch::Sender<std::time::Instant>,
    /// Where next-fit continues, kept on the leader Lease.
    next_fit: Option<NextFit>,
}

impl KubernetesSource {
    pub fn new(
        api: Api<NodeObject>,
        settings: KubernetesNodes,
        writer: NodeWriter,
        directory: NodeDirectory,
    ) -> Self {
        // Every Node is watched, and the selector applied here: a watch
        // filtered by labels reports a node that loses its label as
        // deleted, and its subnet would be handed out again while the node
        // still uses it. A node outside the selector keeps its subnet
        // reserved and gets no route.
        let timeout = u32::try_from(settings.watch_timeout.as_secs())
            .unwrap_or(u32::MAX)
            .max(1);
        let stream = watcher::watcher(api, watcher::Config::default().timeout(timeout))
            .backoff(WatchBackoff::default())
            .boxed();
        let resync_at = Instant::now() + settings.resync;
        KubernetesSource {
            settings,
            stream,
            nodes: KnownNodes::default(),
            relisting: None,
            changed: None,
            listed: false,
            recorded: None,
            writer,
            directory,
            resync_at,
            progress: watch::channel(std::time::Instant::now()).0,
            next_fit: None,
        }
    }

    /// Resumes next-fit where `next_fit` says (the cursor the leader Lease
    /// kept, see [`LeaderElection::next_fit`](crate::leader::LeaderElection::next_fit)),
    /// and keeps it up to date for the Lease. Without it, next-fit resumes
    /// after the newest node's subnet.
    pub fn resuming(mut self, next_fit: NextFit) -> Self {
        self.next_fit = Some(next_fit);
        self
    }

    fn observe(&self, object: &NodeObject) -> ObservedNode {
        let node =
            ObservedNode::from_object(object, &self.settings.address_type, &self.settings.selector);
        self.writer.observe(&node);
        self.directory.insert(&node.name, &node.uid);
        node
    }

    /// Takes one watch event in; true when the routing-relevant picture changed.
    fn take(&mut self, event: Result<Event<NodeObject>, watcher::Error>) -> bool {
        if event.is_ok() {
            self.progress.send_replace(std::time::Instant::now());
        }
        match event {
            Ok(Event::Init) => {
                self.relisting = Some(HashMap::new());
                false
            }
            Ok(Event::InitApply(object)) => {
                let node = self.observe(&object);
                if let Some(listing) = self.relisting.as_mut() {
                    listing.insert(node.name.clone(), Known::new(node, &self.settings));
                }
                false
            }
            Ok(Event::InitDone) => {
                let Some(listed) = self.relisting.take() else {
                    return false;
                };
                for gone in self
                    .nodes
                    .names()
                    .filter(|name| !listed.contains_key(*name))
                {
                    self.writer.forget(gone);
                    self.directory.remove(gone);
                    // A Node of that name that comes back needs its wishes again.
                    self.recorded = None;
                }
                tracing::info!(nodes = listed.len(), "node list complete");
                self.nodes = KnownNodes::from(listed);
                self.changed = None;
                self.listed = true;
                true
            }
            Ok(Event::Apply(object)) => {
                let node = self.observe(&object);
                let own = self.writer.wanted_subnets(&node.name);
                let changed = self
                    .nodes
                    .get(&node.name)
                    .is_none_or(|old| routing_differs(&old.observed, &node, own.as_deref()));
                if changed && let Some(names) = self.changed.as_mut() {
                    names.insert(node.name.clone());
                }
                self.nodes.insert(Known::new(node, &self.settings));
                changed
            }
            Ok(Event::Delete(object)) => {
                let name = object.metadata.name.unwrap_or_default();
                self.writer.forget(&name);
                self.directory.remove(&name);
                // The writer forgot the subnets wanted on it. A Node
                // registered again under the name in the same burst leaves
                // the ledger as it was (same names, same subnets), so the
                // next record must not be skipped as "handed over already".
                self.recorded = None;
                let known = self.nodes.remove(&name);
                if known && let Some(names) = self.changed.as_mut() {
                    names.insert(name);
                }
                known
            }
            Err(err) => {
                let hint = match &err {
                    watcher::Error::InitialListFailed(kube::Error::Api(s))
                    | watcher::Error::WatchStartFailed(kube::Error::Api(s))
                        if s.code == 403 =>
                    {
                        "; the service account needs get, list and watch on nodes"
                    }
                    _ => "",
                };
                tracing::warn!(error = %err, "node watch failed; retrying, the known nodes stay as they are{hint}");
                false
            }
        }
    }

    /// The snapshot of every node, with the nodes changed since the last
    /// one (`whole`: a resync, which looks at every node again).
    fn snapshot(&mut self, whole: bool) -> Snapshot {
        let changed = self.changed.replace(BTreeSet::new());
        let mut snapshot = self.nodes.snapshot();
        snapshot.changed = changed.filter(|_| !whole);
        snapshot
    }
}

/// Lists the Nodes once, completely (in pages), as one snapshot: what
/// `plan` and `check` show without watching.
pub async fn list_snapshot(
    api: &Api<NodeObject>,
    settings: &KubernetesNodes,
) -> Result<Snapshot, kube::Error> {
    let mut params = ListParams::default().limit(500);
    let mut nodes = Vec::new();
    loop {
        let page = api.list(&params).await?;
        nodes.extend(page.items.iter().map(|object| {
            let node =
                ObservedNode::from_object(object, &settings.address_type, &settings.selector);
            Known::new(node, settings)
        }));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    Ok(snapshot_of(nodes.iter()))
}

/// A node as last seen, and what the reconciler gets of it: worked out
/// once per change of the node, not on every snapshot.
struct Known {
    observed: ObservedNode,
    record: Arc<NodeRecord>,
    problems: Vec<String>,
}

impl Known {
    fn new(observed: ObservedNode, settings: &KubernetesNodes) -> Known {
        let (record, problems) = record_of(&observed, settings);
        Known {
            observed,
            record: Arc::new(record),
            problems,
        }
    }

    /// Where the node stands among the others: oldest first, then by name.
    fn age(&self) -> (Option<Timestamp>, String) {
        (self.observed.created, self.observed.name.clone())
    }

    fn add_problems(&self, problems: &mut Vec<SourceProblem>) {
        // Nodes outside the selector are not nativeroute's: no Events.
        if self.observed.selected {
            problems.extend(self.problems.iter().map(|message| SourceProblem {
                node: self.observed.name.clone(),
                reason: Reason::InvalidNodeSpec,
                message: message.clone(),
            }));
        }
    }
}

/// The nodes as last seen, by name and oldest first: a snapshot is taken
/// in one walk, with no sort.
#[derive(Default)]
struct KnownNodes {
    by_name: HashMap<String, Known>,
    by_age: BTreeMap<(Option<Timestamp>, String), Arc<NodeRecord>>,
    /// The nodes with problems to report, so a snapshot need not look at
    /// every node for them.
    with_problems: BTreeSet<String>,
}

impl From<HashMap<String, Known>> for KnownNodes {
    fn from(by_name: HashMap<String, Known>) -> Self {
        let by_age = by_name
            .values()
            .map(|known| (known.age(), known.record.clone()))
            .collect();
        let with_problems = by_name
            .values()
            .filter(|known| !known.problems.is_empty())
            .map(|known| known.observed.name.clone())
            .collect();
        KnownNodes {
            by_name,
            by_age,
            with_problems,
        }
    }
}

impl KnownNodes {
    fn get(&self, name: &str) -> Option<&Known> {
        self.by_name.get(name)
    }

    fn names(&self) -> impl Iterator<Item = &String> {
        self.by_name.keys()
    }

    fn insert(&mut self, known: Known) {
        if known.problems.is_empty() {
            self.with_problems.remove(&known.observed.name);
        } else {
            self.with_problems.insert(known.observed.name.clone());
        }
        let age = known.age();
        self.by_age.insert(age.clone(), known.record.clone());
        if let Some(old) = self.by_name.insert(known.observed.name.clone(), known)
            && old.age() != age
        {
            self.by_age.remove(&old.age());
        }
    }

    /// Whether there was such a node.
    fn remove(&mut self, name: &str) -> bool {
        let Some(old) = self.by_name.remove(name) else {
            return false;
        };
        self.by_age.remove(&old.age());
        self.with_problems.remove(name);
        true
    }

    fn snapshot(&self) -> Snapshot {
        let mut problems = Vec::new();
        for name in &self.with_problems {
            if let Some(known) = self.by_name.get(name) {
                known.add_problems(&mut problems);
            }
        }
        Snapshot {
            nodes: self.by_age.values().cloned().collect(),
            problems,
            changed: None,
        }
    }
}

/// The snapshot of `nodes`, oldest first, with what each Node records.
fn snapshot_of<'a>(nodes: impl Iterator<Item = &'a Known>) -> Snapshot {
    let mut nodes: Vec<&Known> = nodes.collect();
    nodes.sort_by(|a, b| {
        (a.observed.created, &a.observed.name).cmp(&(b.observed.created, &b.observed.name))
    });
    let mut snapshot = Snapshot {
        nodes: Vec::with_capacity(nodes.len()),
        problems: Vec::new(),
        changed: None,
    };
    for node in nodes {
        snapshot.nodes.push(node.record.clone());
        node.add_problems(&mut snapshot.problems);
    }
    snapshot
}

/// A Node as the reconciler sees it: its subnet record is spec.podCIDR(s)
/// inside the pool; with `ipam: allocate` the subnet annotation is read as
/// a pin, which restores the same subnet when podCIDR was set by another.
fn record_of(node: &ObservedNode, settings: &KubernetesNodes) -> (NodeRecord, Vec<String>) {
    let mut problems = node.problems.clone();
    let (pod_cidrs, bad) = node.parsed_pod_cidrs();
    problems.extend(bad);
    let mut annotations = node.annotations.clone();
    annotations.remove(annotations::STATUS);
    let in_pool = |net: &IpNet| settings.pool.cidrs.iter().any(|c| c.contains(net));
    let mut recorded = Vec::new();
    for cidr in pod_cidrs {
        if in_pool(&cidr) {
            recorded.push(cidr);
            continue;
        }
        problems.push(match settings.ipam {
            IpamMode::PodCidr => format!(
                "spec.podCIDR {cidr} lies outside the pool; nativeroute routes only subnets of pool.cidrs, so this node is not routed"
            ),
            IpamMode::Allocate => format!(
                "spec.podCIDR {cidr} was set by someone else and lies outside the pool; the node's pods may not use the subnet nativeroute routes for it (see {})",
                annotations::SUBNET
            ),
        });
    }
    if settings.ipam == IpamMode::PodCidr
        && let Some(value) = annotations.remove(annotations::SUBNET)
    {
        problems.push(format!(
            "annotation {}={value:?} ignored: with ipam: podCIDR the node's subnet is spec.podCIDR",
            annotations::SUBNET
        ));
    }
    let record = NodeRecord {
        name: node.name.clone(),
        addresses: node.addresses.clone(),
        annotations,
        recorded,
        // Outside the selector: what it records stays reserved, nothing else.
        standing: if node.selected {
            Standing::Listed
        } else {
            Standing::Departed
        },
    };
    (record, problems)
}

/// Whether a change of a node matters for subnets and routes. Kubelet
/// heartbeats do not, nor do nativeroute's own writes coming back through
/// the watch: the status annotation and condition, and the subnet
/// annotation and spec.podCIDR(s) when they now show exactly the subnets
/// nativeroute wrote (`own`). Without that, every write would cost a
/// reconcile of every node.
fn routing_differs(old: &ObservedNode, new: &ObservedNode, own: Option<&[IpNet]>) -> bool {
    fn steering(node: &ObservedNode) -> impl Iterator<Item = (&String, &String)> {
        node.annotations.iter().filter(|(key, _)| {
            key.as_str() != annotations::STATUS && key.as_str() != annotations::SUBNET
        })
    }
    let shows_own = |texts: &mut dyn Iterator<Item = &str>| {
        own.is_some_and(|own| {
            let parsed: Vec<IpNet> = texts.filter_map(|t| t.trim().parse().ok()).collect();
            parsed == own
        })
    };
    let subnet = |node: &ObservedNode| node.annotation(annotations::SUBNET).map(str::to_owned);
    let subnet_changed = subnet(old) != subnet(new)
        && !new
            .annotation(annotations::SUBNET)
            .is_some_and(|value| shows_own(&mut value.split(',')));
    let pod_cidrs_changed =
        old.pod_cidrs != new.pod_cidrs && !shows_own(&mut new.pod_cidrs.iter().map(String::as_str));
    old.selected != new.selected
        || old.addresses != new.addresses
        || old.problems != new.problems
        || subnet_changed
        || pod_cidrs_changed
        || !steering(old).eq(steering(new))
}

#[async_trait]
impl NodeSource for KubernetesSource {
    async fn next_snapshot(&mut self) -> Result<Snapshot, SourceError> {
        loop {
            let event = tokio::select! {
                event = self.stream.next() => event,
                _ = sleep_until(self.resync_at), if self.listed => {
                    self.resync_at = Instant::now() + self.settings.resync;
                    return Ok(self.snapshot(true));
                }
            };
            let Some(event) = event else {
                return Err(SourceError::Kubernetes("the node watch ended".into()));
            };
            let mut changed = self.take(event);
            // Whatever has already arrived joins this snapshot, so a burst of
            // changes becomes one reconcile and one batch per router.
            for _ in 0..DRAIN_LIMIT {
                match self.stream.next().now_or_never() {
                    Some(Some(event)) => changed |= self.take(event),
                    _ => break,
                }
            }
            if changed && self.listed && self.relisting.is_none() {
                self.resync_at = Instant::now() + self.settings.resync;
                return Ok(self.snapshot(false));
            }
        }
    }

    async fn record(
        &mut self,
        ipam: &Ipam,
        listed: &imbl::OrdSet<String>,
        touched: Option<&[String]>,
    ) -> Result<(), SourceError> {
        if self.settings.ipam != IpamMode::Allocate {
            return Ok(());
        }
        if let Some(next_fit) = &self.next_fit {
            next_fit.set(ipam.cursors().into_iter().map(|(_, next)| next).collect());
        }
        // The same assignments for the same nodes were handed over already.
        let recorded = (ipam.generation(), listed.len());
        if self.recorded == Some(recorded) {
            return Ok(());
        }
        self.recorded = Some(recorded);
        // After a change of a few nodes only theirs are looked at: a
        // wish for each of 20,000 nodes costs milliseconds.
        let names: Vec<&String> = match touched {
            Some(touched) => touched
                .iter()
                .filter(|name| self.nodes.get(name).is_some())
                .collect(),
            None => listed.iter().collect(),
        };
        self.writer.want_subnets(
            names
                .into_iter()
                .map(|name| (name.as_str(), ipam.subnets_of(name)))
                .filter(|(_, subnets)| !subnets.is_empty()),
        );
        Ok(())
    }

    fn resume_point(&self) -> Vec<IpNet> {
        self.next_fit.as_ref().map(NextFit::get).unwrap_or_default()
    }

    /// Advanced by every list page and watch event. kube's watcher renews
    /// a watch and takes bookmarks without a word, so with no Node changing
    /// this stands still; a kubelet reports its Node's status at least
    /// every five minutes, so in a cluster with kubelets it never stands
    /// still for long unless the source hangs.
    fn progress(&self) -> watch::Receiver<std::time::Instant> {
        self.progress.subscribe()
    }

    fn describe(&self) -> String {
        if self.settings.selector_text.is_empty() {
            "Kubernetes Nodes".into()
        } else {
            format!(
                "Kubernetes Nodes matching {:?}",
                self.settings.selector_text
            )
        }
    }
}

/// Retries of the node watch: quick at first, at most 5 s apart, so that an
/// API server that was away is seen again within seconds.
///
/// kube's stream backoff calls `reset` on every successful item, and after
/// a failed list the watcher's next item is a synthetic `Init` that needs
/// no request: resetting there would retry a failing list every 250 ms
/// forever. So `reset` is ignored, and the delay starts over only once the
/// watch has gone `RESET_AFTER` without a failure.
struct WatchBackoff {
    next: Duration,
    last_failure: Option<Instant>,
}

const WATCH_RETRY_MIN: Duration = Duration::from_millis(250);
const WATCH_RETRY_MAX: Duration = Duration::from_secs(5);
const RESET_AFTER: Duration = Duration::from_secs(30);

impl Default for WatchBackoff {
    fn default() -> Self {
        WatchBackoff {
            next: WATCH_RETRY_MIN,
            last_failure: None,
        }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = Instant::now();
        if self
            .last_failure
            .is_some_and(|at| now.duration_since(at) > RESET_AFTER)
        {
            self.next = WATCH_RETRY_MIN;
        }
        self.last_failure = Some(now);
        let current = self.next;
        self.next = (current * 2).min(WATCH_RETRY_MAX);
        Some(current)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed(subnet: Option<&str>, pod_cidrs: &[&str]) -> ObservedNode {
        ObservedNode {
            name: "node1".into(),
            uid: String::new(),
            resource_version: String::new(),
            created: None,
            addresses: vec!["192.168.2.1".parse().expect("ip")],
            annotations: subnet
                .map(|s| (annotations::SUBNET.to_owned(), s.to_owned()))
                .into_iter()
                .collect(),
            pod_cidrs: pod_cidrs.iter().map(|s| s.to_string()).collect(),
            condition: None,
            problems: Vec::new(),
            selected: true,
        }
    }

    #[test]
    fn the_echo_of_nativeroutes_own_subnet_write_is_no_routing_change() {
        let own: Vec<IpNet> = vec!["11.11.3.0/24".parse().expect("net")];
        let before = observed(None, &[]);
        let echo = observed(Some("11.11.3.0/24"), &["11.11.3.0/24"]);
        assert!(!routing_differs(&before, &echo, Some(&own)));
        // The same change is news when nativeroute did not write it...
        assert!(routing_differs(&before, &echo, None));
        // ...and so is a user's different value.
        let edited = observed(Some("11.11.9.0/24"), &["11.11.3.0/24"]);
        assert!(routing_differs(&echo, &edited, Some(&own)));
    }

    #[test]
    fn the_watch_backoff_grows_through_resets_until_the_watch_was_healthy_for_a_while() {
        let mut backoff = WatchBackoff::default();
        let mut delays = Vec::new();
        for _ in 0..6 {
            delays.push(backoff.next().expect("a delay"));
            // What kube does after the synthetic Init of a failed list.
            backoff.reset();
        }
        assert_eq!(
            delays,
            [250, 500, 1000, 2000, 4000, 5000].map(Duration::from_millis)
        );
        backoff.last_failure = Some(Instant::now() - RESET_AFTER - Duration::from_secs(1));
        assert_eq!(backoff.next(), Some(WATCH_RETRY_MIN));
    }
}
