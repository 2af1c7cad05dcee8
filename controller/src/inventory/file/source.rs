//! The file inventory as a [`NodeSource`]: read at once, then again when
//! its directory changes (after the writer has been quiet for a moment) or
//! when the resync interval passes.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{FileError, FileInventory, SETTLE};
use crate::inventory::source::{NodeSource, SourceError};
use crate::inventory::{NodeRecord, Snapshot};
use crate::ipam::Ipam;

/// How many quiet-period waits a burst of writes may extend the settling.
const MAX_SETTLE_ROUNDS: usize = 50;
/// How long a node must stay missing before its departure is believed: a
/// file caught half-written drops every node after the cut.
pub const CONFIRM_DEPARTURE: Duration = Duration::from_secs(1);

pub struct FileSource {
    inventory: FileInventory,
    changes: mpsc::Receiver<()>,
    _watcher: notify::RecommendedWatcher,
    resync: Duration,
    first: bool,
    /// The listed nodes of the last snapshot, to hold one that goes missing.
    last_listed: HashMap<String, Arc<NodeRecord>>,
    /// Nodes missing from the file, held as they were until this deadline.
    holding: HashMap<String, Instant>,
    /// When the file was last read successfully.
    progress: watch::Sender<std::time::Instant>,
}

impl FileSource {
    /// Opens the inventory and starts watching its directory. Fails at once
    /// when the state file cannot be written.
    pub fn open(inventory: FileInventory, resync: Duration) -> Result<Self, FileError> {
        inventory.check_state_writable()?;
        let (sender, changes) = mpsc::channel(1);
        let watcher = inventory.watch(sender).map_err(|source| FileError::Watch {
            path: inventory.path().to_path_buf(),
            message: source.to_string(),
        })?;
        Ok(FileSource {
            inventory,
            changes,
            _watcher: watcher,
            resync,
            first: true,
            last_listed: HashMap::new(),
            holding: HashMap::new(),
            progress: watch::channel(std::time::Instant::now()).0,
        })
    }

    /// A node that goes missing from the file is held as it was until it
    /// has been missing for [`CONFIRM_DEPARTURE`]: a file caught
    /// half-written drops every node after the cut, and withdrawing their
    /// routes for a moment would cut their containers off. Everything else
    /// in the read applies at once.
    fn hold_missing(&mut self, snapshot: &mut Snapshot) {
        let now = Instant::now();
        let listed: HashSet<String> = snapshot
            .nodes
            .iter()
            .filter(|node| node.is_listed())
            .map(|node| node.name.clone())
            .collect();
        self.holding.retain(|name, _| !listed.contains(name));
        for (name, last) in &self.last_listed {
            if listed.contains(name) {
                continue;
            }
            let deadline = *self
                .holding
                .entry(name.clone())
                .or_insert(now + CONFIRM_DEPARTURE);
            if now >= deadline {
                self.holding.remove(name);
                continue;
            }
            tracing::debug!(
                node = name,
                "missing from the inventory; held until that is confirmed"
            );
            snapshot.nodes.retain(|node| node.name != *name);
            snapshot.nodes.push(last.clone());
        }
    }

    /// Reads the file once it holds still.
    async fn read_stable(&mut self) -> Result<Snapshot, SourceError> {
        loop {
            match self.inventory.read() {
                Err(FileError::Changing { .. }) => {
                    tracing::debug!(inventory = %self.inventory.path().display(), "being written; reading again");
                    self.settle().await;
                }
                read => return read.map_err(SourceError::from),
            }
        }
    }

    /// Waits until the directory has been quiet for [`SETTLE`], so that a
    /// burst of writes becomes one read of the finished file (bounded, so
    /// that a file rewritten without pause is still read now and then).
    async fn settle(&mut self) {
        for _ in 0..MAX_SETTLE_ROUNDS {
            tokio::time::sleep(SETTLE).await;
            let mut more = false;
            while self.changes.try_recv().is_ok() {
                more = true;
            }
            if !more {
                return;
            }
        }
    }
}

#[async_trait]
impl NodeSource for FileSource {
    async fn next_snapshot(&mut self) -> Result<Snapshot, SourceError> {
        if !std::mem::take(&mut self.first) {
            let confirm_at = self.holding.values().min().copied();
            tokio::select! {
                _ = self.changes.recv() => self.settle().await,
                _ = tokio::time::sleep(self.resync) => {}
                _ = tokio::time::sleep_until(confirm_at.unwrap_or_else(Instant::now)), if confirm_at.is_some() => {}
            }
        }
        let mut snapshot = self.read_stable().await?;
        self.progress.send_replace(std::time::Instant::now());
        self.hold_missing(&mut snapshot);
        self.last_listed = snapshot
            .nodes
            .iter()
            .filter(|node| node.is_listed())
            .map(|node| (node.name.clone(), node.clone()))
            .collect();
        Ok(snapshot)
    }

    async fn record(
        &mut self,
        ipam: &Ipam,
        listed: &imbl::OrdSet<String>,
        _touched: Option<&[String]>,
    ) -> Result<(), SourceError> {
        // The state file is written whole, and only when it changed.
        let listed: Vec<String> = listed.iter().cloned().collect();
        self.inventory.record(ipam, &listed)?;
        Ok(())
    }

    fn resume_point(&self) -> Vec<IpNet> {
        self.inventory.state().next.clone()
    }

    fn progress(&self) -> watch::Receiver<std::time::Instant> {
        self.progress.subscribe()
    }

    fn describe(&self) -> String {
        format!("file {}", self.inventory.path().display())
    }
}
