//! The janitor function's scheduled jobs, each run as `adiuva-local job <name>` runs it
//! (`local::cli::job`, which formats the summary line the command prints last), on both
//! pairings: `purge-sessions` forgets expired refresh-token families and keeps every row reuse
//! detection still needs; `purge-tombstones` removes tombstones past the retention and keeps
//! recent ones; `reconcile-billing` corrects a subscription changed at Stripe without a
//! webhook, and does nothing in stub mode; `purge-ai-budgets` deletes the AI budget counters of
//! months past the retention and keeps the others as they were.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::backend_tests;
use crate::billing::{billing_app, subscribed, subscription, tier};
use crate::harness::{Backend, TestApp, Tokens, error_body, spawn_app, spawn_app_with};
use crate::stripe::{FakeStripe, now_secs};

backend_tests!(
    purge_sessions_forgets_expired_families_and_keeps_what_reuse_detection_needs,
    purge_tombstones_removes_old_tombstones_and_keeps_recent_ones,
    reconcile_billing_fixes_a_subscription_changed_at_stripe_without_a_webhook,
    reconcile_billing_does_nothing_in_stub_mode,
    every_job_prints_its_summary_and_an_unknown_one_is_refused,
    purge_ai_budgets_deletes_the_months_past_the_retention_only,
);

