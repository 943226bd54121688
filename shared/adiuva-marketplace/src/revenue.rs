//! The revenue share of paid installs: 70% to the developer, 30% to the platform, in integer
//! euro cents. The rounding rule: the developer's share is rounded down to the cent
//! (`price * 70 / 100` in integers) and the platform's share is the rest, so the two always
//! add up to the price. The built-in plugins have no developer: the platform keeps the whole
//! price, recorded as such.
//!
//! Separate charges and transfers: the buyer pays the platform; the developer's share goes to
//! their Stripe Connect account as one transfer per purchase, made with the purchase's charge
//! as `source_transaction` (so it waits for the funds). `revenue_events` has one row per
//! purchase (a unique index), and that row is the transfer's outbox: the purchase's
//! transaction records the transfer as `pending`, and [`Purchases::settle`] makes it after the
//! commit (the janitor retries what is left, [`Purchases::settle_pending`]). A rolled-back
//! completion therefore never paid anyone, and a retry at any delay finds the transfer made
//! before by its transfer group instead of making a second one (Stripe's idempotency keys last
//! 24 hours only).
//!
//! Taking money back works the same way: a refund (full or partial) or a lost dispute raises
//! `reversed_cents`, what should be taken back of the share, in its own transaction, and
//! settling reverses the difference between that and what Stripe says is reversed already. A
//! partial refund takes back the developer's share of the refunded part: the developer keeps
//! 70% (rounded down) of what the buyer still pays. In stub mode the transfer is recorded as
//! `tr_stub_{purchase id}` and its reversal as `trr_stub_{purchase id}`.

use std::collections::BTreeMap;

use adiuva_access::Caller;
use adiuva_billing::StripeFailure;
use adiuva_calendar::{period_of, period_range};
use adiuva_db::{new_id, now_ms};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;

use crate::{MarketplaceError, Purchases};

/// The developer's percentage of every paid install.
pub const DEVELOPER_PERCENT: i64 = 70;

/// `(developer, platform)` shares of a price, in cents: the developer's rounded down, the
/// platform's the rest.
pub fn split(amount_cents: i64) -> (i64, i64) {
    let developer = amount_cents * DEVELOPER_PERCENT / 100;
    (developer, amount_cents - developer)
}

/// A completed sale, to record.
#[derive(Debug, Clone)]
pub(crate) struct Sale<'a> {
    pub purchase_id: &'a str,
    pub plugin_id: &'a str,
    pub buyer_id: &'a str,
    pub amount_cents: i64,
    /// `None` for the built-in plugins.
    pub developer_id: Option<&'a str>,
    /// The charge the transfer is funded by (`None` in stub mode).
    pub charge: Option<&'a str>,
}

/// Records a sale's split, and its transfer as owed to be made, in the purchase's
/// transaction. Nothing is sent to Stripe here (see the module's doc).
pub(crate) async fn record(
    purchases: &Purchases,
    conn: &mut AnyConnection,
    sale: &Sale<'_>,
) -> Result<(), MarketplaceError> {
    let (developer_share, platform_share) = match sale.developer_id {
        Some(_) => split(sale.amount_cents),
        None => (0, sale.amount_cents),
    };
    let account: Option<String> = match sale.developer_id {
        Some(developer) => {
            sqlx::query_scalar(
                "SELECT stripe_account_id FROM developer_accounts WHERE user_id = $1",
            )
            .bind(developer)
            .fetch_optional(&mut *conn)
            .await?
        }
        None => None,
    };
    let (status, transfer) = match (&account, developer_share > 0) {
        (_, false) => ("none", None),
        (None, true) => {
            tracing::warn!(
                purchase_id = sale.purchase_id,
                "the developer has no payout account: the share is recorded as owed"
            );
            ("owed", None)
        }
        (Some(_), true) => match (purchases.stripe(), sale.charge) {
            (Some(_), Some(_)) => ("pending", None),
            (Some(_), None) => {
                tracing::error!(
                    purchase_id = sale.purchase_id,
                    "a paid purchase without a charge: the developer's share is recorded as owed"
                );
                ("owed", None)
            }
            (None, _) => ("made", Some(format!("tr_stub_{}", sale.purchase_id))),
        },
    };
    sqlx::query(
        "INSERT INTO revenue_events (id, plugin_id, user_id, amount_cents, developer_share_cents, \
         platform_share_cents, stripe_transfer_id, created_at, purchase_id, developer_id, \
         transfer_status, transfer_account, charge_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (purchase_id) DO NOTHING",
    )
    .bind(new_id())
    .bind(sale.plugin_id)
    .bind(sale.buyer_id)
    .bind(sale.amount_cents)
    .bind(developer_share)
    .bind(platform_share)
    .bind(&transfer)
    .bind(now_ms())
    .bind(sale.purchase_id)
    .bind(sale.developer_id)
    .bind(status)
    .bind(&account)
    .bind(sale.charge)
    .execute(&mut *conn)
    .await?;
    tracing::info!(
        purchase_id = sale.purchase_id,
        developer_share,
        platform_share,
        transfer = status,
        "revenue recorded"
    );
    Ok(())
}

