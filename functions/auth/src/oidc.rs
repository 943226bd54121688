//! Sign-in with OpenID Connect under `/api/v1/auth/oidc`: the providers, the start and the
//! callback of the desktop flow (RFC 8252 with PKCE), and linking and unlinking identities.
//! adiuva-oidc runs the protocol and verifies the ID token; adiuva-auth decides what the
//! verified identity signs into. A team's provider (team SSO) is read from the team's
//! settings (adiuva-teams' `Sso`, its client secret opened only here).

use adiuva_auth::{Accounts, AuthTokens, LinkedIdentity, NewIdentity};
use adiuva_error::Public;
#[cfg(feature = "openapi")]
use adiuva_http::ErrorBody;
use adiuva_http::{Json, Path, Result, Routes, routes};
use adiuva_oidc::{
    Callback, Oidc, OidcError, ProviderConfig, SignInWith, StartRequest, TeamProviders,
    VerifiedIdentity, team_of,
};
use adiuva_pipeline::CurrentUser;
use adiuva_teams::{Sso, TeamError};
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::ClientDevice;

#[derive(Debug, Clone)]
struct OidcState {
    accounts: Accounts,
    oidc: Oidc,
    sso: TeamSso,
}

/// The teams' providers, from their SSO settings.
#[derive(Debug, Clone)]
struct TeamSso(Sso);

impl TeamSso {
    async fn provider(&self, team_id: &str) -> Result<Option<ProviderConfig>, OidcError> {
        match self.0.provider(team_id).await {
            Ok(client) => Ok(client.map(|client| ProviderConfig {
                issuer: client.issuer,
                client_id: client.client_id,
                client_secret: client.client_secret,
            })),
            Err(err) => Err(settings_error(&err)),
        }
    }
}

impl TeamProviders for TeamSso {
    async fn team_provider(&self, team_id: &str) -> Result<Option<ProviderConfig>, OidcError> {
        self.provider(team_id).await
    }
}

/// A team's settings that could not be read: logged here, answered as the teams domain says.
fn settings_error(err: &TeamError) -> OidcError {
    tracing::error!(error = %adiuva_error::cause_chain(err), "a team's SSO settings could not be read");
    OidcError::TeamSettings(Public::of(err))
}

pub(crate) fn routes(accounts: Accounts, oidc: Oidc, sso: Sso) -> Routes {
    Routes::new()
        // Signing in: the provider's ID token (through the single-use state) is the
        // credential. Linking and unlinking identities need a caller.
        .routes(routes!(providers).public())
        .routes(routes!(start).public())
        .routes(routes!(callback).public())
        .routes(routes!(link))
        .routes(routes!(unlink))
        .with_state(OidcState {
            accounts,
            oidc,
            sso: TeamSso(sso),
        })
}

/// A provider to sign in with.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OidcProvider {
    /// What `POST /auth/oidc/start` takes as `provider` (`google`).
    pub id: String,
    /// The provider's issuer (`https://accounts.google.com`).
    pub issuer: String,
}

/// Exactly one of `provider` and `team_id`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OidcStart {
    /// A provider's `id` from `GET /auth/oidc/providers`.
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub provider: Option<String>,
    /// A team's id: sign in through the team's own provider (team SSO).
    #[cfg_attr(feature = "openapi", schema(max_length = 64))]
    pub team_id: Option<String>,
    /// Where the provider sends the browser back: the app's loopback listener
    /// (`http://127.0.0.1:<port>/...` or `http://[::1]:<port>/...`) or one of
    /// `OIDC_REDIRECT_URIS`.
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub redirect_uri: String,
    /// BASE64URL(SHA-256(code_verifier)), without padding (RFC 7636).
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 43, max_length = 43, pattern = "^[A-Za-z0-9_-]{43}$")
    )]
    pub code_challenge: String,
    /// Only `S256`.
    pub code_challenge_method: String,
}

/// Where to send the person to sign in.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OidcStarted {
    /// The provider's authorization URL, to open in the system browser.
    pub authorization_url: String,
    /// Returned by the provider with the code; valid for 10 minutes, once.
    pub state: String,
}

