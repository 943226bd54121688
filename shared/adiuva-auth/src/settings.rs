//! The settings of accounts and tokens.

use std::time::Duration;

use adiuva_config::{ConfigError, Env, Secret, Source};

/// The secret that ships as the default and must never reach production.
pub const DEFAULT_JWT_SECRET: &str = "change-me-in-production";

/// Shortest `JWT_SECRET` accepted in production: 256 bits for HMAC-SHA-256.
pub const MIN_PROD_SECRET_BYTES: usize = 32;

/// `JWT_SECRET`, `JWT_ALGORITHM` (HS256, HS384 or HS512), `JWT_ISSUER`, `JWT_AUDIENCE`,
/// `JWT_ACCESS_TOKEN_EXPIRE_MINUTES`, `JWT_REFRESH_TOKEN_EXPIRE_DAYS` and `BCRYPT_COST`.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub jwt_secret: Secret,
    pub jwt_algorithm: jsonwebtoken::Algorithm,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    /// bcrypt work factor for new hashes; existing hashes verify at whatever cost they carry.
    pub bcrypt_cost: u32,
}

impl AuthSettings {
    /// Reads and checks the settings; with `ENV=prod` the default, an empty or a short
    /// `JWT_SECRET` is refused.
    pub fn from_source(source: &Source, env: Env) -> Result<Self, ConfigError> {
        // Untrimmed: spaces in a secret are part of it. Unset or empty is the default.
        let secret = source
            .raw("JWT_SECRET")
            .filter(|secret| !secret.is_empty())
            .unwrap_or(DEFAULT_JWT_SECRET);
        if env == Env::Prod {
            if secret == DEFAULT_JWT_SECRET {
                return Err(ConfigError::InsecureInProduction(
                    "JWT_SECRET is empty or the default; set a random secret of at least 32 bytes"
                        .to_owned(),
                ));
            }
            if secret.len() < MIN_PROD_SECRET_BYTES {
                return Err(ConfigError::InsecureInProduction(format!(
                    "JWT_SECRET is {} bytes; use at least {MIN_PROD_SECRET_BYTES}",
                    secret.len()
                )));
            }
        }
        let jwt_algorithm = match source
            .string("JWT_ALGORITHM", "HS256")
            .to_ascii_uppercase()
            .as_str()
        {
            "HS256" => jsonwebtoken::Algorithm::HS256,
            "HS384" => jsonwebtoken::Algorithm::HS384,
            "HS512" => jsonwebtoken::Algorithm::HS512,
            other => {
                return Err(ConfigError::invalid(
                    "JWT_ALGORITHM",
                    format!("expected HS256, HS384 or HS512, got {other:?}"),
                ));
            }
        };
        let minutes: u64 = source.number_in("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", 30, 0..=24 * 60)?;
        let days: u64 = source.number_in("JWT_REFRESH_TOKEN_EXPIRE_DAYS", 30, 0..=3650)?;
        Ok(Self {
            jwt_secret: Secret::new(secret),
            jwt_algorithm,
            jwt_issuer: source.string("JWT_ISSUER", "adiuva-api"),
            jwt_audience: source.string("JWT_AUDIENCE", "adiuva-app"),
            access_token_ttl: Duration::from_secs(minutes * 60),
            refresh_token_ttl: Duration::from_secs(days * 86_400),
            bcrypt_cost: source.number_in("BCRYPT_COST", 12, 4..=31)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)], env: Env) -> Result<AuthSettings, ConfigError> {
        AuthSettings::from_source(&Source::from_pairs(pairs.iter().copied()), env)
    }

    #[test]
    fn defaults_match_the_reference() {
        let settings = settings(&[], Env::Dev).unwrap();
        assert_eq!(settings.jwt_secret.expose(), DEFAULT_JWT_SECRET);
        assert_eq!(settings.jwt_algorithm, jsonwebtoken::Algorithm::HS256);
        assert_eq!(settings.access_token_ttl, Duration::from_secs(30 * 60));
        assert_eq!(settings.refresh_token_ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(settings.bcrypt_cost, 12);
    }

    #[test]
    fn prod_refuses_default_empty_and_short_secrets() {
        for secret in [
            None,
            Some(""),
            Some(DEFAULT_JWT_SECRET),
            Some("short-secret"),
        ] {
            let pairs: Vec<(&str, &str)> = secret
                .map(|secret| ("JWT_SECRET", secret))
                .into_iter()
                .collect();
            let err = settings(&pairs, Env::Prod).unwrap_err();
            assert!(
                matches!(err, ConfigError::InsecureInProduction(_)),
                "{secret:?} gave {err:?}"
            );
        }
        assert!(
            settings(
                &[("JWT_SECRET", "0123456789abcdef0123456789abcdef")],
                Env::Prod
            )
            .is_ok()
        );
        assert!(settings(&[("JWT_SECRET", "")], Env::Dev).is_ok());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (key, value) in [
            ("JWT_ALGORITHM", "none"),
            ("BCRYPT_COST", "3"),
            ("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", "soon"),
        ] {
            let err = settings(&[(key, value)], Env::Dev).unwrap_err();
            assert!(
                matches!(err, ConfigError::Invalid { key: named, .. } if named == key),
                "{key}={value} gave {err:?}"
            );
        }
    }
}
