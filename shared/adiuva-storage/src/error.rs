use adiuva_access::quota::QuotaError;
use adiuva_access::tiers::AccessError;
use adiuva_blob::BlobError;
use adiuva_checksum::ChecksumError;
use std::borrow::Cow;

use adiuva_error::{DomainError, ErrorKind, unavailable};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    #[error("the cursor is not one this list gave; start again without it")]
    InvalidCursor,
    /// A sync cursor older than the tombstones kept: deletions after it may be gone.
    #[error("this sync cursor is older than the deletions kept; sync again from 0")]
    ChangesExpired,
    #[error("record not found")]
    RecordNotFound,
    /// Not a member of the team (or no such team): answered like a missing team, so that a
    /// team's existence does not leak.
    #[error("team not found")]
    TeamNotFound,
    #[error("backup not found")]
    BackupNotFound,
    #[error("upload not found or expired")]
    UploadNotFound,
    #[error("this upload was committed by another request")]
    UploadCommitted,
    #[error("{limit} uploads are open already: commit them or let them expire first")]
    TooManyUploads { limit: i64 },
    /// `COMMIT` failed and may or may not have been applied.
    #[error("the database did not confirm the commit")]
    CommitUncertain(#[source] sqlx::Error),
    #[error("nothing has been uploaded to the upload URL yet")]
    UploadIncomplete,
    #[error("the uploaded blob is {actual} bytes but {announced} were announced")]
    UploadSize { announced: i64, actual: u64 },
    #[error("the record is at version {current}; fetch it and retry")]
    VersionConflict { current: i64 },
    #[error("blob is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("the stored blob of a record is missing")]
    BlobMissing { key: String },
    #[error("blob store operation failed")]
    Blob(#[from] BlobError),
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
    /// No key to seal sync cursors with (no server secret).
    #[error("sync cursors cannot be sealed: {0}")]
    Cursors(&'static str),
    /// An upload URL used when its upload is no longer open (committed, or the record moved
    /// on): the URL wrote its blob once already.
    #[error("this upload is closed (committed or expired): start a new upload")]
    UploadClosed,
}

/// The membership lookup fails only on the database.
impl From<adiuva_teams::TeamError> for StorageError {
    fn from(err: adiuva_teams::TeamError) -> Self {
        match err {
            adiuva_teams::TeamError::Database(db) => StorageError::Database(db),
            other => {
                tracing::error!(error = %other, "team membership lookup failed");
                StorageError::TeamNotFound
            }
        }
    }
}

impl From<QuotaError> for StorageError {
    fn from(err: QuotaError) -> Self {
        match err {
            QuotaError::Exceeded(err) => StorageError::Access(err),
            QuotaError::Database(db) => StorageError::Database(db),
        }
    }
}

impl DomainError for StorageError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(_) | Self::InvalidCursor | Self::Checksum(ChecksumError::Malformed) => {
                ErrorKind::Invalid
            }
            Self::Checksum(ChecksumError::Mismatch) | Self::UploadSize { .. } => {
                ErrorKind::BadRequest
            }
            Self::RecordNotFound
            | Self::TeamNotFound
            | Self::BackupNotFound
            | Self::UploadNotFound => ErrorKind::NotFound,
            Self::UploadIncomplete | Self::UploadCommitted | Self::TooManyUploads { .. } => {
                ErrorKind::Conflict
            }
            // The write may have happened: retrying later shows which.
            Self::CommitUncertain(_) => ErrorKind::Unavailable,
            Self::VersionConflict { .. } | Self::UploadClosed => ErrorKind::PreconditionFailed,
            Self::ChangesExpired => ErrorKind::Gone,
            Self::TooLarge { .. } => ErrorKind::TooLarge,
            Self::Access(err) => err.kind(),
            Self::BlobMissing { .. } | Self::Cursors(_) => ErrorKind::Internal,
            Self::Blob(err) if err.is_unavailable() => ErrorKind::Unavailable,
            Self::Blob(_) => ErrorKind::Internal,
            Self::Database(err) => adiuva_db::kind_of(err),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "validation_error",
            Self::InvalidCursor => "invalid_cursor",
            Self::ChangesExpired => "cursor_expired",
            Self::Checksum(ChecksumError::Malformed) => "invalid_checksum",
            Self::Checksum(ChecksumError::Mismatch) => "checksum_mismatch",
            Self::RecordNotFound
            | Self::TeamNotFound
            | Self::BackupNotFound
            | Self::UploadNotFound => "not_found",
            Self::UploadIncomplete => "upload_incomplete",
            Self::UploadCommitted => "upload_committed",
            Self::TooManyUploads { .. } => "too_many_uploads",
            Self::UploadSize { .. } => "size_mismatch",
            Self::VersionConflict { .. } => "version_conflict",
            Self::TooLarge { .. } => "payload_too_large",
            Self::Access(err) => err.code(),
            Self::BlobMissing { .. } | Self::Cursors(_) => "internal_error",
            Self::UploadClosed => "already_uploaded",
            Self::Blob(_) | Self::Database(_) | Self::CommitUncertain(_) => match self.kind() {
                ErrorKind::Unavailable => "dependency_unavailable",
                _ => "internal_error",
            },
        }
    }

    fn public_detail(&self) -> Option<Cow<'static, str>> {
        match (self, self.kind()) {
            (Self::Blob(_), ErrorKind::Unavailable) => Some(unavailable("the blob store")),
            (Self::Database(_), ErrorKind::Unavailable) => Some(unavailable("the database")),
            (Self::CommitUncertain(_), _) => Some(
                "the database did not confirm the write; read the resource to see whether it happened".into(),
            ),
            _ => None,
        }
    }
}
