//! Billing against the fake Stripe server (`crate::stripe`), on both pairings: checkout for each
//! paid tier, every webhook event and its effect on the tier, duplicates, deliveries out of
//! order, signatures, cancellation, the portal, stub mode, and Stripe being down.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, TestUser, error_body, spawn_app, spawn_app_with};
use crate::stripe::{FakeStripe, WEBHOOK_SECRET, fixture, now_secs, signature};

backend_tests!(
    checkout_of_each_paid_tier_sends_what_stripe_needs,
    checkout_refuses_free_unknown_and_current_tiers,
    every_event_moves_the_tier_the_way_stripe_has_it,
    a_duplicate_delivery_changes_nothing,
    deliveries_out_of_order_end_in_the_current_state,
    bad_signatures_change_nothing,
    unknown_and_unreadable_events_are_acknowledged,
    cancelling_at_period_end_keeps_the_tier_and_now_drops_it,
    the_portal_opens_for_the_user_s_customer,
    a_new_tier_replaces_the_old_subscription,
    stripe_down_is_503_and_changes_nothing,
    stub_mode_activates_a_tier_without_stripe,
    after_a_downgrade_data_stays_readable_and_deletable,
);

pub(crate) async fn billing_app(backend: Backend, stripe: &FakeStripe) -> TestApp {
    let settings = stripe.settings();
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    spawn_app_with(backend, &settings).await
}

pub(crate) async fn tier(app: &TestApp, user: &TestUser) -> String {
    let me: Value = app
        .me(&user.tokens.access_token)
        .await
        .json()
        .await
        .unwrap();
    me["tier"].as_str().unwrap().to_owned()
}

async fn checkout(app: &TestApp, user: &TestUser, tier: &str) -> reqwest::Response {
    app.request(Method::POST, "/api/v1/billing/checkout")
        .bearer_auth(&user.tokens.access_token)
        .json(&json!({"tier": tier}))
        .send()
        .await
        .unwrap()
}

async fn checkout_url(app: &TestApp, user: &TestUser, tier: &str) -> String {
    let response = checkout(app, user, tier).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["checkout_url"].as_str().unwrap().to_owned()
}

pub(crate) async fn subscription(app: &TestApp, user: &TestUser) -> Value {
    app.get_authed("/api/v1/billing/subscription", &user.tokens.access_token)
        .await
        .json()
        .await
        .unwrap()
}

/// A user who paid for `tier`: checkout, payment, `checkout.session.completed` delivered.
pub(crate) async fn subscribed(
    app: &TestApp,
    stripe: &FakeStripe,
    tier: &str,
) -> (TestUser, String) {
    let user = app.register_user().await;
    let url = checkout_url(app, &user, tier).await;
    let (session, subscription_id) = stripe.complete_checkout(&url);
    let delivered =
        FakeStripe::deliver(app, &stripe.event("checkout.session.completed", &session)).await;
    assert_eq!(delivered.status(), StatusCode::OK);
    (user, subscription_id)
}

async fn deliver_about(app: &TestApp, stripe: &FakeStripe, kind: &str, subscription_id: &str) {
    let object = stripe.subscription(subscription_id);
    let response = FakeStripe::deliver(app, &stripe.event(kind, &object)).await;
    assert_eq!(response.status(), StatusCode::OK, "{kind}");
}

