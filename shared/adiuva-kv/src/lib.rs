//! The shared short-lived store: small JSON values that every Lambda instance must see and that
//! do not outlive their purpose (cached plans now; WebSocket connections, rate-limit windows and
//! idempotency records later). Not a database: nothing here is user content or must survive.
//!
//! One interface, [`KvStore`], with two backends chosen by configuration: DynamoDB in production
//! (`DYNAMODB_TABLE` set) and process memory for the embedded default, where one process is the
//! whole deployment.
//!
//! Values are addressed by `(namespace, key)`: the namespace keeps the users of the store apart
//! (`plans`, later `ws-connections`, ...) and [`KvStore::list`] reads one namespace, sorted by
//! key. A value may carry a time to live; an expired value is never returned, on either backend,
//! even before DynamoDB's lazy TTL deletion has removed it.
//!
//! Errors are split like the blob store's: [`KvError::Unavailable`] means "try again later"
//! (answer 503), [`KvError::Failed`] is a bug or misconfiguration.
//!
//! The store is built once per process ([`KvStore::from_config`] does no network I/O) and cloned
//! cheaply into handlers.

mod dynamo;
mod memory;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use adiuva_config::{Component, ConfigError, Context, Source};
use adiuva_error::ErrorKind;
use serde_json::Value;

pub use dynamo::DynamoStore;
pub use memory::MemoryStore;

/// The DynamoDB attribute that holds an item's expiry (epoch seconds): the table's TTL
/// attribute, so DynamoDB deletes expired idempotency records, WebSocket connections, limit
/// windows and chat slots by itself. `infra/template.yaml` declares the same name in the
/// table's `TimeToLiveSpecification` (a test compares them).
pub const TTL_ATTRIBUTE: &str = "expires_at";

/// Boxed cause carried by [`KvError`], so callers log the whole chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// The store cannot be reached, timed out or throttled: callers answer 503 and keep state.
    #[error("short-lived store unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else (bad request, permission, a stored value that is not JSON ...).
    #[error("short-lived store operation failed")]
    Failed(#[source] BoxError),
}

impl adiuva_error::DomainError for KvError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Failed(_) => ErrorKind::Internal,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "dependency_unavailable",
            Self::Failed(_) => "internal_error",
        }
    }

    fn public_detail(&self) -> Option<std::borrow::Cow<'static, str>> {
        matches!(self, Self::Unavailable(_))
            .then(|| adiuva_error::unavailable("the short-lived store"))
    }
}

/// What [`KvStore::increment`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    /// The counter was raised; this is its new value.
    Added(u64),
    /// Raising it would have passed the maximum; this is its unchanged value.
    Full(u64),
}

/// `DYNAMODB_TABLE` (unset: process memory), `DYNAMODB_ENDPOINT_URL` and the AWS credentials.
#[derive(Debug, Clone)]
pub struct KvSettings {
    pub dynamodb: Option<DynamoSettings>,
    /// Set when running in AWS Lambda (`AWS_LAMBDA_FUNCTION_NAME`), where memory is per instance.
    pub in_lambda: bool,
}

#[derive(Debug, Clone)]
pub struct DynamoSettings {
    pub table: String,
    /// Custom endpoint (moto_server, DynamoDB Local).
    pub endpoint_url: Option<String>,
    pub aws: adiuva_aws::AwsSettings,
}

impl KvSettings {
    pub fn from_source(source: &Source) -> Self {
        Self {
            dynamodb: source
                .optional("DYNAMODB_TABLE")
                .map(|table| DynamoSettings {
                    table,
                    endpoint_url: source.url("DYNAMODB_ENDPOINT_URL"),
                    aws: adiuva_aws::AwsSettings::from_source(source),
                }),
            in_lambda: source.optional("AWS_LAMBDA_FUNCTION_NAME").is_some(),
        }
    }
}

impl Component for KvStore {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        Self::from_settings(&KvSettings::from_source(context.source()))
            .map_err(|err| ConfigError::unusable("the short-lived store", err))
    }
}

impl KvError {
    /// True for [`KvError::Unavailable`]: the operation may succeed if retried later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    /// A [`KvError::Failed`] with a message or any error as its cause.
    pub fn failed(cause: impl Into<BoxError>) -> Self {
        Self::Failed(cause.into())
    }
}

/// The store, as one enum rather than a trait object: the set of backends is closed, and an
/// enum keeps the futures `Send` without boxing.
#[derive(Clone, Debug)]
pub enum KvStore {
    Dynamo(DynamoStore),
    Memory(MemoryStore),
}

