//! Auth function: `register`, `login`, `refresh`, `logout` and `me` under `/api/v1/auth`.

use adiuva_auth::{Accounts, AuthTokens, AuthUser, UserProfile};
use adiuva_http::{ErrorBody, Json, Result, api_doc};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn router(accounts: Accounts) -> OpenApiRouter {
    OpenApiRouter::with_openapi(api_doc())
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(me))
        .with_state(accounts)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct Credentials {
    /// Trimmed and lowercased before use.
    pub email: String,
    /// 8 to 72 bytes (UTF-8).
    pub password: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RefreshRequest {
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
    ))]
async fn register(
    State(accounts): State<Accounts>,
    Json(body): Json<Credentials>,
) -> Result<(StatusCode, Json<AuthTokens>)> {
    let tokens = accounts.register(&body.email, body.password).await?;
    Ok((StatusCode::CREATED, Json(tokens)))
}

/// Exchanges an email and password for tokens.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = AuthTokens),
        (status = 401, description = "Invalid email or password", body = ErrorBody),
    ))]
async fn login(
    State(accounts): State<Accounts>,
    Json(body): Json<Credentials>,
) -> Result<Json<AuthTokens>> {
    Ok(Json(accounts.login(&body.email, body.password).await?))
}

/// Rotates a refresh token. Each refresh token works once; reusing one revokes its family.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair", body = AuthTokens),
        (status = 401, description = "Invalid, expired, revoked or reused refresh token", body = ErrorBody),
    ))]
async fn refresh(
    State(accounts): State<Accounts>,
    Json(body): Json<RefreshRequest>,
) -> Result<Json<AuthTokens>> {
    Ok(Json(accounts.refresh(&body.refresh_token).await?))
}

/// Revokes every refresh token of the caller and ends their access tokens.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "Signed out everywhere", body = OkResponse),
        (status = 401, description = "Missing or invalid access token", body = ErrorBody),
    ))]
async fn logout(State(accounts): State<Accounts>, user: AuthUser) -> Result<Json<OkResponse>> {
    accounts.logout(&user.id).await?;
    Ok(Json(OkResponse { ok: true }))
}

/// The caller's profile with their current billing tier.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = UserProfile),
        (status = 401, description = "Missing or invalid access token", body = ErrorBody),
    ))]
async fn me(user: AuthUser) -> Json<UserProfile> {
    Json(UserProfile::from(&user))
}
