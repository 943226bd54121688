//! Stripe's webhook deliveries.
//!
//! The signature is checked here with HMAC-SHA256 rather than with async-stripe's webhook
//! crate. Its typed parser rejects a whole event when any required field of the object's type
//! (as of the crate's pinned API version) is missing, so an endpoint set to another API version
//! would have its events refused; and it adds chrono and about fifteen crates to a build that
//! needs none of them. We need only the event's id, type and the ids in its object: the state
//! applied is the subscription fetched again from Stripe (whose answers match the client's API
//! version), so deliveries in any order end in the current state.
//!
//! Outcomes: a bad, missing or stale signature is 400 and changes nothing; a signature-valid
//! event we cannot read is logged and acknowledged (a retry would not help, and Stripe would
//! retry it for three days); an event type we do not handle is acknowledged; Stripe being down
//! while we fetch is 503 and nothing is recorded, so Stripe delivers it again.

use std::time::{SystemTime, UNIX_EPOCH};

use adiuva_checksum::{hmac_sha256_hex, same_secret};
use adiuva_db::Database;
use serde_json::Value;

use crate::BillingError;
use crate::settings::Prices;
use crate::state::{self, Applied};
use crate::stripe::{StripeApi, StripeFailure};
use crate::team;

/// Stripe's default tolerance between the signature's timestamp and now, both ways.
pub const TOLERANCE_SECS: i64 = 300;

/// What a delivery did (the answer is 200 in every case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookOutcome {
    /// A subscription's state was recorded.
    Applied,
    /// This event was applied before.
    Duplicate,
    /// Acknowledged and left alone, with the reason.
    Ignored(&'static str),
}

/// Checks `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{payload}">[,v1=...]`
/// (several `v1` while a secret is rolled; `v0` and unknown parts are ignored).
pub(crate) fn verify(
    secret: &str,
    payload: &[u8],
    header: Option<&str>,
    now_secs: i64,
) -> Result<(), BillingError> {
    let header = header.ok_or(BillingError::BadSignature)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(value),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(BillingError::BadSignature)?;
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(payload);
    let expected = hmac_sha256_hex(secret.as_bytes(), &signed);
    if !signatures.iter().any(|given| same_secret(&expected, given)) {
        return Err(BillingError::BadSignature);
    }
    if (now_secs - timestamp).abs() > TOLERANCE_SECS {
        tracing::warn!(
            timestamp,
            now_secs,
            "webhook signature outside the tolerance"
        );
        return Err(BillingError::BadSignature);
    }
    Ok(())
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}

/// An id field that Stripe sends as a string, or as the expanded object.
fn id_of(value: &Value) -> Option<&str> {
    value.as_str().or_else(|| value["id"].as_str())
}

/// What an event is about: a subscription and its customer. The user is the owner of the
/// customer on file, never a user id from the event's metadata: metadata is whatever the
/// creator of the object put there, and anyone with a Stripe session of ours could name
/// another account in it.
struct Target<'a> {
    subscription: &'a str,
    customer: Option<&'a str>,
}

fn target<'a>(kind: &str, object: &'a Value) -> Option<Target<'a>> {
    match kind {
        "checkout.session.completed" if object["mode"] == "subscription" => Some(Target {
            subscription: id_of(&object["subscription"])?,
            customer: id_of(&object["customer"]),
        }),
        "customer.subscription.created"
        | "customer.subscription.updated"
        | "customer.subscription.deleted" => Some(Target {
            subscription: object["id"].as_str()?,
            customer: id_of(&object["customer"]),
        }),
        "invoice.paid" | "invoice.payment_failed" => Some(Target {
            // Older API versions name it on the invoice, newer ones under parent.
            subscription: id_of(&object["subscription"])
                .or_else(|| id_of(&object["parent"]["subscription_details"]["subscription"]))?,
            customer: id_of(&object["customer"]),
        }),
        _ => None,
    }
}

/// A delivery whose signature checked out, read as far as we need it.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// An event: its id, type and `data.object`.
    Event(Event),
    /// Signed, but not an event we can read: logged, acknowledged (a retry would not help).
    Unreadable,
}

/// The parts of a Stripe event we use.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub kind: String,
    pub object: Value,
}

