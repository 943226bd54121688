//! Large blobs: a presigned upload straight to the blob store, then a commit in which the
//! server checks size and SHA-256 of what was stored before any record or backup refers to it.
//! Used when a blob would not fit through API Gateway and Lambda in one request.

use std::collections::BTreeMap;

use adiuva_access::quota::{Delta, reserve, used_bytes_of};
use adiuva_access::tiers::{AccessError, Feature, Quota, require_feature};
use adiuva_access::{Caller, Tier};
use adiuva_db::{new_id, now_ms};
use serde::{Deserialize, Serialize};

use crate::backups::{BackupMeta, NewBackup, backup_limit, validate_backup};
use crate::records::{RecordMeta, SpaceRecord, commit, forget_upload, validate_table};
use crate::space::{Space, Writer, space_sql};
use crate::{Storage, StorageError, backup_key, package_key, record_key};

/// The largest blob one upload may carry: S3's limit for a single PUT.
pub const MAX_UPLOAD_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// Uploads a user may have started and neither committed nor let expire.
pub const MAX_OPEN_UPLOADS: i64 = 20;

/// The largest plugin package.
pub const MAX_PACKAGE_BYTES: u64 = 20 * 1024 * 1024;

/// What the client is about to upload.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "purpose", rename_all = "snake_case")]
pub enum UploadRequest {
    /// A new record (give `table`) or a new blob for an existing one (give `record_id`, and
    /// `if_match` to refuse it if the record moved on). With neither, 422.
    Record {
        /// The new record's table (read when there is no `record_id`): a lowercase letter,
        /// then lowercase letters, digits or `_`, at most 64 characters.
        #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z][a-z0-9_]{0,63}$"))]
        table: Option<String>,
        /// The record whose blob the upload replaces.
        record_id: Option<String>,
        /// The version the upload replaces (with `record_id`); another one is 412.
        if_match: Option<i64>,
        #[cfg_attr(feature = "openapi", schema(schema_with = size_bytes))]
        size_bytes: u64,
        /// Lowercase hex SHA-256 of the blob.
        #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
        checksum: String,
    },
    /// A backup, with the fields the `X-Backup-*` headers carry on the direct route.
    Backup {
        /// The client's backup format version.
        #[cfg_attr(feature = "openapi", schema(minimum = 0))]
        version: i64,
        /// When the backup was made, ms since the epoch, before the year 10000.
        #[cfg_attr(
            feature = "openapi",
            schema(minimum = 0, maximum = 253_402_300_799_999_i64)
        )]
        timestamp: i64,
        /// Chunks in the backup.
        #[serde(default = "one")]
        #[cfg_attr(
            feature = "openapi",
            schema(minimum = 1, maximum = 100_000, default = 1)
        )]
        chunk_count: i64,
        #[cfg_attr(feature = "openapi", schema(schema_with = size_bytes))]
        size_bytes: u64,
        /// Lowercase hex SHA-256 of the blob.
        #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
        checksum: String,
    },
    /// A plugin package (an opaque archive, at most 20 MiB) for a marketplace submission: a
    /// tier with the marketplace (Power, Team; else 403), and its bytes count against the
    /// cloud storage quota until the janitor collects it (unused, or of a rejected version).
    PluginPackage {
        #[cfg_attr(feature = "openapi", schema(schema_with = size_bytes))]
        size_bytes: u64,
        /// Lowercase hex SHA-256 of the package.
        #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
        checksum: String,
    },
}

/// A size in bytes. Its upper bound (by purpose) is left to the descriptions: past it the
/// answer is 413, which schema validators do not expect of a schema violation. No integer
/// `format` either: `int64` would bound it at 2^63 - 1, while sizes up to 2^64 - 1 parse (and
/// are 413).
#[cfg(feature = "openapi")]
fn size_bytes() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Integer)
        .minimum(Some(0))
        .description(Some(
            "The exact size in bytes: at most 5 GiB (5368709120) for a record or a backup, \
             20 MiB (20971520) for a plugin package; more is 413.",
        ))
        .build()
}

fn one() -> i64 {
    1
}

/// Where and how to upload, and the id to commit afterwards.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadTicket {
    pub upload_id: String,
    /// PUT the exact bytes here, with `headers`.
    pub url: String,
    pub method: String,
    pub headers: BTreeMap<String, String>,
    /// The URL stops working at this time (ms since the epoch).
    pub expires_at: i64,
    /// The record or backup id the upload becomes once committed.
    pub target_id: String,
}

