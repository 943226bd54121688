//! The orchestrator's [`Meter`] on the caller's AI budget ([`adiuva_budgets`]): each model call
//! reserves its estimate before it is made and is settled to the provider's reported usage,
//! or to the estimate when the provider reported none. A chat cancelled mid-call settles its
//! open reservations for the text streamed since each was made ([`BudgetMeter::abandon`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use adiuva_agents::{Meter, MeterError, MeterFuture, Reservation, Spent};
use adiuva_budgets::{Account, BudgetError, Budgets, Charge};
use adiuva_llm::{BYTES_PER_TOKEN, Estimate};

/// The budget one chat request draws from.
#[derive(Debug, Clone)]
pub struct BudgetMeter {
    budgets: Budgets,
    account: Account,
    /// Bytes of text streamed to the client so far.
    streamed: Arc<AtomicU64>,
    /// Reservations not settled yet, each with `streamed` when it was made.
    open: Arc<Mutex<Vec<(Reservation, u64)>>>,
}

impl BudgetMeter {
    pub fn new(budgets: Budgets, account: Account) -> Self {
        Self {
            budgets,
            account,
            streamed: Arc::default(),
            open: Arc::default(),
        }
    }

    /// Counts `bytes` of text the model streamed.
    pub fn generated(&self, bytes: usize) {
        self.streamed.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Vec<(Reservation, u64)>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The chat was cancelled and its calls dropped: settles every open reservation to its
    /// prompt estimate plus the text streamed since it was made (at [`BYTES_PER_TOKEN`],
    /// at most its `max_tokens`), marked estimated. Not left reserved, not free.
    pub async fn abandon(&self) {
        let open = std::mem::take(&mut *self.open());
        let streamed = self.streamed.load(Ordering::Relaxed);
        for (reservation, at) in open {
            let bytes = streamed.saturating_sub(at);
            let completion = bytes.div_ceil(BYTES_PER_TOKEN as u64);
            let charge = Charge {
                prompt_tokens: u64::from(reservation.estimate.prompt_tokens),
                completion_tokens: completion.min(u64::from(reservation.estimate.max_tokens)),
                estimated: true,
            };
            self.settle_charge(&reservation, charge).await;
        }
    }

    async fn settle_charge(&self, reservation: &Reservation, charge: Charge) {
        if let Err(err) = self
            .budgets
            .settle(
                &reservation.counter,
                &reservation.model,
                reservation.estimate.total(),
                charge,
            )
            .await
        {
            // The reservation stays charged: the account loses at most its estimate.
            tracing::warn!(counter = reservation.counter, error = %adiuva_error::cause_chain(&err), "could not settle an AI budget reservation; it stays charged");
        }
    }
}

/// What a settled call is charged.
pub fn charge_of(estimate: Estimate, spent: Spent) -> Charge {
    match spent {
        Spent::Reported(usage) => Charge {
            prompt_tokens: u64::from(usage.prompt_tokens),
            completion_tokens: u64::from(usage.completion_tokens),
            estimated: false,
        },
        Spent::Unreported => Charge {
            prompt_tokens: u64::from(estimate.prompt_tokens),
            completion_tokens: u64::from(estimate.max_tokens),
            estimated: true,
        },
        Spent::Nothing => Charge::default(),
    }
}

impl Meter for BudgetMeter {
    fn reserve<'a>(
        &'a self,
        model: &'a str,
        estimate: Estimate,
    ) -> MeterFuture<'a, Result<Reservation, MeterError>> {
        Box::pin(async move {
            match self.budgets.reserve(&self.account, estimate.total()).await {
                Ok(counter) => {
                    let reservation = Reservation {
                        counter,
                        model: model.to_owned(),
                        estimate,
                    };
                    let at = self.streamed.load(Ordering::Relaxed);
                    self.open().push((reservation.clone(), at));
                    Ok(reservation)
                }
                Err(BudgetError::Exhausted {
                    limit_tokens,
                    resets_at,
                }) => Err(MeterError::Exhausted {
                    limit_tokens,
                    resets_at,
                }),
                Err(err) => Err(MeterError::Unavailable(Box::new(err))),
            }
        })
    }

    fn settle(&self, reservation: Reservation, spent: Spent) -> MeterFuture<'_, ()> {
        Box::pin(async move {
            {
                let mut open = self.open();
                if let Some(index) = open.iter().position(|(held, _)| *held == reservation) {
                    open.swap_remove(index);
                }
            }
            let charge = charge_of(reservation.estimate, spent);
            self.settle_charge(&reservation, charge).await;
        })
    }
}
