//! Account deletion (SPEC section 4: every row, blob, vector and backup of the user).
//!
//! [`Erasure::delete_account`] deletes the user's rows (through foreign keys) in one
//! transaction with an `account_deletions` note, then purges the blobs and the vectors. The
//! account is gone once the transaction commits; if a store fails afterwards, the note makes the
//! janitor finish the purge ([`Erasure::finish_pending`]). Checking the password first is the
//! caller's job (the account function), so the janitor links no password hashing.

use adiuva_config::{Component, ConfigError, Context};
use adiuva_error::{DomainError, ErrorKind};
use adiuva_storage::{Storage, StorageError};
use adiuva_vectors::{VectorError, VectorStore};

#[derive(Debug, thiserror::Error)]
pub enum ErasureError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Vectors(#[from] VectorError),
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

impl DomainError for ErasureError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Storage(err) => err.kind(),
            Self::Vectors(err) => err.kind(),
            Self::Database(err) => adiuva_db::kind_of(err),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Storage(err) => err.code(),
            Self::Vectors(err) => err.code(),
            Self::Database(err) if adiuva_db::is_unavailable(err) => "dependency_unavailable",
            Self::Database(_) => "internal_error",
        }
    }
}

/// What one janitor pass over deleted accounts did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub purged: u64,
    pub pending: u64,
}

/// Account deletion over the stores that hold a user's data. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Erasure {
    storage: Storage,
    vectors: VectorStore,
}

impl Component for Erasure {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        Ok(Self::new(context.get()?, context.get()?))
    }
}

impl Erasure {
    pub fn new(storage: Storage, vectors: VectorStore) -> Self {
        Self { storage, vectors }
    }

    /// Deletes the account: rows first, in one transaction with the note that makes the janitor
    /// finish the purge; then blobs and vectors. A purge failure is logged, not returned: the
    /// account is gone either way.
    pub async fn delete_account(&self, user_id: &str) -> Result<(), ErasureError> {
        let mut tx = self.storage.database().pool().begin().await?;
        Storage::note_account_deletion(&mut tx, user_id).await?;
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(user_id, "account deleted");
        match self.purge(user_id).await {
            Ok(blobs) => tracing::info!(user_id, blobs, "account data purged"),
            Err(err) => tracing::warn!(
                user_id,
                error = %adiuva_error::cause_chain(&err),
                "purge incomplete; the janitor will finish it"
            ),
        }
        Ok(())
    }

    /// Deletes the blobs and vectors of a deleted account and records that it is done.
    pub async fn purge(&self, user_id: &str) -> Result<usize, ErasureError> {
        let blobs = self.storage.purge_user_blobs(user_id).await?;
        self.vectors.delete_user(user_id).await?;
        self.storage.mark_purged(user_id).await?;
        Ok(blobs)
    }

    /// Retries the purge of every deleted account not purged yet (the janitor).
    pub async fn finish_pending(&self) -> Result<PurgeReport, ErasureError> {
        let mut report = PurgeReport::default();
        for user_id in self.storage.unpurged_accounts().await? {
            match self.purge(&user_id).await {
                Ok(_) => report.purged += 1,
                Err(err) => {
                    report.pending += 1;
                    tracing::warn!(user_id, error = %adiuva_error::cause_chain(&err), "account purge still incomplete");
                }
            }
        }
        Ok(report)
    }
}
