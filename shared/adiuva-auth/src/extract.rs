//! The `AuthUser` extractor: a verified bearer token plus the live tier, for any router whose
//! state can hand out the `Accounts` service.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use adiuva_http::ApiError;

use crate::{Accounts, AuthError, Tier};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub(crate) fn parse(value: &str) -> Role {
        if value == "admin" {
            Role::Admin
        } else {
            Role::User
        }
    }
}

/// The authenticated caller. The tier is the one in the database at the time of the request.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: String,
    pub email: String,
    pub tier: Tier,
    pub role: Role,
}

impl AuthUser {
    pub fn require_admin(&self) -> Result<(), AuthError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(AuthError::NotAdmin)
        }
    }
}

impl<S> FromRequestParts<S> for AuthUser
where
    Accounts: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or(AuthError::MissingToken)?;
        let accounts = Accounts::from_ref(state);
        Ok(accounts.authenticate(token).await?)
    }
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}
