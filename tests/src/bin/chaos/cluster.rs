//! The run's writes to the cluster, and the record of every node's life
//! they leave: when each incarnation (one uid) should have been routed.
//!
//! Creations and deletions go straight into the store (as the API server
//! would commit them; no other writer can race a new name or a delete).
//! Edits of existing Nodes are JSON merge patches over HTTP, as `kubectl
//! annotate` and `kubectl label` send them, so that the store applies them
//! atomically against the controller's own patches; only while the API
//! server is away, when nobody else can write, are they applied to the
//! store directly.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};
use nativeroute_tests::apiserver::{ApiServer, realistic_node};
use serde_json::{Value, json};

use super::model::{self, LABEL, Model, NodeEvent, Pin};

const SUBNET: &str = "nativeroute.io/subnet";
const EXCLUDE: &str = "nativeroute.io/exclude";
const NEXT_HOP: &str = "nativeroute.io/next-hop";
/// A plausible typo of `nativeroute.io/next-hop`: an unknown key.
const TYPO_KEY: &str = "nativeroute.io/nexthop";
/// How long a cleared next-hop override stands before a refused value is
/// written over it (see `model::CLEARED_FOR`): the controller reacts in
/// milliseconds, this is the margin.
const CLEARED_WALL: Duration = Duration::from_secs(2);

/// One Node object's life, from creation to deletion.
#[derive(Clone, Debug)]
pub struct Incarnation {
    pub name: String,
    pub uid: String,
    /// Where its route may point: its InternalIP, and every usable
    /// next-hop override it was given.
    pub next_hops: Vec<Ipv4Addr>,
    /// When it started and stopped being routable (exists, selected, not
    /// excluded). Conservative on purpose: becoming routable is stamped
    /// after the write returned, ceasing before it was sent, so the
    /// intervals never claim more than the controller could know.
    pub live: Vec<(Instant, bool)>,
}

impl Incarnation {
    /// The intervals it was routable: [from, to), `to` None while it is.
    pub fn live_intervals(&self) -> Vec<(Instant, Option<Instant>)> {
        let mut out = Vec::new();
        let mut since = None;
        for &(at, live) in &self.live {
            match (live, since) {
                (true, None) => since = Some(at),
                (false, Some(from)) => {
                    out.push((from, Some(at)));
                    since = None;
                }
                _ => {}
            }
        }
        if let Some(from) = since {
            out.push((from, None));
        }
        out
    }
}

/// Withdrawals (and re-pointed routes) the run lets itself cause within a
/// window: well under the removal guard's share (0.5 over 20 s), so that
/// legitimate churn is never held for long; bursts after an outage may
/// still meet the guard, which is measured, not avoided.
pub struct Budget {
    window: Duration,
    share: f64,
    recent: VecDeque<Instant>,
}

impl Budget {
    pub fn new(window: Duration, share: f64) -> Budget {
        Budget {
            window,
            share,
            recent: VecDeque::new(),
        }
    }

    /// How long to wait before one more withdrawal fits; zero if it does.
    fn wait(&mut self, live: usize) -> Duration {
        let now = Instant::now();
        while self
            .recent
            .front()
            .is_some_and(|at| now.duration_since(*at) > self.window)
        {
            self.recent.pop_front();
        }
        let allowed = ((live as f64) * self.share).floor().max(1.0) as usize;
        if self.recent.len() < allowed {
            return Duration::ZERO;
        }
        self.recent.front().map_or(Duration::ZERO, |oldest| {
            (*oldest + self.window).saturating_duration_since(now)
        }) + Duration::from_millis(10)
    }
}

pub struct Cluster {
    api: Arc<ApiServer>,
    nodes: Api<Node>,
    /// False while the run has the API server stopped.
    pub api_up: bool,
    model: Model,
    budget: Budget,
    incarnations: Vec<Incarnation>,
    /// Node index → its current incarnation.
    current: HashMap<usize, usize>,
    /// When each node's usable override last went.
    override_cleared: HashMap<usize, Instant>,
    pub counts: BTreeMap<&'static str, usize>,
    /// Patches answered with an error (an injected 500) and sent again.
    pub retried_patches: usize,
    /// Time spent waiting for the withdrawal budget.
    pub budget_waits: Duration,
}

