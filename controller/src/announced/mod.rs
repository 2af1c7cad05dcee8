//! What the BGP sessions announced, kept outside the process.
//!
//! A BGP router cannot be asked which of our routes it still holds from a
//! session that ended: under graceful restart it keeps them as stale and
//! sends them back to nobody. Every other driver lists the router, so the
//! removal guard of a new controller sees what is there; on a BGP router
//! the new controller would start from nothing, announce only what it
//! wants, and its End-of-RIB would take the rest at once (a node list cut
//! short by a selector typo withdrawing most routes). So the record of
//! what each router's sessions announced is saved while they run, and a
//! new process (or a new leader) hands it to the BGP driver before its
//! first session: that session announces the record again, and the worker
//! withdraws only what it no longer wants, through the removal guard.
//!
//! Where it is kept: beside a file inventory's state file, or in one
//! ConfigMap per BGP router in the controller's namespace ([`store`]).
//! Each router's record says when its session was last seen established,
//! and is used only while the router may still hold it ([`form`]).

mod form;
mod store;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use nativeroute_router_drivers::bgp::{self, Announced};
use tokio::sync::watch;

use self::form::{CONFIRM_EVERY, Kept, still_held};
use self::store::{Store, Write};
use crate::config::{Config, DriverConfig};

/// How often the record is saved while sessions change it.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// The longest wait between saves that keep failing.
const SAVE_EVERY_AT_MOST: Duration = Duration::from_secs(60);

/// How long one save may take before it is given up until the next.
const SAVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait before reading the record again after a failed read.
const LOAD_RETRY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read {}: {source}; check the file's permissions", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} is not a record of announced routes ({source}); it is not used, and the next save \
         replaces it",
        path.display()
    )]
    CorruptFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "cannot write {}: {source}; the folder of the inventory's state file must be writable",
        path.display()
    )]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ConfigMap {namespace}/{name}: {source}{}", if is_forbidden(source) {
        "; grant get, create and patch on configmaps in this namespace (manifests/base/rbac.yaml)"
    } else {
        ""
    })]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{place}: {problem}; fix or delete it")]
    Unreadable { place: String, problem: String },
}

fn is_forbidden(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 403)
}

impl RecordError {
    fn api(namespace: &str, name: &str) -> impl FnOnce(kube::Error) -> RecordError {
        let (namespace, name) = (namespace.to_owned(), name.to_owned());
        move |source| RecordError::Api {
            namespace,
            name,
            source,
        }
    }
}

/// The record of every BGP router of the config, where it is kept, and
/// what of it was last saved there.
pub struct AnnouncedRecord {
    store: Store,
    /// Every router's record as last written or read: only changed routers
    /// are written again. Routers of an earlier config keep theirs, so a
    /// router taken out of the config and put back finds it again.
    saved: Mutex<BTreeMap<String, Kept>>,
    /// When each router's session was last seen established.
    confirmed_at: Mutex<BTreeMap<String, String>>,
    /// [`bgp::writes`] when the last save succeeded.
    saved_writes: Mutex<Option<u64>>,
}

