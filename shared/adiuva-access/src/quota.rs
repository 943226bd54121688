//! Atomic quota accounting on the `storage_usage` row of a user. A reservation is one
//! conditional `UPDATE`, so concurrent uploads cannot together pass the limit, and a negative
//! delta (delete, shrinking write) always succeeds.

use sqlx::AnyConnection;

use crate::tiers::{AccessError, Quota, Tier};

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
