//! Encrypted records: create, list, read, update (with optimistic versions) and delete.

use adiuva_access::quota::{Delta, reserve_for};
use adiuva_access::tiers::{Quota, quota_bytes};
use adiuva_access::{Caller, Tier};
use adiuva_checksum::Digested;
use adiuva_db::{new_id, now_ms};
use serde::Serialize;
use sqlx::AnyConnection;

use crate::cursor::{Cursor, Listing, Position, listing};
use crate::space::{Space, Writer, space_sql};
use crate::{BlobRef, Storage, StorageError, record_key};

/// Record metadata: what list returns, never the blob.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordMeta {
    pub id: String,
    /// The client's table name, e.g. `tasks`.
    #[sqlx(rename = "table_name")]
    pub table: String,
    /// Lowercase hex SHA-256 of the encrypted blob.
    pub checksum: String,
    pub size_bytes: i64,
    /// Starts at 1 and grows by one on every update; send it back as `If-Match`.
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The columns of `RecordMeta`, spliced into statements with `concat!` so they stay `'static`.
macro_rules! record_columns {
    () => {
        "id, table_name, checksum, size_bytes, version, created_at, updated_at"
    };
}

/// A record of any space, as its statements return it: the common metadata and, in a team's
/// space, the key version and the author.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct SpaceRecord {
    #[sqlx(flatten)]
    pub(crate) meta: RecordMeta,
    #[sqlx(default)]
    pub(crate) key_version: Option<i64>,
    #[sqlx(default)]
    pub(crate) author_id: Option<String>,
}

/// A team record's metadata: what a personal record has, plus the team key version its blob is
/// encrypted with and its author.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamRecordMeta {
    pub id: String,
    /// The client's table name, e.g. `tasks`.
    pub table: String,
    /// Lowercase hex SHA-256 of the encrypted blob.
    pub checksum: String,
    pub size_bytes: i64,
    /// Starts at 1 and grows by one on every update; send it back as `If-Match`.
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// The version of the team key the blob is encrypted with (as the writer said).
    pub key_version: i64,
    /// The member who last wrote the record: its creator until someone updates it, then the
    /// member of the latest update. Stays when that member leaves or deletes their account.
    pub author_id: String,
}

impl From<SpaceRecord> for TeamRecordMeta {
    fn from(record: SpaceRecord) -> Self {
        let RecordMeta {
            id,
            table,
            checksum,
            size_bytes,
            version,
            created_at,
            updated_at,
        } = record.meta;
        Self {
            id,
            table,
            checksum,
            size_bytes,
            version,
            created_at,
            updated_at,
            key_version: record.key_version.unwrap_or_default(),
            author_id: record.author_id.unwrap_or_default(),
        }
    }
}

/// A record with the key of its blob.
#[derive(sqlx::FromRow)]
struct StoredRecord {
    #[sqlx(flatten)]
    record: SpaceRecord,
    s3_key: String,
}

/// A team record's key version: an integer from 1.
pub fn validate_key_version(key_version: Option<i64>) -> Result<i64, StorageError> {
    match key_version {
        Some(version) if version >= 1 => Ok(version),
        Some(_) => Err(StorageError::Invalid("key_version is an integer from 1")),
        None => Err(StorageError::Invalid(
            "key_version is required: the version of the team key the blob is encrypted with",
        )),
    }
}

/// Table names are short identifiers: a lowercase letter, then letters, digits or `_`.
pub fn validate_table(table: &str) -> Result<(), StorageError> {
    let mut chars = table.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok
        || table.len() > 64
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(StorageError::Invalid(
            "table must be 1 to 64 characters: a lowercase letter, then lowercase letters, digits or _",
        ));
    }
    Ok(())
}

/// The cloud-storage quota of a tier in bytes, refusing tiers that have none.
fn storage_limit(storage: &Storage, tier: Tier) -> Result<Option<u64>, StorageError> {
    let limit = quota_bytes(tier, Quota::CloudStorage, storage.inner.quota_unit_bytes);
    if limit == Some(0) {
        return Err(adiuva_access::tiers::AccessError::QuotaExceeded {
            quota: Quota::CloudStorage,
            tier,
        }
        .into());
    }
    Ok(limit)
}

