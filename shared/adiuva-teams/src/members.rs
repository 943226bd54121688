//! Members and their roles: the list, role changes (owner), removal and leaving, and the
//! transfer of ownership.

use adiuva_access::{Caller, TeamRole};
use adiuva_db::now_ms;
use serde::Serialize;

use crate::events::{TeamEventType, record_event};
use crate::{
    Team, TeamError, Teams, find_team, lock_team, require_member, require_owner, role_of, team_of,
};

/// A member of a team, with the public key admins wrap the team key with.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Member {
    pub user_id: String,
    pub email: String,
    pub role: TeamRole,
    /// Milliseconds since the Unix epoch.
    pub joined_at: i64,
    /// The member's published public key (base64), if any.
    pub public_key: Option<String>,
    /// `x25519`, `p256` or `rsa-oaep-256`, with the key.
    pub key_algorithm: Option<String>,
}

#[derive(sqlx::FromRow)]
struct MemberRow {
    user_id: String,
    email: String,
    role: String,
    joined_at: i64,
    public_key: Option<String>,
    key_algorithm: Option<String>,
}

impl MemberRow {
    fn into_member(self) -> Option<Member> {
        Some(Member {
            role: TeamRole::parse(&self.role)?,
            user_id: self.user_id,
            email: self.email,
            joined_at: self.joined_at,
            public_key: self.public_key,
            key_algorithm: self.key_algorithm,
        })
    }
}

macro_rules! member_select {
    () => {
        "SELECT m.user_id, u.email, m.role, m.joined_at, u.public_key, \
     u.key_algorithm FROM team_members m JOIN users u ON u.id = m.user_id WHERE m.team_id = $1"
    };
}

impl Teams {
    /// The team's members (any member may list them), oldest first.
    pub async fn members(&self, caller: &Caller, team_id: &str) -> Result<Vec<Member>, TeamError> {
        let mut conn = self.db.pool().acquire().await?;
        let team = find_team(&mut conn, team_id).await?;
        require_member(&mut conn, team.as_ref(), team_id, &caller.id).await?;
        let rows: Vec<MemberRow> = sqlx::query_as(concat!(
            member_select!(),
            " ORDER BY m.joined_at, m.user_id"
        ))
        .bind(team_id)
        .fetch_all(&mut *conn)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(MemberRow::into_member)
            .collect())
    }

    /// Makes a member an admin or a plain member (owner only). Ownership moves only with
    /// [`Teams::transfer`]: `owner` is 422, and the owner's own role 409 `owner_must_transfer`.
    pub async fn set_role(
        &self,
        caller: &Caller,
        team_id: &str,
        user_id: &str,
        role: TeamRole,
    ) -> Result<Member, TeamError> {
        let mut tx = self.db.pool().begin().await?;
        let locked = lock_team(&mut tx, team_id).await?;
        require_owner(&mut tx, locked.as_ref(), team_id, &caller.id).await?;
        if role == TeamRole::Owner {
            return Err(TeamError::Invalid(
                "invalid_role",
                "role is admin or member; ownership moves with POST /teams/{id}/transfer",
            ));
        }
        let current = role_of(&mut tx, team_id, user_id)
            .await?
            .ok_or(TeamError::MemberNotFound)?;
        if current == TeamRole::Owner {
            return Err(TeamError::OwnerMustTransfer);
        }
        let now = now_ms();
        if current != role {
            sqlx::query("UPDATE team_members SET role = $3 WHERE team_id = $1 AND user_id = $2")
                .bind(team_id)
                .bind(user_id)
                .bind(role.as_str())
                .execute(&mut *tx)
                .await?;
            record_event(
                &mut tx,
                team_id,
                TeamEventType::RoleChanged,
                Some(&caller.id),
                Some(user_id),
                now,
            )
            .await?;
        }
        let row: Option<MemberRow> =
            sqlx::query_as(concat!(member_select!(), " AND m.user_id = $2"))
                .bind(team_id)
                .bind(user_id)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        row.and_then(MemberRow::into_member)
            .ok_or(TeamError::MemberNotFound)
    }

    /// Removes a member, with their wrapped keys. The owner and admins remove anyone but the
    /// owner; anyone removes themself (leaves), except the owner, who must transfer ownership
    /// first (409 `owner_must_transfer`). Takes effect at the member's next request.
    pub async fn remove_member(
        &self,
        caller: &Caller,
        team_id: &str,
        user_id: &str,
    ) -> Result<(), TeamError> {
        let mut tx = self.db.pool().begin().await?;
        let locked = lock_team(&mut tx, team_id).await?;
        let role = require_member(&mut tx, locked.as_ref(), team_id, &caller.id).await?;
        let leaving = user_id == caller.id;
        if leaving {
            if role == TeamRole::Owner {
                return Err(TeamError::OwnerMustTransfer);
            }
        } else {
            if !role.manages() {
                return Err(TeamError::AdminRequired);
            }
            match role_of(&mut tx, team_id, user_id).await? {
                None => return Err(TeamError::MemberNotFound),
                Some(TeamRole::Owner) => return Err(TeamError::CannotRemoveOwner),
                Some(_) => {}
            }
        }
        // The wrapped keys go with the membership (and the foreign key would take them too).
        sqlx::query("DELETE FROM team_keys WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
            .bind(team_id)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let kind = if leaving {
            TeamEventType::MemberLeft
        } else {
            TeamEventType::MemberRemoved
        };
        record_event(
            &mut tx,
            team_id,
            kind,
            Some(&caller.id),
            Some(user_id),
            now_ms(),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(
            team_id,
            user_id,
            by = caller.id,
            leaving,
            "team member removed"
        );
        Ok(())
    }

    /// Makes another member the owner (owner only); the old owner becomes an admin. One
    /// transaction: the team has exactly one owner before and after.
    pub async fn transfer(
        &self,
        caller: &Caller,
        team_id: &str,
        user_id: &str,
    ) -> Result<Team, TeamError> {
        let mut tx = self.db.pool().begin().await?;
        let locked = lock_team(&mut tx, team_id).await?;
        require_owner(&mut tx, locked.as_ref(), team_id, &caller.id).await?;
        if role_of(&mut tx, team_id, user_id).await?.is_none() {
            return Err(TeamError::MemberNotFound);
        }
        if user_id != caller.id {
            // The old owner steps down first: the index allows one owner per team.
            for (who, role) in [(caller.id.as_str(), "admin"), (user_id, "owner")] {
                sqlx::query(
                    "UPDATE team_members SET role = $3 WHERE team_id = $1 AND user_id = $2",
                )
                .bind(team_id)
                .bind(who)
                .bind(role)
                .execute(&mut *tx)
                .await?;
            }
            record_event(
                &mut tx,
                team_id,
                TeamEventType::OwnershipTransferred,
                Some(&caller.id),
                Some(user_id),
                now_ms(),
            )
            .await?;
        }
        let team = team_of(&mut tx, &caller.id, team_id).await?;
        tx.commit().await?;
        tracing::info!(
            team_id,
            from = caller.id,
            to = user_id,
            "team ownership transferred"
        );
        Ok(team)
    }
}
