//! Live config: the config file is watched (its directory, since a
//! ConfigMap mount changes by swapping a symlink), and each new version is
//! checked exactly as at start. A valid one is handed to the running term,
//! which applies it by starting a new term with it: the same path as a
//! restart, which withdraws nothing. An invalid one is reported, field by
//! field, and the running config stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::{mpsc, watch};

use crate::config::{Config, NodesConfig};
use crate::metrics::Metrics;

/// How long the config's directory must be quiet before it is read: an
/// editor or the kubelet writes in several steps.
const SETTLE: Duration = Duration::from_millis(200);

/// Watches the config file; the valid new versions come out of `configs`.
pub struct ConfigWatch {
    _watcher: notify::RecommendedWatcher,
    _task: tokio::task::JoinHandle<()>,
}

impl ConfigWatch {
    /// Starts watching `path`, whose contents are `current` now.
    pub fn start(
        path: &Path,
        current: Arc<Config>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<(ConfigWatch, watch::Receiver<Arc<Config>>)> {
        use notify::{RecursiveMode, Watcher};
        let (changed_tx, changed) = mpsc::channel(1);
        let name = path.file_name().map(ToOwned::to_owned);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Other files share the folder (the node inventory, logs):
                // only the config, or the kubelet's `..data` swap of a
                // ConfigMap mount, is a change. On a watcher error, read
                // again rather than miss one.
                let relevant = event.map_or(true, |event| {
                    // Reading the config is an access: not a change.
                    !event.kind.is_access()
                        && event.paths.iter().any(|changed| {
                            changed.file_name().is_some_and(|changed| {
                                Some(changed) == name.as_deref()
                                    || changed.to_string_lossy().starts_with("..")
                            })
                        })
                });
                if relevant {
                    let _ = changed_tx.try_send(());
                }
            })?;
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        let (configs_tx, configs) = watch::channel(current.clone());
        metrics.config_reloaded(true);
        let task = tokio::spawn(read_changes(
            path.to_path_buf(),
            current,
            changed,
            configs_tx,
            metrics,
        ));
        Ok((
            ConfigWatch {
                _watcher: watcher,
                _task: task,
            },
            configs,
        ))
    }
}

async fn read_changes(
    path: PathBuf,
    mut current: Arc<Config>,
    mut changed: mpsc::Receiver<()>,
    configs: watch::Sender<Arc<Config>>,
    metrics: Arc<Metrics>,
) {
    while changed.recv().await.is_some() {
        // Wait until the writer is done: every further event restarts it.
        while let Ok(Some(())) = tokio::time::timeout(SETTLE, changed.recv()).await {}
        tracing::debug!(config = %path.display(), "config directory changed; reading the config");
        match Config::load(&path) {
            Ok(config) if config == *current => {}
            Ok(config) => {
                tracing::info!(config = %path.display(), "config changed; applying it");
                metrics.config_reloaded(true);
                current = Arc::new(config);
                configs.send_replace(current.clone());
            }
            Err(err) => {
                metrics.config_reloaded(false);
                tracing::error!(error = %err, "the changed config is refused; the running config stays");
            }
        }
    }
}

/// Why `new` cannot replace `old` in a running controller holding the
/// subnets `assigned`, if it cannot. What identifies nativeroute's routes
/// and where nodes come from need a restart (and a plan); a pool that no
/// longer holds an assigned subnet would take that node's route away.
pub fn refused_live<'a>(
    old: &Config,
    new: &Config,
    mut assigned: impl Iterator<Item = &'a IpNet>,
) -> Option<String> {
    if new.ownership != old.ownership {
        return Some(
            "ownership changed: the routes already on the routers would no longer be \
             nativeroute's; change it with a restart, after `nativeroute withdraw`"
                .to_owned(),
        );
    }
    if new.ipam != old.ipam {
        return Some("ipam changed: restart the controller to change it".to_owned());
    }
    if !same_source(&old.nodes, &new.nodes) {
        return Some(
            "nodes.source or nodes.file changed: restart the controller to change it".to_owned(),
        );
    }
    if new.pool.node_mask_v4 != old.pool.node_mask_v4
        || new.pool.node_mask_v6 != old.pool.node_mask_v6
    {
        return Some(
            "pool.nodeMaskV4/nodeMaskV6 changed: assigned subnets would not fit".to_owned(),
        );
    }
    if let Some(subnet) = assigned.find(|subnet| {
        !new.pool.cidrs.iter().any(|cidr| cidr.contains(*subnet))
            || new
                .pool
                .reserved
                .iter()
                .any(|reserved| reserved.contains(*subnet))
    }) {
        return Some(format!(
            "assigned subnet {subnet} would be outside pool.cidrs or inside pool.reserved"
        ));
    }
    None
}

fn same_source(old: &NodesConfig, new: &NodesConfig) -> bool {
    match (old, new) {
        (NodesConfig::Kubernetes { .. }, NodesConfig::Kubernetes { .. }) => true,
        (NodesConfig::File { .. }, NodesConfig::File { .. }) => old == new,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::parse(&format!(
            "pool: {{cidrs: [11.11.0.0/16]}}\n\
             nodes: {{source: kubernetes}}\n\
             routers: [{{name: rtr, driver: netlink}}]\n{extra}"
        ))
        .expect("valid config")
    }

    fn net(text: &str) -> IpNet {
        text.parse().expect("cidr")
    }

    #[test]
    fn routers_resync_and_reserved_ranges_apply_live() {
        let old = config("");
        let new = Config::parse(
            "pool: {cidrs: [11.11.0.0/16], reserved: [11.11.9.0/24]}\n\
             nodes: {source: kubernetes, selector: 'a=b'}\n\
             resyncInterval: 5s\n\
             routers: [{name: rtr, driver: netlink}, {name: two, driver: netlink, netns: x}]\n",
        )
        .expect("valid");
        assert_eq!(refused_live(&old, &new, [net("11.11.1.0/24")].iter()), None);
    }

    #[test]
    fn a_pool_that_drops_an_assigned_subnet_is_refused_with_the_subnet() {
        let old = config("");
        let new = Config::parse(
            "pool: {cidrs: [11.11.0.0/16], reserved: [11.11.1.0/24]}\n\
             nodes: {source: kubernetes}\n\
             routers: [{name: rtr, driver: netlink}]\n",
        )
        .expect("valid");
        let why = refused_live(&old, &new, [net("11.11.1.0/24")].iter()).expect("refused");
        assert!(why.contains("11.11.1.0/24"), "{why}");
    }

    #[test]
    fn a_new_ownership_mark_needs_a_restart() {
        let old = config("");
        let new = config("ownership: {netlinkProtocol: 210}\n");
        let why = refused_live(&old, &new, std::iter::empty()).expect("refused");
        assert!(why.contains("ownership"), "{why}");
    }
}
