//! Accounts and everything that decides who a caller is: registration and login, password
//! hashing (bcrypt), access tokens (JWT), single-use refresh tokens with family revocation, and
//! [`Accounts::authenticate`], which turns an access token into the [`Caller`] with the live
//! tier; sessions (one per sign-in, listed and ended one by one), the account's security
//! log, and the OpenID Connect identities linked to accounts (what a verified identity signs
//! into; the protocol itself is adiuva-oidc's). Nothing here knows HTTP; the HTTP pipeline
//! and the chat WebSocket admit each request or message with [`admit`] (the caller, then the
//! tier's rate limit).

mod accounts;
mod admission;
mod device;
mod error;
mod events;
mod identities;
mod jwt_crypto;
#[cfg(feature = "openapi")]
pub mod openapi;
mod password;
mod refresh;
mod sessions;
mod settings;
mod tokens;

pub use accounts::{
    Accounts, AuthTokens, CurrentProfile, KEY_ALGORITHMS, MAX_PUBLIC_KEY_CHARS, PublicKey,
    TeamSeat, UserProfile,
};
pub use adiuva_access::{Caller, Role, TeamRole, Tier, TierSource};
pub use admission::{Admitted, Credential, Refusal, admit};
pub use device::{Device, MAX_USER_AGENT_CHARS, ip_prefix};
pub use error::AuthError;
pub use events::{EventPage, EventType, SecurityEvent};
pub use identities::{LinkedIdentity, NewIdentity};
pub use password::{MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES};
pub use sessions::SessionView;
pub use settings::{AuthSettings, MIN_PROD_SECRET_BYTES};
pub use tokens::{AccessClaims, JwtKeys};
