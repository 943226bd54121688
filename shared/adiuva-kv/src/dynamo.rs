//! The DynamoDB backend, on a hand-built SDK client (as the S3 backend of adiuva-blob).
//!
//! `aws-config` is not used: it links the SSO, STS and IMDS credential providers and defaults
//! to aws-lc-rs, a large C build. Lambda hands the role's credentials to the process as
//! environment variables, which our config already reads, and the HTTP client is rustls + ring.
//!
//! Table: partition key `pk` (S) = namespace, sort key `sk` (S) = key, `value` (S) = the JSON
//! text, `expires_at` (N) = epoch seconds, the table's TTL attribute. DynamoDB deletes expired
//! items lazily (typically within days), so every read filters them too, and a conditional
//! write treats an expired item as absent.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::config::BehaviorVersion;
use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use serde_json::Value;

use crate::{Counted, KvError, now_epoch_secs};

/// A connection that is not up in this time will not come up: fail over to a retry.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The whole operation, retries included. The store holds small items, so a slow answer means
/// trouble; a request answers 503 long before API Gateway's 30-second limit.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);

/// Error codes DynamoDB uses for throttling and transient server trouble.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "LimitExceededException",
    "InternalServerError",
    "ServiceUnavailable",
    "TransactionConflictException",
];

pub(crate) const PK: &str = "pk";
pub(crate) const SK: &str = "sk";
pub(crate) const VALUE: &str = "value";
pub(crate) const EXPIRES_AT: &str = crate::TTL_ATTRIBUTE;
/// The number of a counter ([`crate::KvStore::increment`]); counters have no `value`.
pub(crate) const COUNT: &str = "count";

