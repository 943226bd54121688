//! The revenue share of paid installs: 70% to the developer, 30% to the platform, in integer
//! euro cents. The rounding rule: the developer's share is rounded down to the cent
//! (`price * 70 / 100` in integers) and the platform's share is the rest, so the two always
//! add up to the price. The built-in plugins have no developer: the platform keeps the whole
//! price, recorded as such.
//!
//! Separate charges and transfers: the buyer pays the platform; the developer's share goes to
//! their Stripe Connect account as one transfer per purchase, made with the purchase's charge
//! as `source_transaction` (so it waits for the funds) and the idempotency key
//! `transfer:{purchase id}`; `revenue_events` has one row per purchase (a unique index). A full
//! refund reverses the transfer (key `reversal:{purchase id}`). In stub mode the transfer is
//! recorded as `tr_stub_{purchase id}`.

use std::collections::BTreeMap;

use adiuva_access::Caller;
use adiuva_billing::StripeFailure;
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

/// Records a sale's split and makes the developer's transfer, in the purchase's transaction.
/// Stripe being unreachable fails the whole completion (the webhook is delivered again and
/// the transfer's key keeps it single); a transfer Stripe refuses is logged and the share
/// recorded as owed (no transfer id).
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
    let transfer = match (&account, developer_share > 0) {
        (Some(account), true) => match (purchases.stripe(), sale.charge) {
            (Some(stripe), Some(charge)) => {
                match stripe
                    .transfer(sale.purchase_id, developer_share, account, charge)
                    .await
                {
                    Ok(transfer) => Some(transfer),
                    Err(err @ StripeFailure::Unavailable(_)) => return Err(err.into()),
                    Err(err) => {
                        tracing::error!(purchase_id = sale.purchase_id, account, error = %adiuva_error::cause_chain(&err), "Stripe refused the developer's transfer; the share is recorded as owed");
                        None
                    }
                }
            }
            (Some(_), None) => {
                tracing::error!(
                    purchase_id = sale.purchase_id,
                    "a paid purchase without a charge: the developer's share is recorded as owed"
                );
                None
            }
            (None, _) => Some(format!("tr_stub_{}", sale.purchase_id)),
        },
        (None, true) if sale.developer_id.is_some() => {
            tracing::warn!(
                purchase_id = sale.purchase_id,
                "the developer has no payout account: the share is recorded as owed"
            );
            None
        }
        _ => None,
    };
    sqlx::query(
        "INSERT INTO revenue_events (id, plugin_id, user_id, amount_cents, developer_share_cents, \
         platform_share_cents, stripe_transfer_id, created_at, purchase_id, developer_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (purchase_id) DO NOTHING",
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
    .execute(&mut *conn)
    .await?;
    tracing::info!(
        purchase_id = sale.purchase_id,
        developer_share,
        platform_share,
        transfer = transfer.as_deref().unwrap_or("none"),
        "revenue recorded"
    );
    Ok(())
}

