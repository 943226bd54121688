//! Accounts and everything that decides who a caller is and what their tier allows: password
//! hashing, access tokens (JWT), single-use refresh tokens with family revocation, the tier
//! feature matrix with its quota helpers, and the `AuthUser` extractor that does the live tier
//! lookup on every request.

mod accounts;
mod error;
mod extract;
mod password;
pub mod quota;
mod refresh;
pub mod tiers;
mod tokens;

pub use accounts::{Accounts, AuthTokens, UserProfile};
pub use error::{AuthError, database_error};
pub use extract::{AuthUser, Role};
pub use password::{MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES};
pub use tiers::{Feature, Tier};
pub use tokens::{AccessClaims, JwtKeys};
