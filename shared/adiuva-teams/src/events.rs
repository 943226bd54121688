//! The team's log: who did what to whom and when, never content or tokens. Each entry is
//! written in the transaction of the change it records; billing's webhooks write
//! `seats_changed` and `subscription_changed` with no actor.

use adiuva_access::Caller;
use adiuva_db::log_cursor;
use serde::Serialize;
use sqlx::AnyConnection;

use crate::{TeamError, Teams, find_team, require_admin};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum TeamEventType {
    MemberInvited,
    MemberJoined,
    MemberRemoved,
    MemberLeft,
    RoleChanged,
    KeyShared,
    SeatsChanged,
    OwnershipTransferred,
    SubscriptionChanged,
    /// The owner set the team's SSO (or changed it).
    SsoConfigured,
    /// The owner removed the team's SSO.
    SsoRemoved,
}

impl TeamEventType {
    pub const ALL: [TeamEventType; 11] = [
        Self::MemberInvited,
        Self::MemberJoined,
        Self::MemberRemoved,
        Self::MemberLeft,
        Self::RoleChanged,
        Self::KeyShared,
        Self::SeatsChanged,
        Self::OwnershipTransferred,
        Self::SubscriptionChanged,
        Self::SsoConfigured,
        Self::SsoRemoved,
    ];

    /// The `team_events.event_type` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MemberInvited => "member_invited",
            Self::MemberJoined => "member_joined",
            Self::MemberRemoved => "member_removed",
            Self::MemberLeft => "member_left",
            Self::RoleChanged => "role_changed",
            Self::KeyShared => "key_shared",
            Self::SeatsChanged => "seats_changed",
            Self::OwnershipTransferred => "ownership_transferred",
            Self::SubscriptionChanged => "subscription_changed",
            Self::SsoConfigured => "sso_configured",
            Self::SsoRemoved => "sso_removed",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// One entry of `GET /teams/{id}/events`.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamEvent {
    #[serde(rename = "type")]
    pub event_type: TeamEventType,
    /// Who did it: a user id, or null for what the team's subscription changed.
    pub actor_id: Option<String>,
    /// Whom or what it concerned: a user id, or for `member_invited` the invitation's id.
    pub subject_id: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// The most entries one page holds.
pub const MAX_PAGE: u32 = 200;

/// A page of the log and, when more follow, the cursor of the next one.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub items: Vec<TeamEvent>,
    pub next: Option<String>,
}

/// Appends an entry to the team's log, inside the caller's transaction (which holds the
/// team's row, so entries of one team never race). Its time is at least a millisecond after
/// the team's previous entry, so that the log's order is the order things happened.
pub async fn record_event(
    conn: &mut AnyConnection,
    team_id: &str,
    kind: TeamEventType,
    actor_id: Option<&str>,
    subject_id: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO team_events (id, team_id, event_type, actor_id, subject_id, at) \
         SELECT $1, $2, $3, $4, $5, CASE WHEN last.at >= $6 THEN last.at + 1 ELSE $6 END \
         FROM (SELECT COALESCE(MAX(at), 0) AS at FROM team_events WHERE team_id = $2) last",
    )
    .bind(adiuva_db::new_id())
    .bind(team_id)
    .bind(kind.as_str())
    .bind(actor_id)
    .bind(subject_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct EventRow {
    id: String,
    event_type: String,
    actor_id: Option<String>,
    subject_id: Option<String>,
    at: i64,
}

impl Teams {
    /// The team's log (owner and admins), newest first, `limit` at a time from after `cursor`
    /// (the `next` of the page before; 1 to [`MAX_PAGE`]). Keyset on `(at, id)`, as the
    /// account's security log.
    pub async fn events(
        &self,
        caller: &Caller,
        team_id: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<EventPage, TeamError> {
        let mut conn = self.db.pool().acquire().await?;
        let team = find_team(&mut conn, team_id).await?;
        require_admin(&mut conn, team.as_ref(), team_id, &caller.id).await?;
        if limit == 0 || limit > MAX_PAGE {
            return Err(TeamError::Invalid("validation_error", "limit is 1 to 200"));
        }
        let (at, id) = match cursor {
            Some(cursor) => log_cursor::parse(cursor).ok_or(TeamError::InvalidCursor)?,
            None => (i64::MAX, String::new()),
        };
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT id, event_type, actor_id, subject_id, at FROM team_events \
             WHERE team_id = $1 AND (at, id) < ($2, $3) ORDER BY at DESC, id DESC LIMIT $4",
        )
        .bind(team_id)
        .bind(at)
        .bind(&id)
        .bind(i64::from(limit) + 1)
        .fetch_all(&mut *conn)
        .await?;
        let more = rows.len() > limit as usize;
        let rows = &rows[..rows.len().min(limit as usize)];
        let next = more
            .then(|| rows.last().map(|row| log_cursor::after(row.at, &row.id)))
            .flatten();
        let items = rows
            .iter()
            .filter_map(|row| {
                Some(TeamEvent {
                    event_type: TeamEventType::parse(&row.event_type)?,
                    actor_id: row.actor_id.clone(),
                    subject_id: row.subject_id.clone(),
                    at: row.at,
                })
            })
            .collect();
        Ok(EventPage { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_round_trips() {
        for kind in TeamEventType::ALL {
            assert_eq!(TeamEventType::parse(kind.as_str()), Some(kind));
        }
    }
}
