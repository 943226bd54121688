//! The Stripe calls billing makes, through async-stripe, with retries that keep their
//! idempotency key.
//!
//! async-stripe's own retry strategies do not fit: without its `uuid` feature they retry POSTs
//! with no key, and with it every request gets a random key. Here each mutating call gets a key
//! made of our ids (`customer:{user}`, `checkout:{user}:{attempt}`, ...) and every attempt of
//! the call sends that same key, so a retry after a lost answer cannot make a second customer,
//! session or cancellation. A customer's key is the user's id alone: concurrent first checkouts
//! of one user get one customer.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use adiuva_access::Tier;
use adiuva_config::ConfigError;
use adiuva_error::{DomainError, ErrorKind};
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::subscription::{
    CancelSubscription, RetrieveSubscription, UpdateSubscription, UpdateSubscriptionItems,
    UpdateSubscriptionProrationBehavior,
};
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    CreateCheckoutSessionPaymentIntentData, CreateCheckoutSessionSubscriptionData,
    ExpireCheckoutSession, ProductData, RetrieveCheckoutSession,
};
use stripe_connect::account::{
    CreateAccount, CreateAccountCapabilities, CreateAccountCapabilitiesTransfers,
    CreateAccountType, RetrieveAccount,
};
use stripe_connect::account_link::{CreateAccountLink, CreateAccountLinkType};
use stripe_connect::transfer::{CreateTransfer, ListTransfer, RetrieveTransfer};
use stripe_connect::transfer_reversal::CreateIdTransferReversal;
use stripe_core::charge::RetrieveCharge;
use stripe_core::customer::CreateCustomer;
use stripe_core::dispute::RetrieveDispute;
use stripe_core::payment_intent::RetrievePaymentIntent;
use stripe_types::Currency;

use crate::settings::StripeSettings;

/// Attempts of one call (the first included).
const ATTEMPTS: u32 = 3;
/// Before the first retry; doubled for each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// One attempt; a Lambda answers 503 well before API Gateway's 30 s.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(8);

#[derive(Debug, thiserror::Error)]
pub enum StripeFailure {
    #[error("Stripe could not be reached or failed")]
    Unavailable(#[source] StripeError),
    #[error("Stripe refused the request (status {status})")]
    Refused {
        status: u16,
        #[source]
        source: StripeError,
    },
    #[error("Stripe has no such object")]
    NotFound,
    #[error("Stripe answered something unexpected")]
    Malformed(#[source] StripeError),
}

impl DomainError for StripeFailure {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Unavailable(_) => ErrorKind::Unavailable,
            // Our request was wrong (a misconfigured price, ...): a bug of ours, logged.
            Self::Refused { .. } | Self::NotFound => ErrorKind::Internal,
            Self::Malformed(_) => ErrorKind::BadGateway,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "stripe_unavailable",
            Self::Malformed(_) => "stripe_error",
            Self::Refused { .. } | Self::NotFound => "internal_error",
        }
    }

    fn public_detail(&self) -> Option<Cow<'static, str>> {
        matches!(self, Self::Unavailable(_)).then(|| adiuva_error::unavailable("Stripe"))
    }
}

/// A subscription as Stripe has it, in the terms we store.
#[derive(Debug, Clone, PartialEq)]
pub struct Remote {
    pub id: String,
    pub customer: String,
    /// Stripe's status: `active`, `past_due`, `canceled`, ...
    pub status: String,
    /// The price of its first item.
    pub price: Option<String>,
    /// The first item's id and quantity (a team's seats).
    pub item: Option<String>,
    pub quantity: Option<u64>,
    pub metadata: HashMap<String, String>,
    /// The end of the paid period, ms (the latest of the items').
    pub current_period_end_ms: Option<i64>,
    pub cancel_at_period_end: bool,
    pub created_ms: i64,
}

