//! Reconciliation: the subscriptions we hold as live, read again from Stripe, for the changes
//! whose webhook never arrived or never applied (an endpoint down longer than Stripe's retries,
//! a secret rotated too early, a change made in the dashboard while events were disabled).
//! The `reconcile-billing` job of the janitor function runs it. Teams' subscriptions are
//! covered too: each live one is read again and recorded as its webhook would (status, seats,
//! period), under the lock of the team's row.

use adiuva_db::Database;
use serde::Serialize;

use crate::BillingError;
use crate::settings::Prices;
use crate::state::{self, Applied};
use crate::stripe::{StripeApi, StripeFailure};
use crate::team;

/// What one reconciliation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReconcileReport {
    /// Live subscriptions (users' and teams') read again from Stripe.
    pub checked: u64,
    /// Of those, the ones whose row differed and was corrected.
    pub fixed: u64,
    /// Not read (Stripe unreachable or refusing) or not applied; left for the next run.
    pub failed: u64,
}

/// The fields compared, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct Stored {
    tier: String,
    status: String,
    current_period_end: Option<i64>,
    cancel_at_period_end: i64,
}

async fn stored(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
) -> Result<Option<Stored>, sqlx::Error> {
    sqlx::query_as(
        "SELECT tier, status, current_period_end, cancel_at_period_end FROM subscriptions \
         WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(conn)
    .await
}

/// Each field that changed, as `(field, old, new)`.
fn drift(before: &Stored, after: &Stored) -> Vec<(&'static str, String, String)> {
    let period = |end: Option<i64>| end.map_or_else(|| "none".to_owned(), |end| end.to_string());
    let mut fields = Vec::new();
    if before.tier != after.tier {
        fields.push(("tier", before.tier.clone(), after.tier.clone()));
    }
    if before.status != after.status {
        fields.push(("status", before.status.clone(), after.status.clone()));
    }
    if before.current_period_end != after.current_period_end {
        fields.push((
            "current_period_end",
            period(before.current_period_end),
            period(after.current_period_end),
        ));
    }
    if before.cancel_at_period_end != after.cancel_at_period_end {
        fields.push((
            "cancel_at_period_end",
            (before.cancel_at_period_end != 0).to_string(),
            (after.cancel_at_period_end != 0).to_string(),
        ));
    }
    fields
}

/// Reads every subscription with status `active`, `trialing` or `past_due` and a Stripe id
/// again from Stripe and records it as the webhook would (the same [`state::apply`], under
/// the same lock of the user's row), logging each field it corrects. One subscription's failure
/// is counted and logged, and the others are still checked.
pub(crate) async fn reconcile(
    db: &Database,
    stripe: &StripeApi,
    prices: &Prices,
) -> Result<ReconcileReport, BillingError> {
    let live: Vec<(String, String)> = sqlx::query_as(
        "SELECT user_id, stripe_subscription_id FROM subscriptions \
         WHERE status IN ('active', 'trialing', 'past_due') AND stripe_subscription_id IS NOT NULL \
         ORDER BY user_id",
    )
    .fetch_all(db.pool())
    .await?;
    let mut report = ReconcileReport::default();
    for (user_id, subscription) in live {
        report.checked += 1;
        match reconcile_one(db, stripe, prices, &user_id, &subscription).await {
            Ok(true) => report.fixed += 1,
            Ok(false) => {}
            Err(err) => {
                report.failed += 1;
                tracing::warn!(
                    user_id,
                    subscription,
                    error = %adiuva_error::cause_chain(&err),
                    "subscription not reconciled; the next run tries again"
                );
            }
        }
    }
    let teams: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, stripe_subscription_id FROM teams \
         WHERE status IN ('active', 'past_due') AND stripe_subscription_id IS NOT NULL \
         ORDER BY id",
    )
    .fetch_all(db.pool())
    .await?;
    for (team_id, subscription) in teams {
        report.checked += 1;
        match reconcile_team(db, stripe, prices, &team_id, &subscription).await {
            Ok(true) => report.fixed += 1,
            Ok(false) => {}
            Err(err) => {
                report.failed += 1;
                tracing::warn!(
                    team_id,
                    subscription,
                    error = %adiuva_error::cause_chain(&err),
                    "team subscription not reconciled; the next run tries again"
                );
            }
        }
    }
    tracing::info!(?report, "subscriptions reconciled with Stripe");
    Ok(report)
}