/// The DynamoDB backend. Cheap to clone: the SDK client is reference-counted.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl DynamoStore {
    /// Builds the client without touching the network: connections open on first use.
    pub fn new(settings: &crate::DynamoSettings) -> Result<Self, KvError> {
        let sdk = adiuva_aws::sdk_config(&settings.aws, &settings.aws.region)
            .map_err(|reason| KvError::failed(format!("DYNAMODB_TABLE is set but {reason}")))?;
        // Shorter than the shared defaults: this store sits on hot request paths.
        let mut builder = aws_sdk_dynamodb::config::Builder::from(&sdk)
            .behavior_version(BehaviorVersion::latest())
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            );
        if let Some(endpoint) = &settings.endpoint_url {
            builder = builder.endpoint_url(endpoint.clone());
        }
        Ok(Self {
            client: aws_sdk_dynamodb::Client::from_conf(builder.build()),
            table: settings.table.clone(),
        })
    }

    /// The SDK client, for tests and tools that need a call this store does not offer.
    pub fn client(&self) -> &aws_sdk_dynamodb::Client {
        &self.client
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    pub(crate) async fn put(
        &self,
        namespace: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<(), KvError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(namespace, key, value, ttl)))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    pub(crate) async fn put_if_absent(
        &self,
        namespace: &str,
        key: &str,
        value: &Value,
        ttl: Option<Duration>,
    ) -> Result<bool, KvError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item(namespace, key, value, ttl)))
            // Absent, or present but expired and not yet swept by DynamoDB's TTL deletion.
            .condition_expression("attribute_not_exists(#pk) OR #expires_at <= :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#expires_at", EXPIRES_AT)
            .expression_attribute_values(":now", number(now_epoch_secs()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(classify(err)),
        }
    }

    /// One conditional `UpdateItem`: `count + 1` unless that passes `max`, on a live item. An
    /// item whose TTL has passed (DynamoDB deletes lazily) is removed and the increment retried.
    pub(crate) async fn increment(
        &self,
        namespace: &str,
        key: &str,
        max: u64,
        ttl: Duration,
    ) -> Result<Counted, KvError> {
        if max == 0 {
            // The condition below lets a new item through whatever the maximum.
            return Ok(Counted::Full(self.count(namespace, key).await?));
        }
        for _ in 0..2 {
            let now = now_epoch_secs();
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PK, AttributeValue::S(namespace.to_owned()))
                .key(SK, AttributeValue::S(key.to_owned()))
                .update_expression(
                    "SET #count = if_not_exists(#count, :zero) + :one, \
                     #expires_at = if_not_exists(#expires_at, :expires_at)",
                )
                .condition_expression(
                    "(attribute_not_exists(#count) OR #count < :max) \
                     AND (attribute_not_exists(#expires_at) OR #expires_at > :now)",
                )
                .expression_attribute_names("#count", COUNT)
                .expression_attribute_names("#expires_at", EXPIRES_AT)
                .expression_attribute_values(":zero", number(0))
                .expression_attribute_values(":one", number(1))
                .expression_attribute_values(":max", number(max))
                .expression_attribute_values(":now", number(now))
                .expression_attribute_values(":expires_at", number(expiry(now, ttl)))
                .return_values(ReturnValue::UpdatedNew)
                .send()
                .await;
            match result {
                Ok(output) => {
                    let count = output
                        .attributes
                        .as_ref()
                        .and_then(|attributes| attributes.get(COUNT))
                        .and_then(as_u64)
                        .ok_or_else(|| KvError::failed("UpdateItem returned no count"))?;
                    return Ok(Counted::Added(count));
                }
                Err(err)
                    if err
                        .as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
                {
                    let item = self.item(namespace, key).await?;
                    match item {
                        Some(item) if is_live(&item, now_epoch_secs()) => {
                            return Ok(Counted::Full(
                                item.get(COUNT).and_then(as_u64).unwrap_or(0),
                            ));
                        }
                        // Expired but not yet swept: remove it (only if still expired) and retry.
                        Some(_) => self.delete_expired(namespace, key).await?,
                        None => {}
                    }
                }
                Err(err) => return Err(classify(err)),
            }
        }
        Err(KvError::failed(
            "counter kept changing under a conditional update",
        ))
    }

    /// One conditional `UpdateItem`: `count - 1` only on a live item whose count is above zero.
    /// The condition fails on a missing item, so no item is created, and on an expired one, so
    /// a unit is never given back to a counter DynamoDB has not swept yet.
    pub(crate) async fn decrement(&self, namespace: &str, key: &str) -> Result<bool, KvError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(namespace.to_owned()))
            .key(SK, AttributeValue::S(key.to_owned()))
            .update_expression("SET #count = #count - :one")
            .condition_expression(
                "#count > :zero AND (attribute_not_exists(#expires_at) OR #expires_at > :now)",
            )
            .expression_attribute_names("#count", COUNT)
            .expression_attribute_names("#expires_at", EXPIRES_AT)
            .expression_attribute_values(":zero", number(0))
            .expression_attribute_values(":one", number(1))
            .expression_attribute_values(":now", number(now_epoch_secs()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(classify(err)),
        }
    }

    pub(crate) async fn count(&self, namespace: &str, key: &str) -> Result<u64, KvError> {
        Ok(match self.item(namespace, key).await? {
            Some(item) if is_live(&item, now_epoch_secs()) => {
                item.get(COUNT).and_then(as_u64).unwrap_or(0)
            }
            _ => 0,
        })
    }

    /// The stored item, live or not, read consistently: a value written by another instance a
    /// moment ago must be seen.
    async fn item(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, KvError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(namespace.to_owned()))
            .key(SK, AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send()
            .await
            .map_err(classify)?;
        Ok(output.item)
    }

    async fn delete_expired(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(namespace.to_owned()))
            .key(SK, AttributeValue::S(key.to_owned()))
            .condition_expression("#expires_at <= :now")
            .expression_attribute_names("#expires_at", EXPIRES_AT)
            .expression_attribute_values(":now", number(now_epoch_secs()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(classify(err)),
        }
    }

    pub(crate) async fn get(&self, namespace: &str, key: &str) -> Result<Option<Value>, KvError> {
        match self.item(namespace, key).await? {
            Some(item) if is_live(&item, now_epoch_secs()) => Ok(Some(decode_value(&item)?)),
            _ => Ok(None),
        }
    }

    pub(crate) async fn delete(&self, namespace: &str, key: &str) -> Result<(), KvError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(namespace.to_owned()))
            .key(SK, AttributeValue::S(key.to_owned()))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    /// One `DeleteItem` returning the old item: DynamoDB applies it to the item atomically, so
    /// of concurrent takers only one sees the value. An expired item is deleted and not
    /// returned.
    pub(crate) async fn take(&self, namespace: &str, key: &str) -> Result<Option<Value>, KvError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, AttributeValue::S(namespace.to_owned()))
            .key(SK, AttributeValue::S(key.to_owned()))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(classify)?;
        match output.attributes {
            Some(item) if is_live(&item, now_epoch_secs()) => Ok(Some(decode_value(&item)?)),
            _ => Ok(None),
        }
    }

    /// Query by `pk`, every page, in sort-key order.
    pub(crate) async fn list(&self, namespace: &str) -> Result<Vec<(String, Value)>, KvError> {
        let now = now_epoch_secs();
        let mut items = Vec::new();
        let mut start_key = None;
        loop {
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                // Saves transferring expired items; the check below is what guarantees it.
                .filter_expression("attribute_not_exists(#expires_at) OR #expires_at > :now")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#expires_at", EXPIRES_AT)
                .expression_attribute_values(":pk", AttributeValue::S(namespace.to_owned()))
                .expression_attribute_values(":now", number(now))
                .consistent_read(true)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(classify)?;
            for item in output.items.unwrap_or_default() {
                if !is_live(&item, now) {
                    continue;
                }
                let key = match item.get(SK) {
                    Some(AttributeValue::S(key)) => key.clone(),
                    _ => return Err(KvError::failed("stored item without a string sk")),
                };
                items.push((key, decode_value(&item)?));
            }
            match output.last_evaluated_key {
                Some(last) if !last.is_empty() => start_key = Some(last),
                _ => break,
            }
        }
        Ok(items)
    }
}

