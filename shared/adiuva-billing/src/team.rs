//! A team's subscription, billed per seat: the `teams` columns billing owns (`seats`, `status`
//! and the Stripe state of migration 0014), the seat count a change must respect, and the
//! team's log rows for what billing changes (`seats_changed`, `subscription_changed`).
//!
//! A team's subscription is separate from its owner's personal one: it is found by its id on
//! the team, or, before its first event is applied, by the `team_id` its checkout put in its
//! metadata (trusted only when the subscription's customer is the team's owner). Personal
//! rows are never written for it, and personal changes never touch it.

use adiuva_access::Tier;
use adiuva_db::{Database, now_ms};
use adiuva_teams::{TeamEventType, record_event};
use sqlx::AnyConnection;

use crate::settings::Prices;
use crate::state::Applied;
use crate::stripe::Remote;

/// The seats a team may buy.
pub const MAX_SEATS: i64 = 1000;

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
    let now = now_ms();
    if before.status != after.status {
        let kind = TeamEventType::SubscriptionChanged;
        record_event(conn, team_id, kind, actor_id, None, now).await?;
    }
    if before.seats != after.seats {
        record_event(
            conn,
            team_id,
            TeamEventType::SeatsChanged,
            actor_id,
            None,
            now,
        )
        .await?;
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

/// The name of a team made for its buyer: the local part of their email, "'s team" (the
/// migration names the teams it makes the same way).
pub(crate) fn default_name(email: &str) -> String {
    match email.split_once('@') {
        Some((local, _)) if !local.is_empty() => format!("{local}'s team"),
        _ => "Team".to_owned(),
    }
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
