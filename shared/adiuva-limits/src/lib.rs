//! Limits that must hold across every Lambda instance, kept in the shared short-lived store
//! (DynamoDB in production, memory in the local run):
//!
//! - [`Limits::check_rate`]: the reference's tier rate limits, 20 / 60 / 120 / 200 requests per
//!   user in a sliding 60-second window (two counters, see [`window`]);
//! - [`Limits::reserve`]: brute-force limits on password and token checks, per client address
//!   and per email (see [`Failures`]), and registrations per client address: each attempt
//!   takes a unit before it runs and gives it back when it did not count (see [`Reservation`]);
//! - [`Limits::acquire_chat`]: at most N chats in flight per user;
//! - [`Limits::claim`] / [`Limits::complete`]: `Idempotency-Key` records (see [`idempotency`]).
//!
//! When the store fails, limits fail open with a warning: an outage of the short-lived store
//! must not take the API down. Idempotency is the exception (it answers 503), because replaying
//! or repeating a request wrongly is worse than refusing it.

pub mod idempotency;
mod slots;
pub mod window;

use std::net::{IpAddr, Ipv6Addr};
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
/// Namespace of the registration counters.
const REGISTRATIONS: &str = "registrations";

/// The window of the registrations per address: an hour, so the setting reads "per hour".
pub const REGISTRATION_WINDOW: Duration = Duration::from_secs(3600);

/// `RATE_LIMIT_ENABLED` (default true; off for load tests and local experiments),
/// `CHAT_MAX_IN_FLIGHT` (2), `IDEMPOTENCY_TTL_SECONDS` (86400: how long an answer is replayed),
/// the brute-force limits `AUTH_FAILURE_WINDOW_SECONDS` (900), `AUTH_FAILURES_PER_EMAIL`
/// (10) and `AUTH_FAILURES_PER_ADDRESS` (30), and `AUTH_REGISTRATIONS_PER_ADDRESS` (10 an hour).
#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub rate_limit_enabled: bool,
    pub chat_max_in_flight: u32,
    pub idempotency_ttl: Duration,
    pub failures: Failures,
    /// Registration attempts per client address in [`REGISTRATION_WINDOW`], successful ones
    /// included: each costs a bcrypt hash, and each new account brings a fresh set of per-user
    /// limits (rate, chats, quotas), so one address must not mint them without bound. 10 an
    /// hour lets a household or a small office sign up together; a larger one signs up over a
    /// few hours. Attempts refused as invalid input do not count.
    pub registrations_per_address: u64,
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
/// accounts per window. Registrations are limited on their own (see
/// [`LimitSettings::registrations_per_address`]); a taken email is a failure here.
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
            registrations_per_address: source.number_in(
                "AUTH_REGISTRATIONS_PER_ADDRESS",
                10,
                1..=1_000_000,
            )?,
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
    /// A code of its own rather than `too_many_failures`: nothing failed, and a client (or an
    /// office's admin) must be able to tell "slow down signing people up" from "wrong
    /// passwords".
    #[error("too many registrations from this address, retry in {retry_after_secs} s")]
    TooManyRegistrations { retry_after_secs: u64 },
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
            Self::TooManyRegistrations { .. } => "too_many_registrations",
            Self::TooManyChats { .. } => "too_many_chats",
        }
    }

    fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs }
            | Self::TooManyFailures { retry_after_secs }
            | Self::TooManyRegistrations { retry_after_secs } => Some(*retry_after_secs),
            Self::TooManyChats { .. } => Some(1),
        }
    }
}

/// Whose attempts are counted, and against which limit.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// Failures of the client's address: the TCP peer, or API Gateway's `sourceIp` (see
    /// [`address_key`] for how addresses are grouped).
    Address(IpAddr),
    /// Failures on the account's email, as typed (it is normalized here).
    Email(&'a str),
    /// Registrations from the client's address, grouped as for [`Subject::Address`].
    Registration(IpAddr),
}

