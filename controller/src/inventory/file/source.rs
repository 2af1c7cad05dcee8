//! The file inventory as a [`NodeSource`]: read at once, then again when
//! its directory changes (after the writer has been quiet for a moment) or
//! when the resync interval passes.

use std::time::Duration;

use async_trait::async_trait;
use ipnet::IpNet;
use tokio::sync::mpsc;

use super::{FileError, FileInventory, SETTLE};
use crate::inventory::Snapshot;
use crate::inventory::source::{NodeSource, SourceError};
use crate::ipam::Ipam;

/// How many quiet-period waits a burst of writes may extend the settling.
const MAX_SETTLE_ROUNDS: usize = 50;

pub struct FileSource {
    inventory: FileInventory,
    changes: mpsc::Receiver<()>,
    _watcher: notify::RecommendedWatcher,
    resync: Duration,
    first: bool,
}

impl FileSource {
    /// Opens the inventory and starts watching its directory.
    pub fn open(inventory: FileInventory, resync: Duration) -> Result<Self, FileError> {
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
        })
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
            tokio::select! {
                _ = self.changes.recv() => self.settle().await,
                _ = tokio::time::sleep(self.resync) => {}
            }
        }
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

    async fn record(&mut self, ipam: &Ipam, listed: &[String]) -> Result<(), SourceError> {
        self.inventory.record(ipam, listed)?;
        Ok(())
    }

    fn resume_point(&self) -> Vec<IpNet> {
        self.inventory.state().next.clone()
    }

    fn describe(&self) -> String {
        format!("file {}", self.inventory.path().display())
    }
}
