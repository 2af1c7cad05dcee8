//! A Kubernetes API server for tests, in process, on 127.0.0.1: enough of
//! the real one (Nodes with their status subresource, both Events APIs,
//! Leases, ConfigMaps; list, watch, get, create, update, patch, delete)
//! that the real `kube` client, its watcher and its event Recorder run
//! against it unchanged, and faithful where a controller's behaviour depends
//! on it: resourceVersions, conflicts, 404s, 422s for podCIDR changes and
//! for ConfigMaps that are too large, have bad keys or are immutable,
//! strategic merge, watch resumption and 410 Expired.
//!
//! Tests reach behind the API through the store methods (as a kubelet or
//! kube-controller-manager would write) and break the server through
//! [`Faults`].
//!
//! Not served: server-side apply, other kinds, namespaces as objects (every
//! namespace exists), managedFields, protobuf, authentication. A list with a
//! resourceVersion answers from the current state.

mod config_map_rules;
mod event_rules;
mod faults;
mod fixtures;
mod handlers;
mod kubeconfig;
mod listener;
mod meta;
mod node_rules;
mod patch;
mod requests;
mod resources;
mod routes;
mod schema;
mod selector;
mod status;
mod store;
mod strategic;
mod strategy;
mod watch;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use k8s_openapi::api::events::v1::Event;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

pub use faults::{Failure, Faults};
pub use fixtures::{realistic_node, realistic_nodes};
pub use requests::RequestRecord;

use faults::FaultState;
use listener::Listener;
use requests::RequestLog;
use resources::ResourceType;
use store::{Storage, Store, WriteError};

/// How the server behaves where tests may want it different.
#[derive(Clone, Debug)]
pub struct Options {
    /// Changes kept per kind for watches to resume from.
    pub history_limit: usize,
    /// How often a watch that allows bookmarks gets one (the real server:
    /// about a minute).
    pub bookmark_interval: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(60),
        }
    }
}

/// What the request handlers share.
pub(crate) struct Shared {
    pub store: Store,
    pub faults: FaultState,
    pub requests: RequestLog,
    pub options: Options,
}

/// A running test API server. Dropping it stops it.
pub struct ApiServer {
    shared: Arc<Shared>,
    listener: Arc<Listener>,
}

impl ApiServer {
    /// Starts a server with default options on 127.0.0.1 and a free port.
    pub async fn start() -> anyhow::Result<ApiServer> {
        ApiServer::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> anyhow::Result<ApiServer> {
        let shared = Arc::new(Shared {
            store: Store::new(options.history_limit),
            faults: FaultState::default(),
            requests: RequestLog::default(),
            options,
        });
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let listener = Listener::bind(addr, routes::router(shared.clone())).await?;
        Ok(ApiServer {
            shared,
            listener: Arc::new(listener),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.listener.addr()
    }

    /// "http://127.0.0.1:PORT".
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// A kube client for this server (default namespace "default").
    pub fn client(&self) -> anyhow::Result<kube::Client> {
        let uri = self.url().parse().context("the server URL is not a URI")?;
        kube::Client::try_from(kube::Config::new(uri)).context("cannot build a kube client")
    }

    /// Writes a kubeconfig (plain http, no credentials) for this server.
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        kubeconfig::write(path, &self.url())
    }

    /// The handle for injecting failures, stopping and restarting.
    pub fn faults(&self) -> Faults {
        Faults {
            shared: self.shared.clone(),
            listener: self.listener.clone(),
        }
    }

    /// The current resourceVersion of the whole store.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.current_rv()
    }

    /// Creates or replaces a Node, status included, as a kubelet or
    /// kube-controller-manager writes it: no preconditions, no validation,
    /// podCIDR/podCIDRs defaulted from each other. Watches see ADDED or
    /// MODIFIED. Returns the Node as stored.
    pub fn put_node(&self, node: Node) -> anyhow::Result<Node> {
        let mut value = serde_json::to_value(&node).context("cannot serialise the Node")?;
        let name = node
            .metadata
            .name
            .clone()
            .context("a Node needs metadata.name")?;
        node_rules::normalise_pod_cidrs(&mut value);
        if let Some(m) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("namespace");
        }
        let key = (String::new(), name);
        let store = &self.shared.store;
        let replaced = store.update(Storage::Nodes, &key, false, |current| {
            let mut next = value.clone();
            for kept in ["uid", "creationTimestamp", "generation"] {
                if let (Some(old), Some(m)) = (
                    current.pointer(&format!("/metadata/{kept}")),
                    next["metadata"].as_object_mut(),
                ) {
                    m.insert(kept.into(), old.clone());
                }
            }
            Ok(next)
        });
        let stored = match replaced {
            Ok(stored) => stored,
            Err(WriteError::NotFound) => {
                let mut fresh = value;
                meta::before_create(&mut fresh, ResourceType::Nodes, "")
                    .map_err(|err| anyhow::anyhow!("{}", err.message))?;
                store
                    .create(Storage::Nodes, key, fresh, false)
                    .map_err(|err| anyhow::anyhow!("cannot store the Node: {err:?}"))?
            }
            Err(err) => anyhow::bail!("cannot store the Node: {err:?}"),
        };
        Ok(serde_json::from_value((*stored).clone())?)
    }