async fn checkout_of_each_paid_tier_sends_what_stripe_needs(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let user = app.register_user().await;
    // The Team tier is bought per seat for a team: `team_billing`.
    for (tier, price) in [
        ("pro", "price_pro_monthly"),
        ("power", "price_power_monthly"),
    ] {
        let url = checkout_url(&app, &user, tier).await;
        assert!(
            url.starts_with(&format!("{}/c/pay/cs_test_", stripe.base_url)),
            "{url}"
        );
        let session = stripe
            .requests_to("POST", "/v1/checkout/sessions")
            .pop()
            .unwrap();
        assert_eq!(session.field("mode"), Some("subscription"));
        assert_eq!(session.field("line_items[0][price]"), Some(price));
        assert_eq!(session.field("line_items[0][quantity]"), Some("1"));
        assert_eq!(session.field("client_reference_id"), Some(user.id.as_str()));
        assert_eq!(
            session.field("subscription_data[metadata][user_id]"),
            Some(user.id.as_str())
        );
        assert_eq!(
            session.field("subscription_data[metadata][tier]"),
            Some(tier)
        );
        assert!(session.field("success_url").is_some() && session.field("cancel_url").is_some());
        let key = session.idempotency_key.unwrap();
        assert!(key.starts_with(&format!("checkout:{}:", user.id)), "{key}");
    }
    // One customer for the user, created once with the user's id as its key and email.
    let customers = stripe.requests_to("POST", "/v1/customers");
    assert_eq!(customers.len(), 1);
    assert_eq!(customers[0].field("email"), Some(user.email.as_str()));
    assert_eq!(
        customers[0].field("metadata[user_id]"),
        Some(user.id.as_str())
    );
    assert_eq!(
        customers[0].idempotency_key.as_deref(),
        Some(format!("customer:{}", user.id).as_str())
    );
    let sessions = stripe.requests_to("POST", "/v1/checkout/sessions");
    let customer = sessions[0].field("customer").unwrap();
    assert!(customer.starts_with("cus_"));
    assert!(
        sessions
            .iter()
            .all(|s| s.field("customer") == Some(customer))
    );
    // Two checkouts, two keys: each call is its own attempt.
    let keys: std::collections::BTreeSet<_> =
        sessions.iter().map(|s| s.idempotency_key.clone()).collect();
    assert_eq!(keys.len(), 2);
    // Nothing is paid yet.
    assert_eq!(tier(&app, &user).await, "free");
}

