//! Paid installs. Installing a paid plugin not bought yet opens a purchase (one pending, paid
//! or disputed per user and plugin) and answers a Stripe Checkout Session in payment mode for
//! its price, with the purchase id in the session's metadata; in stub mode, a signed one-time
//! link of the local stub page instead. A new session for the same purchase (the old one
//! about to expire, or the price changed) expires the old one at Stripe, so only the newest
//! link can be paid. The purchase completes when Stripe says the session is paid (the billing
//! webhook, `checkout.session.completed`, re-read from Stripe) or the stub link is opened: in
//! one transaction the event is recorded, the purchase paid, the plugin installed and the sale
//! split and recorded with its transfer owed; the transfer is made after the commit
//! ([`revenue`]).
//!
//! Money coming back, each re-read from Stripe: a refund (`charge.refunded`) takes back the
//! developer's share of what was refunded; a full one also uninstalls. A refund that arrives
//! before the purchase completed is remembered (the purchase is refunded while pending) and
//! the completion then refuses. A dispute (`charge.dispute.*`) suspends the install while it
//! is open; won, the install comes back; lost, it is a refund in full.
//!
//! [`revenue`]: crate::revenue

use adiuva_access::Caller;
use adiuva_billing::{
    Billing, Event, Purchase, StripeApi, StripeFailure, StubItem, StubLink, WebhookOutcome,
};
use adiuva_db::{new_id, now_ms};
use sqlx::AnyConnection;

use crate::catalog::PluginRow;
use crate::installs::{add_installation, remove_installation};
use crate::revenue::{self, Sale, share_to_reverse};
use crate::{MarketplaceError, MarketplaceSettings, Purchases};

/// How long before its end an open checkout URL is no longer handed out again.
const REUSE_MARGIN_MS: i64 = 5 * 60 * 1000;
/// Stripe's Checkout Sessions expire after 24 hours; we reuse one for 23.
const SESSION_REUSE_MS: i64 = 23 * 60 * 60 * 1000;
/// Stub links work for an hour.
const STUB_REUSE_MS: i64 = 55 * 60 * 1000;

/// Whether a paid install may proceed.
#[derive(Debug, Clone)]
pub(crate) enum Checkout {
    /// Bought already.
    Paid,
    /// Pay here first.
    Pay { purchase_id: String, url: String },
}

/// What a stub link completed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StubCompleted {
    /// The purchase is paid and the plugin installed.
    Purchase { plugin_id: String },
    /// The developer's stub payout account is ready.
    Onboarding,
}

#[derive(sqlx::FromRow)]
struct OpenPurchase {
    id: String,
    amount_cents: i64,
    status: String,
    checkout_session_id: Option<String>,
    checkout_url: Option<String>,
    checkout_expires_at: Option<i64>,
}

/// What completing a purchase did.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Completion {
    Completed { plugin_id: String },
    AlreadyDone,
    Unknown,
}

impl Purchases {
    pub fn settings(&self) -> &MarketplaceSettings {
        &self.inner.settings
    }