/// What a commit produced.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "purpose", rename_all = "snake_case")]
pub enum Committed {
    Record { record: RecordMeta },
    Backup { backup: BackupMeta },
    PluginPackage { package: PackageMeta },
}

/// A committed plugin package: name `package_id` in a submission.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PackageMeta {
    pub package_id: String,
    pub size_bytes: i64,
    /// `sha256:<hex>`, verified against the stored bytes.
    pub checksum: String,
    #[serde(skip)]
    pub s3_key: String,
    pub created_at: i64,
}

#[derive(sqlx::FromRow)]
pub(crate) struct PendingUpload {
    purpose: String,
    target_id: String,
    table_name: Option<String>,
    expected_version: Option<i64>,
    backup_version: Option<i64>,
    backup_timestamp: Option<i64>,
    chunk_count: Option<i64>,
    s3_key: String,
    size_bytes: i64,
    checksum: String,
    expires_at: i64,
    /// A team upload's team key version.
    pub(crate) key_version: Option<i64>,
}

impl PendingUpload {
    pub(crate) fn new(size: u64, checksum: String) -> Self {
        Self {
            purpose: String::new(),
            target_id: String::new(),
            table_name: None,
            expected_version: None,
            backup_version: None,
            backup_timestamp: None,
            chunk_count: None,
            s3_key: String::new(),
            size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
            checksum,
            expires_at: 0,
            key_version: None,
        }
    }
}

impl Storage {
    /// Refuses early what the commit would refuse for quota, so no bytes travel in vain: what
    /// is stored, plus what the space's open uploads of the same kind announced, plus this.
    async fn quota_precheck(
        &self,
        space: Space<'_>,
        tier: Tier,
        quota: Quota,
        limit: Option<u64>,
        size: u64,
    ) -> Result<(), StorageError> {
        let Some(limit) = limit else { return Ok(()) };
        // Packages count against cloud storage like records.
        let (purpose, also) = match quota {
            Quota::CloudStorage => ("record", "plugin_package"),
            Quota::Backup => ("backup", "backup"),
        };
        let mut conn = self.inner.db.pool().acquire().await?;
        let used =
            u64::try_from(used_bytes_of(&mut conn, space.holder(), quota).await?).unwrap_or(0);
        let pending: i64 = sqlx::query_scalar(space_sql!(
            space,
            "SELECT CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT) FROM pending_uploads \
             WHERE {uploads} AND purpose IN ($2, $4) AND expires_at >= $3"
        ))
        .bind(space.owner())
        .bind(purpose)
        .bind(now_ms())
        .bind(also)
        .fetch_one(&mut *conn)
        .await?;
        let pending = u64::try_from(pending).unwrap_or(0);
        if used.saturating_add(pending).saturating_add(size) > limit {
            return Err(AccessError::QuotaExceeded { quota, tier }.into());
        }
        Ok(())
    }

    /// Refuses a new upload when the space has `MAX_OPEN_UPLOADS` open already.
    pub(crate) async fn check_open_uploads(&self, space: Space<'_>) -> Result<(), StorageError> {
        let open: i64 = sqlx::query_scalar(space_sql!(
            space,
            "SELECT COUNT(*) FROM pending_uploads WHERE {uploads} AND expires_at >= $2"
        ))
        .bind(space.owner())
        .bind(now_ms())
        .fetch_one(self.inner.db.pool())
        .await?;
        if open >= MAX_OPEN_UPLOADS {
            return Err(StorageError::TooManyUploads {
                limit: MAX_OPEN_UPLOADS,
            });
        }
        Ok(())
    }

