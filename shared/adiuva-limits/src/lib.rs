//! Limits that must hold across every Lambda instance, kept in the shared short-lived store
//! (DynamoDB in production, memory in the local run):
//!
//! - [`Limits::check_rate`]: the reference's tier rate limits, 20 / 60 / 120 / 200 requests per
//!   user in a sliding 60-second window (two counters, see [`window`]);
//! - [`Limits::check_failures`] / [`Limits::record_failure`]: brute-force limits on password
//!   and token checks, per client address and per email (see [`Failures`]);
//! - [`Limits::acquire_chat`]: at most N chats in flight per user;
//! - [`Limits::claim`] / [`Limits::complete`]: `Idempotency-Key` records (see [`idempotency`]).
//!
//! When the store fails, limits fail open with a warning: an outage of the short-lived store
//! must not take the API down. Idempotency is the exception (it answers 503), because replaying
//! or repeating a request wrongly is worse than refusing it.

pub mod idempotency;
mod slots;
pub mod window;

use std::net::IpAddr;
use std::time::Duration;

use adiuva_access::Tier;
use adiuva_config::{Component, ConfigError, Context, Source};
use adiuva_error::{DomainError, ErrorKind};
use adiuva_kv::KvStore;

pub use idempotency::{Claim, StoredResponse, Ticket};
pub use slots::ChatSlot;
pub use window::Window;

/// Namespace of the rate-limit counters.
const RATE: &str = "rate";
/// Namespace of the failure counters.
const FAILURES: &str = "failures";

/// `RATE_LIMIT_ENABLED` (default true; off for load tests and local experiments),
/// `CHAT_MAX_IN_FLIGHT` (2), `IDEMPOTENCY_TTL_SECONDS` (86400: how long an answer is replayed),
/// and the brute-force limits `AUTH_FAILURE_WINDOW_SECONDS` (900), `AUTH_FAILURES_PER_EMAIL`
/// (10) and `AUTH_FAILURES_PER_ADDRESS` (30).
#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub rate_limit_enabled: bool,
    pub chat_max_in_flight: u32,
    pub idempotency_ttl: Duration,
    pub failures: Failures,
}

/// The brute-force limits: failed password or token checks counted in a sliding window per
/// email (from any address) and per client address (on any email).
///
/// Why these numbers: 10 failures per email per 15 minutes stops online guessing (about 1,000
/// guesses a day per account) while a user who mistypes has room. The same cap is what an
/// attacker can use to lock a victim out, so the lock is short: it lifts as soon as the
/// sliding estimate drops below the cap, at most about 17 minutes after the burst began, and
/// it locks only that email's password checks (sessions with valid tokens keep working). The
/// per-address cap (30) is higher, because an office or a carrier NAT shares one address, and
/// it is what makes keeping a victim locked expensive: each address may lock at most three
/// accounts per window. Successful registrations are not counted, so an office can sign up
/// any number of people.
#[derive(Debug, Clone, Copy)]
pub struct Failures {
    pub window: Duration,
    pub per_email: u64,
    pub per_address: u64,
}

impl LimitSettings {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        Ok(Self {
            rate_limit_enabled: source.flag("RATE_LIMIT_ENABLED", true)?,
            chat_max_in_flight: source.number_in("CHAT_MAX_IN_FLIGHT", 2, 1..=100)?,
            idempotency_ttl: Duration::from_secs(source.number_in(
                "IDEMPOTENCY_TTL_SECONDS",
                24 * 60 * 60,
                1..=7 * 24 * 60 * 60,
            )?),
            failures: Failures {
                window: Duration::from_secs(source.number_in(
                    "AUTH_FAILURE_WINDOW_SECONDS",
                    900,
                    1..=86_400,
                )?),
                per_email: source.number_in("AUTH_FAILURES_PER_EMAIL", 10, 1..=10_000)?,
                per_address: source.number_in("AUTH_FAILURES_PER_ADDRESS", 30, 1..=100_000)?,
            },
        })
    }
}

/// The limits service. Cheap to clone; built once per process.
#[derive(Debug, Clone)]
pub struct Limits {
    kv: KvStore,
    settings: LimitSettings,
}

impl Component for Limits {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        Ok(Self::new(
            context.get()?,
            LimitSettings::from_source(context.source())?,
        ))
    }
}

/// The tier's allowance and what is left of it, for the `RateLimit` headers and a 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    pub allowed: bool,
    /// Requests per window of the caller's tier.
    pub limit: u64,
    /// Requests left now.
    pub remaining: u64,
    /// Seconds until the current window ends.
    pub reset_secs: u64,
    /// When refused: whole seconds until a request would pass.
    pub retry_after_secs: u64,
}

