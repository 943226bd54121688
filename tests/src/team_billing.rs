//! The Team tier billed per seat (issue 21, item 2), against the fake Stripe server and in stub
//! mode, on both pairings: a team's checkout (the seats in the form sent, the Team price, the
//! team in the metadata), stub activation, seat changes up and down (proration, `seats_in_use`,
//! `team_inactive`), the webhook round trips that keep a team's status and seats in step (a
//! quantity changed in the Billing Portal included), personal and team subscriptions kept
//! apart, ending a team's subscription now, reconciliation, and migration 0014 turning a
//! personal Team subscription into a team of one.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::billing::{billing_app, subscribed, subscription};
use crate::harness::{Backend, TestApp, TestDatabase, TestUser, error_body, spawn_app};
use crate::stripe::{FakeStripe, fixture};

backend_tests!(
    a_team_checkout_bills_its_seats_on_the_team_price,
    stub_mode_activates_the_team_with_its_seats,
    seat_changes_go_to_stripe_prorated_and_respect_the_seats_held,
    webhooks_keep_the_team_s_status_and_seats_in_step,
    personal_and_team_subscriptions_stay_apart,
    a_team_s_subscription_ends_now_for_its_deletion,
    deleting_a_team_ends_its_subscription_and_purges_its_space,
    reconciliation_covers_team_subscriptions,
    migration_0014_makes_a_personal_team_subscription_a_team_of_one,
);

const TEAM_PRICE: &str = "price_team_monthly";

async fn checkout(app: &TestApp, user: &TestUser, body: Value) -> reqwest::Response {
    app.request(Method::POST, "/api/v1/billing/checkout")
        .bearer_auth(&user.tokens.access_token)
        .json(&body)
        .send()
        .await
        .unwrap()
}

/// A team checkout that must succeed: `(checkout_url, team_id)`.
async fn team_checkout(app: &TestApp, user: &TestUser, body: Value) -> (String, String) {
    let response = checkout(app, user, body).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    (
        body["checkout_url"].as_str().unwrap().to_owned(),
        body["team_id"].as_str().unwrap().to_owned(),
    )
}

async fn put_seats(
    app: &TestApp,
    user: &TestUser,
    team_id: &str,
    seats: Value,
) -> reqwest::Response {
    app.request(Method::PUT, &format!("/api/v1/teams/{team_id}/seats"))
        .bearer_auth(&user.tokens.access_token)
        .json(&json!({ "seats": seats }))
        .send()
        .await
        .unwrap()
}

/// The team as stored: `(status, seats, stripe subscription id)`.
async fn team(app: &TestApp, team_id: &str) -> (String, i64, Option<String>) {
    adiuva_db::sqlx::query_as(
        "SELECT status, seats, stripe_subscription_id FROM teams WHERE id = $1",
    )
    .bind(team_id)
    .fetch_one(app.database.db.pool())
    .await
    .unwrap()
}

/// The team's log as `(event_type, actor_id)`, in no particular order within one millisecond.
async fn events(app: &TestApp, team_id: &str, event_type: &str) -> Vec<Option<String>> {
    adiuva_db::sqlx::query_scalar(
        "SELECT actor_id FROM team_events WHERE team_id = $1 AND event_type = $2 ORDER BY at, id",
    )
    .bind(team_id)
    .bind(event_type)
    .fetch_all(app.database.db.pool())
    .await
    .unwrap()
}

async fn add_member(app: &TestApp, team_id: &str, user: &TestUser, role: &str) {
    let mut query = adiuva_db::sqlx::query(
        "INSERT INTO team_members (team_id, user_id, role, joined_at) VALUES ($1, $2, $3, 0)",
    );
    query = query.bind(team_id).bind(&user.id).bind(role);
    query.execute(app.database.db.pool()).await.unwrap();
}

