//! `nativeroute run`: the controller. Reads the nodes, assigns subnets,
//! records them, and hands each router's desired routes to its worker.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinSet;

use std::path::PathBuf;

use kube::Api;

use crate::announced::{self, AnnouncedRecord};
use crate::config::{Config, NodesConfig};
use crate::desired::RouterDesired;
use crate::health::Liveness;
use crate::inventory::NodeSource;
use crate::inventory::file::{FileInventory, FileSource};
use crate::inventory::kubernetes::{
    self, Clients, KubernetesNodes, KubernetesSource, NodeDirectory, NodeWriter,
};
use crate::ipam::{Ipam, NextFit};
use crate::leader::{LeaderElection, LeaseSettings, TermEnd};
use crate::metrics::{self, Metrics};
use crate::reconcile::Reconciler;
use crate::reload::{self, ConfigWatch};
use crate::report::kubernetes::{EventPublisher, EventReporter};
use crate::report::{LogReporter, Reporter};
use crate::status::board::RouterBoard;
use crate::status::{RouteStates, RoutingPlan, StatusSink, run_status};
use crate::sync::{Observers, WorkerInputs, WorkerSettings, run_worker};

/// How long to wait before asking a failed node source again.
const SOURCE_RETRY: Duration = Duration::from_secs(1);

/// How long identical node events stay quiet in the log.
const EVENT_QUIET: Duration = Duration::from_secs(600);

/// How long a stopping term waits for batches in flight. Past it they are
/// abandoned (the fence already stops them sending more), so that the Lease
/// is released and a successor can start.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(10);

/// How the controller process is run (command-line settings, not config).
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Where /metrics, /healthz and /readyz listen; `None`: nowhere.
    pub metrics_address: Option<SocketAddr>,
    /// The kubeconfig to use; `None`: in-cluster, KUBECONFIG or ~/.kube/config.
    pub kubeconfig: Option<PathBuf>,
    /// The Lease that elects one leader; `None`: this instance always leads
    /// (only safe when it is the only one).
    pub lease: Option<LeaseSettings>,
    /// Bumped when an operator releases the withdrawals the removal guard
    /// holds (`nativeroute release`, SIGUSR1).
    pub release: watch::Receiver<u64>,
    /// The config file, watched for live changes; `None`: no live config.
    pub config_path: Option<PathBuf>,
    /// Where the controller keeps its own objects in the cluster.
    pub home: Home,
}

/// The namespace of the controller's own objects, and the stem of their
/// names (the Lease's name): the Lease, and the ConfigMaps that record what
/// BGP sessions announced (`{stem}-bgp-{router}`).
#[derive(Clone, Debug)]
pub struct Home {
    pub namespace: String,
    pub stem: String,
}

/// How a term ended, when it ended without an error.
pub enum Ended {
    /// Shutdown, or the leadership term is over.
    Stopped,
    /// A new config was taken: the next term runs with it.
    Reload(Arc<Config>),
}

