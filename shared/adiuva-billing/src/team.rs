//! A team's subscription, billed per seat: the `teams` columns billing owns (`seats`, `status`
//! and the Stripe state of migration 0014), the seat count a change must respect, and the
//! team's log rows for what billing changes (`seats_changed`, `subscription_changed`).
//!
//! A team's subscription is separate from its owner's personal one: it is found by its id on
//! the team, or, before its first event is applied, by the `team_id` its checkout put in its
//! metadata (trusted only when the subscription's customer is the team's owner). Personal
//! rows are never written for it, and personal changes never touch it.

use adiuva_access::Tier;
use adiuva_db::{Database, new_id, now_ms};
use serde::Serialize;
use sqlx::AnyConnection;

use crate::settings::Prices;
use crate::state::Applied;
use crate::stripe::Remote;

/// The seats a team may buy.
pub const MAX_SEATS: i64 = 1000;

/// What `PUT /api/v1/teams/{id}/seats` answers: the team as its member sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TeamSeats {
    pub id: String,
    pub name: String,
    /// The caller's role: `owner`, `admin` or `member`.
    pub role: String,
    /// Paid seats (the subscription's quantity).
    pub seats: i64,
    /// Members plus pending invitations: each holds a seat.
    pub seats_used: i64,
    /// The subscription's state: `none`, `active`, `past_due` or `canceled`.
    pub status: String,
    /// ms since the epoch.
    pub created_at: i64,
}

/// A team's status for a Stripe status: `active` and `trialing` are active, `past_due` is
/// kept during Stripe's retries, `incomplete` (the first payment not made yet) is none, and
/// every ended state (`canceled`, `unpaid`, `incomplete_expired`, `paused`) is canceled.
pub(crate) fn team_status(stripe_status: &str) -> &'static str {
    match stripe_status {
        "active" | "trialing" => "active",
        "past_due" => "past_due",
        "incomplete" => "none",
        _ => "canceled",
    }
}

/// A team status under which its subscription still runs at Stripe.
pub(crate) fn is_live(status: &str) -> bool {
    matches!(status, "active" | "past_due")
}

/// The caller's role in the team; `None` for a non-member (or no such team).
pub(crate) async fn role_of(
    conn: &mut AnyConnection,
    team_id: &str,
    user_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT role FROM team_members WHERE team_id = $1 AND user_id = $2")
        .bind(team_id)
        .bind(user_id)
        .fetch_optional(conn)
        .await
}

/// Locks the team's row for the rest of the transaction (billing's changes of one team, and
/// the seat checks, run one at a time); `false` when the team is gone.
pub(crate) async fn lock_team(
    conn: &mut AnyConnection,
    team_id: &str,
) -> Result<bool, sqlx::Error> {
    let locked: Option<String> =
        sqlx::query_scalar("UPDATE teams SET updated_at = updated_at WHERE id = $1 RETURNING id")
            .bind(team_id)
            .fetch_optional(conn)
            .await?;
    Ok(locked.is_some())
}

/// The team whose subscription this is, if one holds it.
pub(crate) async fn holder_of(
    db: &Database,
    subscription: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM teams WHERE stripe_subscription_id = $1")
        .bind(subscription)
        .fetch_optional(db.pool())
        .await
}

/// Seats held: the members, and the invitations neither accepted, revoked nor expired.
pub(crate) async fn seats_used(
    conn: &mut AnyConnection,
    team_id: &str,
) -> Result<i64, sqlx::Error> {
    let members: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM team_members WHERE team_id = $1")
        .bind(team_id)
        .fetch_one(&mut *conn)
        .await?;
    let pending: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM team_invitations WHERE team_id = $1 AND accepted_at IS NULL \
         AND revoked_at IS NULL AND expires_at > $2",
    )
    .bind(team_id)
    .bind(now_ms())
    .fetch_one(conn)
    .await?;
    Ok(members + pending)
}

/// The team's subscription as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct Held {
    pub stripe_subscription_id: Option<String>,
    pub status: String,
    pub seats: i64,
    pub stripe_created: Option<i64>,
    pub current_period_end: Option<i64>,
    pub cancel_at_period_end: i64,
}

