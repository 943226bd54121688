//! The janitor, run on a schedule (EventBridge, see `infra/`): deletes expired pending uploads
//! and blobs that no row refers to once they are older than the grace period, and finishes the
//! purge of deleted accounts whose blobs or vectors could not be removed at once; and settles
//! the marketplace's transfers and reversals that are recorded as owed but not made at Stripe
//! yet (the outbox of `adiuva_marketplace::revenue`).

use adiuva_account::Erasure;
use adiuva_config::{ConfigError, Context};
use adiuva_marketplace::Purchases;
use adiuva_storage::{Storage, SweepReport};
use aws_lambda_events::cloudwatch_events::CloudWatchEvent;
use serde::Serialize;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct JanitorReport {
    #[serde(flatten)]
    pub sweep: SweepReport,
    pub accounts_purged: u64,
    pub accounts_pending: u64,
    pub transfers_settled: u64,
    pub transfers_pending: u64,
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The janitor function: built once per process from the context, as every function is.
#[derive(Debug, Clone)]
pub struct Janitor {
    storage: Storage,
    erasure: Erasure,
    purchases: Purchases,
}

impl Janitor {
    pub fn new(context: &Context) -> Result<Self, ConfigError> {
        Ok(Self {
            storage: context.get()?,
            erasure: context.get()?,
            purchases: context.get()?,
        })
    }

    /// The Lambda handler: the schedule's event starts one run.
    pub async fn handle(&self, event: CloudWatchEvent) -> Result<JanitorReport, Error> {
        tracing::info!(
            source = event.source.as_deref().unwrap_or("unknown"),
            "janitor invoked"
        );
        self.run().await
    }

    /// One janitor run. Idempotent; a failure leaves everything for the next run.
    pub async fn run(&self) -> Result<JanitorReport, Error> {
        let purges = self.erasure.finish_pending().await?;
        let sweep = self.storage.sweep().await?;
        let (transfers_settled, transfers_pending) = self.purchases.settle_pending().await?;
        let report = JanitorReport {
            sweep,
            accounts_purged: purges.purged,
            accounts_pending: purges.pending,
            transfers_settled,
            transfers_pending,
        };
        tracing::info!(?report, "janitor run finished");
        Ok(report)
    }
}
