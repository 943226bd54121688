//! Account function: `DELETE /api/v1/auth/me` removes the account with every row, blob, backup
//! and vector of it. It is its own function because it is the one auth route that needs the
//! blob and vector stores; API Gateway routes it here by method.

use adiuva_auth::{Accounts, AuthError, AuthUser};
use adiuva_http::{ErrorBody, Json, Result, api_doc};
use adiuva_storage::Storage;
use adiuva_vectors::VectorStore;
use axum::extract::{FromRef, State as AxumState};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Debug, Clone)]
pub struct State {
    accounts: Accounts,
    storage: Storage,
    vectors: VectorStore,
}

impl State {
    pub fn new(accounts: Accounts, storage: Storage, vectors: VectorStore) -> Self {
        Self {
            accounts,
            storage,
            vectors,
        }
    }
}

impl FromRef<State> for Accounts {
    fn from_ref(state: &State) -> Self {
        state.accounts.clone()
    }
}

pub fn router(state: State) -> OpenApiRouter {
    OpenApiRouter::with_openapi(api_doc())
        .routes(routes!(delete_account))
        .with_state(state)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DeleteAccount {
    /// The account's password, asked again for this irreversible action.
    pub password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Deleted {
    pub ok: bool,
}

/// Deletes the caller's account and all its data. Irreversible.
#[utoipa::path(delete, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    request_body = DeleteAccount,
    responses(
        (status = 200, description = "Deleted", body = Deleted),
        (status = 401, description = "Wrong password or invalid token", body = ErrorBody),
    ))]
async fn delete_account(
    AxumState(state): AxumState<State>,
    user: AuthUser,
    Json(body): Json<DeleteAccount>,
) -> Result<Json<Deleted>> {
    state
        .accounts
        .verify_password(&user.id, body.password)
        .await?;
    // Rows first, in one transaction with the note that makes the janitor finish the purge if
    // the blob or vector store fails below: the account is gone either way.
    let mut tx = state
        .accounts
        .database()
        .pool()
        .begin()
        .await
        .map_err(AuthError::from)?;
    Storage::note_account_deletion(&mut tx, &user.id).await?;
    Accounts::delete_user(&mut tx, &user.id).await?;
    tx.commit().await.map_err(AuthError::from)?;
    tracing::info!(user_id = user.id, "account deleted");

    match purge(&state, &user.id).await {
        Ok(blobs) => tracing::info!(user_id = user.id, blobs, "account data purged"),
        Err(err) => {
            tracing::warn!(user_id = user.id, error = %err, "purge incomplete; the janitor will finish it")
        }
    }
    Ok(Json(Deleted { ok: true }))
}

/// Deletes the blobs and vectors of a deleted account and records that it is done.
pub async fn purge(
    state: &State,
    user_id: &str,
) -> std::result::Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    purge_account(&state.storage, &state.vectors, user_id).await
}

/// Shared with the janitor, which retries purges that failed.
pub async fn purge_account(
    storage: &Storage,
    vectors: &VectorStore,
    user_id: &str,
) -> std::result::Result<usize, Box<dyn std::error::Error + Send + Sync>> {
    let blobs = storage.purge_user_blobs(user_id).await?;
    vectors.delete_user(user_id).await?;
    storage.mark_purged(user_id).await?;
    Ok(blobs)
}
