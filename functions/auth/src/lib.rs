//! Auth function: `register`, `login`, `refresh`, `logout` and `me` under `/api/v1/auth`, and
//! the account's own management: password and email changes, sessions, the security log.
//! Register, login and refresh are public and limited by failures (per client address, and per
//! email for login); the others run behind authentication. Sign-in with OpenID Connect is in
//! `oidc` (its start and callback are public). Platform admins disable and enable
//! accounts under `/api/v1/admin/users`.

use adiuva_auth::{
    Accounts, AuthTokens, CurrentProfile, Device, LinkedIdentity, PublicKey, SecurityEvent,
    SessionView, UserProfile,
};
use adiuva_config::{ConfigError, Context};
#[cfg(feature = "openapi")]
use adiuva_http::ErrorBody;
use adiuva_http::paging;
use adiuva_http::{ApiError, ClientAddr, Function, Json, Path, Query, Result, Routes, routes};
use adiuva_pipeline::CurrentUser;
use axum::extract::{FromRequestParts, State};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri};
use serde::{Deserialize, Serialize};

mod oidc;

pub fn function(context: &Context) -> Result<Function, ConfigError> {
    let accounts: Accounts = context.get()?;
    let routes = Routes::new()
        .routes(routes!(register).public())
        .routes(routes!(login).public())
        .routes(routes!(refresh).public())
        .routes(routes!(logout))
        .routes(routes!(me))
        .routes(routes!(set_public_key))
        .routes(routes!(change_password))
        .routes(routes!(change_email))
        .routes(routes!(sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(events))
        .routes(routes!(disable_user).admin())
        .routes(routes!(enable_user).admin())
        .with_state(accounts.clone())
        .merge(oidc::routes(accounts, context.get()?, context.get()?));
    adiuva_pipeline::authenticated("auth", routes, context)
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Credentials {
    /// Trimmed and lowercased before use.
    #[cfg_attr(feature = "openapi", schema(schema_with = adiuva_auth::openapi::email))]
    pub email: String,
    /// 8 to 72 bytes (UTF-8).
    #[cfg_attr(feature = "openapi", schema(schema_with = adiuva_auth::openapi::password))]
    pub password: String,
}

/// The device of the request: its address (`ClientAddr`) and its `User-Agent`, what sessions
/// and the security log show (the address only as its network prefix).
pub(crate) struct ClientDevice(pub(crate) Device);

impl<S: Send + Sync> FromRequestParts<S> for ClientDevice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Ok(ClientAddr(address)) = ClientAddr::from_request_parts(parts, state).await;
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|value| value.to_str().ok());
        Ok(Self(Device::new(address, user_agent)))
    }
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PasswordChange {
    /// The password the account has now. An account without one (created through OpenID
    /// Connect) leaves it out to set its first password.
    #[cfg_attr(feature = "openapi", schema(max_length = 72))]
    pub current_password: Option<String>,
    /// 8 to 72 bytes (UTF-8), as for registration.
    #[cfg_attr(feature = "openapi", schema(schema_with = adiuva_auth::openapi::password))]
    pub new_password: String,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EmailChange {
    /// Trimmed and lowercased before use.
    #[cfg_attr(feature = "openapi", schema(schema_with = adiuva_auth::openapi::email))]
    pub new_email: String,
    /// The account's password.
    #[cfg_attr(feature = "openapi", schema(max_length = 72))]
    pub password: String,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct EventsQuery {
    /// The page after this cursor: the `X-Next-Cursor` of the page before. Without it, the
    /// newest page.
    #[cfg_attr(feature = "openapi", param(value_type = String, required = false, pattern = "^[0-9a-f]{1,256}$"))]
    pub cursor: Option<String>,
    /// Events per page, 1 to 200 (default 50).
    #[cfg_attr(feature = "openapi", param(value_type = i64, required = false, minimum = 1, maximum = 200))]
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RefreshRequest {
    /// The refresh token of the last pair: 64 lowercase hex digits.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub refresh_token: String,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OkResponse {
    pub ok: bool,
}

/// Creates an account and signs it in.
#[adiuva_http::route(post, path = "/api/v1/auth/register", tag = "auth", request_body = Credentials,
    responses(
        (status = 201, description = "Account created", body = AuthTokens),
        (status = 409, description = "The email is taken", body = ErrorBody),
        (status = 422, description = "Invalid email or password length", body = ErrorBody),
        (status = 429, description = "Too many registrations from this address (`too_many_registrations`, AUTH_REGISTRATIONS_PER_ADDRESS an hour; invalid input does not count), or too many failed attempts (`too_many_failures`: taken emails)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
async fn register(
    State(accounts): State<Accounts>,
    ClientDevice(device): ClientDevice,
    Json(body): Json<Credentials>,
) -> Result<(StatusCode, Json<AuthTokens>)> {
    let tokens = accounts
        .register(&body.email, body.password, &device)
        .await?;
    Ok((StatusCode::CREATED, Json(tokens)))
}

/// Exchanges an email and password for tokens.
#[adiuva_http::route(post, path = "/api/v1/auth/login", tag = "auth", request_body = Credentials,
    responses(
        (status = 200, description = "Signed in", body = AuthTokens),
        (status = 401, description = "Invalid email or password", body = ErrorBody),
        (status = 403, description = "The account is disabled (`account_disabled`), or a team of the account requires its SSO (`sso_required`: sign in with `POST /auth/oidc/start {team_id}`); each said only to the right password", body = ErrorBody),
        (status = 429, description = "Too many failed attempts for this email or from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
async fn login(
    State(accounts): State<Accounts>,
    ClientDevice(device): ClientDevice,
    Json(body): Json<Credentials>,
) -> Result<Json<AuthTokens>> {
    Ok(Json(
        accounts.login(&body.email, body.password, &device).await?,
    ))
}

/// Rotates a refresh token. Each refresh token works once; reusing one revokes its family.
#[adiuva_http::route(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair", body = AuthTokens),
        (status = 401, description = "Invalid, expired, revoked or reused refresh token", body = ErrorBody),
        (status = 429, description = "Too many failed attempts from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
async fn refresh(
    State(accounts): State<Accounts>,
    ClientDevice(device): ClientDevice,
    Json(body): Json<RefreshRequest>,
) -> Result<Json<AuthTokens>> {
    Ok(Json(accounts.refresh(&body.refresh_token, &device).await?))
}

/// Ends the caller's session: its refresh token stops working and its access tokens are
/// refused from the next request on. The account's other sessions stay (a password change ends
/// them all). A token issued before sessions existed names none: logging out with it ends
/// every session, as logout did then.
#[adiuva_http::route(post, path = "/api/v1/auth/logout", tag = "auth",
    responses(
        (status = 200, description = "This session ended", body = OkResponse),
        (status = 401, description = "Missing or invalid access token", body = ErrorBody),
    ))]
async fn logout(
    State(accounts): State<Accounts>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<OkResponse>> {
    accounts.logout(&caller).await?;
    Ok(Json(OkResponse { ok: true }))
}

/// Changes the password and signs every device out, this one included: the answer is a new
/// token pair for this device, and the previous tokens stop working. An account created through
/// OpenID Connect has no password: it sets one with `{new_password}` alone.
#[adiuva_http::route(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordChange,
    responses(
        (status = 200, description = "Password changed; every other session ended", body = AuthTokens),
        (status = 401, description = "Wrong or missing current password (`invalid_credentials`; counted like a failed login), or a missing or invalid access token", body = ErrorBody),
        (status = 422, description = "The new password is not 8 to 72 bytes", body = ErrorBody),
        (status = 429, description = "Too many failed password checks for this account or from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
async fn change_password(
    State(accounts): State<Accounts>,
    CurrentUser(caller): CurrentUser,
    ClientDevice(device): ClientDevice,
    Json(body): Json<PasswordChange>,
) -> Result<Json<AuthTokens>> {
    let tokens = accounts
        .change_password(&caller, body.current_password, body.new_password, &device)
        .await?;
    Ok(Json(tokens))
}

/// Changes the account's email (what it signs in with), after checking its password.
#[adiuva_http::route(post, path = "/api/v1/auth/email", tag = "auth", request_body = EmailChange,
    responses(
        (status = 200, description = "Email changed", body = UserProfile),
        (status = 401, description = "Wrong password (`invalid_credentials`; counted like a failed login), or a missing or invalid access token", body = ErrorBody),
        (status = 409, description = "Another account has this email (`email_taken`)", body = ErrorBody),
        (status = 422, description = "Invalid email", body = ErrorBody),
        (status = 429, description = "Too many failed password checks for this account or from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    ))]
async fn change_email(
    State(accounts): State<Accounts>,
    CurrentUser(caller): CurrentUser,
    ClientDevice(device): ClientDevice,
    Json(body): Json<EmailChange>,
) -> Result<Json<UserProfile>> {
    let profile = accounts
        .change_email(&caller, &body.new_email, body.password, &device)
        .await?;
    Ok(Json(profile))
}

/// The account's sessions that can still be used, one per signed-in device, most recently
/// used first; `current` marks the caller's own.
#[adiuva_http::route(get, path = "/api/v1/auth/sessions", tag = "auth",
    responses(
        (status = 200, description = "The sessions", body = Vec<SessionView>),
    ))]
async fn sessions(
    State(accounts): State<Accounts>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<Vec<SessionView>>> {
    Ok(Json(accounts.sessions(&caller).await?))
}

/// Ends one of the account's sessions: its refresh token stops working and its access tokens
/// are refused from its next request on.
#[adiuva_http::route(delete, path = "/api/v1/auth/sessions/{id}", tag = "auth",
    params(("id" = String, Path, description = "A session id from `GET /auth/sessions`")),
    responses(
        (status = 204, description = "The session ended"),
        (status = 404, description = "No such live session of the caller", body = ErrorBody),
    ))]
async fn revoke_session(
    State(accounts): State<Accounts>,
    CurrentUser(caller): CurrentUser,
    ClientDevice(device): ClientDevice,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    accounts.revoke_session(&caller, &id, &device).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The account's security log of the last 90 days, newest first, a page at a time: when more
/// follow, the next page's cursor is in `X-Next-Cursor` and `Link` (`rel="next"`).
#[adiuva_http::route(get, path = "/api/v1/auth/events", tag = "auth",
    params(EventsQuery),
    responses(
        (status = 200, description = "A page of the log", body = Vec<SecurityEvent>, headers(
            ("X-Next-Cursor" = String, description = "The `cursor` of the next page; absent on the last"),
            ("Link" = String, description = "`<the next page>; rel=\"next\"`; absent on the last"),
        )),
        (status = 422, description = "Invalid cursor or limit", body = ErrorBody),
    ))]
async fn events(
    State(accounts): State<Accounts>,
    CurrentUser(caller): CurrentUser,
    uri: Uri,
    Query(query): Query<EventsQuery>,
) -> Result<(HeaderMap, Json<Vec<SecurityEvent>>)> {
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > 200 {
        return Err(ApiError::unprocessable(
            "validation_error",
            "limit is 1 to 200",
        ));
    }
    let page = accounts
        .events(&caller, query.cursor.as_deref(), limit)
        .await?;
    Ok((
        paging::next_page(&uri, page.next.as_deref()),
        Json(page.items),
    ))
}

/// `GET /auth/me`: the profile (with the tier's source and the caller's teams) and the
/// identities that sign into the account.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    #[serde(flatten)]
    pub profile: CurrentProfile,
    /// The OpenID Connect identities linked to the account, oldest first.
    pub identities: Vec<LinkedIdentity>,
}

/// The caller's profile with their effective billing tier (the better of their own
/// subscription's and the Team tier of a seat in a team with an active subscription), where it
/// comes from, their teams, and their linked identities.
#[adiuva_http::route(get, path = "/api/v1/auth/me", tag = "auth",
    responses(
        (status = 200, description = "The caller", body = Me),
        (status = 401, description = "Missing or invalid access token", body = ErrorBody),
    ))]
async fn me(
    State(accounts): State<Accounts>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<Me>> {
    Ok(Json(Me {
        identities: accounts.identities(&caller).await?,
        profile: accounts.current_profile(&caller).await?,
    }))
}

/// Publishes the caller's public key, which team admins wrap the team key with on their
/// device. Replaces the one before; the server never sees a private key.
#[adiuva_http::route(put, path = "/api/v1/auth/me/public-key", tag = "auth", request_body = PublicKey,
    responses(
        (status = 200, description = "The key is published", body = PublicKey),
        (status = 422, description = "Not base64, longer than 1 KiB, or an unknown algorithm (`invalid_public_key`)", body = ErrorBody),
    ))]
async fn set_public_key(
    State(accounts): State<Accounts>,
    CurrentUser(caller): CurrentUser,
    Json(body): Json<PublicKey>,
) -> Result<Json<PublicKey>> {
    Ok(Json(accounts.set_public_key(&caller, &body).await?))
}

/// Disables an account (platform admins): its sessions and access tokens end at once, and it
/// cannot sign in (403 `account_disabled`) until it is enabled again. Its data stays.
#[adiuva_http::route(post, path = "/api/v1/admin/users/{id}/disable", tag = "admin",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Disabled (or already disabled)"),
        (status = 403, description = "The caller is not an admin (`admin_required`)", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 409, description = "An admin's own account (`cannot_disable_self`)", body = ErrorBody),
    ))]
async fn disable_user(
    State(accounts): State<Accounts>,
    CurrentUser(admin): CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    accounts.set_disabled(&admin, &id, true).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enables a disabled account again (platform admins): it can sign in; the sessions that
/// disabling ended stay ended.
#[adiuva_http::route(post, path = "/api/v1/admin/users/{id}/enable", tag = "admin",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 204, description = "Enabled (or was not disabled)"),
        (status = 403, description = "The caller is not an admin (`admin_required`)", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
    ))]
async fn enable_user(
    State(accounts): State<Accounts>,
    CurrentUser(admin): CurrentUser,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    accounts.set_disabled(&admin, &id, false).await?;
    Ok(StatusCode::NO_CONTENT)
}
