//! The auth flow and each of its errors, including JWT attacks and refresh-token reuse; the
//! account's own management (password and email changes, sessions, the security log) is in
//! `auth::accounts`.

mod accounts;
mod oidc;
mod sso;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TEST_JWT_SECRET, Tokens, error_body, spawn_app, spawn_app_with};

backend_tests!(
    register_signs_in_and_normalizes_email,
    register_refuses_a_taken_email_in_any_case,
    register_validates_email_and_password_bytes,
    malformed_bodies_are_4xx_and_change_nothing,
    login_failures_are_one_generic_401,
    python_bcrypt_hashes_log_in,
    forged_or_stale_access_tokens_are_401,
    refresh_rotates_once_and_reuse_revokes_the_family,
    concurrent_refreshes_let_exactly_one_through,
    bad_and_expired_refresh_tokens_are_401,
    logout_ends_only_the_current_session,
    tier_is_read_live_from_subscriptions,
    deleted_users_tokens_stop_working,
);

async fn register_signs_in_and_normalizes_email(backend: Backend) {
    let app = spawn_app(backend).await;
    let response = app
        .register("  Alice@Example.COM ", "correct-horse-battery")
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let tokens: Tokens = response.json().await.unwrap();
    assert_eq!(tokens.refresh_token.len(), 64);
    let now_ms = adiuva_db::now_ms();
    let minutes = (tokens.expires_at - now_ms) / 60_000;
    assert!(
        (29..=30).contains(&minutes),
        "access token lives {minutes} min, expected 30"
    );

    let profile: Value = app.me(&tokens.access_token).await.json().await.unwrap();
    assert_eq!(profile["email"], "alice@example.com");
    assert_eq!(profile["tier"], "free");
    assert_eq!(profile["tier_source"], "own");
    assert_eq!(profile["teams"], json!([]));
    assert_eq!(profile["identities"], json!([]));
    assert_eq!(
        profile.as_object().unwrap().len(),
        6,
        "/auth/me is {{id, email, tier, tier_source, teams, identities}}: {profile}"
    );

    let login = app
        .login("alice@example.com", "correct-horse-battery")
        .await;
    assert_eq!(login.status(), StatusCode::OK);
    let again = app
        .login(" ALICE@example.com", "correct-horse-battery")
        .await;
    assert_eq!(again.status(), StatusCode::OK);
}

