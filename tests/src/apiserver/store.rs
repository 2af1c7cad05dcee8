//! The objects, the one resourceVersion counter every write bumps, and the
//! bounded history of changes that watches replay from.
//!
//! Each stored kind keeps its own history, as each resource has its own
//! watch cache on the real server, so a storm of Events does not expire a
//! Node watcher's resourceVersion. All state sits behind one mutex that is
//! never held across an await; live changes go out on a broadcast channel
//! sent to under that mutex, so a watch that subscribes under it misses
//! nothing between its replay and its live part.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

use super::meta;
use super::status::ApiError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Storage {
    Nodes,
    Events,
    Leases,
    ConfigMaps,
}

impl Storage {
    /// How many tables the store keeps.
    const COUNT: usize = 4;

    fn index(self) -> usize {
        match self {
            Storage::Nodes => 0,
            Storage::Events => 1,
            Storage::Leases => 2,
            Storage::ConfigMaps => 3,
        }
    }
}

/// (namespace, name); the namespace is "" for cluster-scoped objects. The
/// order of keys is the order of lists, as etcd's key order is.
pub(crate) type Key = (String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One committed write, as watches see it.
#[derive(Debug)]
pub(crate) struct Change {
    pub rv: u64,
    pub kind: ChangeKind,
    /// The object after the write; for a delete, the last state carrying
    /// the deletion's resourceVersion.
    pub object: Arc<Value>,
    /// The object before the write, so a filtered watch can tell an object
    /// that left its selection (DELETED) from one that entered it (ADDED).
    pub previous: Option<Arc<Value>>,
}

/// Why a write did not happen.
#[derive(Debug)]
pub(crate) enum WriteError {
    NotFound,
    AlreadyExists,
    Rejected(ApiError),
}

impl From<ApiError> for WriteError {
    fn from(err: ApiError) -> WriteError {
        WriteError::Rejected(err)
    }
}

/// A page of a list.
pub(crate) struct Page {
    pub items: Vec<Arc<Value>>,
    /// The key of the last item, when more matching items follow.
    pub next: Option<Key>,
    pub remaining: usize,
}

/// What a watch starts with: the changes to send first, the live feed
/// after them, and the store's version when it started.
pub(crate) struct WatchFeed {
    pub backlog: Vec<Arc<Change>>,
    pub live: broadcast::Receiver<Arc<Change>>,
    pub now: u64,
}

/// Where a watch starts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum WatchStart {
    /// Synthetic ADDED events for every current object first.
    CurrentState,
    /// Every change after this resourceVersion first.
    After(u64),
}

struct Table {
    objects: BTreeMap<Key, Arc<Value>>,
    history: VecDeque<Arc<Change>>,
    /// Changes up to this version may have been discarded.
    compacted_through: u64,
    live: broadcast::Sender<Arc<Change>>,
}

struct Inner {
    rv: u64,
    tables: [Table; Storage::COUNT],
}

pub(crate) struct Store {
    inner: Mutex<Inner>,
    history_limit: usize,
}

