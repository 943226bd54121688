//! Teams (issue 21): a team and its members with their roles (exactly one owner, admins,
//! members), invitations with single-use tokens, the team key wrapped for each member, and the
//! team's log; and [`Teams::membership`], which the other domain crates ask who may touch a
//! team's data.
//!
//! The server never sees a team key: each member publishes a public key
//! (`users.public_key`), an admin wraps the team key for each member on their own device, and
//! only the wrapped copies are stored here, as opaque base64.
//!
//! Rules every method keeps:
//! - Anyone not a member of a team (an outsider, a removed member, a member of another team)
//!   gets [`TeamError::NotFound`] for it, before any other check, so a team's existence does
//!   not leak.
//! - Every change runs in one transaction whose first statement locks the team's row (a no-op
//!   `UPDATE`: a row lock on PostgreSQL, the write lock on SQLite), so that seat counts, the
//!   one owner and the log's order hold under concurrent requests; the log entry is written in
//!   the same transaction as the change it records.
//!
//! A team's own OpenID provider (team SSO) is [`Sso`]'s; what a sign-in through it may do is
//! adiuva-auth's decision, made with this crate's [`lock_sso`] and [`join_through_sso`].
//!
//! Billing per seat (the team's subscription: `teams.seats`, `teams.status`) is adiuva-billing's;
//! this crate only reads them. Team spaces (records, blobs) are adiuva-storage's.

mod error;
mod events;
mod invitations;
mod keys;
mod members;
mod sso;

use adiuva_access::Caller;
use adiuva_config::{Component, ConfigError, Context};
use adiuva_db::{Database, new_id, now_ms};
use serde::Serialize;
use sqlx::AnyConnection;

pub use adiuva_access::TeamRole;
pub use error::TeamError;
pub use events::{EventPage, MAX_PAGE, TeamEvent, TeamEventType, record_event};
pub use invitations::{
    INVITATION_TTL_MS, InvitationCreated, InvitationState, InvitationView, NewInvitation,
    seats_held,
};
pub use keys::{MAX_WRAPPED_KEY_CHARS, NewTeamKey, TeamKey};
pub use members::Member;
pub use sso::{
    LockedSso, MAX_DOMAINS, MIN_SSO_KEY_BYTES, Sso, SsoClient, SsoUpdate, TeamSso,
    join_through_sso, lock_sso, sso_key, sso_required,
};

/// How many teams one user may own.
pub const MAX_OWNED_TEAMS: u64 = 5;
/// The longest team name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// The state of a team's subscription, kept in step by billing's webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TeamStatus {
    /// No subscription yet (or never paid).
    None,
    Active,
    PastDue,
    Canceled,
}

impl TeamStatus {
    fn parse(value: &str) -> TeamStatus {
        match value {
            "active" => TeamStatus::Active,
            "past_due" => TeamStatus::PastDue,
            "canceled" => TeamStatus::Canceled,
            _ => TeamStatus::None,
        }
    }
}

/// A team as one of its members sees it.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Team {
    pub id: String,
    pub name: String,
    /// The caller's role in the team.
    pub role: TeamRole,
    /// Paid seats (the subscription's quantity); 0 until a checkout is paid.
    pub seats: i64,
    /// Seats held: members (the owner included) and pending, unexpired invitations.
    pub seats_used: i64,
    pub status: TeamStatus,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

/// What [`Teams::delete`] deleted, for the function to finish the purge beside it (the team
/// space's records and blobs, the subscription at Stripe).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedTeam {
    pub id: String,
}

/// The team service. Cheap to clone; built once per process.
#[derive(Debug, Clone)]
pub struct Teams {
    db: Database,
}

impl Component for Teams {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        Ok(Self::new(context.get()?))
    }
}

#[derive(sqlx::FromRow)]
struct TeamRow {
    id: String,
    name: String,
    seats: i64,
    status: String,
    created_at: i64,
    role: String,
    members: i64,
    pending: i64,
}

impl TeamRow {
    fn into_team(self) -> Option<Team> {
        Some(Team {
            role: TeamRole::parse(&self.role)?,
            id: self.id,
            name: self.name,
            seats: self.seats,
            seats_used: self.members + self.pending,
            status: TeamStatus::parse(&self.status),
            created_at: self.created_at,
        })
    }
}

/// The teams of `$1` (with `$2` the time now), optionally one (`$3`).
macro_rules! team_select {
    () => {
        "SELECT t.id, t.name, t.seats, t.status, t.created_at, m.role, \
     (SELECT COUNT(*) FROM team_members x WHERE x.team_id = t.id) AS members, \
     (SELECT COUNT(*) FROM team_invitations i WHERE i.team_id = t.id AND i.accepted_at IS NULL \
      AND i.revoked_at IS NULL AND i.expires_at > $2) AS pending \
     FROM teams t JOIN team_members m ON m.team_id = t.id AND m.user_id = $1"
    };
}

