//! Watch streams: newline-delimited JSON watch events over a chunked HTTP
//! 200, as the real server sends them.
//!
//! - resourceVersion unset or "0": synthetic ADDED events for the current
//!   state, then live changes. With `sendInitialEvents=true` a BOOKMARK
//!   annotated `k8s.io/initial-events-end` follows the initial events.
//! - resourceVersion N: every change after N replayed from the history,
//!   then live changes; when the history no longer reaches back to N, one
//!   ERROR event (Status 410 Expired, "too old resource version") and the
//!   end of the stream.
//! - A filtered watch sees an object that stops matching as DELETED and one
//!   that starts matching as ADDED.
//! - BOOKMARKs every `bookmark_interval` when `allowWatchBookmarks=true`;
//!   the stream ends at `timeoutSeconds`, when faults drop watches, when
//!   the server stops, or when the watcher falls too far behind (as the
//!   real server closes a watcher whose buffer overflows).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::Shared;
use super::resources::{ResourceType, Target};
use super::schema;
use super::selector::Filter;
use super::status::ApiError;
use super::store::{Change, ChangeKind, WatchStart};

/// The real server picks a timeout between 30 and 60 minutes when the
/// client names none.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

enum Wake {
    End,
    Change(Arc<Change>),
    Bookmark,
}

enum Pending {
    Change(Arc<Change>),
    Line(Bytes),
}

struct Session {
    shared: Arc<Shared>,
    rt: ResourceType,
    namespace: Option<String>,
    filter: Filter,
    backlog: VecDeque<Pending>,
    /// None once the stream is to end after the backlog.
    live: Option<broadcast::Receiver<Arc<Change>>>,
    drops: watch::Receiver<u64>,
    holds: watch::Receiver<bool>,
    deadline: Instant,
    bookmarks: Option<Interval>,
    /// Live changes at or before this version are not for this watch (one
    /// started from a version the store has not reached yet).
    after: u64,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shared
            .faults
            .open_watches
            .fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) fn start(
    shared: Arc<Shared>,
    target: &Target,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let rt = target.resource;
    let param = |name: &str| query.get(name).map(String::as_str);
    let filter = Filter::parse(rt, param("labelSelector"), param("fieldSelector"))?;
    let timeout = match param("timeoutSeconds") {
        Some(s) => Duration::from_secs(
            s.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid timeoutSeconds: {s:?}")))?,
        ),
        None => DEFAULT_TIMEOUT,
    };
    let allow_bookmarks = param("allowWatchBookmarks") == Some("true");
    let send_initial = param("sendInitialEvents") == Some("true");
    if send_initial && !allow_bookmarks {
        return Err(ApiError::bad_request(
            "sendInitialEvents requires setting allowWatchBookmarks to true",
        ));
    }
    let start = match param("resourceVersion").unwrap_or("") {
        "" | "0" => WatchStart::CurrentState,
        _ if send_initial => WatchStart::CurrentState,
        text => WatchStart::After(
            text.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion: {text:?}")))?,
        ),
    };
    let requested = param("resourceVersion").unwrap_or("").to_string();
    // Subscribe to drops first: a drop from now on ends this watch.
    let drops = shared.faults.watch_drops();
    let holds = shared.faults.watch_holds();
    shared.faults.open_watches.fetch_add(1, Ordering::SeqCst);
    let mut session = Session {
        shared: shared.clone(),
        rt,
        namespace: target.namespace.clone(),
        filter,
        backlog: VecDeque::new(),
        live: None,
        drops,
        holds,
        deadline: Instant::now() + timeout,
        bookmarks: None,
        after: match start {
            WatchStart::After(rv) => rv,
            WatchStart::CurrentState => 0,
        },
    };
    match shared.store.watch(rt.storage(), start) {
        Ok(feed) => {
            session
                .backlog
                .extend(feed.backlog.into_iter().map(Pending::Change));
            if send_initial {
                session
                    .backlog
                    .push_back(Pending::Line(bookmark_line(rt, feed.now, true)));
            }
            session.live = Some(feed.live);
            if allow_bookmarks {
                let period = shared.options.bookmark_interval;
                let mut ticks = tokio::time::interval_at(Instant::now() + period, period);
                ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                session.bookmarks = Some(ticks);
            }
        }
        Err(oldest) => {
            let error =
                ApiError::expired(format!("too old resource version: {requested} ({oldest})"));
            session
                .backlog
                .push_back(Pending::Line(line("ERROR", &error.status())));
        }
    }
    let stream = futures::stream::unfold(session, |mut session| async move {
        let next = session.next_line().await?;
        Some((Ok::<Bytes, Infallible>(next), session))
    });
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .map_err(|err| ApiError::internal(&err.to_string()))?;
    Ok(response)
}

