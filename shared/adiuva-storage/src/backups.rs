//! Encrypted backups: upload, latest, history and delete, within the tier's backup quota.

use adiuva_access::Caller;
use adiuva_access::quota::{Delta, reserve};
use adiuva_access::tiers::{AccessError, Quota, quota_bytes};
use adiuva_db::{new_id, now_ms};
use bytes::Bytes;
use serde::Serialize;

use crate::cursor::{Cursor, Listing, Position, listing};
use crate::records::{commit, forget_upload};
use crate::{BlobRef, Storage, StorageError, backup_key};

/// The reference's `BackupMetadata`, plus the `id` that delete takes and the stored size.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackupMeta {
    pub id: String,
    /// The client's backup format version (`X-Backup-Version`).
    pub version: i64,
    /// When the client made the backup, ms since the epoch (`X-Backup-Timestamp`).
    pub timestamp: i64,
    pub checksum: String,
    pub chunk_count: i64,
    pub size_bytes: i64,
    pub created_at: i64,
}

/// A backup's metadata with the key of its blob.
#[derive(sqlx::FromRow)]
struct StoredBackup {
    #[sqlx(flatten)]
    meta: BackupMeta,
    s3_key: String,
}

/// The client's description of a backup it uploads.
#[derive(Debug, Clone)]
pub struct NewBackup {
    pub version: i64,
    pub timestamp: i64,
    pub checksum: String,
    pub chunk_count: i64,
}

/// The latest time a backup may claim: 9999-12-31T23:59:59.999Z, the last an HTTP date (its
/// `Last-Modified`) can say.
pub const MAX_BACKUP_TIMESTAMP_MS: i64 = 253_402_300_799_999;
/// The most chunks a backup may announce.
pub const MAX_CHUNK_COUNT: i64 = 100_000;

/// Checks what the client says of a backup: a timestamp between 1970 and 9999, a version and
/// a chunk count in range.
pub(crate) fn validate_backup(
    version: i64,
    timestamp: i64,
    chunk_count: i64,
) -> Result<(), StorageError> {
    if !(0..=MAX_BACKUP_TIMESTAMP_MS).contains(&timestamp) {
        return Err(StorageError::Invalid(
            "X-Backup-Timestamp must be ms since 1970 and before the year 10000",
        ));
    }
    if version < 0 {
        return Err(StorageError::Invalid(
            "X-Backup-Version must not be negative",
        ));
    }
    if !(1..=MAX_CHUNK_COUNT).contains(&chunk_count) {
        return Err(StorageError::Invalid(
            "X-Backup-Chunk-Count must be 1 to 100000",
        ));
    }
    Ok(())
}

macro_rules! backup_columns {
    () => {
        r#"id, version, "timestamp", checksum, chunk_count, size_bytes, created_at"#
    };
}

/// The backup quota of a tier in bytes, refusing tiers that have none.
pub(crate) fn backup_limit(storage: &Storage, user: &Caller) -> Result<Option<u64>, StorageError> {
    let limit = quota_bytes(user.tier, Quota::Backup, storage.inner.quota_unit_bytes);
    if limit == Some(0) {
        return Err(AccessError::QuotaExceeded {
            quota: Quota::Backup,
            tier: user.tier,
        }
        .into());
    }
    Ok(limit)
}

impl Storage {
    pub async fn put_backup(
        &self,
        user: &Caller,
        backup: NewBackup,
        bytes: Bytes,
    ) -> Result<BackupMeta, StorageError> {
        validate_backup(backup.version, backup.timestamp, backup.chunk_count)?;
        adiuva_checksum::verify(&bytes, &backup.checksum)?;
        backup_limit(self, user)?;
        let backup_id = new_id();
        let key = backup_key(&user.id, &backup_id);
        let size = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
        self.inner.blobs.put(&key, bytes, &backup.checksum).await?;
        match self
            .finish_backup(user, &backup_id, &key, size, &backup, None)
            .await
        {
            Ok(meta) => Ok(meta),
            Err(err) => {
                self.discard_unless_uncertain(&key, &err).await;
                Err(err)
            }
        }
    }