/// Reverses a refunded purchase's transfer and marks its revenue refunded, in the refund's
/// transaction.
pub(crate) async fn reverse(
    purchases: &Purchases,
    conn: &mut AnyConnection,
    purchase_id: &str,
) -> Result<(), MarketplaceError> {
    let event: Option<(Option<String>, i64)> = sqlx::query_as(
        "SELECT stripe_transfer_id, developer_share_cents FROM revenue_events WHERE purchase_id = $1",
    )
    .bind(purchase_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some((transfer, share)) = event else {
        return Ok(());
    };
    let reversal = match (transfer, purchases.stripe()) {
        (Some(transfer), _) if transfer.starts_with("tr_stub_") => {
            Some(format!("trr_stub_{purchase_id}"))
        }
        (Some(transfer), Some(stripe)) => {
            match stripe.reverse_transfer(purchase_id, &transfer, share).await {
                Ok(reversal) => Some(reversal),
                Err(err @ StripeFailure::Unavailable(_)) => return Err(err.into()),
                Err(err) => {
                    tracing::error!(purchase_id, transfer, error = %adiuva_error::cause_chain(&err), "Stripe refused the transfer reversal; reverse it in the dashboard");
                    None
                }
            }
        }
        _ => None,
    };
    sqlx::query(
        "UPDATE revenue_events SET transfer_reversal_id = $2, refunded_at = $3 WHERE purchase_id = $1",
    )
    .bind(purchase_id)
    .bind(&reversal)
    .bind(now_ms())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `?period=YYYY-MM` (UTC); without it, every month.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EarningsQuery {
    /// One month, `YYYY-MM` (UTC, 1970-01 to 9999-12); without it, every month.
    #[param(value_type = String, required = false, pattern = "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])$")]
    pub period: Option<String>,
}

/// A developer's earnings, by month of sale (newest first).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Earnings {
    pub months: Vec<MonthEarnings>,
}

/// One month's sales. A refund counts in the month of its sale.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct MonthEarnings {
    /// `YYYY-MM`, UTC.
    pub period: String,
    pub sales: i64,
    pub refunds: i64,
    /// What buyers paid, refunds included.
    pub gross_cents: i64,
    /// The developer's 70% of every sale.
    pub developer_share_cents: i64,
    /// The share of the refunded sales, taken back.
    pub reversed_cents: i64,
    /// `developer_share_cents - reversed_cents`.
    pub net_cents: i64,
    /// Of the net, what was transferred to the Connect account.
    pub transferred_cents: i64,
    pub plugins: Vec<PluginEarnings>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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
    stripe_transfer_id: Option<String>,
    refunded_at: Option<i64>,
    created_at: i64,
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `(year, month)` of a day since 1970-01-01.
fn civil_month(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month)
}

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// `YYYY-MM` of a time in ms (UTC).
pub fn period_of(ms: i64) -> String {
    let (year, month) = civil_month(ms.div_euclid(DAY_MS));
    format!("{year:04}-{month:02}")
}

/// The `[start, end)` ms of a `YYYY-MM` period.
pub fn period_range(period: &str) -> Option<(i64, i64)> {
    let (year, month) = period.split_once('-')?;
    if year.len() != 4
        || month.len() != 2
        || !year
            .bytes()
            .chain(month.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let year: i64 = year.parse().ok()?;
    let month: i64 = month.parse().ok()?;
    if !(1970..=9999).contains(&year) || !(1..=12).contains(&month) {
        return None;
    }
    let start = days_from_civil(year, month, 1) * DAY_MS;
    let (next_year, next_month) = if month == 12 {
        (year + 1, 1)
    } else {
        (year, month + 1)
    };
    Some((start, days_from_civil(next_year, next_month, 1) * DAY_MS))
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
            "SELECT plugin_id, amount_cents, developer_share_cents, stripe_transfer_id, refunded_at, \
             created_at FROM revenue_events WHERE developer_id = $1 AND created_at >= $2 AND created_at < $3",
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
            let net = if refunded {
                0
            } else {
                row.developer_share_cents
            };
            month.sales += 1;
            month.gross_cents += row.amount_cents;
            month.developer_share_cents += row.developer_share_cents;
            month.net_cents += net;
            plugin.sales += 1;
            plugin.gross_cents += row.amount_cents;
            plugin.net_cents += net;
            if refunded {
                month.refunds += 1;
                month.reversed_cents += row.developer_share_cents;
                plugin.refunds += 1;
            } else if row.stripe_transfer_id.is_some() {
                month.transferred_cents += row.developer_share_cents;
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
    fn months_round_trip_through_their_ranges() {
        assert_eq!(period_of(0), "1970-01");
        assert_eq!(period_of(1_735_689_600_000), "2025-01");
        let (start, end) = period_range("2024-02").unwrap();
        assert_eq!(period_of(start), "2024-02");
        assert_eq!(period_of(end - 1), "2024-02");
        assert_eq!(period_of(end), "2024-03");
        assert_eq!((end - start) / DAY_MS, 29);
        let (start, end) = period_range("2026-12").unwrap();
        assert_eq!(period_of(start), "2026-12");
        assert_eq!(period_of(end), "2027-01");
        for bad in [
            "2026-13", "2026-00", "26-01", "2026-1", "2026/01", "", "2026-+1", "+202-01",
        ] {
            assert!(period_range(bad).is_none(), "{bad}");
        }
    }
}
