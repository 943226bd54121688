//! Sessions: one per sign-in, the same thing as one refresh-token family (the session's id is
//! the family's id). Access tokens carry it as `sid`, and [`Accounts::caller`] refuses a token
//! whose session has ended, so ending one takes effect at its device's next request rather
//! than when its access token expires.

use serde::Serialize;
use sqlx::AnyConnection;

use crate::accounts::{Accounts, lock_user};
use crate::events::{self, EventType, NewEvent, RETENTION_MS};
use crate::{AuthError, Caller, Device};

/// One entry of `GET /auth/sessions`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionView {
    pub id: String,
    /// When the device signed in, milliseconds since the Unix epoch.
    pub created_at: i64,
    /// The session's last token refresh (or its sign-in), milliseconds since the Unix epoch.
    pub last_used_at: i64,
    pub user_agent: Option<String>,
    /// The IPv4 /24 or IPv6 /48 of the address the device signed in from.
    pub ip_prefix: Option<String>,
    /// Whether this is the session of the request's own access token.
    pub current: bool,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: String,
    created_at: i64,
    last_used_at: i64,
    user_agent: Option<String>,
    ip_prefix: Option<String>,
}

/// Starts the session `session_id` of a sign-in from `device`. Returns whether the device is
/// new: no session of the account used this user agent and address prefix in the last 90
/// days.
pub(crate) async fn start(
    conn: &mut AnyConnection,
    user_id: &str,
    session_id: &str,
    device: &Device,
    now: i64,
) -> Result<bool, AuthError> {
    let prefix = device.ip_prefix();
    let agent = device.user_agent.as_deref();
    let known: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM sessions WHERE user_id = $1 AND COALESCE(user_agent, '') = $2 \
         AND ip_prefix = $3 AND last_used_at >= $4 LIMIT 1",
    )
    .bind(user_id)
    .bind(agent.unwrap_or_default())
    .bind(&prefix)
    .bind(now - RETENTION_MS)
    .fetch_optional(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, user_agent, ip_prefix) \
         VALUES ($1, $2, $3, $3, $4, $5)",
    )
    .bind(session_id)
    .bind(user_id)
    .bind(now)
    .bind(agent)
    .bind(&prefix)
    .execute(&mut *conn)
    .await?;
    Ok(known.is_none())
}

/// Marks the session used by a refresh. A family from before sessions existed has no row: it
/// is adopted here (with the refreshing device), so the tokens it now gets can be listed and
/// ended like any other session's.
pub(crate) async fn touch(
    conn: &mut AnyConnection,
    user_id: &str,
    session_id: &str,
    device: &Device,
    now: i64,
) -> Result<(), AuthError> {
    let touched = sqlx::query("UPDATE sessions SET last_used_at = $2 WHERE id = $1")
        .bind(session_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    if touched.rows_affected() == 0 {
        sqlx::query(
            "INSERT INTO sessions (id, user_id, created_at, last_used_at, user_agent, ip_prefix) \
             VALUES ($1, $2, $3, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(session_id)
        .bind(user_id)
        .bind(now)
        .bind(device.user_agent.as_deref())
        .bind(device.ip_prefix())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Ends one session of `user_id`: the session row and its refresh tokens. Returns whether it
/// was a live session of the user. The caller holds the user's row (see
/// [`Accounts::refresh`]).
pub(crate) async fn end(
    conn: &mut AnyConnection,
    user_id: &str,
    session_id: &str,
    now: i64,
) -> Result<bool, AuthError> {
    let ended = sqlx::query(
        "UPDATE sessions SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(session_id)
    .bind(user_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $3 \
         WHERE family_id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(session_id)
    .bind(user_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(ended.rows_affected() > 0)
}

/// Ends every session of the user and every access token, those without a session included
/// (the token version moves on). The caller holds the user's row. Returns the new version.
pub(crate) async fn end_all(
    conn: &mut AnyConnection,
    user_id: &str,
    now: i64,
) -> Result<i64, AuthError> {
    let version: i64 = sqlx::query_scalar(
        "UPDATE users SET token_version = token_version + 1, updated_at = $2 WHERE id = $1 \
         RETURNING token_version",
    )
    .bind(user_id)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL")
        .bind(user_id)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(version)
}

impl Accounts {
    /// The caller's sessions that can still be used: not ended, with a refresh token that has
    /// not expired. Most recently used first.
    pub async fn sessions(&self, caller: &Caller) -> Result<Vec<SessionView>, AuthError> {
        let rows: Vec<SessionRow> = sqlx::query_as(
            "SELECT s.id, s.created_at, s.last_used_at, s.user_agent, s.ip_prefix \
             FROM sessions s WHERE s.user_id = $1 AND s.revoked_at IS NULL \
             AND EXISTS (SELECT 1 FROM refresh_tokens t WHERE t.family_id = s.id \
             AND t.used_at IS NULL AND t.revoked_at IS NULL AND t.expires_at > $2) \
             ORDER BY s.last_used_at DESC, s.id",
        )
        .bind(&caller.id)
        .bind(adiuva_db::now_ms())
        .fetch_all(self.database().pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| SessionView {
                current: caller.session_id.as_deref() == Some(row.id.as_str()),
                id: row.id,
                created_at: row.created_at,
                last_used_at: row.last_used_at,
                user_agent: row.user_agent,
                ip_prefix: row.ip_prefix,
            })
            .collect())
    }

    /// Ends one of the caller's sessions (from `device`): its refresh token stops working, and
    /// its access tokens are refused from the next request on. Someone else's session, or one
    /// already ended, is `SessionNotFound`.
    pub async fn revoke_session(
        &self,
        caller: &Caller,
        session_id: &str,
        device: &Device,
    ) -> Result<(), AuthError> {
        let now = adiuva_db::now_ms();
        let mut tx = self.database().pool().begin().await?;
        if lock_user(&mut tx, &caller.id).await?.is_none() {
            return Err(AuthError::InvalidToken);
        }
        if !end(&mut tx, &caller.id, session_id, now).await? {
            return Err(AuthError::SessionNotFound);
        }
        events::record(
            &mut tx,
            NewEvent {
                user_id: &caller.id,
                kind: EventType::SessionRevoked,
                session_id: Some(session_id),
                device,
                new_device: false,
                now,
            },
        )
        .await?;
        tx.commit().await?;
        tracing::info!(user_id = caller.id, session_id, "session revoked");
        Ok(())
    }
}
