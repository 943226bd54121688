//! Records and backups of end-to-end-encrypted blobs: the bytes go to the blob store, the
//! metadata to the database, and the quota is reserved atomically with the metadata write.
//!
//! Consistency rule: a row only ever points at a blob that was completely stored. Every write
//! stores its blob under a new key first, then switches the row to it in one transaction, then
//! deletes the blob the row no longer needs. A failure at any step leaves either the old or the
//! new state readable; what it can leave behind is an unreferenced blob, which the janitor
//! (`sweep`) removes after a grace period.

mod backups;
mod changes;
mod cursor;
mod error;
mod janitor;
mod records;
mod space;
mod team;
mod uploads;

use std::sync::Arc;

use adiuva_blob::BlobStore;
use adiuva_config::{Component, ConfigError, Context, Source};
use adiuva_db::Database;

pub use backups::{BackupMeta, NewBackup};
pub use changes::{Change, Changes, RecordChange, Tombstone};
pub use cursor::Listing;
pub use error::StorageError;
pub use janitor::SweepReport;
pub use records::{RecordMeta, TeamRecordMeta, validate_key_version, validate_table};
pub use space::Space;
pub use team::{
    TeamChange, TeamChanges, TeamCommitted, TeamMember, TeamRecordChange, TeamUploadRequest,
};
pub use uploads::{
    Committed, MAX_PACKAGE_BYTES, MAX_UPLOAD_BYTES, PackageMeta, UploadRequest, UploadTicket,
};

/// The storage service: cheap to clone, built once per process.
#[derive(Debug, Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    blobs: BlobStore,
    quota_unit_bytes: u64,
    orphan_grace_ms: i64,
    inline_download_bytes: u64,
    tombstone_retention_ms: i64,
    janitor: JanitorSettings,
    /// Seals sync cursors (see [`changes`]); `None` where no server secret is configured (the
    /// janitor, which serves no cursor).
    cursors: Option<adiuva_checksum::Sealer>,
}

/// How long the URL of a large blob's download works.
const DOWNLOAD_URL_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// A stored blob, before its bytes are read: the key and size are known from its row.
#[derive(Debug, Clone)]
pub struct BlobRef {
    key: String,
    size: i64,
}

/// How a blob reaches its reader.
#[derive(Debug, Clone)]
pub enum Download {
    /// Small enough for the answer itself.
    Inline(bytes::Bytes),
    /// Too large for a Lambda answer: a short-lived URL to read it from (a presigned S3 GET,
    /// or the local server's signed URL).
    Url(adiuva_blob::PresignedDownload),
}

/// `QUOTA_UNIT_BYTES` (one "GB" of the tier matrix; tests shrink it), `ORPHAN_GRACE_MINUTES`
/// (how old an unreferenced blob must be before the janitor removes it) and
/// `INLINE_DOWNLOAD_BYTES` (larger blobs are read through a URL: a Lambda answer holds at most
/// 6 MB, about 4.4 MB of bytes once base64-encoded; default 4 MiB) and
/// `TOMBSTONE_RETENTION_DAYS` (how long the sync feed remembers a deletion; a device that has
/// not synced for longer starts over; default 30, 0 only for tests).
#[derive(Debug, Clone)]
pub struct StorageSettings {
    pub quota_unit_bytes: u64,
    pub orphan_grace_minutes: u64,
    pub inline_download_bytes: u64,
    pub tombstone_retention_days: u64,
    pub janitor: JanitorSettings,
    /// The key sync cursors are sealed with, derived from the server's secret for
    /// `adiuva_checksum::purpose::SYNC_CURSORS`; `None` without a secret (the janitor's Lambda has none and
    /// serves no cursor; every function that serves the feed also verifies tokens, which
    /// refuses to start without one).
    pub cursor_key: Option<[u8; 32]>,
}

/// `JANITOR_BUDGET_SECS` (how long one sweep walks the blob store; the function's timeout is
/// 300 s) and `JANITOR_PAGE_SIZE` (keys per page, at most S3's 1000).
#[derive(Debug, Clone)]
pub struct JanitorSettings {
    pub budget: std::time::Duration,
    pub page_size: usize,
}

impl Default for JanitorSettings {
    fn default() -> Self {
        Self {
            budget: std::time::Duration::from_secs(240),
            page_size: 1000,
        }
    }
}

impl StorageSettings {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        Ok(Self {
            quota_unit_bytes: adiuva_access::quota_unit_bytes(source)?,
            orphan_grace_minutes: source.number_in(
                "ORPHAN_GRACE_MINUTES",
                60,
                0..=60 * 24 * 365,
            )?,
            inline_download_bytes: source.number_in(
                "INLINE_DOWNLOAD_BYTES",
                4 << 20,
                0..=4_400_000,
            )?,
            tombstone_retention_days: source.number_in("TOMBSTONE_RETENTION_DAYS", 30, 0..=3650)?,
            janitor: JanitorSettings {
                budget: std::time::Duration::from_secs(source.number_in(
                    "JANITOR_BUDGET_SECS",
                    240,
                    0..=900,
                )?),
                page_size: source.number_in("JANITOR_PAGE_SIZE", 1000, 1..=1000)?,
            },
            cursor_key: source.server_secret(source.env()?).ok().map(|secret| {
                adiuva_checksum::derive_key(
                    secret.expose().as_bytes(),
                    adiuva_checksum::purpose::SYNC_CURSORS,
                )
            }),
        })
    }
}

