//! Subscription billing on Stripe. This crate owns the `subscriptions` table,
//! `users.stripe_customer_id` and the billing columns of `teams` (`seats`, `status`, the Stripe
//! state); authentication only reads the live tier from them.
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
//! - Teams' seats (`team`): a team's own subscription on the Team price, `quantity` = seats,
//!   bought by the team's owner ([`Billing::checkout`] with tier `team`), changed with
//!   proration ([`Billing::change_seats`]), ended at once before the team is deleted
//!   ([`Billing::cancel_team_subscription_now`]); its webhooks write the team's status and
//!   seats, never a user's row.
//! - [`Billing::reconcile`]: every live subscription (users' and teams') read again from
//!   Stripe, for changes whose webhook was lost (`reconcile`; the janitor's
//!   `reconcile-billing` job).
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
mod team;
mod webhook;

use std::borrow::Cow;
use std::sync::Arc;

use adiuva_access::{Caller, Tier};
use adiuva_checksum::Signer;
use adiuva_config::{Component, ConfigError, Context};
use adiuva_db::{Database, now_ms};
use adiuva_error::{DomainError, ErrorKind};
use adiuva_teams::{Team, TeamError, TeamRole, Teams};
use serde::Serialize;

pub use reconcile::ReconcileReport;
pub use settings::{BillingSettings, Prices, StripeSettings};
pub use state::SubscriptionView;
pub use stripe::{ChargeState, PaymentSession, Purchase, Remote, StripeApi, StripeFailure};

use stripe::CheckoutFor;
pub use stub::{STUB_PATH, StubItem, StubLink};
pub use team::MAX_SEATS;
pub use webhook::{Delivery, Event, WebhookOutcome};

#[derive(Debug, thiserror::Error)]
pub enum BillingError {
    #[error("tier must be one of pro, power or team")]
    InvalidTier,
    #[error("you already have the {0} tier")]
    AlreadySubscribed(&'static str),
    #[error("team_id and seats are for the team tier only")]
    TeamFieldsWithoutTeamTier,
    #[error("seats must be between 1 and 1000")]
    InvalidSeats,
    #[error("no such team")]
    TeamNotFound,
    #[error("only the team's owner may do this")]
    NotTeamOwner,
    #[error("the team has no active subscription")]
    TeamInactive,
    #[error("the team already has a subscription: change its seats instead")]
    TeamSubscribed,
    #[error("the team's members and pending invitations hold {0} seats")]
    SeatsInUse(i64),
    /// What the teams domain refused or failed (creating the buyer's team, reading a team).
    #[error(transparent)]
    Team(#[from] TeamError),
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
            Self::InvalidTier | Self::TeamFieldsWithoutTeamTier | Self::InvalidSeats => {
                ErrorKind::Invalid
            }
            Self::AlreadySubscribed(_)
            | Self::StubTokenUsed
            | Self::TeamSubscribed
            | Self::SeatsInUse(_) => ErrorKind::Conflict,
            Self::NoSubscription | Self::NoBillingAccount | Self::TeamNotFound => {
                ErrorKind::NotFound
            }
            Self::NotTeamOwner => ErrorKind::Forbidden,
            Self::TeamInactive => ErrorKind::QuotaExceeded,
            Self::StubMode | Self::WebhookNotConfigured => ErrorKind::Unavailable,
            Self::BadSignature => ErrorKind::BadRequest,
            Self::InvalidStubToken => ErrorKind::Forbidden,
            Self::Stripe(err) => err.kind(),
            Self::Database(err) => adiuva_db::kind_of(err),
            Self::Team(err) => err.kind(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::InvalidTier => "invalid_tier",
            Self::AlreadySubscribed(_) | Self::TeamSubscribed => "already_subscribed",
            Self::TeamFieldsWithoutTeamTier => "team_fields_without_team_tier",
            Self::InvalidSeats => "invalid_seats",
            Self::TeamNotFound => "team_not_found",
            Self::NotTeamOwner => "team_owner_required",
            Self::TeamInactive => "team_inactive",
            Self::SeatsInUse(_) => "seats_in_use",
            Self::NoSubscription => "no_subscription",
            Self::NoBillingAccount => "no_billing_account",
            Self::StubMode => "stripe_not_configured",
            Self::WebhookNotConfigured => "webhook_not_configured",
            Self::BadSignature => "invalid_signature",
            Self::InvalidStubToken => "invalid_checkout_link",
            Self::StubTokenUsed => "checkout_link_used",
            Self::Stripe(err) => err.code(),
            Self::Team(err) => err.code(),
            Self::Database(err) if adiuva_db::is_unavailable(err) => "dependency_unavailable",
            Self::Database(_) => "internal_error",
        }
    }

    fn public_detail(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::StubMode | Self::WebhookNotConfigured | Self::SeatsInUse(_) => {
                Some(self.to_string().into())
            }
            Self::Stripe(err) => err.public_detail(),
            Self::Team(err) => err.public_detail(),
            Self::Database(err) if adiuva_db::is_unavailable(err) => {
                Some(adiuva_error::unavailable("the database"))
            }
            _ => None,
        }
    }
}

