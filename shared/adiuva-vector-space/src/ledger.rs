//! The database side of a user's vector space: `vector_spaces` (the user's size and totals) and
//! `vector_points` (each point's blob size, keyed by a digest of the client's id). Every
//! function runs on the caller's connection, inside the transaction that holds the user's row.

use std::collections::HashMap;

use adiuva_access::{Limit, Tier};
use sqlx::{AnyConnection, AssertSqlSafe};

use crate::{VectorQuota, VectorSpaceError};

/// Rows per statement when a statement names many points: well inside both engines' limits on
/// bound parameters, whatever the caller's batch size.
const ROWS_PER_STATEMENT: usize = 200;

/// What a user holds, as counted against their tier.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) points: i64,
    pub(crate) bytes: i64,
}

/// A user's space: the size of their vectors and what they hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Space {
    pub(crate) dimensions: usize,
    pub(crate) usage: Usage,
}

/// The key of a point in `vector_points`: the hex SHA-256 of the client's id, so the client's
/// own text stays out of the database and every key has the same length.
pub(crate) fn point_key(id: &str) -> String {
    adiuva_checksum::sha256_hex(id.as_bytes())
}

/// Locks the user's row for the rest of the transaction (a no-op write: portable, and on
/// SQLite the first statement must be a write). `false` when the account is gone. Account
/// deletion deletes that row, so it waits for this transaction, and purges after it.
pub(crate) async fn lock_user(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<bool, sqlx::Error> {
    let locked: Option<String> =
        sqlx::query_scalar("UPDATE users SET updated_at = updated_at WHERE id = $1 RETURNING id")
            .bind(user_id)
            .fetch_optional(conn)
            .await?;
    Ok(locked.is_some())
}

/// The user's space; `None` when they hold no points.
pub(crate) async fn space(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<Option<Space>, sqlx::Error> {
    let row: Option<(i64, i64, i64)> =
        sqlx::query_as("SELECT dimensions, points, bytes FROM vector_spaces WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(dimensions, points, bytes)| Space {
        dimensions: usize::try_from(dimensions).unwrap_or(0),
        usage: Usage { points, bytes },
    }))
}

/// The stored sizes of those of `keys` the user has.
pub(crate) async fn sizes(
    conn: &mut AnyConnection,
    user_id: &str,
    keys: &[String],
) -> Result<HashMap<String, i64>, sqlx::Error> {
    let mut sizes = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "SELECT point_id, size_bytes FROM vector_points WHERE user_id = $1 AND point_id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query_as::<_, (String, i64)>(AssertSqlSafe(sql)).bind(user_id);
        for key in chunk {
            query = query.bind(key);
        }
        sizes.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(sizes)
}

/// Inserts the points, or replaces the size of those that exist.
pub(crate) async fn put_points(
    conn: &mut AnyConnection,
    user_id: &str,
    points: &[(String, i64)],
) -> Result<(), sqlx::Error> {
    for chunk in points.chunks(ROWS_PER_STATEMENT) {
        let rows: Vec<String> = (0..chunk.len())
            .map(|i| format!("($1, ${}, ${})", 2 + 2 * i, 3 + 2 * i))
            .collect();
        let sql = format!(
            "INSERT INTO vector_points (user_id, point_id, size_bytes) VALUES {} \
             ON CONFLICT (user_id, point_id) DO UPDATE SET size_bytes = excluded.size_bytes",
            rows.join(", ")
        );
        let mut query = sqlx::query(AssertSqlSafe(sql)).bind(user_id);
        for (key, size) in chunk {
            query = query.bind(key).bind(*size);
        }
        query.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Deletes those of `keys` the user has and returns their sizes.
pub(crate) async fn remove_points(
    conn: &mut AnyConnection,
    user_id: &str,
    keys: &[String],
) -> Result<Vec<i64>, sqlx::Error> {
    let mut removed = Vec::new();
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "DELETE FROM vector_points WHERE user_id = $1 AND point_id IN ({}) RETURNING size_bytes",
            placeholders(2, chunk.len())
        );
        let mut query = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql)).bind(user_id);
        for key in chunk {
            query = query.bind(key);
        }
        removed.extend(query.fetch_all(&mut *conn).await?);
    }
    Ok(removed)
}

