//! The in-memory backend: the embedded default, where one process is the whole deployment.
//!
//! One `std` mutex over all namespaces: every operation is a few map lookups and never awaits
//! while holding it, so a blocking lock is cheaper than an async one on the hot path (the rate
//! limiter touches this store on every request). Expired entries are invisible at once and
//! swept from the maps every [`SWEEP_EVERY`] writes, so a long-running local server does not
//! grow forever.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Counted, KvError};

/// Writes between two sweeps of expired entries.
const SWEEP_EVERY: u64 = 1024;

#[derive(Debug)]
struct Entry {
    value: Value,
    /// `None`: kept until deleted.
    expires_at: Option<Instant>,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|expires_at| now < expires_at)
    }
}

#[derive(Debug, Default)]
struct State {
    /// Namespace -> key -> entry. A `BTreeMap` per namespace keeps `list` in key order.
    namespaces: HashMap<String, BTreeMap<String, Entry>>,
    writes: u64,
}

impl State {
    /// The live entry under `(namespace, key)`.
    fn live(&self, namespace: &str, key: &str, now: Instant) -> Option<&Entry> {
        self.namespaces
            .get(namespace)
            .and_then(|items| items.get(key))
            .filter(|entry| entry.is_live(now))
    }

    /// The namespace's map for a write; every [`SWEEP_EVERY`] writes, drops what has expired.
    fn items(&mut self, namespace: &str, now: Instant) -> &mut BTreeMap<String, Entry> {
        self.writes += 1;
        if self.writes.is_multiple_of(SWEEP_EVERY) {
            for items in self.namespaces.values_mut() {
                items.retain(|_, entry| entry.is_live(now));
            }
            self.namespaces.retain(|_, items| !items.is_empty());
        }
        self.namespaces.entry(namespace.to_owned()).or_default()
    }
}

/// Values in process memory, with TTLs honoured on read. Clones share the same map.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Each operation leaves the maps whole before it could panic.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) async fn put(
        &self,
        namespace: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        let now = Instant::now();
        let mut state = self.lock();
        state
            .items(namespace, now)
            .insert(key.to_owned(), entry(value, ttl, now));
        Ok(())
    }

    pub(crate) async fn put_if_absent(
        &self,
        namespace: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        // The check and the insert happen under one lock: atomic for this process, which is
        // all that shares this store.
        let now = Instant::now();
        let mut state = self.lock();
        if state.live(namespace, key, now).is_some() {
            return Ok(false);
        }
        state
            .items(namespace, now)
            .insert(key.to_owned(), entry(value, ttl, now));
        Ok(true)
    }

    pub(crate) async fn increment(
        &self,
        namespace: &str,
        key: &str,
        max: u64,
        ttl: Duration,
    ) -> Counted {
        let now = Instant::now();
        let mut state = self.lock();
        let current = state
            .live(namespace, key, now)
            .and_then(|entry| entry.value.as_u64());
        let count = current.unwrap_or(0);
        if count >= max {
            return Counted::Full(count);
        }
        let items = state.items(namespace, now);
        match (current, items.get_mut(key)) {
            (Some(_), Some(entry)) => entry.value = Value::from(count + 1),
            // New, or expired: starts again with a fresh TTL.
            _ => {
                items.insert(key.to_owned(), entry(&Value::from(1u64), Some(ttl), now));
            }
        }
        Counted::Added(count + 1)
    }

    pub(crate) async fn decrement(&self, namespace: &str, key: &str) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        let Some(count) = state
            .live(namespace, key, now)
            .and_then(|entry| entry.value.as_u64())
            .filter(|count| *count > 0)
        else {
            return false;
        };
        if let Some(entry) = state
            .namespaces
            .get_mut(namespace)
            .and_then(|items| items.get_mut(key))
        {
            // The same entry, so its TTL stays what the first increment set.
            entry.value = Value::from(count - 1);
        }
        true
    }

    pub(crate) async fn count(&self, namespace: &str, key: &str) -> u64 {
        self.lock()
            .live(namespace, key, Instant::now())
            .and_then(|entry| entry.value.as_u64())
            .unwrap_or(0)
    }

    pub(crate) async fn get(&self, namespace: &str, key: &str) -> Result<Option<Value>, KvError> {
        Ok(self
            .lock()
            .live(namespace, key, Instant::now())
            .map(|entry| entry.value.clone()))
    }

    pub(crate) async fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        let mut state = self.lock();
        if let Some(items) = state.namespaces.get_mut(namespace) {
            items.remove(key);
            if items.is_empty() {
                state.namespaces.remove(namespace);
            }
        }
        Ok(())
    }

    pub(crate) async fn take(&self, namespace: &str, key: &str) -> Result<Option<Value>, KvError> {
        let mut state = self.lock();
        let Some(items) = state.namespaces.get_mut(namespace) else {
            return Ok(None);
        };
        let taken = items.remove(key);
        if items.is_empty() {
            state.namespaces.remove(namespace);
        }
        Ok(taken
            .filter(|entry| entry.is_live(Instant::now()))
            .map(|entry| entry.value))
    }

    pub(crate) async fn list(&self, namespace: &str) -> Vec<(String, Value)> {
        let now = Instant::now();
        self.lock()
            .namespaces
            .get(namespace)
            .into_iter()
            .flatten()
            .filter(|(_, entry)| entry.is_live(now))
            .map(|(key, entry)| (key.clone(), entry.value.clone()))
            .collect()
    }
}

fn entry(value: &Value, ttl: Option<Duration>, now: Instant) -> Entry {
    Entry {
        value: value.clone(),
        // A TTL too large for `Instant` is as good as none.
        expires_at: ttl.and_then(|ttl| now.checked_add(ttl)),
    }
}
