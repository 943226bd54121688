//! Who the caller is and what their tier allows, as plain values the domain takes: the
//! [`Caller`] (user id, email, live tier, role), the tier feature matrix of the reference with
//! its gates (403) and quotas (402), and the atomic quota reservations on `storage_usage`.
//!
//! Nothing here verifies a credential or knows HTTP: the HTTP layer resolves the caller once
//! per request (adiuva-auth verifies the token and reads the live tier) and hands the value in.

mod caller;
pub mod entitlements;
pub mod quota;
pub mod tiers;

pub use caller::{Caller, Role, TeamRole, TierSource, effective_tier};
pub use entitlements::Entitlements;
pub use tiers::{AccessError, Feature, Limit, Quota, Tier, TierLimits};

/// One "GB" of the tier matrix in bytes: `QUOTA_UNIT_BYTES` (1 GiB by default; tests shrink it
/// so that quotas are small). Read here once for storage's quotas and the entitlements alike.
pub fn quota_unit_bytes(source: &adiuva_config::Source) -> Result<u64, adiuva_config::ConfigError> {
    source.number_in("QUOTA_UNIT_BYTES", 1 << 30, 1..=1 << 50)
}