fn locked<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl AnnouncedRecord {
    /// The record beside a file inventory's state file.
    pub fn beside(state_file: &Path) -> AnnouncedRecord {
        let mut name = state_file.file_name().unwrap_or_default().to_os_string();
        name.push(".bgp");
        AnnouncedRecord::at(Store::File(state_file.with_file_name(name)))
    }

    /// One ConfigMap per BGP router in `namespace`, named
    /// `{stem}-bgp-{router}` (the stem is the Lease's name).
    pub fn in_config_maps(client: kube::Client, namespace: &str, stem: &str) -> AnnouncedRecord {
        AnnouncedRecord::at(Store::ConfigMaps {
            api: Box::new(kube::Api::namespaced(client, namespace)),
            namespace: namespace.to_owned(),
            stem: stem.to_owned(),
        })
    }

    fn at(store: Store) -> AnnouncedRecord {
        AnnouncedRecord {
            store,
            saved: Mutex::new(BTreeMap::new()),
            confirmed_at: Mutex::new(BTreeMap::new()),
            saved_writes: Mutex::new(None),
        }
    }

    pub fn describe(&self) -> String {
        self.store.describe()
    }

    /// Hands the records of the config's BGP routers that the routers may
    /// still hold to the BGP driver, for their first sessions, and forgets
    /// whatever else this process knew of those routers. A failed read is
    /// tried again until the record would be too old to use anyway, or
    /// `shutdown` turns true; then the routers start empty.
    pub async fn restore(&self, config: &Config, shutdown: &mut watch::Receiver<bool>) {
        let restart_times = bgp_routers(config);
        let Some(longest) = restart_times.values().max().copied() else {
            return;
        };
        let routers: Vec<String> = restart_times.keys().cloned().collect();
        let give_up = tokio::time::Instant::now() + longest + CONFIRM_EVERY;
        let contents = loop {
            match self.store.read(&routers).await {
                Ok(contents) => break contents,
                Err(err) if tokio::time::Instant::now() < give_up => {
                    tracing::warn!(error = %err, retry = ?LOAD_RETRY, "the record of what BGP sessions announced could not be read; the routers wait for it");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(LOAD_RETRY) => {}
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "the record of what BGP sessions announced is not used: the first session of each BGP router withdraws, past the removal guard, whatever it does not announce again");
                    bgp::remember(&routers, Vec::new());
                    return;
                }
            }
        };
        let now = Timestamp::now();
        let ownership = config.ownership();
        let mut records = Vec::new();
        for router in &routers {
            let Some(kept) = contents.records.get(router) else {
                continue;
            };
            let place = self.store.place_of(router);
            let mut record = match kept.clone().read(router) {
                Ok(record) => record,
                Err(problem) => {
                    let err = RecordError::Unreadable { place, problem };
                    tracing::warn!(error = %err, "this record of what a router's BGP sessions announced is not used: the router's first session withdraws, past the removal guard, whatever it does not announce again");
                    continue;
                }
            };
            let confirmed_at = contents
                .confirmed_at
                .get(router)
                .and_then(|at| at.parse().ok());
            let restart_time = restart_times.get(router).copied().unwrap_or_default();
            if let Err(why) = still_held(confirmed_at, now, restart_time) {
                tracing::warn!(router, routes = record.routes.len(), from = %place, reason = %why, "what the router's last BGP sessions announced is not announced again: the router no longer holds it");
                continue;
            }
            // Only nativeroute's routes: a record edited by hand announces
            // nothing outside the pool.
            let recorded = record.routes.len();
            record.routes.retain(|route| ownership.in_pool(&route.dst));
            if record.routes.len() < recorded {
                tracing::warn!(router, from = %place, left_out = recorded - record.routes.len(), "routes of the record outside the pool are not announced");
            }
            tracing::info!(router, routes = record.routes.len(), from = %place, "what the router's last BGP sessions announced is restored: the first session announces it again");
            records.push(record);
        }
        bgp::remember(&routers, records);
        // The first save writes every router's record whole: what the
        // store holds may have been written after it was read here.
        *locked(&self.saved) = BTreeMap::new();
        *locked(&self.confirmed_at) = contents.confirmed_at;
        *locked(&self.saved_writes) = None;
    }

    /// Saves the record whenever a session changed it, and confirms the
    /// established sessions' records every [`CONFIRM_EVERY`], until `stop`
    /// turns true.
    pub async fn keep(&self, mut stop: watch::Receiver<bool>) {
        let mut wait = SAVE_EVERY;
        let mut confirmed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if *stop.borrow() {
                return;
            }
            let confirm = confirmed.elapsed() >= CONFIRM_EVERY;
            // A failing save (the API server away, a record over the
            // ConfigMap limit) is tried less and less often.
            wait = if self.save_now(confirm).await {
                if confirm {
                    confirmed = tokio::time::Instant::now();
                }
                SAVE_EVERY
            } else {
                (wait * 2).min(SAVE_EVERY_AT_MOST)
            };
        }
    }

    /// Saves what sessions announced since the last save, and with
    /// `confirm` marks the records of established sessions as current;
    /// false when that failed.
    pub async fn save_now(&self, confirm: bool) -> bool {
        let writes = bgp::writes();
        if !confirm && *locked(&self.saved_writes) == Some(writes) {
            return true;
        }
        match tokio::time::timeout(SAVE_TIMEOUT, self.save(&bgp::announced(), confirm)).await {
            Ok(Ok(())) => {
                *locked(&self.saved_writes) = Some(writes);
                true
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "the record of what BGP sessions announced was not saved; a restart now would start from the last record saved");
                false
            }
            Err(_) => {
                tracing::warn!(timeout = ?SAVE_TIMEOUT, "saving the record of what BGP sessions announced took too long; a restart now would start from the last record saved");
                false
            }
        }
    }

    async fn save(&self, announced: &[Announced], confirm: bool) -> Result<(), RecordError> {
        let mut records = locked(&self.saved).clone();
        let mut changed = Vec::new();
        for record in announced {
            let kept = Kept::of(record);
            if records.get(&record.router) != Some(&kept) {
                changed.push(record.router.clone());
                records.insert(record.router.clone(), kept);
            }
        }
        // A record is confirmed only while its session is established: a
        // router away for an hour has dropped what it was sent.
        let confirmed_now: Vec<String> = announced
            .iter()
            .filter(|record| record.session_up && (confirm || changed.contains(&record.router)))
            .map(|record| record.router.clone())
            .collect();
        if changed.is_empty() && confirmed_now.is_empty() {
            return Ok(());
        }
        let mut confirmed_at = locked(&self.confirmed_at).clone();
        let now = Timestamp::now().to_string();
        for router in &confirmed_now {
            confirmed_at.insert(router.clone(), now.clone());
        }
        self.store
            .write(Write {
                records: &records,
                changed: &changed,
                confirmed_at: &confirmed_at,
                confirmed_now: &confirmed_now,
            })
            .await?;
        *locked(&self.saved) = records;
        *locked(&self.confirmed_at) = confirmed_at;
        Ok(())
    }
}