/// One team's subscription; `true` when the team's row was corrected.
async fn reconcile_team(
    db: &Database,
    stripe: &StripeApi,
    prices: &Prices,
    team_id: &str,
    subscription: &str,
) -> Result<bool, BillingError> {
    let mut tx = db.pool().begin().await?;
    if adiuva_teams::lock_team(&mut tx, team_id).await?.is_none() {
        return Ok(false);
    }
    let Some(before) = team::held(&mut tx, team_id).await? else {
        return Ok(false);
    };
    let remote = match stripe.subscription(subscription).await {
        Ok(remote) => remote,
        Err(StripeFailure::NotFound) => {
            tracing::error!(
                team_id,
                subscription,
                "a live team subscription of ours is unknown to Stripe; left as it is, check the Stripe account"
            );
            return Ok(false);
        }
        Err(err) => return Err(err.into()),
    };
    if let Applied::Ignored(reason) = team::apply(&mut tx, team_id, &remote, prices, None).await? {
        tracing::warn!(
            team_id,
            subscription,
            reason,
            "team subscription state left alone"
        );
        return Ok(false);
    }
    let after = team::held(&mut tx, team_id).await?;
    tx.commit().await?;
    let Some(after) = after else {
        return Ok(false);
    };
    let fields = team_drift(&before, &after);
    for (field, old, new) in &fields {
        tracing::warn!(
            team_id,
            subscription,
            field,
            old,
            new,
            "team subscription drifted from Stripe; corrected ({field}: {old} -> {new})"
        );
    }
    Ok(!fields.is_empty())
}

/// Each field of a team's subscription that changed, as `(field, old, new)`.
fn team_drift(before: &team::Held, after: &team::Held) -> Vec<(&'static str, String, String)> {
    let mut fields = drift(
        &Stored {
            tier: "team".to_owned(),
            status: before.status.clone(),
            current_period_end: before.current_period_end,
            cancel_at_period_end: before.cancel_at_period_end,
        },
        &Stored {
            tier: "team".to_owned(),
            status: after.status.clone(),
            current_period_end: after.current_period_end,
            cancel_at_period_end: after.cancel_at_period_end,
        },
    );
    if before.seats != after.seats {
        fields.push(("seats", before.seats.to_string(), after.seats.to_string()));
    }
    fields
}

/// One subscription; `true` when its row was corrected.
async fn reconcile_one(
    db: &Database,
    stripe: &StripeApi,
    prices: &Prices,
    user_id: &str,
    subscription: &str,
) -> Result<bool, BillingError> {
    let mut tx = db.pool().begin().await?;
    if !state::lock_user(&mut tx, user_id).await? {
        return Ok(false);
    }
    let Some(before) = stored(&mut tx, user_id).await? else {
        return Ok(false);
    };
    let remote = match stripe.subscription(subscription).await {
        Ok(remote) => remote,
        Err(StripeFailure::NotFound) => {
            tracing::error!(
                user_id,
                subscription,
                "a live subscription of ours is unknown to Stripe; left as it is, check the Stripe account"
            );
            return Ok(false);
        }
        Err(err) => return Err(err.into()),
    };
    match state::apply(&mut tx, user_id, &remote, prices).await? {
        Applied::Recorded | Applied::Replaced { .. } => {}
        Applied::Ignored(reason) => {
            tracing::warn!(
                user_id,
                subscription,
                reason,
                "subscription state left alone"
            );
            return Ok(false);
        }
    }
    let after = stored(&mut tx, user_id).await?;
    tx.commit().await?;
    let Some(after) = after else {
        return Ok(false);
    };
    let fields = drift(&before, &after);
    for (field, old, new) in &fields {
        tracing::warn!(
            user_id,
            subscription,
            field,
            old,
            new,
            "subscription drifted from Stripe; corrected ({field}: {old} -> {new})"
        );
    }
    Ok(!fields.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_names_each_changed_field_with_both_values() {
        let before = Stored {
            tier: "pro".to_owned(),
            status: "active".to_owned(),
            current_period_end: Some(1000),
            cancel_at_period_end: 0,
        };
        assert!(drift(&before, &before).is_empty());
        let after = Stored {
            tier: "team".to_owned(),
            status: "past_due".to_owned(),
            current_period_end: Some(2000),
            cancel_at_period_end: 1,
        };
        assert_eq!(
            drift(&before, &after),
            [
                ("tier", "pro".to_owned(), "team".to_owned()),
                ("status", "active".to_owned(), "past_due".to_owned()),
                ("current_period_end", "1000".to_owned(), "2000".to_owned()),
                (
                    "cancel_at_period_end",
                    "false".to_owned(),
                    "true".to_owned()
                ),
            ]
        );
    }
}