impl KvStore {
    /// DynamoDB when a table is set, else process memory. No network I/O here (Lambda cold
    /// start).
    pub fn from_settings(settings: &KvSettings) -> Result<Self, KvError> {
        match &settings.dynamodb {
            Some(dynamodb) => Ok(Self::Dynamo(DynamoStore::new(dynamodb)?)),
            None => {
                if settings.in_lambda {
                    tracing::warn!(
                        "DYNAMODB_TABLE is not set: rate limits, idempotency records and \
                         WebSocket connections live in this instance's memory only"
                    );
                }
                Ok(Self::Memory(MemoryStore::new()))
            }
        }
    }

    /// Raises the counter under `(namespace, key)` by one unless that would take it above
    /// `max`. Atomic across processes: of concurrent callers with room for n more, exactly n
    /// get [`Counted::Added`]. A new (or expired) counter starts at 0 and lives for `ttl` from
    /// its first increment; later increments do not extend it.
    pub async fn increment(
        &self,
        namespace: &str,
        key: &str,
        max: u64,
        ttl: Duration,
    ) -> Result<Counted, KvError> {
        match self {
            Self::Dynamo(store) => store.increment(namespace, key, max, ttl).await,
            Self::Memory(store) => Ok(store.increment(namespace, key, max, ttl).await),
        }
    }

    /// Lowers the live counter under `(namespace, key)` by one, never below zero: gives back a
    /// unit that [`KvStore::increment`] took for something that then did not count (a
    /// reservation released). Atomic across processes, like `increment`. Returns whether the
    /// counter was lowered; an absent, expired or zero counter is left alone (`false`), so a
    /// unit is never given back to a window that has since expired and started again. The
    /// counter keeps its TTL.
    pub async fn decrement(&self, namespace: &str, key: &str) -> Result<bool, KvError> {
        match self {
            Self::Dynamo(store) => store.decrement(namespace, key).await,
            Self::Memory(store) => Ok(store.decrement(namespace, key).await),
        }
    }

    /// The live value of a counter; 0 when there is none.
    pub async fn count(&self, namespace: &str, key: &str) -> Result<u64, KvError> {
        match self {
            Self::Dynamo(store) => store.count(namespace, key).await,
            Self::Memory(store) => Ok(store.count(namespace, key).await),
        }
    }

    /// Stores `value` under `(namespace, key)`, replacing what was there. With `ttl`, the value
    /// disappears after that long; without, it stays until deleted.
    pub async fn put(
        &self,
        namespace: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        match self {
            Self::Dynamo(store) => store.put(namespace, key, value, ttl).await,
            Self::Memory(store) => store.put(namespace, key, value, ttl).await,
        }
    }

    /// Stores `value` only if no live value is under `(namespace, key)` (an expired one counts
    /// as absent). Atomic across processes: of concurrent callers, exactly one gets `true`.
    pub async fn put_if_absent(
        &self,
        namespace: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        match self {
            Self::Dynamo(store) => store.put_if_absent(namespace, key, value, ttl).await,
            Self::Memory(store) => store.put_if_absent(namespace, key, value, ttl).await,
        }
    }

    /// The live value under `(namespace, key)`, if any.
    pub async fn get(&self, namespace: &str, key: &str) -> Result<Option<Value>, KvError> {
        match self {
            Self::Dynamo(store) => store.get(namespace, key).await,
            Self::Memory(store) => store.get(namespace, key).await,
        }
    }

    /// Removes `(namespace, key)`; removing what is not there is not an error.
    pub async fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        match self {
            Self::Dynamo(store) => store.delete(namespace, key).await,
            Self::Memory(store) => store.delete(namespace, key).await,
        }
    }

    /// Removes `(namespace, key)` and returns the live value it held, if any. Atomic across
    /// processes: of concurrent callers, at most one gets the value, so a value taken this way
    /// is used once (OpenID Connect sign-in states).
    pub async fn take(&self, namespace: &str, key: &str) -> Result<Option<Value>, KvError> {
        match self {
            Self::Dynamo(store) => store.take(namespace, key).await,
            Self::Memory(store) => store.take(namespace, key).await,
        }
    }

    /// Every live `(key, value)` of a namespace, sorted by key (byte order).
    pub async fn list(&self, namespace: &str) -> Result<Vec<(String, Value)>, KvError> {
        let mut items = match self {
            Self::Dynamo(store) => store.list(namespace).await?,
            Self::Memory(store) => store.list(namespace).await,
        };
        // Both backends already answer in key order; sorting here makes it a property of the
        // interface rather than of each backend.
        items.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(items)
    }
}

/// Seconds since the Unix epoch, the unit of DynamoDB's TTL attribute.
fn now_epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
