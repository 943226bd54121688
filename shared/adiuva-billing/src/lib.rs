//! Subscription billing on Stripe. This crate owns the `subscriptions` table and
//! `users.stripe_customer_id`; authentication only reads the live tier from them.
//!
//! - [`Billing::checkout`]: a Checkout Session in subscription mode for the tier's price, for
//!   the user's one Stripe customer (created once, id kept on the user), with the user id in
//!   `client_reference_id` and in the subscription's metadata.
//! - [`Billing::webhook`]: Stripe's events, signature checked (`webhook`), each applied once
//!   (the event id is recorded in the transaction of its change). Whatever the event says, the
//!   state applied is the subscription as Stripe has it now (fetched again), so deliveries in
//!   any order end in the current state (`state`).
//! - [`Billing::cancel`]: at the end of the paid period (default) or now.
//! - [`Billing::portal`]: a Billing Portal session for cards and invoices.
//! - [`Billing::reconcile`]: every live subscription read again from Stripe, for changes whose
//!   webhook was lost (`reconcile`; the janitor's `reconcile-billing` job).
//! - Stub mode, without `STRIPE_SECRET_KEY`: checkout answers a signed one-time URL; opening
//!   it (the local server serves it) activates the tier, so the desktop app can try every
//!   tier without Stripe.
//!
//! Every POST to Stripe carries an idempotency key made of our ids, and retries of a call reuse
//! it (`stripe`).

mod reconcile;
mod settings;
mod state;
mod stripe;
mod stub;
mod webhook;

use std::borrow::Cow;
use std::sync::Arc;

use adiuva_access::{Caller, Tier};
use adiuva_checksum::Signer;
use adiuva_config::{Component, ConfigError, Context};
use adiuva_db::Database;
use adiuva_error::{DomainError, ErrorKind};
use serde::Serialize;

pub use reconcile::ReconcileReport;
pub use settings::{BillingSettings, Prices, StripeSettings};
pub use state::SubscriptionView;
pub use stripe::{ChargeState, PaymentSession, Purchase, Remote, StripeApi, StripeFailure};
pub use stub::{STUB_PATH, StubItem, StubLink};
pub use webhook::{Delivery, Event, WebhookOutcome};

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("tier must be one of pro, power or team")]
    InvalidTier,
    #[error("you already have the {0} tier")]
    AlreadySubscribed(&'static str),
    #[error("there is no subscription to cancel")]
    NoSubscription,
    #[error("there is no billing account yet: subscribe to a tier first")]
    NoBillingAccount,
    #[error("the billing portal needs Stripe, which this server does not use (stub mode)")]
    StubMode,
    #[error("webhooks are not configured on this server (STRIPE_WEBHOOK_SECRET)")]
    WebhookNotConfigured,
    #[error("the Stripe-Signature header is missing or does not match")]
    BadSignature,
    #[error("this checkout link is invalid or has expired")]
    InvalidStubToken,
    #[error("this checkout link was already used")]
    StubTokenUsed,
    #[error(transparent)]
    Stripe(#[from] StripeFailure),
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

impl DomainError for BillingError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidTier => ErrorKind::Invalid,
            Self::AlreadySubscribed(_) | Self::StubTokenUsed => ErrorKind::Conflict,
            Self::NoSubscription | Self::NoBillingAccount => ErrorKind::NotFound,
            Self::StubMode | Self::WebhookNotConfigured => ErrorKind::Unavailable,
            Self::BadSignature => ErrorKind::BadRequest,
            Self::InvalidStubToken => ErrorKind::Forbidden,
            Self::Stripe(err) => err.kind(),
            Self::Database(err) => adiuva_db::kind_of(err),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InvalidTier => "invalid_tier",
            Self::AlreadySubscribed(_) => "already_subscribed",
            Self::NoSubscription => "no_subscription",
            Self::NoBillingAccount => "no_billing_account",
            Self::StubMode => "stripe_not_configured",
            Self::WebhookNotConfigured => "webhook_not_configured",
            Self::BadSignature => "invalid_signature",
            Self::InvalidStubToken => "invalid_checkout_link",
            Self::StubTokenUsed => "checkout_link_used",
            Self::Stripe(err) => err.code(),
            Self::Database(err) if adiuva_db::is_unavailable(err) => "dependency_unavailable",
            Self::Database(_) => "internal_error",
        }
    }

    fn public_detail(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::StubMode | Self::WebhookNotConfigured => Some(self.to_string().into()),
            Self::Stripe(err) => err.public_detail(),
            Self::Database(err) if adiuva_db::is_unavailable(err) => {
                Some(adiuva_error::unavailable("the database"))
            }
            _ => None,
        }
    }
}

