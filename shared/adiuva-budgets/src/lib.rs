//! AI token budgets per tier and calendar month (UTC): the one cost of the service that grows
//! with use, bounded per account.
//!
//! - **Whose budget** ([`Budgets::account_of`]): the caller's own (`AI_MONTHLY_TOKENS_FREE`,
//!   `_PRO`, `_POWER`, by their own tier), or, when their tier comes from a team, that team's
//!   pool (`AI_MONTHLY_TOKENS_TEAM` per paid seat), shared by every member.
//! - **Counters** (`ai_budgets`, migration 0017): one row per user or team and month with
//!   `used_tokens` and `reserved_tokens`, and per model (`ai_budget_models`) the prompt and
//!   completion tokens charged and how many calls were charged an estimate. Counts only: no
//!   message content is ever stored.
//! - **Reserve, then settle.** Before a model call, [`Budgets::reserve`] adds the call's
//!   estimate to `reserved_tokens` with one conditional `UPDATE` that holds only while
//!   `used + reserved + estimate <= limit` (atomic in both engines, so concurrent chats can
//!   never reserve past the limit together); when it does not hold, the call is refused with
//!   402 `ai_budget_exhausted` and `resets_at`. After the call, [`Budgets::settle`] takes the
//!   estimate off `reserved_tokens` and adds what the call cost to `used_tokens`. The limit is
//!   `used + reserved`, so a reservation that is never settled (the process died between the
//!   two) stays charged: it can cost the account tokens it did not use, never give it tokens
//!   it did. The only overspend is a call that used more than its estimate, at most one
//!   reservation's worth per call in flight.
//! - **Retention.** [`Budgets::purge_expired`] (the janitor's `purge-ai-budgets` job) deletes
//!   the counters of months more than `AI_BUDGET_RETENTION_MONTHS` (13) before the current
//!   one, with their per-model rows.

use std::borrow::Cow;

use adiuva_access::{Caller, Tier, TierSource};
use adiuva_calendar::{next_period_start, period_months_before, period_of};
use adiuva_config::{Component, ConfigError, Context, Source};
use adiuva_db::Database;
use adiuva_error::{DomainError, ErrorKind, unavailable};
use serde::Serialize;

/// `AI_MONTHLY_TOKENS_FREE` (50,000), `AI_MONTHLY_TOKENS_PRO` (2,000,000),
/// `AI_MONTHLY_TOKENS_POWER` (10,000,000) and `AI_MONTHLY_TOKENS_TEAM` (10,000,000 per paid
/// seat, pooled for the team's members): tokens a month, prompt and completion together; and
/// `AI_BUDGET_RETENTION_MONTHS` (13): how many months before the current one keep their
/// counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetSettings {
    pub free: u64,
    pub pro: u64,
    pub power: u64,
    pub team_per_seat: u64,
    pub retention_months: u32,
}

impl BudgetSettings {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        const MAX: u64 = 1_000_000_000_000;
        Ok(Self {
            free: source.number_in("AI_MONTHLY_TOKENS_FREE", 50_000, 0..=MAX)?,
            pro: source.number_in("AI_MONTHLY_TOKENS_PRO", 2_000_000, 0..=MAX)?,
            power: source.number_in("AI_MONTHLY_TOKENS_POWER", 10_000_000, 0..=MAX)?,
            team_per_seat: source.number_in("AI_MONTHLY_TOKENS_TEAM", 10_000_000, 0..=MAX)?,
            retention_months: source.number_in("AI_BUDGET_RETENTION_MONTHS", 13, 1..=1200)?,
        })
    }

    /// The monthly tokens of an account of its own at `tier`. A personal `team` subscription
    /// counts as one seat.
    pub fn own(&self, tier: Tier) -> u64 {
        match tier {
            Tier::Free => self.free,
            Tier::Pro => self.pro,
            Tier::Power => self.power,
            Tier::Team => self.team_per_seat,
        }
    }

    /// The monthly pool of a team with `seats` paid seats.
    pub fn team(&self, seats: u64) -> u64 {
        self.team_per_seat.saturating_mul(seats)
    }
}

/// Where a caller's budget comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum BudgetSource {
    /// The caller's own, by their own tier.
    Own,
    /// Their team's pool.
    Team,
}

/// Who a budget belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    User(String),
    Team(String),
}

/// The budget a caller draws from this month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub source: BudgetSource,
    pub owner: Owner,
    pub limit_tokens: u64,
}