impl From<stripe_billing::Subscription> for Remote {
    fn from(subscription: stripe_billing::Subscription) -> Self {
        let items = &subscription.items.data;
        Self {
            id: subscription.id.to_string(),
            customer: subscription.customer.id().to_string(),
            status: subscription.status.as_str().to_owned(),
            price: items.first().map(|item| item.price.id.to_string()),
            item: items.first().map(|item| item.id.to_string()),
            quantity: items.first().and_then(|item| item.quantity),
            current_period_end_ms: items
                .iter()
                .map(|item| item.current_period_end.saturating_mul(1000))
                .max(),
            cancel_at_period_end: subscription.cancel_at_period_end,
            created_ms: subscription.created.saturating_mul(1000),
            metadata: subscription.metadata,
        }
    }
}

/// The Stripe client. Cheap to clone.
#[derive(Clone)]
pub struct StripeApi {
    client: Client,
}

impl std::fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeApi").finish_non_exhaustive()
    }
}

fn retryable(err: &StripeError) -> bool {
    match err {
        StripeError::ClientError(_) | StripeError::Timeout => true,
        // 409: a request with this key is still running at Stripe.
        StripeError::Stripe(_, status) => matches!(status, 409 | 429) || *status >= 500,
        _ => false,
    }
}

fn classify(err: StripeError) -> StripeFailure {
    match err {
        StripeError::Stripe(_, 404) => StripeFailure::NotFound,
        StripeError::Stripe(_, status) if status == 429 || status >= 500 => {
            StripeFailure::Unavailable(err)
        }
        StripeError::Stripe(_, status) => StripeFailure::Refused {
            status,
            source: err,
        },
        StripeError::ClientError(_) | StripeError::Timeout => StripeFailure::Unavailable(err),
        other => StripeFailure::Malformed(other),
    }
}

fn metadata(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect()
}

impl StripeApi {
    pub(crate) fn new(settings: &StripeSettings) -> Result<Self, ConfigError> {
        // async-stripe builds its rustls config with the process-wide provider: ring, as
        // everywhere else here.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = ClientBuilder::new(settings.secret_key.expose())
            .url(settings.api_base.clone())
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .map_err(|err| ConfigError::unusable("the Stripe client", err))?;
        Ok(Self { client })
    }