fn number(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn item(
    namespace: &str,
    key: &str,
    value: &Value,
    ttl: Option<Duration>,
) -> HashMap<String, AttributeValue> {
    let mut item = HashMap::from([
        (PK.to_owned(), AttributeValue::S(namespace.to_owned())),
        (SK.to_owned(), AttributeValue::S(key.to_owned())),
        (VALUE.to_owned(), AttributeValue::S(value.to_string())),
    ]);
    if let Some(ttl) = ttl {
        item.insert(EXPIRES_AT.to_owned(), number(expiry(now_epoch_secs(), ttl)));
    }
    item
}

/// Epoch seconds at which an item written at `now` with `ttl` expires, rounded up: an item may
/// outlive its TTL by under a second, never expire early.
fn expiry(now: u64, ttl: Duration) -> u64 {
    now.saturating_add(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0))
}

fn as_u64(value: &AttributeValue) -> Option<u64> {
    match value {
        AttributeValue::N(number) => number.parse().ok(),
        _ => None,
    }
}

/// False once `expires_at` has passed (DynamoDB may not have deleted the item yet).
fn is_live(item: &HashMap<String, AttributeValue>, now: u64) -> bool {
    match item.get(EXPIRES_AT) {
        Some(AttributeValue::N(expires_at)) => expires_at.parse::<u64>().is_ok_and(|at| at > now),
        _ => true,
    }
}

fn decode_value(item: &HashMap<String, AttributeValue>) -> Result<Value, KvError> {
    match item.get(VALUE) {
        Some(AttributeValue::S(text)) => serde_json::from_str(text).map_err(KvError::failed),
        _ => Err(KvError::failed("stored item without a string value")),
    }
}

fn classify<E>(err: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>) -> KvError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err
        .raw_response()
        .map(|response| response.status().as_u16());
    let unavailable = match &err {
        SdkError::TimeoutError(_) => true,
        // Connection refused or reset, DNS failure, TLS handshake failure; but not a request
        // the client could not even build.
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        SdkError::ResponseError(_) => status.is_none_or(|status| status >= 500),
        SdkError::ServiceError(service) => {
            status.is_some_and(|status| status >= 500 || status == 429)
                || service
                    .err()
                    .code()
                    .is_some_and(|code| TRANSIENT_CODES.contains(&code))
        }
        _ => false,
    };
    if unavailable {
        KvError::Unavailable(Box::new(err))
    } else {
        KvError::Failed(Box::new(err))
    }
}
