//! Atomic quota accounting on the `storage_usage` row of a user. A reservation is one
//! conditional `UPDATE` of a quota's count and bytes together, so concurrent uploads cannot
//! together pass either limit, and a negative delta (delete, shrinking write) always succeeds.

use sqlx::AnyConnection;

use crate::tiers::{AccessError, Limit, Quota, Tier};

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error(transparent)]
    Exceeded(#[from] AccessError),
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

/// What a reservation changes under one quota: the number of items it holds (records or
/// backups) and their bytes. Negative when something is removed or shrinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    pub count: i64,
    pub bytes: i64,
}

/// Adds `delta` to the user's count and bytes under `quota` when both stay within their limits:
/// the tier's count limit (records or backups) and `limit_bytes` (`None` = unlimited); a part
/// that does not grow always passes. Runs on the caller's connection so it joins the
/// transaction that adds or removes the row.
///
/// One statement when the user's usage row exists (every request after their first): the
/// conditional `UPDATE`. Without the row, it is inserted and the `UPDATE` runs again; after a
/// refusal, the row is read to say which limit was reached.
pub async fn reserve(
    conn: &mut AnyConnection,
    user_id: &str,
    tier: Tier,
    quota: Quota,
    delta: Delta,
    limit_bytes: Option<u64>,
) -> Result<(), QuotaError> {
    let max_count = match count_limit(tier, quota) {
        Limit::Max(max) => i64::try_from(max).unwrap_or(i64::MAX),
        Limit::Unlimited => -1,
    };
    let max_bytes = limit_bytes.map_or(-1, |limit| i64::try_from(limit).unwrap_or(i64::MAX));
    let sql = match quota {
        Quota::CloudStorage => {
            "UPDATE storage_usage SET record_count = record_count + $1, \
             records_bytes = records_bytes + $2 WHERE user_id = $3 \
             AND ($1 <= 0 OR $4 < 0 OR record_count + $1 <= $4) \
             AND ($2 <= 0 OR $5 < 0 OR records_bytes + $2 <= $5)"
        }
        Quota::Backup => {
            "UPDATE storage_usage SET backup_count = backup_count + $1, \
             backup_bytes = backup_bytes + $2 WHERE user_id = $3 \
             AND ($1 <= 0 OR $4 < 0 OR backup_count + $1 <= $4) \
             AND ($2 <= 0 OR $5 < 0 OR backup_bytes + $2 <= $5)"
        }
    };
    for attempt in 0..2 {
        let result = sqlx::query(sql)
            .bind(delta.count)
            .bind(delta.bytes)
            .bind(user_id)
            .bind(max_count)
            .bind(max_bytes)
            .execute(&mut *conn)
            .await?;
        if result.rows_affected() == 1 {
            return Ok(());
        }
        if attempt == 0 {
            // No row yet, or a limit reached: make sure the row exists and try once more.
            sqlx::query(
                "INSERT INTO storage_usage (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING",
            )
            .bind(user_id)
            .execute(&mut *conn)
            .await?;
        }
    }
    let (count, _) = used(conn, user_id, quota).await?;
    let count_reached = delta.count > 0 && max_count >= 0 && count + delta.count > max_count;
    Err(if count_reached {
        AccessError::CountExceeded {
            what: match quota {
                Quota::CloudStorage => "records",
                Quota::Backup => "backups",
            },
            limit: u64::try_from(max_count).unwrap_or(0),
            tier,
        }
    } else {
        AccessError::QuotaExceeded { quota, tier }
    }
    .into())
}

/// How many records or backups the tier allows.
fn count_limit(tier: Tier, quota: Quota) -> Limit {
    match quota {
        Quota::CloudStorage => tier.limits().records,
        Quota::Backup => tier.limits().backups,
    }
}

/// The user's count and bytes under a quota.
async fn used(
    conn: &mut AnyConnection,
    user_id: &str,
    quota: Quota,
) -> Result<(i64, i64), sqlx::Error> {
    let sql = match quota {
        Quota::CloudStorage => {
            "SELECT record_count, records_bytes FROM storage_usage WHERE user_id = $1"
        }
        Quota::Backup => "SELECT backup_count, backup_bytes FROM storage_usage WHERE user_id = $1",
    };
    let used: Option<(i64, i64)> = sqlx::query_as(sql)
        .bind(user_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(used.unwrap_or((0, 0)))
}

/// The bytes a user holds under a quota.
pub async fn used_bytes(
    conn: &mut AnyConnection,
    user_id: &str,
    quota: Quota,
) -> Result<i64, sqlx::Error> {
    Ok(used(conn, user_id, quota).await?.1)
}
