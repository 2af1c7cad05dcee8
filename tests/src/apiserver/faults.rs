//! Fault injection: failed answers, latency, dropped and held watches, a
//! server that goes away and comes back, a watch history that is compacted.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::Shared;
use super::listener::Listener;
use super::status::ApiError;

/// Answers to inject: the next `times` requests matching the method and
/// path filters get `status` (with a proper `Status` body), or no answer
/// at all ([`Failure::hang`]).
#[derive(Clone, Debug)]
pub struct Failure {
    /// 0: never answered.
    status: u16,
    times: usize,
    method: Option<String>,
    path_contains: Option<String>,
    retry_after: Option<u32>,
    message: Option<String>,
}

impl Failure {
    /// One request answered with `status` (500 InternalError, 410 Expired,
    /// 429 TooManyRequests, 503 ServiceUnavailable, ...).
    pub fn status(status: u16) -> Failure {
        Failure {
            status,
            times: 1,
            method: None,
            path_contains: None,
            retry_after: None,
            message: None,
        }
    }

    /// One request never answered: the connection stays open and silent,
    /// as with an API server that hangs or a connection gone half-open.
    pub fn hang() -> Failure {
        Failure::status(0)
    }

    /// The next `times` matching requests, instead of one.
    pub fn times(mut self, times: usize) -> Failure {
        self.times = times;
        self
    }

    /// Only requests with this method ("PATCH", "GET", ...).
    pub fn method(mut self, method: &str) -> Failure {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only requests whose path and query contain this text
    /// (e.g. "/nodes/", "watch=true").
    pub fn path_contains(mut self, text: &str) -> Failure {
        self.path_contains = Some(text.to_string());
        self
    }

    /// A `Retry-After` header (and details.retryAfterSeconds).
    pub fn retry_after(mut self, seconds: u32) -> Failure {
        self.retry_after = Some(seconds);
        self
    }

    /// The Status message, instead of the usual one for the code.
    pub fn message(mut self, message: &str) -> Failure {
        self.message = Some(message.to_string());
        self
    }

    fn matches(&self, method: &str, path_and_query: &str) -> bool {
        self.method.as_deref().is_none_or(|m| m == method)
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path_and_query.contains(p))
    }
}

/// What a request gets instead of its answer.
pub(crate) enum Injected {
    Answer(ApiError),
    Hang,
}

/// What the request handler consults.
pub(crate) struct FaultState {
    failures: Mutex<Vec<Failure>>,
    latency_micros: AtomicU64,
    /// Bumped to end every open watch.
    watch_generation: watch::Sender<u64>,
    /// True while watches send nothing (their changes wait).
    watch_hold: watch::Sender<bool>,
    pub open_watches: AtomicUsize,
}

impl Default for FaultState {
    fn default() -> Self {
        FaultState {
            failures: Mutex::new(Vec::new()),
            latency_micros: AtomicU64::new(0),
            watch_generation: watch::channel(0).0,
            watch_hold: watch::channel(false).0,
            open_watches: AtomicUsize::new(0),
        }
    }
}

impl FaultState {
    /// The injected answer for this request, if one is due.
    pub fn take_failure(&self, method: &str, path_and_query: &str) -> Option<Injected> {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let index = failures
            .iter()
            .position(|f| f.matches(method, path_and_query))?;
        let failure = &mut failures[index];
        let injected = match failure.status {
            0 => Injected::Hang,
            status => Injected::Answer(ApiError::injected(
                status,
                failure.message.as_deref(),
                failure.retry_after,
            )),
        };
        failure.times = failure.times.saturating_sub(1);
        if failure.times == 0 {
            failures.remove(index);
        }
        Some(injected)
    }

    pub fn latency(&self) -> Duration {
        Duration::from_micros(self.latency_micros.load(Ordering::Relaxed))
    }

    pub fn watch_drops(&self) -> watch::Receiver<u64> {
        self.watch_generation.subscribe()
    }

    pub fn watch_holds(&self) -> watch::Receiver<bool> {
        self.watch_hold.subscribe()
    }
}

/// A cheap, cloneable handle for breaking the server in the ways a real
/// one breaks.
#[derive(Clone)]
pub struct Faults {
    pub(crate) shared: Arc<Shared>,
    pub(crate) listener: Arc<Listener>,
}

impl Faults {
    /// Queues an injected answer; queued failures are consumed in order.
    pub fn fail(&self, failure: Failure) {
        if failure.times > 0 {
            self.state()
                .failures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(failure);
        }
    }

    /// Forgets failures not yet consumed.
    pub fn clear_failures(&self) {
        self.state()
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Delays every answer by `latency` (zero turns it off).
    pub fn set_latency(&self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.state().latency_micros.store(micros, Ordering::Relaxed);
    }

    /// Ends every open watch stream now, as an API server restart or a load
    /// balancer timeout would; clients resume from their last version.
    pub fn drop_watches(&self) {
        self.state().watch_generation.send_modify(|g| *g += 1);
    }

    /// Makes every open and new watch hold its changes back, as a busy
    /// API server or a congested link does, until [`Faults::release_watches`].
    pub fn hold_watches(&self) {
        self.state().watch_hold.send_replace(true);
    }

    /// Sends what the watches held back, each watch's changes in one write,
    /// so that a client reads them all at once.
    pub fn release_watches(&self) {
        self.state().watch_hold.send_replace(false);
    }

    /// How many watch streams are open.
    pub fn open_watches(&self) -> usize {
        self.state().open_watches.load(Ordering::SeqCst)
    }

    /// Discards the watch history: resuming a watch from any version before
    /// now is answered 410 Expired.
    pub fn compact(&self) {
        self.shared.store.compact();
    }

    /// Stops listening and closes every open connection and watch; clients
    /// see connection refused until [`Faults::restart`].
    pub async fn stop(&self) {
        self.listener.stop().await;
    }

    /// Listens again on the same port, with the same objects.
    pub async fn restart(&self) -> anyhow::Result<()> {
        self.listener.start().await
    }

    pub fn is_running(&self) -> bool {
        self.listener.is_running()
    }

    fn state(&self) -> &FaultState {
        &self.shared.faults
    }
}
