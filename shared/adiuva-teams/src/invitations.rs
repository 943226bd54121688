//! Invitations: created by the owner or an admin of an active team for one email address,
//! each holding a seat while pending; a single-use token, valid for 7 days, handed out once and
//! stored as its SHA-256; accepted by the signed-in user with that email.

use adiuva_access::{Caller, TeamRole};
use adiuva_db::{new_id, now_ms};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

use crate::events::{TeamEventType, record_event};
use crate::{Team, TeamError, Teams, find_team, lock_team, require_admin, role_of, team_of};

/// How long an invitation can be accepted: 7 days.
pub const INVITATION_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;

/// `POST /teams/{id}/invitations`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewInvitation {
    /// The invitee's email; only the account with this email (case-insensitive) can accept.
    #[cfg_attr(feature = "openapi", schema(max_length = 254))]
    pub email: String,
    /// `admin` or `member`.
    pub role: TeamRole,
}

/// A new invitation with its token: the only time the token is shown.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitationCreated {
    pub id: String,
    pub email: String,
    pub role: TeamRole,
    /// Single use: the invitee sends it to `POST /teams/invitations/accept`. 64 hex digits.
    pub token: String,
    /// Milliseconds since the Unix epoch, 7 days from now.
    pub expires_at: i64,
}

/// Where an invitation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InvitationState {
    Pending,
    Accepted,
    Revoked,
    Expired,
}

/// An invitation as the team's admins see it (never its token).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InvitationView {
    pub id: String,
    pub email: String,
    pub role: TeamRole,
    pub state: InvitationState,
    /// Who invited (a user id; it stays after that account is deleted).
    pub invited_by: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    pub expires_at: i64,
}

/// At most this many invitations are listed, newest first.
const LIST_LIMIT: i64 = 200;

