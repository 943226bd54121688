//! Password policy and bcrypt. bcrypt reads at most 72 bytes, so longer passwords are refused
//! instead of silently truncated; hashes from the Python deployment (`$2b$`) verify as they are.

use std::sync::OnceLock;

use crate::AuthError;

pub const MIN_PASSWORD_BYTES: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 72;

/// Lengths are counted in UTF-8 bytes, the unit bcrypt reads.
pub(crate) fn validate(password: &str) -> Result<(), AuthError> {
    let len = password.len();
    if !(MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&len) || password.contains('\0') {
        return Err(AuthError::InvalidPassword);
    }
    Ok(())
}

/// Hashes on the blocking pool: bcrypt is deliberately slow and must not stall the runtime.
pub(crate) async fn hash(password: String, cost: u32) -> Result<String, AuthError> {
    validate(&password)?;
    let hash = tokio::task::spawn_blocking(move || bcrypt::hash(password, cost)).await??;
    Ok(hash)
}

/// An account without a password (created through OpenID Connect) has this as its hash.
pub(crate) const NO_PASSWORD: &str = "";

/// Checks `password` against `hash`. A password bcrypt could not have hashed whole never matches,
/// and nothing matches an account without a password ([`NO_PASSWORD`]; login checks such an
/// account against the timing equalizer instead, see `Accounts::sign_in`).
pub(crate) async fn verify(password: String, hash: String) -> Result<bool, AuthError> {
    if validate(&password).is_err() || hash == NO_PASSWORD {
        return Ok(false);
    }
    Ok(tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash)).await??)
}

/// A hash to verify against when the email is unknown, so that a failed login costs the same
/// bcrypt work whether or not the account exists. Computed once per process, on first need.
pub(crate) fn dummy_hash(cost: u32) -> String {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY
        .get_or_init(|| bcrypt::hash("adiuva-timing-equalizer", cost).unwrap_or_default())
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_limits_are_in_bytes() {
        assert!(validate("1234567").is_err());
        assert!(validate("12345678").is_ok());
        assert!(validate(&"a".repeat(72)).is_ok());
        assert!(validate(&"a".repeat(73)).is_err());
        // 24 three-byte characters are 72 bytes; 25 are 75.
        assert!(validate(&"€".repeat(24)).is_ok());
        assert!(validate(&"€".repeat(25)).is_err());
        assert!(validate("with\0nul-byte").is_err());
    }

    #[tokio::test]
    async fn python_bcrypt_hashes_verify() {
        // Made by Python bcrypt 5.0.0: `bcrypt.hashpw(b"correct horse battery", bcrypt.gensalt(4))`.
        let python = "$2b$04$CtllwJwPro2gmWW0bM11tudDVhBXn5psME7ix7fqr/RHU4Qa2Fuai";
        assert!(
            verify("correct horse battery".into(), python.into())
                .await
                .unwrap()
        );
        assert!(
            !verify("wrong horse battery".into(), python.into())
                .await
                .unwrap()
        );
    }

    #[test]
    fn the_timing_equalizer_costs_what_a_real_hash_costs() {
        // Unknown emails are verified against this hash; same cost means same bcrypt work.
        assert!(dummy_hash(4).starts_with("$2b$04$"));
    }

    #[tokio::test]
    async fn all_72_bytes_count() {
        let base = "x".repeat(71);
        let hashed = hash(format!("{base}a"), 4).await.unwrap();
        assert!(hashed.starts_with("$2b$04$"));
        assert!(verify(format!("{base}a"), hashed.clone()).await.unwrap());
        assert!(!verify(format!("{base}b"), hashed.clone()).await.unwrap());
        assert!(!verify(format!("{base}ab"), hashed).await.unwrap());
    }
}