pub(crate) async fn held(
    conn: &mut AnyConnection,
    team_id: &str,
) -> Result<Option<Held>, sqlx::Error> {
    sqlx::query_as(
        "SELECT stripe_subscription_id, status, seats, stripe_created, current_period_end, \
         cancel_at_period_end FROM teams WHERE id = $1",
    )
    .bind(team_id)
    .fetch_optional(conn)
    .await
}

/// Appends a row to the team's log (`actor_id` is null for what Stripe's events changed).
pub(crate) async fn log(
    conn: &mut AnyConnection,
    team_id: &str,
    event_type: &str,
    actor_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO team_events (id, team_id, event_type, actor_id, subject_id, at) \
         VALUES ($1, $2, $3, $4, NULL, $5)",
    )
    .bind(new_id())
    .bind(team_id)
    .bind(event_type)
    .bind(actor_id)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes the team's status and seats, logging what changed.
async fn write(
    conn: &mut AnyConnection,
    team_id: &str,
    before: &Held,
    after: &Held,
    actor_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE teams SET stripe_subscription_id = $2, status = $3, seats = $4, \
         stripe_created = $5, current_period_end = $6, cancel_at_period_end = $7, \
         updated_at = $8 WHERE id = $1",
    )
    .bind(team_id)
    .bind(&after.stripe_subscription_id)
    .bind(&after.status)
    .bind(after.seats)
    .bind(after.stripe_created)
    .bind(after.current_period_end)
    .bind(after.cancel_at_period_end)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    if before.status != after.status {
        log(conn, team_id, "subscription_changed", actor_id).await?;
    }
    if before.seats != after.seats {
        log(conn, team_id, "seats_changed", actor_id).await?;
    }
    Ok(())
}

/// Records `remote` as the team's subscription, in the caller's transaction (the team's row
/// locked). The rules are those of personal subscriptions: of two live subscriptions the newer
/// counts, and an ended one changes the team only when it is the one held; only the Team price
/// pays for seats.
pub(crate) async fn apply(
    conn: &mut AnyConnection,
    team_id: &str,
    remote: &Remote,
    prices: &Prices,
    actor_id: Option<&str>,
) -> Result<Applied, sqlx::Error> {
    if remote.price.as_deref() != Some(prices.of(Tier::Team)) {
        tracing::error!(
            team_id,
            subscription = remote.id,
            price = remote.price.as_deref().unwrap_or_default(),
            "a team's subscription is not on the Team price: check STRIPE_PRICE_TEAM"
        );
        return Ok(Applied::Ignored("not the team price"));
    }
    let Some(before) = held(conn, team_id).await? else {
        return Ok(Applied::Ignored("team deleted"));
    };
    let mut outcome = Applied::Recorded;
    let same = before.stripe_subscription_id.as_deref() == Some(remote.id.as_str());
    // A stub subscription (no Stripe id) gives way to a real one.
    if !same && let Some(previous) = &before.stripe_subscription_id {
        let live = crate::state::is_live(&remote.status);
        let newer = remote.created_ms >= before.stripe_created.unwrap_or(0);
        if !live || (is_live(&before.status) && !newer) {
            return Ok(Applied::Ignored(
                "another subscription of the team is current",
            ));
        }
        if is_live(&before.status) {
            outcome = Applied::Replaced {
                previous: previous.clone(),
            };
        }
    }
    let after = Held {
        stripe_subscription_id: Some(remote.id.clone()),
        status: team_status(&remote.status).to_owned(),
        seats: remote.quantity.map_or(before.seats, |quantity| {
            i64::try_from(quantity).unwrap_or(MAX_SEATS)
        }),
        stripe_created: Some(remote.created_ms),
        current_period_end: remote.current_period_end_ms,
        cancel_at_period_end: i64::from(remote.cancel_at_period_end),
    };
    write(conn, team_id, &before, &after, actor_id).await?;
    tracing::info!(
        team_id,
        subscription = remote.id,
        status = after.status,
        seats = after.seats,
        "team subscription recorded"
    );
    Ok(outcome)
}

