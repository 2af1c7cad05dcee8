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
#[derive(Clone)]
pub struct Clients {
    /// Long-lived watches: no read timeout (the API server ends idle
    /// watches itself).
    pub watch: kube::Client,
    /// Reads and writes of Nodes and Events.
    pub requests: kube::Client,
    /// The leader Lease: short timeouts and no hidden retries, so that a
    /// renewal either answers well within the renew deadline or fails.
    pub lease: kube::Client,
}

const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const LEASE_TIMEOUT: Duration = Duration::from_secs(4);

impl Clients {
    pub fn new(config: kube::Config) -> anyhow::Result<Clients> {
        use anyhow::Context;
        let build = |config: kube::Config| {
            kube::Client::try_from(config).context("cannot build the Kubernetes client")
        };
        let mut requests = config.clone();
        requests.read_timeout = Some(REQUEST_TIMEOUT);
        requests.write_timeout = Some(REQUEST_TIMEOUT);
        let mut lease = config.clone();
        lease.read_timeout = Some(LEASE_TIMEOUT);
        lease.write_timeout = Some(LEASE_TIMEOUT);
        lease.connect_timeout = Some(LEASE_TIMEOUT);
        lease.default_retry = false;
        Ok(Clients {
            watch: build(config)?,
            requests: build(requests)?,
            lease: build(lease)?,
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
