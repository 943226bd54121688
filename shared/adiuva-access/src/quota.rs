//! Atomic quota accounting on the usage row of a holder: `storage_usage` of a user, or
//! `team_usage` of a team (a team's space is counted for the team as a whole). A reservation
//! is one conditional `UPDATE` of a quota's count and bytes together, so concurrent uploads
//! cannot together pass either limit, and a negative delta (delete, shrinking write) always
//! succeeds.

use sqlx::AnyConnection;

use crate::tiers::{AccessError, Limit, Quota, Tier};

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error(transparent)]
    Exceeded(#[from] AccessError),
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

/// Whose usage row a reservation takes: a user's own (`storage_usage`) or a team's
/// (`team_usage`, the same columns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Holder<'a> {
    User(&'a str),
    Team(&'a str),
}

impl<'a> Holder<'a> {
    fn id(self) -> &'a str {
        match self {
            Holder::User(id) | Holder::Team(id) => id,
        }
    }
}

/// The statements of one usage table, with its key column.
macro_rules! usage_sql {
    ($table:literal, $key:literal) => {
        UsageSql {
            reserve_records: concat!(
                "UPDATE ",
                $table,
                " SET record_count = record_count + $1, \
                 records_bytes = records_bytes + $2 WHERE ",
                $key,
                " = $3 \
                 AND ($1 <= 0 OR $4 < 0 OR record_count + $1 <= $4) \
                 AND ($2 <= 0 OR $5 < 0 OR records_bytes + $2 <= $5)"
            ),
            reserve_backups: concat!(
                "UPDATE ",
                $table,
                " SET backup_count = backup_count + $1, \
                 backup_bytes = backup_bytes + $2 WHERE ",
                $key,
                " = $3 \
                 AND ($1 <= 0 OR $4 < 0 OR backup_count + $1 <= $4) \
                 AND ($2 <= 0 OR $5 < 0 OR backup_bytes + $2 <= $5)"
            ),
            insert: concat!(
                "INSERT INTO ",
                $table,
                " (",
                $key,
                ") VALUES ($1) ON CONFLICT (",
                $key,
                ") DO NOTHING"
            ),
            used_records: concat!(
                "SELECT record_count, records_bytes FROM ",
                $table,
                " WHERE ",
                $key,
                " = $1"
            ),
            used_backups: concat!(
                "SELECT backup_count, backup_bytes FROM ",
                $table,
                " WHERE ",
                $key,
                " = $1"
            ),
        }
    };
}

struct UsageSql {
    reserve_records: &'static str,
    reserve_backups: &'static str,
    insert: &'static str,
    used_records: &'static str,
    used_backups: &'static str,
}

const USER_USAGE: UsageSql = usage_sql!("storage_usage", "user_id");
const TEAM_USAGE: UsageSql = usage_sql!("team_usage", "team_id");

impl Holder<'_> {
    fn sql(self) -> &'static UsageSql {
        match self {
            Holder::User(_) => &USER_USAGE,
            Holder::Team(_) => &TEAM_USAGE,
        }
    }
}

/// What a reservation changes under one quota: the number of items it holds (records or
/// backups) and their bytes. Negative when something is removed or shrinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delta {
    pub count: i64,
    pub bytes: i64,
}

/// Adds `delta` to the holder's count and bytes under `quota` when both stay within their limits:
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
    reserve_for(conn, Holder::User(user_id), tier, quota, delta, limit_bytes).await
}

/// [`reserve`] on the usage row of any holder: a user's, or a team's (a team's space is
/// counted for the team as a whole).
pub async fn reserve_for(
    conn: &mut AnyConnection,
    holder: Holder<'_>,
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
        Quota::CloudStorage => holder.sql().reserve_records,
        Quota::Backup => holder.sql().reserve_backups,
    };
    for attempt in 0..2 {
        let result = sqlx::query(sql)
            .bind(delta.count)
            .bind(delta.bytes)
            .bind(holder.id())
            .bind(max_count)
            .bind(max_bytes)
            .execute(&mut *conn)
            .await?;
        if result.rows_affected() == 1 {
            return Ok(());
        }
        if attempt == 0 {
            // No row yet, or a limit reached: make sure the row exists and try once more.
            sqlx::query(holder.sql().insert)
                .bind(holder.id())
                .execute(&mut *conn)
                .await?;
        }
    }
    let (count, _) = used(conn, holder, quota).await?;
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

/// The holder's count and bytes under a quota.
async fn used(
    conn: &mut AnyConnection,
    holder: Holder<'_>,
    quota: Quota,
) -> Result<(i64, i64), sqlx::Error> {
    let sql = match quota {
        Quota::CloudStorage => holder.sql().used_records,
        Quota::Backup => holder.sql().used_backups,
    };
    let used: Option<(i64, i64)> = sqlx::query_as(sql)
        .bind(holder.id())
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
    used_bytes_of(conn, Holder::User(user_id), quota).await
}

/// The bytes a holder (a user or a team) has under a quota.
pub async fn used_bytes_of(
    conn: &mut AnyConnection,
    holder: Holder<'_>,
    quota: Quota,
) -> Result<i64, sqlx::Error> {
    Ok(used(conn, holder, quota).await?.1)
}
