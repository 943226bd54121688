//! Admission: what every authenticated request and every chat WebSocket message goes through
//! before it does anything: the caller as they are now (token or stored session still valid,
//! live tier), then one unit of the tier's rate limit. The HTTP pipeline (`adiuva-pipeline`)
//! and the `chat-ws` Lambda both call [`admit`]; neither has a copy of its own.

use std::time::{SystemTime, UNIX_EPOCH};

use adiuva_access::Caller;
use adiuva_limits::{LimitError, Limits, RateDecision};

use crate::{Accounts, AuthError};

/// What a request or message presents.
#[derive(Debug, Clone, Copy)]
pub enum Credential<'a> {
    /// An access token (`Authorization: Bearer`, or `?token=` on a WebSocket upgrade).
    Token(&'a str),
    /// The claims of a token verified earlier (on a WebSocket's `$connect`), checked again
    /// against the clock, the account and the session.
    Verified {
        user_id: &'a str,
        token_version: i64,
        session_id: Option<&'a str>,
        /// Seconds since the epoch.
        expires_at: u64,
    },
}

/// An admitted caller and, when rate limits are on, where they stand in their window.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub caller: Caller,
    pub rate: Option<RateDecision>,
}

/// Why a caller was not admitted.
#[derive(Debug)]
pub enum Refusal {
    /// No valid credential: 401.
    Auth(AuthError),
    /// Over the tier's rate limit: 429; the caller (for the policy's name) and the decision.
    RateLimited {
        caller: Box<Caller>,
        decision: RateDecision,
    },
}

impl Refusal {
    /// The refusal as a domain error (a `RateLimited` with its `Retry-After`).
    pub fn error(&self) -> Result<&AuthError, LimitError> {
        match self {
            Self::Auth(err) => Ok(err),
            Self::RateLimited { decision, .. } => Err(LimitError::RateLimited {
                retry_after_secs: decision.retry_after_secs,
            }),
        }
    }
}

/// The caller behind `credential`, then one unit of their tier's rate limit.
pub async fn admit(
    accounts: &Accounts,
    limits: &Limits,
    credential: Credential<'_>,
) -> Result<Admitted, Refusal> {
    let caller = match credential {
        Credential::Token(token) => accounts.authenticate(token).await,
        Credential::Verified {
            user_id,
            token_version,
            session_id,
            expires_at,
        } => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs());
            if expires_at <= now {
                tracing::info!("refused: the token expired");
                Err(AuthError::InvalidToken)
            } else {
                accounts.caller(user_id, token_version, session_id).await
            }
        }
    }
    .map_err(Refusal::Auth)?;
    tracing::Span::current().record("user_id", caller.id.as_str());
    let rate = limits.check_rate(&caller.id, caller.tier).await;
    match rate {
        Some(decision) if !decision.allowed => {
            tracing::info!(limit = decision.limit, "rate limit reached");
            Err(Refusal::RateLimited {
                caller: Box::new(caller),
                decision,
            })
        }
        rate => Ok(Admitted { caller, rate }),
    }
}
