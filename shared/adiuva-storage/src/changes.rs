//! Incremental sync: the caller's record changes after a cursor, in the order they happened.
//!
//! Every write of a record gives its row the next number of one sequence (`change_seq`, set by
//! the database), and every deletion leaves a tombstone with a number of its own. Writes of one
//! user take the lock on their `storage_usage` row before their number, so they commit in the
//! order of their numbers: a reader that saw number `n` never later finds a change below `n`
//! it missed. A record changed several times after the cursor appears once, as it is now.
//!
//! From `0` (or no cursor) the feed holds the live records only. Tombstones are kept for the
//! retention (`TOMBSTONE_RETENTION_DAYS`); the janitor removes older ones and raises the user's
//! horizon to the highest number it removed. A cursor holds the number of the last change the
//! device saw and the horizon as it was before the page was read, sealed for the user
//! (encrypted and authenticated, `adiuva_checksum::Sealer`, with a key derived for
//! `adiuva_checksum::purpose::SYNC_CURSORS`): the numbers come from one sequence shared by every user,
//! so in the clear they would tell each user how much everyone else writes, and another user's
//! cursor opens for nobody but its owner (`InvalidCursor`, 422). A
//! tombstone the device still needs can only have gone in a purge after that: so a cursor whose
//! horizon is below today's, and whose number is below it too, is `ChangesExpired` (410) and
//! the device syncs again from `0`. (A sync from `0` needs no tombstone purged before it began:
//! those records were gone before it read them.)

use serde::Serialize;

use crate::cursor::Cursor;
use crate::space::{Space, space_sql};
use crate::{Storage, StorageError};

/// One change: a record as it is now, or the tombstone of a deleted one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum Change {
    Record(RecordChange),
    Deleted(Tombstone),
}

/// A record created or updated after the cursor: its metadata as it is now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordChange {
    pub id: String,
    pub table: String,
    pub version: i64,
    /// Lowercase hex SHA-256 of the encrypted blob.
    pub checksum: String,
    pub size_bytes: i64,
    pub updated_at: i64,
    /// Always `false`.
    pub deleted: bool,
}

/// A record deleted after the cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tombstone {
    pub id: String,
    pub table: String,
    pub deleted_at: i64,
    /// Always `true`.
    pub deleted: bool,
}

/// A page of changes and the cursor to ask with next.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Changes {
    pub changes: Vec<Change>,
    /// The `since` of the next request: the number of the last change of this page (the same
    /// cursor when the page is empty).
    pub next_cursor: String,
    /// More changes follow this page: ask again with `next_cursor` now.
    pub has_more: bool,
}

/// A row of the feed: a record (`deleted` 0) or a tombstone (`deleted` 1, `updated_at` is the
/// time of deletion).
#[derive(sqlx::FromRow)]
pub(crate) struct ChangeRow {
    pub(crate) id: String,
    pub(crate) table_name: String,
    pub(crate) version: Option<i64>,
    pub(crate) checksum: Option<String>,
    pub(crate) size_bytes: Option<i64>,
    pub(crate) updated_at: i64,
    change_seq: i64,
    pub(crate) deleted: i64,
    /// A team record's (absent in a user's own space).
    #[sqlx(default)]
    pub(crate) key_version: Option<i64>,
    #[sqlx(default)]
    pub(crate) author_id: Option<String>,
}

/// A page of a space's changes, before it takes the space's shape.
pub(crate) struct ChangePage {
    pub(crate) rows: Vec<ChangeRow>,
    pub(crate) next_cursor: String,
    pub(crate) has_more: bool,
}

impl ChangeRow {
    fn into_change(self) -> Change {
        if self.deleted != 0 {
            Change::Deleted(Tombstone {
                id: self.id,
                table: self.table_name,
                deleted_at: self.updated_at,
                deleted: true,
            })
        } else {
            Change::Record(RecordChange {
                id: self.id,
                table: self.table_name,
                version: self.version.unwrap_or_default(),
                checksum: self.checksum.unwrap_or_default(),
                size_bytes: self.size_bytes.unwrap_or_default(),
                updated_at: self.updated_at,
                deleted: false,
            })
        }
    }
}

/// Where a device's sync stands: the number of the last change it saw, and the user's
/// tombstone horizon when the page was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncCursor {
    seq: i64,
    horizon: i64,
}

