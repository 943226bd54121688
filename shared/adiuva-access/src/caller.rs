//! The caller of a request as a plain value.

use serde::{Deserialize, Serialize};

use crate::AccessError;
use crate::tiers::Tier;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Admin,
}

impl Role {
    /// The `users.role` column; anything but `admin` is a plain user.
    pub fn parse(value: &str) -> Role {
        if value == "admin" {
            Role::Admin
        } else {
            Role::User
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

/// Where the caller's tier comes from: their own subscription, or a seat in a team whose
/// subscription is active (the Team tier), whichever is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TierSource {
    Own,
    Team,
}

impl TierSource {
    pub fn as_str(self) -> &'static str {
        match self {
            TierSource::Own => "own",
            TierSource::Team => "team",
        }
    }
}

/// A member's role in a team: exactly one owner, any number of admins and members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TeamRole {
    Owner,
    Admin,
    Member,
}

impl TeamRole {
    pub const ALL: [TeamRole; 3] = [TeamRole::Owner, TeamRole::Admin, TeamRole::Member];

    /// The `team_members.role` column.
    pub fn as_str(self) -> &'static str {
        match self {
            TeamRole::Owner => "owner",
            TeamRole::Admin => "admin",
            TeamRole::Member => "member",
        }
    }

    pub fn parse(value: &str) -> Option<TeamRole> {
        TeamRole::ALL
            .into_iter()
            .find(|role| role.as_str() == value)
    }

    /// Owners and admins manage the team (invitations, keys, members, the log).
    pub fn manages(self) -> bool {
        matches!(self, TeamRole::Owner | TeamRole::Admin)
    }
}

/// The tier of a caller: the better of their own subscription's (`own`) and the Team tier of a
/// seat in an active team (`team`). The Team tier is the best there is, so a seat wins unless
/// the caller pays for the Team tier themselves.
pub fn effective_tier(own: Tier, team_seat: bool) -> (Tier, TierSource) {
    if team_seat && own != Tier::Team {
        (Tier::Team, TierSource::Team)
    } else {
        (own, TierSource::Own)
    }
}

/// The authenticated caller. The tier and role are the ones in the database at the time of the
/// request, never the token's or the client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    pub email: String,
    /// The effective tier: the better of the own subscription's and a team seat's.
    pub tier: Tier,
    /// Whether `tier` is the caller's own or a team's.
    pub tier_source: TierSource,
    pub role: Role,
    /// The session of the request's access token (`sid`), so that a route can tell the
    /// caller's own device from the others (`GET /auth/sessions`, logout); `None` for a token
    /// issued before sessions existed.
    pub session_id: Option<String>,
}

impl Caller {
    /// 403 `admin_required` unless the caller has the admin role.
    pub fn require_admin(&self) -> Result<(), AccessError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(AccessError::AdminRequired)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_team_seat_gives_the_team_tier_unless_the_own_is_as_good() {
        assert_eq!(
            effective_tier(Tier::Free, false),
            (Tier::Free, TierSource::Own)
        );
        assert_eq!(
            effective_tier(Tier::Free, true),
            (Tier::Team, TierSource::Team)
        );
        assert_eq!(
            effective_tier(Tier::Power, true),
            (Tier::Team, TierSource::Team)
        );
        assert_eq!(
            effective_tier(Tier::Team, true),
            (Tier::Team, TierSource::Own)
        );
        assert_eq!(
            effective_tier(Tier::Pro, false),
            (Tier::Pro, TierSource::Own)
        );
    }

    #[test]
    fn team_roles_round_trip() {
        for role in TeamRole::ALL {
            assert_eq!(TeamRole::parse(role.as_str()), Some(role));
        }
        assert_eq!(TeamRole::parse("boss"), None);
        assert!(TeamRole::Admin.manages() && !TeamRole::Member.manages());
    }
}
