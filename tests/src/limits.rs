//! The request pipeline's limits, on both pairings (memory and DynamoDB on moto): tier rate
//! limits, brute-force limits on password and token checks, and chats in flight.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, error_body, http_client_from, spawn_app_with};

backend_tests!(
    a_free_user_gets_twenty_requests_a_minute,
    a_pro_user_gets_sixty_and_an_upgrade_lifts_the_limit_at_once,
    concurrent_requests_take_exactly_what_is_left,
    public_routes_are_never_tier_limited,
    rate_limits_can_be_turned_off,
    failed_logins_lock_the_email_from_any_address,
    failures_from_one_address_lock_it_on_any_email,
    the_failure_window_moves_on,
    a_burst_of_concurrent_guesses_is_checked_only_up_to_the_cap,
    taken_emails_count_against_the_address,
    registrations_are_limited_per_address,
    bad_refresh_tokens_count_against_the_address,
    wrong_passwords_on_account_deletion_are_limited,
);

const ON: (&str, &str) = ("RATE_LIMIT_ENABLED", "true");

/// Waits until at least 5 s remain in the current minute, so that a test's requests fall into
/// one 60-second window of the rate limiter.
async fn fresh_window() {
    let into_minute = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
        % 60_000;
    if into_minute > 55_000 {
        tokio::time::sleep(Duration::from_millis(60_100 - into_minute as u64)).await;
    }
}

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// `r` of a `RateLimit` header value such as `"free";r=5;t=30`.
fn remaining(response: &Response) -> u64 {
    header(response, "ratelimit")
        .split(';')
        .find_map(|part| part.strip_prefix("r="))
        .unwrap()
        .parse()
        .unwrap()
}

/// Sends `count` authenticated requests one after the other; each must be 200.
async fn spend(app: &TestApp, token: &str, count: usize) {
    for _ in 0..count {
        let response = app.me(token).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
}

async fn a_free_user_gets_twenty_requests_a_minute(backend: Backend) {
    let app = spawn_app_with(backend, &[ON]).await;
    fresh_window().await;
    // register_user signs up (public) and reads the profile once.
    let user = app.register_user().await;
    let token = &user.tokens.access_token;
    let mut last_remaining = 19;
    for _ in 0..19 {
        let response = app.me(token).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "ratelimit-policy"), "\"free\";q=20;w=60");
        let left = remaining(&response);
        assert_eq!(
            left,
            last_remaining - 1,
            "the remaining count goes down by one"
        );
        last_remaining = left;
    }
    let refused = app.me(token).await;
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    // The window holds 20 requests made within the last seconds: the next one fits when the
    // minute is over, and the sliding window's count has decayed below 20, within 3 s more.
    assert!((1..=63).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(remaining(&refused), 0);
    let seconds_left_in_window = 60
        - SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            % 60;
    assert!(
        retry_after >= seconds_left_in_window.saturating_sub(1),
        "Retry-After {retry_after} is before the window ends in {seconds_left_in_window} s"
    );
    let body = error_body(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert!(body["detail"].as_str().unwrap().contains("retry"));
}

async fn a_pro_user_gets_sixty_and_an_upgrade_lifts_the_limit_at_once(backend: Backend) {
    let app = spawn_app_with(backend, &[ON]).await;
    fresh_window().await;
    let user = app.register_user().await;
    let token = &user.tokens.access_token;
    spend(&app, token, 19).await;
    assert_eq!(app.me(token).await.status(), StatusCode::TOO_MANY_REQUESTS);

    // The tier is read live: the next request already has the pro allowance.
    app.set_subscription(&user.id, "pro", "active").await;
    let response = app.me(token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header(&response, "ratelimit-policy"), "\"pro\";q=60;w=60");
    // 20 (free) + 1 so far; 39 more make 60.
    spend(&app, token, 39).await;
    assert_eq!(app.me(token).await.status(), StatusCode::TOO_MANY_REQUESTS);
}

async fn concurrent_requests_take_exactly_what_is_left(backend: Backend) {
    let app = spawn_app_with(backend, &[ON]).await;
    fresh_window().await;
    let user = app.register_user().await;
    let token = user.tokens.access_token.clone();
    spend(&app, &token, 9).await;
    // 10 left, 30 at once.
    let requests = (0..30).map(|_| {
        let (client, url, token) = (
            app.client.clone(),
            app.url("/api/v1/auth/me"),
            token.clone(),
        );
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap()
                .status()
        })
    });
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.unwrap());
    }
    let passed = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((passed, refused), (10, 20), "{statuses:?}");
}

async fn public_routes_are_never_tier_limited(backend: Backend) {
    let app = spawn_app_with(backend, &[ON]).await;
    fresh_window().await;
    let user = app.register_user().await;
    spend(&app, &user.tokens.access_token, 19).await;
    assert_eq!(
        app.me(&user.tokens.access_token).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    for _ in 0..25 {
        let health = app.get("/api/v1/health").await;
        assert_eq!(health.status(), StatusCode::OK);
        assert!(health.headers().get("ratelimit").is_none());
    }
    // Signing in again works, and refreshing too: they have failure limits instead.
    let login = app.login(&user.email, &user.password).await;
    assert_eq!(login.status(), StatusCode::OK);
    let tokens: Value = login.json().await.unwrap();
    let refreshed = app.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status(), StatusCode::OK);
}