impl Account {
    /// The counter of `period`: the row's key, `user:<id>:<period>` or `team:<id>:<period>`.
    pub fn counter(&self, period: &str) -> String {
        match &self.owner {
            Owner::User(id) => format!("user:{id}:{period}"),
            Owner::Team(id) => format!("team:{id}:{period}"),
        }
    }
}

/// What one settled call is charged: the provider's figures, or its estimate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Charge {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// The provider reported nothing: these are the call's estimate.
    pub estimated: bool,
}

impl Charge {
    pub fn total(self) -> u64 {
        self.prompt_tokens.saturating_add(self.completion_tokens)
    }
}

/// `GET /api/v1/chat/usage`: the caller's budget this month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AiUsage {
    /// The calendar month (UTC), `YYYY-MM`.
    #[cfg_attr(feature = "openapi", schema(example = "2026-12"))]
    pub period: String,
    /// Tokens of settled model calls, and of calls the provider reported nothing for (their
    /// estimate).
    pub used_tokens: u64,
    /// Estimates of calls not settled yet (in flight, or whose process died before settling:
    /// those stay charged).
    pub reserved_tokens: u64,
    /// The month's budget: the caller's tier's, or the team's pool (per seat × paid seats).
    pub limit_tokens: u64,
    /// The first instant of next month, UTC (ms since the epoch), when the budget starts anew.
    pub resets_at: i64,
    /// `own`, or `team` when the caller draws from their team's pool (the figures are then the
    /// whole team's).
    pub source: BudgetSource,
    /// What each model was charged this month, by model name.
    pub by_model: Vec<ModelUsage>,
}

/// One model's share of a month's budget.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ModelUsage {
    /// The configured model name (`gpt-4o`).
    pub model: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Some call of this model reported no usage and was charged its estimate (prompt at 4
    /// bytes a token, completion at its `max_tokens`).
    pub estimated: bool,
}

/// What `purge-ai-budgets` did: serialized into its summary line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Purged {
    /// Month counters deleted (each with its per-model rows).
    pub deleted: u64,
    /// The oldest month kept, `YYYY-MM`: every earlier one is gone.
    pub kept_from: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    /// The reservation does not fit in what is left of the month's budget.
    #[error("the monthly AI token budget of {limit_tokens} tokens is spent")]
    Exhausted { limit_tokens: u64, resets_at: i64 },
    #[error("database query failed")]
    Database(#[from] sqlx::Error),
}

impl DomainError for BudgetError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Exhausted { .. } => ErrorKind::QuotaExceeded,
            Self::Database(err) => adiuva_db::kind_of(err),
        }
    }

    fn code(&self) -> &'static str {
        match (self, self.kind()) {
            (Self::Exhausted { .. }, _) => "ai_budget_exhausted",
            (_, ErrorKind::Unavailable) => "dependency_unavailable",
            _ => "internal_error",
        }
    }

    fn resets_at(&self) -> Option<i64> {
        match self {
            Self::Exhausted { resets_at, .. } => Some(*resets_at),
            Self::Database(_) => None,
        }
    }

    fn public_detail(&self) -> Option<Cow<'static, str>> {
        match (self, self.kind()) {
            (Self::Database(_), ErrorKind::Unavailable) => Some(unavailable("the database")),
            _ => None,
        }
    }
}

/// The budgets, on the database. Cheap to clone; built once per process.
#[derive(Debug, Clone)]
pub struct Budgets {
    db: Database,
    settings: BudgetSettings,
}

impl Component for Budgets {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        Ok(Self::new(
            context.get()?,
            BudgetSettings::from_source(context.source())?,
        ))
    }
}

impl Budgets {
    pub fn new(db: Database, settings: BudgetSettings) -> Self {
        Self { db, settings }
    }

    pub fn settings(&self) -> &BudgetSettings {
        &self.settings
    }

    /// Whose budget `caller` draws from, and its size: their own (their tier's), or, when
    /// their tier comes from a team (`tier_source`, decided once per request with the tier
    /// itself), that team's pool (`AI_MONTHLY_TOKENS_TEAM` × the team's paid seats); of
    /// several active teams, the oldest membership (`joined_at`, then the team's id) counts.
    pub async fn account_of(&self, caller: &Caller) -> Result<Account, BudgetError> {
        let own = || Account {
            source: BudgetSource::Own,
            owner: Owner::User(caller.id.clone()),
            limit_tokens: self.settings.own(caller.tier),
        };
        if caller.tier_source == TierSource::Own {
            return Ok(own());
        }
        // The tier is a seat's: the pool of the oldest membership in an active team.
        let row: Option<(String, i64)> = sqlx::query_as(
            "SELECT t.id, t.seats FROM team_members m JOIN teams t ON t.id = m.team_id \
             WHERE m.user_id = $1 AND t.status = 'active' \
             ORDER BY m.joined_at, m.team_id LIMIT 1",
        )
        .bind(&caller.id)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(match row {
            Some((team_id, seats)) => Account {
                source: BudgetSource::Team,
                owner: Owner::Team(team_id),
                limit_tokens: self.settings.team(u64::try_from(seats).unwrap_or(0)),
            },
            // The seat ended since the request began: the caller's own budget.
            None => own(),
        })
    }

