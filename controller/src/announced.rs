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
//! ConfigMap per BGP router in the controller's namespace.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use nativeroute_router_drivers::Route;
use nativeroute_router_drivers::bgp::{self, Announced};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::{Config, DriverConfig};
use crate::inventory::state::write_atomically;

/// How often the record is saved while sessions change it.
const SAVE_EVERY: Duration = Duration::from_secs(1);

/// How often the record is confirmed as current while the sessions run,
/// so that the next process can tell a record the routers may still hold
/// (younger than their restart time) from one they dropped long ago.
const CONFIRM_EVERY: Duration = Duration::from_secs(30);

/// The ConfigMap annotation that says when its record was last confirmed.
const CONFIRMED_AT: &str = "nativeroute.io/confirmed-at";

/// The longest wait between saves that keep failing.
const SAVE_EVERY_AT_MOST: Duration = Duration::from_secs(60);

/// How long one save may take before it is given up until the next.
const SAVE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait before reading the record again after a failed read.
const LOAD_RETRY: Duration = Duration::from_secs(2);

/// The label that marks the ConfigMaps kept here, naming the router.
const ROUTER_LABEL: &str = "nativeroute.io/bgp-router";

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} is not a record of announced routes ({source}); remove it to start without one, \
         knowing that the first sessions of BGP routers then withdraw, past the removal guard, \
         whatever they do not announce again",
        path.display()
    )]
    CorruptFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("ConfigMap {namespace}/{name}: {source}")]
    Api {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("{place}: {problem}")]
    Unreadable { place: String, problem: String },
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

    /// Refused for lack of rights: waiting does not help.
    fn is_forbidden(&self) -> bool {
        matches!(self, RecordError::Api { source: kube::Error::Api(status), .. } if status.code == 403)
    }
}

/// One router's record in the form it is kept: the address it was reached
/// at, the namespace it was reached from, and a line per route
/// (`11.11.2.0/24 192.168.3.3`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Kept {
    address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    netns: Option<String>,
    routes: String,
}

impl Kept {
    fn of(record: &Announced) -> Kept {
        let mut routes = String::with_capacity(record.routes.len() * 28);
        for route in &record.routes {
            routes.push_str(&format!("{} {}\n", route.dst, route.via));
        }
        Kept {
            address: record.address.to_string(),
            netns: record.netns.clone(),
            routes,
        }
    }

    /// The record, every value parsed into its type: a record with one
    /// line that does not parse is refused whole.
    fn read(self, router: &str) -> Result<Announced, String> {
        let address: SocketAddr = self
            .address
            .parse()
            .map_err(|_| format!("address {:?} is not an address and port", self.address))?;
        let routes = self
            .routes
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let mut fields = line.split_whitespace();
                let dst = fields.next().and_then(|text| text.parse::<IpNet>().ok());
                let via = fields.next().and_then(|text| text.parse::<IpAddr>().ok());
                match (dst, via, fields.next()) {
                    (Some(dst), Some(via), None) => Ok(Route::new(dst, via)),
                    _ => Err(format!("{line:?} is not a route (subnet, then next hop)")),
                }
            })
            .collect::<Result<Vec<Route>, String>>()?;
        Ok(Announced {
            router: router.to_owned(),
            address,
            netns: self.netns,
            routes,
        })
    }
}

/// The file form: every router's record, and when it was last confirmed.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeptFile {
    #[serde(default)]
    confirmed_at: Option<String>,
    routers: BTreeMap<String, Kept>,
}

/// A record as read, with when it was last confirmed (`None`: unknown).
#[derive(Debug)]
struct Loaded {
    record: Announced,
    confirmed_at: Option<Timestamp>,
}

/// Whether a router may still hold what a record says its sessions
/// announced: under graceful restart it keeps them for its restart time
/// after the last session ended, which was at most [`CONFIRM_EVERY`] after
/// the record was last confirmed. Past that the router has dropped them,
/// and announcing them again would bring back routes long gone.
fn still_held(
    confirmed_at: Option<Timestamp>,
    now: Timestamp,
    restart_time: Duration,
) -> Result<(), String> {
    if restart_time.is_zero() {
        return Err("graceful restart is off (gracefulRestart: 0s), so the router dropped the routes when the last session ended".to_owned());
    }
    let Some(confirmed_at) = confirmed_at else {
        return Err("the record does not say when it was last confirmed".to_owned());
    };
    let age = Duration::try_from(now.duration_since(confirmed_at)).unwrap_or(Duration::ZERO);
    if age > restart_time + CONFIRM_EVERY {
        return Err(format!(
            "it was last confirmed {}s ago, and the router keeps the routes of an ended session for {}s",
            age.as_secs(),
            restart_time.as_secs()
        ));
    }
    Ok(())
}

