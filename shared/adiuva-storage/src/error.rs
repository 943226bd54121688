use adiuva_auth::quota::QuotaError;
use adiuva_auth::tiers::TierError;
use adiuva_blob::BlobError;
use adiuva_checksum::ChecksumError;
use adiuva_http::{ApiError, StatusCode};

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Checksum(#[from] ChecksumError),
    #[error("record not found")]
    RecordNotFound,
    #[error("backup not found")]
    BackupNotFound,
    #[error("upload not found or expired")]
    UploadNotFound,
    #[error("nothing has been uploaded to the upload URL yet")]
    UploadIncomplete,
    #[error("the uploaded blob is {actual} bytes but {announced} were announced")]
    UploadSize { announced: i64, actual: u64 },
    #[error("the record is at version {current}; fetch it and retry")]
    VersionConflict { current: i64 },
    #[error("blob is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error(transparent)]
    Tier(#[from] TierError),
    #[error("the stored blob of a record is missing")]
    BlobMissing { key: String },
    #[error("blob store operation failed")]
    Blob(#[from] BlobError),
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

impl From<QuotaError> for StorageError {
    fn from(err: QuotaError) -> Self {
        match err {
            QuotaError::Exceeded(tier) => StorageError::Tier(tier),
            QuotaError::Database(db) => StorageError::Database(db),
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        let detail = err.to_string();
        match err {
            StorageError::Invalid(_) => ApiError::unprocessable("validation_error", detail),
            StorageError::Checksum(ChecksumError::Malformed) => {
                ApiError::unprocessable("invalid_checksum", detail)
            }
            StorageError::Checksum(ChecksumError::Mismatch) => {
                ApiError::bad_request("checksum_mismatch", detail)
            }
            StorageError::RecordNotFound
            | StorageError::BackupNotFound
            | StorageError::UploadNotFound => ApiError::not_found(detail),
            StorageError::UploadIncomplete => ApiError::conflict("upload_incomplete", detail),
            StorageError::UploadSize { .. } => ApiError::bad_request("size_mismatch", detail),
            StorageError::VersionConflict { .. } => {
                ApiError::precondition_failed("version_conflict", detail)
            }
            StorageError::TooLarge { .. } => {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
            }
            StorageError::Tier(tier) => tier.into(),
            StorageError::BlobMissing { .. } => ApiError::internal(err),
            StorageError::Blob(BlobError::Unavailable(_)) => {
                ApiError::unavailable("the blob store", err)
            }
            StorageError::Blob(_) => ApiError::internal(err),
            StorageError::Database(db) => adiuva_auth::database_error(db),
        }
    }
}
