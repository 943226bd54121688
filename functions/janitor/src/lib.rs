//! The janitor function: the scheduled maintenance jobs, each started by an EventBridge
//! schedule of its own (see `infra/`) and runnable locally as `adiuva-local job <name>`:
//!
//! - `janitor` (hourly): deletes expired pending uploads and blobs that no row refers to once
//!   they are older than the grace period, removes sync tombstones past the retention,
//!   finishes the purge of deleted accounts whose blobs or vectors could not be removed at
//!   once, and settles the marketplace's transfers and reversals that are recorded as owed but
//!   not made at Stripe yet (the outbox of `adiuva_marketplace::revenue`);
//! - `purge-sessions` (daily): refresh-token families that can no longer be exchanged
//!   (`adiuva_sessions`);
//! - `purge-tombstones` (daily): sync tombstones past `TOMBSTONE_RETENTION_DAYS`, the same
//!   function the janitor's sweep calls;
//! - `reconcile-billing` (every 6 hours): live subscriptions read again from Stripe, drift
//!   corrected (`adiuva_billing::Billing::reconcile`; nothing in stub mode);
//! - `purge-ai-budgets` (monthly): AI budget counters of months past
//!   `AI_BUDGET_RETENTION_MONTHS` (`adiuva_budgets::Budgets::purge_expired`).
//!
//! Every job is idempotent and safe next to traffic and next to another run, so EventBridge's
//! and Lambda's retries are harmless. Each answers a [`JobReport`], whose JSON is one line
//! `{"job":"<name>", ...counts}`.

use adiuva_account::Erasure;
use adiuva_billing::{Billing, ReconcileReport};
use adiuva_budgets::Budgets;
use adiuva_config::{ConfigError, Context};
use adiuva_marketplace::Purchases;
use adiuva_sessions::Sessions;
use adiuva_storage::{Storage, SweepReport};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JanitorReport {
    #[serde(flatten)]
    pub sweep: SweepReport,
    pub accounts_purged: u64,
    pub accounts_pending: u64,
    pub transfers_settled: u64,
    pub transfers_pending: u64,
}

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// The scheduled jobs, by the name their schedule passes (`{"job": "<name>"}`) and
/// `adiuva-local job <name>` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Janitor,
    PurgeSessions,
    PurgeTombstones,
    ReconcileBilling,
    PurgeAiBudgets,
}

impl Job {
    pub const ALL: [Job; 5] = [
        Job::Janitor,
        Job::PurgeSessions,
        Job::PurgeTombstones,
        Job::ReconcileBilling,
        Job::PurgeAiBudgets,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::Janitor => "janitor",
            Job::PurgeSessions => "purge-sessions",
            Job::PurgeTombstones => "purge-tombstones",
            Job::ReconcileBilling => "reconcile-billing",
            Job::PurgeAiBudgets => "purge-ai-budgets",
        }
    }

    pub fn parse(name: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|job| job.name() == name)
    }

    /// The job an invocation asks for: `{"job": "<name>"}` (a schedule's constant input), or
    /// the same in an EventBridge event's `detail`; an event naming no job (a plain "Scheduled
    /// Event", `events/janitor/schedule.json`) runs the janitor. A name we do not know is an
    /// error, not a janitor run: a typo in the template should fail loudly.
    pub fn of_event(event: &serde_json::Value) -> Result<Job, Error> {
        let name = event
            .get("job")
            .or_else(|| event.get("detail").and_then(|detail| detail.get("job")));
        match name {
            None => Ok(Job::Janitor),
            Some(name) => name.as_str().and_then(Job::parse).ok_or_else(|| {
                format!("unknown job {name}; expected one of {}", Job::names()).into()
            }),
        }
    }

    /// The job names, for messages.
    pub fn names() -> String {
        Job::ALL.map(Job::name).join(", ")
    }
}

/// What a job did: serialized, `{"job":"<name>", ...counts}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "job", rename_all = "kebab-case")]
pub enum JobReport {
    Janitor(JanitorReport),
    PurgeSessions(adiuva_sessions::Purged),
    PurgeTombstones { deleted: u64 },
    ReconcileBilling(ReconcileReport),
    PurgeAiBudgets(adiuva_budgets::Purged),
}