    /// Fills in the pending upload of a record: a new blob for `record_id` (refused if it is
    /// not at `if_match`), or a new record of `table`.
    pub(crate) async fn prepare_record_upload(
        &self,
        writer: Writer<'_>,
        table: Option<String>,
        record_id: Option<String>,
        if_match: Option<i64>,
        size: u64,
        pending: &mut PendingUpload,
    ) -> Result<(), StorageError> {
        let space = writer.space;
        let limit = adiuva_access::tiers::quota_bytes(
            writer.tier,
            Quota::CloudStorage,
            self.inner.quota_unit_bytes,
        );
        pending.purpose = "record".into();
        if let Some(record_id) = record_id {
            let (current, _) = self.stored(space, &record_id).await?;
            let current = current.meta;
            if let Some(expected) = if_match
                && expected != current.version
            {
                return Err(StorageError::VersionConflict {
                    current: current.version,
                });
            }
            let growth = size.saturating_sub(u64::try_from(current.size_bytes).unwrap_or(0));
            self.quota_precheck(space, writer.tier, Quota::CloudStorage, limit, growth)
                .await?;
            pending.s3_key = record_key(space, &current.table, &record_id);
            pending.expected_version = Some(if_match.unwrap_or(current.version));
            pending.table_name = Some(current.table);
            pending.target_id = record_id;
        } else {
            let table = table.ok_or(StorageError::Invalid(
                "a new record needs `table`; an update needs `record_id`",
            ))?;
            validate_table(&table)?;
            if limit == Some(0) {
                return Err(AccessError::QuotaExceeded {
                    quota: Quota::CloudStorage,
                    tier: writer.tier,
                }
                .into());
            }
            self.quota_precheck(space, writer.tier, Quota::CloudStorage, limit, size)
                .await?;
            let record_id = new_id();
            pending.s3_key = record_key(space, &table, &record_id);
            pending.table_name = Some(table);
            pending.target_id = record_id;
        }
        Ok(())
    }

    pub async fn start_upload(
        &self,
        user: &Caller,
        request: UploadRequest,
    ) -> Result<UploadTicket, StorageError> {
        let (size, checksum) = match &request {
            UploadRequest::Record {
                size_bytes,
                checksum,
                ..
            }
            | UploadRequest::Backup {
                size_bytes,
                checksum,
                ..
            }
            | UploadRequest::PluginPackage {
                size_bytes,
                checksum,
            } => (*size_bytes, checksum.clone()),
        };
        adiuva_checksum::parse(&checksum)?;
        let limit = match request {
            UploadRequest::PluginPackage { .. } => MAX_PACKAGE_BYTES,
            _ => MAX_UPLOAD_BYTES,
        };
        if size > limit {
            return Err(StorageError::TooLarge { limit });
        }
        let writer = Writer::personal(user);
        self.check_open_uploads(writer.space).await?;
        let mut pending = PendingUpload::new(size, checksum);
        match request {
            UploadRequest::Record {
                table,
                record_id,
                if_match,
                ..
            } => {
                self.prepare_record_upload(writer, table, record_id, if_match, size, &mut pending)
                    .await?;
            }
            UploadRequest::Backup {
                version,
                timestamp,
                chunk_count,
                ..
            } => {
                validate_backup(version, timestamp, chunk_count)?;
                let limit = backup_limit(self, user)?;
                self.quota_precheck(writer.space, user.tier, Quota::Backup, limit, size)
                    .await?;
                let backup_id = new_id();
                pending.purpose = "backup".into();
                pending.s3_key = backup_key(&user.id, &backup_id);
                pending.backup_version = Some(version);
                pending.backup_timestamp = Some(timestamp);
                pending.chunk_count = Some(chunk_count);
                pending.target_id = backup_id;
            }
            UploadRequest::PluginPackage { .. } => {
                let limit = package_quota(self, user)?;
                self.quota_precheck(writer.space, user.tier, Quota::CloudStorage, limit, size)
                    .await?;
                let package_id = new_id();
                pending.purpose = "plugin_package".into();
                pending.s3_key = package_key(&user.id, &package_id);
                pending.target_id = package_id;
            }
        }

        self.open_upload(writer, pending, size).await
    }