impl Component for Storage {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        let settings = StorageSettings::from_source(context.source())?;
        Ok(Self::new(context.get()?, context.get()?, &settings))
    }
}

impl Storage {
    pub fn new(db: Database, blobs: BlobStore, settings: &StorageSettings) -> Self {
        let grace_ms = i64::try_from(settings.orphan_grace_minutes)
            .unwrap_or(i64::MAX / 60_000)
            .saturating_mul(60_000);
        let retention_ms = i64::try_from(settings.tombstone_retention_days)
            .unwrap_or(i64::MAX / 86_400_000)
            .saturating_mul(86_400_000);
        Self {
            inner: Arc::new(Inner {
                db,
                blobs,
                quota_unit_bytes: settings.quota_unit_bytes,
                orphan_grace_ms: grace_ms,
                inline_download_bytes: settings.inline_download_bytes,
                tombstone_retention_ms: retention_ms,
                janitor: settings.janitor.clone(),
                cursors: settings.cursor_key.map(adiuva_checksum::Sealer::new),
            }),
        }
    }

    pub fn database(&self) -> &Database {
        &self.inner.db
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.inner.blobs
    }

    /// A blob for its reader: its bytes, or a URL to read it from when it is larger than a
    /// Lambda answer may be.
    pub async fn download(&self, blob: &BlobRef) -> Result<Download, StorageError> {
        if u64::try_from(blob.size).unwrap_or(0) > self.inner.inline_download_bytes {
            let url = self
                .inner
                .blobs
                .presign_get(&blob.key, DOWNLOAD_URL_TTL)
                .await?;
            return Ok(Download::Url(url));
        }
        let bytes =
            self.inner
                .blobs
                .get(&blob.key)
                .await?
                .ok_or_else(|| StorageError::BlobMissing {
                    key: blob.key.clone(),
                })?;
        Ok(Download::Inline(bytes))
    }

    /// Deletes every blob of a user (account deletion). Rows are already gone with the user.
    pub async fn purge_user_blobs(&self, user_id: &str) -> Result<usize, StorageError> {
        let blobs = self.inner.blobs.list(&format!("{user_id}/")).await?;
        // The packages of a deleted developer's plugins that stay listed for their buyers.
        let kept: Vec<String> = sqlx::query_scalar(
            "SELECT s3_package_key FROM plugins WHERE author_id = $1 AND s3_package_key IS NOT NULL",
        )
        .bind(user_id)
        .fetch_all(self.inner.db.pool())
        .await?;
        let mut purged = 0;
        for blob in blobs.iter().filter(|blob| !kept.contains(&blob.key)) {
            self.inner.blobs.delete(&blob.key).await?;
            purged += 1;
        }
        Ok(purged)
    }

    /// Deletes the new blob of a write that failed, unless the failure was a `COMMIT` whose
    /// outcome is unknown: then a committed row may point at it, and the janitor decides.
    async fn discard_unless_uncertain(&self, key: &str, err: &StorageError) {
        if matches!(err, StorageError::CommitUncertain(_)) {
            tracing::warn!(key, "the commit's outcome is unknown; the new blob is kept");
        } else {
            self.discard(key).await;
        }
    }

    /// Deletes a blob that no row refers to any more. A failure is logged, not returned: the
    /// operation that made the blob unnecessary has succeeded, and the janitor will retry.
    async fn discard(&self, key: &str) {
        if let Err(err) = self.inner.blobs.delete(key).await {
            tracing::warn!(key, error = %err, "could not delete an unreferenced blob; the janitor will");
        }
    }
}

/// Key of one stored version of a record's blob, under its space's prefix
/// (`{user_id}/...` or `teams/{team_id}/...`). Each write gets a new key, so concurrent
/// writers never overwrite each other's bytes and the old blob survives until the row moves.
fn record_key(space: Space<'_>, table: &str, record_id: &str) -> String {
    format!(
        "{}{table}/{record_id}/{}",
        space.key_prefix(),
        adiuva_db::new_id()
    )
}

/// Key of a backup. Tables start with a letter, so `_backups` can never clash with a record key.
fn backup_key(user_id: &str, backup_id: &str) -> String {
    format!("{user_id}/_backups/{backup_id}")
}

/// Key of a plugin package, under its developer (so account deletion removes it).
fn package_key(user_id: &str, package_id: &str) -> String {
    format!("{user_id}/_plugins/{package_id}")
}