    /// Runs `call` until it succeeds, fails for good, or runs out of attempts; every attempt
    /// sends the same idempotency key (`None`: a GET or DELETE, safe to repeat as is).
    async fn retrying<T, F, Fut>(
        &self,
        what: &'static str,
        key: Option<String>,
        call: F,
    ) -> Result<T, StripeFailure>
    where
        F: Fn(RequestStrategy) -> Fut,
        Fut: Future<Output = Result<T, StripeError>>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let strategy = match &key {
                Some(key) => RequestStrategy::Idempotent(
                    IdempotencyKey::new(key).expect("our keys are 1 to 255 characters"),
                ),
                None => RequestStrategy::Once,
            };
            match call(strategy).await {
                Ok(value) => return Ok(value),
                Err(err) if attempt < ATTEMPTS && retryable(&err) => {
                    tracing::warn!(what, attempt, error = %err, "Stripe call failed; retrying with the same idempotency key");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(err) => {
                    tracing::warn!(what, attempt, error = %err, "Stripe call failed");
                    return Err(classify(err));
                }
            }
        }
    }

    /// Sends `request` with [`StripeApi::retrying`].
    async fn call<R>(
        &self,
        what: &'static str,
        key: Option<String>,
        request: &R,
    ) -> Result<R::Output, StripeFailure>
    where
        R: StripeRequest,
        R::Output: miniserde::Deserialize,
    {
        self.retrying(what, key, |strategy| {
            request
                .customize()
                .request_strategy(strategy)
                .send(&self.client)
        })
        .await
    }

    pub(crate) async fn create_customer(
        &self,
        user_id: &str,
        email: &str,
    ) -> Result<String, StripeFailure> {
        let request = CreateCustomer::new()
            .email(email)
            .metadata(metadata(&[("user_id", user_id)]));
        let customer = self
            .call(
                "create a customer",
                Some(format!("customer:{user_id}")),
                &request,
            )
            .await?;
        Ok(customer.id.to_string())
    }

    /// A Checkout Session in subscription mode: `seller.quantity` of `price`, tagged with the
    /// user (and the team, for a team's seats) in the metadata of the session and of the
    /// subscription it starts, which is how the webhook finds the team.
    pub(crate) async fn checkout(
        &self,
        buyer: &CheckoutFor<'_>,
        customer: &str,
        price: &str,
        success_url: &str,
        cancel_url: &str,
    ) -> Result<String, StripeFailure> {
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price = Some(price.to_owned());
        item.quantity = Some(buyer.quantity);
        let mut subscription = CreateCheckoutSessionSubscriptionData::new();
        let mut pairs = vec![("user_id", buyer.user_id), ("tier", buyer.tier.as_str())];
        if let Some(team_id) = buyer.team_id {
            pairs.push(("team_id", team_id));
        }
        let tags = metadata(&pairs);
        subscription.metadata = Some(tags.clone());
        let request = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Subscription)
            .customer(customer)
            .line_items(vec![item])
            .success_url(success_url)
            .cancel_url(cancel_url)
            .client_reference_id(buyer.user_id)
            .metadata(tags)
            .subscription_data(subscription);
        let key = match buyer.team_id {
            Some(team_id) => format!("team-checkout:{team_id}:{}", adiuva_db::new_id()),
            None => format!("checkout:{}:{}", buyer.user_id, adiuva_db::new_id()),
        };
        let session = self
            .call("create a checkout session", Some(key), &request)
            .await?;
        session.url.ok_or_else(|| {
            StripeFailure::Malformed(StripeError::JSONDeserialize(
                "a checkout session without a url".to_owned(),
            ))
        })
    }

    /// Sets the quantity of a subscription's item (a team's seats), prorated: Stripe charges
    /// or credits the rest of the period on the next invoice.
    pub(crate) async fn set_quantity(
        &self,
        id: &str,
        quantity: u64,
    ) -> Result<Remote, StripeFailure> {
        let current = self.subscription(id).await?;
        let Some(item_id) = current.item else {
            return Err(StripeFailure::Malformed(StripeError::JSONDeserialize(
                "a subscription without an item".to_owned(),
            )));
        };
        let mut item = UpdateSubscriptionItems::new();
        item.id = Some(item_id);
        item.quantity = Some(quantity);
        let request = UpdateSubscription::new(id)
            .items(vec![item])
            .proration_behavior(UpdateSubscriptionProrationBehavior::CreateProrations);
        let key = format!("seats:{id}:{quantity}:{}", adiuva_db::new_id());
        let subscription = self
            .call("change a subscription's quantity", Some(key), &request)
            .await?;
        Ok(subscription.into())
    }

    pub(crate) async fn subscription(&self, id: &str) -> Result<Remote, StripeFailure> {
        let request = RetrieveSubscription::new(id);
        let subscription = self.call("read a subscription", None, &request).await?;
        Ok(subscription.into())
    }

    pub(crate) async fn cancel_at_period_end(&self, id: &str) -> Result<Remote, StripeFailure> {
        let request = UpdateSubscription::new(id).cancel_at_period_end(true);
        let key = format!("cancel-at-period-end:{id}:{}", adiuva_db::new_id());
        let subscription = self
            .call("cancel a subscription at period end", Some(key), &request)
            .await?;
        Ok(subscription.into())
    }

    pub(crate) async fn cancel_now(&self, id: &str) -> Result<Remote, StripeFailure> {
        let request = CancelSubscription::new(id);
        let subscription = self.call("cancel a subscription", None, &request).await?;
        Ok(subscription.into())
    }

    pub(crate) async fn portal(
        &self,
        customer: &str,
        return_url: &str,
    ) -> Result<String, StripeFailure> {
        let request = CreateBillingPortalSession::new()
            .customer(customer)
            .return_url(return_url);
        let key = format!("portal:{customer}:{}", adiuva_db::new_id());
        let session = self
            .call("create a billing portal session", Some(key), &request)
            .await?;
        Ok(session.url)
    }

    /// A Checkout Session in payment mode for one paid plugin: the price as an inline line
    /// item, the purchase id in the metadata of the session and of its payment intent, which
    /// joins the purchase's transfer group (separate charges and transfers).
    pub async fn payment_checkout(
        &self,
        purchase: &Purchase<'_>,
        customer: &str,
        success_url: &str,
        cancel_url: &str,
    ) -> Result<(String, String), StripeFailure> {
        let mut product = ProductData::new(purchase.product_name);
        product.metadata = Some(metadata(&[("plugin_id", purchase.plugin_id)]));
        let mut price = CreateCheckoutSessionLineItemsPriceData::new(Currency::EUR);
        price.unit_amount = Some(purchase.amount_cents);
        price.product_data = Some(product);
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price_data = Some(price);
        item.quantity = Some(1);
        let tags = metadata(&[
            ("purchase_id", purchase.id),
            ("plugin_id", purchase.plugin_id),
            ("user_id", purchase.user_id),
        ]);
        let mut intent = CreateCheckoutSessionPaymentIntentData::new();
        intent.metadata = Some(tags.clone());
        intent.transfer_group = Some(transfer_group(purchase.id));
        let request = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Payment)
            .customer(customer)
            .line_items(vec![item])
            .success_url(success_url)
            .cancel_url(cancel_url)
            .client_reference_id(purchase.user_id)
            .metadata(tags)
            .payment_intent_data(intent);
        let key = format!("plugin-checkout:{}:{}", purchase.id, adiuva_db::new_id());
        let session = self
            .call("create a plugin checkout session", Some(key), &request)
            .await?;
        let url = session.url.ok_or_else(|| {
            StripeFailure::Malformed(StripeError::JSONDeserialize(
                "a checkout session without a url".to_owned(),
            ))
        })?;
        Ok((session.id.to_string(), url))
    }

    /// A plugin checkout as Stripe has it now.
    pub async fn payment_session(&self, id: &str) -> Result<PaymentSession, StripeFailure> {
        let request = RetrieveCheckoutSession::new(id);
        let session = self.call("read a checkout session", None, &request).await?;
        Ok(PaymentSession {
            id: session.id.to_string(),
            purchase_id: session
                .metadata
                .as_ref()
                .and_then(|metadata| metadata.get("purchase_id").cloned()),
            paid: session.payment_status.as_str() == "paid",
            amount_total: session.amount_total,
            payment_intent: session.payment_intent.map(|intent| intent.id().to_string()),
        })
    }

    /// A charge as Stripe has it now.
    pub async fn charge(&self, id: &str) -> Result<ChargeState, StripeFailure> {
        let request = RetrieveCharge::new(id);
        let charge = self.call("read a charge", None, &request).await?;
        Ok(ChargeState {
            id: charge.id.to_string(),
            amount: charge.amount,
            amount_refunded: charge.amount_refunded,
            refunded: charge.refunded,
        })
    }

    /// The charge of a payment intent (the source of the developer's transfer).
    pub async fn charge_of(&self, payment_intent: &str) -> Result<Option<String>, StripeFailure> {
        let request = RetrievePaymentIntent::new(payment_intent);
        let intent = self.call("read a payment intent", None, &request).await?;
        Ok(intent.latest_charge.map(|charge| charge.id().to_string()))
    }

    /// The developer's share of a purchase, to their Connect account, from the purchase's
    /// charge (`source_transaction`: the transfer waits for the funds). Exactly one per
    /// purchase, at any delay: a transfer already made for the purchase's transfer group is
    /// found and returned (Stripe keeps an idempotency key for 24 hours only), else one is
    /// made with the key `transfer:{purchase id}`.
    pub async fn transfer(
        &self,
        purchase_id: &str,
        amount_cents: i64,
        destination: &str,
        charge: &str,
    ) -> Result<String, StripeFailure> {
        if let Some(made) = self.transfer_of(purchase_id).await? {
            tracing::info!(
                purchase_id,
                transfer = made.id,
                "the purchase's transfer exists already"
            );
            return Ok(made.id);
        }
        let request = CreateTransfer::new(Currency::EUR, destination)
            .amount(amount_cents)
            .source_transaction(charge)
            .transfer_group(transfer_group(purchase_id))
            .metadata(metadata(&[("purchase_id", purchase_id)]));
        let transfer = self
            .call(
                "transfer a developer's share",
                Some(format!("transfer:{purchase_id}")),
                &request,
            )
            .await?;
        Ok(transfer.id.to_string())
    }

    /// The transfer made for a purchase, if any (found by its transfer group).
    async fn transfer_of(&self, purchase_id: &str) -> Result<Option<TransferState>, StripeFailure> {
        let request = ListTransfer::new()
            .transfer_group(transfer_group(purchase_id))
            .limit(10);
        let transfers = self
            .call("list a purchase's transfers", None, &request)
            .await?;
        Ok(transfers
            .data
            .into_iter()
            .find(|transfer| {
                transfer.metadata.get("purchase_id").map(String::as_str) == Some(purchase_id)
            })
            .map(TransferState::from))
    }

    /// Takes back a purchase's transfer until `target_cents` of it are reversed in all
    /// (refunds, partial ones included, and lost disputes). The amount to reverse is what
    /// Stripe says is not reversed yet, so a retry at any delay reverses nothing twice;
    /// `None` when there was nothing left to reverse.
    pub async fn reverse_transfer(
        &self,
        purchase_id: &str,
        transfer: &str,
        target_cents: i64,
    ) -> Result<Option<String>, StripeFailure> {
        let state: TransferState = self
            .call("read a transfer", None, &RetrieveTransfer::new(transfer))
            .await?
            .into();
        let missing = target_cents.min(state.amount) - state.amount_reversed;
        if missing <= 0 {
            return Ok(None);
        }
        let request = CreateIdTransferReversal::new(transfer)
            .amount(missing)
            .metadata(metadata(&[("purchase_id", purchase_id)]));
        let reversal = self
            .call(
                "reverse a developer's transfer",
                Some(format!("reversal:{purchase_id}:{target_cents}")),
                &request,
            )
            .await?;
        Ok(Some(reversal.id.to_string()))
    }

    /// Ends an open Checkout Session, so that a link handed out before cannot be paid any
    /// more. A session that is not open (paid, expired) is left as it is.
    pub async fn expire_session(&self, id: &str) -> Result<(), StripeFailure> {
        match self
            .call(
                "expire a checkout session",
                None,
                &ExpireCheckoutSession::new(id),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Not open any more: Stripe answers 400; already what we want.
            Err(StripeFailure::Refused { status: 400, .. }) => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// A dispute as Stripe has it now.
    pub async fn dispute(&self, id: &str) -> Result<DisputeState, StripeFailure> {
        let dispute = self
            .call("read a dispute", None, &RetrieveDispute::new(id))
            .await?;
        Ok(DisputeState {
            charge: dispute.charge.id().to_string(),
            status: dispute.status.as_str().to_owned(),
        })
    }

    /// The purchase a charge pays for, from its payment intent's metadata (set at checkout).
    pub async fn purchase_of_charge(&self, charge: &str) -> Result<Option<String>, StripeFailure> {
        let charge = self
            .call("read a charge", None, &RetrieveCharge::new(charge))
            .await?;
        let Some(intent) = charge.payment_intent else {
            return Ok(None);
        };
        let intent = self
            .call(
                "read a payment intent",
                None,
                &RetrievePaymentIntent::new(intent.id().as_str()),
            )
            .await?;
        Ok(intent.metadata.get("purchase_id").cloned())
    }

    /// A Connect Express account for a developer; one per developer (the key is their id).
    pub async fn create_express_account(
        &self,
        user_id: &str,
        email: &str,
    ) -> Result<String, StripeFailure> {
        let mut transfers = CreateAccountCapabilitiesTransfers::new();
        transfers.requested = Some(true);
        let mut capabilities = CreateAccountCapabilities::new();
        capabilities.transfers = Some(transfers);
        let request = CreateAccount::new()
            .type_(CreateAccountType::Express)
            .email(email)
            .capabilities(capabilities)
            .metadata(metadata(&[("user_id", user_id)]));
        let account = self
            .call(
                "create a Connect account",
                Some(format!("connect-account:{user_id}")),
                &request,
            )
            .await?;
        Ok(account.id.to_string())
    }

    /// A one-time onboarding link of a Connect account.
    pub async fn account_link(
        &self,
        account: &str,
        refresh_url: &str,
        return_url: &str,
    ) -> Result<String, StripeFailure> {
        let request = CreateAccountLink::new(account, CreateAccountLinkType::AccountOnboarding)
            .refresh_url(refresh_url)
            .return_url(return_url);
        let key = format!("account-link:{account}:{}", adiuva_db::new_id());
        let link = self
            .call("create an account link", Some(key), &request)
            .await?;
        Ok(link.url)
    }

    /// Whether a Connect account can receive payouts, and has finished onboarding.
    pub async fn account_status(&self, account: &str) -> Result<(bool, bool), StripeFailure> {
        let request = RetrieveAccount::new(account);
        let account = self.call("read a Connect account", None, &request).await?;
        Ok((
            account.payouts_enabled.unwrap_or(false),
            account.details_submitted.unwrap_or(false),
        ))
    }
}

/// Who a subscription checkout is for: the buyer, the tier, and for the Team tier the team
/// and its seats (`quantity`; 1 for a personal tier).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckoutFor<'a> {
    pub user_id: &'a str,
    pub tier: Tier,
    pub team_id: Option<&'a str>,
    pub quantity: u64,
}

