//! The janitor, run on a schedule (EventBridge, see `infra/`): deletes expired pending uploads
//! and blobs that no row refers to once they are older than the grace period, and finishes the
//! purge of deleted accounts whose blobs or vectors could not be removed at once.

use adiuva_storage::{Storage, SweepReport};
use adiuva_vectors::VectorStore;
use serde::Serialize;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct JanitorReport {
    #[serde(flatten)]
    pub sweep: SweepReport,
    pub accounts_purged: u64,
    pub accounts_pending: u64,
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The Lambda handler: any event (the schedule's) starts one run.
pub async fn handle(
    event: serde_json::Value,
    storage: &Storage,
    vectors: &VectorStore,
) -> Result<JanitorReport, Error> {
    tracing::info!(
        source = event["source"].as_str().unwrap_or("unknown"),
        "janitor invoked"
    );
    run(storage, vectors).await
}

/// One janitor run. Idempotent; a failure leaves everything for the next run.
pub async fn run(storage: &Storage, vectors: &VectorStore) -> Result<JanitorReport, Error> {
    let mut accounts_purged = 0;
    let mut accounts_pending = 0;
    for user_id in storage.unpurged_accounts().await? {
        match account::purge_account(storage, vectors, &user_id).await {
            Ok(_) => accounts_purged += 1,
            Err(err) => {
                accounts_pending += 1;
                tracing::warn!(user_id, error = %err, "account purge still incomplete");
            }
        }
    }
    let sweep = storage.sweep().await?;
    let report = JanitorReport {
        sweep,
        accounts_purged,
        accounts_pending,
    };
    tracing::info!(?report, "janitor run finished");
    Ok(report)
}
