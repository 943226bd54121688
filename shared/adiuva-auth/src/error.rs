use adiuva_http::ApiError;

use crate::tiers::TierError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{0}")]
    InvalidEmail(&'static str),
    #[error("password must be between 8 and 72 bytes")]
    InvalidPassword,
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("missing bearer token")]
    MissingToken,
    #[error("invalid or expired access token")]
    InvalidToken,
    #[error("invalid or expired refresh token")]
    InvalidRefreshToken,
    #[error("refresh token was already used; all sessions of this login were revoked")]
    RefreshTokenReused,
    #[error("this action needs the admin role")]
    NotAdmin,
    #[error(transparent)]
    Tier(#[from] TierError),
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
    #[error("password hashing failed")]
    Hashing(#[from] bcrypt::BcryptError),
    #[error("failed to sign a token")]
    Signing(#[source] jsonwebtoken::errors::Error),
    #[error("the system random number generator failed")]
    Random(#[source] getrandom::Error),
    #[error("a blocking task failed")]
    Task(#[from] tokio::task::JoinError),
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        let detail = err.to_string();
        match err {
            AuthError::InvalidEmail(_) => ApiError::unprocessable("invalid_email", detail),
            AuthError::InvalidPassword => ApiError::unprocessable("invalid_password", detail),
            AuthError::EmailTaken => ApiError::conflict("email_taken", detail),
            AuthError::InvalidCredentials => ApiError::unauthorized("invalid_credentials", detail),
            AuthError::MissingToken => ApiError::unauthorized("missing_token", detail),
            AuthError::InvalidToken => ApiError::unauthorized("invalid_token", detail),
            AuthError::InvalidRefreshToken => {
                ApiError::unauthorized("invalid_refresh_token", detail)
            }
            AuthError::RefreshTokenReused => ApiError::unauthorized("refresh_token_reused", detail),
            AuthError::NotAdmin => ApiError::forbidden("admin_required", detail),
            AuthError::Tier(tier) => tier.into(),
            AuthError::Database(db) => database_error(db),
            AuthError::Hashing(_)
            | AuthError::Signing(_)
            | AuthError::Random(_)
            | AuthError::Task(_) => ApiError::internal(err),
        }
    }
}

/// A database error as the client sees it: 503 when the database is unreachable, else 500.
pub fn database_error(err: sqlx::Error) -> ApiError {
    if adiuva_db::is_unavailable(&err) {
        ApiError::unavailable("the database", err)
    } else {
        ApiError::internal(err)
    }
}
