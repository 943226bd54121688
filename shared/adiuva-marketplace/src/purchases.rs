//! Paid installs. Installing a paid plugin not bought yet opens a purchase (one pending or paid
//! per user and plugin) and answers a Stripe Checkout Session in payment mode for its price,
//! with the purchase id in the session's metadata; in stub mode, a signed one-time link of the
//! local stub page instead. The purchase completes when Stripe says the session is paid (the
//! billing webhook, `checkout.session.completed`, re-read from Stripe) or the stub link is
//! opened: in one transaction the event is recorded, the purchase paid, the plugin installed
//! and the sale split and recorded, its transfer made ([`revenue`]). A full refund of the
//! charge (`charge.refunded`) uninstalls the plugin and reverses the developer's transfer.
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
use crate::revenue::{self, Sale};
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
        let now = now_ms();
        let mut conn = self.db().pool().acquire().await?;
        sqlx::query(
            "INSERT INTO plugin_purchases (id, plugin_id, user_id, amount_cents, status, created_at) \
             VALUES ($1, $2, $3, $4, 'pending', $5) \
             ON CONFLICT (plugin_id, user_id) WHERE status IN ('pending', 'paid') DO NOTHING",
        )
        .bind(new_id())
        .bind(&plugin.id)
        .bind(&caller.id)
        .bind(plugin.price_cents)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        let open: OpenPurchase = sqlx::query_as(
            "SELECT id, amount_cents, status, checkout_url, checkout_expires_at FROM plugin_purchases \
             WHERE plugin_id = $1 AND user_id = $2 AND status IN ('pending', 'paid')",
        )
        .bind(&plugin.id)
        .bind(&caller.id)
        .fetch_one(&mut *conn)
        .await?;
        drop(conn);
        if open.status == "paid" {
            return Ok(Checkout::Paid);
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

    /// Applies a webhook event of the marketplace's: a paid plugin checkout, a refunded
    /// charge of a purchase, a developer's account update. `None` for any other event.
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

    async fn charge_refunded(
        &self,
        stripe: &StripeApi,
        event: &Event,
    ) -> Result<Option<WebhookOutcome>, MarketplaceError> {
        let Some(charge_id) = event.object["id"].as_str() else {
            return Ok(None);
        };
        let purchase: Option<String> =
            sqlx::query_scalar("SELECT id FROM plugin_purchases WHERE charge_id = $1")
                .bind(charge_id)
                .fetch_optional(self.db().pool())
                .await?;
        let Some(purchase_id) = purchase else {
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
        if !charge.refunded {
            tracing::warn!(
                purchase_id,
                refunded = charge.amount_refunded,
                amount = charge.amount,
                "partial refund of a plugin purchase: the install and the developer's share stay; reverse by hand if needed"
            );
            return Ok(Some(WebhookOutcome::Ignored("partial refund")));
        }
        let mut tx = self.db().pool().begin().await?;
        if !Billing::first_time(&mut tx, &event.id, &event.kind).await? {
            return Ok(Some(WebhookOutcome::Duplicate));
        }
        let locked: Option<(String, String, String)> = sqlx::query_as(
            "UPDATE plugin_purchases SET status = status WHERE id = $1 RETURNING plugin_id, user_id, status",
        )
        .bind(&purchase_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((plugin_id, user_id, status)) = locked else {
            tx.commit().await?;
            return Ok(Some(WebhookOutcome::Ignored("purchase gone")));
        };
        if status != "paid" {
            tx.commit().await?;
            return Ok(Some(WebhookOutcome::Duplicate));
        }
        sqlx::query(
            "UPDATE plugin_purchases SET status = 'refunded', refunded_at = $2 WHERE id = $1",
        )
        .bind(&purchase_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        remove_installation(&mut tx, &plugin_id, &user_id).await?;
        revenue::reverse(self, &mut tx, &purchase_id).await?;
        tx.commit().await?;
        tracing::info!(
            purchase_id,
            plugin_id,
            "plugin purchase refunded and uninstalled"
        );
        Ok(Some(WebhookOutcome::Applied))
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
            StubItem::Tier(_) => Err(MarketplaceError::Invalid(
                "a tier's stub link is billing's".into(),
            )),
        }
    }
}