/// What the provider's redirect brought back, with the app's PKCE verifier.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OidcCallback {
    /// The `state` of `POST /auth/oidc/start`: single use, 10 minutes.
    #[cfg_attr(feature = "openapi", schema(max_length = 128))]
    pub state: String,
    /// The authorization code of the provider's redirect.
    #[cfg_attr(feature = "openapi", schema(max_length = 4096))]
    pub code: String,
    /// The PKCE verifier whose S256 challenge started the sign-in: 43 to 128 characters.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 43,
            max_length = 128,
            pattern = "^[A-Za-z0-9._~-]{43,128}$"
        )
    )]
    pub code_verifier: String,
}

impl OidcCallback {
    fn as_callback(&self) -> Callback<'_> {
        Callback {
            state: &self.state,
            code: &self.code,
            code_verifier: &self.code_verifier,
        }
    }
}

fn new_identity(identity: &VerifiedIdentity) -> NewIdentity<'_> {
    NewIdentity {
        provider: &identity.provider,
        issuer: &identity.issuer,
        subject: &identity.subject,
        email: &identity.email,
    }
}

/// The providers a person can sign in with: `google` when the server is configured for it.
#[adiuva_http::route(get, path = "/api/v1/auth/oidc/providers", tag = "auth",
    responses(
        (status = 200, description = "The configured providers", body = Vec<OidcProvider>),
    ))]
async fn providers(State(state): State<OidcState>) -> Json<Vec<OidcProvider>> {
    Json(
        state
            .oidc
            .providers()
            .into_iter()
            .map(|provider| OidcProvider {
                id: provider.id,
                issuer: provider.issuer,
            })
            .collect(),
    )
}

/// Starts a sign-in with a provider, or with a team's provider given its `team_id` (RFC 8252's
/// desktop flow with PKCE): open `authorization_url` in the browser; the provider redirects to
/// `redirect_uri` with `code` and `state`, which go to `POST /auth/oidc/callback` (or
/// `/auth/oidc/link`).
#[adiuva_http::route(post, path = "/api/v1/auth/oidc/start", tag = "auth", request_body = OidcStart,
    responses(
        (status = 200, description = "Started; valid for 10 minutes", body = OidcStarted),
        (status = 422, description = "A `redirect_uri` that is neither loopback nor listed (`redirect_uri_not_allowed`), a method other than S256 (`unsupported_challenge_method`), a malformed challenge, an unknown provider or a team without SSO (`unknown_provider`), or not exactly one of `provider` and `team_id` (`validation_error`)", body = ErrorBody),
        (status = 503, description = "The provider's discovery document cannot be read (`provider_unavailable`), the short-lived store is down, or the server cannot open a team's client secret (`sso_secret_key_missing`, `sso_secret_unreadable`)", body = ErrorBody),
    ))]
async fn start(
    State(state): State<OidcState>,
    Json(body): Json<OidcStart>,
) -> Result<Json<OidcStarted>> {
    let team_provider;
    let with = match (&body.provider, &body.team_id) {
        (Some(provider), None) => SignInWith::Configured(provider),
        (None, Some(team_id)) => {
            team_provider = state
                .sso
                .provider(team_id)
                .await?
                .ok_or(OidcError::UnknownProvider)?;
            SignInWith::Team {
                team_id,
                provider: team_provider,
            }
        }
        _ => {
            return Err(OidcError::InvalidInput("give exactly one of provider and team_id").into());
        }
    };
    let started = state
        .oidc
        .start(
            with,
            StartRequest {
                redirect_uri: &body.redirect_uri,
                code_challenge: &body.code_challenge,
                code_challenge_method: &body.code_challenge_method,
            },
        )
        .await?;
    Ok(Json(OidcStarted {
        authorization_url: started.authorization_url,
        state: started.state,
    }))
}

