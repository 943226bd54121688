use std::borrow::Cow;

use adiuva_access::Tier;
use adiuva_checksum::ChecksumError;
use adiuva_error::{DomainError, ErrorKind, unavailable};
use adiuva_vectors::VectorError;

/// The two allowances of a tier in the vector store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VectorQuota {
    /// `TierLimits::vector_points`.
    Points,
    /// `TierLimits::vector_bytes`: bytes of the encrypted blobs.
    Bytes,
}

impl VectorQuota {
    fn unit(self) -> &'static str {
        match self {
            Self::Points => "points",
            Self::Bytes => "bytes",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VectorSpaceError {
    /// A request outside the bounds (sizes, counts, `top_k`, an unsupported vector size).
    #[error("{0}")]
    Invalid(String),
    /// The checksum of the point at `index` is malformed (422) or not its blob's (400).
    #[error("vectors[{index}]: {error}")]
    Checksum { index: usize, error: ChecksumError },
    /// The upsert would take the user past an allowance of their tier; nothing was written.
    #[error(
        "this would exceed the {} tier's vector quota of {limit} {}",
        .tier.as_str(),
        .quota.unit()
    )]
    QuotaExceeded {
        quota: VectorQuota,
        tier: Tier,
        limit: u64,
    },
    /// The account was deleted while the request was on its way; nothing was written.
    #[error("this account no longer exists")]
    AccountGone,
    /// The store's own errors, and the user's size (`DimensionMismatch`) and vector checks
    /// (`NotFinite`), which keep the store's kind and code.
    #[error(transparent)]
    Store(#[from] VectorError),
    /// `COMMIT` failed after the store was written: the points may be stored but not counted.
    /// Repeating the request (upserts and deletes are idempotent) sets both straight.
    #[error("the database did not confirm the commit")]
    CommitUncertain(#[source] sqlx::Error),
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

impl DomainError for VectorSpaceError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Invalid(_)
            | Self::Checksum {
                error: ChecksumError::Malformed,
                ..
            } => ErrorKind::Invalid,
            Self::Checksum {
                error: ChecksumError::Mismatch,
                ..
            } => ErrorKind::BadRequest,
            Self::QuotaExceeded { .. } => ErrorKind::QuotaExceeded,
            Self::AccountGone => ErrorKind::Unauthenticated,
            Self::Store(err) => err.kind(),
            Self::CommitUncertain(_) => ErrorKind::Unavailable,
            Self::Database(err) => adiuva_db::kind_of(err),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "validation_error",
            Self::Checksum {
                error: ChecksumError::Malformed,
                ..
            } => "invalid_checksum",
            Self::Checksum {
                error: ChecksumError::Mismatch,
                ..
            } => "checksum_mismatch",
            // The codes of AccessError::QuotaExceeded and of a token whose account is gone.
            Self::QuotaExceeded { .. } => "quota_exceeded",
            Self::AccountGone => "invalid_token",
            Self::Store(err) => err.code(),
            Self::CommitUncertain(_) | Self::Database(_) => match self.kind() {
                ErrorKind::Unavailable => "dependency_unavailable",
                _ => "internal_error",
            },
        }
    }

    fn public_detail(&self) -> Option<Cow<'static, str>> {
        match (self, self.kind()) {
            (Self::Store(err), _) => err.public_detail(),
            (Self::CommitUncertain(_), _) => Some(
                "the database did not confirm the write; repeat the request, which is safe".into(),
            ),
            (Self::Database(_), ErrorKind::Unavailable) => Some(unavailable("the database")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_codes() {
        let cases: Vec<(VectorSpaceError, ErrorKind, &str)> = vec![
            (
                VectorSpaceError::Invalid("x".into()),
                ErrorKind::Invalid,
                "validation_error",
            ),
            (
                VectorSpaceError::Checksum {
                    index: 0,
                    error: ChecksumError::Malformed,
                },
                ErrorKind::Invalid,
                "invalid_checksum",
            ),
            (
                VectorSpaceError::Checksum {
                    index: 0,
                    error: ChecksumError::Mismatch,
                },
                ErrorKind::BadRequest,
                "checksum_mismatch",
            ),
            (
                VectorSpaceError::QuotaExceeded {
                    quota: VectorQuota::Points,
                    tier: Tier::Free,
                    limit: 1000,
                },
                ErrorKind::QuotaExceeded,
                "quota_exceeded",
            ),
            (
                VectorSpaceError::AccountGone,
                ErrorKind::Unauthenticated,
                "invalid_token",
            ),
            (
                VectorSpaceError::Store(VectorError::DimensionMismatch {
                    expected: 32,
                    got: 256,
                }),
                ErrorKind::Invalid,
                "invalid_vector",
            ),
        ];
        for (err, kind, code) in cases {
            assert_eq!((err.kind(), err.code()), (kind, code), "{err}");
        }
    }

    #[test]
    fn quota_messages_name_the_allowance() {
        let err = VectorSpaceError::QuotaExceeded {
            quota: VectorQuota::Bytes,
            tier: Tier::Pro,
            limit: 1 << 30,
        };
        assert_eq!(
            err.to_string(),
            "this would exceed the pro tier's vector quota of 1073741824 bytes"
        );
        let err = VectorSpaceError::QuotaExceeded {
            quota: VectorQuota::Points,
            tier: Tier::Free,
            limit: 1000,
        };
        assert_eq!(
            err.to_string(),
            "this would exceed the free tier's vector quota of 1000 points"
        );
    }
}