    /// Presigns the upload URL of a pending upload and records it.
    pub(crate) async fn open_upload(
        &self,
        writer: Writer<'_>,
        pending: PendingUpload,
        size: u64,
    ) -> Result<UploadTicket, StorageError> {
        let presigned = self
            .inner
            .blobs
            .presign_put(&pending.s3_key, size, &pending.checksum)
            .await?;
        let upload_id = new_id();
        let team_id = match writer.space {
            Space::Team(team_id) => Some(team_id),
            Space::Personal(_) => None,
        };
        sqlx::query(
            "INSERT INTO pending_uploads (id, user_id, purpose, target_id, table_name, expected_version, backup_version, \
             backup_timestamp, chunk_count, s3_key, size_bytes, checksum, created_at, expires_at, team_id, key_version) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(&upload_id)
        .bind(writer.author)
        .bind(&pending.purpose)
        .bind(&pending.target_id)
        .bind(&pending.table_name)
        .bind(pending.expected_version)
        .bind(pending.backup_version)
        .bind(pending.backup_timestamp)
        .bind(pending.chunk_count)
        .bind(&pending.s3_key)
        .bind(pending.size_bytes)
        .bind(&pending.checksum)
        .bind(now_ms())
        .bind(presigned.expires_at_ms)
        .bind(team_id)
        .bind(writer.key_version)
        .execute(self.inner.db.pool())
        .await?;
        tracing::info!(
            owner = writer.space.owner(),
            author = writer.author,
            upload_id,
            purpose = pending.purpose,
            size,
            "upload started"
        );
        Ok(UploadTicket {
            upload_id,
            url: presigned.url,
            method: presigned.method,
            headers: presigned.headers.into_iter().collect(),
            expires_at: presigned.expires_at_ms,
            target_id: pending.target_id,
        })
    }

    /// Verifies what was uploaded and makes it a record or a backup.
    pub async fn commit_upload(
        &self,
        user: &Caller,
        upload_id: &str,
    ) -> Result<Committed, StorageError> {
        let writer = Writer::personal(user);
        let pending = self.verified_upload(writer.space, upload_id).await?;
        let key = pending.s3_key.as_str();
        let committed = match pending.purpose.as_str() {
            "record" => {
                let record = self
                    .finish_record_upload(writer, upload_id, &pending)
                    .await?;
                Committed::Record {
                    record: record.meta,
                }
            }
            "plugin_package" => {
                let finished = self
                    .finish_package(
                        user,
                        &pending.target_id,
                        key,
                        pending.size_bytes,
                        &pending.checksum,
                        upload_id,
                    )
                    .await;
                let package = match finished {
                    Ok(package) => package,
                    Err(err) => {
                        self.discard_unless_uncertain(key, &err).await;
                        return Err(err);
                    }
                };
                Committed::PluginPackage { package }
            }
            _ => {
                let backup = NewBackup {
                    version: pending.backup_version.unwrap_or_default(),
                    timestamp: pending.backup_timestamp.unwrap_or_default(),
                    checksum: pending.checksum.clone(),
                    chunk_count: pending.chunk_count.unwrap_or(1),
                };
                let backup = self
                    .finish_backup(
                        user,
                        &pending.target_id,
                        key,
                        pending.size_bytes,
                        &backup,
                        Some(upload_id),
                    )
                    .await?;
                Committed::Backup { backup }
            }
        };
        tracing::info!(user_id = user.id, upload_id, "upload committed");
        Ok(committed)
    }

    /// A space's pending upload whose stored bytes have the announced size and checksum; a
    /// mismatch deletes them (the upload stays open for a retry with the right bytes).
    pub(crate) async fn verified_upload(
        &self,
        space: Space<'_>,
        upload_id: &str,
    ) -> Result<PendingUpload, StorageError> {
        let pending: Option<PendingUpload> = sqlx::query_as(space_sql!(
            space,
            "SELECT purpose, target_id, table_name, expected_version, backup_version, backup_timestamp, chunk_count, \
             s3_key, size_bytes, checksum, expires_at, key_version FROM pending_uploads WHERE {uploads} AND id = $2"
        ))
        .bind(space.owner())
        .bind(upload_id)
        .fetch_optional(self.inner.db.pool())
        .await?;
        let pending = pending
            .filter(|p| p.expires_at >= now_ms())
            .ok_or(StorageError::UploadNotFound)?;

        let (size, digest) = self
            .inner
            .blobs
            .digest(&pending.s3_key)
            .await?
            .ok_or(StorageError::UploadIncomplete)?;
        if i64::try_from(size).ok() != Some(pending.size_bytes) {
            self.discard(&pending.s3_key).await;
            return Err(StorageError::UploadSize {
                announced: pending.size_bytes,
                actual: size,
            });
        }
        if let Err(err) = adiuva_checksum::same_digest(&digest, &pending.checksum) {
            self.discard(&pending.s3_key).await;
            return Err(err.into());
        }
        Ok(pending)
    }

    /// Makes a verified record upload the new record, or the record's new blob.
    pub(crate) async fn finish_record_upload(
        &self,
        writer: Writer<'_>,
        upload_id: &str,
        pending: &PendingUpload,
    ) -> Result<SpaceRecord, StorageError> {
        let key = pending.s3_key.as_str();
        match pending.expected_version {
            None => {
                let table = pending.table_name.as_deref().unwrap_or_default();
                self.finish_create(
                    writer,
                    table,
                    &pending.target_id,
                    key,
                    pending.size_bytes,
                    &pending.checksum,
                    Some(upload_id),
                )
                .await
            }
            Some(expected) => {
                self.finish_update(
                    writer,
                    &pending.target_id,
                    key,
                    pending.size_bytes,
                    &pending.checksum,
                    expected,
                    Some(upload_id),
                )
                .await
            }
        }
    }
}

/// The cloud storage a package may use: only a tier with the marketplace uploads packages,
/// and a tier without cloud storage (none has the marketplace today) stores none.
fn package_quota(storage: &Storage, user: &Caller) -> Result<Option<u64>, StorageError> {
    require_feature(user.tier, Feature::PluginMarketplace)?;
    let limit = adiuva_access::tiers::quota_bytes(
        user.tier,
        Quota::CloudStorage,
        storage.inner.quota_unit_bytes,
    );
    if limit == Some(0) {
        return Err(AccessError::QuotaExceeded {
            quota: Quota::CloudStorage,
            tier: user.tier,
        }
        .into());
    }
    Ok(limit)
}

impl Storage {
    /// Whether an upload to `key` is still open: a pending upload that has not expired targets
    /// exactly that key. An upload URL names its key, and that key is written once; but once
    /// its upload was committed and the record then moved on to a newer blob, the old key is
    /// deleted and a write-once check alone would let the URL write it again, as an orphan
    /// nobody counts. The local upload route asks this before it takes any byte. (A presigned
    /// S3 URL cannot be asked: S3 refuses a second write while the blob exists, and what the
    /// URL can write after a move, until it expires, is the same announced bytes, which no row
    /// refers to and the janitor removes.)
    pub async fn upload_open(&self, key: &str) -> Result<bool, StorageError> {
        let open: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pending_uploads WHERE s3_key = $1 AND expires_at >= $2",
        )
        .bind(key)
        .bind(now_ms())
        .fetch_one(self.inner.db.pool())
        .await?;
        Ok(open > 0)
    }

