//! The janitor: removes what failures and abandoned uploads leave behind. Runs on a schedule
//! (the `janitor` function); safe to run concurrently with traffic and with itself.
//!
//! It walks the blob store a page at a time (`JANITOR_PAGE_SIZE` keys, in key order), asks the
//! database which keys of the page are referenced (one query per page, on indexed columns),
//! and stops when its time budget (`JANITOR_BUDGET_SECS`) is spent, keeping the last key in
//! `janitor_state`: the next run resumes there, and after the last page starts over. Memory
//! and time per run are bounded whatever the size of the store.

use std::collections::HashSet;
use std::time::Instant;

use adiuva_db::now_ms;
use serde::Serialize;

use crate::{Storage, StorageError};

/// How long a committed plugin package may wait for a submission that uses it, and how long
/// the package of a rejected version is kept after the rejection (the developer may fix the
/// manifest and submit the same package again), or that of a superseded version after the
/// newer one's approval.
pub const PACKAGE_GRACE_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// Packages one sweep collects at most (the rest waits for the next run).
const PACKAGES_PER_SWEEP: i64 = 500;

/// A package nothing needs: the listing does not name it (unless rejected: installs download
/// the listing's package, so it is the one buyers and installers get, also after their
/// developer left), no version under review names it, no version naming it was submitted
/// within the grace period, no version of its plugin was reviewed within it (so a version
/// rejected, or superseded by a newer approval, keeps its package for the grace period), and it
/// is older than the grace period. `$1` is the cutoff.
const COLLECTABLE: &str = "plugin_packages.created_at < $1 \
     AND NOT EXISTS (SELECT 1 FROM plugins WHERE plugins.s3_package_key = plugin_packages.s3_key \
         AND plugins.status <> 'rejected') \
     AND NOT EXISTS (SELECT 1 FROM plugin_versions v WHERE v.package_id = plugin_packages.id \
         AND (v.status = 'pending_review' OR v.submitted_at >= $1 OR EXISTS (SELECT 1 FROM \
         plugin_reviews r JOIN plugin_versions w ON w.id = r.version_id \
         WHERE w.plugin_id = v.plugin_id AND r.reviewed_at >= $1)))";

#[derive(sqlx::FromRow)]
struct Collectable {
    id: String,
    user_id: String,
    size_bytes: i64,
    quota_counted: i64,
}

/// The `janitor_state` row of the blob walk.
const BLOB_WALK: &str = "blobs";

/// What one sweep did, for the logs and the tests.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct SweepReport {
    pub blobs_checked: u64,
    pub pages: u64,
    /// The walk reached the end of the store (the next run starts from the beginning).
    pub walked_to_end: bool,
    pub expired_uploads: u64,
    /// Sync tombstones older than the retention.
    pub tombstones_purged: u64,
    /// Plugin packages collected: never submitted, or only by rejected versions, for longer
    /// than the grace period. Their bytes were given back to the developer's quota.
    pub unused_packages: u64,
    pub orphans_deleted: u64,
    /// Unreferenced blobs younger than the grace period: possibly a write still in flight.
    pub orphans_kept: u64,
}