async fn checkout_refuses_free_unknown_and_current_tiers(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let user = app.register_user().await;
    for bad in ["free", "gold", ""] {
        error_body(
            checkout(&app, &user, bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_tier",
        )
        .await;
    }
    app.set_subscription(&user.id, "pro", "active").await;
    error_body(
        checkout(&app, &user, "pro").await,
        StatusCode::CONFLICT,
        "already_subscribed",
    )
    .await;
    assert!(stripe.requests().is_empty(), "nothing reached Stripe");
}

async fn every_event_moves_the_tier_the_way_stripe_has_it(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let (user, id) = subscribed(&app, &stripe, "power").await;
    assert_eq!(tier(&app, &user).await, "power");
    let view = subscription(&app, &user).await;
    assert_eq!(view["status"], "active");
    assert!(view["current_period_end"].as_i64().unwrap() > now_secs() * 1000);

    deliver_about(&app, &stripe, "customer.subscription.created", &id).await;
    assert_eq!(tier(&app, &user).await, "power");

    // A payment failed: Stripe retries, the tier stays meanwhile.
    stripe.set_status(&id, "past_due");
    let mut invoice = fixture("invoice");
    invoice["subscription"] = json!(id);
    invoice["customer"] = stripe.subscription(&id)["customer"].clone();
    let failed = stripe.event("invoice.payment_failed", &invoice);
    assert_eq!(
        FakeStripe::deliver(&app, &failed).await.status(),
        StatusCode::OK
    );
    assert_eq!(tier(&app, &user).await, "power");
    assert_eq!(subscription(&app, &user).await["status"], "past_due");

    // The retries ran out.
    stripe.set_status(&id, "unpaid");
    deliver_about(&app, &stripe, "customer.subscription.updated", &id).await;
    assert_eq!(tier(&app, &user).await, "free");

    // The user paid after all (the invoice names the subscription under `parent`, as newer
    // API versions do).
    stripe.set_status(&id, "active");
    let mut paid = fixture("invoice");
    paid["subscription"] = Value::Null;
    paid["customer"] = stripe.subscription(&id)["customer"].clone();
    paid["parent"] = json!({"subscription_details": {"subscription": id, "metadata": {}}});
    assert_eq!(
        FakeStripe::deliver(&app, &stripe.event("invoice.paid", &paid))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(tier(&app, &user).await, "power");

    stripe.set_status(&id, "canceled");
    deliver_about(&app, &stripe, "customer.subscription.deleted", &id).await;
    assert_eq!(tier(&app, &user).await, "free");
    assert_eq!(subscription(&app, &user).await["tier"], "free");
}

async fn a_duplicate_delivery_changes_nothing(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let (user, id) = subscribed(&app, &stripe, "pro").await;
    let event = stripe.event("customer.subscription.updated", &stripe.subscription(&id));
    assert_eq!(
        FakeStripe::deliver(&app, &event).await.status(),
        StatusCode::OK
    );
    // Stripe's state moves on without an event; the same delivery again must not apply it.
    stripe.set_status(&id, "canceled");
    assert_eq!(
        FakeStripe::deliver(&app, &event).await.status(),
        StatusCode::OK
    );
    assert_eq!(tier(&app, &user).await, "pro");
}

async fn deliveries_out_of_order_end_in_the_current_state(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let (user, id) = subscribed(&app, &stripe, "power").await;
    // An `updated` event made while the subscription was past due...
    let mut older = stripe.subscription(&id);
    older["status"] = json!("past_due");
    let updated = stripe.event("customer.subscription.updated", &older);
    // ...then it was deleted, and Stripe delivers `deleted` first.
    stripe.set_status(&id, "canceled");
    deliver_about(&app, &stripe, "customer.subscription.deleted", &id).await;
    assert_eq!(tier(&app, &user).await, "free");
    assert_eq!(
        FakeStripe::deliver(&app, &updated).await.status(),
        StatusCode::OK
    );
    assert_eq!(tier(&app, &user).await, "free");
    assert_eq!(subscription(&app, &user).await["status"], "canceled");

    // An older state arriving after a newer one: the newer one stays.
    let (other, id) = subscribed(&app, &stripe, "pro").await;
    let mut stale = stripe.subscription(&id);
    stale["status"] = json!("unpaid");
    let event = stripe.event("customer.subscription.updated", &stale);
    assert_eq!(
        FakeStripe::deliver(&app, &event).await.status(),
        StatusCode::OK
    );
    assert_eq!(tier(&app, &other).await, "pro");
}

async fn bad_signatures_change_nothing(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let user = app.register_user().await;
    let url = checkout_url(&app, &user, "pro").await;
    let (session, _) = stripe.complete_checkout(&url);
    let payload = stripe
        .event("checkout.session.completed", &session)
        .to_string();
    let now = now_secs();
    let tampered = payload.replace("\"livemode\":false", "\"livemode\":true");
    assert_ne!(tampered, payload);
    for (case, body, header) in [
        ("missing", payload.clone(), None),
        (
            "wrong secret",
            payload.clone(),
            Some(signature("whsec_other", &payload, now)),
        ),
        (
            "stale",
            payload.clone(),
            Some(signature(WEBHOOK_SECRET, &payload, now - 301)),
        ),
        (
            "future",
            payload.clone(),
            Some(signature(WEBHOOK_SECRET, &payload, now + 301)),
        ),
        (
            "tampered",
            tampered,
            Some(signature(WEBHOOK_SECRET, &payload, now)),
        ),
        ("garbage", payload.clone(), Some("t=x,v1=zz".to_owned())),
    ] {
        let response = FakeStripe::deliver_raw(&app, &body, header).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{case}");
        error_body(response, StatusCode::BAD_REQUEST, "invalid_signature").await;
    }
    assert_eq!(tier(&app, &user).await, "free");
    // The same event correctly signed is applied: nothing above was recorded as seen.
    let response = FakeStripe::deliver_raw(
        &app,
        &payload,
        Some(signature(WEBHOOK_SECRET, &payload, now)),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(tier(&app, &user).await, "pro");
}

async fn unknown_and_unreadable_events_are_acknowledged(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let user = app.register_user().await;
    // A type we do not handle.
    let other = stripe.event("plan.created", &json!({"id": "plan_1", "object": "plan"}));
    let response = FakeStripe::deliver(&app, &other).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"ok": true}));
    // Signed but not JSON, or JSON without what an event has: logged and acknowledged.
    for payload in ["not json at all", r#"{"id": 42}"#] {
        let signed = signature(WEBHOOK_SECRET, payload, now_secs());
        let response = FakeStripe::deliver_raw(&app, payload, Some(signed)).await;
        assert_eq!(response.status(), StatusCode::OK, "{payload}");
    }
    // A subscription of nobody we know (another platform's customer): acknowledged.
    let mut foreign = fixture("subscription");
    foreign["metadata"] = json!({"user_id": uuid::Uuid::new_v4().to_string()});
    let event = stripe.event("customer.subscription.updated", &foreign);
    assert_eq!(
        FakeStripe::deliver(&app, &event).await.status(),
        StatusCode::OK
    );
    assert_eq!(tier(&app, &user).await, "free");
}

