//! What the service learns from a provider over HTTP: its discovery document
//! (`{issuer}/.well-known/openid-configuration`) and its keys (the JWKS at `jwks_uri`), each
//! cached for as long as the provider's `Cache-Control: max-age` allows, and the token
//! endpoint's redemption of a code.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reqwest::header::CACHE_CONTROL;
use serde::Deserialize;
use url::Url;

use crate::id_token::Jwk;
use crate::settings::check_endpoint;
use crate::{OidcError, ProviderConfig};

/// Longest answer read from a provider: discovery documents and JWKS are a few KiB.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Without `Cache-Control`, a document is kept this long.
const DEFAULT_MAX_AGE: Duration = Duration::from_secs(5 * 60);
/// Whatever the provider says, a document is fetched again after this long.
const LONGEST_MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// The endpoints of the provider's discovery document this flow uses.
#[derive(Debug, Clone)]
pub(crate) struct Metadata {
    pub(crate) authorization_endpoint: Url,
    pub(crate) token_endpoint: Url,
    pub(crate) jwks_uri: Url,
}

#[derive(Debug, Clone)]
struct Cached<T> {
    value: T,
    until: Instant,
}

/// Documents of one kind by issuer.
type Cache<T> = Arc<Mutex<HashMap<String, Cached<T>>>>;

/// Discovery documents and key sets per issuer, shared by the requests of one process.
#[derive(Debug, Clone)]
pub(crate) struct Providers {
    http: reqwest::Client,
    metadata: Cache<Metadata>,
    keys: Cache<Arc<Vec<Jwk>>>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct KeySet {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

impl Providers {
    pub(crate) fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            metadata: Arc::default(),
            keys: Arc::default(),
        }
    }

    /// The provider's endpoints, from the cache or its discovery document. The document must
    /// name the issuer it was fetched for (OpenID Connect Discovery 1.0, section 4.3).
    pub(crate) async fn metadata(&self, provider: &ProviderConfig) -> Result<Metadata, OidcError> {
        if let Some(cached) = fresh(&self.metadata, &provider.issuer) {
            return Ok(cached);
        }
        let url = format!("{}/.well-known/openid-configuration", provider.issuer);
        let (body, max_age) = self.fetch(&url).await?;
        let discovery: Discovery = serde_json::from_slice(&body)
            .map_err(|err| unreachable(&url, format!("not a discovery document: {err}")))?;
        if discovery.issuer != provider.issuer {
            return Err(unreachable(
                &url,
                format!("it names the issuer {:?}", discovery.issuer),
            ));
        }
        let endpoint =
            |value: &str| check_endpoint(value).map_err(|reason| unreachable(&url, reason));
        let metadata = Metadata {
            authorization_endpoint: endpoint(&discovery.authorization_endpoint)?,
            token_endpoint: endpoint(&discovery.token_endpoint)?,
            jwks_uri: endpoint(&discovery.jwks_uri)?,
        };
        store(&self.metadata, &provider.issuer, metadata.clone(), max_age);
        Ok(metadata)
    }

    /// The provider's signing keys: the cached set unless `refetch` (a token named a key the
    /// cached set does not have) or it has expired.
    pub(crate) async fn keys(
        &self,
        provider: &ProviderConfig,
        refetch: bool,
    ) -> Result<Arc<Vec<Jwk>>, OidcError> {
        if !refetch && let Some(cached) = fresh(&self.keys, &provider.issuer) {
            return Ok(cached);
        }
        let metadata = self.metadata(provider).await?;
        let url = metadata.jwks_uri.as_str();
        let (body, max_age) = self.fetch(url).await?;
        let set: KeySet = serde_json::from_slice(&body)
            .map_err(|err| unreachable(url, format!("not a JWKS: {err}")))?;
        // Keys of types this service does not use are skipped, not a reason to fail.
        let keys: Arc<Vec<Jwk>> = Arc::new(
            set.keys
                .into_iter()
                .filter_map(|key| serde_json::from_value(key).ok())
                .collect(),
        );
        store(&self.keys, &provider.issuer, keys.clone(), max_age);
        tracing::info!(
            issuer = provider.issuer,
            keys = keys.len(),
            "fetched the provider's keys"
        );
        Ok(keys)
    }