impl Teams {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The role of `user_id` in `team_id`, or `None` when they are not a member (or there is
    /// no such team). What the storage and billing code ask before touching a team's data.
    pub async fn membership(
        &self,
        team_id: &str,
        user_id: &str,
    ) -> Result<Option<TeamRole>, TeamError> {
        let mut conn = self.db.pool().acquire().await?;
        role_of(&mut conn, team_id, user_id).await
    }

    /// Creates a team with the caller as its owner (409 `team_limit_reached` past
    /// [`MAX_OWNED_TEAMS`] owned teams). It has no seats until its subscription is paid.
    pub async fn create(&self, caller: &Caller, name: &str) -> Result<Team, TeamError> {
        let name = valid_name(name)?;
        let now = now_ms();
        let mut tx = self.db.pool().begin().await?;
        // The caller's row, locked, so two concurrent creations count each other.
        let locked: Option<String> = sqlx::query_scalar(
            "UPDATE users SET token_version = token_version WHERE id = $1 RETURNING id",
        )
        .bind(&caller.id)
        .fetch_optional(&mut *tx)
        .await?;
        if locked.is_none() {
            return Err(TeamError::NotFound);
        }
        let owned: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM team_members WHERE user_id = $1 AND role = 'owner'",
        )
        .bind(&caller.id)
        .fetch_one(&mut *tx)
        .await?;
        if u64::try_from(owned).unwrap_or(0) >= MAX_OWNED_TEAMS {
            return Err(TeamError::TeamLimit(MAX_OWNED_TEAMS));
        }
        let id = new_id();
        sqlx::query(
            "INSERT INTO teams (id, name, seats, status, created_at, updated_at) \
             VALUES ($1, $2, 0, 'none', $3, $3)",
        )
        .bind(&id)
        .bind(&name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role, joined_at) VALUES ($1, $2, 'owner', $3)",
        )
        .bind(&id)
        .bind(&caller.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(team_id = id, user_id = caller.id, "team created");
        self.get(caller, &id).await
    }

    /// The caller's teams, oldest membership first, each with the caller's role.
    pub async fn list(&self, caller: &Caller) -> Result<Vec<Team>, TeamError> {
        let rows: Vec<TeamRow> =
            sqlx::query_as(concat!(team_select!(), " ORDER BY m.joined_at, t.id"))
                .bind(&caller.id)
                .bind(now_ms())
                .fetch_all(self.db.pool())
                .await?;
        Ok(rows.into_iter().filter_map(TeamRow::into_team).collect())
    }

    /// One of the caller's teams.
    pub async fn get(&self, caller: &Caller, team_id: &str) -> Result<Team, TeamError> {
        let mut conn = self.db.pool().acquire().await?;
        team_of(&mut conn, &caller.id, team_id).await
    }

    /// Renames the team (owner or admin).
    pub async fn rename(
        &self,
        caller: &Caller,
        team_id: &str,
        name: &str,
    ) -> Result<Team, TeamError> {
        let mut tx = self.db.pool().begin().await?;
        let locked = lock_team(&mut tx, team_id).await?;
        require_admin(&mut tx, locked.as_ref(), team_id, &caller.id).await?;
        let name = valid_name(name)?;
        sqlx::query("UPDATE teams SET name = $2, updated_at = $3 WHERE id = $1")
            .bind(team_id)
            .bind(&name)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        let team = team_of(&mut tx, &caller.id, team_id).await?;
        tx.commit().await?;
        Ok(team)
    }

    /// Deletes the team (owner only) with its members, invitations, wrapped keys, SSO and log, in
    /// one transaction. Returns what was deleted: the function ends the team's subscription
    /// and purges its team space beside this.
    pub async fn delete(&self, caller: &Caller, team_id: &str) -> Result<DeletedTeam, TeamError> {
        let mut tx = self.db.pool().begin().await?;
        let locked = lock_team(&mut tx, team_id).await?;
        require_owner(&mut tx, locked.as_ref(), team_id, &caller.id).await?;
        purge_rows(&mut tx, team_id).await?;
        tx.commit().await?;
        tracing::info!(team_id, user_id = caller.id, "team deleted");
        Ok(DeletedTeam {
            id: team_id.to_owned(),
        })
    }

    /// Deletes the team's rows (members, invitations, wrapped keys, log, the team) without
    /// asking who wants it: for a caller that has already decided (an operator, a job).
    /// Returns whether there was such a team.
    pub async fn purge_team(&self, team_id: &str) -> Result<bool, TeamError> {
        let mut tx = self.db.pool().begin().await?;
        let existed = lock_team(&mut tx, team_id).await?.is_some();
        if existed {
            purge_rows(&mut tx, team_id).await?;
        }
        tx.commit().await?;
        Ok(existed)
    }

    /// How many teams `user_id` owns (account deletion waits until it is none).
    pub async fn owned_count(&self, user_id: &str) -> Result<u64, TeamError> {
        let owned: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM team_members WHERE user_id = $1 AND role = 'owner'",
        )
        .bind(user_id)
        .fetch_one(self.db.pool())
        .await?;
        Ok(u64::try_from(owned).unwrap_or(0))
    }
}

/// What [`lock_team`] read from the team's row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockedTeam {
    pub seats: i64,
    /// `none`, `active`, `past_due` or `canceled`.
    pub status: String,
}