/// The id part of the sync cursors of earlier versions (`v1.<seq>.<horizon>.changes` in
/// base64url, the numbers in the clear). One is answered like an expired cursor (410), so a
/// device that kept one syncs again from 0 and gets sealed cursors from then on.
const SYNC: &str = "changes";

impl SyncCursor {
    /// The start of a sync: every live record.
    pub const START: Self = Self { seq: 0, horizon: 0 };

    /// Reads `?since=` for `context` (a space's [`Space::cursor_context`]): `0` (or none) to
    /// start, else a `next_cursor` this feed gave that space.
    fn parse(
        sealer: &adiuva_checksum::Sealer,
        context: &str,
        since: Option<&str>,
    ) -> Result<Self, StorageError> {
        let text = match since {
            None | Some("0") => return Ok(Self::START),
            Some(text) => text,
        };
        if let Ok(Cursor { id, .. }) = Cursor::parse(text, 2)
            && id == SYNC
        {
            return Err(StorageError::ChangesExpired);
        }
        let payload = sealer
            .open(context, text)
            .ok_or(StorageError::InvalidCursor)?;
        let payload: [u8; 16] = payload
            .try_into()
            .map_err(|_| StorageError::InvalidCursor)?;
        let [
            s0,
            s1,
            s2,
            s3,
            s4,
            s5,
            s6,
            s7,
            h0,
            h1,
            h2,
            h3,
            h4,
            h5,
            h6,
            h7,
        ] = payload;
        let seq = i64::from_be_bytes([s0, s1, s2, s3, s4, s5, s6, s7]);
        let horizon = i64::from_be_bytes([h0, h1, h2, h3, h4, h5, h6, h7]);
        if seq <= 0 || horizon < 0 {
            return Err(StorageError::InvalidCursor);
        }
        Ok(Self { seq, horizon })
    }

    /// The cursor sealed for `context`; the start stays `0`.
    fn encode(self, sealer: &adiuva_checksum::Sealer, context: &str) -> String {
        if self == Self::START {
            return "0".to_owned();
        }
        let mut payload = [0u8; 16];
        payload[..8].copy_from_slice(&self.seq.to_be_bytes());
        payload[8..].copy_from_slice(&self.horizon.to_be_bytes());
        sealer.seal(context, &payload)
    }
}

impl Storage {
    /// The caller's changes after `since` (`?since=`: `0`, none, or a `next_cursor` this feed
    /// gave the caller; see the module), at most `limit` of them.
    pub async fn changes(
        &self,
        user_id: &str,
        since: Option<&str>,
        limit: u32,
    ) -> Result<Changes, StorageError> {
        let page = self
            .changes_in(Space::Personal(user_id), since, limit)
            .await?;
        Ok(Changes {
            changes: page.rows.into_iter().map(ChangeRow::into_change).collect(),
            next_cursor: page.next_cursor,
            has_more: page.has_more,
        })
    }

    /// A space's changes after `since`, as [`Storage::changes`] reads a user's; the cursor is
    /// sealed for the space.
    pub(crate) async fn changes_in(
        &self,
        space: Space<'_>,
        since: Option<&str>,
        limit: u32,
    ) -> Result<ChangePage, StorageError> {
        let sealer = self
            .inner
            .cursors
            .as_ref()
            .ok_or(StorageError::Cursors("no server secret is configured"))?;
        let context = space.cursor_context();
        let since = SyncCursor::parse(sealer, &context, since)?;
        let db = self.inner.db.pool();
        let owner = space.owner();
        let horizon = |db| async move {
            let purged: Option<i64> = sqlx::query_scalar(space_sql!(
                space,
                "SELECT changes_purged_through FROM {usage} WHERE {owner} = $1"
            ))
            .bind(owner)
            .fetch_optional(db)
            .await?;
            Ok::<_, StorageError>(purged.unwrap_or(0))
        };
        // The next cursor carries the horizon from before the read: a purge during the read
        // then shows as a newer horizon, never as one this page accounted for.
        let horizon_before = horizon(db).await?;
        // Tombstones only after a cursor: from 0 the device has nothing to delete. Each branch
        // is a range of its (owner, change_seq) index, merged in order.
        let mut rows: Vec<ChangeRow> = sqlx::query_as(space_sql!(
            space,
            "SELECT id, table_name, version, checksum, size_bytes, updated_at, change_seq, \
                    CAST(0 AS BIGINT) AS deleted{meta} \
             FROM {records} WHERE {owner} = $1 AND change_seq > $2 \
             UNION ALL \
             SELECT id, table_name, NULL, NULL, NULL, deleted_at, change_seq, CAST(1 AS BIGINT){null_meta} \
             FROM {tombstones} WHERE {owner} = $1 AND change_seq > $2 AND $2 > 0 \
             ORDER BY change_seq LIMIT $3"
        ))
        .bind(owner)
        .bind(since.seq)
        .bind(i64::from(limit) + 1)
        .fetch_all(db)
        .await?;
        // Checked after the read: a purge that removed tombstones this read could not see has
        // raised the horizon by now (both in one transaction).
        if since != SyncCursor::START {
            let now = horizon(db).await?;
            if since.horizon < now && since.seq < now {
                return Err(StorageError::ChangesExpired);
            }
        }
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next = SyncCursor {
            seq: rows.last().map_or(since.seq, |row| row.change_seq),
            horizon: horizon_before.max(since.horizon),
        };
        Ok(ChangePage {
            rows,
            next_cursor: next.encode(sealer, &context),
            has_more,
        })
    }