    /// Redeems an authorization code at the token endpoint (client secret in the form body, and
    /// the PKCE verifier) and returns the ID token. The provider refusing the code (a 4xx) is
    /// `Invalid`; not reaching it, or a 5xx, is `Unreachable`.
    pub(crate) async fn redeem(
        &self,
        provider: &ProviderConfig,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
    ) -> Result<String, OidcError> {
        let metadata = self.metadata(provider).await?;
        let url = metadata.token_endpoint.as_str();
        let response = self
            .http
            .post(metadata.token_endpoint.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", redirect_uri),
                ("client_id", provider.client_id.as_str()),
                ("client_secret", provider.client_secret.expose()),
                ("code_verifier", code_verifier),
            ])
            .send()
            .await
            .map_err(|err| unreachable(url, err))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(unreachable(url, format!("status {status}")));
        }
        let body = read_bounded(response)
            .await
            .map_err(|err| unreachable(url, err))?;
        if !status.is_success() {
            let error = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|body| body["error"].as_str().map(str::to_owned))
                .unwrap_or_default();
            return Err(OidcError::invalid(format!(
                "the token endpoint refused the code: {status} {error}"
            )));
        }
        let token: TokenResponse = serde_json::from_slice(&body)
            .map_err(|err| unreachable(url, format!("not a token response: {err}")))?;
        token
            .id_token
            .ok_or_else(|| OidcError::invalid("the token response has no id_token"))
    }

    /// GETs a JSON document; any failure is `Unreachable`.
    async fn fetch(&self, url: &str) -> Result<(Vec<u8>, Duration), OidcError> {
        let response = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|err| unreachable(url, err))?;
        if !response.status().is_success() {
            return Err(unreachable(url, format!("status {}", response.status())));
        }
        let max_age = response
            .headers()
            .get(CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .map_or(DEFAULT_MAX_AGE, max_age);
        let body = read_bounded(response)
            .await
            .map_err(|err| unreachable(url, err))?;
        Ok((body, max_age))
    }
}

async fn read_bounded(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|err| err.to_string())? {
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(format!(
                "the answer is longer than {MAX_RESPONSE_BYTES} bytes"
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// How long `Cache-Control` lets a document be kept: `max-age` (capped at a day), nothing for
/// `no-store` or `no-cache`, [`DEFAULT_MAX_AGE`] when it says neither.
pub(crate) fn max_age(cache_control: &str) -> Duration {
    let mut age = None;
    for directive in cache_control.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Duration::ZERO;
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            age = seconds
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age.unwrap_or(DEFAULT_MAX_AGE).min(LONGEST_MAX_AGE)
}

fn unreachable(url: &str, reason: impl std::fmt::Display) -> OidcError {
    tracing::warn!(url, %reason, "the sign-in provider could not be used");
    OidcError::unreachable(format!("{url}: {reason}"))
}

fn fresh<T: Clone>(cache: &Mutex<HashMap<String, Cached<T>>>, issuer: &str) -> Option<T> {
    let cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    cache
        .get(issuer)
        .filter(|cached| Instant::now() < cached.until)
        .map(|cached| cached.value.clone())
}

fn store<T>(cache: &Mutex<HashMap<String, Cached<T>>>, issuer: &str, value: T, max_age: Duration) {
    let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
    cache.insert(
        issuer.to_owned(),
        Cached {
            value,
            until: Instant::now() + max_age,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_decides_how_long_keys_are_kept() {
        assert_eq!(
            max_age("public, max-age=3600, must-revalidate"),
            Duration::from_secs(3600)
        );
        assert_eq!(max_age("max-age=0"), Duration::ZERO);
        assert_eq!(max_age("no-store"), Duration::ZERO);
        assert_eq!(max_age("public, no-cache"), Duration::ZERO);
        assert_eq!(max_age("public"), DEFAULT_MAX_AGE);
        assert_eq!(max_age("max-age=999999999"), LONGEST_MAX_AGE);
    }
}
