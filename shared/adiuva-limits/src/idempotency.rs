//! `Idempotency-Key` records, with the semantics of the IETF httpapi idempotency-key draft and
//! Stripe's API: a key is scoped to its user and route; the first request with it is processed
//! and its answer stored for 24 hours (`IDEMPOTENCY_TTL_SECONDS`); the same key with the same request replays that answer;
//! with another request it is 422; while the first is still being processed, 409. An answer
//! with a server error (5xx) is not stored, so the request can be retried with the same key.
//!
//! The claim is one conditional put in the shared store, so of two concurrent requests with
//! one key exactly one is processed.

use std::time::Duration;

use adiuva_checksum::{Sha256, sha256_hex};
use adiuva_error::{DomainError, ErrorKind};
use adiuva_kv::KvError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::Limits;

const NAMESPACE: &str = "idempotency";
/// How long a claim blocks its key if the process handling it dies before answering.
pub const IN_FLIGHT: Duration = Duration::from_secs(120);
/// Longest accepted key (the draft suggests UUIDs; Stripe allows 255 characters).
pub const MAX_KEY_LEN: usize = 255;

/// A processed answer, as stored and replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The right to process a request with a key, and to store its answer.
#[derive(Debug)]
pub struct Ticket {
    key: String,
    fingerprint: String,
}

/// What to do with a request that carries a key.
#[derive(Debug)]
pub enum Claim {
    /// First of its key: process it, then [`Limits::complete`] or [`Limits::abandon`].
    Fresh(Ticket),
    /// Answered before: send this again.
    Replay(StoredResponse),
    /// The key was used with another request: 422.
    Mismatch,
    /// The first request with the key is still being processed: 409.
    InFlight,
}

/// Why a key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("the Idempotency-Key header must be 1 to 255 visible ASCII characters")]
    InvalidKey,
    #[error("this Idempotency-Key was used with a different request")]
    Mismatch,
    #[error("a request with this Idempotency-Key is still being processed; retry later")]
    InFlight,
    #[error("idempotency store failed")]
    Store(#[from] KvError),
}

impl DomainError for IdempotencyError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidKey => ErrorKind::BadRequest,
            Self::Mismatch => ErrorKind::Invalid,
            Self::InFlight => ErrorKind::Conflict,
            Self::Store(err) => err.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InvalidKey => "invalid_idempotency_key",
            Self::Mismatch => "idempotency_key_reused",
            Self::InFlight => "idempotency_key_in_use",
            Self::Store(err) => err.code(),
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        matches!(self, Self::InFlight).then_some(1)
    }
}

/// Checks the header value: visible ASCII, 1 to 255 characters.
pub fn validate_key(key: &str) -> Result<(), IdempotencyError> {
    if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(IdempotencyError::InvalidKey);
    }
    Ok(())
}

/// The fingerprint of a request: what must be equal for a replay.
pub fn fingerprint(method: &str, path_and_query: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update(&[0]);
    hasher.update(path_and_query.as_bytes());
    hasher.update(&[0]);
    hasher.update(body);
    hex::encode(hasher.finish())
}