/// Runs a job as `adiuva-local job <name>` does; its summary line, parsed, after checking that
/// it is one line of JSON naming the job first.
async fn run_job(app: &TestApp, name: &str) -> Value {
    let line = local::cli::job(&app.context, name)
        .await
        .unwrap_or_else(|err| panic!("job {name} failed: {err}"));
    assert!(!line.contains('\n'), "{line}");
    assert!(
        line.starts_with(&format!(r#"{{"job":"{name}""#)),
        "the summary names its job first: {line}"
    );
    serde_json::from_str(&line).unwrap()
}

async fn scalar(app: &TestApp, sql: &'static str, user_id: &str) -> i64 {
    adiuva_db::sqlx::query_scalar(sql)
        .bind(user_id)
        .fetch_one(app.backends.db.pool())
        .await
        .unwrap()
}

async fn tokens_of(app: &TestApp, user_id: &str) -> i64 {
    scalar(
        app,
        "SELECT COUNT(*) FROM refresh_tokens WHERE user_id = $1",
        user_id,
    )
    .await
}

/// Moves every refresh token of the user that matches `filter` back in time: expired an hour
/// ago.
async fn expire_tokens(app: &TestApp, user_id: &str, filter: &'static str) {
    let sql = format!("UPDATE refresh_tokens SET expires_at = $2 WHERE user_id = $1 AND {filter}");
    adiuva_db::sqlx::query(adiuva_db::sqlx::AssertSqlSafe(sql))
        .bind(user_id)
        .bind((now_secs() - 3600) * 1000)
        .execute(app.backends.db.pool())
        .await
        .unwrap();
}

async fn logout(app: &TestApp, access_token: &str) {
    let response = app
        .request(Method::POST, "/api/v1/auth/logout")
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
}

async fn purge_sessions_forgets_expired_families_and_keeps_what_reuse_detection_needs(
    backend: Backend,
) {
    let app = spawn_app(backend).await;

    // A family that rotated once and then expired: both rows go.
    let expired = app.register_user().await;
    assert_eq!(
        app.refresh(&expired.tokens.refresh_token).await.status(),
        StatusCode::OK
    );
    expire_tokens(&app, &expired.id, "1 = 1").await;

    // A family revoked by logout whose tokens have expired since: goes.
    let logged_out_long_ago = app.register_user().await;
    logout(&app, &logged_out_long_ago.tokens.access_token).await;
    expire_tokens(&app, &logged_out_long_ago.id, "1 = 1").await;

    // Revoked just now: kept until its tokens expire, so that a replay still ends the user's
    // access tokens.
    let logged_out = app.register_user().await;
    logout(&app, &logged_out.tokens.access_token).await;

    // A live family whose used token has expired: the used row stays while the family can
    // still be exchanged, for reuse detection.
    let live = app.register_user().await;
    let rotated: Tokens = app
        .refresh(&live.tokens.refresh_token)
        .await
        .json()
        .await
        .unwrap();
    expire_tokens(&app, &live.id, "used_at IS NOT NULL").await;

    assert_eq!(
        (
            tokens_of(&app, &expired.id).await,
            tokens_of(&app, &logged_out_long_ago.id).await,
            tokens_of(&app, &logged_out.id).await,
            tokens_of(&app, &live.id).await,
        ),
        (2, 1, 1, 2)
    );
    // Every session older than the minute a sign-in may take; one security event past the
    // log's 90 days.
    adiuva_db::sqlx::query("UPDATE sessions SET created_at = created_at - 120000")
        .execute(app.database.db.pool())
        .await
        .unwrap();
    adiuva_db::sqlx::query(
        "UPDATE security_events SET at = at - $2 WHERE id = \
         (SELECT id FROM security_events WHERE user_id = $1 ORDER BY at LIMIT 1)",
    )
    .bind(&live.id)
    .bind(91_i64 * 24 * 60 * 60 * 1000)
    .execute(app.database.db.pool())
    .await
    .unwrap();
    let summary = run_job(&app, "purge-sessions").await;
    // The two purged families' sessions go with them; the others stay.
    assert_eq!(
        summary,
        serde_json::json!({"job": "purge-sessions", "deleted": 3, "sessions": 2, "events": 1})
    );
    assert_eq!(
        (
            tokens_of(&app, &expired.id).await,
            tokens_of(&app, &logged_out_long_ago.id).await,
            tokens_of(&app, &logged_out.id).await,
            tokens_of(&app, &live.id).await,
        ),
        (0, 0, 1, 2)
    );
    // Nothing left to do.
    assert_eq!(run_job(&app, "purge-sessions").await["deleted"], 0);

    // The live family still works, and reuse detection still sees the old token's replay.
    error_body(
        app.refresh(&live.tokens.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "refresh_token_reused",
    )
    .await;
    error_body(
        app.refresh(&rotated.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    // A purged token is simply unknown.
    error_body(
        app.refresh(&expired.tokens.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
}

async fn tombstones_of(app: &TestApp, user_id: &str) -> i64 {
    scalar(
        app,
        "SELECT COUNT(*) FROM storage_tombstones WHERE user_id = $1",
        user_id,
    )
    .await
}

async fn purge_tombstones_removes_old_tombstones_and_keeps_recent_ones(backend: Backend) {
    let app = spawn_app_with(backend, &[("TOMBSTONE_RETENTION_DAYS", "1")]).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let old = app.record(token, "tasks", b"old").await;
    let recent = app.record(token, "tasks", b"recent").await;
    let kept = app.record(token, "tasks", b"kept").await;
    for id in [&old, &recent] {
        assert_eq!(app.delete_record(token, id).await.status(), StatusCode::OK);
    }
    assert_eq!(tombstones_of(&app, &user.id).await, 2);
    // One deletion two days ago, past the one-day retention.
    adiuva_db::sqlx::query("UPDATE storage_tombstones SET deleted_at = $2 WHERE id = $1")
        .bind(&old)
        .bind((now_secs() - 2 * 86_400) * 1000)
        .execute(app.backends.db.pool())
        .await
        .unwrap();

    let summary = run_job(&app, "purge-tombstones").await;
    assert_eq!(
        summary,
        serde_json::json!({"job": "purge-tombstones", "deleted": 1})
    );
    assert_eq!(tombstones_of(&app, &user.id).await, 1);
    let left: String =
        adiuva_db::sqlx::query_scalar("SELECT id FROM storage_tombstones WHERE user_id = $1")
            .bind(&user.id)
            .fetch_one(app.backends.db.pool())
            .await
            .unwrap();
    assert_eq!(left, recent);
    assert_eq!(run_job(&app, "purge-tombstones").await["deleted"], 0);
    // Records are not tombstones: the live one is untouched.
    assert_eq!(app.get_record(token, &kept).await.status(), StatusCode::OK);
}

async fn reconcile_billing_fixes_a_subscription_changed_at_stripe_without_a_webhook(
    backend: Backend,
) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let (drifted, drifted_id) = subscribed(&app, &stripe, "pro").await;
    let (ended, ended_id) = subscribed(&app, &stripe, "power").await;
    let (steady, _) = subscribed(&app, &stripe, "power").await;
    let steady_before = subscription(&app, &steady).await;

    // Changed at Stripe, and no webhook arrives: a new price, a failed payment, a new period;
    // another subscription ended.
    let new_period_end = now_secs() + 60 * 24 * 60 * 60;
    stripe.set_price(&drifted_id, "price_power_monthly", "power");
    stripe.set_status(&drifted_id, "past_due");
    stripe.set_period_end(&drifted_id, new_period_end);
    stripe.set_status(&ended_id, "canceled");
    let before = subscription(&app, &drifted).await;
    assert_eq!(
        (before["tier"].as_str(), before["status"].as_str()),
        (Some("pro"), Some("active"))
    );
    assert_eq!(tier(&app, &ended).await, "power");

    let summary = run_job(&app, "reconcile-billing").await;
    assert_eq!(
        summary,
        serde_json::json!({"job": "reconcile-billing", "checked": 3, "fixed": 2, "failed": 0})
    );
    let after = subscription(&app, &drifted).await;
    assert_eq!(after["tier"], "power");
    assert_eq!(after["status"], "past_due");
    assert_eq!(after["current_period_end"], new_period_end * 1000);
    assert_eq!(tier(&app, &drifted).await, "power");
    assert_eq!(tier(&app, &ended).await, "free");
    assert_eq!(subscription(&app, &ended).await["status"], "canceled");
    assert_eq!(subscription(&app, &steady).await, steady_before);

    // Each live subscription was read from Stripe once; the ended one is no longer live.
    let summary = run_job(&app, "reconcile-billing").await;
    assert_eq!(
        (summary["checked"].as_i64(), summary["fixed"].as_i64()),
        (Some(2), Some(0))
    );

    // Stripe down: counted as failed, nothing changed, the job itself still reports.
    stripe.set_down(true);
    let summary = run_job(&app, "reconcile-billing").await;
    assert_eq!(
        (
            summary["checked"].as_i64(),
            summary["fixed"].as_i64(),
            summary["failed"].as_i64()
        ),
        (Some(2), Some(0), Some(2))
    );
    assert_eq!(tier(&app, &drifted).await, "power");
}

async fn reconcile_billing_does_nothing_in_stub_mode(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    app.set_subscription(&user.id, "pro", "active").await;
    // Even a row that names a Stripe subscription (left from a keyed deployment) is left alone:
    // without a key there is nothing to ask.
    adiuva_db::sqlx::query(
        "UPDATE subscriptions SET stripe_subscription_id = 'sub_left_over' WHERE user_id = $1",
    )
    .bind(&user.id)
    .execute(app.backends.db.pool())
    .await
    .unwrap();
    let before = subscription(&app, &user).await;

    let summary = run_job(&app, "reconcile-billing").await;
    assert_eq!(
        summary,
        serde_json::json!({"job": "reconcile-billing", "checked": 0, "fixed": 0, "failed": 0})
    );
    assert_eq!(subscription(&app, &user).await, before);
    assert_eq!(tier(&app, &user).await, "pro");
}

async fn every_job_prints_its_summary_and_an_unknown_one_is_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    for job in janitor::Job::ALL {
        let summary = run_job(&app, job.name()).await;
        assert_eq!(summary["job"], job.name());
    }
    let janitor = run_job(&app, "janitor").await;
    for count in [
        "orphans_deleted",
        "tombstones_purged",
        "accounts_purged",
        "transfers_settled",
    ] {
        assert!(janitor[count].is_u64(), "{count} in {janitor}");
    }
    let err = local::cli::job(&app.context, "purge-everything")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("purge-sessions"), "{err}");
    // The command line parses the same way (and fails the same way).
    let args = ["job".to_owned(), "purge-everything".to_owned()];
    assert!(local::cli::run(&args, &app.context).await.is_err());
}

/// Writes a budget counter of `period` (with one model's row) for a user or a team.
async fn budget_row(app: &TestApp, owner: (&str, &str), period: &str, used: i64) {
    let (kind, id) = owner;
    let counter = format!("{kind}:{id}:{period}");
    let (user_id, team_id) = if kind == "user" {
        (Some(id), None)
    } else {
        (None, Some(id))
    };
    let pool = app.database.db.pool();
    adiuva_db::sqlx::query(
        "INSERT INTO ai_budgets (id, user_id, team_id, period, used_tokens, reserved_tokens, \
         created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 0, 0, 0)",
    )
    .bind(&counter)
    .bind(user_id)
    .bind(team_id)
    .bind(period)
    .bind(used)
    .execute(pool)
    .await
    .unwrap();
    adiuva_db::sqlx::query(
        "INSERT INTO ai_budget_models (budget_id, model, prompt_tokens, completion_tokens, \
         estimated_calls) VALUES ($1, 'gpt-4o', $2, 0, 0)",
    )
    .bind(&counter)
    .bind(used)
    .execute(pool)
    .await
    .unwrap();
}

/// Every budget counter left, as `(id, used_tokens, model rows)`, sorted.
async fn budget_rows(app: &TestApp) -> Vec<(String, i64, i64)> {
    adiuva_db::sqlx::query_as(
        "SELECT b.id, b.used_tokens, \
         (SELECT COUNT(*) FROM ai_budget_models m WHERE m.budget_id = b.id) \
         FROM ai_budgets b ORDER BY b.id",
    )
    .fetch_all(app.database.db.pool())
    .await
    .unwrap()
}

async fn purge_ai_budgets_deletes_the_months_past_the_retention_only(backend: Backend) {
    use adiuva_calendar::{period_months_before, period_of};

    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let team_id = uuid::Uuid::new_v4().to_string();
    adiuva_db::sqlx::query(
        "INSERT INTO teams (id, name, seats, status, created_at, updated_at) \
         VALUES ($1, 'Old team', 1, 'active', 0, 0)",
    )
    .bind(&team_id)
    .execute(app.database.db.pool())
    .await
    .unwrap();
    let now = adiuva_db::now_ms();
    let month = |back: u32| period_months_before(now, back);
    let me = ("user", user.id.as_str());
    let team = ("team", team_id.as_str());
    // Kept (the default retention, 13 months before this one, and every month after it).
    budget_row(&app, me, &period_of(now), 100).await;
    budget_row(&app, me, &month(1), 200).await;
    budget_row(&app, me, &month(13), 300).await;
    budget_row(&app, team, &month(13), 400).await;
    // Past the retention.
    budget_row(&app, me, &month(14), 500).await;
    budget_row(&app, me, &month(40), 600).await;
    budget_row(&app, team, &month(14), 700).await;
    let before = usage_now(&app, &user).await;

    let summary = run_job(&app, "purge-ai-budgets").await;
    assert_eq!(
        summary,
        serde_json::json!({"job": "purge-ai-budgets", "deleted": 3, "kept_from": month(13)})
    );
    let mut kept = vec![
        (format!("user:{}:{}", user.id, period_of(now)), 100, 1),
        (format!("user:{}:{}", user.id, month(1)), 200, 1),
        (format!("user:{}:{}", user.id, month(13)), 300, 1),
        (format!("team:{team_id}:{}", month(13)), 400, 1),
    ];
    kept.sort();
    assert_eq!(budget_rows(&app).await, kept);
    // This month is untouched, as the user sees it.
    assert_eq!(usage_now(&app, &user).await, before);
    assert_eq!(before["used_tokens"], 100);

    // Nothing left to do; the schedule's input runs the same job.
    let event: Value = serde_json::from_str(
        &std::fs::read_to_string(
            crate::contract::workspace_root().join("events/janitor/purge-ai-budgets.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let report = janitor::Janitor::new(&app.context)
        .unwrap()
        .handle(event)
        .await
        .unwrap();
    assert_eq!(
        report,
        janitor::JobReport::PurgeAiBudgets(adiuva_budgets::Purged {
            deleted: 0,
            kept_from: month(13),
        })
    );
    assert_eq!(budget_rows(&app).await, kept);

    // A shorter retention keeps fewer months.
    let short = spawn_app_with(backend, &[("AI_BUDGET_RETENTION_MONTHS", "1")]).await;
    let other = short.register_user().await;
    let theirs = ("user", other.id.as_str());
    budget_row(&short, theirs, &period_of(now), 1).await;
    budget_row(&short, theirs, &month(1), 2).await;
    budget_row(&short, theirs, &month(2), 3).await;
    let summary = run_job(&short, "purge-ai-budgets").await;
    assert_eq!(
        (summary["deleted"].as_u64(), summary["kept_from"].as_str()),
        (Some(1), Some(month(1).as_str()))
    );
    let left: Vec<i64> = budget_rows(&short)
        .await
        .into_iter()
        .map(|(_, used, _)| used)
        .collect();
    assert_eq!(left.len(), 2);
    assert!(left.contains(&1) && left.contains(&2));
}

async fn usage_now(app: &TestApp, user: &crate::harness::TestUser) -> Value {
    let response = app
        .get_authed("/api/v1/chat/usage", &user.tokens.access_token)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}