/// Checks the signature and reads the event.
pub(crate) fn read(
    secret: &str,
    payload: &[u8],
    signature: Option<&str>,
) -> Result<Delivery, BillingError> {
    verify(secret, payload, signature, now_secs())?;
    let event: Value = match serde_json::from_slice(payload) {
        Ok(event) => event,
        Err(err) => {
            tracing::error!(error = %err, "signed webhook is not JSON; acknowledged");
            return Ok(Delivery::Unreadable);
        }
    };
    let (Some(id), Some(kind), Some(_)) = (
        event["id"].as_str(),
        event["type"].as_str(),
        event["data"]["object"].as_object(),
    ) else {
        tracing::error!("signed webhook without an id, a type or an object; acknowledged");
        return Ok(Delivery::Unreadable);
    };
    Ok(Delivery::Event(Event {
        id: id.to_owned(),
        kind: kind.to_owned(),
        object: event["data"]["object"].clone(),
    }))
}

/// Applies a subscription event; `None` when the event is not about a subscription.
pub(crate) async fn apply(
    db: &Database,
    stripe: &StripeApi,
    prices: &Prices,
    event: &Event,
) -> Result<Option<WebhookOutcome>, BillingError> {
    let Some(target) = target(&event.kind, &event.object) else {
        return Ok(None);
    };
    let (id, kind) = (event.id.as_str(), event.kind.as_str());
    if state::seen(db, id).await? {
        tracing::info!("webhook event delivered again; nothing to do");
        return Ok(Some(WebhookOutcome::Duplicate));
    }
    // A team's subscription: its team holds it (never a user's row).
    if let Some(team_id) = team::holder_of(db, target.subscription).await? {
        return apply_to_team(db, stripe, prices, event, &target, &team_id).await;
    }

    let mut customer = target.customer.map(str::to_owned);
    if customer.is_none() {
        // The event does not name the customer: the subscription does.
        match stripe.subscription(target.subscription).await {
            Ok(remote) => customer = Some(remote.customer),
            Err(StripeFailure::NotFound) => {}
            Err(err) => return Err(err.into()),
        }
    }
    let user = match &customer {
        Some(customer) => state::user_of_customer(db, customer).await?,
        None => None,
    };
    let Some(user_id) = user else {
        tracing::warn!(
            subscription = target.subscription,
            "webhook event for no user of ours; acknowledged"
        );
        let mut conn = db.pool().acquire().await?;
        state::first_time(&mut conn, id, kind).await?;
        return Ok(Some(WebhookOutcome::Ignored("unknown user")));
    };

    // One transaction: the event id, the user's row locked, the subscription as Stripe has
    // it now, the row written. A duplicate delivery running at the same moment finds the id.
    let mut tx = db.pool().begin().await?;
    if !state::first_time(&mut tx, id, kind).await? {
        return Ok(Some(WebhookOutcome::Duplicate));
    }
    if !state::lock_user(&mut tx, &user_id).await? {
        tx.commit().await?;
        return Ok(Some(WebhookOutcome::Ignored("account deleted")));
    }
    let remote = match stripe.subscription(target.subscription).await {
        Ok(remote) => remote,
        Err(StripeFailure::NotFound) => {
            tracing::warn!(
                subscription = target.subscription,
                "Stripe has no such subscription; acknowledged"
            );
            tx.commit().await?;
            return Ok(Some(WebhookOutcome::Ignored("unknown subscription")));
        }
        // Nothing recorded: Stripe delivers the event again.
        Err(err) => return Err(err.into()),
    };
    if customer.as_deref() != Some(remote.customer.as_str()) {
        tracing::warn!(
            subscription = target.subscription,
            "the event names another customer than the subscription's; acknowledged"
        );
        tx.commit().await?;
        return Ok(Some(WebhookOutcome::Ignored("customer mismatch")));
    }
    let applied = match remote.metadata.get("team_id") {
        // A team's subscription no team holds yet (its first event): its checkout named the
        // team, and the customer's user must own it, so that metadata names no one else's team.
        Some(team_id) => {
            if adiuva_teams::role_of(&mut tx, team_id, &user_id).await?
                != Some(adiuva_teams::TeamRole::Owner)
            {
                tracing::warn!(
                    subscription = target.subscription,
                    team_id,
                    "a team subscription whose customer does not own the team; acknowledged"
                );
                Applied::Ignored("not the team's owner")
            } else if adiuva_teams::lock_team(&mut tx, team_id).await?.is_none() {
                Applied::Ignored("team deleted")
            } else {
                team::apply(&mut tx, team_id, &remote, prices, None).await?
            }
        }
        None => state::apply(&mut tx, &user_id, &remote, prices).await?,
    };
    tx.commit().await?;
    Ok(Some(finish(stripe, applied).await))
}

