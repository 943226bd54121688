//! The account's security log: sign-ins, failed and locked sign-ins, password and email
//! changes, ended sessions, reused refresh tokens and linked or unlinked OpenID identities, so that a person can see who used their
//! account. A row holds the device's user agent and address prefix, never a password, a token
//! or a full address. The log shows 90 days; older rows are ignored by the query and deleted by
//! the janitor's `purge-sessions` job (adiuva-sessions).

use adiuva_db::log_cursor;
use serde::Serialize;
use sqlx::AnyConnection;

use crate::accounts::Accounts;
use crate::{AuthError, Caller, Device};

/// How long the log (and "a device the account has used") reaches back.
pub const RETENTION_MS: i64 = 90 * 24 * 60 * 60 * 1000;

/// At most one `sign_in_locked` per account in this long: a locked account is attacked by
/// every further attempt, and one row per attempt would let the attacker flood the log.
const LOCK_EVENT_EVERY_MS: i64 = 15 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    LoginSucceeded,
    LoginFailed,
    PasswordChanged,
    EmailChanged,
    SessionRevoked,
    RefreshReuseDetected,
    SignInLocked,
    OidcLinked,
    OidcUnlinked,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            Self::LoginSucceeded => "login_succeeded",
            Self::LoginFailed => "login_failed",
            Self::PasswordChanged => "password_changed",
            Self::EmailChanged => "email_changed",
            Self::SessionRevoked => "session_revoked",
            Self::RefreshReuseDetected => "refresh_reuse_detected",
            Self::SignInLocked => "sign_in_locked",
            Self::OidcLinked => "oidc_linked",
            Self::OidcUnlinked => "oidc_unlinked",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [
            Self::LoginSucceeded,
            Self::LoginFailed,
            Self::PasswordChanged,
            Self::EmailChanged,
            Self::SessionRevoked,
            Self::RefreshReuseDetected,
            Self::SignInLocked,
            Self::OidcLinked,
            Self::OidcUnlinked,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == text)
    }
}

/// One entry of `GET /auth/events`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SecurityEvent {
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// The session the event started, used or ended, if any.
    pub session_id: Option<String>,
    /// The IPv4 /24 or IPv6 /48 of the device, never its address.
    pub ip_prefix: Option<String>,
    pub user_agent: Option<String>,
    /// A sign-in from a user agent and address prefix the account had not used in 90 days.
    pub new_device: bool,
}

/// A page of the log and, when more follow, the cursor of the next one.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub items: Vec<SecurityEvent>,
    pub next: Option<String>,
}

/// What is written for one event.
pub(crate) struct NewEvent<'a> {
    pub(crate) user_id: &'a str,
    pub(crate) kind: EventType,
    pub(crate) session_id: Option<&'a str>,
    pub(crate) device: &'a Device,
    pub(crate) new_device: bool,
    pub(crate) now: i64,
}

/// Appends an event. Its time is at least a millisecond after the account's previous one, so
/// that the log's order (newest first, by time) is the order things happened even when two
/// land in the same millisecond.
pub(crate) async fn record(conn: &mut AnyConnection, event: NewEvent<'_>) -> Result<(), AuthError> {
    sqlx::query(
        "INSERT INTO security_events \
         (id, user_id, event_type, at, session_id, ip_prefix, user_agent, new_device) \
         SELECT $1, $2, $3, CASE WHEN last.at >= $4 THEN last.at + 1 ELSE $4 END, $5, $6, $7, $8 \
         FROM (SELECT COALESCE(MAX(at), 0) AS at FROM security_events WHERE user_id = $2) last",
    )
    .bind(adiuva_db::new_id())
    .bind(event.user_id)
    .bind(event.kind.as_str())
    .bind(event.now)
    .bind(event.session_id)
    .bind(event.device.ip_prefix())
    .bind(event.device.user_agent.as_deref())
    .bind(i64::from(event.new_device))
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that the brute-force limit refused a sign-in to the account of `email` (if there is
/// one), at most once per [`LOCK_EVENT_EVERY_MS`].
pub(crate) async fn record_lock(
    conn: &mut AnyConnection,
    email: &str,
    device: &Device,
    now: i64,
) -> Result<(), AuthError> {
    let email = email.trim().to_lowercase();
    let user_id: Option<String> = sqlx::query_scalar(
        "SELECT u.id FROM users u WHERE u.email = $1 AND NOT EXISTS (\
         SELECT 1 FROM security_events e WHERE e.user_id = u.id \
         AND e.event_type = 'sign_in_locked' AND e.at > $2)",
    )
    .bind(&email)
    .bind(now - LOCK_EVENT_EVERY_MS)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(user_id) = user_id {
        record(
            conn,
            NewEvent {
                user_id: &user_id,
                kind: EventType::SignInLocked,
                session_id: None,
                device,
                new_device: false,
                now,
            },
        )
        .await?;
        tracing::warn!(user_id, "sign-in locked by the failure limit");
    }
    Ok(())
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: String,
    event_type: String,
    at: i64,
    session_id: Option<String>,
    ip_prefix: Option<String>,
    user_agent: Option<String>,
    new_device: i64,
}

impl Accounts {
    /// The caller's security log of the last 90 days, newest first, `limit` at a time from
    /// after `cursor` (the `next` of the page before). Keyset on `(at, id)`, so events written
    /// between pages neither repeat nor skip the others.
    pub async fn events(
        &self,
        caller: &Caller,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<EventPage, AuthError> {
        let (at, id) = match cursor {
            Some(cursor) => log_cursor::parse(cursor).ok_or(AuthError::InvalidCursor)?,
            None => (i64::MAX, String::new()),
        };
        let now = adiuva_db::now_ms();
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT id, event_type, at, session_id, ip_prefix, user_agent, new_device \
             FROM security_events WHERE user_id = $1 AND at >= $2 AND (at, id) < ($3, $4) \
             ORDER BY at DESC, id DESC LIMIT $5",
        )
        .bind(&caller.id)
        .bind(now - RETENTION_MS)
        .bind(at)
        .bind(&id)
        .bind(i64::from(limit) + 1)
        .fetch_all(self.database().pool())
        .await?;
        let more = rows.len() > limit as usize;
        let rows = &rows[..rows.len().min(limit as usize)];
        let next = more
            .then(|| rows.last().map(|row| log_cursor::after(row.at, &row.id)))
            .flatten();
        let items = rows
            .iter()
            .filter_map(|row| {
                Some(SecurityEvent {
                    event_type: EventType::parse(&row.event_type)?,
                    at: row.at,
                    session_id: row.session_id.clone(),
                    ip_prefix: row.ip_prefix.clone(),
                    user_agent: row.user_agent.clone(),
                    new_device: row.new_device != 0,
                })
            })
            .collect();
        Ok(EventPage { items, next })
    }
}