    /// Removes the tombstones of deletions at or before `cutoff` (ms), raising each affected
    /// user's horizon to the highest number removed. Returns how many were removed.
    pub(crate) async fn purge_tombstones(&self, cutoff: i64) -> Result<u64, StorageError> {
        let mut tx = self.inner.db.pool().begin().await?;
        let mut purged = 0;
        // Users' tombstones and teams' alike, each raising its own space's horizon.
        for space in [Space::Personal(""), Space::Team("")] {
            sqlx::query(space_sql!(
                space,
                "UPDATE {usage} SET changes_purged_through = \
                   (SELECT MAX(t.change_seq) FROM {tombstones} t \
                    WHERE t.{owner} = {usage}.{owner} AND t.deleted_at <= $1) \
                 WHERE {owner} IN (SELECT {owner} FROM {tombstones} WHERE deleted_at <= $1)"
            ))
            .bind(cutoff)
            .execute(&mut *tx)
            .await?;
            purged += sqlx::query(space_sql!(
                space,
                "DELETE FROM {tombstones} WHERE deleted_at <= $1"
            ))
            .bind(cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(purged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use adiuva_checksum::{Sealer, derive_key};

    fn sealer() -> Sealer {
        Sealer::new(derive_key(
            b"secret",
            adiuva_checksum::purpose::SYNC_CURSORS,
        ))
    }

    #[test]
    fn sync_cursors_round_trip_sealed_for_their_user_only() {
        let sealer = sealer();
        let parse = |user: &str, since: Option<&str>| SyncCursor::parse(&sealer, user, since);
        assert_eq!(parse("u1", None).unwrap(), SyncCursor::START);
        assert_eq!(parse("u1", Some("0")).unwrap(), SyncCursor::START);
        assert_eq!(SyncCursor::START.encode(&sealer, "u1"), "0");
        let cursor = SyncCursor {
            seq: 4_242_424,
            horizon: 7,
        };
        let text = cursor.encode(&sealer, "u1");
        assert_eq!(parse("u1", Some(&text)).unwrap(), cursor);
        // The global number is not in it, in any encoding the client could try.
        assert!(!text.contains("4242424"));
        assert!(Cursor::parse(&text, 2).is_err());
        // Another user's cursor, one sealed under another key, and junk are invalid.
        assert!(matches!(
            parse("u2", Some(&text)),
            Err(StorageError::InvalidCursor)
        ));
        let foreign = Sealer::new(derive_key(b"other", adiuva_checksum::purpose::SYNC_CURSORS));
        let forged = cursor.encode(&foreign, "u1");
        let list_cursor = Cursor::new(vec![42], "abc".to_owned()).encode();
        let history_cursor = Cursor::new(vec![42, 7], "abc".to_owned()).encode();
        for bad in [
            "",
            "00",
            "1",
            "-1",
            "abc",
            &list_cursor,
            &history_cursor,
            &forged,
        ] {
            assert!(
                matches!(parse("u1", Some(bad)), Err(StorageError::InvalidCursor)),
                "{bad}"
            );
        }
        // A cursor of the earlier, readable format: sync again from 0.
        let old = Cursor::new(vec![42, 7], SYNC.to_owned()).encode();
        assert!(matches!(
            parse("u1", Some(&old)),
            Err(StorageError::ChangesExpired)
        ));
    }
}
