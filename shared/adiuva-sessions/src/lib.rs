//! How long the `refresh_tokens`, `sessions` and `security_events` rows of `adiuva-auth` are
//! kept, and the purge that forgets the rest (the `purge-sessions` job of the janitor
//! function).
//!
//! A crate of its own so that the janitor, which runs the purge, links none of adiuva-auth's
//! password hashing (bcrypt) or access tokens (jsonwebtoken). adiuva-auth issues, rotates and
//! revokes the rows; this crate only deletes them.
//!
//! The rule follows reuse detection (`Accounts::refresh` in adiuva-auth): presenting a token
//! that was already used revokes its whole family and ends the user's access tokens. That
//! needs the used token's row for as long as its family can still be exchanged, even after
//! the used token's own `expires_at` (a thief who rotated first holds a newer token of the same
//! family, and the owner's replay of the old one is what revokes it). So rows go a family at a
//! time, once the family's newest token has expired: then no token of it can be exchanged any
//! more, and reuse detection has nothing left to protect. A revoked family (logout, reuse)
//! stays until then too, so that a replay still ends the user's access tokens; its newest
//! token was issued before the revocation, so it goes at most one refresh lifetime
//! (`JWT_REFRESH_TOKEN_EXPIRE_DAYS`) after it was revoked. The rule needs no setting: the
//! lifetime is in each row's `expires_at`.
//!
//! A session is a family: its row goes with the family's last token (a session without
//! tokens can never be used again). The security log is kept [`SECURITY_LOG_DAYS`] days, as
//! `GET /auth/events` shows it.

use adiuva_config::{Component, ConfigError, Context};
use adiuva_db::{Database, now_ms};

/// The purge of forgotten sessions. Cheap to clone; built once per process.
#[derive(Debug, Clone)]
pub struct Sessions {
    db: Database,
}

impl Component for Sessions {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        Ok(Self::new(context.get()?))
    }
}

impl Sessions {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Deletes every refresh token of each family whose newest token has expired (used,
    /// revoked or neither), the sessions left without tokens, and the security log's rows
    /// past its retention. A family with a token that can still be exchanged keeps all its
    /// rows, used and revoked ones included. Safe next to traffic: a refresh only succeeds
    /// with an unexpired token, whose family this never touches, and a session younger than a
    /// minute is kept (sign-in writes the session, then its first token).
    pub async fn purge_expired(&self) -> Result<Purged, sqlx::Error> {
        let now = now_ms();
        let tokens = sqlx::query(
            "DELETE FROM refresh_tokens WHERE family_id IN \
             (SELECT family_id FROM refresh_tokens GROUP BY family_id HAVING MAX(expires_at) <= $1)",
        )
        .bind(now)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        let sessions = sqlx::query(
            "DELETE FROM sessions WHERE created_at < $1 AND NOT EXISTS \
             (SELECT 1 FROM refresh_tokens t WHERE t.family_id = sessions.id)",
        )
        .bind(now - SESSION_START_MS)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        let events = sqlx::query("DELETE FROM security_events WHERE at < $1")
            .bind(now - SECURITY_LOG_DAYS * DAY_MS)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        tracing::info!(
            tokens,
            sessions,
            events,
            "expired sessions and old security events purged"
        );
        Ok(Purged {
            deleted: tokens,
            sessions,
            events,
        })
    }
}

/// How long `GET /auth/events` shows the security log, in days.
pub const SECURITY_LOG_DAYS: i64 = 90;
const DAY_MS: i64 = 24 * 60 * 60 * 1000;
/// A session this young may be waiting for its first token.
const SESSION_START_MS: i64 = 60 * 1000;

/// What one purge removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Purged {
    /// Refresh-token rows.
    pub deleted: u64,
    /// Sessions whose family is gone.
    pub sessions: u64,
    /// Security-log rows past the retention.
    pub events: u64,
}