    pub(crate) async fn finish_backup(
        &self,
        user: &Caller,
        backup_id: &str,
        key: &str,
        size: i64,
        backup: &NewBackup,
        pending_upload: Option<&str>,
    ) -> Result<BackupMeta, StorageError> {
        let limit = backup_limit(self, user)?;
        let mut tx = self.inner.db.pool().begin().await?;
        forget_upload(&mut tx, pending_upload).await?;
        let delta = Delta {
            count: 1,
            bytes: size,
        };
        reserve(&mut tx, &user.id, user.tier, Quota::Backup, delta, limit).await?;
        let meta: BackupMeta = sqlx::query_as(concat!(
            r#"INSERT INTO backup_metadata (id, user_id, s3_key, version, "timestamp", checksum, size_bytes, chunk_count, created_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING "#,
            backup_columns!()
        ))
        .bind(backup_id)
        .bind(&user.id)
        .bind(key)
        .bind(backup.version)
        .bind(backup.timestamp)
        .bind(&backup.checksum)
        .bind(size)
        .bind(backup.chunk_count)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        commit(tx).await?;
        tracing::info!(user_id = user.id, backup_id, size, "backup stored");
        Ok(meta)
    }

    /// The newest backup (by the client's timestamp) and its blob, which
    /// [`Storage::download`] reads; `None` without any.
    pub async fn latest_backup(
        &self,
        user_id: &str,
    ) -> Result<Option<(BackupMeta, BlobRef)>, StorageError> {
        let latest: Option<StoredBackup> = sqlx::query_as(concat!(
            "SELECT ",
            backup_columns!(),
            r#", s3_key FROM backup_metadata WHERE user_id = $1 ORDER BY "timestamp" DESC, created_at DESC LIMIT 1"#
        ))
        .bind(user_id)
        .fetch_optional(self.inner.db.pool())
        .await?;
        Ok(latest.map(|StoredBackup { meta, s3_key }| {
            let blob = BlobRef {
                key: s3_key,
                size: meta.size_bytes,
            };
            (meta, blob)
        }))
    }

    /// The user's backups, newest first (by their timestamp, then creation, then id), without
    /// bytes, `limit` at a time from `page` or `cursor` (as for records); the listing carries
    /// the next page's cursor.
    pub async fn backup_history(
        &self,
        user_id: &str,
        page: Option<u32>,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Listing<BackupMeta>, StorageError> {
        let position = Position::of(page, cursor, 2)?;
        let fetch = i64::from(limit) + 1;
        let rows: Vec<BackupMeta> = match &position {
            Position::Page(page) => {
                let offset = i64::from(page.saturating_sub(1)) * i64::from(limit);
                sqlx::query_as(concat!(
                    "SELECT ",
                    backup_columns!(),
                    r#" FROM backup_metadata WHERE user_id = $1 ORDER BY "timestamp" DESC, created_at DESC, id DESC LIMIT $2 OFFSET $3"#
                ))
                .bind(user_id)
                .bind(fetch)
                .bind(offset)
                .fetch_all(self.inner.db.pool())
                .await?
            }
            // Along the index (user_id, "timestamp", created_at, id) from the cursor; no cursor:
            // from the newest (timestamps are bounded far below i64::MAX).
            Position::After(after) => {
                let (timestamp, created_at, id) = after
                    .as_ref()
                    .map_or((i64::MAX, 0, ""), |c| (c.keys[0], c.keys[1], c.id.as_str()));
                sqlx::query_as(concat!(
                    "SELECT ",
                    backup_columns!(),
                    r#" FROM backup_metadata WHERE user_id = $1 AND ("timestamp", created_at, id) < ($2, $3, $4) ORDER BY "timestamp" DESC, created_at DESC, id DESC LIMIT $5"#
                ))
                .bind(user_id)
                .bind(timestamp)
                .bind(created_at)
                .bind(id)
                .bind(fetch)
                .fetch_all(self.inner.db.pool())
                .await?
            }
        };
        Ok(listing(rows, limit, |meta| {
            Cursor::new(vec![meta.timestamp, meta.created_at], meta.id.clone())
        }))
    }

    pub async fn delete_backup(&self, user_id: &str, backup_id: &str) -> Result<(), StorageError> {
        let mut tx = self.inner.db.pool().begin().await?;
        let deleted: Option<(String, i64)> =
            sqlx::query_as("DELETE FROM backup_metadata WHERE id = $1 AND user_id = $2 RETURNING s3_key, size_bytes")
                .bind(backup_id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        let (key, size) = deleted.ok_or(StorageError::BackupNotFound)?;
        // Shrinking never needs a tier; the limits are irrelevant for a negative delta.
        let delta = Delta {
            count: -1,
            bytes: -size,
        };
        reserve(
            &mut tx,
            user_id,
            adiuva_access::Tier::Free,
            Quota::Backup,
            delta,
            None,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(user_id, backup_id, "backup deleted");
        self.discard(&key).await;
        Ok(())
    }
}
