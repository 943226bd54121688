//! Auth function: `register`, `login`, `refresh`, `logout` and `me` under `/api/v1/auth`.
//! Register, login and refresh are public and limited by failures (per client address, and per
//! email for login); logout and me run behind authentication.

use adiuva_auth::{Accounts, AuthTokens, UserProfile};
use adiuva_config::{ConfigError, Context};
use adiuva_http::{ClientAddr, ErrorBody, Function, Json, Result, Routes, routes};
use adiuva_pipeline::CurrentUser;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

pub fn function(context: &Context) -> Result<Function, ConfigError> {
    let accounts: Accounts = context.get()?;
    let routes = Routes::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .with_state(accounts);
    adiuva_pipeline::authenticated("auth", routes, context)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    /// Trimmed and lowercased before use.
    #[schema(schema_with = adiuva_auth::openapi::email)]
    pub email: String,
    /// 8 to 72 bytes (UTF-8).
    #[schema(schema_with = adiuva_auth::openapi::password)]
    pub password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RefreshRequest {
    /// The refresh token of the last pair: 64 lowercase hex digits.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub refresh_token: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OkResponse {
    pub ok: bool,
}

/// Creates an account and signs it in.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "Account created", body = AuthTokens),
        (status = 409, description = "The email is taken", body = ErrorBody),
        (status = 422, description = "Invalid email or password length", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address (`too_many_registrations`, AUTH_REGISTRATIONS_PER_ADDRESS an hour; invalid input does not count), or too many failed attempts (`too_many_failures`: taken emails)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
async fn register(
    State(accounts): State<Accounts>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<Credentials>,
) -> Result<(StatusCode, Json<AuthTokens>)> {
    let tokens = accounts
        .register(&body.email, body.password, client)
        .await?;
    Ok((StatusCode::CREATED, Json(tokens)))
}

/// Exchanges an email and password for tokens.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = AuthTokens),
        (status = 401, description = "Invalid email or password", body = ErrorBody),
        (status = 429, description = "Too many failed attempts for this email or from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
async fn login(
    State(accounts): State<Accounts>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<Credentials>,
) -> Result<Json<AuthTokens>> {
    Ok(Json(
        accounts.login(&body.email, body.password, client).await?,
    ))
}

/// Rotates a refresh token. Each refresh token works once; reusing one revokes its family.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair", body = AuthTokens),
        (status = 401, description = "Invalid, expired, revoked or reused refresh token", body = ErrorBody),
        (status = 429, description = "Too many failed attempts from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
async fn refresh(
    State(accounts): State<Accounts>,
    ClientAddr(client): ClientAddr,
    Json(body): Json<RefreshRequest>,
) -> Result<Json<AuthTokens>> {
    Ok(Json(accounts.refresh(&body.refresh_token, client).await?))
}

/// Revokes every refresh token of the caller and ends their access tokens.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses(
        (status = 200, description = "Signed out everywhere", body = OkResponse),
        (status = 401, description = "Missing or invalid access token", body = ErrorBody),
    ))]
async fn logout(
    State(accounts): State<Accounts>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<OkResponse>> {
    accounts.logout(&caller.id).await?;
    Ok(Json(OkResponse { ok: true }))
}

/// The caller's profile with their current billing tier.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    responses(
        (status = 200, description = "The caller", body = UserProfile),
        (status = 401, description = "Missing or invalid access token", body = ErrorBody),
    ))]
async fn me(CurrentUser(caller): CurrentUser) -> Json<UserProfile> {
    Json(UserProfile::from(&caller))
}
