//! The inventory file of plain Docker or VM hosts (DESIGN "Node inventory
//! without Kubernetes"), and the state file that records their subnets.
//!
//! One bad entry never costs the others: an entry that cannot be used is
//! reported and, if the node had a good entry before, that one is kept, so
//! a typo does not withdraw a working route. A file that cannot be read as
//! a whole keeps the whole previous inventory.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::state::{self, DepartedNode, NodeState, State, StateError};
use super::{NodeRecord, Snapshot, SourceProblem, Standing};
use crate::config::InventoryFiles;
use crate::ipam::{Family, Ipam};
use crate::report::Reason;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read node inventory {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("node inventory {} is not valid: {message}; keeping the last good inventory", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("node inventory {} changed while it was read; reading it again", path.display())]
    Changing { path: PathBuf },
    #[error("cannot watch {} for changes: {message}", path.display())]
    Watch { path: PathBuf, message: String },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "nodes.stateFile: cannot write in {} (the folder of the state file {}): {source}. \
         The state file records which node holds which subnet, so it must be writable: \
         set nodes.stateFile to a path on a writable volume that outlives the process \
         (an inventory on a ConfigMap is read-only, and so is the folder beside it)",
        folder.display(),
        state.display()
    )]
    StateNotWritable {
        state: PathBuf,
        folder: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How long a node that left the inventory keeps its subnets reserved, so
/// that one missing by mistake (a file read half-written) gets them back.
pub const DEPARTED_GRACE: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInventory {
    nodes: Vec<serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    address: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A file inventory and its state file.
pub struct FileInventory {
    path: PathBuf,
    state_path: PathBuf,
    state: State,
    last_good: HashMap<String, Arc<NodeRecord>>,
}

impl FileInventory {
    /// Opens the inventory and loads its state file (by default beside the
    /// inventory); a corrupt state file is an error (assignments must not be
    /// guessed).
    pub fn open(files: impl Into<InventoryFiles>) -> Result<Self, FileError> {
        let files = files.into();
        let state = State::load(&files.state)?;
        Ok(FileInventory {
            path: files.inventory,
            state_path: files.state,
            state,
            last_good: HashMap::new(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn state_path(&self) -> &Path {
        &self.state_path
    }

    /// Fails unless the state file's folder can be written: otherwise every
    /// assignment would wait forever for a record that cannot be made.
    pub fn check_state_writable(&self) -> Result<(), FileError> {
        state::check_writable(&self.state_path).map_err(|source| FileError::StateNotWritable {
            state: self.state_path.clone(),
            folder: self
                .state_path
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf(),
            source,
        })
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    /// Reads the file: nodes recorded in the state first (oldest first),
    /// then new nodes in file order.
    pub fn read(&mut self) -> Result<Snapshot, FileError> {
        let read_error = |source| FileError::Read {
            path: self.path.clone(),
            source,
        };
        let before = FileStamp::of(&self.path).map_err(read_error)?;
        let text = std::fs::read_to_string(&self.path).map_err(read_error)?;
        if FileStamp::of(&self.path).map_err(read_error)? != before {
            return Err(FileError::Changing {
                path: self.path.clone(),
            });
        }
        let snapshot = self.parse(&text, unix_now())?;
        self.last_good = snapshot
            .nodes
            .iter()
            .filter(|node| node.standing == Standing::Listed)
            .map(|node| (node.name.clone(), node.clone()))
            .collect();
        Ok(snapshot)
    }

    fn parse(&self, text: &str, now: u64) -> Result<Snapshot, FileError> {
        let invalid = |message: String| FileError::Invalid {
            path: self.path.clone(),
            message,
        };
        if text.trim().is_empty() {
            // Editors truncate before they write; an empty file is far more
            // often that moment than a wish to remove every node.
            return Err(invalid(
                "the file is empty (write `nodes: []` to remove every node)".into(),
            ));
        }
        let raw: RawInventory =
            serde_yaml_ng::from_str(text).map_err(|err| invalid(err.to_string()))?;
        let mut snapshot = Snapshot::default();
        let mut seen = HashSet::new();
        for (index, entry) in raw.nodes.into_iter().enumerate() {
            let label = entry
                .get("name")
                .and_then(|name| name.as_str())
                .map_or_else(|| format!("nodes[{index}]"), str::to_owned);
            match parse_node(entry) {
                Ok(node) if !seen.insert(node.name.clone()) => snapshot.problems.push(SourceProblem {
                    reason: Reason::InvalidInventoryEntry,
                    node: label,
                    message: format!("nodes[{index}]: a node named {:?} is listed before; this entry is ignored", node.name),
                }),
                Ok(node) => snapshot.nodes.push(Arc::new(node)),
                Err(message) => {
                    let first = seen.insert(label.clone());
                    let kept = self.last_good.get(&label).filter(|_| first).cloned();
                    let frozen = match kept {
                        Some(_) => None,
                        None if first && self.state.nodes.contains_key(&label) => Some(Arc::new(NodeRecord {
                            name: label.clone(),
                            addresses: Vec::new(),
                            annotations: BTreeMap::new(),
                            recorded: Vec::new(),
                            standing: Standing::Frozen,
                        })),
                        None => None,
                    };
                    let consequence = if kept.is_some() {
                        "keeping its last good entry"
                    } else {
                        "the node is left as it is until the entry is fixed"
                    };
                    snapshot.problems.push(SourceProblem {
                    reason: Reason::InvalidInventoryEntry,
                        node: label.clone(),
                        message: format!("nodes[{index}]: {message}; {consequence}"),
                    });
                    snapshot.nodes.extend(kept.or(frozen));
                }
            }
        }
        let departed = |name: &str| {
            self.state
                .departed
                .get(name)
                .filter(|node| now.saturating_sub(node.since) < DEPARTED_GRACE.as_secs())
        };
        let listed: HashSet<String> = snapshot.nodes.iter().map(|n| n.name.clone()).collect();
        // Recorded nodes missing from this read have just left: they hold
        // their subnets like the ones that left earlier.
        let just_left = self
            .state
            .nodes
            .iter()
            .filter(|(name, _)| !listed.contains(*name))
            .map(|(name, entry)| (name, &entry.subnets));
        let left_earlier = self
            .state
            .departed
            .keys()
            .filter(|name| !listed.contains(*name))
            .filter_map(|name| departed(name).map(|away| (name, &away.subnets)));
        let away: Vec<Arc<NodeRecord>> = just_left
            .chain(left_earlier)
            .map(|(name, subnets)| {
                Arc::new(NodeRecord {
                    name: name.clone(),
                    addresses: Vec::new(),
                    annotations: BTreeMap::new(),
                    recorded: subnets.clone(),
                    standing: Standing::Departed,
                })
            })
            .collect();
        for node in &mut snapshot.nodes {
            Arc::make_mut(node).recorded =
                match (self.state.nodes.get(&node.name), departed(&node.name)) {
                    (Some(recorded), _) => recorded.subnets.clone(),
                    // Back within the grace period: the same subnets again.
                    (None, Some(returning)) => returning.subnets.clone(),
                    (None, None) => Vec::new(),
                };
        }
        snapshot.nodes.extend(away);
        let order =
            |node: &NodeRecord| match (self.state.nodes.get(&node.name), departed(&node.name)) {
                (Some(recorded), _) => recorded.order,
                (None, Some(away)) => away.order,
                (None, None) => u64::MAX,
            };
        // Stable: new nodes (u64::MAX) keep their file order.
        snapshot.nodes.sort_by_key(|node| order(node));
        Ok(snapshot)
    }

    /// Records what the ledger holds for the nodes of the inventory, and
    /// writes the state file if anything changed.
    pub fn record(&mut self, ipam: &Ipam, present: &[String]) -> Result<bool, FileError> {
        let now = unix_now();
        let listed: HashSet<&str> = present.iter().map(String::as_str).collect();
        let mut next = self.state.clone();
        // Expired first: a node back after its grace must not revive them.
        next.departed
            .retain(|_, away| now.saturating_sub(away.since) < DEPARTED_GRACE.as_secs());
        let left: Vec<String> = next
            .nodes
            .keys()
            .filter(|name| !listed.contains(name.as_str()))
            .cloned()
            .collect();
        for name in left {
            if let Some(entry) = next.nodes.remove(&name) {
                tracing::info!(
                    node = name,
                    subnets = ?entry.subnets,
                    grace = %humantime::format_duration(DEPARTED_GRACE),
                    "node left the inventory: its routes are withdrawn, its subnets stay reserved for it during the grace period"
                );
                let away = DepartedNode {
                    subnets: entry.subnets,
                    order: entry.order,
                    since: now,
                };
                next.departed.insert(name, away);
            }
        }
        for name in present {
            let held = ipam.subnets_of(name);
            if let Some(entry) = next.nodes.get_mut(name) {
                entry.subnets = merge_by_family(&entry.subnets, held);
                continue;
            }
            let entry = match next.departed.remove(name) {
                Some(back) => NodeState {
                    subnets: merge_by_family(&back.subnets, held),
                    order: back.order,
                },
                None if held.is_empty() => continue,
                None => {
                    next.next_order += 1;
                    NodeState {
                        subnets: held.to_vec(),
                        order: next.next_order - 1,
                    }
                }
            };
            next.nodes.insert(name.clone(), entry);
        }
        next.next = ipam
            .cursors()
            .into_iter()
            .map(|(_, subnet)| subnet)
            .collect();
        if next == self.state {
            return Ok(false);
        }
        next.save(&self.state_path)?;
        self.state = next;
        Ok(true)
    }

    /// Signals on `changes` whenever the file may have changed. The
    /// directory is watched, not the file, and any change in it counts
    /// except our own state file's: editors replace the file, and a
    /// Kubernetes ConfigMap mount swaps a `..data` link without touching it.
    pub fn watch(
        &self,
        changes: mpsc::Sender<()>,
    ) -> Result<notify::RecommendedWatcher, notify::Error> {
        use notify::{RecursiveMode, Watcher};
        let own_state = self.state_path.clone();
        let own_temp = state::temp_path_for(&self.state_path);
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let relevant = match &event {
                    Ok(event) => event
                        .paths
                        .iter()
                        .any(|path| *path != own_state && *path != own_temp),
                    // On a watcher error, re-read rather than miss a change.
                    Err(_) => true,
                };
                if relevant {
                    let _ = changes.try_send(());
                }
            })?;
        let dir = self
            .path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        Ok(watcher)
    }
}

/// How long to wait after a change for the writer to finish before reading.
pub const SETTLE: Duration = Duration::from_millis(20);

fn parse_node(entry: serde_yaml_ng::Value) -> Result<NodeRecord, String> {
    let raw: RawNode = serde_yaml_ng::from_value(entry).map_err(|err| err.to_string())?;
    check_node_name(&raw.name)?;
    let mut addresses: Vec<IpAddr> = Vec::new();
    for part in raw.address.split(',').map(str::trim) {
        let address: IpAddr = part.parse().map_err(|_| {
            format!(
                "address {part:?} of node {:?} is not an IP address",
                raw.name
            )
        })?;
        if addresses
            .iter()
            .any(|seen| seen.is_ipv4() == address.is_ipv4())
        {
            return Err(format!(
                "node {:?} has two addresses of one family",
                raw.name
            ));
        }
        addresses.push(address);
    }
    Ok(NodeRecord {
        name: raw.name,
        addresses,
        annotations: raw.annotations,
        recorded: Vec::new(),
        standing: Standing::Listed,
    })
}

/// Node names follow Kubernetes' rule (a DNS subdomain), so that the same
/// inventory can move to a cluster and names are safe in logs and state.
fn check_node_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a valid node name (lowercase letters, digits, '-' and '.', up to 253)"
        ))
    }
}

mod source;

pub use source::FileSource;

#[cfg(test)]
mod tests;

/// What a node's state entry should say: the ledger's subnet for each family
/// it holds one of, and what was recorded for the others. A subnet the
/// ledger refused (reserved now, or in conflict) stays recorded, because
/// forgetting it would hand the node a different subnet on the next read.
fn merge_by_family(recorded: &[IpNet], held: &[IpNet]) -> Vec<IpNet> {
    let mut merged: Vec<IpNet> = held.to_vec();
    merged.extend(
        recorded
            .iter()
            .filter(|old| !held.iter().any(|new| Family::of(new) == Family::of(old))),
    );
    merged.sort();
    merged
}

/// What tells a file apart from its next version without reading it.
#[derive(Debug, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<std::time::SystemTime>,
    inode: u64,
}

impl FileStamp {
    fn of(path: &Path) -> std::io::Result<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path)?;
        Ok(FileStamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino(),
        })
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