/// Finishes a sign-in: the code is redeemed at the provider and its ID token verified. A known
/// identity signs into its account; a new one whose email is no account's creates an account
/// (without a password); one whose email is an account's is refused with `link_required` (sign
/// in to that account and link it). Through a team's provider, only into an account that is a
/// member of the team: a new identity of one of the team's email domains creates its account,
/// which joins the team while a seat is free.
#[adiuva_http::route(post, path = "/api/v1/auth/oidc/callback", tag = "auth", request_body = OidcCallback,
    responses(
        (status = 200, description = "Signed in (a new session)", body = AuthTokens),
        (status = 401, description = "A used, unknown or expired state, a verifier that does not match, a code the provider refuses, or an ID token that fails a check (`oidc_invalid`; counted like a failed login)", body = ErrorBody),
        (status = 402, description = "Through a team's provider, a new account cannot join: the team's subscription is not active (`team_inactive`)", body = ErrorBody),
        (status = 403, description = "The provider has not verified the email (`email_unverified`), the account is disabled (`account_disabled`), or through a team's provider: the account is not a member of the team (`sso_not_member`), or a new email's domain is not one of the team's (`sso_domain_not_allowed`)", body = ErrorBody),
        (status = 404, description = "The team's SSO was removed since the sign-in started (`sso_not_found`)", body = ErrorBody),
        (status = 409, description = "The email belongs to an account this identity is not linked to (`link_required`), a concurrent sign-in of the same new identity created its account first (`identity_taken`: retry), or through a team's provider every seat is taken (`seats_exhausted`: nothing was created)", body = ErrorBody),
        (status = 422, description = "A malformed state, code or verifier, or an email this service cannot use", body = ErrorBody),
        (status = 429, description = "Too many failed sign-ins from this address, or too many new accounts (`too_many_registrations`)", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "The provider cannot be reached (`provider_unavailable`), the short-lived store is down, or the server cannot open a team's client secret (`sso_secret_key_missing`, `sso_secret_unreadable`)", body = ErrorBody),
    ))]
async fn callback(
    State(state): State<OidcState>,
    ClientDevice(device): ClientDevice,
    Json(body): Json<OidcCallback>,
) -> Result<Json<AuthTokens>> {
    let identity = state
        .oidc
        .finish(body.as_callback(), device.address, &state.sso)
        .await?;
    let tokens = match team_of(&identity.provider) {
        Some(team_id) => {
            state
                .accounts
                .sign_in_with_team_identity(team_id, new_identity(&identity), &device)
                .await?
        }
        None => {
            state
                .accounts
                .sign_in_with_identity(new_identity(&identity), &device)
                .await?
        }
    };
    Ok(Json(tokens))
}

/// Links the identity of a finished provider sign-in (started with `POST /auth/oidc/start`)
/// to the caller's account, after which it signs into it.
#[adiuva_http::route(post, path = "/api/v1/auth/oidc/link", tag = "auth", request_body = OidcCallback,
    responses(
        (status = 201, description = "Linked", body = LinkedIdentity),
        (status = 401, description = "A missing or invalid access token, or the sign-in failed (`oidc_invalid`, as for the callback)", body = ErrorBody),
        (status = 403, description = "The provider has not verified the email (`email_unverified`)", body = ErrorBody),
        (status = 409, description = "The identity is already linked to an account (`identity_taken`)", body = ErrorBody),
        (status = 422, description = "A malformed state, code or verifier", body = ErrorBody),
        (status = 429, description = "Too many failed sign-ins from this address", body = ErrorBody,
            headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
        (status = 503, description = "The provider cannot be reached (`provider_unavailable`), or the short-lived store is down", body = ErrorBody),
    ))]
async fn link(
    State(state): State<OidcState>,
    CurrentUser(caller): CurrentUser,
    ClientDevice(device): ClientDevice,
    Json(body): Json<OidcCallback>,
) -> Result<(StatusCode, Json<LinkedIdentity>)> {
    let identity = state
        .oidc
        .finish(body.as_callback(), device.address, &state.sso)
        .await?;
    let linked = state
        .accounts
        .link_identity(&caller, new_identity(&identity), &device)
        .await?;
    Ok((StatusCode::CREATED, Json(linked)))
}

/// Unlinks one of the caller's identities, unless it is the account's last way to sign in.
#[adiuva_http::route(delete, path = "/api/v1/auth/oidc/identities/{id}", tag = "auth",
    params(("id" = String, Path, description = "An identity's id from `GET /auth/me`")),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 401, description = "Missing or invalid access token", body = ErrorBody),
        (status = 404, description = "No such identity of the caller", body = ErrorBody),
        (status = 409, description = "The account has no password and no other identity (`last_sign_in_method`): set a password or link another first", body = ErrorBody),
    ))]
async fn unlink(
    State(state): State<OidcState>,
    CurrentUser(caller): CurrentUser,
    ClientDevice(device): ClientDevice,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    state
        .accounts
        .unlink_identity(&caller, &id, &device)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
