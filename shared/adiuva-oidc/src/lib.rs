//! Sign-in with OpenID Connect, the desktop flow of RFC 8252 with PKCE (RFC 7636):
//!
//! 1. [`Oidc::start`]: the app opens a loopback listener and sends its `redirect_uri` and an
//!    S256 `code_challenge`; the service keeps a random `state` with a nonce, the redirect and
//!    the challenge for ten minutes in the short-lived store (DynamoDB on Lambda) and answers
//!    the provider's authorization URL.
//! 2. The person signs in at the provider, which redirects to the app with `code` and `state`.
//! 3. [`Oidc::finish`]: the app sends `state`, `code` and its `code_verifier`. The state is
//!    taken (used once), the verifier checked against the challenge, the code redeemed at the
//!    provider's token endpoint (client secret and verifier), and the ID token verified against
//!    the provider's JWKS: RS256 or ES256 only, `iss`, `aud`, `exp`/`iat` with 60 s of leeway,
//!    `nonce`, and `email_verified`. The answer is the [`VerifiedIdentity`] (issuer, subject,
//!    email); what it signs into is adiuva-auth's decision.
//!
//! A provider is a [`ProviderConfig`]: the configured Google (`google`), or a team's issuer with
//! its own client (team SSO: `team:<team id>`, read from the team's settings by the caller,
//! [`TeamProviders`]). A state names its provider, so the callback finds the same one, and its
//! issuer must not have changed in between.
//! Failed callbacks count against the client address's brute-force limit, as failed logins do.
//!
//! Only the auth function (and the local server) link this crate: it brings reqwest and ring's
//! RSA and ECDSA verification, which no other binary needs.

mod error;
mod id_token;
mod provider;
mod settings;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use adiuva_config::{Component, ConfigError, Context};
use adiuva_kv::KvStore;
use adiuva_limits::{Limits, Subject};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

pub use error::OidcError;
pub use id_token::LEEWAY_SECS;
pub use settings::{GOOGLE_ISSUER, OidcSettings, ProviderConfig, check_issuer, redirect_allowed};

use provider::Providers;

/// How long a started sign-in can be finished.
pub const STATE_TTL: Duration = Duration::from_secs(10 * 60);

/// The short-lived store's namespace of started sign-ins.
const STATES: &str = "oidc-states";

/// The provider id of the configured Google.
pub const GOOGLE: &str = "google";

/// A team's provider id is this followed by the team's id.
pub const TEAM_PREFIX: &str = "team:";

/// The team id of a team's provider id (`team:<id>`); `None` for any other provider.
pub fn team_of(provider: &str) -> Option<&str> {
    provider.strip_prefix(TEAM_PREFIX)
}

/// Where the teams' providers come from (the team SSO settings, which this crate does not
/// read itself): the callback asks for the provider its state names.
pub trait TeamProviders {
    /// The team's provider, its client secret included; `None` when the team has none.
    fn team_provider(
        &self,
        team_id: &str,
    ) -> impl std::future::Future<Output = Result<Option<ProviderConfig>, OidcError>> + Send;
}

/// Which provider a sign-in starts with.
#[derive(Debug, Clone)]
pub enum SignInWith<'a> {
    /// One of [`Oidc::providers`] by its id (`google`).
    Configured(&'a str),
    /// A team's provider, as the caller read it from the team's settings.
    Team {
        team_id: &'a str,
        provider: ProviderConfig,
    },
}

/// A provider a client can sign in with (`GET /auth/oidc/providers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderInfo {
    pub id: String,
    pub issuer: String,
}

/// What the app sends to start a sign-in.
#[derive(Debug, Clone, Copy)]
pub struct StartRequest<'a> {
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
    pub code_challenge_method: &'a str,
}

/// Where to send the person, and the state the provider will hand back.
#[derive(Debug, Clone)]
pub struct Started {
    pub authorization_url: String,
    pub state: String,
}

/// What the app sends back after the provider's redirect.
#[derive(Debug, Clone, Copy)]
pub struct Callback<'a> {
    pub state: &'a str,
    pub code: &'a str,
    pub code_verifier: &'a str,
}

/// A person the provider vouches for: an identity is `(issuer, subject)`; the email is the
/// provider's, verified by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedIdentity {
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    pub email: String,
}