impl Store {
    pub fn new(history_limit: usize) -> Store {
        let table = || Table {
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            compacted_through: 0,
            live: broadcast::channel(history_limit.max(1024)).0,
        };
        Store {
            // Version 1 is the empty store; the first write is 2, so "0"
            // (meaning "any") never names a real version.
            inner: Mutex::new(Inner {
                rv: 1,
                tables: std::array::from_fn(|_| table()),
            }),
            history_limit: history_limit.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, storage: Storage, key: &Key) -> Option<Arc<Value>> {
        self.lock().tables[storage.index()]
            .objects
            .get(key)
            .cloned()
    }

    pub fn all(&self, storage: Storage) -> Vec<Arc<Value>> {
        self.lock().tables[storage.index()]
            .objects
            .values()
            .cloned()
            .collect()
    }

    /// Up to `limit` objects matching `keep`, after `after`, within
    /// `namespace` when given; and the version the list reads at.
    pub fn list(
        &self,
        storage: Storage,
        namespace: Option<&str>,
        after: Option<&Key>,
        limit: Option<usize>,
        keep: &dyn Fn(&Value) -> bool,
    ) -> (Page, u64) {
        let inner = self.lock();
        let objects = &inner.tables[storage.index()].objects;
        let mut page = Page {
            items: Vec::new(),
            next: None,
            remaining: 0,
        };
        let candidates = objects
            .iter()
            .filter(|(key, _)| after.is_none_or(|after| *key > after))
            .filter(|(key, _)| namespace.is_none_or(|ns| key.0 == ns));
        let mut last: Option<&Key> = None;
        for (key, object) in candidates {
            if !keep(object) {
                continue;
            }
            if limit.is_some_and(|limit| page.items.len() >= limit) {
                page.remaining += 1;
                continue;
            }
            page.items.push(object.clone());
            last = Some(key);
        }
        if page.remaining > 0 {
            page.next = last.cloned();
        }
        (page, inner.rv)
    }

    /// Whether a list continued from `rv` can still be consistent.
    pub fn continuable(&self, storage: Storage, rv: u64) -> bool {
        rv >= self.lock().tables[storage.index()].compacted_through
    }

    pub fn create(
        &self,
        storage: Storage,
        key: Key,
        mut object: Value,
        dry_run: bool,
    ) -> Result<Arc<Value>, WriteError> {
        let mut inner = self.lock();
        if inner.tables[storage.index()].objects.contains_key(&key) {
            return Err(WriteError::AlreadyExists);
        }
        let rv = inner.rv + 1;
        meta::set_resource_version(&mut object, rv);
        let object = Arc::new(object);
        if !dry_run {
            inner.rv = rv;
            let table = &mut inner.tables[storage.index()];
            table.objects.insert(key, object.clone());
            self.record(table, rv, ChangeKind::Added, object.clone(), None);
        }
        Ok(object)
    }

    /// Replaces an object with what `change` makes of it. A result equal to
    /// the current object is no write at all (no new version, no event), as
    /// the real server skips writing unchanged bytes.
    ///
    /// `change` runs outside the lock, as the real server's GuaranteedUpdate
    /// runs its update function: when another write lands first, `change`
    /// runs again on the newer object (where a client's resourceVersion
    /// precondition then fails, as it should).
    pub fn update(
        &self,
        storage: Storage,
        key: &Key,
        dry_run: bool,
        change: impl Fn(&Value) -> Result<Value, ApiError>,
    ) -> Result<Arc<Value>, WriteError> {
        loop {
            let current = self.get(storage, key).ok_or(WriteError::NotFound)?;
            let mut next = change(&current)?;
            meta::set_resource_version(&mut next, meta::resource_version(&current).unwrap_or(0));
            if next == *current {
                return Ok(current);
            }
            let mut inner = self.lock();
            match inner.tables[storage.index()].objects.get(key) {
                Some(now) if Arc::ptr_eq(now, &current) => {}
                Some(_) => continue,
                None => return Err(WriteError::NotFound),
            }
            let rv = inner.rv + 1;
            meta::set_resource_version(&mut next, rv);
            let next = Arc::new(next);
            if !dry_run {
                inner.rv = rv;
                let table = &mut inner.tables[storage.index()];
                table.objects.insert(key.clone(), next.clone());
                self.record(table, rv, ChangeKind::Modified, next.clone(), Some(current));
            }
            return Ok(next);
        }
    }

    /// Removes an object once `check` (preconditions) accepts it.
    pub fn delete(
        &self,
        storage: Storage,
        key: &Key,
        dry_run: bool,
        check: impl FnOnce(&Value) -> Result<(), ApiError>,
    ) -> Result<Arc<Value>, WriteError> {
        let mut inner = self.lock();
        let current = inner.tables[storage.index()]
            .objects
            .get(key)
            .cloned()
            .ok_or(WriteError::NotFound)?;
        check(&current)?;
        if dry_run {
            return Ok(current);
        }
        let rv = inner.rv + 1;
        inner.rv = rv;
        let mut last = (*current).clone();
        meta::set_resource_version(&mut last, rv);
        let table = &mut inner.tables[storage.index()];
        table.objects.remove(key);
        self.record(
            table,
            rv,
            ChangeKind::Deleted,
            Arc::new(last),
            Some(current.clone()),
        );
        Ok(current)
    }

    fn record(
        &self,
        table: &mut Table,
        rv: u64,
        kind: ChangeKind,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        let change = Arc::new(Change {
            rv,
            kind,
            object,
            previous,
        });
        table.history.push_back(change.clone());
        while table.history.len() > self.history_limit {
            if let Some(dropped) = table.history.pop_front() {
                table.compacted_through = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = table.live.send(change);
    }

    /// What a watch from `start` is fed; or, when the history no longer
    /// reaches back to `start`, the oldest version it still holds (for the
    /// 410 "too old resource version").
    pub fn watch(&self, storage: Storage, start: WatchStart) -> Result<WatchFeed, u64> {
        let inner = self.lock();
        let table = &inner.tables[storage.index()];
        let backlog = match start {
            WatchStart::CurrentState => table
                .objects
                .values()
                .map(|object| {
                    Arc::new(Change {
                        rv: meta::resource_version(object).unwrap_or(0),
                        kind: ChangeKind::Added,
                        object: object.clone(),
                        previous: None,
                    })
                })
                .collect(),
            WatchStart::After(rv) if rv < table.compacted_through => {
                return Err(table.compacted_through + 1);
            }
            WatchStart::After(rv) => table
                .history
                .iter()
                .filter(|c| c.rv > rv)
                .cloned()
                .collect(),
        };
        Ok(WatchFeed {
            backlog,
            live: table.live.subscribe(),
            now: inner.rv,
        })
    }

    /// The version a BOOKMARK may carry for a watch fed by `live`: the
    /// current one if the watch has taken every change sent so far.
    pub fn bookmark(&self, live: &broadcast::Receiver<Arc<Change>>) -> Option<u64> {
        let inner = self.lock();
        live.is_empty().then_some(inner.rv)
    }

    /// Forgets every change so far: a watch resuming from any version
    /// before now is answered 410.
    pub fn compact(&self) {
        let mut inner = self.lock();
        let rv = inner.rv;
        for table in &mut inner.tables {
            table.history.clear();
            table.compacted_through = rv;
        }
    }
}
