//! Nodes from a Kubernetes cluster: the watch ([`source`]), the slice of a
//! Node that is read ([`node`]), and what is written back on it
//! ([`writeback`]: the subnet annotation, spec.podCIDR, the status
//! annotation and the NetworkUnavailable condition).

pub mod node;
pub mod source;
pub mod writeback;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub use node::{NodeObject, ObservedNode};
pub use source::{KubernetesNodes, KubernetesSource, list_snapshot};
pub use writeback::NodeWriter;

/// The cluster's connection settings: from `kubeconfig` when given, else
/// inferred (in-cluster service account, then KUBECONFIG, then
/// ~/.kube/config).
pub async fn cluster_config(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Config> {
    use anyhow::Context;
    match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("kubeconfig {} is not usable", path.display()))
        }
        None => kube::Config::infer().await.context(
            "no Kubernetes API found: not in a pod, and no KUBECONFIG or ~/.kube/config; pass --kubeconfig",
        ),
    }
}

/// A client for requests (not watches): no request waits forever on a
/// connection that went silent.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<kube::Client> {
    Ok(Clients::new(cluster_config(kubeconfig).await?)?.requests)
}

/// One client per kind of use, each with the timeouts that use needs.
///
/// TCP keepalive is not set: kube's client configuration has no knob for
/// it. A connection that went half-open is found by the read timeouts.
#[derive(Clone)]
pub struct Clients {
    /// The node source's list and watch: a read timeout just past the
    /// watch's own `timeoutSeconds`, so that a list or watch that went
    /// silent (a hung API server, a half-open connection) fails and is
    /// retried instead of hanging the source while the Lease is renewed.
    pub watch: kube::Client,
    /// Reads and writes of Nodes and Events.
    pub requests: kube::Client,
    /// The leader Lease: short timeouts and no hidden retries, so that a
    /// renewal either answers well within the renew deadline or fails.
    pub lease: kube::Client,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const LEASE_TIMEOUT: Duration = Duration::from_secs(4);

/// How long one watch of the Nodes lasts (its `timeoutSeconds`) before it
/// is renewed; kube's default. The API server may stay silent that long.
pub const WATCH_TIMEOUT: Duration = Duration::from_secs(290);

/// How much longer than its watch timeout the node source waits for a byte
/// before it gives a list or watch up.
pub const WATCH_READ_MARGIN: Duration = Duration::from_secs(5);

impl Clients {
    /// Clients for a node source that watches with [`WATCH_TIMEOUT`].
    pub fn new(config: kube::Config) -> anyhow::Result<Clients> {
        Self::with_watch_timeout(config, WATCH_TIMEOUT)
    }

    /// Clients for a node source whose watches last `watch_timeout`
    /// ([`KubernetesNodes::watch_timeout`] must be the same).
    pub fn with_watch_timeout(
        config: kube::Config,
        watch_timeout: Duration,
    ) -> anyhow::Result<Clients> {
        use anyhow::Context;
        let build = |mut config: kube::Config, timeout: Duration| {
            config.read_timeout = Some(timeout);
            config.write_timeout = Some(timeout);
            // Count from the request, not from when its pooled connection
            // went idle (that idle time is no silence of the API server).
            config.reset_reader_on_write = true;
            kube::Client::try_from(config).context("cannot build the Kubernetes client")
        };
        let mut lease = config.clone();
        lease.connect_timeout = Some(LEASE_TIMEOUT);
        lease.default_retry = false;
        Ok(Clients {
            watch: build(config.clone(), watch_timeout + WATCH_READ_MARGIN)?,
            requests: build(config, REQUEST_TIMEOUT)?,
            lease: build(lease, LEASE_TIMEOUT)?,
        })
    }
}

/// Lists the Nodes `config` selects, once (for `plan` and `check`).
pub async fn list_nodes(
    config: &crate::config::Config,
    kubeconfig: Option<&Path>,
) -> anyhow::Result<crate::inventory::Snapshot> {
    use anyhow::Context;
    let settings = KubernetesNodes::of(config)?;
    let api = kube::Api::all(client(kubeconfig).await?);
    list_snapshot(&api, &settings)
        .await
        .context("cannot list the Nodes (the service account needs get, list and watch on nodes)")
}

/// Node names to UIDs, so that Events name the exact Node object (as
/// `kubectl describe node` looks them up).
#[derive(Clone, Debug, Default)]
pub struct NodeDirectory(Arc<RwLock<HashMap<String, String>>>);

impl NodeDirectory {
    pub fn uid_of(&self, name: &str) -> Option<String> {
        self.0.read().ok()?.get(name).cloned()
    }

    fn insert(&self, name: &str, uid: &str) {
        if let Ok(mut map) = self.0.write()
            && map.get(name).map(String::as_str) != Some(uid)
        {
            map.insert(name.to_owned(), uid.to_owned());
        }
    }

    fn remove(&self, name: &str) {
        if let Ok(mut map) = self.0.write() {
            map.remove(name);
        }
    }
}