/// Records the user's size and totals; a user left with no points has no space, which frees
/// the size for their next upsert.
pub(crate) async fn save_space(
    conn: &mut AnyConnection,
    user_id: &str,
    dimensions: usize,
    usage: Usage,
) -> Result<(), sqlx::Error> {
    if usage.points <= 0 {
        sqlx::query("DELETE FROM vector_spaces WHERE user_id = $1")
            .bind(user_id)
            .execute(conn)
            .await?;
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO vector_spaces (user_id, dimensions, points, bytes) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (user_id) DO UPDATE SET points = excluded.points, bytes = excluded.bytes",
    )
    .bind(user_id)
    .bind(i64::try_from(dimensions).unwrap_or(i64::MAX))
    .bind(usage.points)
    .bind(usage.bytes)
    .execute(conn)
    .await?;
    Ok(())
}

/// The user's size, outside a transaction (search).
pub(crate) async fn dimensions(
    pool: &sqlx::AnyPool,
    user_id: &str,
) -> Result<Option<usize>, sqlx::Error> {
    let dimensions: Option<i64> =
        sqlx::query_scalar("SELECT dimensions FROM vector_spaces WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
    Ok(dimensions.map(|d| usize::try_from(d).unwrap_or(0)))
}

/// Refuses a change from `before` to `after` that grows past an allowance of the tier. What
/// does not grow always passes, so a user over quota after a downgrade can still replace
/// points with smaller ones and delete.
pub(crate) fn check_quota(tier: Tier, before: Usage, after: Usage) -> Result<(), VectorSpaceError> {
    let limits = tier.limits();
    for (quota, limit, before, after) in [
        (
            VectorQuota::Points,
            limits.vector_points,
            before.points,
            after.points,
        ),
        (
            VectorQuota::Bytes,
            limits.vector_bytes,
            before.bytes,
            after.bytes,
        ),
    ] {
        if let Limit::Max(max) = limit
            && after > before
            && !limit.allows(u64::try_from(after).unwrap_or(0))
        {
            return Err(VectorSpaceError::QuotaExceeded {
                quota,
                tier,
                limit: max,
            });
        }
    }
    Ok(())
}

/// `$first, $first+1, ...`: `count` numbered placeholders.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(points: i64, bytes: i64) -> Usage {
        Usage { points, bytes }
    }

    #[test]
    fn growth_past_an_allowance_is_refused() {
        let free = Tier::Free.limits();
        let Limit::Max(max_points) = free.vector_points else {
            panic!("free has a point allowance");
        };
        let Limit::Max(max_bytes) = free.vector_bytes else {
            panic!("free has a byte allowance");
        };
        let (max_points, max_bytes) = (max_points as i64, max_bytes as i64);
        // Up to the allowance exactly.
        assert!(check_quota(Tier::Free, usage(0, 0), usage(max_points, max_bytes)).is_ok());
        let err = check_quota(Tier::Free, usage(0, 0), usage(max_points + 1, 0)).unwrap_err();
        assert!(matches!(
            err,
            VectorSpaceError::QuotaExceeded {
                quota: VectorQuota::Points,
                tier: Tier::Free,
                ..
            }
        ));
        let err = check_quota(Tier::Free, usage(1, 0), usage(1, max_bytes + 1)).unwrap_err();
        assert!(matches!(
            err,
            VectorSpaceError::QuotaExceeded {
                quota: VectorQuota::Bytes,
                ..
            }
        ));
    }

    #[test]
    fn what_does_not_grow_passes_even_over_quota() {
        // A downgraded user far over the free allowances.
        let over = usage(50_000, 1 << 30);
        assert!(check_quota(Tier::Free, over, usage(50_000, (1 << 30) - 10)).is_ok());
        assert!(check_quota(Tier::Free, over, usage(49_999, 1 << 30)).is_ok());
        assert!(check_quota(Tier::Free, over, usage(50_000, (1 << 30) + 1)).is_err());
        assert!(check_quota(Tier::Team, over, usage(i64::MAX, i64::MAX)).is_ok());
    }

    #[test]
    fn point_keys_are_digests_of_the_id() {
        assert_eq!(point_key("note-1"), point_key("note-1"));
        assert_ne!(point_key("note-1"), point_key("note-2"));
        assert_eq!(point_key(&"x".repeat(256)).len(), 64);
    }

    #[test]
    fn placeholders_are_numbered() {
        assert_eq!(placeholders(2, 3), "$2, $3, $4");
        assert_eq!(placeholders(1, 1), "$1");
    }
}