#[derive(sqlx::FromRow)]
struct InvitationRow {
    id: String,
    team_id: String,
    email: String,
    role: String,
    invited_by: Option<String>,
    created_at: i64,
    expires_at: i64,
    accepted_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl InvitationRow {
    fn state(&self, now: i64) -> InvitationState {
        if self.accepted_at.is_some() {
            InvitationState::Accepted
        } else if self.revoked_at.is_some() {
            InvitationState::Revoked
        } else if self.expires_at <= now {
            InvitationState::Expired
        } else {
            InvitationState::Pending
        }
    }
}

macro_rules! invitation_select {
    () => {
        "SELECT id, team_id, email, role, invited_by, created_at, \
     expires_at, accepted_at, revoked_at FROM team_invitations"
    };
}

impl Teams {
    /// Invites `email` into the team (owner or admin): 402 `team_inactive` unless the team's
    /// subscription is active, 409 `already_member` for a member's email, 409
    /// `seats_exhausted` when members and pending invitations already fill the seats. A
    /// pending invitation for the same email is replaced (revoked), so inviting again re-sends.
    pub async fn invite(
        &self,
        caller: &Caller,
        team_id: &str,
        invitation: &NewInvitation,
    ) -> Result<InvitationCreated, TeamError> {
        let mut tx = self.db.pool().begin().await?;
        let locked = lock_team(&mut tx, team_id).await?;
        require_admin(&mut tx, locked.as_ref(), team_id, &caller.id).await?;
        let Some(team) = locked else {
            return Err(TeamError::NotFound);
        };
        if invitation.role == TeamRole::Owner {
            return Err(TeamError::Invalid(
                "invalid_role",
                "an invitation's role is admin or member",
            ));
        }
        let email = normalize_email(&invitation.email)?;
        if team.status != "active" {
            return Err(TeamError::TeamInactive);
        }
        let member: Option<String> = sqlx::query_scalar(
            "SELECT m.user_id FROM team_members m JOIN users u ON u.id = m.user_id \
             WHERE m.team_id = $1 AND u.email = $2",
        )
        .bind(team_id)
        .bind(&email)
        .fetch_optional(&mut *tx)
        .await?;
        if member.is_some() {
            return Err(TeamError::AlreadyMember);
        }
        let now = now_ms();
        sqlx::query(
            "UPDATE team_invitations SET revoked_at = $3 WHERE team_id = $1 AND email = $2 \
             AND accepted_at IS NULL AND revoked_at IS NULL",
        )
        .bind(team_id)
        .bind(&email)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if seats_held(&mut tx, team_id, now).await? >= team.seats {
            return Err(TeamError::SeatsExhausted);
        }
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(TeamError::Random)?;
        let token = hex::encode(bytes);
        let id = new_id();
        let expires_at = now.saturating_add(INVITATION_TTL_MS);
        sqlx::query(
            "INSERT INTO team_invitations \
             (id, team_id, email, role, token_hash, invited_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&id)
        .bind(team_id)
        .bind(&email)
        .bind(invitation.role.as_str())
        .bind(token_hash(&token))
        .bind(&caller.id)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        record_event(
            &mut tx,
            team_id,
            TeamEventType::MemberInvited,
            Some(&caller.id),
            Some(&id),
            now,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            team_id,
            invitation_id = id,
            by = caller.id,
            "member invited"
        );
        Ok(InvitationCreated {
            id,
            email,
            role: invitation.role,
            token,
            expires_at,
        })
    }

    /// The team's invitations (owner or admin), newest first, without their tokens.
    pub async fn invitations(
        &self,
        caller: &Caller,
        team_id: &str,
    ) -> Result<Vec<InvitationView>, TeamError> {
        let mut conn = self.db.pool().acquire().await?;
        let team = find_team(&mut conn, team_id).await?;
        require_admin(&mut conn, team.as_ref(), team_id, &caller.id).await?;
        let rows: Vec<InvitationRow> = sqlx::query_as(concat!(
            invitation_select!(),
            " WHERE team_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
        ))
        .bind(team_id)
        .bind(LIST_LIMIT)
        .fetch_all(&mut *conn)
        .await?;
        let now = now_ms();
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                Some(InvitationView {
                    state: row.state(now),
                    role: TeamRole::parse(&row.role)?,
                    id: row.id,
                    email: row.email,
                    invited_by: row.invited_by,
                    created_at: row.created_at,
                    expires_at: row.expires_at,
                })
            })
            .collect())
    }

    /// Revokes a pending invitation (owner or admin): its token stops working and its seat is
    /// free. 404 for an invitation that is not pending in this team.
    pub async fn revoke_invitation(
        &self,
        caller: &Caller,
        team_id: &str,
        invitation_id: &str,
    ) -> Result<(), TeamError> {
        let mut tx = self.db.pool().begin().await?;
        let locked = lock_team(&mut tx, team_id).await?;
        require_admin(&mut tx, locked.as_ref(), team_id, &caller.id).await?;
        let revoked = sqlx::query(
            "UPDATE team_invitations SET revoked_at = $3 WHERE id = $1 AND team_id = $2 \
             AND accepted_at IS NULL AND revoked_at IS NULL",
        )
        .bind(invitation_id)
        .bind(team_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if revoked == 0 {
            return Err(TeamError::InvitationNotFound);
        }
        tx.commit().await?;
        tracing::info!(team_id, invitation_id, by = caller.id, "invitation revoked");
        Ok(())
    }

    /// Accepts an invitation: the caller joins the team with the invitation's role. 404 for a
    /// token that names no invitation; 410 `invitation_expired` when it was used, revoked or
    /// has expired; 403 `invitation_email_mismatch` unless the caller's email is the
    /// invitation's; 409 `already_member`; 402 `team_inactive` once the subscription ended;
    /// 409 `seats_exhausted` when the members already fill the seats (the team's row is
    /// locked while counting, so two accepts racing for the last seat cannot both join).
    pub async fn accept(&self, caller: &Caller, token: &str) -> Result<Team, TeamError> {
        if !well_formed(token) {
            return Err(TeamError::InvitationNotFound);
        }
        let hash = token_hash(token);
        let invitation: Option<InvitationRow> =
            sqlx::query_as(concat!(invitation_select!(), " WHERE token_hash = $1"))
                .bind(&hash)
                .fetch_optional(self.db.pool())
                .await?;
        let invitation = invitation.ok_or(TeamError::InvitationNotFound)?;
        let now = now_ms();
        if invitation.state(now) != InvitationState::Pending {
            return Err(TeamError::InvitationExpired);
        }
        // Both are stored trimmed and lowercased; compared case-insensitively all the same.
        if caller.email.to_lowercase() != invitation.email.to_lowercase() {
            return Err(TeamError::InvitationEmailMismatch);
        }
        let team_id = invitation.team_id.as_str();
        let mut tx = self.db.pool().begin().await?;
        let Some(team) = lock_team(&mut tx, team_id).await? else {
            return Err(TeamError::InvitationExpired);
        };
        if role_of(&mut tx, team_id, &caller.id).await?.is_some() {
            return Err(TeamError::AlreadyMember);
        }
        // Used, revoked or expired since it was read: the conditional update decides.
        let claimed = sqlx::query(
            "UPDATE team_invitations SET accepted_at = $2 WHERE id = $1 \
             AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > $2",
        )
        .bind(&invitation.id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Err(TeamError::InvitationExpired);
        }
        if team.status != "active" {
            return Err(TeamError::TeamInactive);
        }
        let members: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM team_members WHERE team_id = $1")
                .bind(team_id)
                .fetch_one(&mut *tx)
                .await?;
        if members >= team.seats {
            return Err(TeamError::SeatsExhausted);
        }
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role, joined_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(team_id)
        .bind(&caller.id)
        .bind(&invitation.role)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        record_event(
            &mut tx,
            team_id,
            TeamEventType::MemberJoined,
            Some(&caller.id),
            Some(&caller.id),
            now,
        )
        .await?;
        let joined = team_of(&mut tx, &caller.id, team_id).await?;
        tx.commit().await?;
        tracing::info!(team_id, user_id = caller.id, "invitation accepted");
        Ok(joined)
    }
}

