//! Money that stays consistent, on both pairings, against the fake Stripe server: sales that
//! outlive the accounts on both sides (a deleted developer's sale refunded and disputed, the
//! buyer keeping the plugin), account deletion ending the subscription at Stripe, a paid
//! version after a free one, partial refunds, disputes, a refund before the completion, a
//! transfer retried after a lost commit and a day (no second payment), superseded checkout
//! sessions, and the subscription webhook trusting only the customer on file.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, TestUser, error_body, spawn_app_with};
use crate::marketplace::{
    PACKAGE, admin, buy, decide, detail, install, json_of, manifest, payout_ready, publish,
    revenue_of, send, stripe_app, submit, upload_package, user_with_tier,
};
use crate::stripe::FakeStripe;

backend_tests!(
    a_deleted_developer_s_sales_are_still_refunded_and_disputed,
    deleting_an_account_ends_its_subscription_at_stripe_first,
    a_paid_version_needs_a_purchase_after_a_free_one,
    a_dispute_suspends_the_install_until_it_is_won,
    a_refund_before_the_completion_is_remembered,
    a_transfer_retried_after_a_lost_commit_and_a_day_pays_once,
    a_new_checkout_expires_the_superseded_session,
    the_webhook_trusts_the_customer_on_file_not_metadata,
);

async fn delete_account(app: &TestApp, user: &TestUser) -> reqwest::Response {
    app.request(Method::DELETE, "/api/v1/auth/me")
        .bearer_auth(&user.tokens.access_token)
        .json(&json!({"password": user.password}))
        .send()
        .await
        .unwrap()
}

/// Delivers `kind` about `object`, expecting 200.
async fn deliver(app: &TestApp, stripe: &FakeStripe, kind: &str, object: &Value) {
    let response = FakeStripe::deliver(app, &stripe.event(kind, object)).await;
    assert_eq!(response.status(), StatusCode::OK, "{kind}");
}