enum Place {
    File(PathBuf),
    ConfigMaps {
        // Boxed: far larger than a path.
        api: Box<Api<ConfigMap>>,
        namespace: String,
        /// Each router's ConfigMap is named `{stem}-bgp-{router}`.
        stem: String,
    },
}

/// Where the record is kept, and what was last saved there.
pub struct AnnouncedRecord {
    place: Place,
    /// What this process last wrote, by router: only changed routers are
    /// written again.
    saved: Mutex<BTreeMap<String, Kept>>,
    /// [`bgp::writes`] when the last save succeeded.
    saved_at: Mutex<Option<u64>>,
}

impl AnnouncedRecord {
    /// The record beside a file inventory's state file.
    pub fn beside(state_file: &Path) -> AnnouncedRecord {
        let mut name = state_file.file_name().unwrap_or_default().to_os_string();
        name.push(".bgp");
        AnnouncedRecord::at(Place::File(state_file.with_file_name(name)))
    }

    /// One ConfigMap per BGP router in `namespace`, named
    /// `{stem}-bgp-{router}` (the stem is the Lease's name).
    pub fn in_config_maps(client: kube::Client, namespace: &str, stem: &str) -> AnnouncedRecord {
        AnnouncedRecord::at(Place::ConfigMaps {
            api: Box::new(Api::namespaced(client, namespace)),
            namespace: namespace.to_owned(),
            stem: stem.to_owned(),
        })
    }

    fn at(place: Place) -> AnnouncedRecord {
        AnnouncedRecord {
            place,
            saved: Mutex::new(BTreeMap::new()),
            saved_at: Mutex::new(None),
        }
    }

    pub fn describe(&self) -> String {
        match &self.place {
            Place::File(path) => path.display().to_string(),
            Place::ConfigMaps {
                namespace, stem, ..
            } => format!("ConfigMaps {namespace}/{stem}-bgp-<router>"),
        }
    }

    fn config_map_name(stem: &str, router: &str) -> String {
        format!("{stem}-bgp-{router}")
    }

