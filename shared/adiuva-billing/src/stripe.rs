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
use stripe_billing::subscription::{CancelSubscription, RetrieveSubscription, UpdateSubscription};
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionSubscriptionData,
};
use stripe_core::customer::CreateCustomer;

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
pub(crate) struct Remote {
    pub id: String,
    pub customer: String,
    /// Stripe's status: `active`, `past_due`, `canceled`, ...
    pub status: String,
    /// The price of its first item.
    pub price: Option<String>,
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
pub(crate) struct StripeApi {
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

    pub(crate) async fn create_customer(
        &self,
        user_id: &str,
        email: &str,
    ) -> Result<String, StripeFailure> {
        let request = CreateCustomer::new()
            .email(email)
            .metadata(metadata(&[("user_id", user_id)]));
        let customer = self
            .retrying(
                "create a customer",
                Some(format!("customer:{user_id}")),
                |strategy| {
                    request
                        .customize()
                        .request_strategy(strategy)
                        .send(&self.client)
                },
            )
            .await?;
        Ok(customer.id.to_string())
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn checkout(
        &self,
        user_id: &str,
        customer: &str,
        price: &str,
        tier: Tier,
        success_url: &str,
        cancel_url: &str,
    ) -> Result<String, StripeFailure> {
        let mut item = CreateCheckoutSessionLineItems::new();
        item.price = Some(price.to_owned());
        item.quantity = Some(1);
        let mut subscription = CreateCheckoutSessionSubscriptionData::new();
        let tags = metadata(&[("user_id", user_id), ("tier", tier.as_str())]);
        subscription.metadata = Some(tags.clone());
        let request = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Subscription)
            .customer(customer)
            .line_items(vec![item])
            .success_url(success_url)
            .cancel_url(cancel_url)
            .client_reference_id(user_id)
            .metadata(tags)
            .subscription_data(subscription);
        let key = format!("checkout:{user_id}:{}", adiuva_db::new_id());
        let session = self
            .retrying("create a checkout session", Some(key), |strategy| {
                request
                    .customize()
                    .request_strategy(strategy)
                    .send(&self.client)
            })
            .await?;
        session.url.ok_or_else(|| {
            StripeFailure::Malformed(StripeError::JSONDeserialize(
                "a checkout session without a url".to_owned(),
            ))
        })
    }

    pub(crate) async fn subscription(&self, id: &str) -> Result<Remote, StripeFailure> {
        let request = RetrieveSubscription::new(id);
        let subscription = self
            .retrying("read a subscription", None, |strategy| {
                request
                    .customize()
                    .request_strategy(strategy)
                    .send(&self.client)
            })
            .await?;
        Ok(subscription.into())
    }

    pub(crate) async fn cancel_at_period_end(&self, id: &str) -> Result<Remote, StripeFailure> {
        let request = UpdateSubscription::new(id).cancel_at_period_end(true);
        let key = format!("cancel-at-period-end:{id}:{}", adiuva_db::new_id());
        let subscription = self
            .retrying(
                "cancel a subscription at period end",
                Some(key),
                |strategy| {
                    request
                        .customize()
                        .request_strategy(strategy)
                        .send(&self.client)
                },
            )
            .await?;
        Ok(subscription.into())
    }

    pub(crate) async fn cancel_now(&self, id: &str) -> Result<Remote, StripeFailure> {
        let request = CancelSubscription::new(id);
        let subscription = self
            .retrying("cancel a subscription", None, |strategy| {
                request
                    .customize()
                    .request_strategy(strategy)
                    .send(&self.client)
            })
            .await?;
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
            .retrying("create a billing portal session", Some(key), |strategy| {
                request
                    .customize()
                    .request_strategy(strategy)
                    .send(&self.client)
            })
            .await?;
        Ok(session.url)
    }
}