impl Subject<'_> {
    fn refusal(&self, retry_after_secs: u64) -> LimitError {
        match self {
            Self::Registration(_) => LimitError::TooManyRegistrations { retry_after_secs },
            Self::Address(_) | Self::Email(_) => LimitError::TooManyFailures { retry_after_secs },
        }
    }
}

/// How a client address is counted by the per-address limits: an IPv4 address alone; an IPv6
/// address by its /64 prefix, because one subscriber (a home, a phone, a server) is usually
/// handed a whole /64 and can use any of its 2^64 addresses, so counting each alone would let
/// one client multiply every per-address cap at will. An IPv4-mapped IPv6 address
/// (`::ffff:a.b.c.d`, what a dual-stack socket reports for an IPv4 peer) is that IPv4 address.
pub fn address_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u128::from(v6) & !u128::from(u64::MAX);
                format!("{}/64", Ipv6Addr::from(prefix))
            }
        },
    }
}

/// The units one attempt took from its subjects' windows. Keep it when the attempt counted (a
/// failure, a registration); [`Reservation::release`] gives the units back when it did not.
/// Dropping it keeps the units: an attempt cut short (a client that hung up during the bcrypt
/// check) counts, so cancelling cannot be used to guess for free.
#[derive(Debug)]
#[must_use = "a reservation is kept when dropped; release it when the attempt did not count"]
pub struct Reservation {
    kv: KvStore,
    /// Each window that gave a unit, and the index of the counter that was raised.
    taken: Vec<(Window, u64)>,
}

impl Reservation {
    /// Gives every unit back: the attempt did not count. A store failure is logged; the unit
    /// then stays counted until its window passes (failing towards the limit, not past it).
    pub async fn release(self) {
        for (window, index) in &self.taken {
            if let Err(err) = window.give_back(&self.kv, *index).await {
                tracing::warn!(error = %adiuva_error::cause_chain(&err), "could not give back a reserved attempt");
            }
        }
    }
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