/// Runs the controller until `shutdown` turns true. Stopping withdraws no route.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let liveness = Arc::new(Liveness::default());
    let (ready_tx, ready_rx) = watch::channel(false);
    if let Some(address) = options.metrics_address {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| {
                format!("cannot listen for /metrics on {address} (--metrics-address)")
            })?;
        tracing::info!(address = %listener.local_addr().unwrap_or(address), "serving /metrics, /healthz and /readyz");
        let server = metrics::serve(
            listener,
            metrics.clone(),
            ready_rx,
            liveness.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            if let Err(err) = server.await {
                tracing::error!(error = %err, "the metrics server stopped");
            }
        });
    }
    // Without a file to watch, the sender stays here and nothing changes.
    let (_no_watch, mut configs) = watch::channel(config.clone());
    let _watch = match &options.config_path {
        Some(path) => {
            let (watch, receiver) = ConfigWatch::start(path, config.clone(), metrics.clone())
                .with_context(|| format!("cannot watch {} for changes", path.display()))?;
            configs = receiver;
            Some(watch)
        }
        None => None,
    };
    let controls = Controls {
        ready: ready_tx,
        shutdown,
        release: options.release,
        liveness,
        configs,
        board: RouterBoard::default(),
    };
    match &config.nodes {
        NodesConfig::File { .. } => {
            metrics.leader(true);
            run_file_inventory(config, &metrics, controls).await
        }
        NodesConfig::Kubernetes { .. } => {
            let cluster = kubernetes::cluster_config(options.kubeconfig.as_deref()).await?;
            let clients = Clients::new(cluster)?;
            let record = Arc::new(AnnouncedRecord::in_config_maps(
                clients.requests.clone(),
                &options.home.namespace,
                &options.home.stem,
            ));
            run_kubernetes(
                config.clone(),
                clients,
                options.lease,
                metrics,
                controls,
                &record,
            )
            .await
        }
    }
}

/// The file inventory: one term after another, each with the config the
/// last one took.
async fn run_file_inventory(
    mut config: Arc<Config>,
    metrics: &Arc<Metrics>,
    controls: Controls,
) -> anyhow::Result<()> {
    let mut record = None;
    loop {
        let NodesConfig::File { path } = &config.nodes else {
            anyhow::bail!("a live config cannot change nodes.source");
        };
        let inventory = FileInventory::open(path)?;
        // One process sends every session of a file inventory's routers:
        // the record is read once, before the first.
        let record = match &mut record {
            Some(record) => record,
            None => {
                let new = Arc::new(AnnouncedRecord::beside(inventory.state_path()));
                new.restore(&config, &mut controls.shutdown.clone()).await;
                record.insert(new)
            }
        };
        let source = FileSource::open(inventory, config.resync_interval)?;
        let observers = Observers {
            reporter: Arc::new(LogReporter::new(EVENT_QUIET)),
            metrics: metrics.clone(),
            board: controls.board.clone(),
        };
        let term = controls.for_term(controls.shutdown.clone());
        let ended = run_with_source(config.clone(), source, observers, None, term, record).await?;
        // The sessions are closed: what they announced last is what the
        // routers keep, and what the next process starts from.
        let _ = record.save_now(true).await;
        match ended {
            Ended::Stopped => return Ok(()),
            Ended::Reload(new) => config = new,
        }
    }
}