async fn rate_limits_can_be_turned_off(backend: Backend) {
    let app = spawn_app_with(backend, &[("RATE_LIMIT_ENABLED", "false")]).await;
    let user = app.register_user().await;
    for _ in 0..25 {
        let response = app.me(&user.tokens.access_token).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("ratelimit").is_none());
    }
}

/// A client at `address` signs in.
async fn login_from(app: &TestApp, address: &str, email: &str, password: &str) -> Response {
    http_client_from(address)
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn failed_logins_lock_the_email_from_any_address(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let victim = app.register_user().await;
    let bystander = app.register_user().await;
    // Ten failures, each from another address.
    for n in 2..12 {
        let response = login_from(
            &app,
            &format!("127.0.0.{n}"),
            &victim.email,
            "wrong-password!",
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // The eleventh attempt is refused from a fresh address, the right password included, and
    // before any password is checked.
    let limited = login_from(&app, "127.0.0.50", &victim.email, &victim.password).await;
    let retry_after: u64 = header(&limited, "retry-after").parse().unwrap();
    assert!((1..=17 * 60).contains(&retry_after), "{retry_after}");
    error_body(limited, StatusCode::TOO_MANY_REQUESTS, "too_many_failures").await;
    // The same email in other case and spacing is the same account.
    let shouted = login_from(
        &app,
        "127.0.0.51",
        &victim.email.to_uppercase(),
        &victim.password,
    )
    .await;
    assert_eq!(shouted.status(), StatusCode::TOO_MANY_REQUESTS);
    // Other accounts are not affected, from the same addresses.
    let other = login_from(&app, "127.0.0.50", &bystander.email, &bystander.password).await;
    assert_eq!(other.status(), StatusCode::OK);
    // Sessions the victim already has keep working.
    assert_eq!(
        app.me(&victim.tokens.access_token).await.status(),
        StatusCode::OK
    );
}

async fn failures_from_one_address_lock_it_on_any_email(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUTH_FAILURES_PER_ADDRESS", "5")]).await;
    let user = app.register_user().await;
    for n in 0..5 {
        let response = login_from(
            &app,
            "127.0.0.20",
            &format!("guess-{n}@example.com"),
            "wrong-password!",
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = login_from(&app, "127.0.0.20", &user.email, &user.password).await;
    error_body(limited, StatusCode::TOO_MANY_REQUESTS, "too_many_failures").await;
    // Another address is not limited, and neither is the account.
    let elsewhere = login_from(&app, "127.0.0.21", &user.email, &user.password).await;
    assert_eq!(elsewhere.status(), StatusCode::OK);
}

async fn the_failure_window_moves_on(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("AUTH_FAILURE_WINDOW_SECONDS", "2"),
            ("AUTH_FAILURES_PER_EMAIL", "3"),
        ],
    )
    .await;
    let user = app.register_user().await;
    for _ in 0..3 {
        let response = login_from(&app, "127.0.0.30", &user.email, "wrong-password!").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let limited = login_from(&app, "127.0.0.30", &user.email, &user.password).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = header(&limited, "retry-after").parse().unwrap();
    assert!(
        retry_after <= 4,
        "Retry-After {retry_after} for a 2 s window"
    );
    tokio::time::sleep(Duration::from_secs(retry_after) + Duration::from_millis(100)).await;
    let again = login_from(&app, "127.0.0.30", &user.email, &user.password).await;
    assert_eq!(again.status(), StatusCode::OK);
}

/// Twelve wrong passwords sent at once against a cap of 10 per email: each attempt is counted
/// before its check, so exactly ten are checked (401) and two are refused (429) however the
/// requests interleave; afterwards the right password is refused too.
async fn a_burst_of_concurrent_guesses_is_checked_only_up_to_the_cap(backend: Backend) {
    // A bcrypt cost that makes each check take a while, so the twelve checks overlap. The
    // counters in process memory on both pairings: moto's DynamoDB evaluates a conditional
    // update without a lock, so under load two of these twelve can both pass `count < max`
    // (seen once: 11 checked); DynamoDB itself makes the condition atomic, which the store's
    // own tests hold for our side of it.
    let app = spawn_app_with(
        backend,
        &[
            ("AUTH_FAILURES_PER_EMAIL", "10"),
            ("BCRYPT_COST", "8"),
            ("DYNAMODB_TABLE", ""),
        ],
    )
    .await;
    let victim = app.register_user().await;
    let guesses: Vec<_> = (0..12)
        .map(|_| {
            let (client, url) = (
                http_client_from("127.0.0.70"),
                app.url("/api/v1/auth/login"),
            );
            let body = json!({"email": victim.email, "password": "wrong-password!"});
            tokio::spawn(async move { client.post(url).json(&body).send().await.unwrap() })
        })
        .collect();
    let (mut checked, mut refused) = (0, 0);
    for guess in guesses {
        let response = guess.await.unwrap();
        match response.status() {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after: u64 = header(&response, "retry-after").parse().unwrap();
                assert!((1..=17 * 60).contains(&retry_after), "{retry_after}");
                error_body(response, StatusCode::TOO_MANY_REQUESTS, "too_many_failures").await;
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((checked, refused), (10, 2));
    let right = login_from(&app, "127.0.0.71", &victim.email, &victim.password).await;
    assert_eq!(right.status(), StatusCode::TOO_MANY_REQUESTS);
}

/// A client at `address` registers `email`; the answer's status.
async fn register_from(app: &TestApp, address: &str, email: &str) -> Response {
    http_client_from(address)
        .post(app.url("/api/v1/auth/register"))
        .json(&json!({"email": email, "password": "correct-horse-battery"}))
        .send()
        .await
        .unwrap()
}

async fn registrations_are_limited_per_address(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUTH_REGISTRATIONS_PER_ADDRESS", "3")]).await;
    // Invalid input does not use up the address's allowance...
    for bad in ["not-an-email", "a@b", "  @example.com"] {
        let response = register_from(&app, "127.0.0.80", bad).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    // ...successful registrations do.
    for n in 0..3 {
        let email = format!("member-{n}@example.com");
        let response = register_from(&app, "127.0.0.80", &email).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let refused = register_from(&app, "127.0.0.80", "member-3@example.com").await;
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=2 * 3600).contains(&retry_after), "{retry_after}");
    error_body(
        refused,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_registrations",
    )
    .await;
    // Another address has an allowance of its own, and signing in is not affected.
    let elsewhere = register_from(&app, "127.0.0.81", "member-3@example.com").await;
    assert_eq!(elsewhere.status(), StatusCode::CREATED);
    let login = login_from(
        &app,
        "127.0.0.80",
        "member-0@example.com",
        "correct-horse-battery",
    )
    .await;
    assert_eq!(login.status(), StatusCode::OK);
}

async fn taken_emails_count_against_the_address(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUTH_FAILURES_PER_ADDRESS", "3")]).await;
    let register_from = |address: &'static str, email: String| {
        let (client, url) = (http_client_from(address), app.url("/api/v1/auth/register"));
        async move {
            client
                .post(url)
                .json(&json!({"email": email, "password": "correct-horse-battery"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    // An office behind one address signs ten people up (registrations per address are raised
    // for every test by the harness).
    for n in 0..10 {
        let status = register_from("127.0.0.40", format!("colleague-{n}@example.com")).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    // Probing for taken emails is a failure each time.
    let taken = app.register_user().await.email;
    for _ in 0..3 {
        assert_eq!(
            register_from("127.0.0.41", taken.clone()).await,
            StatusCode::CONFLICT
        );
    }
    assert_eq!(
        register_from("127.0.0.41", "new-person@example.com".to_owned()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

async fn bad_refresh_tokens_count_against_the_address(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUTH_FAILURES_PER_ADDRESS", "3")]).await;
    let user = app.register_user().await;
    let refresh_from = |token: String| {
        let (client, url) = (
            http_client_from("127.0.0.60"),
            app.url("/api/v1/auth/refresh"),
        );
        async move {
            client
                .post(url)
                .json(&json!({"refresh_token": token}))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    for n in 0..3 {
        assert_eq!(
            refresh_from(format!("{n:064}")).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        refresh_from(user.tokens.refresh_token.clone()).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The token was not used by the refused attempt.
    assert_eq!(
        app.refresh(&user.tokens.refresh_token).await.status(),
        StatusCode::OK
    );
}

async fn wrong_passwords_on_account_deletion_are_limited(backend: Backend) {
    let app = spawn_app_with(backend, &[("AUTH_FAILURES_PER_EMAIL", "2")]).await;
    let user = app.register_user().await;
    let delete = |password: &str| {
        app.request(reqwest::Method::DELETE, "/api/v1/auth/me")
            .bearer_auth(&user.tokens.access_token)
            .json(&json!({"password": password}))
            .send()
    };
    for _ in 0..2 {
        assert_eq!(
            delete("wrong-password!").await.unwrap().status(),
            StatusCode::UNAUTHORIZED
        );
    }
    let limited = delete(&user.password).await.unwrap();
    error_body(limited, StatusCode::TOO_MANY_REQUESTS, "too_many_failures").await;
    // Nothing was deleted, and login for that email is limited too.
    assert_eq!(
        app.me(&user.tokens.access_token).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login(&user.email, &user.password).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

/// A dead short-lived store (DynamoDB refusing connections) must not take the API down: rate
/// and failure limits let requests through, with a warning in the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_store_lets_requests_through() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ON,
            ("DYNAMODB_TABLE", "adiuva-unreachable"),
            ("DYNAMODB_ENDPOINT_URL", "http://127.0.0.1:1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ],
    )
    .await;
    let user = app.register_user().await;
    let login = app.login(&user.email, &user.password).await;
    assert_eq!(login.status(), StatusCode::OK);
    let response = app.me(&user.tokens.access_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers().get("ratelimit").is_none(),
        "no limit could be counted"
    );
}