    /// Takes one unit from each subject's window before an attempt runs: one conditional
    /// increment per subject ([`Window::take`]), so of concurrent attempts only as many as
    /// there is room for get through, whatever they then turn out to be. When any subject is
    /// at its cap, the units already taken from the others are given back and the answer is
    /// 429 with the longest wait of the refusing subjects. Store failures skip that subject
    /// (limits fail open).
    ///
    /// Near the cap, an attempt may be refused because of a unit that a concurrent attempt is
    /// about to give back: the limit errs towards refusing, never towards a guess too many.
    pub async fn reserve(&self, subjects: &[Subject<'_>]) -> Result<Reservation, LimitError> {
        let mut reservation = Reservation {
            kv: self.kv.clone(),
            taken: Vec::with_capacity(subjects.len()),
        };
        let mut refused: Option<LimitError> = None;
        for subject in subjects {
            let (window, cap) = self.window_of(subject);
            match window.take(&self.kv, cap).await {
                Ok(taken) if taken.allowed => reservation.taken.push((window, taken.index)),
                Ok(taken) => {
                    let longest = refused
                        .as_ref()
                        .and_then(LimitError::retry_after_secs)
                        .unwrap_or(0);
                    if taken.retry_after_secs >= longest {
                        refused = Some(subject.refusal(taken.retry_after_secs));
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %adiuva_error::cause_chain(&err), "attempt limit store failed; limit skipped")
                }
            }
        }
        if let Some(err) = refused {
            reservation.release().await;
            tracing::info!(code = err.code(), "attempt refused: {err}");
            return Err(err);
        }
        Ok(reservation)
    }

    fn window_of(&self, subject: &Subject<'_>) -> (Window, u64) {
        let failures = self.settings.failures;
        match subject {
            Subject::Address(address) => (
                Window::new(
                    FAILURES,
                    &format!("address:{}", address_key(*address)),
                    failures.window,
                ),
                failures.per_address,
            ),
            Subject::Registration(address) => (
                Window::new(
                    REGISTRATIONS,
                    &format!("address:{}", address_key(*address)),
                    REGISTRATION_WINDOW,
                ),
                self.settings.registrations_per_address,
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

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    fn limits(kv: KvStore, pairs: &[(&str, &str)]) -> Limits {
        let source = Source::from_pairs(pairs.iter().copied());
        Limits::new(kv, LimitSettings::from_source(&source).unwrap())
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_prefix() {
        let v6 = |text: &str| IpAddr::V6(text.parse::<Ipv6Addr>().unwrap());
        // Every address of one /64 is one client; the next /64 is another.
        assert_eq!(address_key(v6("2001:db8:1:2::1")), "2001:db8:1:2::/64");
        assert_eq!(
            address_key(v6("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            "2001:db8:1:2::/64"
        );
        assert_eq!(address_key(v6("2001:db8:1:3::1")), "2001:db8:1:3::/64");
        // IPv4 alone, also when a dual-stack socket reports it IPv4-mapped.
        let v4 = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
        assert_eq!(address_key(v4), "203.0.113.7");
        assert_eq!(address_key(v6("::ffff:203.0.113.7")), "203.0.113.7");
        assert_ne!(address_key(v6("::ffff:203.0.113.8")), address_key(v4));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_64_shares_the_per_address_cap() {
        let limits = limits(
            KvStore::Memory(adiuva_kv::MemoryStore::new()),
            &[("AUTH_REGISTRATIONS_PER_ADDRESS", "2")],
        );
        for host in ["2001:db8::1", "2001:db8::2"] {
            let address: IpAddr = host.parse().unwrap();
            let _kept = limits
                .reserve(&[Subject::Registration(address)])
                .await
                .unwrap();
        }
        let same_64: IpAddr = "2001:db8::ffff".parse().unwrap();
        let refused = limits
            .reserve(&[Subject::Registration(same_64)])
            .await
            .unwrap_err();
        assert!(matches!(refused, LimitError::TooManyRegistrations { .. }));
        assert_eq!(refused.code(), "too_many_registrations");
        let next_64: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        assert!(
            limits
                .reserve(&[Subject::Registration(next_64)])
                .await
                .is_ok()
        );
    }

    /// Twelve concurrent attempts against a cap of ten: exactly ten get a unit, whatever
    /// order the store sees them in; the two others are refused with a Retry-After.
    async fn concurrent_reservations_never_pass_the_cap(kv: KvStore) {
        let limits = limits(kv, &[("AUTH_FAILURES_PER_EMAIL", "10")]);
        let client: IpAddr = "192.0.2.1".parse().unwrap();
        let attempts: Vec<_> = (0..12)
            .map(|_| {
                let limits = limits.clone();
                tokio::spawn(async move {
                    limits
                        .reserve(&[Subject::Address(client), Subject::Email("a@example.com")])
                        .await
                })
            })
            .collect();
        let (mut kept, mut refused) = (Vec::new(), Vec::new());
        for attempt in attempts {
            match attempt.await.unwrap() {
                Ok(reservation) => kept.push(reservation),
                Err(err) => refused.push(err),
            }
        }
        assert_eq!(kept.len(), 10);
        assert_eq!(refused.len(), 2);
        for err in &refused {
            assert_eq!(err.code(), "too_many_failures");
            assert!(err.retry_after_secs().is_some_and(|secs| secs >= 1));
        }
        // The refused attempts gave back what they took from the address (cap 30): only the
        // ten kept attempts are counted there.
        let (window, _) = limits.window_of(&Subject::Address(client));
        let taken = window.take(&limits.kv, 11).await.unwrap();
        assert!(taken.allowed && taken.remaining == 0, "{taken:?}");
        // Releasing one (a success) makes room for exactly one more.
        kept.pop().unwrap().release().await;
        let subjects = [Subject::Email("A@Example.com ")];
        let _next = limits.reserve(&subjects).await.unwrap();
        assert!(limits.reserve(&subjects).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reservations_never_pass_the_cap_in_memory() {
        concurrent_reservations_never_pass_the_cap(KvStore::Memory(adiuva_kv::MemoryStore::new()))
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reservations_never_pass_the_cap_on_dynamodb() {
        concurrent_reservations_never_pass_the_cap(adiuva_kv::testing::dynamo_store(&[]).await)
            .await;
    }
}