fn size_of(bytes: usize) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

impl Storage {
    pub async fn create_record(
        &self,
        user: &Caller,
        table: &str,
        blob: Digested,
        checksum: &str,
    ) -> Result<RecordMeta, StorageError> {
        let writer = Writer::personal(user);
        Ok(self.create_in(writer, table, blob, checksum).await?.meta)
    }

    /// Stores a new record in a space.
    pub(crate) async fn create_in(
        &self,
        writer: Writer<'_>,
        table: &str,
        blob: Digested,
        checksum: &str,
    ) -> Result<SpaceRecord, StorageError> {
        validate_table(table)?;
        blob.verify(checksum)?;
        storage_limit(self, writer.tier)?;
        let record_id = new_id();
        let key = record_key(writer.space, table, &record_id);
        let size = size_of(blob.len());
        self.inner
            .blobs
            .put(&key, blob.into_bytes(), checksum)
            .await?;
        match self
            .finish_create(writer, table, &record_id, &key, size, checksum, None)
            .await
        {
            Ok(record) => Ok(record),
            Err(err) => {
                self.discard_unless_uncertain(&key, &err).await;
                Err(err)
            }
        }
    }

    /// Makes a stored blob a new record: quota and row in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn finish_create(
        &self,
        writer: Writer<'_>,
        table: &str,
        record_id: &str,
        key: &str,
        size: i64,
        checksum: &str,
        pending_upload: Option<&str>,
    ) -> Result<SpaceRecord, StorageError> {
        let limit = storage_limit(self, writer.tier)?;
        let now = now_ms();
        let mut tx = self.inner.db.pool().begin().await?;
        forget_upload(&mut tx, pending_upload).await?;
        let delta = Delta {
            count: 1,
            bytes: size,
        };
        reserve_for(
            &mut tx,
            writer.space.holder(),
            writer.tier,
            Quota::CloudStorage,
            delta,
            limit,
        )
        .await?;
        let sql = space_sql!(
            writer.space,
            concat!(
                "INSERT INTO {records} (id, {owner}, table_name, s3_key, checksum, size_bytes, version, created_at, updated_at{meta}) \
                 VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7{meta_values}) RETURNING ",
                record_columns!(),
                "{meta}"
            )
        );
        let mut insert = sqlx::query_as(sql)
            .bind(record_id)
            .bind(writer.space.owner())
            .bind(table)
            .bind(key)
            .bind(checksum)
            .bind(size)
            .bind(now);
        if let Space::Team(_) = writer.space {
            insert = insert.bind(writer.key_version).bind(writer.author);
        }
        let record: SpaceRecord = insert.fetch_one(&mut *tx).await?;
        commit(tx).await?;
        tracing::info!(
            owner = writer.space.owner(),
            record_id,
            table,
            size,
            "record created"
        );
        Ok(record)
    }

    /// The caller's records, newest first (by creation, then id), `limit` at a time: page
    /// `page` (from 1) or the page after `cursor`, the first without either. The listing carries
    /// the next page's cursor when there is one.
    pub async fn list_records(
        &self,
        user_id: &str,
        table: Option<&str>,
        page: Option<u32>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Listing<RecordMeta>, StorageError> {
        let listing = self
            .list_in(Space::Personal(user_id), table, page, cursor, limit)
            .await?;
        Ok(Listing {
            items: listing
                .items
                .into_iter()
                .map(|record| record.meta)
                .collect(),
            next: listing.next,
        })
    }

    /// A space's records, as [`Storage::list_records`] lists a user's.
    pub(crate) async fn list_in(
        &self,
        space: Space<'_>,
        table: Option<&str>,
        page: Option<u32>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Listing<SpaceRecord>, StorageError> {
        if let Some(table) = table {
            validate_table(table)?;
        }
        // One row more than the page tells whether another page follows.
        let position = Position::of(page, cursor, 1)?;
        let fetch = i64::from(limit) + 1;
        let rows: Vec<SpaceRecord> = match &position {
            Position::Page(page) => {
                let offset = i64::from(page.saturating_sub(1)) * i64::from(limit);
                sqlx::query_as(space_sql!(
                    space,
                    concat!(
                        "SELECT ",
                        record_columns!(),
                        "{meta} FROM {records} WHERE {owner} = $1 AND ($2 IS NULL OR table_name = $2) \
                         ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
                    )
                ))
                .bind(space.owner())
                .bind(table)
                .bind(fetch)
                .bind(offset)
                .fetch_all(self.inner.db.pool())
                .await?
            }
            // Two statements rather than `$2 IS NULL OR ...`, so that each walks its index
            // ((owner, created_at, id) or (owner, table_name, created_at, id)) from the
            // cursor: a row-value comparison is a range of the index on both databases. No cursor: from the newest (every real `created_at` is below i64::MAX).
            // (Placeholders are numbered in the order they first appear: SQLite binds them so.)
            Position::After(after) => {
                let (created_at, id) = after.as_ref().map_or((i64::MAX, ""), |cursor| {
                    (cursor.keys[0], cursor.id.as_str())
                });
                match table {
                    None => sqlx::query_as(space_sql!(
                        space,
                        concat!(
                            "SELECT ",
                            record_columns!(),
                            "{meta} FROM {records} WHERE {owner} = $1 \
                             AND (created_at, id) < ($2, $3) \
                             ORDER BY created_at DESC, id DESC LIMIT $4"
                        )
                    ))
                    .bind(space.owner()),
                    Some(table) => sqlx::query_as(space_sql!(
                        space,
                        concat!(
                            "SELECT ",
                            record_columns!(),
                            "{meta} FROM {records} WHERE {owner} = $1 AND table_name = $2 \
                             AND (created_at, id) < ($3, $4) \
                             ORDER BY created_at DESC, id DESC LIMIT $5"
                        )
                    ))
                    .bind(space.owner())
                    .bind(table),
                }
                .bind(created_at)
                .bind(id)
                .bind(fetch)
                .fetch_all(self.inner.db.pool())
                .await?
            }
        };
        Ok(listing(rows, limit, |record| {
            Cursor::new(vec![record.meta.created_at], record.meta.id.clone())
        }))
    }

    /// A record of the caller; someone else's id is `RecordNotFound`, like a missing one.
    pub async fn record_meta(
        &self,
        user_id: &str,
        record_id: &str,
    ) -> Result<(RecordMeta, String), StorageError> {
        let (record, key) = self.stored(Space::Personal(user_id), record_id).await?;
        Ok((record.meta, key))
    }

    /// A record of a space and the key of its blob; another space's id is `RecordNotFound`,
    /// like a missing one.
    pub(crate) async fn stored(
        &self,
        space: Space<'_>,
        record_id: &str,
    ) -> Result<(SpaceRecord, String), StorageError> {
        let row: Option<StoredRecord> = sqlx::query_as(space_sql!(
            space,
            concat!(
                "SELECT ",
                record_columns!(),
                "{meta}, s3_key FROM {records} WHERE id = $1 AND {owner} = $2"
            )
        ))
        .bind(record_id)
        .bind(space.owner())
        .fetch_optional(self.inner.db.pool())
        .await?;
        let StoredRecord { record, s3_key } = row.ok_or(StorageError::RecordNotFound)?;
        Ok((record, s3_key))
    }

    /// The record's metadata and its blob, which [`Storage::download`] reads.
    pub async fn record_blob(
        &self,
        user_id: &str,
        record_id: &str,
    ) -> Result<(RecordMeta, BlobRef), StorageError> {
        let (record, blob) = self.blob_in(Space::Personal(user_id), record_id).await?;
        Ok((record.meta, blob))
    }

    pub(crate) async fn blob_in(
        &self,
        space: Space<'_>,
        record_id: &str,
    ) -> Result<(SpaceRecord, BlobRef), StorageError> {
        let (record, key) = self.stored(space, record_id).await?;
        let blob = BlobRef {
            key,
            size: record.meta.size_bytes,
        };
        Ok((record, blob))
    }

    /// Replaces a record's blob. With `if_match`, a record that moved on is `VersionConflict`.
    pub async fn update_record(
        &self,
        user: &Caller,
        record_id: &str,
        blob: Digested,
        checksum: &str,
        if_match: Option<i64>,
    ) -> Result<RecordMeta, StorageError> {
        let writer = Writer::personal(user);
        Ok(self
            .update_in(writer, record_id, blob, checksum, if_match)
            .await?
            .meta)
    }

    /// Replaces the blob of a record of a space, as [`Storage::update_record`].
    pub(crate) async fn update_in(
        &self,
        writer: Writer<'_>,
        record_id: &str,
        blob: Digested,
        checksum: &str,
        if_match: Option<i64>,
    ) -> Result<SpaceRecord, StorageError> {
        blob.verify(checksum)?;
        let (current, _) = self.stored(writer.space, record_id).await?;
        let current = current.meta;
        if let Some(expected) = if_match
            && expected != current.version
        {
            return Err(StorageError::VersionConflict {
                current: current.version,
            });
        }
        let key = record_key(writer.space, &current.table, record_id);
        let size = size_of(blob.len());
        self.inner
            .blobs
            .put(&key, blob.into_bytes(), checksum)
            .await?;
        let expected = if_match.unwrap_or(current.version);
        match self
            .finish_update(writer, record_id, &key, size, checksum, expected, None)
            .await
        {
            Ok(record) => Ok(record),
            Err(err) => {
                self.discard_unless_uncertain(&key, &err).await;
                Err(err)
            }
        }
    }

    /// Points a record at a newly stored blob if it is still at `expected_version`, adjusting
    /// the quota by the size difference; then drops the old blob.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn finish_update(
        &self,
        writer: Writer<'_>,
        record_id: &str,
        key: &str,
        size: i64,
        checksum: &str,
        expected_version: i64,
        pending_upload: Option<&str>,
    ) -> Result<SpaceRecord, StorageError> {
        let space = writer.space;
        let limit = quota_bytes(
            writer.tier,
            Quota::CloudStorage,
            self.inner.quota_unit_bytes,
        );
        let now = now_ms();
        let mut tx = self.inner.db.pool().begin().await?;
        forget_upload(&mut tx, pending_upload).await?;
        let old: Option<(i64, i64, String)> = sqlx::query_as(space_sql!(
            space,
            "SELECT version, size_bytes, s3_key FROM {records} WHERE id = $1 AND {owner} = $2"
        ))
        .bind(record_id)
        .bind(space.owner())
        .fetch_optional(&mut *tx)
        .await?;
        let (version, old_size, old_key) = old.ok_or(StorageError::RecordNotFound)?;
        if version != expected_version {
            return Err(StorageError::VersionConflict { current: version });
        }
        let delta = Delta {
            count: 0,
            bytes: size - old_size,
        };
        reserve_for(
            &mut tx,
            space.holder(),
            writer.tier,
            Quota::CloudStorage,
            delta,
            limit,
        )
        .await?;
        let sql = space_sql!(
            space,
            concat!(
                "UPDATE {records} SET s3_key = $1, checksum = $2, size_bytes = $3, version = version + 1, updated_at = $4{meta_set} \
                 WHERE id = $5 AND {owner} = $6 AND version = $7 RETURNING ",
                record_columns!(),
                "{meta}"
            )
        );
        let mut update = sqlx::query_as(sql)
            .bind(key)
            .bind(checksum)
            .bind(size)
            .bind(now)
            .bind(record_id)
            .bind(space.owner())
            .bind(expected_version);
        if let Space::Team(_) = space {
            update = update.bind(writer.key_version).bind(writer.author);
        }
        let record: Option<SpaceRecord> = update.fetch_optional(&mut *tx).await?;
        // A concurrent update won between our read and our write.
        let record = record.ok_or(StorageError::VersionConflict {
            current: expected_version + 1,
        })?;
        commit(tx).await?;
        tracing::info!(
            owner = space.owner(),
            record_id,
            version = record.meta.version,
            size,
            "record updated"
        );
        self.discard(&old_key).await;
        Ok(record)
    }

    /// Deletes a record, leaving a tombstone for the sync feed. The row goes first, so a
    /// failure to delete the blob leaves an orphan for the janitor, never a record without its
    /// blob.
    pub async fn delete_record(&self, user_id: &str, record_id: &str) -> Result<(), StorageError> {
        self.delete_in(Space::Personal(user_id), record_id).await
    }

    /// Deletes a record of a space, as [`Storage::delete_record`].
    pub(crate) async fn delete_in(
        &self,
        space: Space<'_>,
        record_id: &str,
    ) -> Result<(), StorageError> {
        let mut tx = self.inner.db.pool().begin().await?;
        let deleted: Option<(String, i64, String)> = sqlx::query_as(space_sql!(
            space,
            "DELETE FROM {records} WHERE id = $1 AND {owner} = $2 RETURNING s3_key, size_bytes, table_name"
        ))
        .bind(record_id)
        .bind(space.owner())
        .fetch_optional(&mut *tx)
        .await?;
        let (key, size, table) = deleted.ok_or(StorageError::RecordNotFound)?;
        // Shrinking never needs a tier; the limits are irrelevant for a negative delta.
        let delta = Delta {
            count: -1,
            bytes: -size,
        };
        reserve_for(
            &mut tx,
            space.holder(),
            Tier::Free,
            Quota::CloudStorage,
            delta,
            None,
        )
        .await?;
        // After the usage row's lock (taken above), so the tombstone's change number follows
        // every earlier change of this space (see `changes`).
        sqlx::query(space_sql!(
            space,
            "INSERT INTO {tombstones} (id, {owner}, table_name, deleted_at) VALUES ($1, $2, $3, $4)"
        ))
        .bind(record_id)
        .bind(space.owner())
        .bind(&table)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(owner = space.owner(), record_id, "record deleted");
        self.discard(&key).await;
        Ok(())
    }
}