/// An event of a subscription a team holds, applied under the lock of the team's row, with the
/// same dedupe and ordering as a user's.
async fn apply_to_team(
    db: &Database,
    stripe: &StripeApi,
    prices: &Prices,
    event: &Event,
    target: &Target<'_>,
    team_id: &str,
) -> Result<Option<WebhookOutcome>, BillingError> {
    let mut tx = db.pool().begin().await?;
    if !state::first_time(&mut tx, &event.id, &event.kind).await? {
        return Ok(Some(WebhookOutcome::Duplicate));
    }
    if adiuva_teams::lock_team(&mut tx, team_id).await?.is_none() {
        tx.commit().await?;
        return Ok(Some(WebhookOutcome::Ignored("team deleted")));
    }
    let remote = match stripe.subscription(target.subscription).await {
        Ok(remote) => remote,
        Err(StripeFailure::NotFound) => {
            tracing::warn!(
                subscription = target.subscription,
                "Stripe has no such subscription; acknowledged"
            );
            tx.commit().await?;
            return Ok(Some(WebhookOutcome::Ignored("unknown subscription")));
        }
        // Nothing recorded: Stripe delivers the event again.
        Err(err) => return Err(err.into()),
    };
    if target
        .customer
        .is_some_and(|customer| customer != remote.customer)
    {
        tracing::warn!(
            subscription = target.subscription,
            "the event names another customer than the subscription's; acknowledged"
        );
        tx.commit().await?;
        return Ok(Some(WebhookOutcome::Ignored("customer mismatch")));
    }
    let applied = team::apply(&mut tx, team_id, &remote, prices, None).await?;
    tx.commit().await?;
    Ok(Some(finish(stripe, applied).await))
}

/// The outcome of an applied state; a subscription it replaced ends now.
async fn finish(stripe: &StripeApi, applied: Applied) -> WebhookOutcome {
    match applied {
        Applied::Recorded => WebhookOutcome::Applied,
        Applied::Replaced { previous } => {
            // Switching tiers (or paying a team's checkout twice) made a second subscription;
            // the old one ends now, so one is paid for. If this fails, its own events keep the
            // row right (it is older).
            if let Err(err) = stripe.cancel_now(&previous).await {
                tracing::error!(previous, error = %adiuva_error::cause_chain(&err), "could not end a replaced subscription; end it in the Stripe dashboard");
            }
            WebhookOutcome::Applied
        }
        Applied::Ignored(reason) => {
            tracing::info!(reason, "subscription state left alone");
            WebhookOutcome::Ignored(reason)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test";

    fn header(payload: &[u8], t: i64) -> String {
        let mut signed = format!("{t}.").into_bytes();
        signed.extend_from_slice(payload);
        format!("t={t},v1={}", hmac_sha256_hex(SECRET.as_bytes(), &signed))
    }

    #[test]
    fn signatures_are_checked_with_a_tolerance_both_ways() {
        let payload = br#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        assert!(verify(SECRET, payload, Some(&header(payload, now)), now).is_ok());
        // Rolled secrets: any v1 may match; v0 is ignored.
        let rolled = format!("t={now},v0=abc,v1=00,{}", &header(payload, now)[13..]);
        assert!(verify(SECRET, payload, Some(&rolled), now).is_ok());
        for bad in [
            None,
            Some(String::new()),
            Some(format!("t={now}")),
            Some(header(b"tampered", now)),
            Some(header(payload, now - TOLERANCE_SECS - 1)),
            Some(header(payload, now + TOLERANCE_SECS + 1)),
        ] {
            assert!(
                verify(SECRET, payload, bad.as_deref(), now).is_err(),
                "{bad:?} was accepted"
            );
        }
        assert!(verify("whsec_other", payload, Some(&header(payload, now)), now).is_err());
    }
}