/// The window of the tier rate limits.
pub const RATE_WINDOW: Duration = Duration::from_secs(60);

/// 429: too many requests or failures.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum LimitError {
    #[error("too many requests, retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("too many failed attempts, retry in {retry_after_secs} s")]
    TooManyFailures { retry_after_secs: u64 },
    #[error("{max} chats are already in progress for this account; wait for one to finish")]
    TooManyChats { max: u32 },
}

impl DomainError for LimitError {
    fn kind(&self) -> ErrorKind {
        ErrorKind::RateLimited
    }

    fn code(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            Self::TooManyFailures { .. } => "too_many_failures",
            Self::TooManyChats { .. } => "too_many_chats",
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } | Self::TooManyFailures { retry_after_secs } => {
                Some(*retry_after_secs)
            }
            Self::TooManyChats { .. } => Some(1),
        }
    }
}

/// Whose failures are counted.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// The client's address: the TCP peer, or API Gateway's `sourceIp`.
    Address(IpAddr),
    /// The account's email, as typed (it is normalized here).
    Email(&'a str),
}

impl Limits {
    pub fn new(kv: KvStore, settings: LimitSettings) -> Self {
        Self { kv, settings }
    }

    pub fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    /// Counts one request of `user_id` against their tier's limit. `None` when rate limiting
    /// is off, or when the store failed (logged): the request goes through.
    pub async fn check_rate(&self, user_id: &str, tier: Tier) -> Option<RateDecision> {
        if !self.settings.rate_limit_enabled {
            return None;
        }
        let limit = u64::from(tier.limits().requests_per_minute);
        let window = Window::new(RATE, user_id, RATE_WINDOW);
        match window.take(&self.kv, limit).await {
            Ok(taken) => Some(RateDecision {
                allowed: taken.allowed,
                limit,
                remaining: taken.remaining,
                reset_secs: taken.reset_secs,
                retry_after_secs: taken.retry_after_secs,
            }),
            Err(err) => {
                tracing::warn!(error = %adiuva_error::cause_chain(&err), "rate limit store failed; request let through");
                None
            }
        }
    }

    /// 429 when any subject is at its cap of failures. Store failures let the check pass.
    pub async fn check_failures(&self, subjects: &[Subject<'_>]) -> Result<(), LimitError> {
        let mut retry_after = 0;
        for subject in subjects {
            let (window, cap) = self.failure_window(subject);
            match window.estimate(&self.kv).await {
                Ok(estimate) => {
                    if let Some(secs) = estimate.retry_after(cap) {
                        retry_after = retry_after.max(secs);
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %adiuva_error::cause_chain(&err), "failure limit store failed; check skipped")
                }
            }
        }
        if retry_after > 0 {
            tracing::info!(retry_after, "attempt refused: too many failures");
            return Err(LimitError::TooManyFailures {
                retry_after_secs: retry_after,
            });
        }
        Ok(())
    }

    /// Counts one failure against each subject.
    pub async fn record_failure(&self, subjects: &[Subject<'_>]) {
        for subject in subjects {
            let (window, _) = self.failure_window(subject);
            if let Err(err) = window.add(&self.kv).await {
                tracing::warn!(error = %adiuva_error::cause_chain(&err), "could not count a failed attempt");
            }
        }
    }

    fn failure_window(&self, subject: &Subject<'_>) -> (Window, u64) {
        let failures = self.settings.failures;
        match subject {
            Subject::Address(address) => (
                Window::new(FAILURES, &format!("address:{address}"), failures.window),
                failures.per_address,
            ),
            // Hashed: the store holds no email addresses.
            Subject::Email(email) => {
                let digest = adiuva_checksum::sha256(email.trim().to_lowercase().as_bytes());
                (
                    Window::new(
                        FAILURES,
                        &format!("email:{}", hex::encode(digest)),
                        failures.window,
                    ),
                    failures.per_email,
                )
            }
        }
    }

    /// One of the user's chat slots, held until the slot is released or dropped (or, if the
    /// process dies, until `ttl` passes). 429 `too_many_chats` when all are taken. Store
    /// failures let the chat through.
    pub async fn acquire_chat(&self, user_id: &str, ttl: Duration) -> Result<ChatSlot, LimitError> {
        slots::acquire(&self.kv, user_id, self.settings.chat_max_in_flight, ttl).await
    }

    pub(crate) fn kv(&self) -> &KvStore {
        &self.kv
    }
}
