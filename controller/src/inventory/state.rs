//! The state file of a file inventory: which node holds which subnet, so
//! that a restart changes no subnet. Written atomically (temp file, fsync,
//! rename, fsync of the directory), so a crash leaves the old or the new
//! state, never half of one.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

const VERSION: u32 = 1;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// Node name → what it holds.
    pub nodes: BTreeMap<String, NodeState>,
    /// Where next-fit continues, one subnet per family.
    #[serde(default)]
    pub next: Vec<IpNet>,
    /// The order number the next newly assigned node gets.
    #[serde(default)]
    pub next_order: u64,
    /// Nodes that left the inventory recently; their subnets stay theirs
    /// until the grace period ends.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub departed: BTreeMap<String, DepartedNode>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepartedNode {
    pub subnets: Vec<IpNet>,
    pub order: u64,
    /// When it left, in seconds since the Unix epoch.
    pub since: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    pub subnets: Vec<IpNet>,
    /// When the node was first assigned, relative to the others: the older
    /// node wins a conflict.
    pub order: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "state file {} is corrupt ({source}); it records which node holds which subnet, \
         so nativeroute will not guess: restore it from a backup, or delete it to let \
         every node be assigned afresh",
        path.display()
    )]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot write state file {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Where a new state is written before it replaces the file at `path`:
/// beside it, so that the rename is atomic.
pub fn temp_path_for(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Whether a state file can be written at `path`, found out by creating and
/// removing a file beside it: permission bits say nothing to root, and a
/// read-only mount (a ConfigMap) or a full disk only shows when writing.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    let probe = {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".writable");
        path.with_file_name(name)
    };
    let mut file = File::create(&probe)?;
    let written = file.write_all(b"nativeroute checks that it can write here\n");
    drop(file);
    let removed = fs::remove_file(&probe);
    written.and(removed)
}

impl State {
    /// Loads the state; a missing file is an empty state (first start).
    pub fn load(path: &Path) -> Result<State, StateError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Ok(State {
                    version: VERSION,
                    ..State::default()
                });
            }
            Err(source) => {
                return Err(StateError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        serde_json::from_str(&text).map_err(|source| StateError::Corrupt {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Replaces the file at `path` with this state, atomically.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let write_error = |source| StateError::Write {
            path: path.to_path_buf(),
            source,
        };
        let mut text = serde_json::to_vec_pretty(self)
            .map_err(|err| write_error(std::io::Error::other(err)))?;
        text.push(b'\n');
        write_atomically(path, &text).map_err(write_error)
    }
}

/// Replaces the file at `path` with `text`: written beside it, synced, then
/// renamed over it, so that a crash leaves the old file or the new one,
/// never a part.
pub fn write_atomically(path: &Path, text: &[u8]) -> std::io::Result<()> {
    let temp = temp_path_for(path);
    let mut file = File::create(&temp)?;
    file.write_all(text)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp, path)?;
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty());
    File::open(dir.unwrap_or(Path::new("."))).and_then(|dir| dir.sync_all())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_survives_a_round_trip_through_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nodes.yaml.state.json");
        assert_eq!(State::load(&path).expect("missing is empty").nodes.len(), 0);
        let state = State {
            version: VERSION,
            nodes: BTreeMap::from([(
                "node1".to_owned(),
                NodeState {
                    subnets: vec!["11.11.1.0/24".parse().expect("cidr")],
                    order: 0,
                },
            )]),
            next: vec!["11.11.2.0/24".parse().expect("cidr")],
            next_order: 1,
            departed: BTreeMap::new(),
        };
        state.save(&path).expect("save");
        assert_eq!(State::load(&path).expect("load"), state);
        assert!(!temp_path_for(&path).exists());
    }

    #[test]
    fn a_writable_folder_passes_the_check_and_keeps_nothing_of_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        check_writable(&dir.path().join("state.json")).expect("writable");
        let left: Vec<_> = fs::read_dir(dir.path()).expect("read dir").collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[test]
    fn a_missing_folder_fails_the_check() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = check_writable(&dir.path().join("gone/state.json")).expect_err("no folder");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_that_says_what_to_do() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nodes.yaml.state.json");
        fs::write(&path, "{\"version\": 1, \"nodes\": {").expect("write");
        let message = State::load(&path).expect_err("corrupt").to_string();
        assert!(
            message.contains("corrupt") && message.contains("delete it"),
            "{message}"
        );
    }
}
