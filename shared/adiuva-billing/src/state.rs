//! The `subscriptions` rows: each user's subscription as last read from Stripe (or made by a
//! stub checkout), and the rules for which subscription a user's row holds.

use adiuva_access::Tier;
use adiuva_access::tiers::live_tier;
use adiuva_db::{Database, new_id, now_ms};
use serde::Serialize;
use sqlx::AnyConnection;

use crate::settings::Prices;
use crate::stripe::Remote;

/// What `GET /api/v1/billing/subscription` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SubscriptionView {
    /// The tier the subscription grants now (`free` without a live one).
    pub tier: Tier,
    /// Stripe's status (`active`, `past_due`, `canceled`, ...), or `none`.
    pub status: String,
    /// End of the paid period, ms since the epoch.
    pub current_period_end: Option<i64>,
    /// The subscription ends at `current_period_end` and is not renewed.
    pub cancel_at_period_end: bool,
}

/// Stripe statuses in which a subscription still grants its tier (a failed payment keeps it
/// during Stripe's retries: `past_due`).
pub(crate) fn is_live(status: &str) -> bool {
    matches!(status, "active" | "trialing" | "past_due")
}

#[derive(sqlx::FromRow)]
struct Row {
    stripe_subscription_id: Option<String>,
    tier: String,
    status: String,
    current_period_end: Option<i64>,
    cancel_at_period_end: i64,
    stripe_created: Option<i64>,
}

