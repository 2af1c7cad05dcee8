//! The one interface every node source offers the controller.

use async_trait::async_trait;
use ipnet::IpNet;

use super::Snapshot;
use super::file::FileError;
use crate::ipam::Ipam;

/// Where nodes come from, and where their assignments are kept.
#[async_trait]
pub trait NodeSource: Send {
    /// The nodes as they are now: at once on the first call (the initial
    /// complete list), then when something changed, and at least every
    /// resync interval as a safety net. Each snapshot is complete.
    async fn next_snapshot(&mut self) -> Result<Snapshot, SourceError>;

    /// Records what the ledger holds for the listed nodes. Called before the
    /// routes of a snapshot are published. The file source writes its state
    /// file before returning, so no route exists for an assignment a crash
    /// could forget. The Kubernetes source queues the writes on the Nodes and
    /// returns at once: there a subnet not yet on the Node is one its pods
    /// have not used, so a route that comes first harms nothing, and a node
    /// created is routed without waiting for an API round trip.
    ///
    /// `touched` names the nodes whose assignments may have changed since
    /// the last call, when the reconciler knows (`None`: any of them).
    async fn record(
        &mut self,
        ipam: &Ipam,
        listed: &imbl::OrdSet<String>,
        touched: Option<&[String]>,
    ) -> Result<(), SourceError>;

    /// Where next-fit continues after a restart, one subnet per family.
    fn resume_point(&self) -> Vec<IpNet>;

    /// When the source last heard from where the nodes come from (a list,
    /// a watch event, a successful read of the file): what tells a source
    /// that hangs from one with nothing new to say. It starts at the
    /// source's creation.
    fn progress(&self) -> tokio::sync::watch::Receiver<std::time::Instant>;

    /// Where the nodes come from, for logs.
    fn describe(&self) -> String;
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("Kubernetes: {0}")]
    Kubernetes(String),
}
