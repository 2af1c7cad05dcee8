//! Per router, how it stands: up or not, routes held, withdrawals held,
//! the last sync. Workers write it after each sync; the leader carries it
//! on its Lease (`nativeroute.io/routers`), where `nativeroute status`
//! reads it from the cluster.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::{Deserialize, Serialize};

/// The Lease annotation holding the board, as JSON.
pub const ROUTERS_ANNOTATION: &str = "nativeroute.io/routers";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouterReport {
    pub up: bool,
    /// Routes of nativeroute's the router holds.
    pub routes: usize,
    /// Withdrawals the removal guard holds back.
    pub withheld: usize,
    /// When the last sync that reached the router ended (RFC 3339).
    pub last_sync: Option<String>,
    /// Why the last sync failed, when it did.
    pub error: Option<String>,
    /// The last sync found someone else holding the router's configuration
    /// (uncommitted edits, a lock): it waits for them, retried with backoff.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held_by_others: bool,
}

#[derive(Clone, Debug, Default)]
pub struct RouterBoard(Arc<Mutex<BTreeMap<String, RouterReport>>>);

impl RouterBoard {
    /// A sync of `router` reached it.
    pub fn synced(&self, router: &str, routes: usize, withheld: usize) {
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        self.update(router, |report| {
            *report = RouterReport {
                up: true,
                routes,
                withheld,
                last_sync: Some(now),
                error: None,
                held_by_others: false,
            }
        });
    }

    /// A sync of `router` failed as a whole; what it held before stays
    /// the best knowledge of it.
    pub fn failed(&self, router: &str, error: &str) {
        self.update(router, |report| {
            report.up = false;
            report.error = Some(error.to_owned());
            report.held_by_others = false;
        });
    }

    /// The router answered, but someone else holds its configuration: it
    /// is up, and nothing could be written.
    pub fn held_by_others(&self, router: &str, error: &str) {
        self.update(router, |report| {
            report.up = true;
            report.error = Some(error.to_owned());
            report.held_by_others = true;
        });
    }

    /// The board as the Lease annotation carries it.
    pub fn to_json(&self) -> String {
        let board = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        serde_json::to_string(&*board).unwrap_or_default()
    }

    fn update(&self, router: &str, change: impl FnOnce(&mut RouterReport)) {
        let mut board = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        change(board.entry(router.to_owned()).or_default());
    }
}

/// Reads the annotation back; `None` when it is missing or unreadable.
pub fn parse_board(text: &str) -> Option<BTreeMap<String, RouterReport>> {
    serde_json::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_sync_keeps_the_last_counts_and_says_why() {
        let board = RouterBoard::default();
        board.synced("core-1", 12, 0);
        board.failed("core-1", "cannot reach 10.0.0.1:22");
        let read = parse_board(&board.to_json()).expect("readable");
        let core = &read["core-1"];
        assert!(!core.up);
        assert_eq!(core.routes, 12);
        assert_eq!(core.error.as_deref(), Some("cannot reach 10.0.0.1:22"));
        assert!(core.last_sync.is_some());
    }
}
