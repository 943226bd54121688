//! The janitor: removes what failures and abandoned uploads leave behind. Runs on a schedule
//! (the `janitor` function); safe to run concurrently with traffic and with itself.

use std::collections::{BTreeMap, HashSet};

use adiuva_db::now_ms;
use serde::Serialize;

use crate::{Storage, StorageError};

/// How long a committed plugin package may wait for a submission that uses it.
const UNUSED_PACKAGE_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// What one sweep did, for the logs and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub blobs_checked: u64,
    pub expired_uploads: u64,
    /// Plugin packages uploaded but never submitted.
    pub unused_packages: u64,
    pub orphans_deleted: u64,
    /// Unreferenced blobs younger than the grace period: possibly a write still in flight.
    pub orphans_kept: u64,
}

impl Storage {
    /// Deletes expired pending uploads and plugin packages no submission used within a week,
    /// then every blob no row refers to that is older than the grace period. A blob is
    /// referenced by a record, a backup, a pending upload or a plugin package.
    pub async fn sweep(&self) -> Result<SweepReport, StorageError> {
        let now = now_ms();
        let expired_uploads = sqlx::query("DELETE FROM pending_uploads WHERE expires_at < $1")
            .bind(now)
            .execute(self.inner.db.pool())
            .await?
            .rows_affected();
        let unused_packages = sqlx::query(
            "DELETE FROM plugin_packages WHERE created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM plugin_versions WHERE plugin_versions.package_id = plugin_packages.id)",
        )
        .bind(now - UNUSED_PACKAGE_MS)
        .execute(self.inner.db.pool())
        .await?
        .rows_affected();
        let mut report = SweepReport {
            expired_uploads,
            unused_packages,
            ..SweepReport::default()
        };

        let mut by_user: BTreeMap<String, Vec<adiuva_blob::BlobInfo>> = BTreeMap::new();
        for blob in self.inner.blobs.list("").await? {
            let user = blob.key.split('/').next().unwrap_or_default().to_owned();
            by_user.entry(user).or_default().push(blob);
        }
        for (user_id, blobs) in by_user {
            let referenced: HashSet<String> = sqlx::query_scalar(
                "SELECT s3_key FROM storage_records WHERE user_id = $1 \
                 UNION ALL SELECT s3_key FROM backup_metadata WHERE user_id = $1 \
                 UNION ALL SELECT s3_key FROM pending_uploads WHERE user_id = $1 \
                 UNION ALL SELECT s3_key FROM plugin_packages WHERE user_id = $1",
            )
            .bind(&user_id)
            .fetch_all(self.inner.db.pool())
            .await?
            .into_iter()
            .collect();
            for blob in blobs {
                report.blobs_checked += 1;
                if referenced.contains(&blob.key) {
                    continue;
                }
                if now - blob.last_modified_ms < self.inner.orphan_grace_ms {
                    report.orphans_kept += 1;
                    continue;
                }
                self.inner.blobs.delete(&blob.key).await?;
                report.orphans_deleted += 1;
                tracing::info!(key = blob.key, "orphaned blob deleted");
            }
        }
        Ok(report)
    }

    /// Records that an account was deleted, in the deletion's transaction, so that its blobs
    /// and vectors are purged even if the immediate purge fails.
    pub async fn note_account_deletion(
        conn: &mut sqlx::AnyConnection,
        user_id: &str,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO account_deletions (user_id, deleted_at) VALUES ($1, $2) \
             ON CONFLICT (user_id) DO UPDATE SET deleted_at = excluded.deleted_at, purged_at = NULL",
        )
        .bind(user_id)
        .bind(now_ms())
        .execute(conn)
        .await?;
        Ok(())
    }

    /// Deleted accounts whose blobs or vectors may remain.
    pub async fn unpurged_accounts(&self) -> Result<Vec<String>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT user_id FROM account_deletions WHERE purged_at IS NULL")
                .fetch_all(self.inner.db.pool())
                .await?,
        )
    }

    pub async fn mark_purged(&self, user_id: &str) -> Result<(), StorageError> {
        sqlx::query("UPDATE account_deletions SET purged_at = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(now_ms())
            .execute(self.inner.db.pool())
            .await?;
        Ok(())
    }
}