    /// Reads the record of each of `routers`: a router without one is left
    /// out, and one whose record does not read is named with the problem.
    async fn load(
        &self,
        routers: &[String],
    ) -> Result<Vec<Result<Loaded, RecordError>>, RecordError> {
        let mut confirmed: BTreeMap<String, Option<Timestamp>> = BTreeMap::new();
        let kept: BTreeMap<String, Kept> = match &self.place {
            Place::File(path) => {
                let text = match std::fs::read_to_string(path) {
                    Ok(text) => text,
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
                    Err(source) => {
                        return Err(RecordError::Read {
                            path: path.clone(),
                            source,
                        });
                    }
                };
                if text.is_empty() {
                    BTreeMap::new()
                } else {
                    let file = serde_json::from_str::<KeptFile>(&text).map_err(|source| {
                        RecordError::CorruptFile {
                            path: path.clone(),
                            source,
                        }
                    })?;
                    let at = file.confirmed_at.and_then(|at| at.parse().ok());
                    confirmed = file
                        .routers
                        .keys()
                        .map(|router| (router.clone(), at))
                        .collect();
                    file.routers
                }
            }
            Place::ConfigMaps {
                api,
                namespace,
                stem,
            } => {
                let mut kept = BTreeMap::new();
                for router in routers {
                    let name = Self::config_map_name(stem, router);
                    let found = api
                        .get_opt(&name)
                        .await
                        .map_err(RecordError::api(namespace, &name))?;
                    let Some(map) = found else {
                        continue;
                    };
                    let at = map
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|annotations| annotations.get(CONFIRMED_AT))
                        .and_then(|at| at.parse().ok());
                    confirmed.insert(router.clone(), at);
                    let Some(data) = map.data else {
                        continue;
                    };
                    let field = |key: &str| data.get(key).cloned();
                    kept.insert(
                        router.clone(),
                        Kept {
                            address: field("address").unwrap_or_default(),
                            netns: field("netns"),
                            routes: field("routes").unwrap_or_default(),
                        },
                    );
                }
                kept
            }
        };
        let records = kept
            .iter()
            .filter(|(router, _)| routers.contains(router))
            .map(|(router, kept)| {
                let record =
                    kept.clone()
                        .read(router)
                        .map_err(|problem| RecordError::Unreadable {
                            place: self.place_of(router),
                            problem,
                        })?;
                Ok(Loaded {
                    record,
                    confirmed_at: confirmed.get(router).copied().flatten(),
                })
            })
            .collect();
        // Every router's record stays known, also those of routers not in
        // this config: the file is rewritten with them.
        *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = kept;
        Ok(records)
    }

    fn place_of(&self, router: &str) -> String {
        match &self.place {
            Place::File(path) => format!("{} (router {router})", path.display()),
            Place::ConfigMaps {
                namespace, stem, ..
            } => format!(
                "ConfigMap {namespace}/{}",
                Self::config_map_name(stem, router)
            ),
        }
    }

    /// Writes what changed since the last save, and with `confirm` marks
    /// every router's record as current.
    async fn save(&self, records: &[Announced], confirm: bool) -> Result<(), RecordError> {
        let kept: BTreeMap<String, Kept> = records
            .iter()
            .map(|record| (record.router.clone(), Kept::of(record)))
            .collect();
        let changed: Vec<(String, Kept)> = {
            let saved = self.saved.lock().unwrap_or_else(|e| e.into_inner());
            kept.iter()
                .filter(|(router, kept)| saved.get(*router) != Some(kept))
                .map(|(router, kept)| (router.clone(), kept.clone()))
                .collect()
        };
        if changed.is_empty() && !confirm {
            return Ok(());
        }
        let now = Timestamp::now().to_string();
        match &self.place {
            Place::File(path) => {
                // Routers of an earlier config keep their record: a router
                // taken out of the config and put back finds it again.
                let mut all = self.saved.lock().unwrap_or_else(|e| e.into_inner()).clone();
                all.extend(changed.iter().cloned());
                let mut text = serde_json::to_vec_pretty(&KeptFile {
                    confirmed_at: Some(now),
                    routers: all.clone(),
                })
                .map_err(|err| RecordError::Write {
                    path: path.clone(),
                    source: std::io::Error::other(err),
                })?;
                text.push(b'\n');
                write_atomically(path, &text).map_err(|source| RecordError::Write {
                    path: path.clone(),
                    source,
                })?;
                *self.saved.lock().unwrap_or_else(|e| e.into_inner()) = all;
            }
            Place::ConfigMaps {
                api,
                namespace,
                stem,
            } => {
                for (router, kept) in &changed {
                    let name = Self::config_map_name(stem, router);
                    write_config_map(api, &name, router, kept, &now)
                        .await
                        .map_err(RecordError::api(namespace, &name))?;
                    self.saved
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(router.clone(), kept.clone());
                }
                if confirm {
                    let unchanged = kept
                        .keys()
                        .filter(|router| !changed.iter().any(|(done, _)| done == *router));
                    for router in unchanged {
                        let name = Self::config_map_name(stem, router);
                        let patch = serde_json::json!({
                            "metadata": {"annotations": {CONFIRMED_AT: now}},
                        });
                        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                            .map_err(RecordError::api(namespace, &name))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Hands the record of the config's BGP routers to the BGP driver, for
    /// their first sessions. Read again after a failure until it is read or
    /// `shutdown` turns true; a record the controller is not allowed to read
    /// is given up with an error, as it would never be read.
    pub async fn restore(&self, config: &Config, shutdown: &mut watch::Receiver<bool>) {
        let restart_times: BTreeMap<String, Duration> = config
            .routers
            .iter()
            .filter_map(|router| match &router.driver {
                DriverConfig::Bgp(bgp) => Some((router.name.to_string(), bgp.graceful_restart)),
                _ => None,
            })
            .collect();
        if restart_times.is_empty() {
            return;
        }
        let routers: Vec<String> = restart_times.keys().cloned().collect();
        loop {
            match self.load(&routers).await {
                Ok(loaded) => {
                    let mut records = Vec::new();
                    let now = Timestamp::now();
                    for loaded in loaded {
                        match loaded {
                            Ok(Loaded {
                                record,
                                confirmed_at,
                            }) => {
                                let restart_time = restart_times
                                    .get(&record.router)
                                    .copied()
                                    .unwrap_or_default();
                                let from = self.place_of(&record.router);
                                if let Err(why) = still_held(confirmed_at, now, restart_time) {
                                    tracing::info!(router = %record.router, routes = record.routes.len(), %from, reason = %why, "what the router's last BGP sessions announced is not announced again: the router no longer holds it");
                                    continue;
                                }
                                tracing::info!(router = %record.router, routes = record.routes.len(), %from, "what the router's last BGP sessions announced is restored: the first session announces it again");
                                records.push(record);
                            }
                            Err(err) => {
                                tracing::error!(error = %err, "this record of what a router's BGP sessions announced is not used: the router's first session withdraws, past the removal guard, whatever it does not announce again");
                            }
                        }
                    }
                    bgp::remember(records);
                    *self.saved_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(bgp::writes());
                    return;
                }
                Err(err) if err.is_forbidden() => {
                    tracing::error!(error = %err, "the record of what BGP sessions announced cannot be read (grant get, create and patch on configmaps in this namespace): the first session of each BGP router withdraws, past the removal guard, whatever it does not announce again");
                    return;
                }
                Err(err @ RecordError::Api { .. }) => {
                    tracing::warn!(error = %err, retry = ?LOAD_RETRY, "the record of what BGP sessions announced could not be read; BGP sessions wait for it");
                    tokio::select! {
                        _ = shutdown.changed() => return,
                        _ = tokio::time::sleep(LOAD_RETRY) => {}
                    }
                }
                Err(err) => {
                    tracing::error!(error = %err, "the record of what BGP sessions announced is not used");
                    return;
                }
            }
        }
    }

    /// Saves the record whenever a session changed it, until `shutdown`
    /// turns true. The last save is [`AnnouncedRecord::save_now`], after
    /// the workers stopped.
    pub async fn keep(&self, mut shutdown: watch::Receiver<bool>) {
        let mut wait = SAVE_EVERY;
        let mut confirmed = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            if *shutdown.borrow() {
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

    /// Saves the record if a session wrote anything since the last save,
    /// and with `confirm` marks it current even if not; false when that
    /// failed.
    pub async fn save_now(&self, confirm: bool) -> bool {
        let writes = bgp::writes();
        if *self.saved_at.lock().unwrap_or_else(|e| e.into_inner()) == Some(writes) && !confirm {
            return true;
        }
        match tokio::time::timeout(SAVE_TIMEOUT, self.save(&bgp::announced(), confirm)).await {
            Ok(Ok(())) => {
                *self.saved_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(writes);
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
}

/// Creates or updates one router's ConfigMap.
async fn write_config_map(
    api: &Api<ConfigMap>,
    name: &str,
    router: &str,
    kept: &Kept,
    confirmed_at: &str,
) -> Result<(), kube::Error> {
    let mut data = serde_json::json!({
        "address": kept.address,
        "routes": kept.routes,
        "netns": kept.netns,
    });
    let metadata = serde_json::json!({
        "labels": {ROUTER_LABEL: router},
        "annotations": {CONFIRMED_AT: confirmed_at},
    });
    let patch = serde_json::json!({"metadata": metadata, "data": data});
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Err(kube::Error::Api(status)) if status.code == 404 => {
            // A merge patch's null removes a key; a new object has none.
            if let Some(map) = data.as_object_mut() {
                map.retain(|_, value| !value.is_null());
            }
            let map: ConfigMap = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "labels": metadata["labels"], "annotations": metadata["annotations"]},
                "data": data,
            }))
            .map_err(kube::Error::SerdeError)?;
            api.create(&PostParams::default(), &map).await.map(|_| ())
        }
        other => other.map(|_| ()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(router: &str, routes: &[(&str, &str)]) -> Announced {
        Announced {
            router: router.to_owned(),
            address: "192.168.2.2:179".parse().expect("address"),
            netns: Some("mgmt".to_owned()),
            routes: routes
                .iter()
                .map(|(dst, via)| {
                    Route::new(dst.parse().expect("subnet"), via.parse().expect("address"))
                })
                .collect(),
        }
    }

    async fn loaded(store: &AnnouncedRecord, routers: &[String]) -> Vec<Announced> {
        store
            .load(routers)
            .await
            .expect("read")
            .into_iter()
            .map(|loaded| loaded.expect("a good record").record)
            .collect()
    }

    #[test]
    fn a_record_is_announced_again_only_while_the_router_may_hold_it() {
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().expect("time");
        let ago = |secs: i64| Some(now - k8s_openapi::jiff::SignedDuration::from_secs(secs));
        let restart = Duration::from_secs(120);
        assert_eq!(still_held(ago(5), now, restart), Ok(()));
        // Confirmed every 30 s: the session may have ended up to 30 s later.
        assert_eq!(still_held(ago(150), now, restart), Ok(()));
        let err = still_held(ago(151), now, restart).expect_err("dropped");
        assert!(
            err.contains("151s ago") && err.contains("for 120s"),
            "{err}"
        );
        // A clock behind the last leader's: as good as new.
        assert_eq!(still_held(ago(-20), now, restart), Ok(()));
        assert!(still_held(None, now, restart).is_err());
        let err = still_held(ago(1), now, Duration::ZERO).expect_err("no graceful restart");
        assert!(err.contains("gracefulRestart: 0s"), "{err}");
    }

    #[test]
    fn a_record_reads_back_as_it_was_kept() {
        let announced = record(
            "core",
            &[
                ("11.11.1.0/24", "192.168.2.1"),
                ("fd11:11:0:1::/64", "fd00::1"),
            ],
        );
        let kept = Kept::of(&announced);
        assert_eq!(
            kept.routes,
            "11.11.1.0/24 192.168.2.1\nfd11:11:0:1::/64 fd00::1\n"
        );
        assert_eq!(kept.read("core"), Ok(announced));
    }

    #[test]
    fn a_record_with_one_bad_line_is_refused_whole() {
        let kept = Kept {
            address: "192.168.2.2:179".to_owned(),
            netns: None,
            routes: "11.11.1.0/24 192.168.2.1\n11.11.2.0/24 192.168.2.1; reboot\n".to_owned(),
        };
        let err = kept.read("core").expect_err("refused");
        assert!(err.contains("11.11.2.0/24 192.168.2.1; reboot"), "{err}");
        let kept = Kept {
            address: "core.example.net:179".to_owned(),
            netns: None,
            routes: String::new(),
        };
        assert!(
            kept.read("core")
                .expect_err("refused")
                .contains("core.example.net")
        );
    }

    #[tokio::test]
    async fn the_file_keeps_every_router_and_rewrites_only_on_change() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("nodes.yaml.state.json");
        let store = AnnouncedRecord::beside(&state);
        let path = dir.path().join("nodes.yaml.state.json.bgp");
        assert_eq!(store.describe(), path.display().to_string());
        let names = vec!["core".to_owned(), "edge".to_owned()];
        assert!(loaded(&store, &names).await.is_empty());

        let core = record("core", &[("11.11.1.0/24", "192.168.2.1")]);
        let edge = record("edge", &[("11.11.2.0/24", "192.168.3.1")]);
        store
            .save(&[core.clone(), edge.clone()], false)
            .await
            .expect("saved");
        let written = std::fs::metadata(&path)
            .expect("written")
            .modified()
            .expect("mtime");
        std::thread::sleep(Duration::from_millis(20));
        store
            .save(&[core.clone(), edge.clone()], false)
            .await
            .expect("nothing to save");
        assert_eq!(
            std::fs::metadata(&path)
                .expect("kept")
                .modified()
                .expect("mtime"),
            written,
            "an unchanged record is not written again"
        );
        let confirmed_at = || {
            let text = std::fs::read_to_string(&path).expect("the record");
            serde_json::from_str::<KeptFile>(&text)
                .expect("a record")
                .confirmed_at
                .and_then(|at| at.parse::<Timestamp>().ok())
                .expect("a time")
        };
        let first = confirmed_at();
        store
            .save(&[core.clone(), edge.clone()], true)
            .await
            .expect("confirmed");
        assert!(confirmed_at() > first, "a confirmation writes a new time");

        // A later process, with only one of the routers configured.
        let later = AnnouncedRecord::beside(&state);
        assert_eq!(loaded(&later, &names[..1]).await, vec![core.clone()]);
        let core_now = record("core", &[("11.11.3.0/24", "192.168.2.3")]);
        later
            .save(std::slice::from_ref(&core_now), false)
            .await
            .expect("saved");
        let again = AnnouncedRecord::beside(&state);
        assert_eq!(loaded(&again, &names).await, vec![core_now, edge]);
    }

    #[tokio::test]
    async fn a_corrupt_file_is_named_with_what_removing_it_costs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("nodes.yaml.state.json");
        std::fs::write(dir.path().join("nodes.yaml.state.json.bgp"), "{ not json").expect("write");
        let err = AnnouncedRecord::beside(&state)
            .load(&["core".to_owned()])
            .await
            .expect_err("refused")
            .to_string();
        assert!(err.contains("nodes.yaml.state.json.bgp"), "{err}");
        assert!(err.contains("remove it to start without one"), "{err}");
    }
}