impl Cluster {
    pub fn new(api: Arc<ApiServer>, target: usize, budget: Budget) -> Result<Cluster> {
        let client = api.client()?;
        Ok(Cluster {
            api,
            nodes: Api::all(client),
            api_up: true,
            model: Model::new(target),
            budget,
            incarnations: Vec::new(),
            current: HashMap::new(),
            override_cleared: HashMap::new(),
            counts: BTreeMap::new(),
            retried_patches: 0,
            budget_waits: Duration::ZERO,
        })
    }

    pub fn incarnations(&self) -> &[Incarnation] {
        &self.incarnations
    }

    pub fn population(&self) -> usize {
        self.model.population()
    }

    /// How long `event` must wait for the withdrawal budget; zero if it
    /// takes or moves no route, or fits. The caller waits (and keeps its
    /// timers going meanwhile) and asks again.
    pub fn budget_wait(&mut self, event: &NodeEvent) -> Duration {
        if !self.model.withdraws(event) {
            return Duration::ZERO;
        }
        self.budget.wait(self.model.live())
    }

    /// Applies one event (the caller has waited for `budget_wait`).
    /// Returns once the write is stored.
    pub async fn apply(&mut self, event: &NodeEvent) -> Result<()> {
        if self.model.withdraws(event) {
            self.budget.recent.push_back(Instant::now());
        }
        self.hold_refused_override(event).await;
        let node = event.node();
        let was_live = self.model.is_live(node);
        let had_override = self.model.override_in_use(node).is_some();
        let before = Instant::now();
        self.write(event).await?;
        let after = Instant::now();
        self.model.apply(event);
        *self.counts.entry(event.kind()).or_default() += 1;
        if had_override && self.model.override_in_use(node).is_none() {
            self.override_cleared.insert(node, after);
        }
        if matches!(
            event,
            NodeEvent::Create { .. } | NodeEvent::Delete { .. } | NodeEvent::Recreate { .. }
        ) {
            return Ok(());
        }
        let is_live = self.model.is_live(node);
        let next_hop = self
            .model
            .override_in_use(node)
            .and_then(|hop| hop.parse::<Ipv4Addr>().ok());
        if let Some(incarnation) = self.current_mut(node) {
            if let Some(hop) = next_hop.filter(|h| !incarnation.next_hops.contains(h)) {
                incarnation.next_hops.push(hop);
            }
            match (was_live, is_live) {
                (true, false) => incarnation.live.push((before, false)),
                (false, true) => incarnation.live.push((after, true)),
                _ => {}
            }
        }
        Ok(())
    }

    /// A refused override goes only over one whose predecessor the
    /// controller has surely seen go (see `CLEARED_WALL`).
    async fn hold_refused_override(&self, event: &NodeEvent) {
        let NodeEvent::NextHop {
            node,
            value: Some(value),
        } = event
        else {
            return;
        };
        if model::usable(value) {
            return;
        }
        if let Some(cleared) = self.override_cleared.get(node) {
            let wait = (*cleared + CLEARED_WALL).saturating_duration_since(Instant::now());
            tokio::time::sleep(wait).await;
        }
    }

    fn current_mut(&mut self, node: usize) -> Option<&mut Incarnation> {
        let index = *self.current.get(&node)?;
        self.incarnations.get_mut(index)
    }