/// A started sign-in, as kept in the short-lived store under its state.
#[derive(Debug, Serialize, Deserialize)]
struct Pending {
    provider: String,
    issuer: String,
    nonce: String,
    redirect_uri: String,
    code_challenge: String,
}

/// The sign-in service. Cheap to clone; built once per process (no network I/O).
#[derive(Debug, Clone)]
pub struct Oidc {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: OidcSettings,
    providers: Providers,
    states: KvStore,
    limits: Limits,
}

impl Component for Oidc {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        let settings = OidcSettings::from_source(context.source())?;
        let http = http_client()
            .map_err(|err| ConfigError::unusable("the OpenID Connect HTTP client", err))?;
        Ok(Self::new(settings, http, context.get()?, context.get()?))
    }
}

/// rustls on ring with Mozilla's roots, as adiuva-llm's client: no other TLS stack.
fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // A callback makes up to three requests (token endpoint, keys, the keys again after a
    // rotation; discovery is cached): within the auth function's 15 s even when each is slow.
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(4))
        // A provider's redirect would be followed with the client secret's form body.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

impl Oidc {
    pub fn new(
        settings: OidcSettings,
        http: reqwest::Client,
        states: KvStore,
        limits: Limits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                providers: Providers::new(http),
                states,
                limits,
            }),
        }
    }

    /// The providers a person can choose from: `google` when `GOOGLE_CLIENT_ID` is set.
    pub fn providers(&self) -> Vec<ProviderInfo> {
        self.inner
            .settings
            .google
            .iter()
            .map(|google| ProviderInfo {
                id: GOOGLE.to_owned(),
                issuer: google.issuer.clone(),
            })
            .collect()
    }

    /// The configured provider named `id` (a team's is the caller's to read).
    fn provider(&self, id: &str) -> Result<&ProviderConfig, OidcError> {
        match id {
            GOOGLE => self.inner.settings.google.as_ref(),
            _ => None,
        }
        .ok_or(OidcError::UnknownProvider)
    }

    /// Starts a sign-in: checks the redirect and the challenge, keeps the state for
    /// [`STATE_TTL`] and answers the provider's authorization URL.
    pub async fn start(
        &self,
        with: SignInWith<'_>,
        request: StartRequest<'_>,
    ) -> Result<Started, OidcError> {
        let (provider_id, team_provider) = match with {
            SignInWith::Configured(id) => (id.to_owned(), None),
            SignInWith::Team { team_id, provider } => {
                // Checked when the team's owner set it; checked again before any request.
                check_issuer(&provider.issuer).map_err(|_| OidcError::UnknownProvider)?;
                (format!("{TEAM_PREFIX}{team_id}"), Some(provider))
            }
        };
        let provider = match &team_provider {
            Some(provider) => provider,
            None => self.provider(&provider_id)?,
        };
        if request.redirect_uri.len() > 2048
            || !redirect_allowed(request.redirect_uri, &self.inner.settings.redirect_uris)
        {
            return Err(OidcError::RedirectNotAllowed);
        }
        if request.code_challenge_method != "S256" {
            return Err(OidcError::UnsupportedChallengeMethod);
        }
        // BASE64URL(SHA-256(verifier)) without padding: always 43 characters.
        if request.code_challenge.len() != 43 || !is_base64url(request.code_challenge) {
            return Err(OidcError::InvalidInput(
                "code_challenge must be the 43-character base64url SHA-256 of the verifier",
            ));
        }
        let metadata = self.inner.providers.metadata(provider).await?;
        let state = random_token()?;
        let nonce = random_token()?;
        let pending = Pending {
            provider: provider_id,
            issuer: provider.issuer.clone(),
            nonce: nonce.clone(),
            redirect_uri: request.redirect_uri.to_owned(),
            code_challenge: request.code_challenge.to_owned(),
        };
        let value = serde_json::to_value(&pending).map_err(adiuva_kv::KvError::failed)?;
        self.inner
            .states
            .put(STATES, &state, &value, Some(STATE_TTL))
            .await?;
        let mut url = metadata.authorization_endpoint;
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &provider.client_id)
            .append_pair("redirect_uri", request.redirect_uri)
            .append_pair("scope", "openid email")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", request.code_challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(Started {
            authorization_url: url.into(),
            state,
        })
    }

    /// Finishes a sign-in (see the crate's documentation). Refusals that could be guesses
    /// (`oidc_invalid`) count against `client`'s failure limit; past it every callback from the
    /// address is 429 until the window moves on.
    pub async fn finish(
        &self,
        callback: Callback<'_>,
        client: IpAddr,
        teams: &impl TeamProviders,
    ) -> Result<VerifiedIdentity, OidcError> {
        let verifier = callback.code_verifier;
        if !(43..=128).contains(&verifier.len())
            || !verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return Err(OidcError::InvalidInput(
                "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~",
            ));
        }
        if callback.state.is_empty() || callback.state.len() > 128 {
            return Err(OidcError::InvalidInput("state must be 1 to 128 characters"));
        }
        if callback.code.is_empty() || callback.code.len() > 4096 {
            return Err(OidcError::InvalidInput("code must be 1 to 4096 characters"));
        }
        let reservation = self
            .inner
            .limits
            .reserve(&[Subject::Address(client)])
            .await?;
        let outcome = self.verify(callback, teams).await;
        match &outcome {
            Err(OidcError::Invalid(reason)) => {
                tracing::info!(reason, "OpenID Connect sign-in refused");
            }
            _ => reservation.release().await,
        }
        outcome
    }

    async fn verify(
        &self,
        callback: Callback<'_>,
        teams: &impl TeamProviders,
    ) -> Result<VerifiedIdentity, OidcError> {
        let Some(value) = self.inner.states.take(STATES, callback.state).await? else {
            return Err(OidcError::invalid("unknown, used or expired state"));
        };
        let pending: Pending = serde_json::from_value(value)
            .map_err(|_| OidcError::invalid("a stored state could not be read"))?;
        let team_provider = match team_of(&pending.provider) {
            Some(team_id) => Some(
                teams
                    .team_provider(team_id)
                    .await?
                    .ok_or_else(|| OidcError::invalid("the state's team has no SSO any more"))?,
            ),
            None => None,
        };
        let provider = match &team_provider {
            Some(provider) => provider,
            None => self
                .provider(&pending.provider)
                .map_err(|_| OidcError::invalid("the state's provider is no longer configured"))?,
        };
        if provider.issuer != pending.issuer {
            return Err(OidcError::invalid(
                "the state's provider changed its issuer",
            ));
        }
        if !pkce_matches(callback.code_verifier, &pending.code_challenge) {
            return Err(OidcError::invalid(
                "the code_verifier does not match the challenge",
            ));
        }
        let token = self
            .inner
            .providers
            .redeem(
                provider,
                callback.code,
                &pending.redirect_uri,
                callback.code_verifier,
            )
            .await?;
        let parsed = id_token::parse(&token)?;
        let mut keys = self.inner.providers.keys(provider, false).await?;
        if !parsed.has_candidate(&keys) {
            // The provider rotated its keys since they were cached: fetch them once more.
            keys = self.inner.providers.keys(provider, true).await?;
        }
        if !parsed.signed_by_any(&keys) {
            return Err(OidcError::invalid(
                "no key of the provider verifies the ID token",
            ));
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
            });
        let claims = id_token::check_claims(
            parsed.payload(),
            &id_token::Expected {
                issuer: &provider.issuer,
                client_id: &provider.client_id,
                nonce: &pending.nonce,
                now,
            },
        )?;
        Ok(VerifiedIdentity {
            provider: pending.provider,
            issuer: provider.issuer.clone(),
            subject: claims.subject,
            email: claims.email,
        })
    }
}

/// RFC 7636's S256: the challenge is BASE64URL(SHA-256(verifier)). (The challenge is no
/// secret: it went through the browser in the authorization URL.)
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    base64_simd::URL_SAFE_NO_PAD.encode_to_string(digest.as_ref()) == challenge
}

fn is_base64url(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// 32 random bytes, base64url: states and nonces.
fn random_token() -> Result<String, OidcError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| OidcError::Random)?;
    Ok(base64_simd::URL_SAFE_NO_PAD.encode_to_string(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s256_matches_rfc_7636s_example() {
        // RFC 7636, appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(!pkce_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX",
            challenge
        ));
        assert!(!pkce_matches(
            verifier,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-c"
        ));
    }
}