async fn register_refuses_a_taken_email_in_any_case(backend: Backend) {
    let app = spawn_app(backend).await;
    assert_eq!(
        app.register("bob@example.com", "first-password")
            .await
            .status(),
        StatusCode::CREATED
    );
    let duplicate = app.register("BOB@example.com", "second-password").await;
    error_body(duplicate, StatusCode::CONFLICT, "email_taken").await;
    // The first account is untouched.
    assert_eq!(
        app.login("bob@example.com", "first-password")
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.login("bob@example.com", "second-password")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn register_validates_email_and_password_bytes(backend: Backend) {
    let app = spawn_app(backend).await;
    for email in [
        "",
        "no-at-sign",
        "a@b",
        "two@@example.com",
        "sp ace@example.com",
    ] {
        let response = app.register(email, "correct-horse-battery").await;
        error_body(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_email").await;
    }
    let cases = [
        ("short@example.com", "1234567".to_owned(), false),
        ("min@example.com", "12345678".to_owned(), true),
        ("max@example.com", "p".repeat(72), true),
        ("over@example.com", "p".repeat(73), false),
        // 24 euro signs are 72 bytes; 25 are 75 bytes although only 25 characters.
        ("euro24@example.com", "€".repeat(24), true),
        ("euro25@example.com", "€".repeat(25), false),
    ];
    for (email, password, accepted) in cases {
        let response = app.register(email, &password).await;
        if accepted {
            assert_eq!(response.status(), StatusCode::CREATED, "{email}");
            assert_eq!(
                app.login(email, &password).await.status(),
                StatusCode::OK,
                "{email}"
            );
        } else {
            error_body(
                response,
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_password",
            )
            .await;
            // Nothing was stored: the address is still free.
            assert_eq!(
                app.register(email, "a-valid-password").await.status(),
                StatusCode::CREATED
            );
        }
    }
    // The 72nd byte counts: a password differing only there does not log in.
    let almost = format!("{}q", "p".repeat(71));
    error_body(
        app.login("max@example.com", &almost).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
}

async fn malformed_bodies_are_4xx_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = app.url("/api/v1/auth/register");
    let send = |body: &'static str, content_type: Option<&'static str>| {
        let mut request = app.client.post(&url).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    let json = Some("application/json");
    error_body(
        send(r#"{"email": "x@example.com", "#, json).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_json",
    )
    .await;
    error_body(
        send(r#"{"email": "x@example.com"}"#, json).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    error_body(
        send(
            r#"{"email": 42, "password": "correct-horse-battery"}"#,
            json,
        )
        .await
        .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    error_body(
        send(r#"[1, 2, 3]"#, json).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    error_body(
        send(
            r#"{"email": "x@example.com", "password": "correct-horse-battery"}"#,
            None,
        )
        .await
        .unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    // None of the above created the account.
    assert_eq!(
        app.register("x@example.com", "correct-horse-battery")
            .await
            .status(),
        StatusCode::CREATED
    );
}

async fn login_failures_are_one_generic_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let wrong_password = error_body(
        app.login(&user.email, "not-the-password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let unknown_email = error_body(
        app.login("nobody@example.com", "not-the-password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(wrong_password["detail"], unknown_email["detail"]);
    let too_long = error_body(
        app.login(&user.email, &"x".repeat(100)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(too_long["detail"], unknown_email["detail"]);
}

async fn python_bcrypt_hashes_log_in(backend: Backend) {
    let app = spawn_app(backend).await;
    // Made by the Python deployment's bcrypt 5.0.0: hashpw(b"legacy-password-1", gensalt(12)).
    let python_hash = "$2b$12$rKFb2GgqiyPl/PYJWyXLYu.MdXxJNZwCgfOO3zRZ2w6FNOr.teqaS";
    adiuva_db::sqlx::query(
        "INSERT INTO users (id, email, password_hash, created_at, updated_at) VALUES ($1, $2, $3, 0, 0)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind("legacy@example.com")
    .bind(python_hash)
    .execute(app.database.db.pool())
    .await
    .unwrap();
    let response = app.login("legacy@example.com", "legacy-password-1").await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Tokens = response.json().await.unwrap();
    assert_eq!(app.me(&tokens.access_token).await.status(), StatusCode::OK);
    error_body(
        app.login("legacy@example.com", "legacy-password-2").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
}

fn sign(claims: &Value, algorithm: Algorithm, secret: &str) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

async fn forged_or_stale_access_tokens_are_401(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let now = adiuva_db::now_ms() / 1000;
    let claims = |overrides: Value| {
        let mut claims = json!({
            "sub": user.id, "iat": now, "exp": now + 600, "iss": "adiuva-api", "aud": "adiuva-app", "ver": 0
        });
        for (key, value) in overrides.as_object().unwrap() {
            claims[key] = value.clone();
        }
        claims
    };
    // A token we sign ourselves with the right claims works: the attacks below differ in one thing.
    let valid = sign(&claims(json!({})), Algorithm::HS256, TEST_JWT_SECRET);
    assert_eq!(app.me(&valid).await.status(), StatusCode::OK);

    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(json!({})).to_string())
    );
    let mut tampered = valid.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    let attacks = [
        ("alg none", unsigned),
        (
            "another algorithm, same secret",
            sign(&claims(json!({})), Algorithm::HS512, TEST_JWT_SECRET),
        ),
        (
            "another secret",
            sign(
                &claims(json!({})),
                Algorithm::HS256,
                "some-other-secret-of-sufficient-length",
            ),
        ),
        ("tampered signature", tampered),
        (
            "expired",
            sign(
                &claims(json!({"iat": now - 7200, "exp": now - 3600})),
                Algorithm::HS256,
                TEST_JWT_SECRET,
            ),
        ),
        (
            "wrong issuer",
            sign(
                &claims(json!({"iss": "someone-else"})),
                Algorithm::HS256,
                TEST_JWT_SECRET,
            ),
        ),
        (
            "wrong audience",
            sign(
                &claims(json!({"aud": "other-app"})),
                Algorithm::HS256,
                TEST_JWT_SECRET,
            ),
        ),
        ("no expiry", {
            let mut c = claims(json!({}));
            c.as_object_mut().unwrap().remove("exp");
            sign(&c, Algorithm::HS256, TEST_JWT_SECRET)
        }),
        (
            "unknown user",
            sign(
                &claims(json!({"sub": "00000000-0000-0000-0000-000000000000"})),
                Algorithm::HS256,
                TEST_JWT_SECRET,
            ),
        ),
        ("garbage", "not.a.jwt".to_owned()),
    ];
    for (attack, token) in attacks {
        let response = app.me(&token).await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{attack} was accepted"
        );
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        error_body(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
    error_body(
        app.get("/api/v1/auth/me").await,
        StatusCode::UNAUTHORIZED,
        "missing_token",
    )
    .await;
    let basic = app
        .request(reqwest::Method::GET, "/api/v1/auth/me")
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    error_body(basic, StatusCode::UNAUTHORIZED, "missing_token").await;
}

async fn refresh_rotates_once_and_reuse_revokes_the_family(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let other_session: Tokens = app
        .login(&user.email, &user.password)
        .await
        .json()
        .await
        .unwrap();

    let first = app.refresh(&user.tokens.refresh_token).await;
    assert_eq!(first.status(), StatusCode::OK);
    let rotated: Tokens = first.json().await.unwrap();
    assert_ne!(rotated.refresh_token, user.tokens.refresh_token);
    assert_eq!(app.me(&rotated.access_token).await.status(), StatusCode::OK);

    // The old token again: reuse. The whole family is revoked, the fresh token included.
    error_body(
        app.refresh(&user.tokens.refresh_token).await,
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
    // The access tokens end with it: the one the stolen token may have bought is useless.
    assert_eq!(
        app.me(&rotated.access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // Another login is another family: its refresh token still works and gives a fresh
    // access token.
    let other = app.refresh(&other_session.refresh_token).await;
    assert_eq!(other.status(), StatusCode::OK);
    let other: Tokens = other.json().await.unwrap();
    assert_eq!(app.me(&other.access_token).await.status(), StatusCode::OK);
}

async fn concurrent_refreshes_let_exactly_one_through(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let attempts = (0..6).map(|_| app.refresh(&user.tokens.refresh_token));
    let statuses: Vec<StatusCode> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    let succeeded = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    assert_eq!(succeeded, 1, "statuses: {statuses:?}");
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::OK || *s == StatusCode::UNAUTHORIZED),
        "{statuses:?}"
    );
}

async fn bad_and_expired_refresh_tokens_are_401(backend: Backend) {
    let app = spawn_app_with(backend, &[("JWT_REFRESH_TOKEN_EXPIRE_DAYS", "0")]).await;
    let user = app.register_user().await;
    // Issued with a lifetime of zero days: already expired.
    error_body(
        app.refresh(&user.tokens.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    for garbage in [
        "",
        "short",
        &"g".repeat(64),
        &"a".repeat(64),
        &user.tokens.access_token,
    ] {
        error_body(
            app.refresh(garbage).await,
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
        )
        .await;
    }
}

async fn logout_ends_only_the_current_session(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let laptop: Tokens = app
        .login(&user.email, &user.password)
        .await
        .json()
        .await
        .unwrap();

    let logout = app
        .request(reqwest::Method::POST, "/api/v1/auth/logout")
        .bearer_auth(&laptop.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::OK);
    assert_eq!(logout.json::<Value>().await.unwrap(), json!({"ok": true}));

    // The laptop's session ended: its refresh token and its access token at once.
    error_body(
        app.refresh(&laptop.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;
    error_body(
        app.me(&laptop.access_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
    // The registration's session (another device) is still signed in.
    assert_eq!(
        app.me(&user.tokens.access_token).await.status(),
        StatusCode::OK
    );
    let other = app.refresh(&user.tokens.refresh_token).await;
    assert_eq!(other.status(), StatusCode::OK);
    let other: Tokens = other.json().await.unwrap();

    // A token from before sessions existed names none: logging out with it ends them all.
    let now = adiuva_db::now_ms() / 1000;
    let legacy = sign(
        &json!({
            "sub": user.id, "iat": now, "exp": now + 600, "iss": "adiuva-api", "aud": "adiuva-app", "ver": 0
        }),
        Algorithm::HS256,
        TEST_JWT_SECRET,
    );
    assert_eq!(app.me(&legacy).await.status(), StatusCode::OK);
    let everywhere = app
        .request(reqwest::Method::POST, "/api/v1/auth/logout")
        .bearer_auth(&legacy)
        .send()
        .await
        .unwrap();
    assert_eq!(everywhere.status(), StatusCode::OK);
    for access_token in [&legacy, &other.access_token] {
        error_body(
            app.me(access_token).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
    }
    error_body(
        app.refresh(&other.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_refresh_token",
    )
    .await;

    // Signing in again works, and the new session is live.
    let fresh: Tokens = app
        .login(&user.email, &user.password)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(app.me(&fresh.access_token).await.status(), StatusCode::OK);
    assert_eq!(
        app.refresh(&fresh.refresh_token).await.status(),
        StatusCode::OK
    );
    // Logging out needs a valid access token.
    let anonymous = app
        .request(reqwest::Method::POST, "/api/v1/auth/logout")
        .send()
        .await
        .unwrap();
    error_body(anonymous, StatusCode::UNAUTHORIZED, "missing_token").await;
}

async fn tier_is_read_live_from_subscriptions(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let tier = |response: reqwest::Response| async move {
        response.json::<Value>().await.unwrap()["tier"].clone()
    };
    assert_eq!(tier(app.me(&user.tokens.access_token).await).await, "free");
    // Same access token, new subscription: the tier changes at once.
    app.set_subscription(&user.id, "pro", "active").await;
    assert_eq!(tier(app.me(&user.tokens.access_token).await).await, "pro");
    app.set_subscription(&user.id, "team", "trialing").await;
    assert_eq!(tier(app.me(&user.tokens.access_token).await).await, "team");
    app.set_subscription(&user.id, "team", "canceled").await;
    assert_eq!(tier(app.me(&user.tokens.access_token).await).await, "free");
}

async fn deleted_users_tokens_stop_working(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    adiuva_db::sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(&user.id)
        .execute(app.database.db.pool())
        .await
        .unwrap();
    // The cascade removed the refresh tokens too.
    app.assert_signed_out(&user.tokens).await;
}

/// Backends waiting for a row lock in the test's database.
async fn lock_waiters(app: &crate::harness::TestApp) -> i64 {
    adiuva_db::sqlx::query_scalar(
        "SELECT CAST(count(*) AS BIGINT) FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    .fetch_one(app.database.db.pool())
    .await
    .unwrap()
}

async fn until_waiters(app: &crate::harness::TestApp, count: i64) {
    for _ in 0..200 {
        if lock_waiters(app).await >= count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{count} requests never waited for the user's row");
}

/// Refresh and logout of one user, run while the test holds the user's row, in a chosen order;
/// then the row is released. Whatever the order, no refresh token and no access token of the
/// user is left live.
async fn race_refresh_and_logout(refresh_first: bool) {
    let app = spawn_app(Backend::Postgres).await;
    let user = app.register_user().await;
    let mut hold = app.database.db.pool().begin().await.unwrap();
    adiuva_db::sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
        .bind(&user.id)
        .fetch_one(&mut *hold)
        .await
        .unwrap();

    let refresh = {
        let request = app
            .request(reqwest::Method::POST, "/api/v1/auth/refresh")
            .json(&json!({"refresh_token": user.tokens.refresh_token}));
        async move { request.send().await.unwrap() }
    };
    let logout = {
        let request = app
            .request(reqwest::Method::POST, "/api/v1/auth/logout")
            .bearer_auth(&user.tokens.access_token);
        async move { request.send().await.unwrap() }
    };
    let (refresh, logout) = if refresh_first {
        let refresh = tokio::spawn(refresh);
        until_waiters(&app, 1).await;
        let logout = tokio::spawn(logout);
        until_waiters(&app, 2).await;
        (refresh, logout)
    } else {
        let logout = tokio::spawn(logout);
        until_waiters(&app, 1).await;
        let refresh = tokio::spawn(refresh);
        until_waiters(&app, 2).await;
        (refresh, logout)
    };
    hold.commit().await.unwrap();
    let (refresh, logout) = (refresh.await.unwrap(), logout.await.unwrap());
    assert_eq!(logout.status(), StatusCode::OK);

    if refresh_first {
        // The refresh went first and succeeded; logout then ended what it issued.
        assert_eq!(refresh.status(), StatusCode::OK);
        let issued: Tokens = refresh.json().await.unwrap();
        assert_eq!(
            app.me(&issued.access_token).await.status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            app.refresh(&issued.refresh_token).await.status(),
            StatusCode::UNAUTHORIZED
        );
    } else {
        // Logout went first: the token was revoked by the time the refresh saw it.
        error_body(refresh, StatusCode::UNAUTHORIZED, "invalid_refresh_token").await;
    }
    let live: i64 = adiuva_db::sqlx::query_scalar(
        "SELECT CAST(count(*) AS BIGINT) FROM refresh_tokens \
         WHERE user_id = $1 AND revoked_at IS NULL AND used_at IS NULL",
    )
    .bind(&user.id)
    .fetch_one(app.database.db.pool())
    .await
    .unwrap();
    assert_eq!(live, 0, "a refresh token survived the logout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_just_before_a_logout_leaves_no_live_token() {
    race_refresh_and_logout(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_just_after_a_logout_is_refused() {
    race_refresh_and_logout(false).await;
}