    async fn write(&mut self, event: &NodeEvent) -> Result<()> {
        let name = model::name(event.node());
        match event {
            NodeEvent::Create {
                node,
                selected,
                pin,
            } => {
                let pin = pin.as_ref().map(|pin| self.pin_value(pin));
                self.create(*node, *selected, pin.as_deref())
            }
            NodeEvent::Delete { node } => {
                self.delete(*node);
                Ok(())
            }
            NodeEvent::Recreate {
                node,
                pin_old_subnet,
            } => {
                let old = self.api.node(&name).and_then(|n| n.spec?.pod_cidr);
                self.delete(*node);
                let pin = old.filter(|_| *pin_old_subnet);
                self.create(*node, true, pin.as_deref())
            }
            NodeEvent::Relabel { selected, .. } => {
                let value = if *selected { json!("yes") } else { Value::Null };
                self.patch(&name, json!({"metadata": {"labels": {LABEL: value}}}))
                    .await
            }
            NodeEvent::Exclude { value, .. } => self.annotate(&name, EXCLUDE, *value).await,
            NodeEvent::NextHop { value, .. } => self.annotate(&name, NEXT_HOP, *value).await,
            NodeEvent::PinExisting { pin, .. } => {
                let value = self.pin_value(pin);
                self.annotate(&name, SUBNET, Some(&value)).await
            }
            NodeEvent::DropSubnetAnnotation { .. } => self.annotate(&name, SUBNET, None).await,
            NodeEvent::UnknownAnnotation { .. } => {
                self.annotate(&name, TYPO_KEY, Some("192.168.3.9")).await
            }
        }
    }

    /// Registers a Node as a kubelet would, and starts its incarnation.
    fn create(&mut self, node: usize, selected: bool, pin: Option<&str>) -> Result<()> {
        let name = model::name(node);
        let mut object = realistic_node(&name, model::address(node).into());
        if selected {
            object
                .metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert(LABEL.into(), "yes".into());
        }
        if let Some(pin) = pin {
            object
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(SUBNET.into(), pin.into());
        }
        let stored = self
            .api
            .put_node(object)
            .with_context(|| format!("creating Node {name}"))?;
        let after = Instant::now();
        let uid = stored.metadata.uid.unwrap_or_default();
        self.incarnations.push(Incarnation {
            name,
            uid,
            next_hops: vec![model::address(node)],
            live: vec![(after, selected)],
        });
        self.current.insert(node, self.incarnations.len() - 1);
        Ok(())
    }

    fn delete(&mut self, node: usize) {
        let before = Instant::now();
        if let Some(incarnation) = self.current_mut(node) {
            incarnation.live.push((before, false));
        }
        self.current.remove(&node);
        self.api.delete_node(&model::name(node));
    }

    /// The text of a pin; a subnet "of another node" is read now.
    fn pin_value(&self, pin: &Pin) -> String {
        match pin {
            Pin::Free(n) => format!("11.11.{n}.0/24"),
            Pin::SubnetOf(other) => self
                .api
                .node(&model::name(*other))
                .and_then(|n| n.spec?.pod_cidr)
                .unwrap_or_else(|| "11.11.249.0/24".into()),
            Pin::Reserved => "11.11.250.0/24".into(),
            Pin::Garbage(text) => (*text).into(),
        }
    }

    async fn annotate(&mut self, name: &str, key: &str, value: Option<&str>) -> Result<()> {
        let value = value.map_or(Value::Null, |v| json!(v));
        self.patch(name, json!({"metadata": {"annotations": {key: value}}}))
            .await
    }

    async fn patch(&mut self, name: &str, patch: Value) -> Result<()> {
        if !self.api_up {
            return self.patch_store(name, &patch);
        }
        let params = PatchParams {
            field_manager: Some("chaos".into()),
            ..PatchParams::default()
        };
        let mut tries = 0;
        loop {
            match self.nodes.patch(name, &params, &Patch::Merge(&patch)).await {
                Ok(_) => return Ok(()),
                // The 500s injected for the controller sometimes hit the
                // run's own patches; a user would try again.
                Err(err) if tries < 20 => {
                    tries += 1;
                    self.retried_patches += 1;
                    if tries > 10 {
                        eprintln!("chaos: patching Node {name} failed {tries} times: {err}");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(err) => return Err(err).with_context(|| format!("patching Node {name}")),
            }
        }
    }

    /// A merge patch applied to the stored Node directly (API away).
    fn patch_store(&self, name: &str, patch: &Value) -> Result<()> {
        let node = self
            .api
            .node(name)
            .with_context(|| format!("Node {name} is not stored"))?;
        let mut value = serde_json::to_value(node)?;
        json_patch::merge(&mut value, patch);
        let node: Node = serde_json::from_value(value)?;
        self.api.put_node(node)?;
        Ok(())
    }
}
