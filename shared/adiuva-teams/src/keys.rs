//! The team key wrapped for each member: opaque base64 an admin made on their device with the
//! member's public key. The server stores and hands it out, never unwraps it.

use adiuva_access::Caller;
use adiuva_db::now_ms;
use serde::{Deserialize, Serialize};

use crate::events::{TeamEventType, record_event};
use crate::{TeamError, Teams, find_team, lock_team, require_admin, require_member, role_of};

/// The longest wrapped key accepted, in base64 characters (4 KiB).
pub const MAX_WRAPPED_KEY_CHARS: usize = 4096;

/// `PUT /teams/{id}/keys/{user_id}`.
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewTeamKey {
    /// The team key wrapped with the member's public key: standard base64, at most 4 KiB.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 4096))]
    pub wrapped_key: String,
    /// Which team key this is (members' clients rotate it); at least 1.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub key_version: i64,
}

/// The team key as wrapped for one member.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamKey {
    pub wrapped_key: String,
    pub key_version: i64,
    /// The owner or admin who wrapped it (a user id; it stays after that account is deleted).
    pub wrapped_by: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub updated_at: i64,
}

impl Teams {
    /// Stores the team key wrapped for the member `user_id` (owner or admin; a plain member
    /// gets 403), replacing the one before. 404 when `user_id` is not a member.
    pub async fn share_key(
        &self,
        caller: &Caller,
        team_id: &str,
        user_id: &str,
        key: &NewTeamKey,
    ) -> Result<TeamKey, TeamError> {
        let mut tx = self.db.pool().begin().await?;
        let locked = lock_team(&mut tx, team_id).await?;
        require_admin(&mut tx, locked.as_ref(), team_id, &caller.id).await?;
        if role_of(&mut tx, team_id, user_id).await?.is_none() {
            return Err(TeamError::MemberNotFound);
        }
        if key.wrapped_key.is_empty()
            || key.wrapped_key.len() > MAX_WRAPPED_KEY_CHARS
            || adiuva_checksum::decode_base64(key.wrapped_key.as_bytes()).is_err()
        {
            return Err(TeamError::Invalid(
                "invalid_wrapped_key",
                "wrapped_key must be standard base64 of at most 4 KiB",
            ));
        }
        if key.key_version < 1 {
            return Err(TeamError::Invalid(
                "invalid_key_version",
                "key_version must be at least 1",
            ));
        }
        let now = now_ms();
        sqlx::query(
            "INSERT INTO team_keys (team_id, user_id, wrapped_key, key_version, wrapped_by, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (team_id, user_id) DO UPDATE SET \
             wrapped_key = excluded.wrapped_key, key_version = excluded.key_version, \
             wrapped_by = excluded.wrapped_by, updated_at = excluded.updated_at",
        )
        .bind(team_id)
        .bind(user_id)
        .bind(&key.wrapped_key)
        .bind(key.key_version)
        .bind(&caller.id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        record_event(
            &mut tx,
            team_id,
            TeamEventType::KeyShared,
            Some(&caller.id),
            Some(user_id),
            now,
        )
        .await?;
        tx.commit().await?;
        tracing::info!(team_id, user_id, by = caller.id, "team key shared");
        Ok(TeamKey {
            wrapped_key: key.wrapped_key.clone(),
            key_version: key.key_version,
            wrapped_by: Some(caller.id.clone()),
            updated_at: now,
        })
    }

    /// The team key wrapped for the caller; 404 `key_not_shared` until an admin wrapped one.
    pub async fn my_key(&self, caller: &Caller, team_id: &str) -> Result<TeamKey, TeamError> {
        let mut conn = self.db.pool().acquire().await?;
        let team = find_team(&mut conn, team_id).await?;
        require_member(&mut conn, team.as_ref(), team_id, &caller.id).await?;
        let row: Option<(String, i64, Option<String>, i64)> = sqlx::query_as(
            "SELECT wrapped_key, key_version, wrapped_by, updated_at FROM team_keys \
             WHERE team_id = $1 AND user_id = $2",
        )
        .bind(team_id)
        .bind(&caller.id)
        .fetch_optional(&mut *conn)
        .await?;
        let (wrapped_key, key_version, wrapped_by, updated_at) =
            row.ok_or(TeamError::KeyNotShared)?;
        Ok(TeamKey {
            wrapped_key,
            key_version,
            wrapped_by,
            updated_at,
        })
    }
}