/// Locks the team's row for the rest of the transaction (a no-op write: a row lock on
/// PostgreSQL, the database's write lock on SQLite, taken first so that SQLite never has to
/// upgrade a read) and reads its seats and status; `None` when there is no such team. Billing's
/// seat changes take the same lock before they count [`seats_held`].
pub async fn lock_team(
    conn: &mut AnyConnection,
    team_id: &str,
) -> Result<Option<LockedTeam>, TeamError> {
    let row: Option<(i64, String)> = sqlx::query_as(
        "UPDATE teams SET updated_at = updated_at WHERE id = $1 RETURNING seats, status",
    )
    .bind(team_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(seats, status)| LockedTeam { seats, status }))
}

/// The team's seats and status without locking its row, for reads; `None` when there is no
/// such team.
pub(crate) async fn find_team(
    conn: &mut AnyConnection,
    team_id: &str,
) -> Result<Option<LockedTeam>, TeamError> {
    let row: Option<(i64, String)> =
        sqlx::query_as("SELECT seats, status FROM teams WHERE id = $1")
            .bind(team_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(seats, status)| LockedTeam { seats, status }))
}

pub async fn role_of(
    conn: &mut AnyConnection,
    team_id: &str,
    user_id: &str,
) -> Result<Option<TeamRole>, TeamError> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .fetch_optional(conn)
            .await?;
    Ok(role.as_deref().and_then(TeamRole::parse))
}

/// The caller's role in a team that exists (`locked`); 404 for anyone not a member.
pub(crate) async fn require_member(
    conn: &mut AnyConnection,
    locked: Option<&LockedTeam>,
    team_id: &str,
    user_id: &str,
) -> Result<TeamRole, TeamError> {
    if locked.is_none() {
        return Err(TeamError::NotFound);
    }
    role_of(conn, team_id, user_id)
        .await?
        .ok_or(TeamError::NotFound)
}

/// 404 for anyone not a member, then 403 unless the owner or an admin.
pub(crate) async fn require_admin(
    conn: &mut AnyConnection,
    locked: Option<&LockedTeam>,
    team_id: &str,
    user_id: &str,
) -> Result<TeamRole, TeamError> {
    let role = require_member(conn, locked, team_id, user_id).await?;
    if role.manages() {
        Ok(role)
    } else {
        Err(TeamError::AdminRequired)
    }
}

/// 404 for anyone not a member, then 403 unless the owner.
pub(crate) async fn require_owner(
    conn: &mut AnyConnection,
    locked: Option<&LockedTeam>,
    team_id: &str,
    user_id: &str,
) -> Result<(), TeamError> {
    match require_member(conn, locked, team_id, user_id).await? {
        TeamRole::Owner => Ok(()),
        _ => Err(TeamError::OwnerRequired),
    }
}

/// The team `team_id` as the member `user_id` sees it; 404 for anyone else.
pub(crate) async fn team_of(
    conn: &mut AnyConnection,
    user_id: &str,
    team_id: &str,
) -> Result<Team, TeamError> {
    let row: Option<TeamRow> = sqlx::query_as(concat!(team_select!(), " WHERE t.id = $3"))
        .bind(user_id)
        .bind(now_ms())
        .bind(team_id)
        .fetch_optional(conn)
        .await?;
    row.and_then(TeamRow::into_team).ok_or(TeamError::NotFound)
}

async fn purge_rows(conn: &mut AnyConnection, team_id: &str) -> Result<(), TeamError> {
    // Keys go with their memberships, and everything with the team (foreign keys); spelled out
    // so that the order does not depend on the cascade.
    for sql in [
        "DELETE FROM team_sso WHERE team_id = $1",
        "DELETE FROM team_keys WHERE team_id = $1",
        "DELETE FROM team_invitations WHERE team_id = $1",
        "DELETE FROM team_events WHERE team_id = $1",
        "DELETE FROM team_members WHERE team_id = $1",
        "DELETE FROM teams WHERE id = $1",
    ] {
        sqlx::query(sql).bind(team_id).execute(&mut *conn).await?;
    }
    Ok(())
}

/// A team name: trimmed, 1 to [`MAX_NAME_CHARS`] characters, no control characters.
fn valid_name(name: &str) -> Result<String, TeamError> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(TeamError::Invalid(
            "invalid_team_name",
            "name must be 1 to 100 characters, without control characters",
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(valid_name("  Design  ").unwrap(), "Design");
        assert!(valid_name("   ").is_err());
        assert!(valid_name("a\nb").is_err());
        assert!(valid_name(&"x".repeat(100)).is_ok());
        assert!(valid_name(&"x".repeat(101)).is_err());
    }

    #[test]
    fn statuses_parse() {
        assert_eq!(TeamStatus::parse("active"), TeamStatus::Active);
        assert_eq!(TeamStatus::parse("past_due"), TeamStatus::PastDue);
        assert_eq!(TeamStatus::parse("canceled"), TeamStatus::Canceled);
        assert_eq!(TeamStatus::parse("none"), TeamStatus::None);
    }
}