    /// The caller's purchase of a paid plugin: paid already, or where to pay (an open
    /// checkout is handed out again while it works, so repeated installs do not multiply
    /// sessions).
    pub(crate) async fn checkout(
        &self,
        caller: &Caller,
        plugin: &PluginRow,
    ) -> Result<Checkout, MarketplaceError> {
        if plugin.closed_at.is_some() {
            // No new sales; a buyer keeps what they bought.
            let status: Option<String> = sqlx::query_scalar(
                "SELECT status FROM plugin_purchases WHERE plugin_id = $1 AND user_id = $2 \
                 AND status IN ('paid', 'disputed')",
            )
            .bind(&plugin.id)
            .bind(&caller.id)
            .fetch_optional(self.db().pool())
            .await?;
            return match status.as_deref() {
                Some("paid") => Ok(Checkout::Paid),
                Some(_) => Err(MarketplaceError::PurchaseDisputed),
                None => Err(MarketplaceError::PluginClosed),
            };
        }
        let now = now_ms();
        let mut conn = self.db().pool().acquire().await?;
        sqlx::query(
            "INSERT INTO plugin_purchases (id, plugin_id, user_id, amount_cents, status, created_at) \
             VALUES ($1, $2, $3, $4, 'pending', $5) \
             ON CONFLICT (plugin_id, user_id) WHERE status IN ('pending', 'paid', 'disputed') DO NOTHING",
        )
        .bind(new_id())
        .bind(&plugin.id)
        .bind(&caller.id)
        .bind(plugin.price_cents)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let open: OpenPurchase = sqlx::query_as(
            "SELECT id, amount_cents, status, checkout_session_id, checkout_url, checkout_expires_at \
             FROM plugin_purchases WHERE plugin_id = $1 AND user_id = $2 \
             AND status IN ('pending', 'paid', 'disputed')",
        )
        .bind(&plugin.id)
        .bind(&caller.id)
        .fetch_one(&mut *conn)
        .await?;
        drop(conn);
        match open.status.as_str() {
            "paid" => return Ok(Checkout::Paid),
            "disputed" => return Err(MarketplaceError::PurchaseDisputed),
            _ => {}
        }
        if let (Some(url), Some(expires_at)) = (&open.checkout_url, open.checkout_expires_at)
            && expires_at > now + REUSE_MARGIN_MS
            && open.amount_cents == plugin.price_cents
        {
            return Ok(Checkout::Pay {
                purchase_id: open.id,
                url: url.clone(),
            });
        }

        let (session, url, expires_at) = match self.stripe() {
            Some(stripe) => {
                let customer = self.inner.billing.customer_of(caller).await?;
                let purchase = Purchase {
                    id: &open.id,
                    plugin_id: &plugin.id,
                    user_id: &caller.id,
                    product_name: &plugin.name,
                    amount_cents: plugin.price_cents,
                };
                let settings = &self.inner.settings;
                let (session, url) = stripe
                    .payment_checkout(
                        &purchase,
                        &customer,
                        &settings.success_url,
                        &settings.cancel_url,
                    )
                    .await?;
                (Some(session), url, now + SESSION_REUSE_MS)
            }
            None => {
                let url = self
                    .inner
                    .billing
                    .stub_url(&caller.id, &StubItem::Purchase(open.id.clone()));
                (None, url, now + STUB_REUSE_MS)
            }
        };
        sqlx::query(
            "UPDATE plugin_purchases SET checkout_session_id = $2, checkout_url = $3, \
             checkout_expires_at = $4, amount_cents = $5 WHERE id = $1 AND status = 'pending'",
        )
        .bind(&open.id)
        .bind(&session)
        .bind(&url)
        .bind(expires_at)
        .bind(plugin.price_cents)
        .execute(self.db().pool())
        .await?;
        // The link handed out before must not be payable any more.
        if let (Some(stripe), Some(superseded)) = (self.stripe(), &open.checkout_session_id)
            && session.as_ref() != Some(superseded)
        {
            match stripe.expire_session(superseded).await {
                Ok(()) => tracing::info!(
                    purchase_id = open.id,
                    session = superseded,
                    "superseded checkout session expired"
                ),
                Err(err) => {
                    tracing::warn!(purchase_id = open.id, session = superseded, error = %adiuva_error::cause_chain(&err), "could not expire a superseded checkout session; it expires within 24 hours")
                }
            }
        }
        tracing::info!(
            plugin_id = plugin.id,
            purchase_id = open.id,
            amount_cents = plugin.price_cents,
            stub = session.is_none(),
            "plugin checkout started"
        );
        Ok(Checkout::Pay {
            purchase_id: open.id,
            url,
        })
    }

    /// Applies a webhook event of the marketplace's: a paid plugin checkout, a refunded or
    /// disputed charge of a purchase, a developer's account update. `None` for any other
    /// event. What a purchase owes at Stripe is settled after the commit.
    pub async fn apply(&self, event: &Event) -> Result<Option<WebhookOutcome>, MarketplaceError> {
        let Some(stripe) = self.stripe() else {
            return Ok(None);
        };
        match event.kind.as_str() {
            "checkout.session.completed" | "checkout.session.async_payment_succeeded"
                if event.object["mode"] == "payment" =>
            {
                self.payment_completed(stripe, event).await.map(Some)
            }
            "charge.refunded" => self.charge_refunded(stripe, event).await,
            kind if kind.starts_with("charge.dispute.") => {
                self.dispute_changed(stripe, event).await
            }
            "account.updated" => self.account_updated(stripe, event).await,
            _ => Ok(None),
        }
    }