/// Seats the team holds at `now`: members and pending, unexpired invitations. Billing's seat
/// changes compare the new quantity with it (inside their own transaction, after locking the
/// team's row, so that no invitation slips in between).
pub async fn seats_held(
    conn: &mut AnyConnection,
    team_id: &str,
    now: i64,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM team_members WHERE team_id = $1) + \
         (SELECT COUNT(*) FROM team_invitations WHERE team_id = $1 AND accepted_at IS NULL \
          AND revoked_at IS NULL AND expires_at > $2)",
    )
    .bind(team_id)
    .bind(now)
    .fetch_one(conn)
    .await
}

fn token_hash(token: &str) -> String {
    adiuva_checksum::sha256_hex(token.as_bytes())
}

/// Tokens we issue are exactly 64 lowercase hex digits; anything else is refused unread.
fn well_formed(token: &str) -> bool {
    token.len() == 64
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Trims and lowercases an email and checks that it looks like an address.
fn normalize_email(raw: &str) -> Result<String, TeamError> {
    let email = raw.trim().to_lowercase();
    let invalid = TeamError::Invalid("invalid_email", "email is not a valid address");
    let Some((local, domain)) = email.split_once('@') else {
        return Err(invalid);
    };
    let forbidden = |c: char| c.is_whitespace() || c.is_control() || "<>()[]\\,;:\"@".contains(c);
    if email.len() > 254
        || local.is_empty()
        || local.len() > 64
        || local.contains(forbidden)
        || !domain.contains('.')
        || domain.split('.').any(str::is_empty)
        || domain.contains(forbidden)
    {
        return Err(invalid);
    }
    Ok(email)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalized_and_checked() {
        assert_eq!(
            normalize_email(" Bob@Example.COM ").unwrap(),
            "bob@example.com"
        );
        for bad in [
            "",
            "bob",
            "bob@",
            "@example.com",
            "bob@example",
            "b b@x.com",
            "a@b@c.com",
        ] {
            assert!(normalize_email(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn tokens_are_hashed_and_checked_for_shape() {
        let token = "a".repeat(64);
        assert!(well_formed(&token));
        assert!(!well_formed(&"A".repeat(64)));
        assert!(!well_formed("short"));
        assert_eq!(
            token_hash(&token),
            adiuva_checksum::sha256_hex(token.as_bytes())
        );
        assert_ne!(token_hash(&token), token);
    }
}
