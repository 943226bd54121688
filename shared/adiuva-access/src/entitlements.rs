//! What the caller's tier allows and how much of it they hold (`GET /billing/entitlements`):
//! the desktop app's one source for the gates it applies itself (agents, batches, providers,
//! the batch builder), which the server never sees, and for the usage bars of its settings.
//!
//! The features are the tier matrix ([`TierLimits`]) as the reference states it: a number, or
//! `null` for unlimited, or a flag. The usage is read from the counters the quota reservations
//! keep (`storage_usage`, and `vector_spaces` of adiuva-vector-space) in one query: the same
//! figures the quotas are checked against, never recounted.

use adiuva_config::{Component, ConfigError, Context};
use adiuva_db::Database;
use adiuva_error::{DomainError, ErrorKind};
use serde::Serialize;
use sqlx::AnyConnection;

use crate::Caller;
use crate::tiers::{Limit, Quota, Tier, TierLimits, quota_bytes};

/// Reads a caller's [`Entitlements`]. Cheap to clone; built once per process.
#[derive(Debug, Clone)]
pub struct Allowances {
    db: Database,
    unit_bytes: u64,
}

impl Component for Allowances {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        Ok(Self {
            db: context.get()?,
            unit_bytes: crate::quota_unit_bytes(context.source())?,
        })
    }
}

impl Allowances {
    /// The caller's entitlements: their live tier (as the request resolved it) and counters.
    pub async fn of(&self, caller: &Caller) -> Result<Entitlements, UsageError> {
        let mut conn = self.db.pool().acquire().await?;
        let counters = Counters::read(&mut conn, &caller.id).await?;
        Ok(Entitlements::new(
            caller.tier,
            caller.tier_source.as_str(),
            counters,
            self.unit_bytes,
        ))
    }
}

/// The counters could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading the usage counters failed")]
pub struct UsageError(#[from] sqlx::Error);

impl DomainError for UsageError {
    fn kind(&self) -> ErrorKind {
        adiuva_db::kind_of(&self.0)
    }

    fn code(&self) -> &'static str {
        if adiuva_db::is_unavailable(&self.0) {
            "dependency_unavailable"
        } else {
            "internal_error"
        }
    }
}

/// The whole answer of `GET /billing/entitlements`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Entitlements {
    /// The tier every check uses now: the best of the user's own and their teams'.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "pro"))]
    pub tier: &'static str,
    /// Where the tier comes from: `own` (the user's subscription, or free) or `team`.
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "own"))]
    pub tier_source: &'static str,
    pub features: Features,
    pub usage: Usage,
}

/// The tier's features: a count (`null` for unlimited) or a flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Features {
    /// Agents the desktop app may run (`null`: all).
    pub agents: Option<u64>,
    /// Batches that may run at once (`null`: no limit).
    pub batch_active: Option<u64>,
    /// Model providers that may be configured (`null`: no limit).
    pub providers: Option<u64>,
    pub batch_builder: bool,
    pub plugin_marketplace: bool,
    pub sso: bool,
    pub requests_per_minute: u32,
}

/// What the user holds under each quota, and the quota (`limit: null` is unlimited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Usage {
    /// Bytes of the user's stored records.
    pub storage: Allowance,
    /// Bytes of the user's backups.
    pub backup: Allowance,
    /// Stored records.
    pub records: Allowance,
    /// Kept backups.
    pub backups: Allowance,
    /// Points in the vector store.
    pub vector_points: Allowance,
    /// Bytes of those points' encrypted blobs.
    pub vector_bytes: Allowance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Allowance {
    pub used: u64,
    pub limit: Option<u64>,
}

/// The user's counters, as the quota reservations keep them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub records_bytes: u64,
    pub record_count: u64,
    pub backup_bytes: u64,
    pub backup_count: u64,
    pub vector_points: u64,
    pub vector_bytes: u64,
}

