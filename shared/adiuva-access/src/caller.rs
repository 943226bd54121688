//! The caller of a request as a plain value.

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

/// The authenticated caller. The tier and role are the ones in the database at the time of the
/// request, never the token's or the client's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    pub email: String,
    pub tier: Tier,
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
