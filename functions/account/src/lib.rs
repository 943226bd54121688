//! Account function: `DELETE /api/v1/auth/me` ends the account's Stripe subscription, then
//! removes the account with every row, blob, backup and vector of it. It is its own function
//! because it is the one auth route that needs the blob and vector stores and Stripe; API
//! Gateway routes it here by method.

use adiuva_account::Erasure;
use adiuva_auth::Accounts;
use adiuva_billing::Billing;
use adiuva_config::{ConfigError, Context};
#[cfg(feature = "openapi")]
use adiuva_http::ErrorBody;
use adiuva_http::{ClientAddr, Function, Json, Result, Routes, routes};
use adiuva_pipeline::CurrentUser;
use axum::extract::State as AxumState;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
struct State {
    accounts: Accounts,
    billing: Billing,
    erasure: Erasure,
}

pub fn function(context: &Context) -> Result<Function, ConfigError> {
    let state = State {
        accounts: context.get()?,
        billing: context.get()?,
        erasure: context.get()?,
    };
    let routes = Routes::new()
        .routes(routes!(delete_account))
        .with_state(state);
    adiuva_pipeline::authenticated("account", routes, context)
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeleteAccount {
    /// The account's password, asked again for this irreversible action.
    #[cfg_attr(feature = "openapi", schema(schema_with = adiuva_auth::openapi::password))]
    pub password: String,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccountDeleted {
    pub ok: bool,
    /// Whether a paid subscription was ended at Stripe with the account (at once, so the
    /// card is not charged again).
    pub subscription_canceled: bool,
}

/// Deletes the caller's account and all its data. Irreversible.
#[adiuva_http::route(delete, path = "/api/v1/auth/me", tag = "auth",
    request_body = DeleteAccount,
    responses(
        (status = 200, description = "Deleted", body = AccountDeleted),
        (status = 401, description = "Wrong password or invalid token", body = ErrorBody),
        (status = 409, description = "The account owns a team (`owner_must_transfer`): transfer it or delete it first; nothing was deleted", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "Stripe could not end the subscription; nothing was deleted", body = ErrorBody),
    ))]
async fn delete_account(
    AxumState(state): AxumState<State>,
    CurrentUser(caller): CurrentUser,
    ClientAddr(client): ClientAddr,
    Json(body): Json<DeleteAccount>,
) -> Result<Json<AccountDeleted>> {
    state
        .accounts
        .verify_password(&caller, body.password, client)
        .await?;
    // A team's owner transfers it (or deletes it) first: refused before Stripe is touched.
    state.erasure.check_deletable(&caller.id).await?;
    // First, so that a deleted account is never charged again; if Stripe cannot be reached,
    // nothing is deleted and the user tries again.
    let subscription_canceled = state.billing.end_for_deletion(&caller.id).await?;
    state.erasure.delete_account(&caller.id).await?;
    Ok(Json(AccountDeleted {
        ok: true,
        subscription_canceled,
    }))
}