/// A stub subscription (stub mode, no Stripe): `seats` active for 30 days.
pub(crate) async fn activate_stub(
    conn: &mut AnyConnection,
    team_id: &str,
    seats: i64,
    actor_id: &str,
) -> Result<bool, sqlx::Error> {
    let Some(before) = held(conn, team_id).await? else {
        return Ok(false);
    };
    let now = now_ms();
    let after = Held {
        stripe_subscription_id: None,
        status: "active".to_owned(),
        seats,
        stripe_created: Some(now),
        current_period_end: Some(now + 30 * 24 * 60 * 60 * 1000),
        cancel_at_period_end: 0,
    };
    write(conn, team_id, &before, &after, Some(actor_id)).await?;
    Ok(true)
}

/// Seats changed without Stripe (a stub subscription).
pub(crate) async fn set_seats_locally(
    conn: &mut AnyConnection,
    team_id: &str,
    before: &Held,
    seats: i64,
    actor_id: &str,
) -> Result<(), sqlx::Error> {
    let after = Held {
        seats,
        ..before.clone()
    };
    write(conn, team_id, before, &after, Some(actor_id)).await
}

/// A subscription without Stripe ended now (a stub one).
pub(crate) async fn cancel_locally(
    conn: &mut AnyConnection,
    team_id: &str,
    before: &Held,
) -> Result<(), sqlx::Error> {
    let after = Held {
        status: "canceled".to_owned(),
        cancel_at_period_end: 0,
        ..before.clone()
    };
    write(conn, team_id, before, &after, None).await
}

/// The team as `user_id` sees it; `None` for a non-member.
pub(crate) async fn view(
    conn: &mut AnyConnection,
    team_id: &str,
    user_id: &str,
) -> Result<Option<TeamSeats>, sqlx::Error> {
    let Some(role) = role_of(conn, team_id, user_id).await? else {
        return Ok(None);
    };
    let row: Option<(String, i64, String, i64)> =
        sqlx::query_as("SELECT name, seats, status, created_at FROM teams WHERE id = $1")
            .bind(team_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((name, seats, status, created_at)) = row else {
        return Ok(None);
    };
    let seats_used = seats_used(conn, team_id).await?;
    Ok(Some(TeamSeats {
        id: team_id.to_owned(),
        name,
        role,
        seats,
        seats_used,
        status,
        created_at,
    }))
}

/// The name of a team made for its buyer: the local part of their email, "'s team" (the
/// migration names the teams it makes the same way).
fn default_name(email: &str) -> String {
    match email.split_once('@') {
        Some((local, _)) if !local.is_empty() => format!("{local}'s team"),
        _ => "Team".to_owned(),
    }
}

/// Creates a team owned by the buyer, for `{"tier": "team"}` without a `team_id`: the team row
/// (no seats, status `none` until paid) and its owner's membership, in one transaction.
///
/// Creating teams is the teams domain's job (`adiuva-teams`, built alongside, with its limits:
/// at most 5 teams owned per user). This minimal insert stands in for it until both land; the
/// lead routes it through `adiuva-teams` then, and this function goes away.
pub(crate) async fn create_team_for_checkout(
    db: &Database,
    owner_id: &str,
    owner_email: &str,
) -> Result<String, sqlx::Error> {
    let id = new_id();
    let now = now_ms();
    let mut tx = db.pool().begin().await?;
    sqlx::query(
        "INSERT INTO teams (id, name, seats, status, created_at, updated_at) \
         VALUES ($1, $2, 0, 'none', $3, $3)",
    )
    .bind(&id)
    .bind(default_name(owner_email))
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO team_members (team_id, user_id, role, joined_at) VALUES ($1, $2, 'owner', $3)",
    )
    .bind(&id)
    .bind(owner_id)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    tracing::info!(team_id = id, "team created for its checkout");
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_statuses_map_onto_the_four_team_statuses() {
        for (stripe, team) in [
            ("active", "active"),
            ("trialing", "active"),
            ("past_due", "past_due"),
            ("incomplete", "none"),
            ("canceled", "canceled"),
            ("unpaid", "canceled"),
            ("incomplete_expired", "canceled"),
            ("paused", "canceled"),
        ] {
            assert_eq!(team_status(stripe), team, "{stripe}");
        }
    }

    #[test]
    fn a_bought_team_is_named_after_its_buyer() {
        assert_eq!(default_name("alice@example.com"), "alice's team");
        assert_eq!(default_name("@example.com"), "Team");
        assert_eq!(default_name("nobody"), "Team");
    }
}
