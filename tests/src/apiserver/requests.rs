//! Every request the server answered, so a test can assert what a client
//! did ("no PATCH to nodes happened", "the watcher listed twice").

use std::sync::Mutex;
use std::time::Instant;

/// One answered request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// The path without the query.
    pub path: String,
    pub query: String,
    /// The Kubernetes verb: list, watch, get, create, update, patch,
    /// delete; "other" for paths that name no resource.
    pub verb: &'static str,
    /// "nodes", "events", "leases", or "" for other paths.
    pub resource: &'static str,
    /// "status" for the status subresource, else "".
    pub subresource: &'static str,
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// The HTTP status answered (200 for a watch that started).
    pub status: u16,
    /// When the answer was ready to send (a watch: when it started).
    pub at: Instant,
}

#[derive(Default)]
pub(crate) struct RequestLog {
    records: Mutex<Vec<RequestRecord>>,
}

impl RequestLog {
    pub fn push(&self, record: RequestRecord) {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(record);
    }

    pub fn snapshot(&self) -> Vec<RequestRecord> {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn count(&self, verb: &str, resource: &str) -> usize {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .filter(|r| r.verb == verb && r.resource == resource)
            .count()
    }

    pub fn clear(&self) {
        self.records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }
}