impl JobReport {
    /// The report as one line of JSON (what `adiuva-local job` prints last).
    pub fn summary_line(&self) -> String {
        serde_json::to_string(self).expect("a job report serializes")
    }
}

/// The janitor function: built once per process from the context, as every function is.
#[derive(Debug, Clone)]
pub struct Janitor {
    storage: Storage,
    erasure: Erasure,
    purchases: Purchases,
    billing: Billing,
    sessions: Sessions,
    budgets: Budgets,
}

impl Janitor {
    pub fn new(context: &Context) -> Result<Self, ConfigError> {
        Ok(Self {
            storage: context.get()?,
            erasure: context.get()?,
            purchases: context.get()?,
            billing: context.get()?,
            sessions: context.get()?,
            budgets: context.get()?,
        })
    }

    /// The Lambda handler: runs the job the event names (see [`Job::of_event`]).
    pub async fn handle(&self, event: serde_json::Value) -> Result<JobReport, Error> {
        let job = Job::of_event(&event)?;
        tracing::info!(
            job = job.name(),
            source = event
                .get("source")
                .and_then(|s| s.as_str())
                .unwrap_or("unknown"),
            "job invoked"
        );
        self.run_job(job).await
    }

    /// Runs one job; what the Lambda handler and `adiuva-local job <name>` both call.
    pub async fn run_job(&self, job: Job) -> Result<JobReport, Error> {
        let report = match job {
            Job::Janitor => JobReport::Janitor(self.run().await?),
            Job::PurgeSessions => JobReport::PurgeSessions(self.sessions.purge_expired().await?),
            Job::PurgeTombstones => JobReport::PurgeTombstones {
                deleted: self.storage.purge_expired_tombstones().await?,
            },
            Job::ReconcileBilling => JobReport::ReconcileBilling(self.billing.reconcile().await?),
            Job::PurgeAiBudgets => JobReport::PurgeAiBudgets(self.budgets.purge_expired().await?),
        };
        tracing::info!(summary = report.summary_line(), "job finished");
        Ok(report)
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

#[cfg(test)]
mod tests {
    use super::*;

    use serde_json::json;

    #[test]
    fn an_event_names_its_job_or_runs_the_janitor() {
        for job in Job::ALL {
            assert_eq!(Job::parse(job.name()), Some(job));
            assert_eq!(Job::of_event(&json!({"job": job.name()})).unwrap(), job);
            assert_eq!(
                Job::of_event(
                    &json!({"detail-type": "Scheduled Event", "detail": {"job": job.name()}})
                )
                .unwrap(),
                job
            );
        }
        let schedule =
            json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
        assert_eq!(Job::of_event(&schedule).unwrap(), Job::Janitor);
        assert!(Job::of_event(&json!({"job": "purge-everything"})).is_err());
        assert!(Job::of_event(&json!({"job": 3})).is_err());
    }

    #[test]
    fn a_report_is_one_json_line_led_by_the_job_name() {
        let line = JobReport::PurgeSessions(adiuva_sessions::Purged {
            deleted: 3,
            sessions: 1,
            events: 0,
        })
        .summary_line();
        assert_eq!(
            line,
            r#"{"job":"purge-sessions","deleted":3,"sessions":1,"events":0}"#
        );
        let line = JobReport::PurgeAiBudgets(adiuva_budgets::Purged {
            deleted: 2,
            kept_from: "2025-11".to_owned(),
        })
        .summary_line();
        assert_eq!(
            line,
            r#"{"job":"purge-ai-budgets","deleted":2,"kept_from":"2025-11"}"#
        );
        let line = JobReport::ReconcileBilling(ReconcileReport::default()).summary_line();
        assert_eq!(
            line,
            r#"{"job":"reconcile-billing","checked":0,"fixed":0,"failed":0}"#
        );
        let value: serde_json::Value = serde_json::from_str(
            &JobReport::Janitor(JanitorReport {
                sweep: SweepReport::default(),
                accounts_purged: 1,
                accounts_pending: 0,
                transfers_settled: 0,
                transfers_pending: 0,
            })
            .summary_line(),
        )
        .unwrap();
        assert_eq!(value["job"], "janitor");
        assert_eq!(value["accounts_purged"], 1);
        assert_eq!(value["orphans_deleted"], 0);
    }
}