    async fn payment_completed(
        &self,
        stripe: &StripeApi,
        event: &Event,
    ) -> Result<WebhookOutcome, MarketplaceError> {
        let Some(session_id) = event.object["id"].as_str() else {
            return Ok(WebhookOutcome::Ignored("no session id"));
        };
        // What Stripe says now, not what the delivery says.
        let session = match stripe.payment_session(session_id).await {
            Ok(session) => session,
            Err(StripeFailure::NotFound) => return Ok(WebhookOutcome::Ignored("unknown session")),
            Err(err) => return Err(err.into()),
        };
        let Some(purchase_id) = session.purchase_id.clone() else {
            return Ok(WebhookOutcome::Ignored("not a plugin purchase"));
        };
        if !session.paid {
            tracing::info!(
                purchase_id,
                "checkout completed but not paid yet; waiting for the payment"
            );
            return Ok(WebhookOutcome::Ignored("not paid yet"));
        }
        let charge = match &session.payment_intent {
            Some(intent) => stripe.charge_of(intent).await?,
            None => None,
        };
        let mut tx = self.db().pool().begin().await?;
        if !Billing::first_time(&mut tx, &event.id, &event.kind).await? {
            return Ok(WebhookOutcome::Duplicate);
        }
        let completion = self
            .complete(
                &mut tx,
                &purchase_id,
                charge.as_deref(),
                Some(&session.id),
                session.amount_total,
            )
            .await?;
        tx.commit().await?;
        if matches!(completion, Completion::Completed { .. }) {
            self.settle_now(&purchase_id).await;
        }
        Ok(match completion {
            Completion::Completed { .. } => WebhookOutcome::Applied,
            Completion::AlreadyDone => WebhookOutcome::Duplicate,
            Completion::Unknown => WebhookOutcome::Ignored("unknown purchase"),
        })
    }

