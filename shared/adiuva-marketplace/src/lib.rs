//! The plugin marketplace. This crate owns the `plugins`, `plugin_versions`, `plugin_reviews`,
//! `plugin_ratings`, `plugin_installations`, `plugin_purchases`, `developer_accounts` and
//! `revenue_events` tables; packages are uploaded and verified by adiuva-storage.
//!
//! - [`catalog`]: the listing of approved, unblocked plugins (Power and Team), a plugin's
//!   detail, ratings by installers.
//! - [`submissions`]: a developer's submission of a version, checked by the automated
//!   [`checklist`] before any human sees it; the developer's own list.
//! - [`review`]: the admin's queue, decisions and blocks.
//! - [`installs`]: installs and uninstalls; a paid plugin is bought first.
//! - [`purchases`]: a paid plugin's Stripe Checkout Session (or stub link), and the payment's
//!   completion from the billing webhook: the install, the split, the transfer; refunds.
//! - [`revenue`]: the 70/30 split of each paid install, the developer's transfer (one per
//!   purchase) and its reversal after a refund, and earnings by month.
//! - [`developers`]: Stripe Connect (Express) onboarding of developers.
//!
//! Two services: [`Purchases`] (the database and billing's Stripe client) is all the billing
//! function needs to apply the marketplace's webhook events; [`Marketplace`] adds the package
//! store for everything else.

pub mod catalog;
pub mod checklist;
pub mod developers;
pub mod installs;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod purchases;
pub mod revenue;
pub mod review;
pub mod submissions;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use adiuva_access::tiers::AccessError;
use adiuva_billing::{Billing, BillingError, StripeApi, StripeFailure};
use adiuva_blob::BlobError;
use adiuva_config::{Component, ConfigError, Context, Source};
use adiuva_db::Database;
use adiuva_error::{DomainError, ErrorKind, Reason};
use adiuva_storage::{Storage, StorageError};

pub use checklist::CheckResult;

#[derive(Debug, thiserror::Error)]
pub enum MarketplaceError {
    #[error("plugin not found")]
    PluginNotFound,
    #[error("{0}")]
    Invalid(Cow<'static, str>),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error("the plugin id {0:?} belongs to another developer")]
    IdTaken(String),
    #[error("an admin does not review their own plugin: another admin must")]
    OwnPlugin,
    #[error("the automated checklist did not finish")]
    ChecklistAborted(#[source] tokio::task::JoinError),
    #[error("a version of this plugin is already waiting for review")]
    ReviewPending,
    #[error("no version of this plugin is waiting for review")]
    NothingToReview,
    #[error("the submission failed {} of the automated checks: {}", failed(.0).count(), failed(.0).map(|c| c.detail.as_str()).collect::<Vec<_>>().join("; "))]
    ChecklistFailed(Vec<CheckResult>),
    #[error("this plugin is blocked: {0}")]
    Blocked(String),
    #[error("only users who installed this plugin can rate it")]
    NotInstalled,
    #[error("this link is not for a purchase of yours")]
    ForeignPurchase,
    #[error(
        "the payment of this plugin is disputed; it can be installed again once the dispute is resolved"
    )]
    PurchaseDisputed,
    #[error("this plugin takes no new installs: its developer left the marketplace")]
    PluginClosed,
    #[error(transparent)]
    Billing(#[from] BillingError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("blob store operation failed")]
    Blob(#[from] BlobError),
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

fn failed(checks: &[CheckResult]) -> impl Iterator<Item = &CheckResult> {
    checks.iter().filter(|check| !check.passed)
}

impl From<StripeFailure> for MarketplaceError {
    fn from(err: StripeFailure) -> Self {
        Self::Billing(err.into())
    }
}

impl DomainError for MarketplaceError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::PluginNotFound => ErrorKind::NotFound,
            Self::Invalid(_) | Self::ChecklistFailed(_) => ErrorKind::Invalid,
            Self::Access(err) => err.kind(),
            Self::NotInstalled
            | Self::ForeignPurchase
            | Self::PurchaseDisputed
            | Self::OwnPlugin => ErrorKind::Forbidden,
            Self::PluginClosed => ErrorKind::Gone,
            Self::ChecklistAborted(_) => ErrorKind::Internal,
            Self::IdTaken(_) | Self::ReviewPending | Self::NothingToReview | Self::Blocked(_) => {
                ErrorKind::Conflict
            }
            Self::Billing(err) => err.kind(),
            Self::Storage(err) => err.kind(),
            Self::Blob(err) if err.is_unavailable() => ErrorKind::Unavailable,
            Self::Blob(_) => ErrorKind::Internal,
            Self::Database(err) => adiuva_db::kind_of(err),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::PluginNotFound => "not_found",
            Self::Invalid(_) => "validation_error",
            Self::Access(err) => err.code(),
            Self::IdTaken(_) => "plugin_id_taken",
            Self::OwnPlugin => "own_plugin",
            Self::ChecklistAborted(_) => "internal_error",
            Self::ReviewPending => "review_pending",
            Self::NothingToReview => "nothing_to_review",
            Self::ChecklistFailed(_) => "checklist_failed",
            Self::Blocked(_) => "plugin_blocked",
            Self::NotInstalled => "not_installed",
            Self::ForeignPurchase => "invalid_checkout_link",
            Self::PurchaseDisputed => "purchase_disputed",
            Self::PluginClosed => "plugin_closed",
            Self::Billing(err) => err.code(),
            Self::Storage(err) => err.code(),
            Self::Blob(err) if err.is_unavailable() => "dependency_unavailable",
            Self::Blob(_) => "internal_error",
            Self::Database(err) if adiuva_db::is_unavailable(err) => "dependency_unavailable",
            Self::Database(_) => "internal_error",
        }
    }

