//! Access tokens: HMAC-signed JWTs with `sub`, `exp`, `iat`, `iss`, `aud`, the user's token
//! version `ver` and the session `sid`. Verification accepts exactly the configured algorithm, so `alg: none` and
//! algorithm-confusion tokens fail like any bad signature.

use crate::AuthSettings;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

use crate::AuthError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccessClaims {
    pub sub: String,
    /// Expiry, seconds since the epoch (RFC 7519).
    pub exp: u64,
    pub iat: u64,
    pub iss: String,
    pub aud: String,
    /// Must equal `users.token_version`; a password change bumps it.
    pub ver: i64,
    /// The session (refresh-token family) the token was issued for; the session must not have
    /// ended. Absent from tokens issued before sessions existed, which are accepted by `ver`
    /// alone until they expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

#[derive(Clone)]
pub struct JwtKeys {
    algorithm: Algorithm,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl_secs: u64,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("algorithm", &self.algorithm)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl_secs", &self.ttl_secs)
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    pub fn new(settings: &AuthSettings) -> Self {
        crate::jwt_crypto::install();
        let algorithm = settings.jwt_algorithm;
        let secret = settings.jwt_secret.expose().as_bytes();
        let mut validation = Validation::new(algorithm);
        validation.algorithms = vec![algorithm];
        validation.set_issuer(&[&settings.jwt_issuer]);
        validation.set_audience(&[&settings.jwt_audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Self {
            algorithm,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            issuer: settings.jwt_issuer.clone(),
            audience: settings.jwt_audience.clone(),
            ttl_secs: settings.access_token_ttl.as_secs(),
        }
    }

    /// Signs an access token; returns it with its expiry in milliseconds.
    pub fn issue(
        &self,
        user_id: &str,
        token_version: i64,
        session_id: Option<&str>,
        now_ms: i64,
    ) -> Result<(String, i64), AuthError> {
        let iat = u64::try_from(now_ms / 1000).unwrap_or_default();
        let claims = AccessClaims {
            sub: user_id.to_owned(),
            exp: iat + self.ttl_secs,
            iat,
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            ver: token_version,
            sid: session_id.map(str::to_owned),
        };
        let token = encode(&Header::new(self.algorithm), &claims, &self.encoding)
            .map_err(AuthError::Signing)?;
        let expires_at_ms = i64::try_from(claims.exp.saturating_mul(1000)).unwrap_or(i64::MAX);
        Ok((token, expires_at_ms))
    }

    pub fn verify(&self, token: &str) -> Result<AccessClaims, AuthError> {
        decode::<AccessClaims>(token.as_bytes(), &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| {
                tracing::debug!(error = %err, "access token rejected");
                AuthError::InvalidToken
            })
    }
}