/// An invitation expiring at `expires_at` (ms), `accepted`/`revoked` or pending.
async fn invite(app: &TestApp, team_id: &str, expires_at: i64, state: &str) {
    let now = adiuva_db::now_ms();
    let (accepted, revoked) = match state {
        "accepted" => (Some(now), None),
        "revoked" => (None, Some(now)),
        _ => (None, None),
    };
    adiuva_db::sqlx::query(
        "INSERT INTO team_invitations (id, team_id, email, role, token_hash, created_at, \
         expires_at, accepted_at, revoked_at) VALUES ($1, $2, $3, 'member', $4, $5, $6, $7, $8)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(team_id)
    .bind(format!(
        "invited-{}@example.com",
        uuid::Uuid::new_v4().simple()
    ))
    .bind(uuid::Uuid::new_v4().simple().to_string())
    .bind(now)
    .bind(expires_at)
    .bind(accepted)
    .bind(revoked)
    .execute(app.database.db.pool())
    .await
    .unwrap();
}

async fn personal_rows(app: &TestApp, user: &TestUser) -> i64 {
    adiuva_db::sqlx::query_scalar("SELECT COUNT(*) FROM subscriptions WHERE user_id = $1")
        .bind(&user.id)
        .fetch_one(app.database.db.pool())
        .await
        .unwrap()
}

async fn deliver_about(app: &TestApp, stripe: &FakeStripe, kind: &str, subscription_id: &str) {
    let object = stripe.subscription(subscription_id);
    let response = FakeStripe::deliver(app, &stripe.event(kind, &object)).await;
    assert_eq!(response.status(), StatusCode::OK, "{kind}");
}

/// An owner whose new team paid for `seats`: checkout, payment, `checkout.session.completed`
/// delivered. Returns the owner, the team and its subscription.
async fn paid_team(app: &TestApp, stripe: &FakeStripe, seats: i64) -> (TestUser, String, String) {
    let owner = app.register_user().await;
    let (url, team_id) = team_checkout(app, &owner, json!({"tier": "team", "seats": seats})).await;
    let (session, subscription_id) = stripe.complete_checkout(&url);
    let delivered =
        FakeStripe::deliver(app, &stripe.event("checkout.session.completed", &session)).await;
    assert_eq!(delivered.status(), StatusCode::OK);
    assert_eq!(
        team(app, &team_id).await,
        ("active".to_owned(), seats, Some(subscription_id.clone()))
    );
    (owner, team_id, subscription_id)
}

async fn a_team_checkout_bills_its_seats_on_the_team_price(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let owner = app.register_user().await;

    // Without a team: one is made for the buyer, its owner, and one seat is billed.
    let (_, team_id) = team_checkout(&app, &owner, json!({"tier": "team"})).await;
    let session = stripe
        .requests_to("POST", "/v1/checkout/sessions")
        .pop()
        .unwrap();
    assert_eq!(session.field("mode"), Some("subscription"));
    assert_eq!(session.field("line_items[0][price]"), Some(TEAM_PRICE));
    assert_eq!(session.field("line_items[0][quantity]"), Some("1"));
    assert_eq!(
        session.field("client_reference_id"),
        Some(owner.id.as_str())
    );
    for prefix in ["subscription_data[metadata]", "metadata"] {
        assert_eq!(
            session.field(&format!("{prefix}[team_id]")),
            Some(team_id.as_str())
        );
        assert_eq!(
            session.field(&format!("{prefix}[user_id]")),
            Some(owner.id.as_str())
        );
    }
    let key = session.idempotency_key.clone().unwrap();
    assert!(
        key.starts_with(&format!("team-checkout:{team_id}:")),
        "{key}"
    );
    let customer = session.field("customer").unwrap().to_owned();
    assert!(customer.starts_with("cus_"));
    let (name, role): (String, String) = adiuva_db::sqlx::query_as(
        "SELECT t.name, m.role FROM teams t JOIN team_members m ON m.team_id = t.id \
         WHERE t.id = $1 AND m.user_id = $2",
    )
    .bind(&team_id)
    .bind(&owner.id)
    .fetch_one(app.database.db.pool())
    .await
    .unwrap();
    let local = owner.email.split('@').next().unwrap();
    assert_eq!(
        (name, role),
        (format!("{local}'s team"), "owner".to_owned())
    );
    assert_eq!(team(&app, &team_id).await, ("none".to_owned(), 0, None));

    // The team named, with its seats: `quantity` is the seats, the customer the owner's.
    let (url, same) = team_checkout(
        &app,
        &owner,
        json!({"tier": "team", "team_id": team_id, "seats": 7}),
    )
    .await;
    assert_eq!(same, team_id);
    let session = stripe
        .requests_to("POST", "/v1/checkout/sessions")
        .pop()
        .unwrap();
    assert_eq!(session.field("line_items[0][quantity]"), Some("7"));
    assert_eq!(session.field("line_items[0][price]"), Some(TEAM_PRICE));
    assert_eq!(session.field("customer"), Some(customer.as_str()));

    // Refused before anything reaches Stripe.
    let sent = stripe.requests().len();
    for seats in [json!(0), json!(1001), json!(-3)] {
        error_body(
            checkout(
                &app,
                &owner,
                json!({"tier": "team", "team_id": team_id, "seats": seats}),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_seats",
        )
        .await;
    }
    for body in [
        json!({"tier": "pro", "seats": 2}),
        json!({"tier": "power", "team_id": team_id}),
    ] {
        error_body(
            checkout(&app, &owner, body).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "team_fields_without_team_tier",
        )
        .await;
    }
    let outsider = app.register_user().await;
    let member = app.register_user().await;
    add_member(&app, &team_id, &member, "admin").await;
    for (user, team, status, code) in [
        (
            &outsider,
            team_id.as_str(),
            StatusCode::NOT_FOUND,
            "team_not_found",
        ),
        (
            &owner,
            "no-such-team",
            StatusCode::NOT_FOUND,
            "team_not_found",
        ),
        (
            &member,
            team_id.as_str(),
            StatusCode::FORBIDDEN,
            "team_owner_required",
        ),
    ] {
        let body = json!({"tier": "team", "team_id": team, "seats": 2});
        error_body(checkout(&app, user, body).await, status, code).await;
    }
    assert_eq!(stripe.requests().len(), sent, "nothing reached Stripe");

    // Paid: the team is active with its seats, logged; the owner's own subscription untouched.
    let (session, subscription_id) = stripe.complete_checkout(&url);
    let delivered =
        FakeStripe::deliver(&app, &stripe.event("checkout.session.completed", &session)).await;
    assert_eq!(delivered.status(), StatusCode::OK);
    assert_eq!(
        team(&app, &team_id).await,
        ("active".to_owned(), 7, Some(subscription_id))
    );
    assert_eq!(events(&app, &team_id, "subscription_changed").await, [None]);
    assert_eq!(events(&app, &team_id, "seats_changed").await, [None]);
    assert_eq!(subscription(&app, &owner).await["tier"], "free");
    assert_eq!(personal_rows(&app, &owner).await, 0);

    // A team with a live subscription changes its seats instead.
    error_body(
        checkout(
            &app,
            &owner,
            json!({"tier": "team", "team_id": team_id, "seats": 3}),
        )
        .await,
        StatusCode::CONFLICT,
        "already_subscribed",
    )
    .await;
}

async fn stub_mode_activates_the_team_with_its_seats(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register_user().await;
    let (url, team_id) = team_checkout(&app, &owner, json!({"tier": "team", "seats": 3})).await;
    assert!(url.starts_with(&app.url("/api/v1/billing/stub/")), "{url}");
    assert_eq!(team(&app, &team_id).await, ("none".to_owned(), 0, None));
    let client = crate::harness::http_client();
    let page = client.get(&url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("<b>3</b> seats"));
    assert_eq!(team(&app, &team_id).await, ("active".to_owned(), 3, None));
    assert_eq!(
        events(&app, &team_id, "subscription_changed").await,
        [Some(owner.id.clone())]
    );
    error_body(
        client.get(&url).send().await.unwrap(),
        StatusCode::CONFLICT,
        "checkout_link_used",
    )
    .await;

    // Seats change at once without Stripe.
    let grown: Value = put_seats(&app, &owner, &team_id, json!(5))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(grown["id"], team_id.as_str());
    assert_eq!(grown["role"], "owner");
    assert_eq!(grown["seats"], 5);
    assert_eq!(grown["seats_used"], 1);
    assert_eq!(grown["status"], "active");
    assert!(grown["name"].as_str().is_some_and(|name| !name.is_empty()));
    assert!(grown["created_at"].as_i64().unwrap() > 0);
    // Members and pending invitations hold seats; used, revoked and expired ones do not.
    let member = app.register_user().await;
    add_member(&app, &team_id, &member, "member").await;
    let later = adiuva_db::now_ms() + 86_400_000;
    invite(&app, &team_id, later, "pending").await;
    invite(&app, &team_id, later, "accepted").await;
    invite(&app, &team_id, later, "revoked").await;
    invite(&app, &team_id, adiuva_db::now_ms() - 1, "pending").await;
    error_body(
        put_seats(&app, &owner, &team_id, json!(2)).await,
        StatusCode::CONFLICT,
        "seats_in_use",
    )
    .await;
    let shrunk: Value = put_seats(&app, &owner, &team_id, json!(3))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (shrunk["seats"].as_i64(), shrunk["seats_used"].as_i64()),
        (Some(3), Some(3))
    );
    assert_eq!(team(&app, &team_id).await, ("active".to_owned(), 3, None));
    // Activation, 5, 3.
    assert_eq!(events(&app, &team_id, "seats_changed").await.len(), 3);
}

async fn seat_changes_go_to_stripe_prorated_and_respect_the_seats_held(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let (owner, team_id, subscription_id) = paid_team(&app, &stripe, 2).await;
    let item = stripe.subscription(&subscription_id)["items"]["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let updates = || stripe.requests_to("POST", &format!("/v1/subscriptions/{subscription_id}"));

    for seats in [5, 3] {
        let response = put_seats(&app, &owner, &team_id, json!(seats)).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["seats"], seats);
        assert_eq!(body["seats_used"], 1);
        assert_eq!(body["status"], "active");
        let update = updates().pop().unwrap();
        assert_eq!(update.field("items[0][id]"), Some(item.as_str()));
        assert_eq!(
            update.field("items[0][quantity]"),
            Some(seats.to_string().as_str())
        );
        assert_eq!(
            update.field("proration_behavior"),
            Some("create_prorations")
        );
        assert!(update.idempotency_key.is_some());
        assert_eq!(
            stripe.subscription(&subscription_id)["items"]["data"][0]["quantity"],
            seats
        );
        assert_eq!(team(&app, &team_id).await.1, seats);
    }
    let seat_log = events(&app, &team_id, "seats_changed").await;
    assert_eq!(
        seat_log,
        [None, Some(owner.id.clone()), Some(owner.id.clone())],
        "paid, then two changes by the owner"
    );

    // A member and a pending invitation besides the owner: 3 seats held.
    let member = app.register_user().await;
    add_member(&app, &team_id, &member, "member").await;
    invite(&app, &team_id, adiuva_db::now_ms() + 86_400_000, "pending").await;
    let sent = updates().len();
    let body = error_body(
        put_seats(&app, &owner, &team_id, json!(2)).await,
        StatusCode::CONFLICT,
        "seats_in_use",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains('3'), "{body}");
    let outsider = app.register_user().await;
    for (user, seats, status, code) in [
        (&outsider, json!(4), StatusCode::NOT_FOUND, "team_not_found"),
        (
            &member,
            json!(4),
            StatusCode::FORBIDDEN,
            "team_owner_required",
        ),
        (
            &owner,
            json!(0),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_seats",
        ),
        (
            &owner,
            json!(1001),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_seats",
        ),
    ] {
        error_body(put_seats(&app, user, &team_id, seats).await, status, code).await;
    }
    assert_eq!(updates().len(), sent, "nothing reached Stripe");
    assert_eq!(team(&app, &team_id).await.1, 3);

    // Stripe down: 503, nothing changed.
    stripe.set_down(true);
    error_body(
        put_seats(&app, &owner, &team_id, json!(4)).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "stripe_unavailable",
    )
    .await;
    stripe.set_down(false);
    assert_eq!(team(&app, &team_id).await.1, 3);
    assert_eq!(
        stripe.subscription(&subscription_id)["items"]["data"][0]["quantity"],
        3
    );

    // Only an active subscription changes seats: past due, or a team never paid, is 402.
    stripe.set_status(&subscription_id, "past_due");
    deliver_about(
        &app,
        &stripe,
        "customer.subscription.updated",
        &subscription_id,
    )
    .await;
    assert_eq!(team(&app, &team_id).await.0, "past_due");
    error_body(
        put_seats(&app, &owner, &team_id, json!(4)).await,
        StatusCode::PAYMENT_REQUIRED,
        "team_inactive",
    )
    .await;
    let (_, unpaid) = team_checkout(&app, &owner, json!({"tier": "team"})).await;
    error_body(
        put_seats(&app, &owner, &unpaid, json!(1)).await,
        StatusCode::PAYMENT_REQUIRED,
        "team_inactive",
    )
    .await;
}

async fn webhooks_keep_the_team_s_status_and_seats_in_step(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let (owner, team_id, old) = paid_team(&app, &stripe, 2).await;
    deliver_about(&app, &stripe, "customer.subscription.created", &old).await;
    assert_eq!(
        team(&app, &team_id).await,
        ("active".to_owned(), 2, Some(old.clone()))
    );
    assert_eq!(events(&app, &team_id, "seats_changed").await.len(), 1);

    // The owner adds seats in the Billing Portal: Stripe tells us.
    stripe.set_quantity(&old, 4);
    let portal_event = stripe.event("customer.subscription.updated", &stripe.subscription(&old));
    assert_eq!(
        FakeStripe::deliver(&app, &portal_event).await.status(),
        StatusCode::OK
    );
    assert_eq!(team(&app, &team_id).await.1, 4);
    assert_eq!(events(&app, &team_id, "seats_changed").await, [None, None]);
    // The same delivery again changes nothing, even though Stripe has moved on.
    stripe.set_quantity(&old, 6);
    assert_eq!(
        FakeStripe::deliver(&app, &portal_event).await.status(),
        StatusCode::OK
    );
    assert_eq!(team(&app, &team_id).await.1, 4);

    // A payment failed: past due (the invoice names the subscription), then paid again.
    stripe.set_status(&old, "past_due");
    let mut invoice = fixture("invoice");
    invoice["subscription"] = json!(old);
    invoice["customer"] = stripe.subscription(&old)["customer"].clone();
    let failed = stripe.event("invoice.payment_failed", &invoice);
    assert_eq!(
        FakeStripe::deliver(&app, &failed).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        team(&app, &team_id).await,
        ("past_due".to_owned(), 6, Some(old.clone()))
    );
    stripe.set_status(&old, "active");
    let mut paid = fixture("invoice");
    paid["subscription"] = Value::Null;
    paid["customer"] = invoice["customer"].clone();
    paid["parent"] = json!({"subscription_details": {"subscription": old, "metadata": {}}});
    let paid = stripe.event("invoice.paid", &paid);
    assert_eq!(
        FakeStripe::deliver(&app, &paid).await.status(),
        StatusCode::OK
    );
    assert_eq!(team(&app, &team_id).await.0, "active");
    assert_eq!(
        events(&app, &team_id, "subscription_changed").await.len(),
        3
    );

    // Out of order: an `updated` made while active arrives after `deleted`.
    let stale = stripe.event("customer.subscription.updated", &stripe.subscription(&old));
    stripe.set_status(&old, "canceled");
    deliver_about(&app, &stripe, "customer.subscription.deleted", &old).await;
    assert_eq!(team(&app, &team_id).await.0, "canceled");
    assert_eq!(
        FakeStripe::deliver(&app, &stale).await.status(),
        StatusCode::OK
    );
    assert_eq!(team(&app, &team_id).await.0, "canceled");

    // Bought again: a new subscription; the old one's late events leave it alone.
    let (url, _) = team_checkout(
        &app,
        &owner,
        json!({"tier": "team", "team_id": team_id, "seats": 3}),
    )
    .await;
    let (session, new) = stripe.complete_checkout(&url);
    let completed = stripe.event("checkout.session.completed", &session);
    assert_eq!(
        FakeStripe::deliver(&app, &completed).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        team(&app, &team_id).await,
        ("active".to_owned(), 3, Some(new.clone()))
    );
    deliver_about(&app, &stripe, "customer.subscription.deleted", &old).await;
    assert_eq!(
        team(&app, &team_id).await,
        ("active".to_owned(), 3, Some(new))
    );

    // None of it touched the owner's own subscription.
    assert_eq!(personal_rows(&app, &owner).await, 0);
    assert_eq!(subscription(&app, &owner).await["tier"], "free");
}

async fn personal_and_team_subscriptions_stay_apart(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let (owner, personal) = subscribed(&app, &stripe, "pro").await;
    // "Already on this tier" is the caller's own subscription: a team does not block it.
    error_body(
        checkout(&app, &owner, json!({"tier": "pro"})).await,
        StatusCode::CONFLICT,
        "already_subscribed",
    )
    .await;
    let (url, team_id) = team_checkout(&app, &owner, json!({"tier": "team", "seats": 2})).await;
    let (session, team_subscription) = stripe.complete_checkout(&url);
    let completed = stripe.event("checkout.session.completed", &session);
    assert_eq!(
        FakeStripe::deliver(&app, &completed).await.status(),
        StatusCode::OK
    );
    assert_eq!(team(&app, &team_id).await.0, "active");
    // The team's subscription did not replace the personal one (no cancellation at Stripe).
    assert!(
        stripe
            .requests_to("DELETE", &format!("/v1/subscriptions/{personal}"))
            .is_empty()
    );
    let own = subscription(&app, &owner).await;
    assert_eq!(
        (own["tier"].as_str(), own["status"].as_str()),
        (Some("pro"), Some("active"))
    );
    // A member with a seat buys a personal tier of their own.
    let member = app.register_user().await;
    add_member(&app, &team_id, &member, "member").await;
    assert_eq!(
        checkout(&app, &member, json!({"tier": "pro"}))
            .await
            .status(),
        StatusCode::OK
    );

    // Cancelling the personal subscription leaves the team's alone, at Stripe and here.
    let cancelled: Value = app
        .request(
            Method::DELETE,
            "/api/v1/billing/subscription?at_period_end=false",
        )
        .bearer_auth(&owner.tokens.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(cancelled["tier"], "free");
    assert!(
        stripe
            .requests_to("DELETE", &format!("/v1/subscriptions/{team_subscription}"))
            .is_empty()
    );
    assert!(
        stripe
            .requests_to("POST", &format!("/v1/subscriptions/{team_subscription}"))
            .is_empty()
    );
    assert_eq!(stripe.subscription(&team_subscription)["status"], "active");
    deliver_about(&app, &stripe, "customer.subscription.deleted", &personal).await;
    assert_eq!(
        team(&app, &team_id).await,
        ("active".to_owned(), 2, Some(team_subscription.clone()))
    );

    // And the team's events never write the owner's row.
    stripe.set_quantity(&team_subscription, 5);
    deliver_about(
        &app,
        &stripe,
        "customer.subscription.updated",
        &team_subscription,
    )
    .await;
    assert_eq!(team(&app, &team_id).await.1, 5);
    let own = subscription(&app, &owner).await;
    assert_eq!(
        (own["tier"].as_str(), own["status"].as_str()),
        (Some("free"), Some("canceled"))
    );
    let held: Option<String> = adiuva_db::sqlx::query_scalar(
        "SELECT stripe_subscription_id FROM subscriptions WHERE user_id = $1",
    )
    .bind(&owner.id)
    .fetch_one(app.database.db.pool())
    .await
    .unwrap();
    assert_eq!(held, Some(personal));
}

async fn a_team_s_subscription_ends_now_for_its_deletion(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let billing: adiuva_billing::Billing = app.context.get().unwrap();
    let (_, team_id, subscription_id) = paid_team(&app, &stripe, 2).await;
    assert!(
        billing
            .cancel_team_subscription_now(&team_id)
            .await
            .unwrap()
    );
    let cancels = stripe.requests_to("DELETE", &format!("/v1/subscriptions/{subscription_id}"));
    assert_eq!(cancels.len(), 1);
    assert_eq!(stripe.subscription(&subscription_id)["status"], "canceled");
    assert_eq!(team(&app, &team_id).await.0, "canceled");
    assert_eq!(
        events(&app, &team_id, "subscription_changed").await.len(),
        2
    );
    // Nothing live any more: nothing to end.
    assert!(
        !billing
            .cancel_team_subscription_now(&team_id)
            .await
            .unwrap()
    );
    assert!(
        !billing
            .cancel_team_subscription_now("no-such-team")
            .await
            .unwrap()
    );
    assert_eq!(
        stripe
            .requests_to("DELETE", &format!("/v1/subscriptions/{subscription_id}"))
            .len(),
        1
    );

    // Stub mode: marked canceled.
    let stub = spawn_app(backend).await;
    let billing: adiuva_billing::Billing = stub.context.get().unwrap();
    let owner = stub.register_user().await;
    let (url, team_id) = team_checkout(&stub, &owner, json!({"tier": "team", "seats": 2})).await;
    let page = crate::harness::http_client()
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(team(&stub, &team_id).await.0, "active");
    assert!(
        !billing
            .cancel_team_subscription_now(&team_id)
            .await
            .unwrap()
    );
    assert_eq!(team(&stub, &team_id).await.0, "canceled");
}

/// `DELETE /teams/{id}` end to end: an admin is refused before anything ends; the owner's
/// deletion ends the subscription at Stripe, purges the team space's rows and blobs, and leaves
/// another team's space alone.
async fn deleting_a_team_ends_its_subscription_and_purges_its_space(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let (owner, team_id, subscription_id) = paid_team(&app, &stripe, 2).await;
    let (other_owner, other_team, _) = paid_team(&app, &stripe, 1).await;
    let admin = app.register_user().await;
    adiuva_db::sqlx::query(
        "INSERT INTO team_members (team_id, user_id, role, joined_at) VALUES ($1, $2, 'admin', 0)",
    )
    .bind(&team_id)
    .bind(&admin.id)
    .execute(app.database.db.pool())
    .await
    .unwrap();
    crate::team_space::created(&app, &owner, &team_id, b"shared plan").await;
    crate::team_space::created(&app, &other_owner, &other_team, b"other plan").await;
    let delete = |user: &TestUser| {
        app.request(Method::DELETE, &format!("/api/v1/teams/{team_id}"))
            .bearer_auth(&user.tokens.access_token)
            .send()
    };
    let cancels = || stripe.requests_to("DELETE", &format!("/v1/subscriptions/{subscription_id}"));

    assert_eq!(
        delete(&admin).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert!(cancels().is_empty(), "an admin's attempt ends nothing");
    assert_eq!(
        crate::team_space::keys(&app, &format!("teams/{team_id}/"))
            .await
            .len(),
        1
    );

    assert_eq!(delete(&owner).await.unwrap().status(), StatusCode::OK);
    assert_eq!(cancels().len(), 1);
    assert_eq!(stripe.subscription(&subscription_id)["status"], "canceled");
    assert!(
        crate::team_space::keys(&app, &format!("teams/{team_id}/"))
            .await
            .is_empty()
    );
    for sql in [
        "SELECT COUNT(*) FROM teams WHERE id = $1",
        "SELECT COUNT(*) FROM team_records WHERE team_id = $1",
        "SELECT COUNT(*) FROM team_members WHERE team_id = $1",
    ] {
        let left: i64 = adiuva_db::sqlx::query_scalar(sql)
            .bind(&team_id)
            .fetch_one(app.database.db.pool())
            .await
            .unwrap();
        assert_eq!(left, 0, "{sql}");
    }
    assert_eq!(
        crate::team_space::keys(&app, &format!("teams/{other_team}/"))
            .await
            .len(),
        1,
        "another team's space stays"
    );
    assert_eq!(team(&app, &other_team).await.0, "active");
}

async fn reconciliation_covers_team_subscriptions(backend: Backend) {
    let stripe = FakeStripe::start().await;
    let app = billing_app(backend, &stripe).await;
    let (_, team_id, subscription_id) = paid_team(&app, &stripe, 2).await;
    let (_, steady, _) = paid_team(&app, &stripe, 4).await;
    // Changed at Stripe, and no webhook arrives.
    stripe.set_quantity(&subscription_id, 9);
    stripe.set_status(&subscription_id, "past_due");
    let run = || async {
        let line = local::cli::job(&app.context, "reconcile-billing")
            .await
            .unwrap();
        serde_json::from_str::<Value>(&line).unwrap()
    };
    assert_eq!(
        run().await,
        json!({"job": "reconcile-billing", "checked": 2, "fixed": 1, "failed": 0})
    );
    assert_eq!(
        team(&app, &team_id).await,
        ("past_due".to_owned(), 9, Some(subscription_id))
    );
    assert_eq!(team(&app, &steady).await.1, 4);
    let again = run().await;
    assert_eq!(
        (again["checked"].as_i64(), again["fixed"].as_i64()),
        (Some(2), Some(0))
    );
}

/// The migrations before 0014, in order, applied by hand; then 0014 itself.
fn migration_files(backend: Backend) -> Vec<(String, String)> {
    let folder = match backend {
        Backend::Postgres => "postgres",
        Backend::Sqlite => "sqlite",
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(folder);
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .filter(|(name, _)| name.as_str() <= "0014_team_billing.sql")
        .collect();
    files.sort();
    files
}

async fn migration_0014_makes_a_personal_team_subscription_a_team_of_one(backend: Backend) {
    let database = TestDatabase::create_unmigrated(backend).await;
    let pool = database.db.pool();
    let run = |sql: String| async move {
        adiuva_db::sqlx::raw_sql(adiuva_db::sqlx::AssertSqlSafe(sql))
            .execute(pool)
            .await
            .unwrap();
    };
    let mut files = migration_files(backend);
    let (last, team_billing) = files.pop().unwrap();
    assert_eq!(last, "0014_team_billing.sql");
    assert_eq!(files.last().unwrap().0, "0013_teams.sql");
    for (_, sql) in files {
        run(sql).await;
    }
    // Before 0014: a Stripe Team subscription, a past-due one, a stub one left canceled, and a
    // Pro subscription.
    for (user, email, tier, status, stripe_id) in [
        (
            "u-team",
            "ada@example.com",
            "team",
            "active",
            Some("sub_team"),
        ),
        (
            "u-late",
            "bob@example.com",
            "team",
            "past_due",
            Some("sub_late"),
        ),
        ("u-gone", "cy@example.com", "team", "canceled", None),
        ("u-pro", "dee@example.com", "pro", "active", Some("sub_pro")),
    ] {
        adiuva_db::sqlx::query(
            "INSERT INTO users (id, email, password_hash, created_at, updated_at) \
             VALUES ($1, $2, 'x', 1, 1)",
        )
        .bind(user)
        .bind(email)
        .execute(pool)
        .await
        .unwrap();
        adiuva_db::sqlx::query(
            "INSERT INTO subscriptions (id, user_id, stripe_subscription_id, tier, status, \
             current_period_end, cancel_at_period_end, stripe_created, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 9000, 1, 500, 100, 200)",
        )
        .bind(format!("s-{user}"))
        .bind(user)
        .bind(stripe_id)
        .bind(tier)
        .bind(status)
        .execute(pool)
        .await
        .unwrap();
    }
    run(team_billing).await;

    type TeamRow = (
        String,
        String,
        i64,
        String,
        Option<String>,
        Option<i64>,
        Option<i64>,
        i64,
        i64,
    );
    let teams: Vec<TeamRow> = adiuva_db::sqlx::query_as(
        "SELECT t.id, t.name, t.seats, t.status, t.stripe_subscription_id, t.stripe_created, \
         t.current_period_end, t.cancel_at_period_end, t.created_at FROM teams t ORDER BY t.name",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let expected = |id: &str, name: &str, status: &str, stripe: Option<&str>| -> TeamRow {
        (
            id.to_owned(),
            name.to_owned(),
            1,
            status.to_owned(),
            stripe.map(str::to_owned),
            Some(500),
            Some(9000),
            1,
            100,
        )
    };
    assert_eq!(
        teams,
        [
            expected("s-u-team", "ada's team", "active", Some("sub_team")),
            expected("s-u-late", "bob's team", "past_due", Some("sub_late")),
            expected("s-u-gone", "cy's team", "canceled", None),
        ]
    );
    let members: Vec<(String, String, String)> = adiuva_db::sqlx::query_as(
        "SELECT team_id, user_id, role FROM team_members ORDER BY team_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        members,
        [
            (
                "s-u-gone".to_owned(),
                "u-gone".to_owned(),
                "owner".to_owned()
            ),
            (
                "s-u-late".to_owned(),
                "u-late".to_owned(),
                "owner".to_owned()
            ),
            (
                "s-u-team".to_owned(),
                "u-team".to_owned(),
                "owner".to_owned()
            ),
        ]
    );
    // The personal Team rows are gone; the Pro one stays as it was.
    let left: Vec<(String, String, Option<String>)> = adiuva_db::sqlx::query_as(
        "SELECT user_id, tier, stripe_subscription_id FROM subscriptions ORDER BY user_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(
        left,
        [(
            "u-pro".to_owned(),
            "pro".to_owned(),
            Some("sub_pro".to_owned())
        )]
    );
    // One subscription pays for one team.
    let twice = adiuva_db::sqlx::query(
        "UPDATE teams SET stripe_subscription_id = 'sub_team' WHERE id = 's-u-late'",
    )
    .execute(pool)
    .await;
    assert!(twice.is_err(), "a subscription id held by two teams");
}