impl Limits {
    /// Claims `key` of `user_id` on `route` (e.g. `POST /api/v1/storage/records`) for a request
    /// with `fingerprint`.
    pub async fn claim(
        &self,
        user_id: &str,
        route: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Claim, IdempotencyError> {
        validate_key(key)?;
        // Hashed: the store key has a fixed length whatever the header, and holds no ids.
        let scoped = sha256_hex(format!("{user_id}\n{route}\n{key}").as_bytes());
        let marker = json!({"state": "in_flight", "fingerprint": fingerprint});
        if self
            .kv()
            .put_if_absent(NAMESPACE, &scoped, &marker, Some(IN_FLIGHT))
            .await?
        {
            return Ok(Claim::Fresh(Ticket {
                key: scoped,
                fingerprint: fingerprint.to_owned(),
            }));
        }
        let Some(record) = self.kv().get(NAMESPACE, &scoped).await? else {
            // Expired between the two calls: the caller may simply retry.
            return Ok(Claim::InFlight);
        };
        if record["fingerprint"].as_str() != Some(fingerprint) {
            return Ok(Claim::Mismatch);
        }
        if record["state"] == "done" {
            return Ok(Claim::Replay(decode(&record)?));
        }
        Ok(Claim::InFlight)
    }

    /// Stores the answer of a claimed request for the configured time; a 5xx is not stored and
    /// frees the key instead.
    pub async fn complete(&self, ticket: Ticket, response: &StoredResponse) {
        if response.status >= 500 {
            return self.abandon(ticket).await;
        }
        let record = json!({
            "state": "done",
            "fingerprint": ticket.fingerprint,
            "status": response.status,
            "headers": response.headers,
            "body": STANDARD.encode(&response.body),
        });
        if let Err(err) = self
            .kv()
            .put(
                NAMESPACE,
                &ticket.key,
                &record,
                Some(self.settings().idempotency_ttl),
            )
            .await
        {
            // The request was processed; only its replay is lost. A retry with the key is 409
            // until the claim expires, which is safe.
            tracing::warn!(error = %adiuva_error::cause_chain(&err), "could not store an idempotent answer");
        }
    }

    /// Frees a claimed key without storing an answer.
    pub async fn abandon(&self, ticket: Ticket) {
        if let Err(err) = self.kv().delete(NAMESPACE, &ticket.key).await {
            tracing::warn!(error = %adiuva_error::cause_chain(&err), "could not free an idempotency key; it expires on its own");
        }
    }
}

fn decode(record: &Value) -> Result<StoredResponse, KvError> {
    let broken = || KvError::failed("stored idempotent answer is malformed");
    let status = record["status"]
        .as_u64()
        .and_then(|status| u16::try_from(status).ok())
        .ok_or_else(broken)?;
    let headers = record["headers"]
        .as_array()
        .ok_or_else(broken)?
        .iter()
        .map(|pair| match (pair[0].as_str(), pair[1].as_str()) {
            (Some(name), Some(value)) => Ok((name.to_owned(), value.to_owned())),
            _ => Err(broken()),
        })
        .collect::<Result<_, _>>()?;
    let body = STANDARD
        .decode(record["body"].as_str().ok_or_else(broken)?)
        .map_err(|_| broken())?;
    Ok(StoredResponse {
        status,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LimitSettings;
    use adiuva_kv::KvStore;

    fn limits() -> Limits {
        Limits::new(
            KvStore::Memory(adiuva_kv::MemoryStore::new()),
            LimitSettings::from_source(&adiuva_config::Source::default()).unwrap(),
        )
    }

    const ROUTE: &str = "POST /api/v1/storage/records";

    #[tokio::test]
    async fn replay_mismatch_in_flight_and_scoping() {
        let limits = limits();
        let print = fingerprint("POST", "/api/v1/storage/records", b"{}");
        let Claim::Fresh(ticket) = limits.claim("u1", ROUTE, "k1", &print).await.unwrap() else {
            panic!("the first claim is fresh");
        };
        assert!(matches!(
            limits.claim("u1", ROUTE, "k1", &print).await.unwrap(),
            Claim::InFlight
        ));
        let other = fingerprint("POST", "/api/v1/storage/records", b"{\"x\":1}");
        assert!(matches!(
            limits.claim("u1", ROUTE, "k1", &other).await.unwrap(),
            Claim::Mismatch
        ));
        // Another user, or another route, has keys of its own.
        assert!(matches!(
            limits.claim("u2", ROUTE, "k1", &print).await.unwrap(),
            Claim::Fresh(_)
        ));
        assert!(matches!(
            limits
                .claim("u1", "POST /api/v1/storage/uploads", "k1", &print)
                .await
                .unwrap(),
            Claim::Fresh(_)
        ));
        let answer = StoredResponse {
            status: 201,
            headers: vec![("content-type".into(), "application/json".into())],
            body: b"{\"id\":\"r1\"}".to_vec(),
        };
        limits.complete(ticket, &answer).await;
        match limits.claim("u1", ROUTE, "k1", &print).await.unwrap() {
            Claim::Replay(replayed) => assert_eq!(replayed, answer),
            other => panic!("expected a replay, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn server_errors_are_not_stored() {
        let limits = limits();
        let print = fingerprint("POST", "/p", b"");
        let Claim::Fresh(ticket) = limits.claim("u1", ROUTE, "k", &print).await.unwrap() else {
            panic!("fresh");
        };
        let failure = StoredResponse {
            status: 503,
            headers: Vec::new(),
            body: Vec::new(),
        };
        limits.complete(ticket, &failure).await;
        assert!(matches!(
            limits.claim("u1", ROUTE, "k", &print).await.unwrap(),
            Claim::Fresh(_)
        ));
    }

    #[test]
    fn keys_are_short_visible_ascii() {
        assert!(validate_key("3f2c-AB_9").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("with space").is_err());
        assert!(validate_key(&"k".repeat(256)).is_err());
    }
}