async fn cancelling_at_period_end_keeps_the_tier_and_now_drops_it(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let (user, id) = subscribed(&app, &stripe, "power").await;
    let cancel = |query: &'static str| {
        app.request(
            Method::DELETE,
            &format!("/api/v1/billing/subscription{query}"),
        )
        .bearer_auth(&user.tokens.access_token)
        .send()
    };
    let at_end: Value = cancel("").await.unwrap().json().await.unwrap();
    assert_eq!(at_end["ok"], true);
    assert_eq!(at_end["tier"], "power");
    assert_eq!(at_end["cancel_at_period_end"], true);
    let update = stripe
        .requests_to("POST", &format!("/v1/subscriptions/{id}"))
        .pop()
        .unwrap();
    assert_eq!(update.field("cancel_at_period_end"), Some("true"));
    assert!(update.idempotency_key.is_some());
    assert_eq!(tier(&app, &user).await, "power");

    let now: Value = cancel("?at_period_end=false")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(now["tier"], "free");
    assert_eq!(now["status"], "canceled");
    assert_eq!(
        stripe
            .requests_to("DELETE", &format!("/v1/subscriptions/{id}"))
            .len(),
        1
    );
    assert_eq!(tier(&app, &user).await, "free");
    // Nothing left to cancel.
    error_body(
        cancel("").await.unwrap(),
        StatusCode::NOT_FOUND,
        "no_subscription",
    )
    .await;
}

async fn the_portal_opens_for_the_user_s_customer(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let newcomer = app.register_user().await;
    let portal = |user: &TestUser| {
        app.request(Method::POST, "/api/v1/billing/portal")
            .bearer_auth(&user.tokens.access_token)
            .send()
    };
    error_body(
        portal(&newcomer).await.unwrap(),
        StatusCode::NOT_FOUND,
        "no_billing_account",
    )
    .await;
    let (user, _) = subscribed(&app, &stripe, "pro").await;
    let body: Value = portal(&user).await.unwrap().json().await.unwrap();
    assert!(
        body["portal_url"]
            .as_str()
            .unwrap()
            .starts_with("https://billing.stripe.test/")
    );
    let request = stripe
        .requests_to("POST", "/v1/billing_portal/sessions")
        .pop()
        .unwrap();
    let customer = stripe.requests_to("POST", "/v1/checkout/sessions")[0]
        .field("customer")
        .unwrap()
        .to_owned();
    assert_eq!(request.field("customer"), Some(customer.as_str()));
    assert!(request.field("return_url").is_some() && request.idempotency_key.is_some());
}

