//! The in-memory backend: the embedded default, where one process is the whole deployment.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::RwLock;

use crate::{Counted, KvError};

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

/// Namespace -> key -> entry. A `BTreeMap` per namespace keeps `list` in key order.
type Namespaces = HashMap<String, BTreeMap<String, Entry>>;

/// Values in process memory, with TTLs honoured on read. Clones share the same map.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    entries: Arc<RwLock<Namespaces>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) async fn put(
        &self,
        namespace: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        let mut entries = self.entries.write().await;
        let items = entries.entry(namespace.to_owned()).or_default();
        // Expired entries go on writes, so a long-running local server does not grow forever.
        let now = Instant::now();
        items.retain(|_, entry| entry.is_live(now));
        items.insert(key.to_owned(), entry(value, ttl, now));
        Ok(())
    }

    pub(crate) async fn put_if_absent(
        &self,
        namespace: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        // The check and the insert happen under one write lock: atomic for this process, which
        // is all that shares this store.
        let mut entries = self.entries.write().await;
        let items = entries.entry(namespace.to_owned()).or_default();
        let now = Instant::now();
        items.retain(|_, entry| entry.is_live(now));
        if items.contains_key(key) {
            return Ok(false);
        }
        items.insert(key.to_owned(), entry(value, ttl, now));
        Ok(true)
    }

    pub(crate) async fn increment(
        &self,
        namespace: &str,
        key: &str,
        max: u64,
        ttl: Duration,
    ) -> Counted {
        let mut entries = self.entries.write().await;
        let items = entries.entry(namespace.to_owned()).or_default();
        let now = Instant::now();
        items.retain(|_, entry| entry.is_live(now));
        let current = items
            .get(key)
            .and_then(|entry| entry.value.as_u64())
            .unwrap_or(0);
        if current >= max {
            return Counted::Full(current);
        }
        match items.get_mut(key) {
            Some(entry) => entry.value = Value::from(current + 1),
            None => {
                items.insert(key.to_owned(), entry(&Value::from(1u64), Some(ttl), now));
            }
        }
        Counted::Added(current + 1)
    }

    pub(crate) async fn count(&self, namespace: &str, key: &str) -> u64 {
        self.get(namespace, key)
            .await
            .ok()
            .flatten()
            .and_then(|value| value.as_u64())
            .unwrap_or(0)
    }

    pub(crate) async fn get(&self, namespace: &str, key: &str) -> Result<Option<Value>, KvError> {
        let entries = self.entries.read().await;
        let now = Instant::now();
        Ok(entries
            .get(namespace)
            .and_then(|items| items.get(key))
            .filter(|entry| entry.is_live(now))
            .map(|entry| entry.value.clone()))
    }

    pub(crate) async fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        let mut entries = self.entries.write().await;
        if let Some(items) = entries.get_mut(namespace) {
            items.remove(key);
            if items.is_empty() {
                entries.remove(namespace);
            }
        }
        Ok(())
    }

    pub(crate) async fn list(&self, namespace: &str) -> Vec<(String, Value)> {
        let entries = self.entries.read().await;
        let now = Instant::now();
        entries
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