impl<'a> Writer<'a> {
    /// A user writing into their own space, under their own tier.
    pub(crate) fn personal(user: &'a Caller) -> Self {
        Self {
            space: Space::Personal(&user.id),
            tier: user.tier,
            author: &user.id,
            key_version: None,
        }
    }
}

/// Removes the pending-upload row a commit consumes: the first statement of the commit's
/// transaction, so of two concurrent commits of one upload the second waits here and then
/// finds it gone (409), before writing anything.
pub(crate) async fn forget_upload(
    conn: &mut AnyConnection,
    pending_upload: Option<&str>,
) -> Result<(), StorageError> {
    if let Some(upload_id) = pending_upload {
        let removed = sqlx::query("DELETE FROM pending_uploads WHERE id = $1")
            .bind(upload_id)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if removed == 0 {
            return Err(StorageError::UploadCommitted);
        }
    }
    Ok(())
}

/// Commits a transaction that makes a row point at a new blob. A failing `COMMIT` may have
/// been applied (the connection broke after the server committed), so its error says the
/// outcome is unknown and the new blob must be kept: the janitor removes it if no row refers
/// to it.
pub(crate) async fn commit(tx: sqlx::Transaction<'_, sqlx::Any>) -> Result<(), StorageError> {
    tx.commit().await.map_err(StorageError::CommitUncertain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_short_identifiers() {
        for ok in ["tasks", "notes_v2", "a", "x1"] {
            assert!(validate_table(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Tasks",
            "1tasks",
            "_backups",
            "ta-sks",
            "tasks/../x",
            "t a",
            &"a".repeat(65),
        ] {
            assert!(validate_table(bad).is_err(), "{bad}");
        }
    }
}