    /// Records a verified package and ends its upload, in one transaction that reserves its
    /// bytes under the cloud storage quota (the tier is checked again: it is the live one).
    /// `quota_counted` tells the janitor to give them back when it collects the package.
    async fn finish_package(
        &self,
        user: &Caller,
        package_id: &str,
        key: &str,
        size_bytes: i64,
        checksum: &str,
        upload_id: &str,
    ) -> Result<PackageMeta, StorageError> {
        let limit = package_quota(self, user)?;
        let created_at = now_ms();
        let mut tx = self.inner.db.pool().begin().await?;
        reserve(
            &mut tx,
            &user.id,
            user.tier,
            Quota::CloudStorage,
            Delta {
                count: 0,
                bytes: size_bytes,
            },
            limit,
        )
        .await?;
        forget_upload(&mut tx, Some(upload_id)).await?;
        sqlx::query(
            "INSERT INTO plugin_packages (id, user_id, s3_key, size_bytes, checksum, created_at, \
             quota_counted) VALUES ($1, $2, $3, $4, $5, $6, 1)",
        )
        .bind(package_id)
        .bind(&user.id)
        .bind(key)
        .bind(size_bytes)
        .bind(checksum)
        .bind(created_at)
        .execute(&mut *tx)
        .await?;
        commit(tx).await?;
        Ok(PackageMeta {
            package_id: package_id.to_owned(),
            size_bytes,
            checksum: checksum.to_owned(),
            s3_key: key.to_owned(),
            created_at,
        })
    }

    /// One of `user_id`'s committed packages.
    pub async fn package(
        &self,
        user_id: &str,
        package_id: &str,
    ) -> Result<Option<PackageMeta>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT id AS package_id, size_bytes, checksum, s3_key, created_at FROM plugin_packages \
             WHERE id = $1 AND user_id = $2",
        )
        .bind(package_id)
        .bind(user_id)
        .fetch_optional(self.inner.db.pool())
        .await?)
    }
}
