//! Atomic quota accounting on the `storage_usage` row of a user. A reservation is one
//! conditional `UPDATE`, so concurrent uploads cannot together pass the limit, and a negative
//! delta (delete, shrinking write) always succeeds.

use sqlx::AnyConnection;

use crate::tiers::{AccessError, Limit, Quota, Tier};

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error(transparent)]
    Exceeded(#[from] AccessError),
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

/// Adds `delta_bytes` to the user's usage when the result stays within `limit_bytes`
/// (`None` = unlimited). Runs on the caller's connection so it can join a transaction.
pub async fn reserve(
    conn: &mut AnyConnection,
    user_id: &str,
    tier: Tier,
    quota: Quota,
    delta_bytes: i64,
    limit_bytes: Option<u64>,
) -> Result<(), QuotaError> {
    sqlx::query("INSERT INTO storage_usage (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    let limit = limit_bytes.map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
    let sql = match quota {
        Quota::CloudStorage => {
            "UPDATE storage_usage SET records_bytes = records_bytes + $1 \
             WHERE user_id = $2 AND ($1 <= 0 OR $3 < 0 OR records_bytes + $1 <= $3)"
        }
        Quota::Backup => {
            "UPDATE storage_usage SET backup_bytes = backup_bytes + $1 \
             WHERE user_id = $2 AND ($1 <= 0 OR $3 < 0 OR backup_bytes + $1 <= $3)"
        }
    };
    let result = sqlx::query(sql)
        .bind(delta_bytes)
        .bind(user_id)
        .bind(limit)
        .execute(&mut *conn)
        .await?;
    if result.rows_affected() == 1 {
        Ok(())
    } else {
        Err(AccessError::QuotaExceeded { quota, tier }.into())
    }
}

/// What a count limit of the tier counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Records,
    Backups,
}

/// Adds `delta` to the user's count of records or backups when the result stays within the
/// tier's limit; a negative delta always succeeds. Runs on the caller's connection so it joins
/// the transaction that adds or removes the row.
pub async fn reserve_count(
    conn: &mut AnyConnection,
    user_id: &str,
    tier: Tier,
    counted: Counted,
    delta: i64,
) -> Result<(), QuotaError> {
    sqlx::query("INSERT INTO storage_usage (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING")
        .bind(user_id)
        .execute(&mut *conn)
        .await?;
    let (limit, sql, what) = match counted {
        Counted::Records => (
            tier.limits().records,
            "UPDATE storage_usage SET record_count = record_count + $1 \
             WHERE user_id = $2 AND ($1 <= 0 OR $3 < 0 OR record_count + $1 <= $3)",
            "records",
        ),
        Counted::Backups => (
            tier.limits().backups,
            "UPDATE storage_usage SET backup_count = backup_count + $1 \
             WHERE user_id = $2 AND ($1 <= 0 OR $3 < 0 OR backup_count + $1 <= $3)",
            "backups",
        ),
    };
    let max = match limit {
        Limit::Max(max) => i64::try_from(max).unwrap_or(i64::MAX),
        Limit::Unlimited => -1,
    };
    let result = sqlx::query(sql)
        .bind(delta)
        .bind(user_id)
        .bind(max)
        .execute(&mut *conn)
        .await?;
    if result.rows_affected() == 1 {
        return Ok(());
    }
    Err(AccessError::CountExceeded {
        what,
        limit: u64::try_from(max).unwrap_or(0),
        tier,
    }
    .into())
}

/// The bytes a user holds under a quota.
pub async fn used_bytes(
    conn: &mut AnyConnection,
    user_id: &str,
    quota: Quota,
) -> Result<i64, sqlx::Error> {
    let sql = match quota {
        Quota::CloudStorage => "SELECT records_bytes FROM storage_usage WHERE user_id = $1",
        Quota::Backup => "SELECT backup_bytes FROM storage_usage WHERE user_id = $1",
    };
    let used: Option<i64> = sqlx::query_scalar(sql)
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(used.unwrap_or(0))
}
