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

use tokio::sync::watch;

use super::session::{Ribs, SessionState};
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
    /// Whether the router's session is established now: only then does
    /// the router hold these routes for certain.
    pub session_up: bool,
}

pub(super) type SharedRibs = Arc<Mutex<Ribs>>;

/// Where a session reached its router.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Reached {
    pub address: SocketAddr,
    pub netns: Option<String>,
}

/// One router's last session reached where it names: what it announced,
/// its state (`None` for a record given back by [`remember`], whose session
/// is not open), and when it became the last (a router reached elsewhere
/// since, after a config change, has a newer one).
struct Last {
    ribs: SharedRibs,
    state: Option<watch::Receiver<SessionState>>,
    sequence: u64,
}

/// Each router's last session by where it was reached, for the life of
/// the process. Keyed by name and place, not name alone: one process may
/// talk to routers of the same name in different places (tests do).
static LAST_SESSIONS: LazyLock<Mutex<HashMap<(String, Reached), Last>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

static SEQUENCE: AtomicU64 = AtomicU64::new(0);

fn next_sequence() -> u64 {
    SEQUENCE.fetch_add(1, Ordering::Relaxed)
}

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

fn sessions() -> std::sync::MutexGuard<'static, HashMap<(String, Reached), Last>> {
    LAST_SESSIONS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn routes_of(ribs: &SharedRibs) -> Vec<Route> {
    ribs.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .announced
        .iter()
        .map(|(dst, via)| Route::new(*dst, *via))
        .collect()
}

/// What each router's last session announced, by router name: of a
/// router reached in two places, the later.
pub fn announced() -> Vec<Announced> {
    let mut latest: HashMap<String, (u64, Reached, SharedRibs, bool)> = HashMap::new();
    for ((router, reached), last) in sessions().iter() {
        if latest
            .get(router)
            .is_some_and(|(sequence, ..)| *sequence > last.sequence)
        {
            continue;
        }
        let up = last
            .state
            .as_ref()
            .is_some_and(|state| *state.borrow() == SessionState::Established);
        latest.insert(
            router.clone(),
            (last.sequence, reached.clone(), Arc::clone(&last.ribs), up),
        );
    }
    let lasts: Vec<(String, Reached, SharedRibs, bool)> = latest
        .into_iter()
        .map(|(router, (_, reached, ribs, up))| (router, reached, ribs, up))
        .collect();
    let mut records: Vec<Announced> = lasts
        .into_iter()
        .map(|(router, reached, ribs, session_up)| Announced {
            router,
            address: reached.address,
            netns: reached.netns,
            routes: routes_of(&ribs),
            session_up,
        })
        .collect();
    records.sort_by(|a, b| a.router.cmp(&b.router));
    records
}

/// Takes records saved by an earlier process (or another leader) as what
/// the last sessions of `routers` announced: whatever this process knew of
/// those routers is forgotten first, so that a router without a record (or
/// with one too old to use) starts empty. Meant for when none of their
/// sessions is open.
pub fn remember(routers: &[String], records: Vec<Announced>) {
    let mut sessions = sessions();
    sessions.retain(|(router, _), _| !routers.contains(router));
    for record in records {
        let ribs = Ribs {
            announced: record
                .routes
                .iter()
                .map(|route| (route.dst, route.via))
                .collect(),
            ..Ribs::default()
        };
        let reached = Reached {
            address: record.address,
            netns: record.netns,
        };
        let last = Last {
            ribs: Arc::new(Mutex::new(ribs)),
            state: None,
            sequence: next_sequence(),
        };
        sessions.insert((record.router, reached), last);
    }
    drop(sessions);
    written();
}

/// What the router's last session announced, if it reached the router
/// where this one does.
pub(super) fn last_announced(router: &str, reached: &Reached) -> Vec<Route> {
    let ribs = sessions()
        .get(&(router.to_owned(), reached.clone()))
        .map(|last| Arc::clone(&last.ribs));
    ribs.map(|ribs| routes_of(&ribs)).unwrap_or_default()
}

/// Makes a new session the router's last: from now on its announcements
/// are the record. Called once it has announced what the last one did.
pub(super) fn take_over(
    router: &str,
    reached: Reached,
    ribs: &SharedRibs,
    state: watch::Receiver<SessionState>,
) {
    let last = Last {
        ribs: Arc::clone(ribs),
        state: Some(state),
        sequence: next_sequence(),
    };
    sessions().insert((router.to_owned(), reached), last);
    written();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(dst: &str, via: &str) -> Route {
        Route::new(dst.parse().expect("subnet"), via.parse().expect("address"))
    }

    fn reached(address: &str) -> Reached {
        Reached {
            address: address.parse().expect("address"),
            netns: None,
        }
    }

    // One test: the record is one process-wide table.
    #[test]
    fn the_record_follows_the_last_session_of_each_router() {
        let a = reached("192.0.2.1:179");
        let record = |router: &str, routes: Vec<Route>| Announced {
            router: router.to_owned(),
            address: a.address,
            netns: None,
            routes,
            session_up: false,
        };
        remember(
            &["t-core".to_owned(), "t-edge".to_owned()],
            vec![record("t-core", vec![route("11.11.1.0/24", "192.0.2.10")])],
        );
        assert_eq!(
            last_announced("t-core", &a),
            vec![route("11.11.1.0/24", "192.0.2.10")]
        );
        assert!(last_announced("t-edge", &a).is_empty());
        // Reached elsewhere (the router's address changed): nothing carried.
        assert!(last_announced("t-core", &reached("192.0.2.2:179")).is_empty());

        // A session that took over is the record, and says whether it is up.
        let ribs: SharedRibs = Arc::new(Mutex::new(Ribs::default()));
        ribs.lock().expect("ribs").announced.insert(
            "11.11.2.0/24".parse().expect("subnet"),
            "192.0.2.11".parse().expect("ip"),
        );
        let (state, watched) = watch::channel(SessionState::Established);
        take_over("t-core", a.clone(), &ribs, watched);
        let core = |records: Vec<Announced>| {
            records
                .into_iter()
                .find(|record| record.router == "t-core")
                .expect("t-core's record")
        };
        let now = core(announced());
        assert_eq!(now.routes, vec![route("11.11.2.0/24", "192.0.2.11")]);
        assert!(now.session_up);
        state.send_replace(SessionState::Down("cut".to_owned()));
        assert!(!core(announced()).session_up);

        // The same router reached elsewhere later (its address changed):
        // that session is its record.
        let b = reached("192.0.2.2:179");
        let moved: SharedRibs = Arc::new(Mutex::new(Ribs::default()));
        let (_moved_state, watched) = watch::channel(SessionState::Established);
        take_over("t-core", b.clone(), &moved, watched);
        assert_eq!(core(announced()).address, b.address);

        // Records from elsewhere replace what this process knew of the
        // routers named, and only of those.
        remember(&["t-core".to_owned()], Vec::new());
        assert!(announced().iter().all(|record| record.router != "t-core"));
    }
}
