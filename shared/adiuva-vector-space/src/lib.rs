//! Each user's vector space: the domain in front of the vector store (`adiuva-vectors`, an
//! adapter that knows no database).
//!
//! What it owns:
//! - **Requests.** Counts, id and blob sizes, checksums, `top_k`, and the vector sizes the
//!   service accepts (`adiuva_vectors::DIMENSIONS`: 32, the reference's derived vectors, and the
//!   common embedding sizes; anything else is 422 and never reaches the store).
//! - **The user's size**, kept in `vector_spaces` rather than found by probing the store: set by
//!   the first upsert, freed with the user's last point. Search and delete go to the one
//!   collection of that size; a query of another size is 422 (`invalid_vector`), and a user
//!   with no points gets no results without the store being asked.
//! - **Exact quotas** per tier (`TierLimits::vector_points`, `vector_bytes`; 402
//!   `quota_exceeded`): every point's blob size is in `vector_points`, so an upsert that
//!   replaces points counts only the difference, and deletes give back what they remove.
//!
//! Consistency with account deletion: an upsert or a delete runs in one transaction that first
//! locks the user's row (`UPDATE users ...`), then checks and writes the bookkeeping, then writes
//! the store, then commits. Deleting the account deletes that row, so it waits for a write in
//! flight, and its purge (which visits every supported size's collection and needs no row of
//! ours) runs after that write is in the store. A write that comes after the deletion finds no
//! row and writes nothing. A failed store write rolls the bookkeeping back.

mod error;
mod ledger;
mod request;

use adiuva_access::Caller;
use adiuva_config::{Component, ConfigError, Context};
use adiuva_db::Database;
use adiuva_vectors::{VectorError, VectorStore};
use sqlx::{Any, Transaction};

pub use adiuva_vectors::{DIMENSIONS, SearchHit};
pub use error::{VectorQuota, VectorSpaceError};
pub use request::{
    MAX_BLOB_BYTES, MAX_ID_BYTES, MAX_IDS_PER_REQUEST, MAX_POINTS_PER_REQUEST, MAX_TOP_K, NewPoint,
};

use ledger::{Usage, point_key};
use request::Batch;

/// The vector spaces of all users: the database for the bookkeeping, the store for the points.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct VectorSpaces {
    db: Database,
    store: VectorStore,
}

impl Component for VectorSpaces {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        Ok(Self::new(context.get()?, context.get()?))
    }
}

impl VectorSpaces {
    pub fn new(db: Database, store: VectorStore) -> Self {
        Self { db, store }
    }

    /// Inserts or replaces the caller's points (by id); returns the number of distinct ids
    /// written. The first upsert sets the caller's size; later ones must have it (422). Over an
    /// allowance of the caller's tier: 402 and nothing is written.
    pub async fn upsert(
        &self,
        caller: &Caller,
        points: Vec<NewPoint>,
    ) -> Result<usize, VectorSpaceError> {
        let Batch { dimensions, points } = Batch::check(points)?;
        let user_id = caller.id.as_str();
        let keyed: Vec<(String, i64)> = points
            .iter()
            .map(|point| (point_key(&point.id), size_of(point.blob.len())))
            .collect();

        let mut tx = self.db.pool().begin().await?;
        if !ledger::lock_user(&mut tx, user_id).await? {
            return Err(VectorSpaceError::AccountGone);
        }
        let space = ledger::space(&mut tx, user_id).await?;
        if let Some(space) = space
            && space.dimensions != dimensions
        {
            return Err(VectorError::DimensionMismatch {
                expected: space.dimensions,
                got: dimensions,
            }
            .into());
        }
        let before = space.map_or(Usage::default(), |space| space.usage);
        let keys: Vec<String> = keyed.iter().map(|(key, _)| key.clone()).collect();
        let stored = ledger::sizes(&mut tx, user_id, &keys).await?;
        let mut after = before;
        for (key, size) in &keyed {
            match stored.get(key) {
                Some(old) => after.bytes += size - old,
                None => {
                    after.points += 1;
                    after.bytes += size;
                }
            }
        }
        ledger::check_quota(caller.tier, before, after)?;
        ledger::put_points(&mut tx, user_id, &keyed).await?;
        ledger::save_space(&mut tx, user_id, dimensions, after).await?;

        let written = self.store.upsert(user_id, points).await?;
        commit(tx).await?;
        tracing::info!(
            user_id,
            written,
            dimensions,
            points = after.points,
            bytes = after.bytes,
            "vectors upserted"
        );
        Ok(written)
    }

    /// The user's `top_k` (1 to 100) nearest points by cosine similarity, best first. The query
    /// is `vector`, or without it the vector derived from `query_blob`. A user with no points
    /// gets none; a query of a size other than the user's is 422.
    pub async fn search(
        &self,
        user_id: &str,
        query_blob: &[u8],
        vector: Option<Vec<f32>>,
        top_k: usize,
    ) -> Result<Vec<SearchHit>, VectorSpaceError> {
        let query = request::query_vector(query_blob, vector, top_k)?;
        match ledger::dimensions(self.db.pool(), user_id).await? {
            None => Ok(Vec::new()),
            Some(expected) if expected != query.len() => Err(VectorError::DimensionMismatch {
                expected,
                got: query.len(),
            }
            .into()),
            Some(_) => Ok(self.store.search(user_id, &query, top_k).await?),
        }
    }

    /// Deletes the user's points with these ids (at most 1000); other ids are ignored. Returns
    /// how many of the user's points were deleted. Deleting the last point frees the size.
    pub async fn delete(&self, user_id: &str, ids: &[String]) -> Result<usize, VectorSpaceError> {
        let ids = request::delete_ids(ids)?;
        if ids.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = ids.iter().map(|id| point_key(id)).collect();

        let mut tx = self.db.pool().begin().await?;
        if !ledger::lock_user(&mut tx, user_id).await? {
            return Err(VectorSpaceError::AccountGone);
        }
        let Some(space) = ledger::space(&mut tx, user_id).await? else {
            return Ok(0);
        };
        let removed = ledger::remove_points(&mut tx, user_id, &keys).await?;
        let after = Usage {
            points: space.usage.points - size_of(removed.len()),
            bytes: space.usage.bytes - removed.iter().sum::<i64>(),
        };
        ledger::save_space(&mut tx, user_id, space.dimensions, after).await?;
        // Every id asked for, not only those counted: a point stored by an upsert whose commit
        // failed is deleted too.
        self.store.delete(user_id, space.dimensions, &ids).await?;
        commit(tx).await?;
        tracing::info!(
            user_id,
            deleted = removed.len(),
            points = after.points,
            "vectors deleted"
        );
        Ok(removed.len())
    }
}

fn size_of(count: usize) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

async fn commit(tx: Transaction<'static, Any>) -> Result<(), VectorSpaceError> {
    tx.commit().await.map_err(VectorSpaceError::CommitUncertain)
}
