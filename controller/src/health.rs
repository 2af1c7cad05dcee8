//! Whether the controller is alive in a way that matters, for `/healthz`:
//! a router worker that died, or a node source that stopped making
//! progress, fails it, so that the kubelet restarts the process instead of
//! leaving a controller that renews its Lease and does nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long the node source may go without any sign of progress (a list,
/// a watch event, a bookmark, a re-list, a file read) while leading. Watches
/// are restarted by the client every few minutes and a real API server
/// sends bookmarks about every minute, so ten minutes of silence means the
/// source hangs.
pub const SOURCE_STALL_BOUND: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
pub struct Liveness {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Routers whose worker ended without being asked to.
    dead_workers: Vec<String>,
    /// The last progress of the node source; `None` while not leading.
    source_progress: Option<Instant>,
}

impl Liveness {
    /// A router's worker ended on its own (a panic): that router is no
    /// longer synced.
    pub fn worker_died(&self, router: &str) {
        self.with_state(|state| state.dead_workers.push(router.to_owned()));
    }

    /// The node source made progress at `at`.
    pub fn source_progressed(&self, at: Instant) {
        self.with_state(|state| {
            state.source_progress = Some(state.source_progress.map_or(at, |last| last.max(at)));
        });
    }

    /// A term ended: its workers and source are gone, and the next term's
    /// start fresh.
    pub fn term_ended(&self) {
        self.with_state(|state| *state = State::default());
    }

    /// `Err` with the reason when the process should be restarted.
    pub fn check(&self, now: Instant) -> Result<(), String> {
        self.with_state(|state| {
            if !state.dead_workers.is_empty() {
                return Err(format!(
                    "router worker stopped: {} (see the log)",
                    state.dead_workers.join(", ")
                ));
            }
            match state.source_progress {
                Some(last) if now.saturating_duration_since(last) > SOURCE_STALL_BOUND => {
                    Err(format!(
                        "the node source has made no progress for {}s",
                        now.saturating_duration_since(last).as_secs()
                    ))
                }
                _ => Ok(()),
            }
        })
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        // A panic while holding this lock cannot leave State inconsistent:
        // every change is one assignment.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_worker_fails_the_check_until_the_term_ends() {
        let liveness = Liveness::default();
        assert!(liveness.check(Instant::now()).is_ok());
        liveness.worker_died("core-1");
        let failed = liveness.check(Instant::now()).expect_err("a dead worker");
        assert!(failed.contains("core-1"), "{failed}");
        liveness.term_ended();
        assert!(liveness.check(Instant::now()).is_ok());
    }

    #[test]
    fn a_source_silent_past_the_bound_fails_the_check() {
        let liveness = Liveness::default();
        let start = Instant::now();
        liveness.source_progressed(start);
        assert!(liveness.check(start + SOURCE_STALL_BOUND).is_ok());
        let late = start + SOURCE_STALL_BOUND + Duration::from_secs(1);
        assert!(liveness.check(late).is_err());
        liveness.source_progressed(late);
        assert!(liveness.check(late).is_ok());
    }
}
