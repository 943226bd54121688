//! Who the caller is and what their tier allows, as plain values the domain takes: the
//! [`Caller`] (user id, email, live tier, role), the tier feature matrix of the reference with
//! its gates (403) and quotas (402), and the atomic quota reservations on `storage_usage`.
//!
//! Nothing here verifies a credential or knows HTTP: the HTTP layer resolves the caller once
//! per request (adiuva-auth verifies the token and reads the live tier) and hands the value in.

mod caller;
pub mod quota;
pub mod tiers;

pub use caller::{Caller, Role, TeamRole, TierSource, effective_tier};
pub use tiers::{AccessError, Feature, Limit, Quota, Tier, TierLimits};