async fn row(conn: &mut AnyConnection, user_id: &str) -> Result<Option<Row>, sqlx::Error> {
    sqlx::query_as(
        "SELECT stripe_subscription_id, tier, status, current_period_end, cancel_at_period_end, \
         stripe_created FROM subscriptions WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

pub(crate) async fn view(db: &Database, user_id: &str) -> Result<SubscriptionView, sqlx::Error> {
    let mut conn = db.pool().acquire().await?;
    Ok(match row(&mut conn, user_id).await? {
        Some(row) => SubscriptionView {
            tier: live_tier(Some(&row.tier), Some(&row.status)),
            status: row.status,
            current_period_end: row.current_period_end,
            cancel_at_period_end: row.cancel_at_period_end != 0,
        },
        None => SubscriptionView {
            tier: Tier::Free,
            status: "none".to_owned(),
            current_period_end: None,
            cancel_at_period_end: false,
        },
    })
}

/// The user's live subscription: `Some(Some(id))` at Stripe, `Some(None)` a stub one, `None`
/// when there is none that still grants a tier.
pub(crate) async fn live_subscription(
    db: &Database,
    user_id: &str,
) -> Result<Option<Option<String>>, sqlx::Error> {
    let mut conn = db.pool().acquire().await?;
    Ok(row(&mut conn, user_id)
        .await?
        .filter(|row| is_live(&row.status))
        .map(|row| row.stripe_subscription_id))
}

pub(crate) async fn customer_of(
    db: &Database,
    user_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    let customer: Option<Option<String>> =
        sqlx::query_scalar("SELECT stripe_customer_id FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(db.pool())
            .await?;
    Ok(customer.flatten())
}

/// Keeps the user's Stripe customer; a concurrent checkout that stored one first wins (it is
/// the same customer: both were created with the same idempotency key).
pub(crate) async fn set_customer(
    db: &Database,
    user_id: &str,
    customer: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE users SET stripe_customer_id = $2 WHERE id = $1 AND stripe_customer_id IS NULL",
    )
    .bind(user_id)
    .bind(customer)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The user whose Stripe customer this is (the one we created at their first checkout).
pub(crate) async fn user_of_customer(
    db: &Database,
    customer: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT id FROM users WHERE stripe_customer_id = $1")
        .bind(customer)
        .fetch_optional(db.pool())
        .await
}

/// What [`apply`] did with a subscription's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Applied {
    /// The user's row holds it now.
    Recorded,
    /// It replaced another live subscription of the user's, which should end.
    Replaced { previous: String },
    /// Left alone: an older or ended subscription while another one is live, or a price that
    /// sells no tier.
    Ignored(&'static str),
}

/// Records `remote` as the user's subscription, on the caller's connection (inside the
/// caller's transaction). The row holds the user's subscription that grants a tier; of two
/// live ones the newer. An ended subscription changes the row only when it is the one held,
/// so a late event of an old subscription cannot take a new one's tier away.
pub(crate) async fn apply(
    conn: &mut AnyConnection,
    user_id: &str,
    remote: &Remote,
    prices: &Prices,
) -> Result<Applied, sqlx::Error> {
    // The tier is the price's, and only a price of ours sells one: metadata is not trusted.
    let tier = remote
        .price
        .as_deref()
        .and_then(|price| prices.tier_of(price))
        .filter(|tier| *tier != Tier::Free);
    let Some(tier) = tier else {
        tracing::error!(
            subscription = remote.id,
            price = remote.price.as_deref().unwrap_or_default(),
            "a subscription sells no tier of ours: check STRIPE_PRICE_*"
        );
        return Ok(Applied::Ignored("unknown price"));
    };
    // The Team price pays for a team's seats (`team`), never a user's own tier.
    if tier == Tier::Team {
        tracing::warn!(
            subscription = remote.id,
            "a subscription on the Team price that no team holds; left alone"
        );
        return Ok(Applied::Ignored("a team's subscription"));
    }
    let mut outcome = Applied::Recorded;
    if let Some(current) = row(conn, user_id).await? {
        let same = current.stripe_subscription_id.as_deref() == Some(remote.id.as_str());
        // A stub row (no Stripe id) gives way to a real subscription.
        if !same && current.stripe_subscription_id.is_some() {
            let newer = remote.created_ms >= current.stripe_created.unwrap_or(0);
            if !is_live(&remote.status) || (is_live(&current.status) && !newer) {
                return Ok(Applied::Ignored(
                    "another subscription of the user is current",
                ));
            }
            if is_live(&current.status) {
                outcome = Applied::Replaced {
                    previous: current.stripe_subscription_id.unwrap_or_default(),
                };
            }
        }
    }
    let now = now_ms();
    sqlx::query(
        "INSERT INTO subscriptions (id, user_id, stripe_subscription_id, tier, status, \
         current_period_end, cancel_at_period_end, stripe_created, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) \
         ON CONFLICT (user_id) DO UPDATE SET stripe_subscription_id = excluded.stripe_subscription_id, \
         tier = excluded.tier, status = excluded.status, current_period_end = excluded.current_period_end, \
         cancel_at_period_end = excluded.cancel_at_period_end, stripe_created = excluded.stripe_created, \
         updated_at = excluded.updated_at",
    )
    .bind(new_id())
    .bind(user_id)
    .bind(&remote.id)
    .bind(tier.as_str())
    .bind(&remote.status)
    .bind(remote.current_period_end_ms)
    .bind(i64::from(remote.cancel_at_period_end))
    .bind(remote.created_ms)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    tracing::info!(
        user_id,
        subscription = remote.id,
        tier = tier.as_str(),
        status = remote.status,
        "subscription recorded"
    );
    Ok(outcome)
}

/// [`apply`] in a transaction of its own (after a cancellation the user asked for).
pub(crate) async fn record(
    db: &Database,
    user_id: &str,
    remote: &Remote,
    prices: &Prices,
) -> Result<Applied, sqlx::Error> {
    let mut tx = db.pool().begin().await?;
    let applied = apply(&mut tx, user_id, remote, prices).await?;
    tx.commit().await?;
    Ok(applied)
}

/// Cancels a stub subscription: flagged for the end of its period, or ended now.
pub(crate) async fn cancel_locally(
    db: &Database,
    user_id: &str,
    at_period_end: bool,
) -> Result<(), sqlx::Error> {
    let sql = if at_period_end {
        "UPDATE subscriptions SET cancel_at_period_end = 1, updated_at = $2 WHERE user_id = $1"
    } else {
        "UPDATE subscriptions SET status = 'canceled', cancel_at_period_end = 0, updated_at = $2 \
         WHERE user_id = $1"
    };
    sqlx::query(sql)
        .bind(user_id)
        .bind(now_ms())
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Locks the user's row for the rest of the transaction, so that the events of one user are
/// applied one at a time (each reading Stripe after the previous one wrote); `false` when the
/// account is gone.
pub(crate) async fn lock_user(
    conn: &mut AnyConnection,
    user_id: &str,
) -> Result<bool, sqlx::Error> {
    let locked: Option<String> =
        sqlx::query_scalar("UPDATE users SET updated_at = updated_at WHERE id = $1 RETURNING id")
            .bind(user_id)
            .fetch_optional(conn)
            .await?;
    Ok(locked.is_some())
}

/// Records an event (or a stub token) as applied; `false` when it already was. Runs in the
/// transaction of the change it applies.
pub(crate) async fn first_time(
    conn: &mut AnyConnection,
    id: &str,
    event_type: &str,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO billing_events (id, event_type, received_at) VALUES ($1, $2, $3) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(event_type)
    .bind(now_ms())
    .execute(conn)
    .await?;
    Ok(inserted.rows_affected() == 1)
}

pub(crate) async fn seen(db: &Database, id: &str) -> Result<bool, sqlx::Error> {
    let found: Option<String> = sqlx::query_scalar("SELECT id FROM billing_events WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    Ok(found.is_some())
}

/// The subscription a stub checkout activates: the tier for 30 days, no Stripe ids.
pub(crate) async fn activate_stub(
    conn: &mut AnyConnection,
    user_id: &str,
    tier: Tier,
) -> Result<(), sqlx::Error> {
    let now = now_ms();
    sqlx::query(
        "INSERT INTO subscriptions (id, user_id, stripe_subscription_id, tier, status, \
         current_period_end, cancel_at_period_end, stripe_created, created_at, updated_at) \
         VALUES ($1, $2, NULL, $3, 'active', $4, 0, $5, $5, $5) \
         ON CONFLICT (user_id) DO UPDATE SET stripe_subscription_id = NULL, tier = excluded.tier, \
         status = 'active', current_period_end = excluded.current_period_end, \
         cancel_at_period_end = 0, stripe_created = excluded.stripe_created, \
         updated_at = excluded.updated_at",
    )
    .bind(new_id())
    .bind(user_id)
    .bind(tier.as_str())
    .bind(now + 30 * 24 * 60 * 60 * 1000)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
