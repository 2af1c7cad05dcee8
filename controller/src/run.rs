//! `nativeroute run`: the controller. Reads the nodes, assigns subnets,
//! records them, and hands each router's desired routes to its worker.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::{Config, NodesConfig};
use crate::desired::RouterDesired;
use crate::inventory::NodeSource;
use crate::inventory::file::{FileInventory, FileSource};
use crate::ipam::Ipam;
use crate::metrics::{self, Metrics};
use crate::reconcile::Reconciler;
use crate::report::LogReporter;
use crate::sync::{Observers, WorkerSettings, run_worker};

/// How long identical node events stay quiet in the log.
const EVENT_QUIET: Duration = Duration::from_secs(600);

/// How the controller process is run (command-line settings, not config).
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// Where /metrics, /healthz and /readyz listen; `None`: nowhere.
    pub metrics_address: Option<SocketAddr>,
}

/// Runs the controller until `shutdown` turns true. Stopping withdraws no route.
pub async fn run(
    config: Config,
    options: RunOptions,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let config = Arc::new(config);
    let observers = Observers {
        reporter: Arc::new(LogReporter::new(EVENT_QUIET)),
        metrics: Arc::new(Metrics::new()),
    };
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
            observers.metrics.clone(),
            ready_rx,
            shutdown.clone(),
        );
        tokio::spawn(async move {
            if let Err(err) = server.await {
                tracing::error!(error = %err, "the metrics server stopped");
            }
        });
    }
    match &config.nodes {
        NodesConfig::File { path } => {
            let source = FileSource::open(FileInventory::open(path)?, config.resync_interval)?;
            run_with_source(config.clone(), source, observers, ready_tx, shutdown).await
        }
        NodesConfig::Kubernetes { .. } => bail!(
            "nodes.source: kubernetes is not available in this version yet; use nodes.source: file"
        ),
    }
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

/// The router workers and the channels that feed them.
struct Routers {
    senders: BTreeMap<String, watch::Sender<Arc<RouterDesired>>>,
    workers: JoinSet<()>,
}

impl Routers {
    fn start(config: &Config, observers: &Observers, shutdown: &watch::Receiver<bool>) -> Self {
        let mut senders = BTreeMap::new();
        let mut workers = JoinSet::new();
        let settings = WorkerSettings::new(config.resync_interval, config.removal_guard);
        for router in &config.routers {
            let (sender, receiver) = watch::channel(Arc::new(RouterDesired::default()));
            senders.insert(router.name.to_string(), sender);
            workers.spawn(run_worker(
                router.clone(),
                config.ownership(),
                receiver,
                settings.clone(),
                observers.clone(),
                shutdown.clone(),
            ));
        }
        Routers { senders, workers }
    }

    fn publish(&self, desired: BTreeMap<String, RouterDesired>) {
        for (router, routes) in desired {
            if let Some(sender) = self.senders.get(&router) {
                sender.send_if_modified(|current| {
                    if **current == routes {
                        return false;
                    }
                    *current = Arc::new(routes);
                    true
                });
            }
        }
    }
}

async fn run_with_source(
    config: Arc<Config>,
    mut source: impl NodeSource,
    observers: Observers,
    ready: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut reconciler = Reconciler::new(config.clone(), observers.reporter.clone());
    reconciler.resume_after(&source.resume_point());
    let mut routers = Routers::start(&config, &observers, &shutdown);
    tracing::info!(
        nodes = source.describe(),
        routers = config.routers.len(),
        "controller started"
    );
    loop {
        let snapshot = tokio::select! {
            _ = shutdown.changed() => break,
            snapshot = source.next_snapshot() => snapshot,
        };
        let snapshot = match snapshot {
            Ok(snapshot) => snapshot,
            Err(err) => {
                tracing::error!(error = %err, "nodes not read; the last good state stays");
                continue;
            }
        };
        let reconciled = reconciler.apply(&snapshot, true);
        record_pool_usage(&observers.metrics, reconciler.ipam());
        // Record before routing: a route must never exist for an assignment
        // a crash could forget.
        match source.record(reconciler.ipam(), &reconciled.present).await {
            Ok(()) => {
                routers.publish(reconciled.desired);
                ready.send_replace(true);
            }
            Err(err) => {
                tracing::error!(error = %err, "assignments not recorded; their routes wait until they are")
            }
        }
    }
    tracing::info!("stopping; routes stay on the routers");
    while routers.workers.join_next().await.is_some() {}
    Ok(())
}