impl Storage {
    /// Deletes expired pending uploads, sync tombstones older than the retention and plugin
    /// packages nothing needs (unused, or of rejected versions, for a week), then, page by page from where the last sweep stopped and within the time budget, every
    /// blob no row refers to that is older than the grace period. A blob is referenced by a
    /// record (a user's or a team's), a backup, a pending upload or a plugin package.
    pub async fn sweep(&self) -> Result<SweepReport, StorageError> {
        let started = Instant::now();
        let now = now_ms();
        let db = self.inner.db.pool();
        let expired_uploads = sqlx::query("DELETE FROM pending_uploads WHERE expires_at < $1")
            .bind(now)
            .execute(db)
            .await?
            .rows_affected();
        let unused_packages = self.collect_packages(now - PACKAGE_GRACE_MS).await?;
        let tombstones_purged = self.purge_expired_tombstones().await?;
        let mut report = SweepReport {
            expired_uploads,
            tombstones_purged,
            unused_packages,
            ..SweepReport::default()
        };

        let mut cursor: Option<String> =
            sqlx::query_scalar("SELECT cursor FROM janitor_state WHERE name = $1")
                .bind(BLOB_WALK)
                .fetch_optional(db)
                .await?
                .flatten();
        let budget = self.inner.janitor.budget;
        loop {
            let (page, more) = self
                .inner
                .blobs
                .list_page(cursor.as_deref(), self.inner.janitor.page_size)
                .await?;
            report.pages += 1;
            let referenced = self
                .referenced(page.iter().map(|blob| blob.key.as_str()))
                .await?;
            for blob in &page {
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
            cursor = page.last().map(|blob| blob.key.clone()).or(cursor);
            if !more {
                cursor = None;
                report.walked_to_end = true;
                break;
            }
            if started.elapsed() >= budget {
                break;
            }
        }
        sqlx::query(
            "INSERT INTO janitor_state (name, cursor, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
        )
        .bind(BLOB_WALK)
        .bind(&cursor)
        .bind(now_ms())
        .execute(db)
        .await?;
        Ok(report)
    }

    /// Removes the sync tombstones older than `TOMBSTONE_RETENTION_DAYS` and raises their
    /// users' horizons; how many went. Part of every [`Storage::sweep`], and the
    /// `purge-tombstones` job on its own.
    pub async fn purge_expired_tombstones(&self) -> Result<u64, StorageError> {
        let cutoff = now_ms().saturating_sub(self.inner.tombstone_retention_ms);
        let purged = self.purge_tombstones(cutoff).await?;
        if purged > 0 {
            tracing::info!(purged, "sync tombstones past the retention removed");
        }
        Ok(purged)
    }

    /// Deletes the package rows nothing needs any more (see [`COLLECTABLE`]), each in a
    /// transaction that gives its bytes back to the developer's cloud storage quota; the blob
    /// is then unreferenced, and the blob walk deletes it. The condition is checked again in
    /// the `DELETE`, so a package submitted again meanwhile (or a sweep running beside this
    /// one) keeps it, and bytes are given back once.
    async fn collect_packages(&self, cutoff: i64) -> Result<u64, StorageError> {
        let candidates: Vec<Collectable> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT id, user_id, size_bytes, quota_counted FROM plugin_packages \
             WHERE {COLLECTABLE} ORDER BY created_at LIMIT {PACKAGES_PER_SWEEP}"
        )))
        .bind(cutoff)
        .fetch_all(self.inner.db.pool())
        .await?;
        let mut collected = 0;
        for package in candidates {
            let mut tx = self.inner.db.pool().begin().await?;
            // The rejected and superseded versions that named it no longer point at its blob.
            sqlx::query("UPDATE plugin_versions SET package_key = NULL WHERE package_id = $1")
                .bind(&package.id)
                .execute(&mut *tx)
                .await?;
            let deleted = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM plugin_packages WHERE id = $2 AND {COLLECTABLE}"
            )))
            .bind(cutoff)
            .bind(&package.id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if deleted == 0 {
                tx.rollback().await?;
                continue;
            }
            if package.quota_counted != 0 {
                adiuva_access::quota::reserve(
                    &mut tx,
                    &package.user_id,
                    adiuva_access::tiers::Tier::Free,
                    adiuva_access::tiers::Quota::CloudStorage,
                    adiuva_access::quota::Delta {
                        count: 0,
                        bytes: -package.size_bytes,
                    },
                    None,
                )
                .await?;
            }
            tx.commit().await?;
            collected += 1;
            tracing::info!(
                package_id = package.id,
                user_id = package.user_id,
                "unneeded plugin package collected"
            );
        }
        Ok(collected)
    }

    /// Which of `keys` a row refers to.
    async fn referenced<'a>(
        &self,
        keys: impl Iterator<Item = &'a str>,
    ) -> Result<HashSet<String>, StorageError> {
        let keys: Vec<&str> = keys.collect();
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let list = (1..=keys.len())
            .map(|n| format!("${n}"))
            .collect::<Vec<_>>()
            .join(", ");
        // Only placeholders are spliced in; the keys are bound.
        let sql = format!(
            "SELECT s3_key FROM storage_records WHERE s3_key IN ({list}) \
             UNION ALL SELECT s3_key FROM team_records WHERE s3_key IN ({list}) \
             UNION ALL SELECT s3_key FROM backup_metadata WHERE s3_key IN ({list}) \
             UNION ALL SELECT s3_key FROM pending_uploads WHERE s3_key IN ({list}) \
             UNION ALL SELECT s3_key FROM plugin_packages WHERE s3_key IN ({list}) \
             UNION ALL SELECT s3_package_key FROM plugins WHERE s3_package_key IN ({list}) \
             AND status <> 'rejected'"
        );
        let mut query = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
        for key in &keys {
            query = query.bind(*key);
        }
        Ok(query
            .fetch_all(self.inner.db.pool())
            .await?
            .into_iter()
            .collect())
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