/// What `POST /api/v1/billing/checkout` answers.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Checkout {
    /// Stripe's hosted payment page (or, in stub mode, the local page that activates the tier).
    pub checkout_url: String,
    /// The team whose seats this checkout buys (the team made for the buyer when the request
    /// named none); absent for a personal tier.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_id: Option<String>,
}

/// What a checkout buys: a personal tier, or seats of a team (`tier` `team`).
#[derive(Debug, Clone, Default)]
pub struct CheckoutOrder<'a> {
    pub tier: &'a str,
    /// The team to bill (the caller must own it); none: a team is made for the caller.
    pub team_id: Option<&'a str>,
    /// Seats of the team, 1 to [`MAX_SEATS`] (default 1).
    pub seats: Option<i64>,
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

    /// Starts a checkout for the caller: a personal tier, or a team's seats. "Already on this
    /// tier" compares the caller's own subscription only (a tier held through a team does not
    /// count); a team that already has a live subscription changes its seats instead.
    pub async fn checkout(
        &self,
        caller: &Caller,
        order: &CheckoutOrder<'_>,
    ) -> Result<Checkout, BillingError> {
        let tier = match Tier::parse(order.tier) {
            Some(Tier::Free) | None => return Err(BillingError::InvalidTier),
            Some(tier) => tier,
        };
        if tier == Tier::Team {
            return self.team_checkout(caller, order).await;
        }
        if order.team_id.is_some() || order.seats.is_some() {
            return Err(BillingError::TeamFieldsWithoutTeamTier);
        }
        if state::view(&self.inner.db, &caller.id).await?.tier == tier {
            return Err(BillingError::AlreadySubscribed(tier.as_str()));
        }
        let Some(stripe) = &self.inner.stripe else {
            let checkout_url = self.stub_url(&caller.id, &StubItem::Tier(tier));
            tracing::info!(tier = tier.as_str(), "stub checkout started");
            return Ok(Checkout {
                checkout_url,
                team_id: None,
            });
        };
        let customer = self.customer(stripe, caller).await?;
        let settings = &self.inner.settings;
        let buyer = CheckoutFor {
            user_id: &caller.id,
            tier,
            team_id: None,
            quantity: 1,
        };
        let checkout_url = stripe
            .checkout(
                &buyer,
                &customer,
                settings.prices.of(tier),
                &settings.success_url,
                &settings.cancel_url,
            )
            .await?;
        tracing::info!(tier = tier.as_str(), "checkout started");
        Ok(Checkout {
            checkout_url,
            team_id: None,
        })
    }

    /// A checkout of a team's seats on the Team price, for the owner's customer.
    async fn team_checkout(
        &self,
        caller: &Caller,
        order: &CheckoutOrder<'_>,
    ) -> Result<Checkout, BillingError> {
        let seats = order.seats.unwrap_or(1);
        if !(1..=MAX_SEATS).contains(&seats) {
            return Err(BillingError::InvalidSeats);
        }
        let db = &self.inner.db;
        let team_id = match order.team_id {
            Some(team_id) => {
                let mut conn = db.pool().acquire().await?;
                self.owner_check(&mut conn, team_id, &caller.id).await?;
                let held = team::held(&mut conn, team_id).await?;
                if held.is_some_and(|held| team::is_live(&held.status)) {
                    return Err(BillingError::TeamSubscribed);
                }
                team_id.to_owned()
            }
            // A team for the buyer, made as `POST /teams` makes one (its limits included).
            None => {
                let name = team::default_name(&caller.email);
                Teams::new(db.clone()).create(caller, &name).await?.id
            }
        };
        let Some(stripe) = &self.inner.stripe else {
            let item = StubItem::Team {
                team_id: team_id.clone(),
                seats,
            };
            let checkout_url = self.stub_url(&caller.id, &item);
            tracing::info!(team_id, seats, "stub team checkout started");
            return Ok(Checkout {
                checkout_url,
                team_id: Some(team_id),
            });
        };
        let customer = self.customer(stripe, caller).await?;
        let settings = &self.inner.settings;
        let buyer = CheckoutFor {
            user_id: &caller.id,
            tier: Tier::Team,
            team_id: Some(&team_id),
            quantity: seats.unsigned_abs(),
        };
        let checkout_url = stripe
            .checkout(
                &buyer,
                &customer,
                settings.prices.of(Tier::Team),
                &settings.success_url,
                &settings.cancel_url,
            )
            .await?;
        tracing::info!(team_id, seats, "team checkout started");
        Ok(Checkout {
            checkout_url,
            team_id: Some(team_id),
        })
    }

    /// 404 for a non-member (a team's existence does not leak), 403 for a member who is not
    /// the owner.
    async fn owner_check(
        &self,
        conn: &mut sqlx::AnyConnection,
        team_id: &str,
        user_id: &str,
    ) -> Result<(), BillingError> {
        match adiuva_teams::role_of(conn, team_id, user_id).await? {
            None => Err(BillingError::TeamNotFound),
            Some(TeamRole::Owner) => Ok(()),
            Some(_) => Err(BillingError::NotTeamOwner),
        }
    }

    /// `PUT /teams/{id}/seats`: the owner changes the team's seats. At Stripe the item's
    /// quantity changes with proration (stub: at once); never below the seats held by members
    /// and pending invitations (409 `seats_in_use`), and only while the subscription is active
    /// (402 `team_inactive`). The team's row stays locked from the check to the write, so an
    /// invitation cannot slip in between.
    pub async fn change_seats(
        &self,
        caller: &Caller,
        team_id: &str,
        seats: i64,
    ) -> Result<Team, BillingError> {
        let db = &self.inner.db;
        let mut tx = db.pool().begin().await?;
        if adiuva_teams::lock_team(&mut tx, team_id).await?.is_none() {
            return Err(BillingError::TeamNotFound);
        }
        self.owner_check(&mut tx, team_id, &caller.id).await?;
        if !(1..=MAX_SEATS).contains(&seats) {
            return Err(BillingError::InvalidSeats);
        }
        let held = team::held(&mut tx, team_id)
            .await?
            .ok_or(BillingError::TeamNotFound)?;
        if held.status != "active" {
            return Err(BillingError::TeamInactive);
        }
        let used = adiuva_teams::seats_held(&mut tx, team_id, now_ms()).await?;
        if seats < used {
            return Err(BillingError::SeatsInUse(used));
        }
        if seats != held.seats {
            match (&self.inner.stripe, &held.stripe_subscription_id) {
                (Some(stripe), Some(subscription)) => {
                    let remote = stripe
                        .set_quantity(subscription, seats.unsigned_abs())
                        .await?;
                    let prices = &self.inner.settings.prices;
                    team::apply(&mut tx, team_id, &remote, prices, Some(&caller.id)).await?;
                }
                // A stub subscription (or one left from stub mode): only our row knows it.
                _ => team::set_seats_locally(&mut tx, team_id, &held, seats, &caller.id).await?,
            }
            tracing::info!(team_id, from = held.seats, to = seats, "team seats changed");
        }
        tx.commit().await?;
        Ok(Teams::new(db.clone()).get(caller, team_id).await?)
    }

    /// Ends a team's subscription now (Stripe cancels at once, no renewal; stub: marked
    /// canceled), for `DELETE /teams/{id}`: call it before the team's rows go. `true` when a
    /// live subscription was ended at Stripe. Stripe being unreachable is an error, so the
    /// deletion waits rather than leave a card being charged; a subscription Stripe no longer
    /// knows counts as ended.
    pub async fn cancel_team_subscription_now(&self, team_id: &str) -> Result<bool, BillingError> {
        let db = &self.inner.db;
        let mut tx = db.pool().begin().await?;
        if adiuva_teams::lock_team(&mut tx, team_id).await?.is_none() {
            return Ok(false);
        }
        let Some(held) = team::held(&mut tx, team_id).await? else {
            return Ok(false);
        };
        if !team::is_live(&held.status) {
            return Ok(false);
        }
        let ended = match (&self.inner.stripe, &held.stripe_subscription_id) {
            (Some(stripe), Some(subscription)) => match stripe.cancel_now(subscription).await {
                Ok(remote) => {
                    let prices = &self.inner.settings.prices;
                    team::apply(&mut tx, team_id, &remote, prices, None).await?;
                    true
                }
                Err(StripeFailure::NotFound) => {
                    team::cancel_locally(&mut tx, team_id, &held).await?;
                    false
                }
                Err(err) => return Err(err.into()),
            },
            _ => {
                team::cancel_locally(&mut tx, team_id, &held).await?;
                false
            }
        };
        tx.commit().await?;
        tracing::info!(team_id, ended, "team subscription cancelled now");
        Ok(ended)
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

    /// Completes a stub checkout of a team's seats.
    pub async fn complete_stub_team_checkout(
        &self,
        link: &StubLink,
        team_id: &str,
        seats: i64,
    ) -> Result<(), BillingError> {
        stub::complete_team(&self.inner.db, link, team_id, seats).await
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