    fn public_detail(&self) -> Option<Cow<'static, str>> {
        match self {
            Self::Billing(err) => err.public_detail(),
            Self::Storage(err) => err.public_detail(),
            Self::Blob(err) if err.is_unavailable() => {
                Some(adiuva_error::unavailable("the blob store"))
            }
            Self::Database(err) if adiuva_db::is_unavailable(err) => {
                Some(adiuva_error::unavailable("the database"))
            }
            _ => None,
        }
    }

    fn reasons(&self) -> Vec<Reason> {
        match self {
            Self::ChecklistFailed(checks) => failed(checks)
                .map(|check| Reason {
                    name: check.check.clone().into(),
                    detail: check.detail.clone(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// Where Stripe sends buyers and developers back to: `PLUGIN_SUCCESS_URL`,
/// `PLUGIN_CANCEL_URL`, `CONNECT_RETURN_URL`, `CONNECT_REFRESH_URL`; and how long a package's
/// download URL works: `PLUGIN_DOWNLOAD_TTL_SECS` (300).
#[derive(Debug, Clone)]
pub struct MarketplaceSettings {
    pub success_url: String,
    pub cancel_url: String,
    pub connect_return_url: String,
    pub connect_refresh_url: String,
    pub download_ttl: Duration,
}

impl MarketplaceSettings {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        Ok(Self {
            success_url: source.string(
                "PLUGIN_SUCCESS_URL",
                "https://adiuva.app/plugins/purchased?session_id={CHECKOUT_SESSION_ID}",
            ),
            cancel_url: source.string("PLUGIN_CANCEL_URL", "https://adiuva.app/plugins"),
            connect_return_url: source
                .string("CONNECT_RETURN_URL", "https://adiuva.app/developer/payouts"),
            connect_refresh_url: source.string(
                "CONNECT_REFRESH_URL",
                "https://adiuva.app/developer/payouts?refresh=1",
            ),
            download_ttl: Duration::from_secs(source.number_in(
                "PLUGIN_DOWNLOAD_TTL_SECS",
                300,
                10..=7 * 24 * 60 * 60,
            )?),
        })
    }
}

/// Payments of the marketplace: purchases, the revenue split, developers' payout accounts.
/// Cheap to clone; built once per process.
#[derive(Debug, Clone)]
pub struct Purchases {
    inner: Arc<PurchasesInner>,
}

#[derive(Debug)]
struct PurchasesInner {
    db: Database,
    billing: Billing,
    settings: MarketplaceSettings,
}

impl Component for Purchases {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        let settings = MarketplaceSettings::from_source(context.source())?;
        Ok(Self::new(context.get()?, context.get()?, settings))
    }
}

impl Purchases {
    pub fn new(db: Database, billing: Billing, settings: MarketplaceSettings) -> Self {
        Self {
            inner: Arc::new(PurchasesInner {
                db,
                billing,
                settings,
            }),
        }
    }

    fn db(&self) -> &Database {
        &self.inner.db
    }

    /// The Stripe client; `None` in stub mode.
    fn stripe(&self) -> Option<&StripeApi> {
        self.inner.billing.stripe()
    }
}

/// The marketplace service. Cheap to clone; built once per process.
#[derive(Debug, Clone)]
pub struct Marketplace {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    purchases: Purchases,
    storage: Storage,
}

impl Component for Marketplace {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        Ok(Self::new(context.get()?, context.get()?))
    }
}

impl Marketplace {
    pub fn new(purchases: Purchases, storage: Storage) -> Self {
        Self {
            inner: Arc::new(Inner { purchases, storage }),
        }
    }

    fn db(&self) -> &Database {
        self.inner.purchases.db()
    }

    /// Payments and payouts.
    pub fn purchases(&self) -> &Purchases {
        &self.inner.purchases
    }
}

/// A JSON array of strings as stored in `permissions` columns.
fn parse_permissions(stored: &str) -> Vec<String> {
    serde_json::from_str(stored).unwrap_or_default()
}