/// The config's BGP routers and their restart times.
pub fn bgp_routers(config: &Config) -> BTreeMap<String, Duration> {
    config
        .routers
        .iter()
        .filter_map(|router| match &router.driver {
            DriverConfig::Bgp(bgp) => Some((router.name.to_string(), bgp.graceful_restart)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use nativeroute_router_drivers::Route;

    use super::*;

    fn record(router: &str, routes: &[(&str, &str)], session_up: bool) -> Announced {
        Announced {
            router: router.to_owned(),
            address: "192.168.2.2:179".parse().expect("address"),
            netns: None,
            routes: routes
                .iter()
                .map(|(dst, via)| {
                    Route::new(dst.parse().expect("subnet"), via.parse().expect("address"))
                })
                .collect(),
            session_up,
        }
    }

    #[tokio::test]
    async fn the_file_keeps_every_router_and_confirms_only_established_sessions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("nodes.yaml.state.json");
        let path = dir.path().join("nodes.yaml.state.json.bgp");
        let store = AnnouncedRecord::beside(&state);
        assert_eq!(store.describe(), path.display().to_string());
        let contents = |path: &Path| {
            let text = std::fs::read_to_string(path).expect("the record");
            serde_json::from_str::<form::KeptFile>(&text).expect("a record")
        };
        let inode = |path: &Path| std::fs::metadata(path).expect("written").ino();

        let core = record("core", &[("11.11.1.0/24", "192.168.2.1")], true);
        let edge = record("edge", &[("11.11.2.0/24", "192.168.3.1")], false);
        store
            .save(&[core.clone(), edge.clone()], false)
            .await
            .expect("saved");
        let written = contents(&path);
        assert_eq!(written.routers.len(), 2);
        let core_at = written
            .confirmed_at
            .get("core")
            .cloned()
            .expect("core's session is up");
        assert!(
            !written.confirmed_at.contains_key("edge"),
            "edge's session is down"
        );

        let before = inode(&path);
        store
            .save(&[core.clone(), edge.clone()], false)
            .await
            .expect("nothing to save");
        assert_eq!(
            inode(&path),
            before,
            "an unchanged record is not written again"
        );

        store
            .save(&[core.clone(), edge.clone()], true)
            .await
            .expect("confirmed");
        let confirmed = contents(&path);
        let at = |text: &str| text.parse::<Timestamp>().expect("a time");
        assert!(at(&confirmed.confirmed_at["core"]) > at(&core_at));
        assert!(!confirmed.confirmed_at.contains_key("edge"));

        // A later process, with only core configured, reads both and
        // writes edge's record back untouched.
        let later = AnnouncedRecord::beside(&state);
        let read = later.store.read(&["core".to_owned()]).await.expect("read");
        assert_eq!(read.records.len(), 2);
        *locked(&later.saved) = read.records;
        let core_now = record("core", &[("11.11.3.0/24", "192.168.2.3")], true);
        later
            .save(std::slice::from_ref(&core_now), false)
            .await
            .expect("saved");
        let again = contents(&path);
        assert_eq!(again.routers["core"], Kept::of(&core_now));
        assert_eq!(again.routers["edge"], Kept::of(&edge));
    }

    #[tokio::test]
    async fn a_corrupt_file_is_named_and_said_to_be_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("nodes.yaml.state.json");
        std::fs::write(dir.path().join("nodes.yaml.state.json.bgp"), "{ not json").expect("write");
        let err = AnnouncedRecord::beside(&state)
            .store
            .read(&["core".to_owned()])
            .await
            .err()
            .expect("refused")
            .to_string();
        assert!(err.contains("nodes.yaml.state.json.bgp"), "{err}");
        assert!(err.contains("the next save replaces it"), "{err}");
    }
}
