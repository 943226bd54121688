//! The orchestrator's [`Meter`] on the caller's AI budget ([`adiuva_budgets`]): each model call
//! reserves its estimate before it is made and is settled to the provider's reported usage,
//! or to the estimate when the provider reported none.

use adiuva_agents::{Meter, MeterError, MeterFuture, Reservation, Spent};
use adiuva_budgets::{Account, BudgetError, Budgets, Charge};
use adiuva_llm::Estimate;

/// The budget one chat request draws from.
#[derive(Debug, Clone)]
pub struct BudgetMeter {
    budgets: Budgets,
    account: Account,
}

impl BudgetMeter {
    pub fn new(budgets: Budgets, account: Account) -> Self {
        Self { budgets, account }
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
                Ok(counter) => Ok(Reservation {
                    counter,
                    model: model.to_owned(),
                    estimate,
                }),
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
            let charge = charge_of(reservation.estimate, spent);
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
        })
    }
}
