//! Account deletion (SPEC section 4: every row, blob, vector and backup of the user).
//!
//! Except the record of money: a purchase and its revenue event outlive the accounts on both
//! sides (they keep the ids, nothing personal), so that a later refund or chargeback still
//! finds what to reverse. A developer's approved plugins stay, closed to new installs, their
//! packages kept, for those who bought or installed them; everything else of theirs goes.
//! Ending the user's Stripe subscription comes first and is the account function's (this
//! crate links no Stripe client).
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
    #[error("the account owns a team: transfer its ownership to another member or delete it first")]
    OwnerMustTransfer,
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

impl DomainError for ErasureError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Storage(err) => err.kind(),
            Self::Vectors(err) => err.kind(),
            Self::OwnerMustTransfer => ErrorKind::Conflict,
            Self::Database(err) => adiuva_db::kind_of(err),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Storage(err) => err.code(),
            Self::Vectors(err) => err.code(),
            Self::OwnerMustTransfer => "owner_must_transfer",
            Self::Database(err) if adiuva_db::is_unavailable(err) => "dependency_unavailable",
            Self::Database(_) => "internal_error",
        }
    }
}

async fn refuse_team_owner(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
) -> Result<(), ErasureError> {
    let owned: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM team_members WHERE user_id = $1 AND role = 'owner'",
    )
    .bind(user_id)
    .fetch_one(conn)
    .await?;
    if owned > 0 {
        return Err(ErasureError::OwnerMustTransfer);
    }
    Ok(())
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

    /// 409 `owner_must_transfer` while the user owns a team (issue 21): a team keeps exactly
    /// one owner, so ownership moves to another member, or the team is deleted, first. The
    /// account function asks before it ends the subscription at Stripe;
    /// [`Erasure::delete_account`] asks again inside its transaction.
    pub async fn check_deletable(&self, user_id: &str) -> Result<(), ErasureError> {
        let mut conn = self.storage.database().pool().acquire().await?;
        refuse_team_owner(&mut conn, user_id).await
    }

    /// Deletes the account: rows first, in one transaction with the note that makes the janitor
    /// finish the purge; then blobs and vectors. A purge failure is logged, not returned: the
    /// account is gone either way. The owner of a team is refused (409 `owner_must_transfer`);
    /// a member's memberships and wrapped team keys go with the account (foreign keys), and the
    /// team records they wrote stay with the team.
    pub async fn delete_account(&self, user_id: &str) -> Result<(), ErasureError> {
        let mut tx = self.storage.database().pool().begin().await?;
        Storage::note_account_deletion(&mut tx, user_id).await?;
        refuse_team_owner(&mut tx, user_id).await?;
        let now = adiuva_db::now_ms();
        // The developer's listed plugins stay for those who have them; no new installs, and
        // the name they published under is removed with them.
        let closed = sqlx::query(
            "UPDATE plugins SET closed_at = $2, author = '', updated_at = $2 \
             WHERE author_id = $1 AND status = 'approved' AND closed_at IS NULL",
        )
        .bind(user_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Never listed and never sold: nothing to keep (releases the id).
        sqlx::query(
            "DELETE FROM plugins WHERE author_id = $1 AND status <> 'approved' \
             AND NOT EXISTS (SELECT 1 FROM plugin_purchases p WHERE p.plugin_id = plugins.id)",
        )
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        // The buyer's purchases stay as the record of payment; their checkout links do not.
        sqlx::query("UPDATE plugin_purchases SET checkout_url = NULL WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(user_id, plugins_closed = closed, "account deleted");
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