    /// Deletes a Node as `kubectl delete node` would; false if there was none.
    pub fn delete_node(&self, name: &str) -> bool {
        let key = (String::new(), name.to_string());
        self.shared
            .store
            .delete(Storage::Nodes, &key, false, |_| Ok(()))
            .is_ok()
    }

    pub fn node(&self, name: &str) -> Option<Node> {
        let key = (String::new(), name.to_string());
        typed(&*self.shared.store.get(Storage::Nodes, &key)?)
    }

    pub fn nodes(&self) -> Vec<Node> {
        self.shared
            .store
            .all(Storage::Nodes)
            .iter()
            .filter_map(|v| typed(v))
            .collect()
    }

    /// Every Event, however written (core/v1 or events.k8s.io/v1), in the
    /// events.k8s.io/v1 form.
    pub fn events(&self) -> Vec<Event> {
        self.shared
            .store
            .all(Storage::Events)
            .iter()
            .filter_map(|v| schema::encode(ResourceType::Events, v).ok())
            .filter_map(|v| Event::deserialize(&*v).ok())
            .collect()
    }

    pub fn lease(&self, namespace: &str, name: &str) -> Option<Lease> {
        let key = (namespace.to_string(), name.to_string());
        typed(&*self.shared.store.get(Storage::Leases, &key)?)
    }

    pub fn config_map(&self, namespace: &str, name: &str) -> Option<ConfigMap> {
        let key = (namespace.to_string(), name.to_string());
        typed(&*self.shared.store.get(Storage::ConfigMaps, &key)?)
    }

    /// Every ConfigMap in every namespace, ordered by namespace then name.
    pub fn config_maps(&self) -> Vec<ConfigMap> {
        self.shared
            .store
            .all(Storage::ConfigMaps)
            .iter()
            .filter_map(|v| typed(v))
            .collect()
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.requests.snapshot()
    }

    /// How many requests had this verb ("patch", "watch", ...) on this
    /// resource ("nodes", "events", "leases", "configmaps").
    pub fn count_requests(&self, verb: &str, resource: &str) -> usize {
        self.shared.requests.count(verb, resource)
    }

    pub fn clear_requests(&self) {
        self.shared.requests.clear();
    }

    /// Discards the watch history (see [`Faults::compact`]).
    pub fn compact(&self) {
        self.shared.store.compact();
    }

    /// Stops the server (see [`Faults::stop`]).
    pub async fn stop(&self) {
        self.listener.stop().await;
    }

    /// Restarts it on the same port with the same data.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.listener.start().await
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

fn typed<T: DeserializeOwned>(value: &Value) -> Option<T> {
    T::deserialize(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_be_shared_across_tasks_and_threads() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<ApiServer>();
        shareable::<Faults>();
        shareable::<Failure>();
    }
}