fn line(kind: &str, object: &Value) -> Bytes {
    Bytes::from(format!("{{\"type\":\"{kind}\",\"object\":{object}}}\n"))
}

fn bookmark_line(rt: ResourceType, rv: u64, initial_end: bool) -> Bytes {
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        &json!({"kind": rt.kind(), "apiVersion": rt.api_version(), "metadata": metadata}),
    )
}

impl Session {
    async fn next_line(&mut self) -> Option<Bytes> {
        while let Some(pending) = self.backlog.pop_front() {
            match pending {
                Pending::Line(bytes) => return Some(bytes),
                Pending::Change(change) => {
                    if let Some(bytes) = self.render(&change) {
                        return Some(bytes);
                    }
                }
            }
        }
        loop {
            let live = self.live.as_mut()?;
            // Biased: a drop or the deadline ends the stream even when
            // changes are waiting, as a closed connection would.
            let woken = tokio::select! {
                biased;
                _ = self.drops.changed() => Wake::End,
                _ = tokio::time::sleep_until(self.deadline) => Wake::End,
                // Held, or about to be: changes wait in the channel
                // (bookmarks too) until released.
                changed = self.holds.changed() => {
                    if changed.is_err() { Wake::End } else { continue }
                }
                received = live.recv(), if !*self.holds.borrow() => match received {
                    Ok(change) => Wake::Change(change),
                    // Lagged past the buffer, or the store is gone.
                    Err(_) => Wake::End,
                },
                _ = tick(&mut self.bookmarks), if !*self.holds.borrow() => Wake::Bookmark,
            };
            match woken {
                Wake::End => return None,
                Wake::Change(change) => {
                    if let Some(bytes) = self.render_with_waiting(&change) {
                        return Some(bytes);
                    }
                }
                Wake::Bookmark => {
                    let rv = self
                        .live
                        .as_ref()
                        .and_then(|live| self.shared.store.bookmark(live));
                    if let Some(rv) = rv {
                        return Some(bookmark_line(self.rt, rv, false));
                    }
                }
            }
        }
    }

    /// `change` and every change already waiting behind it, in one chunk:
    /// what a server that fell behind (or was held) writes at once.
    fn render_with_waiting(&mut self, change: &Change) -> Option<Bytes> {
        let mut chunk: Vec<u8> = self.render(change).map(Vec::from).unwrap_or_default();
        while let Some(live) = self.live.as_mut() {
            match live.try_recv() {
                Ok(next) => chunk.extend(self.render(&next).iter().flatten()),
                Err(broadcast::error::TryRecvError::Empty) => break,
                // Lagged past the buffer, or the store is gone: this chunk
                // is the last.
                Err(_) => self.live = None,
            }
        }
        (!chunk.is_empty()).then(|| Bytes::from(chunk))
    }

    /// The watch event this change is for this watcher, if any.
    fn render(&self, change: &Change) -> Option<Bytes> {
        if change.rv <= self.after {
            return None;
        }
        let in_scope = |object: &Value| {
            self.namespace
                .as_deref()
                .is_none_or(|ns| super::meta::namespace(object) == ns)
        };
        let selected = |object: &Value| in_scope(object) && self.filter.matches(object);
        let now = selected(&change.object);
        let before = change.previous.as_deref().is_some_and(selected);
        let kind = match (change.kind, before, now) {
            (ChangeKind::Added, _, true) => "ADDED",
            (ChangeKind::Modified, true, true) => "MODIFIED",
            (ChangeKind::Modified, false, true) => "ADDED",
            (ChangeKind::Modified, true, false) => "DELETED",
            (ChangeKind::Deleted, _, true) => "DELETED",
            _ => return None,
        };
        match schema::encode(self.rt, &change.object) {
            Ok(object) => Some(line(kind, &object)),
            Err(err) => Some(line("ERROR", &err.status())),
        }
    }
}

async fn tick(ticks: &mut Option<Interval>) {
    match ticks {
        Some(ticks) => {
            ticks.tick().await;
        }
        None => std::future::pending().await,
    }
}