/// The Kubernetes mode: campaigns for the lease, leads until the lease is
/// lost or shutdown, and campaigns again after losing it.
async fn run_kubernetes(
    mut config: Arc<Config>,
    clients: Clients,
    lease: Option<LeaseSettings>,
    metrics: Arc<Metrics>,
    controls: Controls,
    record: &Arc<AnnouncedRecord>,
) -> anyhow::Result<()> {
    let identity = lease
        .as_ref()
        .map_or_else(|| "nativeroute".to_owned(), |l| l.identity.clone());
    let Some(lease) = lease else {
        metrics.leader(true);
        let mut first = true;
        loop {
            let term = controls.for_term(controls.shutdown.clone());
            let ended = lead(
                config.clone(),
                &clients,
                &identity,
                &metrics,
                None,
                term,
                Restore::first_term(record, first),
            )
            .await?;
            first = false;
            let _ = record.save_now(true).await;
            match ended {
                Ended::Stopped => return Ok(()),
                Ended::Reload(new) => config = new,
            }
        }
    };
    let mut shutdown = controls.shutdown.clone();
    let ready = &controls.ready;
    let mut election =
        LeaderElection::new(clients.lease.clone(), lease).reporting(controls.board.clone());
    loop {
        metrics.leader(false);
        // A follower is doing its job: ready, so that a Deployment of
        // several replicas becomes available. A leader is ready once it
        // applied its first complete node list.
        ready.send_replace(true);
        tracing::info!(lease = election.describe(), "waiting to lead");
        if !election.acquire(&mut shutdown).await {
            return Ok(());
        }
        ready.send_replace(false);
        metrics.leader(true);
        tracing::info!(lease = election.describe(), "leading");
        // The last leader's sessions ended at its fence; what they
        // announced is what the routers still hold, read by the first term
        // (while the lease is held).
        let mut first = true;
        // Terms while the lease is held: a new config starts a new term
        // without letting the lease go.
        let ended = loop {
            let (term_tx, term_rx) = watch::channel(false);
            // Next-fit continues where the last leader stopped: the
            // cursor travels on the Lease.
            let term = lead(
                config.clone(),
                &clients,
                &identity,
                &metrics,
                Some(election.next_fit()),
                controls.for_term(term_rx),
                Restore::first_term(record, first),
            );
            first = false;
            tokio::pin!(term);
            let ended = tokio::select! {
                result = &mut term => match result {
                    Ok(Ended::Reload(new)) => {
                        let _ = record.save_now(true).await;
                        config = new;
                        continue;
                    }
                    // The term ended by itself: a fatal error. Release the
                    // lease so that another instance takes over at once.
                    other => {
                        election.release().await;
                        return other.map(|_| ());
                    }
                },
                // A restarted hold counts its renew deadline from now: at
                // most one retry period later than the last renewal, well
                // inside the lease's duration.
                ended = election.hold(&mut shutdown) => ended,
            };
            // Stop leading before anyone else may start: workers finish the
            // batch in hand and stop; the routes stay.
            let _ = term_tx.send(true);
            let result = term.await;
            controls.liveness.term_ended();
            ready.send_replace(false);
            if ended == TermEnd::Shutdown {
                // Still the leader: the last word on what the sessions
                // announced is ours. A lost lease writes nothing more,
                // since another leader may already have read the record.
                let _ = record.save_now(true).await;
                election.release().await;
                return result.map(|_| ());
            }
            break ended;
        };
        metrics.leader(false);
        tracing::warn!(?ended, "stepped down as leader; routes stay as they are");
    }
}

/// The record of what BGP sessions announced, and whether this term reads
/// it first: the first term of a leadership does, as the last leader (or
/// process) may have left one; later terms carry on from this process's.
#[derive(Clone, Copy)]
struct Restore<'a> {
    record: &'a Arc<AnnouncedRecord>,
    first: bool,
}