async fn a_new_tier_replaces_the_old_subscription(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let (user, old) = subscribed(&app, &stripe, "pro").await;
    let url = checkout_url(&app, &user, "power").await;
    let (session, new) = stripe.complete_checkout(&url);
    assert_eq!(
        FakeStripe::deliver(&app, &stripe.event("checkout.session.completed", &session))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(tier(&app, &user).await, "power");
    // The old subscription ends at Stripe, so the user pays for one; its own late events do
    // not take the new tier away.
    assert_eq!(
        stripe
            .requests_to("DELETE", &format!("/v1/subscriptions/{old}"))
            .len(),
        1
    );
    deliver_about(&app, &stripe, "customer.subscription.deleted", &old).await;
    assert_eq!(tier(&app, &user).await, "power");
    assert_eq!(stripe.subscription(&new)["status"], "active");
}

async fn stripe_down_is_503_and_changes_nothing(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let user = app.register_user().await;
    stripe.set_down(true);
    let response = checkout(&app, &user, "pro").await;
    error_body(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "stripe_unavailable",
    )
    .await;
    let customer: Option<Option<String>> =
        adiuva_db::sqlx::query_scalar("SELECT stripe_customer_id FROM users WHERE id = $1")
            .bind(&user.id)
            .fetch_optional(app.database.db.pool())
            .await
            .unwrap();
    assert_eq!(customer, Some(None));
    // The same idempotency key on every attempt of the call.
    let attempts = stripe.requests_to("POST", "/v1/customers");
    assert_eq!(attempts.len(), 3);
    assert!(
        attempts
            .iter()
            .all(|a| a.idempotency_key == attempts[0].idempotency_key)
    );

    stripe.set_down(false);
    let url = checkout_url(&app, &user, "pro").await;
    let (session, _) = stripe.complete_checkout(&url);
    let event = stripe.event("checkout.session.completed", &session);
    stripe.set_down(true);
    let response = FakeStripe::deliver(&app, &event).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(tier(&app, &user).await, "free");
    // Stripe delivers again once it is back, and the event is applied then.
    stripe.set_down(false);
    assert_eq!(
        FakeStripe::deliver(&app, &event).await.status(),
        StatusCode::OK
    );
    assert_eq!(tier(&app, &user).await, "pro");
}

async fn stub_mode_activates_a_tier_without_stripe(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let url = checkout_url(&app, &user, "power").await;
    assert!(url.starts_with(&app.url("/api/v1/billing/stub/")), "{url}");
    // The page a browser opens: no bearer token.
    let client = crate::harness::http_client();
    let tampered = format!("{url}x");
    assert_eq!(
        client.get(&tampered).send().await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let page = client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("power"));
    assert_eq!(tier(&app, &user).await, "power");
    // One time only.
    let again = client.get(&url).send().await.unwrap();
    error_body(again, StatusCode::CONFLICT, "checkout_link_used").await;
    // Cancelling a stub subscription works without Stripe.
    let cancelled: Value = app
        .request(
            Method::DELETE,
            "/api/v1/billing/subscription?at_period_end=false",
        )
        .bearer_auth(&user.tokens.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["tier"], "free");
    // Unsigned events are never accepted, and there is no portal without Stripe.
    let event =
        json!({"id": "evt_1", "type": "customer.subscription.updated", "data": {"object": {}}});
    let response = FakeStripe::deliver_raw(&app, &event.to_string(), None).await;
    error_body(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "webhook_not_configured",
    )
    .await;
    let portal = app
        .request(Method::POST, "/api/v1/billing/portal")
        .bearer_auth(&user.tokens.access_token)
        .send()
        .await
        .unwrap();
    error_body(
        portal,
        StatusCode::SERVICE_UNAVAILABLE,
        "stripe_not_configured",
    )
    .await;
}

/// Production never serves stub pages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_serves_no_stub_page() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("ENV", "prod"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-prod"),
        ],
    )
    .await;
    let user = app.register_user().await;
    let url = checkout_url(&app, &user, "pro").await;
    let page = crate::harness::http_client()
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert_eq!(tier(&app, &user).await, "free");
}

/// The fake's objects are Stripe's own examples, and async-stripe's types (what the client
/// parses every answer into) read each of them.
#[test]
fn every_fixture_parses_into_async_stripe_types() {
    fn parses<T: miniserde::Deserialize>(name: &str) {
        let text = fixture(name).to_string();
        if let Err(err) = miniserde::json::from_str::<T>(&text) {
            panic!(
                "{name} does not parse into {}: {err}",
                std::any::type_name::<T>()
            );
        }
    }
    parses::<stripe_core::Customer>("customer");
    parses::<stripe_checkout::CheckoutSession>("checkout.session");
    parses::<stripe_billing::Subscription>("subscription");
    parses::<stripe_billing::BillingPortalSession>("billing_portal.session");
    parses::<stripe_billing::Invoice>("invoice");
    parses::<stripe_core::PaymentIntent>("payment_intent");
    parses::<stripe_core::Charge>("charge");
    parses::<stripe_core::Dispute>("dispute");
    parses::<stripe_connect::Transfer>("transfer");
    parses::<stripe_connect::TransferReversal>("transfer_reversal");
    parses::<stripe_connect::Account>("account");
    parses::<stripe_connect::AccountLink>("account_link");
}

async fn after_a_downgrade_data_stays_readable_and_deletable(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let (user, id) = subscribed(&app, &stripe, "pro").await;
    let token = &user.tokens.access_token;
    let first = app.record(token, "notes", b"written while pro").await;
    let second = app.record(token, "notes", b"also written while pro").await;
    // The subscription ends: free has no cloud storage.
    stripe.set_status(&id, "canceled");
    deliver_about(&app, &stripe, "customer.subscription.deleted", &id).await;
    assert_eq!(tier(&app, &user).await, "free");
    let read = app.get_record(token, &first).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.bytes().await.unwrap().as_ref(), b"written while pro");
    let listed: Value = app
        .get_authed("/api/v1/storage/records", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2);
    error_body(
        app.create_record(token, "notes", b"new").await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    assert_eq!(
        app.delete_record(token, &second).await.status(),
        StatusCode::OK
    );
}
