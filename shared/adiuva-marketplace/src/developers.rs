//! Developers' payout accounts: Stripe Connect Express. `connect` creates the account once
//! (its idempotency key is the developer's id) and answers a one-time onboarding link;
//! whether payouts are enabled is read from Stripe (on `account` and when a paid plugin is
//! submitted) and from `account.updated` events. In stub mode the link is a local stub page
//! that makes a stub account with payouts enabled.

use adiuva_access::Caller;
use adiuva_billing::{
    Billing, Event, StripeApi, StripeFailure, StubItem, StubLink, WebhookOutcome,
};
use adiuva_db::now_ms;
use serde::Serialize;

use crate::{MarketplaceError, Purchases};

/// Where the developer finishes onboarding.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Onboarding {
    /// Stripe's onboarding page (or, in stub mode, the local page that enables payouts).
    pub onboarding_url: String,
}

/// The developer's payout account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeveloperAccount {
    /// A Connect account exists.
    pub connected: bool,
    pub account_id: Option<String>,
    /// Stripe can pay this account out: paid plugins may be submitted.
    pub payouts_enabled: bool,
    pub details_submitted: bool,
}

#[derive(sqlx::FromRow)]
struct AccountRow {
    stripe_account_id: String,
    payouts_enabled: i64,
    details_submitted: i64,
}

impl AccountRow {
    fn view(&self) -> DeveloperAccount {
        DeveloperAccount {
            connected: true,
            account_id: Some(self.stripe_account_id.clone()),
            payouts_enabled: self.payouts_enabled != 0,
            details_submitted: self.details_submitted != 0,
        }
    }
}

impl Purchases {
    async fn account_row(&self, user_id: &str) -> Result<Option<AccountRow>, sqlx::Error> {
        sqlx::query_as(
            "SELECT stripe_account_id, payouts_enabled, details_submitted FROM developer_accounts WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.db().pool())
        .await
    }

    async fn save_status(
        &self,
        account: &str,
        payouts_enabled: bool,
        details_submitted: bool,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE developer_accounts SET payouts_enabled = $2, details_submitted = $3, updated_at = $4 \
             WHERE stripe_account_id = $1",
        )
        .bind(account)
        .bind(i64::from(payouts_enabled))
        .bind(i64::from(details_submitted))
        .bind(now_ms())
        .execute(self.db().pool())
        .await?;
        Ok(())
    }

    /// Reads an account's state from Stripe and records it.
    async fn refresh(
        &self,
        stripe: &StripeApi,
        row: &AccountRow,
    ) -> Result<DeveloperAccount, MarketplaceError> {
        let (payouts_enabled, details_submitted) =
            match stripe.account_status(&row.stripe_account_id).await {
                Ok(status) => status,
                Err(StripeFailure::NotFound) => (false, false),
                Err(err) => return Err(err.into()),
            };
        self.save_status(&row.stripe_account_id, payouts_enabled, details_submitted)
            .await?;
        Ok(DeveloperAccount {
            connected: true,
            account_id: Some(row.stripe_account_id.clone()),
            payouts_enabled,
            details_submitted,
        })
    }

    /// The onboarding link of the caller's Connect account, created on first need.
    pub async fn connect(&self, caller: &Caller) -> Result<Onboarding, MarketplaceError> {
        let Some(stripe) = self.stripe() else {
            return Ok(Onboarding {
                onboarding_url: self
                    .inner
                    .billing
                    .stub_url(&caller.id, &StubItem::Onboarding),
            });
        };
        let account = match self.account_row(&caller.id).await? {
            Some(row) => row.stripe_account_id,
            None => {
                let account = stripe
                    .create_express_account(&caller.id, &caller.email)
                    .await?;
                sqlx::query(
                    "INSERT INTO developer_accounts (user_id, stripe_account_id, payouts_enabled, details_submitted, updated_at) \
                     VALUES ($1, $2, 0, 0, $3) ON CONFLICT (user_id) DO NOTHING",
                )
                .bind(&caller.id)
                .bind(&account)
                .bind(now_ms())
                .execute(self.db().pool())
                .await?;
                tracing::info!(account, "Connect account created");
                account
            }
        };
        let settings = &self.inner.settings;
        let onboarding_url = stripe
            .account_link(
                &account,
                &settings.connect_refresh_url,
                &settings.connect_return_url,
            )
            .await?;
        Ok(Onboarding { onboarding_url })
    }

    /// The caller's payout account, as Stripe has it now.
    pub async fn account(&self, caller: &Caller) -> Result<DeveloperAccount, MarketplaceError> {
        let Some(row) = self.account_row(&caller.id).await? else {
            return Ok(DeveloperAccount {
                connected: false,
                account_id: None,
                payouts_enabled: false,
                details_submitted: false,
            });
        };
        match self.stripe() {
            Some(stripe) => self.refresh(stripe, &row).await,
            None => Ok(row.view()),
        }
    }

    /// Whether the developer can be paid out (asking Stripe when our record says no).
    pub(crate) async fn payouts_ready(&self, user_id: &str) -> Result<bool, MarketplaceError> {
        let Some(row) = self.account_row(user_id).await? else {
            return Ok(false);
        };
        if row.payouts_enabled != 0 {
            return Ok(true);
        }
        match self.stripe() {
            Some(stripe) => Ok(self.refresh(stripe, &row).await?.payouts_enabled),
            None => Ok(false),
        }
    }

    /// `account.updated`: the account's state, read again from Stripe.
    pub(crate) async fn account_updated(
        &self,
        stripe: &StripeApi,
        event: &Event,
    ) -> Result<Option<WebhookOutcome>, MarketplaceError> {
        let Some(account) = event.object["id"].as_str() else {
            return Ok(None);
        };
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM developer_accounts WHERE stripe_account_id = $1",
        )
        .bind(account)
        .fetch_optional(self.db().pool())
        .await?;
        let Some(owner) = owner else {
            return Ok(Some(WebhookOutcome::Ignored("unknown account")));
        };
        let row = AccountRow {
            stripe_account_id: account.to_owned(),
            payouts_enabled: 0,
            details_submitted: 0,
        };
        let state = self.refresh(stripe, &row).await?;
        tracing::info!(
            user_id = owner,
            payouts_enabled = state.payouts_enabled,
            "developer account updated"
        );
        Ok(Some(WebhookOutcome::Applied))
    }

    /// A stub onboarding link: a stub account with payouts enabled.
    pub(crate) async fn complete_stub_onboarding(
        &self,
        link: &StubLink,
    ) -> Result<(), MarketplaceError> {
        let mut tx = self.db().pool().begin().await?;
        Billing::use_stub_link(&mut tx, link).await?;
        sqlx::query(
            "INSERT INTO developer_accounts (user_id, stripe_account_id, payouts_enabled, details_submitted, updated_at) \
             VALUES ($1, $2, 1, 1, $3) ON CONFLICT (user_id) DO UPDATE SET payouts_enabled = 1, \
             details_submitted = 1, updated_at = excluded.updated_at",
        )
        .bind(&link.user_id)
        .bind(format!("acct_stub_{}", link.user_id.replace('-', "")))
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(user_id = link.user_id, "stub payout account ready");
        Ok(())
    }
}