impl<'a> Restore<'a> {
    fn first_term(record: &'a Arc<AnnouncedRecord>, first: bool) -> Restore<'a> {
        Restore { record, first }
    }
}

/// One term as leader, until `shutdown` turns true.
async fn lead(
    config: Arc<Config>,
    clients: &Clients,
    identity: &str,
    metrics: &Arc<Metrics>,
    next_fit: Option<NextFit>,
    controls: Controls,
    restore: Restore<'_>,
) -> anyhow::Result<Ended> {
    // The Node writer and the Event sender stop with the term, also when
    // the term ends by itself for a new config.
    let (end_term, shutdown) = term_signal(&controls.shutdown);
    if restore.first {
        restore.record.restore(&config, &mut shutdown.clone()).await;
    }
    let directory = NodeDirectory::default();
    let writer = NodeWriter::new();
    let publisher = EventPublisher::new(
        clients.requests.clone(),
        directory.clone(),
        identity.to_owned(),
    );
    let (events, send_events) = EventReporter::new(
        LogReporter::new(EVENT_QUIET),
        publisher,
        metrics.clone(),
        shutdown.clone(),
    );
    tokio::spawn(send_events);
    let reporter: Arc<dyn Reporter> = Arc::new(events);
    tokio::spawn(writer.clone().run(
        Api::all(clients.requests.clone()),
        reporter.clone(),
        shutdown.clone(),
    ));
    let mut source = KubernetesSource::new(
        Api::all(clients.watch.clone()),
        KubernetesNodes::of(&config)?,
        writer.clone(),
        directory,
    );
    if let Some(next_fit) = next_fit {
        source = source.resuming(next_fit);
    }
    let observers = Observers {
        reporter,
        metrics: metrics.clone(),
        board: controls.board.clone(),
    };
    let sink: Arc<dyn StatusSink> = Arc::new(writer);
    let ended = run_with_source(
        config,
        source,
        observers,
        Some(sink),
        controls.for_term(shutdown),
        restore.record,
    )
    .await;
    end_term.send_replace(true);
    ended
}

/// A term's own end: it turns true when `outer` does, or when the sender
/// returned here is told so.
fn term_signal(outer: &watch::Receiver<bool>) -> (Arc<watch::Sender<bool>>, watch::Receiver<bool>) {
    let (sender, receiver) = watch::channel(*outer.borrow());
    let sender = Arc::new(sender);
    let forward = sender.clone();
    let mut outer = outer.clone();
    tokio::spawn(async move {
        tokio::select! {
            stopped = outer.wait_for(|stop| *stop) => if stopped.is_ok() {
                forward.send_replace(true);
            },
            // Every receiver of the term is gone: nothing left to tell.
            () = forward.closed() => {}
        }
    });
    (sender, receiver)
}

fn record_pool_usage(metrics: &Metrics, ipam: &Ipam) {
    for usage in ipam.usage() {
        metrics.pool(
            usage.family.as_str(),
            usage.used,
            usage.free(),
            usage.reserved,
        );
    }
}

/// The router workers, the channels that feed them and those that carry
/// back what each sync confirmed.
struct Routers {
    senders: BTreeMap<String, watch::Sender<Arc<RouterDesired>>>,
    states: BTreeMap<String, watch::Receiver<Arc<RouteStates>>>,
    workers: JoinSet<()>,
    /// Which router each worker task serves.
    worker_routers: HashMap<tokio::task::Id, String>,
}

impl Routers {
    fn start(
        config: &Config,
        observers: &Observers,
        shutdown: &watch::Receiver<bool>,
        release: &watch::Receiver<u64>,
    ) -> Self {
        let mut senders = BTreeMap::new();
        let mut states = BTreeMap::new();
        let mut workers = JoinSet::new();
        let mut worker_routers = HashMap::new();
        let settings = WorkerSettings::new(config.resync_interval, config.removal_guard);
        for router in &config.routers {
            let (sender, receiver) = watch::channel(Arc::new(RouterDesired::default()));
            let (states_tx, states_rx) = watch::channel(Arc::new(RouteStates::new()));
            senders.insert(router.name.to_string(), sender);
            states.insert(router.name.to_string(), states_rx);
            let inputs = WorkerInputs {
                desired: receiver,
                shutdown: shutdown.clone(),
                release: release.clone(),
            };
            let task = workers.spawn(run_worker(
                router.clone(),
                config.ownership(),
                inputs,
                settings.clone(),
                observers.clone(),
                states_tx,
            ));
            worker_routers.insert(task.id(), router.name.to_string());
        }
        Routers {
            senders,
            states,
            workers,
            worker_routers,
        }
    }

    /// A worker ended while the term goes on: only a panic does that, and
    /// its router is no longer synced. `/healthz` fails so that the process
    /// is restarted; the other routers carry on meanwhile.
    fn worker_ended(
        &mut self,
        ended: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
        liveness: &Liveness,
    ) {
        let (id, why) = match ended {
            Ok((id, ())) => (id, "it stopped".to_owned()),
            Err(err) => (err.id(), err.to_string()),
        };
        let router = self
            .worker_routers
            .remove(&id)
            .unwrap_or_else(|| "?".to_owned());
        tracing::error!(router, error = %why, "router worker died; /healthz now fails so that the controller is restarted");
        liveness.worker_died(&router);
    }

