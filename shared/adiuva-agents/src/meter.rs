//! What the orchestrator charges its model calls to: a [`Meter`] (the caller's AI budget).
//!
//! Every model call of a chat (the router, each agent's tool-loop calls, the synthesis) goes
//! through `Orchestrator::call`, and that is the one place that meters: before the call it
//! reserves the call's [`Estimate`], and a refusal ends the chat before the request leaves;
//! after it, it settles the reservation to what the call [`Spent`]. A reservation that is never
//! settled (the process died, the client left and the future was dropped, the chat timed out)
//! stays charged: the meter counts it as used, never as free tokens.

use std::future::Future;
use std::pin::Pin;

use adiuva_llm::{Estimate, Usage};

/// A boxed future, so that the orchestrator can hold any meter as `&dyn Meter`.
pub type MeterFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A reservation made for one call, handed back to [`Meter::settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Which counter holds the reservation (the meter's own key: the budget row of the month
    /// the reservation was made in, so that a call across midnight settles where it reserved).
    pub counter: String,
    /// The configured model name (`gpt-4o`), for the per-model counts.
    pub model: String,
    pub estimate: Estimate,
}

/// What a call cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// The provider's reported usage.
    Reported(Usage),
    /// The call may have used tokens but nothing was reported (no `usage`, a stream that broke
    /// or ended without its usage chunk, a timeout): charged the estimate, marked estimated.
    Unreported,
    /// The provider refused the request with an error status: nothing was generated.
    Nothing,
}

/// Why a call may not be made.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// The budget cannot hold the call's estimate: 402 `ai_budget_exhausted`.
    #[error(
        "the monthly AI token budget is spent (limit {limit_tokens}); it resets at {resets_at} (ms since the epoch)"
    )]
    Exhausted {
        limit_tokens: u64,
        /// The first instant of next month, UTC (ms).
        resets_at: i64,
    },
    /// The budget could not be checked; the call is not made (the budget fails closed: it is
    /// the operator's money).
    #[error("the AI budget could not be checked")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// The AI budget of one chat request.
pub trait Meter: Send + Sync {
    /// Reserves `estimate` for a call of `model`, or refuses it.
    fn reserve<'a>(
        &'a self,
        model: &'a str,
        estimate: Estimate,
    ) -> MeterFuture<'a, Result<Reservation, MeterError>>;

    /// Settles `reservation` to what the call spent. Failures are the meter's to log: the
    /// reservation then stays charged.
    fn settle(&self, reservation: Reservation, spent: Spent) -> MeterFuture<'_, ()>;
}