/// A payment-mode Checkout Session, in the terms the marketplace uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSession {
    pub id: String,
    pub purchase_id: Option<String>,
    pub paid: bool,
    pub amount_total: Option<i64>,
    pub payment_intent: Option<String>,
}

/// A charge, as far as refunds go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeState {
    pub id: String,
    pub amount: i64,
    pub amount_refunded: i64,
    /// Fully refunded.
    pub refunded: bool,
}

/// A transfer, as far as reversals go.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TransferState {
    id: String,
    amount: i64,
    amount_reversed: i64,
}

impl From<stripe_connect::Transfer> for TransferState {
    fn from(transfer: stripe_connect::Transfer) -> Self {
        Self {
            id: transfer.id.to_string(),
            amount: transfer.amount,
            amount_reversed: transfer.amount_reversed,
        }
    }
}

/// A dispute of a charge: its charge and Stripe's status (`needs_response`, `under_review`,
/// `won`, `lost`, the `warning_*` of inquiries, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputeState {
    pub charge: String,
    pub status: String,
}

/// What a plugin checkout sells.
#[derive(Debug, Clone, Copy)]
pub struct Purchase<'a> {
    pub id: &'a str,
    pub plugin_id: &'a str,
    pub user_id: &'a str,
    pub product_name: &'a str,
    pub amount_cents: i64,
}

/// The transfer group of a purchase: its charge and its transfer share it.
fn transfer_group(purchase_id: &str) -> String {
    format!("purchase:{purchase_id}")
}