/// What should be taken back of a developer's share after `refunded_cents` of `amount_cents`
/// were refunded: their share of the price less their share of what the buyer still pays.
pub fn share_to_reverse(amount_cents: i64, refunded_cents: i64) -> i64 {
    let refunded = refunded_cents.clamp(0, amount_cents);
    split(amount_cents).0 - split(amount_cents - refunded).0
}

/// Raises what is to be taken back of a purchase's developer share to `target_cents` (never
/// lowers it: refund events carry the charge's running total and may arrive out of order), in
/// the refund's or dispute's transaction; `full` marks the sale refunded. Stripe is called
/// after the commit ([`Purchases::settle`]).
pub(crate) async fn reverse(
    conn: &mut AnyConnection,
    purchase_id: &str,
    target_cents: i64,
    full: bool,
) -> Result<(), MarketplaceError> {
    let now = now_ms();
    sqlx::query(
        "UPDATE revenue_events SET \
         reversed_cents = CASE WHEN reversed_cents < $2 THEN $2 ELSE reversed_cents END, \
         refunded_at = CASE WHEN $3 = 1 THEN COALESCE(refunded_at, $4) ELSE refunded_at END \
         WHERE purchase_id = $1",
    )
    .bind(purchase_id)
    .bind(target_cents)
    .bind(i64::from(full))
    .bind(now)
    .execute(&mut *conn)
    .await?;
    // Stub transfers are reversed by recording it.
    sqlx::query(
        "UPDATE revenue_events SET reversal_made_cents = reversed_cents, \
         transfer_reversal_id = 'trr_stub_' || purchase_id \
         WHERE purchase_id = $1 AND stripe_transfer_id LIKE 'tr_stub_%' \
         AND reversal_made_cents < reversed_cents",
    )
    .bind(purchase_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

#[derive(sqlx::FromRow)]
struct Outbox {
    transfer_status: String,
    transfer_account: Option<String>,
    charge_id: Option<String>,
    developer_share_cents: i64,
    stripe_transfer_id: Option<String>,
    reversed_cents: i64,
    reversal_made_cents: i64,
}

/// How many purchases one janitor run settles at most.
const SETTLE_BATCH: i64 = 100;

impl Purchases {
    /// Makes what a purchase's revenue event says is owed at Stripe: its transfer, if pending,
    /// then the reversal of what is to be taken back. Safe to run any number of times, at any
    /// delay, concurrently too: each step is found done at Stripe or recorded once.
    pub async fn settle(&self, purchase_id: &str) -> Result<(), MarketplaceError> {
        let Some(stripe) = self.stripe() else {
            return Ok(());
        };
        let row: Option<Outbox> = sqlx::query_as(
            "SELECT transfer_status, transfer_account, charge_id, developer_share_cents, \
             stripe_transfer_id, reversed_cents, reversal_made_cents \
             FROM revenue_events WHERE purchase_id = $1",
        )
        .bind(purchase_id)
        .fetch_optional(self.db().pool())
        .await?;
        let Some(mut row) = row else {
            return Ok(());
        };
        if row.transfer_status == "pending" {
            if row.reversed_cents >= row.developer_share_cents {
                // Refunded before the transfer was made: there is nothing to pay.
                sqlx::query(
                    "UPDATE revenue_events SET transfer_status = 'canceled', \
                     reversal_made_cents = reversed_cents \
                     WHERE purchase_id = $1 AND transfer_status = 'pending'",
                )
                .bind(purchase_id)
                .execute(self.db().pool())
                .await?;
                tracing::info!(
                    purchase_id,
                    "refunded before its transfer: the transfer is not made"
                );
                return Ok(());
            }
            let (Some(account), Some(charge)) = (&row.transfer_account, &row.charge_id) else {
                return Ok(());
            };
            match stripe
                .transfer(purchase_id, row.developer_share_cents, account, charge)
                .await
            {
                Ok(transfer) => {
                    sqlx::query(
                        "UPDATE revenue_events SET stripe_transfer_id = $2, transfer_status = 'made' \
                         WHERE purchase_id = $1 AND transfer_status = 'pending'",
                    )
                    .bind(purchase_id)
                    .bind(&transfer)
                    .execute(self.db().pool())
                    .await?;
                    tracing::info!(purchase_id, transfer, "developer's share transferred");
                    row.transfer_status = "made".to_owned();
                    row.stripe_transfer_id = Some(transfer);
                }
                Err(err @ StripeFailure::Unavailable(_)) => return Err(err.into()),
                Err(err) => {
                    tracing::error!(purchase_id, account, error = %adiuva_error::cause_chain(&err), "Stripe refused the developer's transfer; the share is recorded as owed");
                    sqlx::query(
                        "UPDATE revenue_events SET transfer_status = 'failed' \
                         WHERE purchase_id = $1 AND transfer_status = 'pending'",
                    )
                    .bind(purchase_id)
                    .execute(self.db().pool())
                    .await?;
                    return Ok(());
                }
            }
        }
        let target = row.reversed_cents.min(row.developer_share_cents);
        if row.transfer_status != "made" || target <= row.reversal_made_cents {
            return Ok(());
        }
        let Some(transfer) = row.stripe_transfer_id.as_deref() else {
            return Ok(());
        };
        match stripe.reverse_transfer(purchase_id, transfer, target).await {
            Ok(reversal) => {
                sqlx::query(
                    "UPDATE revenue_events SET \
                     reversal_made_cents = CASE WHEN reversal_made_cents < $2 THEN $2 ELSE reversal_made_cents END, \
                     transfer_reversal_id = COALESCE($3, transfer_reversal_id) WHERE purchase_id = $1",
                )
                .bind(purchase_id)
                .bind(target)
                .bind(&reversal)
                .execute(self.db().pool())
                .await?;
                tracing::info!(
                    purchase_id,
                    transfer,
                    reversed_cents = target,
                    "developer's transfer reversed"
                );
            }
            Err(err @ StripeFailure::Unavailable(_)) => return Err(err.into()),
            Err(err) => {
                tracing::error!(purchase_id, transfer, error = %adiuva_error::cause_chain(&err), "Stripe refused the transfer reversal; reverse it in the dashboard");
            }
        }
        Ok(())
    }

    /// Settles what is still owed at Stripe (the janitor): transfers recorded but not made,
    /// reversals recorded but not made. Returns how many purchases were settled and how many
    /// are still waiting (Stripe unreachable).
    pub async fn settle_pending(&self) -> Result<(u64, u64), MarketplaceError> {
        if self.stripe().is_none() {
            return Ok((0, 0));
        }
        let waiting: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT purchase_id FROM revenue_events \
             WHERE transfer_status = 'pending' OR reversed_cents > reversal_made_cents \
             ORDER BY created_at LIMIT $1",
        )
        .bind(SETTLE_BATCH)
        .fetch_all(self.db().pool())
        .await?;
        let (mut settled, mut failed) = (0, 0);
        for purchase_id in waiting.iter().flatten() {
            match self.settle(purchase_id).await {
                Ok(()) => settled += 1,
                Err(err) => {
                    failed += 1;
                    tracing::warn!(purchase_id, error = %adiuva_error::cause_chain(&err), "a purchase's transfer is still to be settled");
                }
            }
        }
        Ok((settled, failed))
    }
}

/// `?period=YYYY-MM` (UTC); without it, every month.
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct EarningsQuery {
    /// One month, `YYYY-MM` (UTC, 1970-01 to 9999-12); without it, every month.
    #[cfg_attr(feature = "openapi", param(value_type = String, required = false, pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$"))]
    pub period: Option<String>,
}

/// A developer's earnings, by month of sale (newest first).
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Earnings {
    pub months: Vec<MonthEarnings>,
}

/// One month's sales. A refund counts in the month of its sale.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MonthEarnings {
    /// `YYYY-MM`, UTC.
    pub period: String,
    pub sales: i64,
    pub refunds: i64,
    /// What buyers paid, refunds included.
    pub gross_cents: i64,
    /// The developer's 70% of every sale.
    pub developer_share_cents: i64,
    /// The share taken back: of refunded sales, of partly refunded ones, of lost disputes.
    pub reversed_cents: i64,
    /// `developer_share_cents - reversed_cents`.
    pub net_cents: i64,
    /// Of the net, what was transferred to the Connect account.
    pub transferred_cents: i64,
    pub plugins: Vec<PluginEarnings>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PluginEarnings {
    pub plugin_id: String,
    pub sales: i64,
    pub refunds: i64,
    pub gross_cents: i64,
    pub net_cents: i64,
}

#[derive(sqlx::FromRow)]
struct RevenueRow {
    plugin_id: String,
    amount_cents: i64,
    developer_share_cents: i64,
    transfer_status: String,
    reversed_cents: i64,
    refunded_at: Option<i64>,
    created_at: i64,
}

impl Purchases {
    /// The caller's earnings as a developer, by month of sale.
    pub async fn earnings(
        &self,
        caller: &Caller,
        query: &EarningsQuery,
    ) -> Result<Earnings, MarketplaceError> {
        let (start, end) = match query.period.as_deref() {
            None => (i64::MIN, i64::MAX),
            Some(period) => period_range(period).ok_or_else(|| {
                MarketplaceError::Invalid("period must be a month: YYYY-MM".into())
            })?,
        };
        let rows: Vec<RevenueRow> = sqlx::query_as(
            "SELECT plugin_id, amount_cents, developer_share_cents, transfer_status, reversed_cents, \
             refunded_at, created_at FROM revenue_events WHERE developer_id = $1 AND created_at >= $2 AND created_at < $3",
        )
        .bind(&caller.id)
        .bind(start)
        .bind(end)
        .fetch_all(self.db().pool())
        .await?;
        let mut months: BTreeMap<String, (MonthEarnings, BTreeMap<String, PluginEarnings>)> =
            BTreeMap::new();
        for row in rows {
            let period = period_of(row.created_at);
            let (month, plugins) = months.entry(period.clone()).or_insert_with(|| {
                (
                    MonthEarnings {
                        period,
                        ..MonthEarnings::default()
                    },
                    BTreeMap::new(),
                )
            });
            let plugin = plugins
                .entry(row.plugin_id.clone())
                .or_insert_with(|| PluginEarnings {
                    plugin_id: row.plugin_id.clone(),
                    ..PluginEarnings::default()
                });
            let refunded = row.refunded_at.is_some();
            let reversed = row.reversed_cents.min(row.developer_share_cents);
            let net = row.developer_share_cents - reversed;
            month.sales += 1;
            month.gross_cents += row.amount_cents;
            month.developer_share_cents += row.developer_share_cents;
            month.net_cents += net;
            month.reversed_cents += reversed;
            plugin.sales += 1;
            plugin.gross_cents += row.amount_cents;
            plugin.net_cents += net;
            if refunded {
                month.refunds += 1;
                plugin.refunds += 1;
            }
            if row.transfer_status == "made" {
                month.transferred_cents += net;
            }
        }
        Ok(Earnings {
            months: months
                .into_values()
                .rev()
                .map(|(mut month, plugins)| {
                    month.plugins = plugins.into_values().collect();
                    month
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_always_add_up_to_the_price_and_the_developer_gets_70_percent_rounded_down() {
        for price in 0..=100_000 {
            let (developer, platform) = split(price);
            assert_eq!(developer + platform, price);
            assert_eq!(developer, price * 7 / 10);
            assert!(developer * 100 <= price * 70 && (developer + 1) * 100 > price * 70);
        }
        assert_eq!(split(499), (349, 150));
        assert_eq!(split(999), (699, 300));
    }

    #[test]
    fn a_refund_takes_back_the_share_of_what_was_refunded() {
        for amount in [1, 99, 100, 499, 999, 12_345] {
            assert_eq!(share_to_reverse(amount, 0), 0);
            assert_eq!(share_to_reverse(amount, amount), split(amount).0);
            assert_eq!(share_to_reverse(amount, amount * 2), split(amount).0);
            let mut last = 0;
            for refunded in 0..=amount.min(2_000) {
                let reversed = share_to_reverse(amount, refunded);
                // Never more than the share, never less as more is refunded, and the developer
                // keeps 70% (rounded down) of what the buyer still pays.
                assert!(reversed >= last && reversed <= split(amount).0);
                assert_eq!(split(amount).0 - reversed, split(amount - refunded).0);
                last = reversed;
            }
        }
        assert_eq!(share_to_reverse(999, 500), 699 - 349);
    }
}
