//! The settings of accounts and tokens.

use std::time::Duration;

use adiuva_config::{ConfigError, Env, Secret, Source};

/// Shortest `JWT_SECRET` accepted in production: 256 bits for HMAC-SHA-256.
pub const MIN_PROD_SECRET_BYTES: usize = adiuva_config::MIN_SECRET_BYTES;

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
    /// Reads and checks the settings. The secret is [`Source::server_secret`]'s: `JWT_SECRET`,
    /// else (in development only) one generated once into the data directory; with `ENV=prod`
    /// an unset, empty or short one is refused, and so is an unset one in AWS Lambda.
    pub fn from_source(source: &Source, env: Env) -> Result<Self, ConfigError> {
        let secret = source.server_secret(env)?;
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
            jwt_secret: secret,
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

    /// Settings of `pairs` with a secret set (the generated one is adiuva-config's to test).
    fn settings(pairs: &[(&str, &str)], env: Env) -> Result<AuthSettings, ConfigError> {
        let mut all = vec![("JWT_SECRET", "0123456789abcdef0123456789abcdef")];
        all.extend_from_slice(pairs);
        AuthSettings::from_source(&Source::from_pairs(all), env)
    }

    #[test]
    fn defaults_match_the_reference() {
        let settings = settings(&[], Env::Dev).unwrap();
        assert_eq!(settings.jwt_algorithm, jsonwebtoken::Algorithm::HS256);
        assert_eq!(settings.access_token_ttl, Duration::from_secs(30 * 60));
        assert_eq!(settings.refresh_token_ttl, Duration::from_secs(30 * 86_400));
        assert_eq!(settings.bcrypt_cost, 12);
    }

    #[test]
    fn prod_refuses_default_empty_and_short_secrets() {
        for secret in ["", "short-secret"] {
            let err = settings(&[("JWT_SECRET", secret)], Env::Prod).unwrap_err();
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
        // Unset in production (not "generated"), and the old public default anywhere.
        let unset = AuthSettings::from_source(&Source::default(), Env::Prod).unwrap_err();
        assert!(matches!(unset, ConfigError::InsecureInProduction(_)));
        let old = settings(&[("JWT_SECRET", "change-me-in-production")], Env::Dev).unwrap_err();
        assert!(matches!(old, ConfigError::Invalid { .. }), "{old:?}");
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