impl Counters {
    /// Reads the user's counters in one query; zeros for a user who never stored anything.
    pub async fn read(conn: &mut AnyConnection, user_id: &str) -> Result<Self, sqlx::Error> {
        type Row = (
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
        );
        let row: Option<Row> = sqlx::query_as(
            "SELECT s.records_bytes, s.record_count, s.backup_bytes, s.backup_count, \
             v.points, v.bytes FROM users u \
             LEFT JOIN storage_usage s ON s.user_id = u.id \
             LEFT JOIN vector_spaces v ON v.user_id = u.id WHERE u.id = $1",
        )
        .bind(user_id)
        .fetch_optional(conn)
        .await?;
        let Some(row) = row else {
            return Ok(Self::default());
        };
        let count = |value: Option<i64>| value.map_or(0, |value| value.max(0) as u64);
        Ok(Self {
            records_bytes: count(row.0),
            record_count: count(row.1),
            backup_bytes: count(row.2),
            backup_count: count(row.3),
            vector_points: count(row.4),
            vector_bytes: count(row.5),
        })
    }
}

impl Entitlements {
    /// The entitlements of `tier` for a user holding `counters`; `unit_bytes` is one "GB" of
    /// the matrix ([`quota_unit_bytes`](crate::quota_unit_bytes)).
    pub fn new(tier: Tier, tier_source: &'static str, counters: Counters, unit_bytes: u64) -> Self {
        let limits: &TierLimits = tier.limits();
        let allowance = |used: u64, limit: Limit| Allowance {
            used,
            limit: count(limit),
        };
        Self {
            tier: tier.as_str(),
            tier_source,
            features: Features {
                agents: count(limits.agents),
                batch_active: count(limits.batch_active),
                providers: count(limits.providers),
                batch_builder: limits.batch_builder,
                plugin_marketplace: limits.plugin_marketplace,
                sso: limits.sso,
                requests_per_minute: limits.requests_per_minute,
            },
            usage: Usage {
                storage: Allowance {
                    used: counters.records_bytes,
                    limit: quota_bytes(tier, Quota::CloudStorage, unit_bytes),
                },
                backup: Allowance {
                    used: counters.backup_bytes,
                    limit: quota_bytes(tier, Quota::Backup, unit_bytes),
                },
                records: allowance(counters.record_count, limits.records),
                backups: allowance(counters.backup_count, limits.backups),
                vector_points: allowance(counters.vector_points, limits.vector_points),
                vector_bytes: allowance(counters.vector_bytes, limits.vector_bytes),
            },
        }
    }
}

fn count(limit: Limit) -> Option<u64> {
    match limit {
        Limit::Max(max) => Some(max),
        Limit::Unlimited => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_has_the_reference_matrix_and_no_storage() {
        let free = Entitlements::new(Tier::Free, "own", Counters::default(), 1 << 30);
        assert_eq!(free.features.agents, Some(3));
        assert_eq!(free.features.batch_active, Some(2));
        assert_eq!(free.features.providers, Some(1));
        assert!(!free.features.plugin_marketplace);
        assert!(!free.features.batch_builder);
        assert_eq!(free.features.requests_per_minute, 20);
        assert_eq!(free.usage.storage.limit, Some(0));
        assert_eq!(free.usage.vector_points.limit, Some(1_000));
    }

    #[test]
    fn unlimited_is_null_and_bytes_follow_the_unit() {
        let counters = Counters {
            records_bytes: 7,
            record_count: 2,
            ..Counters::default()
        };
        let pro = Entitlements::new(Tier::Pro, "own", counters, 1000);
        assert_eq!(pro.features.agents, None);
        assert_eq!(
            pro.usage.storage,
            Allowance {
                used: 7,
                limit: Some(5000)
            }
        );
        assert_eq!(pro.usage.records.used, 2);
        let team = Entitlements::new(Tier::Team, "team", counters, 1000);
        assert_eq!(team.usage.storage.limit, None);
        assert!(team.features.sso);
        assert_eq!(team.tier_source, "team");
    }
}