    async fn stop(self) {
        let Routers {
            senders,
            mut workers,
            ..
        } = self;
        // A worker stops when the term ends or when its desired routes can
        // no longer change: a term ended for a new config is the second.
        drop(senders);
        stop_within(&mut workers, SHUTDOWN_DEADLINE).await;
    }

    fn publish(&self, desired: &BTreeMap<String, Arc<RouterDesired>>) {
        for (router, routes) in desired {
            if let Some(sender) = self.senders.get(router) {
                // The worker is woken only when what the router should hold
                // changed; who the live nodes are travels along regardless.
                sender.send_if_modified(|current| {
                    let changed = !current.holds_the_same_as(routes);
                    *current = routes.clone();
                    changed
                });
            }
        }
    }
}

/// What steers one term from outside: readiness out, shutdown and
/// releases of held withdrawals in.
struct Controls {
    ready: watch::Sender<bool>,
    /// Turns true when the term ends.
    shutdown: watch::Receiver<bool>,
    release: watch::Receiver<u64>,
    liveness: Arc<Liveness>,
    /// The latest valid config from the config file.
    configs: watch::Receiver<Arc<Config>>,
    /// How each router stands, for the Lease and `nativeroute status`.
    board: RouterBoard,
}

impl Controls {
    /// The same controls for one leadership term, which ends when `ended`
    /// turns true.
    fn for_term(&self, ended: watch::Receiver<bool>) -> Controls {
        Controls {
            ready: self.ready.clone(),
            shutdown: ended,
            release: self.release.clone(),
            liveness: self.liveness.clone(),
            configs: self.configs.clone(),
            board: self.board.clone(),
        }
    }
}

/// Hands the node source's progress to `/healthz` until the source is gone.
async fn report_progress(
    mut progress: watch::Receiver<std::time::Instant>,
    liveness: Arc<Liveness>,
) {
    loop {
        liveness.source_progressed(*progress.borrow_and_update());
        if progress.changed().await.is_err() {
            return;
        }
    }
}

/// Waits for the workers to finish the batch in hand, up to `deadline`;
/// then abandons them. Returns whether they all stopped in time.
async fn stop_within(workers: &mut JoinSet<()>, deadline: Duration) -> bool {
    let all_stopped = async { while workers.join_next().await.is_some() {} };
    if tokio::time::timeout(deadline, all_stopped).await.is_ok() {
        return true;
    }
    tracing::warn!(
        ?deadline,
        "router batches still running at the shutdown deadline are abandoned; the next leader's fresh list settles them"
    );
    workers.shutdown().await;
    false
}

async fn run_with_source(
    config: Arc<Config>,
    mut source: impl NodeSource,
    observers: Observers,
    status: Option<Arc<dyn StatusSink>>,
    controls: Controls,
    record: &Arc<AnnouncedRecord>,
) -> anyhow::Result<Ended> {
    let Controls {
        ready,
        mut shutdown,
        release,
        liveness,
        mut configs,
        board: _,
    } = controls;
    // A config that came while no term ran is this term's to take.
    let mut offered = {
        let latest = configs.borrow_and_update();
        (**latest != *config).then(|| latest.clone())
    };
    let mut reload = None;
    let progress = tokio::spawn(report_progress(source.progress(), liveness.clone()));
    let mut reconciler = Reconciler::new(config.clone(), observers.reporter.clone());
    reconciler.resume_after(&source.resume_point());
    let mut routers = Routers::start(&config, &observers, &shutdown, &release);
    // Only a config with a BGP router has a record to keep.
    let (stop_keeping, keeping_stopped) = watch::channel(false);
    let keeping = (!announced::bgp_routers(&config).is_empty()).then(|| {
        let record = record.clone();
        tokio::spawn(async move { record.keep(keeping_stopped).await })
    });
    let (plan_tx, plan_rx) = watch::channel(Arc::new(RoutingPlan::default()));
    if let Some(sink) = status {
        tokio::spawn(run_status(
            plan_rx,
            routers.states.clone(),
            sink,
            config.manage_node_condition,
            shutdown.clone(),
        ));
    }
    tracing::info!(
        nodes = source.describe(),
        routers = config.routers.len(),
        "controller started"
    );
    loop {
        if let Some(new) = offered.take().filter(|new| **new != *config) {
            let assigned = reconciler
                .ipam()
                .assignments()
                .flat_map(|(_, subnets)| subnets);
            match reload::refused_live(&config, &new, assigned) {
                None => {
                    reload = Some(new);
                    break;
                }
                Some(why) => {
                    observers.metrics.config_reloaded(false);
                    tracing::error!(
                        reason = why,
                        "the changed config cannot apply while running; the running config stays"
                    );
                }
            }
        }
        let snapshot = tokio::select! {
            biased;
            _ = shutdown.changed() => break,
            changed = configs.changed() => {
                if changed.is_ok() {
                    offered = Some(configs.borrow_and_update().clone());
                }
                continue;
            }
            Some(ended) = routers.workers.join_next_with_id() => {
                if *shutdown.borrow() {
                    break;
                }
                routers.worker_ended(ended, &liveness);
                continue;
            }
            snapshot = source.next_snapshot() => snapshot,
        };
        let snapshot = match snapshot {
            Ok(snapshot) => snapshot,
            Err(err) => {
                tracing::error!(error = %err, "nodes not read; the last good state stays");
                tokio::select! {
                    _ = shutdown.changed() => break,
                    _ = tokio::time::sleep(SOURCE_RETRY) => {}
                }
                continue;
            }
        };
        let reconciled = reconciler.apply(&snapshot, true);
        record_pool_usage(&observers.metrics, reconciler.ipam());
        // Record before routing (see NodeSource::record).
        let recorded = source
            .record(
                reconciler.ipam(),
                &reconciled.present,
                reconciled.touched.as_deref(),
            )
            .await;
        if let Err(err) = recorded {
            tracing::error!(error = %err, "assignments not recorded; their routes wait until they are");
            continue;
        }
        let desired: BTreeMap<String, Arc<RouterDesired>> = reconciled
            .desired
            .into_iter()
            .map(|(router, routes)| (router, Arc::new(routes)))
            .collect();
        routers.publish(&desired);
        ready.send_replace(true);
        plan_tx.send_replace(Arc::new(RoutingPlan {
            nodes: reconciled.routing,
            desired,
        }));
    }
    // At once: a deposed leader saves nothing after its fence.
    stop_keeping.send_replace(true);
    if let Some(keeping) = keeping {
        let _ = keeping.await;
    }
    if reload.is_some() {
        tracing::info!("applying the new config: a new term starts; routes stay on the routers");
    } else {
        tracing::info!("stopping; routes stay on the routers");
    }
    // Nothing of this term may report progress once it is over: a follower
    // has no source to be stalled.
    progress.abort();
    let _ = progress.await;
    routers.stop().await;
    Ok(reload.map_or(Ended::Stopped, Ended::Reload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_batch_that_never_ends_is_abandoned_at_the_shutdown_deadline() {
        let mut workers = JoinSet::new();
        workers.spawn(async {});
        workers.spawn(std::future::pending::<()>());
        let started = tokio::time::Instant::now();
        assert!(!stop_within(&mut workers, SHUTDOWN_DEADLINE).await);
        assert_eq!(started.elapsed(), SHUTDOWN_DEADLINE);
        assert!(workers.is_empty(), "the hung worker was left running");
    }

    #[tokio::test(start_paused = true)]
    async fn workers_that_finish_their_batch_are_waited_for() {
        let mut workers = JoinSet::new();
        workers.spawn(tokio::time::sleep(Duration::from_secs(3)));
        assert!(stop_within(&mut workers, SHUTDOWN_DEADLINE).await);
    }
}