/// The reversals the fake was asked for: `(transfer path, amount, idempotency key)`.
fn reversals(stripe: &FakeStripe) -> Vec<(String, String, String)> {
    stripe
        .requests()
        .into_iter()
        .filter(|request| request.method == "POST" && request.path.ends_with("/reversals"))
        .map(|request| {
            (
                request.path.clone(),
                request.field("amount").unwrap_or_default().to_owned(),
                request.idempotency_key.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn transfers_made(stripe: &FakeStripe) -> usize {
    stripe
        .requests_to("POST", "/v1/transfers")
        .into_iter()
        .filter(|request| request.path == "/v1/transfers")
        .count()
}

/// A marketplace on the fake Stripe: a developer with payouts ready whose "focus-timer" is
/// listed at `price` cents, the admin who approved it, and a Power-tier buyer.
struct Market {
    stripe: FakeStripe,
    app: TestApp,
    developer: TestUser,
    reviewer: TestUser,
    buyer: TestUser,
}

async fn market(backend: Backend, price: i64) -> Market {
    let stripe = FakeStripe::start().await;
    let app = stripe_app(backend, &stripe).await;
    let (developer, reviewer, buyer) = (
        user_with_tier(&app, "power").await,
        admin(&app).await,
        user_with_tier(&app, "power").await,
    );
    payout_ready(&app, &stripe, &developer).await;
    publish(
        &app,
        &developer,
        &reviewer,
        "focus-timer",
        "Focus Timer",
        price,
    )
    .await;
    Market {
        stripe,
        app,
        developer,
        reviewer,
        buyer,
    }
}

async fn purchase_status(app: &TestApp, purchase_id: &str) -> String {
    adiuva_db::sqlx::query_scalar("SELECT status FROM plugin_purchases WHERE id = $1")
        .bind(purchase_id)
        .fetch_one(app.database.db.pool())
        .await
        .unwrap()
}

async fn a_deleted_developer_s_sales_are_still_refunded_and_disputed(backend: Backend) {
    let stripe = FakeStripe::start().await;
    // No grace period: the janitor's sweep below deletes any blob nothing refers to.
    let mut settings = stripe.settings();
    settings.push(("ORPHAN_GRACE_MINUTES", "0".to_owned()));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(backend, &settings).await;
    let (developer, reviewer) = (user_with_tier(&app, "power").await, admin(&app).await);
    let (first, second, newcomer) = (
        user_with_tier(&app, "power").await,
        user_with_tier(&app, "power").await,
        user_with_tier(&app, "power").await,
    );
    payout_ready(&app, &stripe, &developer).await;
    publish(
        &app,
        &developer,
        &reviewer,
        "focus-timer",
        "Focus Timer",
        499,
    )
    .await;
    let (first_purchase, first_charge, _) = buy(&app, &stripe, &first, "focus-timer").await;
    let (second_purchase, second_charge, _) = buy(&app, &stripe, &second, "focus-timer").await;
    let (_, _, _, _, first_transfer, _) = revenue_of(&app, &first_purchase).await;
    let (_, _, _, _, second_transfer, _) = revenue_of(&app, &second_purchase).await;
    assert!(first_transfer.is_some() && second_transfer.is_some());

    // The developer leaves: their account goes, their sales and the plugin do not.
    let deleted = json_of(delete_account(&app, &developer).await, StatusCode::OK).await;
    assert_eq!(deleted["ok"], true);
    let (purchases, events): (i64, i64) = adiuva_db::sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM plugin_purchases WHERE plugin_id = 'focus-timer'), \
         (SELECT COUNT(*) FROM revenue_events WHERE developer_id = $1)",
    )
    .bind(&developer.id)
    .fetch_one(app.database.db.pool())
    .await
    .unwrap();
    assert_eq!((purchases, events), (2, 2));
    let author: String =
        adiuva_db::sqlx::query_scalar("SELECT author FROM plugins WHERE id = 'focus-timer'")
            .fetch_one(app.database.db.pool())
            .await
            .unwrap();
    assert_eq!(author, "", "the developer's name stays with the plugin");

    // Buyers keep it: readable, installed, downloadable (the package outlived the purge).
    assert_eq!(detail(&app, &first, "focus-timer").await["installed"], true);
    let installed = json_of(install(&app, &first, "focus-timer").await, StatusCode::OK).await;
    let downloaded = app
        .client
        .get(installed["download_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(downloaded.status(), StatusCode::OK);
    assert_eq!(downloaded.bytes().await.unwrap().as_ref(), PACKAGE);
    // The janitor keeps it too, and the account's purge did not take it.
    let storage: adiuva_storage::Storage = app.context.get().unwrap();
    storage.sweep().await.unwrap();
    storage.purge_user_blobs(&developer.id).await.unwrap();
    let installed = json_of(install(&app, &second, "focus-timer").await, StatusCode::OK).await;
    let downloaded = app
        .client
        .get(installed["download_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(downloaded.status(), StatusCode::OK);
    assert_eq!(downloaded.bytes().await.unwrap().as_ref(), PACKAGE);
    // No one else can buy it any more, and the catalog does not list it.
    error_body(
        install(&app, &newcomer, "focus-timer").await,
        StatusCode::GONE,
        "plugin_closed",
    )
    .await;
    let catalog = json_of(
        send(&app, Method::GET, "/api/v1/plugins", &newcomer, None).await,
        StatusCode::OK,
    )
    .await;
    assert!(!catalog.to_string().contains("focus-timer"), "{catalog}");

    // A refund of the first sale still takes the developer's share back.
    deliver(
        &app,
        &stripe,
        "charge.refunded",
        &stripe.refund(&first_charge, None),
    )
    .await;
    assert_eq!(
        reversals(&stripe),
        vec![(
            format!("/v1/transfers/{}/reversals", first_transfer.unwrap()),
            "349".to_owned(),
            format!("reversal:{first_purchase}:349"),
        )]
    );
    assert_eq!(purchase_status(&app, &first_purchase).await, "refunded");
    assert_eq!(
        detail(&app, &first, "focus-timer").await["installed"],
        false
    );

    // A chargeback of the second: suspended while open, reversed when lost.
    let dispute = stripe.dispute(&second_charge, "needs_response");
    deliver(&app, &stripe, "charge.dispute.created", &dispute).await;
    assert_eq!(purchase_status(&app, &second_purchase).await, "disputed");
    error_body(
        install(&app, &second, "focus-timer").await,
        StatusCode::FORBIDDEN,
        "purchase_disputed",
    )
    .await;
    let lost = stripe.dispute(&second_charge, "lost");
    deliver(&app, &stripe, "charge.dispute.closed", &lost).await;
    assert_eq!(purchase_status(&app, &second_purchase).await, "refunded");
    let reversed = reversals(&stripe);
    assert_eq!(reversed.len(), 2, "{reversed:?}");
    assert_eq!(
        reversed[1],
        (
            format!("/v1/transfers/{}/reversals", second_transfer.unwrap()),
            "349".to_owned(),
            format!("reversal:{second_purchase}:349"),
        )
    );
    let (made, target): (i64, i64) = adiuva_db::sqlx::query_as(
        "SELECT CAST(SUM(reversal_made_cents) AS BIGINT), CAST(SUM(reversed_cents) AS BIGINT) \
         FROM revenue_events WHERE developer_id = $1",
    )
    .bind(&developer.id)
    .fetch_one(app.database.db.pool())
    .await
    .unwrap();
    assert_eq!((made, target), (698, 698));
}

async fn deleting_an_account_ends_its_subscription_at_stripe_first(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = stripe_app(backend, &stripe).await;
    let user = app.register_user().await;
    let checkout = json_of(
        send(
            &app,
            Method::POST,
            "/api/v1/billing/checkout",
            &user,
            Some(json!({"tier": "pro"})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let (session, subscription_id) =
        stripe.complete_checkout(checkout["checkout_url"].as_str().unwrap());
    deliver(&app, &stripe, "checkout.session.completed", &session).await;
    let me: Value = app
        .me(&user.tokens.access_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["tier"], "pro");

    // Stripe unreachable: nothing is deleted (a deleted account must not stay billed).
    stripe.set_down(true);
    error_body(
        delete_account(&app, &user).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "stripe_unavailable",
    )
    .await;
    stripe.set_down(false);
    assert_eq!(
        app.me(&user.tokens.access_token).await.status(),
        StatusCode::OK
    );
    let cancel_path = format!("/v1/subscriptions/{subscription_id}");
    let tried = stripe.requests_to("DELETE", &cancel_path).len();
    assert!(tried >= 1);

    let deleted = json_of(delete_account(&app, &user).await, StatusCode::OK).await;
    assert_eq!(deleted, json!({"ok": true, "subscription_canceled": true}));
    assert_eq!(stripe.requests_to("DELETE", &cancel_path).len(), tried + 1);
    assert_eq!(stripe.subscription(&subscription_id)["status"], "canceled");

    // Without a paid subscription there is nothing to end, and the answer says so.
    let free = app.register_user().await;
    let deleted = json_of(delete_account(&app, &free).await, StatusCode::OK).await;
    assert_eq!(deleted, json!({"ok": true, "subscription_canceled": false}));
}

async fn a_paid_version_needs_a_purchase_after_a_free_one(backend: Backend) {
    let Market {
        stripe,
        app,
        developer,
        reviewer,
        buyer: user,
    } = market(backend, 0).await;
    json_of(install(&app, &user, "focus-timer").await, StatusCode::OK).await;

    // Version 2 costs 4.99: having installed version 1 pays for nothing.
    let package = upload_package(&app, &developer.tokens.access_token, PACKAGE).await;
    json_of(
        submit(
            &app,
            &developer,
            &manifest("focus-timer", "Focus Timer", "2.0.0", 499, &package),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    json_of(
        decide(&app, &reviewer, "focus-timer", "approve", None).await,
        StatusCode::OK,
    )
    .await;
    let pending = json_of(
        install(&app, &user, "focus-timer").await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(
        (pending["ok"].clone(), pending["price_cents"].clone()),
        (json!(false), json!(499))
    );
    assert!(pending.get("download_url").is_none(), "{pending}");
    // Once bought, it installs.
    let (session, _) = stripe.complete_payment(pending["checkout_url"].as_str().unwrap());
    deliver(&app, &stripe, "checkout.session.completed", &session).await;
    let installed = json_of(install(&app, &user, "focus-timer").await, StatusCode::OK).await;
    assert!(installed["download_url"].is_string());
}

async fn a_dispute_suspends_the_install_until_it_is_won(backend: Backend) {
    let Market {
        stripe, app, buyer, ..
    } = market(backend, 999).await;
    let (purchase_id, charge, _) = buy(&app, &stripe, &buyer, "focus-timer").await;

    let opened = stripe.dispute(&charge, "warning_needs_response");
    deliver(&app, &stripe, "charge.dispute.created", &opened).await;
    assert_eq!(purchase_status(&app, &purchase_id).await, "disputed");
    let seen = detail(&app, &buyer, "focus-timer").await;
    assert_eq!(
        (seen["installed"].clone(), seen["install_count"].clone()),
        (json!(false), json!(0))
    );
    error_body(
        install(&app, &buyer, "focus-timer").await,
        StatusCode::FORBIDDEN,
        "purchase_disputed",
    )
    .await;
    // The same delivery again changes nothing.
    deliver(
        &app,
        &stripe,
        "charge.dispute.updated",
        &stripe.dispute(&charge, "under_review"),
    )
    .await;
    assert_eq!(purchase_status(&app, &purchase_id).await, "disputed");

    let won = stripe.dispute(&charge, "won");
    deliver(&app, &stripe, "charge.dispute.closed", &won).await;
    assert_eq!(purchase_status(&app, &purchase_id).await, "paid");
    let seen = detail(&app, &buyer, "focus-timer").await;
    assert_eq!(
        (seen["installed"].clone(), seen["install_count"].clone()),
        (json!(true), json!(1))
    );
    assert!(reversals(&stripe).is_empty());
    json_of(install(&app, &buyer, "focus-timer").await, StatusCode::OK).await;
}

async fn a_refund_before_the_completion_is_remembered(backend: Backend) {
    let Market {
        stripe, app, buyer, ..
    } = market(backend, 499).await;
    let pending = json_of(
        install(&app, &buyer, "focus-timer").await,
        StatusCode::ACCEPTED,
    )
    .await;
    let purchase_id = pending["purchase_id"].as_str().unwrap().to_owned();
    // Paid, and refunded at once, and the refund's event arrives first.
    let (session, charge) = stripe.complete_payment(pending["checkout_url"].as_str().unwrap());
    deliver(
        &app,
        &stripe,
        "charge.refunded",
        &stripe.refund(&charge, None),
    )
    .await;
    assert_eq!(purchase_status(&app, &purchase_id).await, "refunded");
    // The completion then refuses: no install, no sale, no transfer.
    deliver(&app, &stripe, "checkout.session.completed", &session).await;
    assert_eq!(purchase_status(&app, &purchase_id).await, "refunded");
    assert_eq!(
        detail(&app, &buyer, "focus-timer").await["installed"],
        false
    );
    let sales: i64 =
        adiuva_db::sqlx::query_scalar("SELECT COUNT(*) FROM revenue_events WHERE purchase_id = $1")
            .bind(&purchase_id)
            .fetch_one(app.database.db.pool())
            .await
            .unwrap();
    assert_eq!(sales, 0);
    assert_eq!(transfers_made(&stripe), 0);
}

async fn a_transfer_retried_after_a_lost_commit_and_a_day_pays_once(backend: Backend) {
    let Market {
        stripe, app, buyer, ..
    } = market(backend, 499).await;

    let pending = json_of(
        install(&app, &buyer, "focus-timer").await,
        StatusCode::ACCEPTED,
    )
    .await;
    let purchase_id = pending["purchase_id"].as_str().unwrap().to_owned();
    let (session, charge) = stripe.complete_payment(pending["checkout_url"].as_str().unwrap());
    let event = stripe.event("checkout.session.completed", &session);
    let purchases: adiuva_marketplace::Purchases = app.context.get().unwrap();
    assert_eq!(
        FakeStripe::deliver(&app, &event).await.status(),
        StatusCode::OK
    );
    assert_eq!(transfers_made(&stripe), 1);
    let (_, _, share, _, transfer, _) = revenue_of(&app, &purchase_id).await;
    assert_eq!(share, 349);
    let transfer = transfer.unwrap();

    // Our record of the transfer is lost (the commit after Stripe's answer failed) and a day
    // passes: Stripe has forgotten the idempotency key.
    adiuva_db::sqlx::query(
        "UPDATE revenue_events SET transfer_status = 'pending', stripe_transfer_id = NULL \
         WHERE purchase_id = $1",
    )
    .bind(&purchase_id)
    .execute(app.database.db.pool())
    .await
    .unwrap();
    stripe.forget_idempotency_keys();
    // The janitor's retry finds the transfer made before and pays nothing twice.
    assert_eq!(purchases.settle_pending().await.unwrap(), (1, 0));
    assert_eq!(transfers_made(&stripe), 1);
    let (_, _, _, _, found, _) = revenue_of(&app, &purchase_id).await;
    assert_eq!(found.as_deref(), Some(transfer.as_str()));
    // A late redelivery of the payment (another event id) completes nothing again.
    let late = stripe.event("checkout.session.async_payment_succeeded", &session);
    assert_eq!(
        FakeStripe::deliver(&app, &late).await.status(),
        StatusCode::OK
    );
    assert_eq!(transfers_made(&stripe), 1);
    assert_eq!(purchases.settle_pending().await.unwrap(), (0, 0));

    // A partial refund takes back the share of what was refunded, once, and the rest later.
    deliver(
        &app,
        &stripe,
        "charge.refunded",
        &stripe.refund(&charge, Some(100)),
    )
    .await;
    assert_eq!(detail(&app, &buyer, "focus-timer").await["installed"], true);
    // 349 of 499; the buyer still pays 399, of which the developer keeps 279.
    assert_eq!(
        reversals(&stripe),
        vec![(
            format!("/v1/transfers/{transfer}/reversals"),
            "70".to_owned(),
            format!("reversal:{purchase_id}:70"),
        )]
    );
    stripe.forget_idempotency_keys();
    adiuva_db::sqlx::query(
        "UPDATE revenue_events SET reversal_made_cents = 0 WHERE purchase_id = $1",
    )
    .bind(&purchase_id)
    .execute(app.database.db.pool())
    .await
    .unwrap();
    purchases.settle_pending().await.unwrap();
    assert_eq!(
        reversals(&stripe).len(),
        1,
        "a lost record of a reversal reverses nothing twice"
    );
    deliver(
        &app,
        &stripe,
        "charge.refunded",
        &stripe.refund(&charge, None),
    )
    .await;
    let reversed = reversals(&stripe);
    assert_eq!(reversed.len(), 2);
    assert_eq!(reversed[1].1, "279");
    assert_eq!(stripe.transfer(&transfer)["amount_reversed"], 349);
    assert_eq!(
        detail(&app, &buyer, "focus-timer").await["installed"],
        false
    );
}

async fn a_new_checkout_expires_the_superseded_session(backend: Backend) {
    let Market {
        stripe, app, buyer, ..
    } = market(backend, 499).await;
    let first = json_of(
        install(&app, &buyer, "focus-timer").await,
        StatusCode::ACCEPTED,
    )
    .await;
    // Handed out again while it works.
    let again = json_of(
        install(&app, &buyer, "focus-timer").await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(again["checkout_url"], first["checkout_url"]);
    // About to end: a new session, and the old one can no longer be paid.
    adiuva_db::sqlx::query("UPDATE plugin_purchases SET checkout_expires_at = 0")
        .execute(app.database.db.pool())
        .await
        .unwrap();
    let second = json_of(
        install(&app, &buyer, "focus-timer").await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_ne!(second["checkout_url"], first["checkout_url"]);
    assert_eq!(second["purchase_id"], first["purchase_id"]);
    let old_id = first["checkout_url"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(stripe.session(&old_id)["status"], "expired");
    assert_eq!(
        stripe
            .requests_to("POST", &format!("/v1/checkout/sessions/{old_id}/expire"))
            .len(),
        1
    );
}

async fn the_webhook_trusts_the_customer_on_file_not_metadata(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = stripe_app(backend, &stripe).await;
    let victim = app.register_user().await;
    let attacker = app.register_user().await;
    let checkout = json_of(
        send(
            &app,
            Method::POST,
            "/api/v1/billing/checkout",
            &attacker,
            Some(json!({"tier": "power"})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let (_, subscription_id) = stripe.complete_checkout(checkout["checkout_url"].as_str().unwrap());
    // The attacker's subscription, with the victim named in its metadata.
    let mut subscription = stripe.subscription(&subscription_id);
    subscription["metadata"] = json!({"user_id": victim.id, "tier": "power"});
    deliver(
        &app,
        &stripe,
        "customer.subscription.updated",
        &subscription,
    )
    .await;
    let tier = |user: &TestUser| {
        let token = user.tokens.access_token.clone();
        let app = &app;
        async move {
            let me: Value = app.me(&token).await.json().await.unwrap();
            me["tier"].as_str().unwrap().to_owned()
        }
    };
    assert_eq!(tier(&victim).await, "free");
    assert_eq!(tier(&attacker).await, "power");

    // A price that is not ours grants nothing, whatever the metadata says.
    let stranger = app.register_user().await;
    let checkout = json_of(
        send(
            &app,
            Method::POST,
            "/api/v1/billing/checkout",
            &stranger,
            Some(json!({"tier": "pro"})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let (_, subscription_id) = stripe.complete_checkout(checkout["checkout_url"].as_str().unwrap());
    stripe.set_price(&subscription_id, "price_someone_else", "team");
    let subscription = stripe.subscription(&subscription_id);
    deliver(
        &app,
        &stripe,
        "customer.subscription.updated",
        &subscription,
    )
    .await;
    assert_eq!(tier(&stranger).await, "free");
}