    /// Pays a pending purchase, installs the plugin, records the split and makes the
    /// developer's transfer, in the caller's transaction. A purchase that is not pending any
    /// more is left alone (a duplicate delivery, or a stub link and a webhook both).
    async fn complete(
        &self,
        conn: &mut AnyConnection,
        purchase_id: &str,
        charge: Option<&str>,
        session_id: Option<&str>,
        amount_paid: Option<i64>,
    ) -> Result<Completion, MarketplaceError> {
        let locked: Option<(String, String, i64, String)> = sqlx::query_as(
            "UPDATE plugin_purchases SET status = status WHERE id = $1 \
             RETURNING plugin_id, user_id, amount_cents, status",
        )
        .bind(purchase_id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((plugin_id, user_id, amount, status)) = locked else {
            tracing::warn!(purchase_id, "payment for no purchase of ours");
            return Ok(Completion::Unknown);
        };
        if status != "pending" {
            return Ok(Completion::AlreadyDone);
        }
        // The split is of what was charged.
        let amount = match amount_paid {
            Some(paid) if paid != amount => {
                tracing::warn!(
                    purchase_id,
                    expected = amount,
                    paid,
                    "the charge differs from the price asked"
                );
                paid
            }
            _ => amount,
        };
        sqlx::query(
            "UPDATE plugin_purchases SET status = 'paid', charge_id = $2, paid_at = $3, \
             checkout_session_id = COALESCE($4, checkout_session_id), amount_cents = $5 WHERE id = $1",
        )
        .bind(purchase_id)
        .bind(charge)
        .bind(now_ms())
        .bind(session_id)
        .bind(amount)
        .execute(&mut *conn)
        .await?;
        add_installation(conn, &plugin_id, &user_id).await?;
        let developer: Option<String> =
            sqlx::query_scalar("SELECT author_id FROM plugins WHERE id = $1")
                .bind(&plugin_id)
                .fetch_optional(&mut *conn)
                .await?
                .flatten();
        let sale = Sale {
            purchase_id,
            plugin_id: &plugin_id,
            buyer_id: &user_id,
            amount_cents: amount,
            developer_id: developer.as_deref(),
            charge,
        };
        revenue::record(self, conn, &sale).await?;
        tracing::info!(
            purchase_id,
            plugin_id,
            amount_cents = amount,
            "plugin purchase paid and installed"
        );
        Ok(Completion::Completed { plugin_id })
    }

    /// A purchase's charge, or, for a charge not recorded yet (the purchase is still
    /// pending), the purchase its payment intent names.
    async fn purchase_of_charge(
        &self,
        stripe: &StripeApi,
        charge_id: &str,
    ) -> Result<Option<String>, MarketplaceError> {
        let recorded: Option<String> =
            sqlx::query_scalar("SELECT id FROM plugin_purchases WHERE charge_id = $1")
                .bind(charge_id)
                .fetch_optional(self.db().pool())
                .await?;
        if recorded.is_some() {
            return Ok(recorded);
        }
        let named = match stripe.purchase_of_charge(charge_id).await {
            Ok(named) => named,
            Err(StripeFailure::NotFound) => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        let Some(purchase_id) = named else {
            return Ok(None);
        };
        // Only a purchase of ours that has no other charge.
        let ours: Option<String> = sqlx::query_scalar(
            "SELECT id FROM plugin_purchases WHERE id = $1 AND (charge_id IS NULL OR charge_id = $2)",
        )
        .bind(&purchase_id)
        .bind(charge_id)
        .fetch_optional(self.db().pool())
        .await?;
        Ok(ours)
    }

    async fn charge_refunded(
        &self,
        stripe: &StripeApi,
        event: &Event,
    ) -> Result<Option<WebhookOutcome>, MarketplaceError> {
        let Some(charge_id) = event.object["id"].as_str() else {
            return Ok(None);
        };
        let Some(purchase_id) = self.purchase_of_charge(stripe, charge_id).await? else {
            // Not a marketplace charge.
            return Ok(None);
        };
        let charge = match stripe.charge(charge_id).await {
            Ok(charge) => charge,
            Err(StripeFailure::NotFound) => {
                return Ok(Some(WebhookOutcome::Ignored("unknown charge")));
            }
            Err(err) => return Err(err.into()),
        };
        let mut tx = self.db().pool().begin().await?;
        if !Billing::first_time(&mut tx, &event.id, &event.kind).await? {
            return Ok(Some(WebhookOutcome::Duplicate));
        }
        let locked: Option<(String, String, String, i64, i64)> = sqlx::query_as(
            "UPDATE plugin_purchases SET status = status WHERE id = $1 \
             RETURNING plugin_id, user_id, status, amount_cents, refunded_cents",
        )
        .bind(&purchase_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((plugin_id, user_id, status, amount, refunded_before)) = locked else {
            tx.commit().await?;
            return Ok(Some(WebhookOutcome::Ignored("purchase gone")));
        };
        let now = now_ms();
        if status == "pending" {
            // Refunded before it completed: remembered, so that the completion refuses.
            sqlx::query(
                "UPDATE plugin_purchases SET status = 'refunded', refunded_at = $2, \
                 refunded_cents = $3, charge_id = $4 WHERE id = $1",
            )
            .bind(&purchase_id)
            .bind(now)
            .bind(charge.amount_refunded)
            .bind(charge_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            tracing::warn!(
                purchase_id,
                "refund of a purchase that had not completed; it will not complete"
            );
            return Ok(Some(WebhookOutcome::Applied));
        }
        let refunded = charge.amount_refunded.max(refunded_before);
        if refunded <= refunded_before && !(charge.refunded && status != "refunded") {
            tx.commit().await?;
            return Ok(Some(WebhookOutcome::Duplicate));
        }
        let full = charge.refunded || refunded >= amount;
        if full {
            sqlx::query(
                "UPDATE plugin_purchases SET status = 'refunded', refunded_at = $2, \
                 refunded_cents = $3 WHERE id = $1",
            )
            .bind(&purchase_id)
            .bind(now)
            .bind(refunded)
            .execute(&mut *tx)
            .await?;
            remove_installation(&mut tx, &plugin_id, &user_id).await?;
        } else {
            // A partial refund keeps the install; the developer gives back the share of it.
            sqlx::query("UPDATE plugin_purchases SET refunded_cents = $2 WHERE id = $1")
                .bind(&purchase_id)
                .bind(refunded)
                .execute(&mut *tx)
                .await?;
        }
        let target = if full {
            revenue::split(amount).0
        } else {
            share_to_reverse(amount, refunded)
        };
        revenue::reverse(&mut tx, &purchase_id, target, full).await?;
        tx.commit().await?;
        tracing::info!(
            purchase_id,
            plugin_id,
            refunded_cents = refunded,
            full,
            "plugin purchase refunded"
        );
        self.settle_now(&purchase_id).await;
        Ok(Some(WebhookOutcome::Applied))
    }

    /// A dispute opened, changed or closed: the install is suspended while it is open, comes
    /// back when it is won, and a lost one is a full refund (the developer's share taken back).
    /// The dispute is read again from Stripe, so deliveries in any order end in its state.
    async fn dispute_changed(
        &self,
        stripe: &StripeApi,
        event: &Event,
    ) -> Result<Option<WebhookOutcome>, MarketplaceError> {
        let Some(dispute_id) = event.object["id"].as_str() else {
            return Ok(None);
        };
        let dispute = match stripe.dispute(dispute_id).await {
            Ok(dispute) => dispute,
            Err(StripeFailure::NotFound) => {
                return Ok(Some(WebhookOutcome::Ignored("unknown dispute")));
            }
            Err(err) => return Err(err.into()),
        };
        let Some(purchase_id) = self.purchase_of_charge(stripe, &dispute.charge).await? else {
            return Ok(None);
        };
        let mut tx = self.db().pool().begin().await?;
        if !Billing::first_time(&mut tx, &event.id, &event.kind).await? {
            return Ok(Some(WebhookOutcome::Duplicate));
        }
        let locked: Option<(String, String, String, i64)> = sqlx::query_as(
            "UPDATE plugin_purchases SET status = status WHERE id = $1 \
             RETURNING plugin_id, user_id, status, amount_cents",
        )
        .bind(&purchase_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((plugin_id, user_id, status, amount)) = locked else {
            tx.commit().await?;
            return Ok(Some(WebhookOutcome::Ignored("purchase gone")));
        };
        let now = now_ms();
        let outcome = match (dispute.status.as_str(), status.as_str()) {
            // Closed in the buyer's favour: the money went back, as a refund in full.
            ("lost", "paid" | "disputed") => {
                sqlx::query(
                    "UPDATE plugin_purchases SET status = 'refunded', refunded_at = $2, \
                     refunded_cents = amount_cents WHERE id = $1",
                )
                .bind(&purchase_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                remove_installation(&mut tx, &plugin_id, &user_id).await?;
                revenue::reverse(&mut tx, &purchase_id, revenue::split(amount).0, true).await?;
                tracing::warn!(purchase_id, "dispute lost: the purchase is refunded");
                WebhookOutcome::Applied
            }
            // Closed in our favour (or an inquiry that ended): the install comes back.
            ("won" | "warning_closed" | "prevented", "disputed") => {
                sqlx::query(
                    "UPDATE plugin_purchases SET status = 'paid', disputed_at = NULL WHERE id = $1",
                )
                .bind(&purchase_id)
                .execute(&mut *tx)
                .await?;
                add_installation(&mut tx, &plugin_id, &user_id).await?;
                tracing::info!(purchase_id, "dispute won: the install is back");
                WebhookOutcome::Applied
            }
            ("lost" | "won" | "warning_closed" | "prevented", _) => {
                WebhookOutcome::Ignored("dispute closed")
            }
            // Open: suspended until it closes.
            (_, "paid") => {
                sqlx::query(
                    "UPDATE plugin_purchases SET status = 'disputed', disputed_at = $2 WHERE id = $1",
                )
                .bind(&purchase_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                remove_installation(&mut tx, &plugin_id, &user_id).await?;
                tracing::warn!(purchase_id, "charge disputed: the install is suspended");
                WebhookOutcome::Applied
            }
            _ => WebhookOutcome::Ignored("dispute open"),
        };
        tx.commit().await?;
        if outcome == WebhookOutcome::Applied {
            self.settle_now(&purchase_id).await;
        }
        Ok(Some(outcome))
    }

    /// Settles a purchase's transfer after a commit; a failure is logged, and the janitor
    /// settles it later ([`Purchases::settle_pending`]).
    async fn settle_now(&self, purchase_id: &str) {
        if let Err(err) = self.settle(purchase_id).await {
            tracing::warn!(purchase_id, error = %adiuva_error::cause_chain(&err), "transfer not settled yet; the janitor will");
        }
    }

    /// Completes what a stub link stands for: a purchase (paid, installed, split, with a
    /// stubbed transfer) or a developer's payout onboarding.
    pub async fn complete_stub(&self, link: &StubLink) -> Result<StubCompleted, MarketplaceError> {
        match &link.item {
            StubItem::Purchase(purchase_id) => {
                let mut tx = self.db().pool().begin().await?;
                Billing::use_stub_link(&mut tx, link).await?;
                let owner: Option<String> =
                    sqlx::query_scalar("SELECT user_id FROM plugin_purchases WHERE id = $1")
                        .bind(purchase_id)
                        .fetch_optional(&mut *tx)
                        .await?;
                if owner.as_deref() != Some(link.user_id.as_str()) {
                    return Err(MarketplaceError::ForeignPurchase);
                }
                let completion = self
                    .complete(&mut tx, purchase_id, None, None, None)
                    .await?;
                tx.commit().await?;
                match completion {
                    Completion::Completed { plugin_id } => {
                        Ok(StubCompleted::Purchase { plugin_id })
                    }
                    Completion::AlreadyDone | Completion::Unknown => Err(
                        MarketplaceError::Billing(adiuva_billing::BillingError::StubTokenUsed),
                    ),
                }
            }
            StubItem::Onboarding => {
                self.complete_stub_onboarding(link).await?;
                Ok(StubCompleted::Onboarding)
            }
            StubItem::Tier(_) | StubItem::Team { .. } => Err(MarketplaceError::Invalid(
                "a subscription's stub link is billing's".into(),
            )),
        }
    }
}