    /// Reserves `tokens` of this month's budget of `account`; returns the counter to settle.
    pub async fn reserve(&self, account: &Account, tokens: u64) -> Result<String, BudgetError> {
        self.reserve_at(account, tokens, adiuva_db::now_ms()).await
    }

    /// [`Self::reserve`] at the time `now` (ms): the month it falls in is the one charged.
    pub async fn reserve_at(
        &self,
        account: &Account,
        tokens: u64,
        now: i64,
    ) -> Result<String, BudgetError> {
        let period = period_of(now);
        let counter = account.counter(&period);
        let tokens = to_i64(tokens);
        let limit = to_i64(account.limit_tokens);
        if self.try_reserve(&counter, tokens, limit, now).await? {
            return Ok(counter);
        }
        // The month's first call: create its counter (another request may be doing the same:
        // the key decides) and try once more.
        let (user_id, team_id) = match &account.owner {
            Owner::User(id) => (Some(id.as_str()), None),
            Owner::Team(id) => (None, Some(id.as_str())),
        };
        sqlx::query(
            "INSERT INTO ai_budgets (id, user_id, team_id, period, used_tokens, reserved_tokens, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, 0, 0, $5, $5) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&counter)
        .bind(user_id)
        .bind(team_id)
        .bind(&period)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        if self.try_reserve(&counter, tokens, limit, now).await? {
            return Ok(counter);
        }
        tracing::info!(
            counter,
            tokens,
            limit_tokens = limit,
            "AI budget exhausted; model call refused"
        );
        Err(BudgetError::Exhausted {
            limit_tokens: account.limit_tokens,
            resets_at: next_period_start(now),
        })
    }

    /// The one conditional update: `false` when the counter is missing or the tokens do not fit.
    async fn try_reserve(
        &self,
        counter: &str,
        tokens: i64,
        limit: i64,
        now: i64,
    ) -> Result<bool, sqlx::Error> {
        let done = sqlx::query(
            "UPDATE ai_budgets SET reserved_tokens = reserved_tokens + $2, updated_at = $4 \
             WHERE id = $1 AND used_tokens + reserved_tokens + $2 <= $3",
        )
        .bind(counter)
        .bind(tokens)
        .bind(limit)
        .bind(now)
        .execute(self.db.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Settles a reservation of `reserved` tokens on `counter` (made for a call of `model`) to
    /// `charge`, in one transaction: the reservation leaves `reserved_tokens`, the charge goes
    /// to `used_tokens` and to the model's counts. A charge of nothing (the provider refused
    /// the call) only releases the reservation.
    pub async fn settle(
        &self,
        counter: &str,
        model: &str,
        reserved: u64,
        charge: Charge,
    ) -> Result<(), BudgetError> {
        let now = adiuva_db::now_ms();
        let mut tx = self.db.pool().begin().await?;
        sqlx::query(
            "UPDATE ai_budgets SET reserved_tokens = reserved_tokens - $2, \
             used_tokens = used_tokens + $3, updated_at = $4 WHERE id = $1",
        )
        .bind(counter)
        .bind(to_i64(reserved))
        .bind(to_i64(charge.total()))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if charge.total() > 0 || charge.estimated {
            sqlx::query(
                "INSERT INTO ai_budget_models (budget_id, model, prompt_tokens, \
                 completion_tokens, estimated_calls) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (budget_id, model) DO UPDATE SET \
                 prompt_tokens = ai_budget_models.prompt_tokens + excluded.prompt_tokens, \
                 completion_tokens = ai_budget_models.completion_tokens + excluded.completion_tokens, \
                 estimated_calls = ai_budget_models.estimated_calls + excluded.estimated_calls",
            )
            .bind(counter)
            .bind(model)
            .bind(to_i64(charge.prompt_tokens))
            .bind(to_i64(charge.completion_tokens))
            .bind(i64::from(charge.estimated))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The caller's budget this month (`GET /api/v1/chat/usage`).
    pub async fn usage(&self, caller: &Caller) -> Result<AiUsage, BudgetError> {
        let account = self.account_of(caller).await?;
        self.usage_at(&account, adiuva_db::now_ms()).await
    }

    /// The budget of `account` in the month of `now` (ms).
    pub async fn usage_at(&self, account: &Account, now: i64) -> Result<AiUsage, BudgetError> {
        let period = period_of(now);
        let counter = account.counter(&period);
        let totals: Option<(i64, i64)> =
            sqlx::query_as("SELECT used_tokens, reserved_tokens FROM ai_budgets WHERE id = $1")
                .bind(&counter)
                .fetch_optional(self.db.pool())
                .await?;
        let models: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT model, prompt_tokens, completion_tokens, estimated_calls \
             FROM ai_budget_models WHERE budget_id = $1 ORDER BY model",
        )
        .bind(&counter)
        .fetch_all(self.db.pool())
        .await?;
        let (used, reserved) = totals.unwrap_or_default();
        Ok(AiUsage {
            period,
            used_tokens: to_u64(used),
            reserved_tokens: to_u64(reserved),
            limit_tokens: account.limit_tokens,
            resets_at: next_period_start(now),
            source: account.source,
            by_model: models
                .into_iter()
                .map(|(model, prompt, completion, estimated_calls)| ModelUsage {
                    model,
                    prompt_tokens: to_u64(prompt),
                    completion_tokens: to_u64(completion),
                    estimated: estimated_calls > 0,
                })
                .collect(),
        })
    }
}

impl Budgets {
    /// Deletes the counters (users' and teams') of the months more than
    /// `AI_BUDGET_RETENTION_MONTHS` before the current one; their per-model rows go with them
    /// (`ON DELETE CASCADE`). Idempotent, and safe next to chats: those reserve and settle on
    /// the current month's counter (or, across midnight at a month's end, the one before),
    /// which the smallest retention, one month, keeps.
    pub async fn purge_expired(&self) -> Result<Purged, BudgetError> {
        self.purge_expired_at(adiuva_db::now_ms()).await
    }

    /// [`Self::purge_expired`] as if it were `now` (ms).
    pub async fn purge_expired_at(&self, now: i64) -> Result<Purged, BudgetError> {
        let kept_from = period_months_before(now, self.settings.retention_months);
        // `YYYY-MM` orders as the months do.
        let done = sqlx::query("DELETE FROM ai_budgets WHERE period < $1")
            .bind(&kept_from)
            .execute(self.db.pool())
            .await?;
        let deleted = done.rows_affected();
        tracing::info!(deleted, kept_from, "old AI budget months purged");
        Ok(Purged { deleted, kept_from })
    }
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_default_to_the_issue_and_pool_per_seat() {
        let settings = BudgetSettings::from_source(&Source::default()).unwrap();
        assert_eq!(
            settings,
            BudgetSettings {
                free: 50_000,
                pro: 2_000_000,
                power: 10_000_000,
                team_per_seat: 10_000_000,
                retention_months: 13,
            }
        );
        assert_eq!(settings.own(Tier::Free), 50_000);
        assert_eq!(settings.own(Tier::Power), 10_000_000);
        assert_eq!(settings.team(3), 30_000_000);
        assert_eq!(settings.team(0), 0);
        let bad = Source::from_pairs([("AI_MONTHLY_TOKENS_PRO", "-1")]);
        assert!(BudgetSettings::from_source(&bad).is_err());
        let none_kept = Source::from_pairs([("AI_BUDGET_RETENTION_MONTHS", "0")]);
        assert!(BudgetSettings::from_source(&none_kept).is_err());
    }

    #[test]
    fn exhaustion_is_402_with_its_reset() {
        let err = BudgetError::Exhausted {
            limit_tokens: 10,
            resets_at: 1_798_761_600_000,
        };
        let public = adiuva_error::Public::of(&err);
        assert_eq!(public.status(), 402);
        assert_eq!(public.code, "ai_budget_exhausted");
        assert_eq!(public.resets_at, Some(1_798_761_600_000));
    }

    #[test]
    fn counters_are_per_owner_and_month() {
        let own = Account {
            source: BudgetSource::Own,
            owner: Owner::User("u1".into()),
            limit_tokens: 1,
        };
        let team = Account {
            source: BudgetSource::Team,
            owner: Owner::Team("t1".into()),
            limit_tokens: 1,
        };
        assert_eq!(own.counter("2026-12"), "user:u1:2026-12");
        assert_eq!(team.counter("2027-01"), "team:t1:2027-01");
    }
}