/// What `POST /api/v1/billing/checkout` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Checkout {
    /// Stripe's hosted payment page (or, in stub mode, the local page that activates the tier).
    pub checkout_url: String,
}

/// The billing service. Cheap to clone; built once per process.
#[derive(Debug, Clone)]
pub struct Billing {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Database,
    /// `None`: stub mode.
    stripe: Option<StripeApi>,
    settings: BillingSettings,
    stub: Signer,
}

impl Component for Billing {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        let settings = BillingSettings::from_source(context.source())?;
        Self::new(context.get()?, settings)
    }
}

impl Billing {
    pub fn new(db: Database, settings: BillingSettings) -> Result<Self, ConfigError> {
        let stripe = settings.stripe.as_ref().map(StripeApi::new).transpose()?;
        if stripe.is_none() {
            tracing::warn!("STRIPE_SECRET_KEY is not set: billing runs in stub mode");
        }
        let stub = stub::signer(&settings)?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                stripe,
                settings,
                stub,
            }),
        })
    }

    /// True without Stripe keys: checkouts are local stub pages.
    pub fn is_stub(&self) -> bool {
        self.inner.stripe.is_none()
    }

    /// Starts a checkout of `tier` for the caller.
    pub async fn checkout(&self, caller: &Caller, tier: &str) -> Result<Checkout, BillingError> {
        let tier = match Tier::parse(tier) {
            Some(Tier::Free) | None => return Err(BillingError::InvalidTier),
            Some(tier) => tier,
        };
        if caller.tier == tier {
            return Err(BillingError::AlreadySubscribed(tier.as_str()));
        }
        let Some(stripe) = &self.inner.stripe else {
            let checkout_url = self.stub_url(&caller.id, &StubItem::Tier(tier));
            tracing::info!(tier = tier.as_str(), "stub checkout started");
            return Ok(Checkout { checkout_url });
        };
        let customer = self.customer(stripe, caller).await?;
        let settings = &self.inner.settings;
        let checkout_url = stripe
            .checkout(
                &caller.id,
                &customer,
                settings.prices.of(tier),
                tier,
                &settings.success_url,
                &settings.cancel_url,
            )
            .await?;
        tracing::info!(tier = tier.as_str(), "checkout started");
        Ok(Checkout { checkout_url })
    }

    /// The caller's Stripe customer: the one on record, else a new one (created once: the
    /// idempotency key is the user's id, so concurrent first checkouts share it).
    async fn customer(&self, stripe: &StripeApi, caller: &Caller) -> Result<String, BillingError> {
        if let Some(customer) = state::customer_of(&self.inner.db, &caller.id).await? {
            return Ok(customer);
        }
        let customer = stripe.create_customer(&caller.id, &caller.email).await?;
        state::set_customer(&self.inner.db, &caller.id, &customer).await?;
        Ok(customer)
    }

    /// The caller's subscription as recorded; `free` without one.
    pub async fn subscription(&self, caller: &Caller) -> Result<SubscriptionView, BillingError> {
        Ok(state::view(&self.inner.db, &caller.id).await?)
    }

    /// Cancels the caller's subscription: at the end of the paid period (the tier stays until
    /// Stripe ends it), or now (back to free at once).
    pub async fn cancel(
        &self,
        caller: &Caller,
        at_period_end: bool,
    ) -> Result<SubscriptionView, BillingError> {
        let db = &self.inner.db;
        let Some(subscription) = state::live_subscription(db, &caller.id).await? else {
            return Err(BillingError::NoSubscription);
        };
        match (&self.inner.stripe, subscription) {
            (Some(stripe), Some(stripe_id)) => {
                let remote = if at_period_end {
                    stripe.cancel_at_period_end(&stripe_id).await?
                } else {
                    stripe.cancel_now(&stripe_id).await?
                };
                state::record(db, &caller.id, &remote, &self.inner.settings.prices).await?;
            }
            // A stub subscription (or one left from stub mode): only our row knows it.
            _ => state::cancel_locally(db, &caller.id, at_period_end).await?,
        }
        tracing::info!(at_period_end, "subscription cancelled");
        self.subscription(caller).await
    }

    /// Ends the user's personal subscription at once, before their account is deleted, so
    /// that a deleted account is never charged again. `true` when a live subscription was
    /// ended at Stripe (a stub one has nothing to end). Stripe being unreachable is an error:
    /// the deletion must wait rather than leave a card being charged.
    pub async fn end_for_deletion(&self, user_id: &str) -> Result<bool, BillingError> {
        let db = &self.inner.db;
        let Some(subscription) = state::live_subscription(db, user_id).await? else {
            return Ok(false);
        };
        match (&self.inner.stripe, subscription) {
            (Some(stripe), Some(stripe_id)) => {
                let remote = match stripe.cancel_now(&stripe_id).await {
                    Ok(remote) => remote,
                    // Ended at Stripe already (or never there): nothing left to charge.
                    Err(StripeFailure::NotFound) => return Ok(false),
                    Err(err) => return Err(err.into()),
                };
                tracing::info!(
                    user_id,
                    subscription = stripe_id,
                    status = remote.status,
                    "subscription ended for the account's deletion"
                );
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Reads every live subscription (active, trialing, past due) again from Stripe and
    /// corrects the rows that drifted (tier, status, period), logging each correction. Stub
    /// mode has nothing at Stripe to compare with: nothing is checked.
    pub async fn reconcile(&self) -> Result<ReconcileReport, BillingError> {
        let Some(stripe) = &self.inner.stripe else {
            tracing::info!("stub mode (no STRIPE_SECRET_KEY): no subscription to reconcile");
            return Ok(ReconcileReport::default());
        };
        reconcile::reconcile(&self.inner.db, stripe, &self.inner.settings.prices).await
    }

    /// A Billing Portal session of the caller's customer.
    pub async fn portal(&self, caller: &Caller) -> Result<String, BillingError> {
        let Some(stripe) = &self.inner.stripe else {
            return Err(BillingError::StubMode);
        };
        let Some(customer) = state::customer_of(&self.inner.db, &caller.id).await? else {
            return Err(BillingError::NoBillingAccount);
        };
        Ok(stripe
            .portal(&customer, &self.inner.settings.portal_return_url)
            .await?)
    }

    /// Checks a webhook delivery's signature and reads its event (see [`webhook`]). Other
    /// domains (the marketplace's purchases) apply the events that are theirs; billing applies
    /// the subscription events with [`Billing::apply`].
    pub fn read_webhook(
        &self,
        payload: &[u8],
        signature: Option<&str>,
    ) -> Result<Delivery, BillingError> {
        let (Some(_), Some(secret)) = (&self.inner.stripe, &self.inner.settings.webhook_secret)
        else {
            return Err(BillingError::WebhookNotConfigured);
        };
        webhook::read(secret.expose(), payload, signature)
    }

    /// Applies a subscription event; `None` for an event about something else.
    pub async fn apply(&self, event: &Event) -> Result<Option<WebhookOutcome>, BillingError> {
        let Some(stripe) = &self.inner.stripe else {
            return Err(BillingError::WebhookNotConfigured);
        };
        webhook::apply(&self.inner.db, stripe, &self.inner.settings.prices, event).await
    }

    /// The Stripe client, `None` in stub mode (for the marketplace's payments).
    pub fn stripe(&self) -> Option<&StripeApi> {
        self.inner.stripe.as_ref()
    }

    /// The caller's Stripe customer, created on first need (for the marketplace's payments).
    pub async fn customer_of(&self, caller: &Caller) -> Result<String, BillingError> {
        let Some(stripe) = &self.inner.stripe else {
            return Err(BillingError::StubMode);
        };
        self.customer(stripe, caller).await
    }

    /// Records an event (or a stub token) as applied in the caller's transaction; `false` when
    /// it already was (the marketplace's deliveries share billing's record).
    pub async fn first_time(
        conn: &mut sqlx::AnyConnection,
        id: &str,
        kind: &str,
    ) -> Result<bool, sqlx::Error> {
        state::first_time(conn, id, kind).await
    }

    pub fn settings(&self) -> &BillingSettings {
        &self.inner.settings
    }

    /// A signed one-time link of the local stub page that completes `item` (stub mode).
    pub fn stub_url(&self, user_id: &str, item: &StubItem) -> String {
        stub::url(&self.inner.settings, &self.inner.stub, user_id, item)
    }

    /// Checks a stub link's signature and expiry; what it completes is up to its domain
    /// (each records the link as used with [`Billing::use_stub_link`]).
    pub fn open_stub_link(&self, token: &str) -> Result<StubLink, BillingError> {
        stub::open(&self.inner.stub, token)
    }

    /// Records a stub link as used in the transaction of what it completes.
    pub async fn use_stub_link(
        conn: &mut sqlx::AnyConnection,
        link: &StubLink,
    ) -> Result<(), BillingError> {
        stub::use_once(conn, link).await
    }

    /// Completes a stub checkout of a tier.
    pub async fn complete_stub_checkout(
        &self,
        link: &StubLink,
        tier: Tier,
    ) -> Result<(), BillingError> {
        stub::complete_tier(&self.inner.db, link, tier).await
    }
}
