//! What each router's sessions announced, carried from one session to the
//! next.
//!
//! A router under graceful restart keeps the routes of a session that
//! ended, as stale, but never sends them back: the controller cannot ask
//! it what it holds. So the next session starts from what the last one
//! announced, and announces that again. Within one process this record
//! is kept here; across processes (a restart, a new leader) the controller
//! saves it with [`announced`] and gives it back with [`remember`] before
//! the first session opens.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use super::session::Ribs;
use crate::Route;

/// What the sessions with one router announced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Announced {
    pub router: String,
    /// Where the router was reached: a record is carried over only to a
    /// session with the same router, at the same address, from the same
    /// namespace.
    pub address: SocketAddr,
    pub netns: Option<String>,
    pub routes: Vec<Route>,
}

pub(super) type SharedRibs = Arc<Mutex<Ribs>>;

/// Which router a session was with: its name, and where it was reached.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct SessionKey {
    pub router: String,
    pub address: SocketAddr,
    pub netns: Option<String>,
}

/// Each router's last session's Adj-RIB-Out, for the life of the process.
static LAST_SESSIONS: LazyLock<Mutex<HashMap<SessionKey, SharedRibs>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Bumped by every write to any session, so that whoever saves the record
/// can tell that there may be something new to save without reading it.
static WRITES: AtomicU64 = AtomicU64::new(0);

pub(super) fn written() {
    WRITES.fetch_add(1, Ordering::Relaxed);
}

/// A number that changes whenever what a session announced may have
/// changed.
pub fn writes() -> u64 {
    WRITES.load(Ordering::Relaxed)
}

/// What each router's last session announced, by router name.
pub fn announced() -> Vec<Announced> {
    let sessions: Vec<(SessionKey, SharedRibs)> = LAST_SESSIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .map(|(key, ribs)| (key.clone(), Arc::clone(ribs)))
        .collect();
    let mut records: Vec<Announced> = sessions
        .into_iter()
        .map(|(key, ribs)| {
            let ribs = ribs.lock().unwrap_or_else(PoisonError::into_inner);
            Announced {
                router: key.router,
                address: key.address,
                netns: key.netns,
                routes: ribs
                    .announced
                    .iter()
                    .map(|(dst, via)| Route::new(*dst, *via))
                    .collect(),
            }
        })
        .collect();
    records.sort_by(|a, b| (&a.router, a.address).cmp(&(&b.router, b.address)));
    records
}

/// Takes records saved by an earlier process (or another leader) as what
/// the last sessions of their routers announced. Each replaces what this
/// process knew of its router; routers without a record keep theirs. Meant
/// for when no session is open: a session already open keeps its own.
pub fn remember(records: Vec<Announced>) {
    let mut sessions = LAST_SESSIONS.lock().unwrap_or_else(PoisonError::into_inner);
    for record in records {
        let ribs = Ribs {
            announced: record
                .routes
                .iter()
                .map(|route| (route.dst, route.via))
                .collect(),
            ..Ribs::default()
        };
        let key = SessionKey {
            router: record.router,
            address: record.address,
            netns: record.netns,
        };
        sessions.insert(key, Arc::new(Mutex::new(ribs)));
    }
    drop(sessions);
    written();
}

/// Makes `ribs` the record of the router's last session, and returns what
/// the session before it announced.
pub(super) fn take_over(key: SessionKey, ribs: &SharedRibs) -> Vec<Route> {
    let last = LAST_SESSIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(key, Arc::clone(ribs));
    last.map(|ribs| {
        ribs.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .announced
            .iter()
            .map(|(dst, via)| Route::new(*dst, *via))
            .collect()
    })
    .unwrap_or_default()
}
