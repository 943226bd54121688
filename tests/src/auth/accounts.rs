//! Accounts people manage themselves (issue 23): password and email changes, sessions listed
//! and ended one by one (taking effect at the next request, not when the access token
//! expires), and the security log with its cursor pages. The harness connects from
//! 127.0.0.1, so every session and event shows the prefix `127.0.0.0/24`. And a platform
//! admin's disabling of an account (issue 23, item 8).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, TestUser, Tokens, error_body, sha, spawn_app};

backend_tests!(
    password_change_ends_every_session_and_answers_new_tokens,
    wrong_current_passwords_are_401_and_counted,
    email_change_moves_the_sign_in,
    sessions_are_listed_and_ended_one_by_one,
    the_security_log_tells_what_happened_newest_first,
    the_security_log_pages_by_cursor_and_forgets_after_90_days,
    a_reused_refresh_token_and_a_locked_sign_in_show_in_the_log,
    an_admin_disables_and_enables_an_account,
    a_family_from_before_sessions_becomes_a_session_at_its_refresh,
);

const LAPTOP: &str = "Adiuva/0.1.0 Electron/32.2.5 (laptop)";
const PHONE: &str = "Adiuva/0.1.0 Electron/32.2.5 (phone)";

async fn post(app: &TestApp, path: &str, token: &str, body: &Value) -> reqwest::Response {
    app.request(Method::POST, path)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn login_from(app: &TestApp, user: &TestUser, agent: &str) -> Tokens {
    let response = app
        .request(Method::POST, "/api/v1/auth/login")
        .header("user-agent", agent)
        .json(&json!({"email": user.email, "password": user.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// A new user registered from `agent`.
async fn register_from(app: &TestApp, agent: &str) -> TestUser {
    let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
    let password = "correct-horse-battery".to_owned();
    let response = app
        .request(Method::POST, "/api/v1/auth/register")
        .header("user-agent", agent)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let tokens: Tokens = response.json().await.unwrap();
    let profile: Value = app.me(&tokens.access_token).await.json().await.unwrap();
    TestUser {
        id: profile["id"].as_str().unwrap().to_owned(),
        email,
        password,
        tokens,
    }
}

async fn sessions(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app.get_authed("/api/v1/auth/sessions", token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains("127.0.0.1"), "a full address: {text}");
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

async fn revoke(app: &TestApp, token: &str, session_id: &str) -> reqwest::Response {
    app.request(
        Method::DELETE,
        &format!("/api/v1/auth/sessions/{session_id}"),
    )
    .bearer_auth(token)
    .send()
    .await
    .unwrap()
}

/// The first page of the log (50 events), newest first.
async fn events(app: &TestApp, token: &str) -> Vec<Value> {
    let response = app.get_authed("/api/v1/auth/events", token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let text = response.text().await.unwrap();
    assert!(!text.contains("127.0.0.1"), "a full address: {text}");
    serde_json::from_str::<Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect()
}

async fn password_change_ends_every_session_and_answers_new_tokens(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let laptop = login_from(&app, &user, LAPTOP).await;

    let changed = post(
        &app,
        "/api/v1/auth/password",
        &laptop.access_token,
        &json!({"current_password": user.password, "new_password": "battery-staple-horse"}),
    )
    .await;
    assert_eq!(changed.status(), StatusCode::OK);
    let fresh: Tokens = changed.json().await.unwrap();

    // Every earlier token ends at once, the caller's own included.
    for old in [&user.tokens, &laptop] {
        app.assert_signed_out(old).await;
    }
    // The new pair works, and it is the one session left.
    assert_eq!(app.me(&fresh.access_token).await.status(), StatusCode::OK);
    let listed = sessions(&app, &fresh.access_token).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["current"], true);
    let refreshed = app.refresh(&fresh.refresh_token).await;
    assert_eq!(refreshed.status(), StatusCode::OK);

    // The password itself changed.
    error_body(
        app.login(&user.email, &user.password).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        app.login(&user.email, "battery-staple-horse")
            .await
            .status(),
        StatusCode::OK
    );
}

async fn wrong_current_passwords_are_401_and_counted(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let token = &user.tokens.access_token;
    // The new password follows registration's rules, checked before the current one (and not
    // counted).
    for new_password in ["short", &"p".repeat(73)] {
        error_body(
            post(
                &app,
                "/api/v1/auth/password",
                token,
                &json!({"current_password": user.password, "new_password": new_password}),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_password",
        )
        .await;
    }
    let wrong =
        json!({"current_password": "not-the-password", "new_password": "battery-staple-horse"});
    for _ in 0..10 {
        error_body(
            post(&app, "/api/v1/auth/password", token, &wrong).await,
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
        )
        .await;
    }
    // The 11th wrong attempt within the window is refused unread, and so is the right one.
    let limited = post(&app, "/api/v1/auth/password", token, &wrong).await;
    assert!(limited.headers().contains_key("retry-after"));
    error_body(limited, StatusCode::TOO_MANY_REQUESTS, "too_many_failures").await;
    error_body(
        post(
            &app,
            "/api/v1/auth/password",
            token,
            &json!({"current_password": user.password, "new_password": "battery-staple-horse"}),
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failures",
    )
    .await;
    // Nothing changed: the session is live, the password the same (login counts on the same
    // email, so it is locked too).
    assert_eq!(app.me(token).await.status(), StatusCode::OK);
    error_body(
        app.login(&user.email, &user.password).await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_failures",
    )
    .await;
}

async fn email_change_moves_the_sign_in(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let other = app.register_user().await;
    let token = &user.tokens.access_token;
    let change = |new_email: &str, password: &str| {
        let body = json!({"new_email": new_email, "password": password});
        let app = &app;
        async move { post(app, "/api/v1/auth/email", token, &body).await }
    };

    error_body(
        change(&other.email.to_uppercase(), &user.password).await,
        StatusCode::CONFLICT,
        "email_taken",
    )
    .await;
    error_body(
        change("renamed@example.com", "not-the-password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    error_body(
        change("not-an-email", &user.password).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_email",
    )
    .await;

    let changed = change(" Renamed@Example.COM ", &user.password).await;
    assert_eq!(changed.status(), StatusCode::OK);
    let profile: Value = changed.json().await.unwrap();
    assert_eq!(
        profile,
        json!({"id": user.id, "email": "renamed@example.com", "tier": "free", "tier_source": "own"})
    );
    // The session goes on; the profile, and signing in, follow the new email.
    let me: Value = app.me(token).await.json().await.unwrap();
    assert_eq!(me["email"], "renamed@example.com");
    assert_eq!(
        app.login("renamed@example.com", &user.password)
            .await
            .status(),
        StatusCode::OK
    );
    error_body(
        app.login(&user.email, &user.password).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    // The other account is untouched, and the old email is free again.
    assert_eq!(
        app.login(&other.email, &other.password).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.register(&user.email, "another-password").await.status(),
        StatusCode::CREATED
    );
}

async fn sessions_are_listed_and_ended_one_by_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = register_from(&app, LAPTOP).await;
    let long_agent = format!("Adiuva/0.1.0 {}", "x".repeat(400));
    let phone = login_from(&app, &user, &long_agent).await;

    let listed = sessions(&app, &phone.access_token).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    let (current, other): (Vec<&Value>, Vec<&Value>) = listed
        .iter()
        .partition(|session| session["current"] == true);
    let (current, laptop) = (current[0], other[0]);
    assert_eq!(laptop["user_agent"], LAPTOP);
    assert_eq!(
        current["user_agent"].as_str().unwrap().chars().count(),
        256,
        "user agents are kept to 256 characters"
    );
    for session in &listed {
        assert_eq!(session["ip_prefix"], "127.0.0.0/24");
        let keys: Vec<&str> = session
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys.len(),
            6,
            "{{id, created_at, last_used_at, user_agent, ip_prefix, current}}: {keys:?}"
        );
        assert!(
            session["created_at"].as_i64().unwrap() <= session["last_used_at"].as_i64().unwrap()
        );
    }

    // Another user cannot see or end them: 404, like a session that does not exist.
    let stranger = app.register_user().await;
    let laptop_id = laptop["id"].as_str().unwrap();
    error_body(
        revoke(&app, &stranger.tokens.access_token, laptop_id).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(sessions(&app, &stranger.tokens.access_token).await.len(), 1);
    assert_eq!(
        app.me(&user.tokens.access_token).await.status(),
        StatusCode::OK
    );

    // Ending the laptop's session from the phone: its access token is refused at its next
    // request, long before it expires, and its refresh token no longer works.
    let ended = revoke(&app, &phone.access_token, laptop_id).await;
    assert_eq!(ended.status(), StatusCode::NO_CONTENT);
    app.assert_signed_out(&user.tokens).await;
    // The phone goes on; its refresh keeps the session (and moves last_used_at).
    let refreshed: Tokens = app
        .refresh(&phone.refresh_token)
        .await
        .json()
        .await
        .unwrap();
    let listed = sessions(&app, &refreshed.access_token).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], current["id"]);
    assert_eq!(listed[0]["current"], true);
    assert!(listed[0]["last_used_at"].as_i64() >= current["last_used_at"].as_i64());
    // Ended already, or never there: 404.
    for id in [laptop_id, "00000000-0000-0000-0000-000000000000"] {
        error_body(
            revoke(&app, &refreshed.access_token, id).await,
            StatusCode::NOT_FOUND,
            "not_found",
        )
        .await;
    }
    // A session can end itself (as logout does).
    let own = listed[0]["id"].as_str().unwrap();
    assert_eq!(
        revoke(&app, &refreshed.access_token, own).await.status(),
        StatusCode::NO_CONTENT
    );
    error_body(
        app.me(&refreshed.access_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
}

async fn the_security_log_tells_what_happened_newest_first(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = register_from(&app, LAPTOP).await;
    let laptop = login_from(&app, &user, LAPTOP).await;
    let phone = login_from(&app, &user, PHONE).await;
    error_body(
        app.login(&user.email, "not-the-password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    // An unknown email has no log to write to.
    error_body(
        app.login("nobody@example.com", "not-the-password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let renamed = post(
        &app,
        "/api/v1/auth/email",
        &laptop.access_token,
        &json!({"new_email": format!("renamed-{}", user.email), "password": user.password}),
    )
    .await;
    assert_eq!(renamed.status(), StatusCode::OK);
    let phone_session = sessions(&app, &phone.access_token)
        .await
        .into_iter()
        .find(|session| session["current"] == true)
        .unwrap();
    assert_eq!(
        revoke(
            &app,
            &laptop.access_token,
            phone_session["id"].as_str().unwrap()
        )
        .await
        .status(),
        StatusCode::NO_CONTENT
    );
    let changed: Tokens = post(
        &app,
        "/api/v1/auth/password",
        &laptop.access_token,
        &json!({"current_password": user.password, "new_password": "battery-staple-horse"}),
    )
    .await
    .json()
    .await
    .unwrap();

    let log = events(&app, &changed.access_token).await;
    assert_eq!(
        types(&log),
        [
            "password_changed",
            "session_revoked",
            "email_changed",
            "login_failed",
            "login_succeeded",
            "login_succeeded",
            "login_succeeded",
        ]
    );
    let new_devices: Vec<bool> = log
        .iter()
        .map(|event| event["new_device"].as_bool().unwrap())
        .collect();
    // The registration is a first sign-in; the laptop again is known; the phone is new.
    assert_eq!(new_devices, [false, false, false, false, true, false, true]);
    assert_eq!(log[4]["user_agent"], PHONE);
    assert_eq!(log[5]["user_agent"], LAPTOP);
    assert_eq!(log[1]["session_id"], phone_session["id"]);
    assert!(
        log[3]["session_id"].is_null(),
        "a failed sign-in has no session"
    );
    for (newer, older) in log.iter().zip(log.iter().skip(1)) {
        assert!(newer["at"].as_i64() > older["at"].as_i64(), "{log:?}");
    }
    for event in &log {
        assert_eq!(event["ip_prefix"], "127.0.0.0/24");
        let keys: Vec<&str> = event
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys.len(), 6, "{keys:?}");
    }
    // Someone else's log is theirs alone.
    let stranger = app.register_user().await;
    let theirs = events(&app, &stranger.tokens.access_token).await;
    assert_eq!(types(&theirs), ["login_succeeded"]);
}

async fn the_security_log_pages_by_cursor_and_forgets_after_90_days(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    for _ in 0..6 {
        app.login(&user.email, &user.password).await;
    }
    // An event from 91 days ago is past what the log shows.
    let old = adiuva_db::now_ms() - 91 * 24 * 60 * 60 * 1000;
    adiuva_db::sqlx::query(
        "INSERT INTO security_events (id, user_id, event_type, at, new_device) \
         VALUES ($1, $2, 'login_failed', $3, 0)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(&user.id)
    .bind(old)
    .execute(app.database.db.pool())
    .await
    .unwrap();
    let token = &user.tokens.access_token;
    let all = events(&app, token).await;
    assert_eq!(all.len(), 7, "the old failure is not shown: {all:?}");

    let mut seen = Vec::new();
    let mut path = "/api/v1/auth/events?limit=3".to_owned();
    loop {
        let response = app.get_authed(&path, token).await;
        assert_eq!(response.status(), StatusCode::OK);
        let next = response
            .headers()
            .get("x-next-cursor")
            .map(|value| value.to_str().unwrap().to_owned());
        let link = response
            .headers()
            .get("link")
            .map(|value| value.to_str().unwrap().to_owned());
        let page: Vec<Value> = response.json().await.unwrap();
        seen.extend(page);
        match next {
            Some(cursor) => {
                let link = link.expect("a Link with the cursor");
                assert!(link.contains(&format!("cursor={cursor}")), "{link}");
                assert!(link.contains("limit=3"), "{link}");
                path = format!("/api/v1/auth/events?limit=3&cursor={cursor}");
            }
            None => {
                assert!(link.is_none());
                break;
            }
        }
    }
    assert_eq!(seen, all, "the pages are the log, in order, once each");

    for bad in ["cursor=nothex", "cursor=76322e", "limit=0", "limit=201"] {
        let response = app
            .get_authed(&format!("/api/v1/auth/events?{bad}"), token)
            .await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
}

async fn a_reused_refresh_token_and_a_locked_sign_in_show_in_the_log(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let laptop = login_from(&app, &user, LAPTOP).await;
    let stolen_session = sessions(&app, &laptop.access_token)
        .await
        .into_iter()
        .find(|session| session["current"] == false)
        .unwrap();
    let rotated = app.refresh(&user.tokens.refresh_token).await;
    assert_eq!(rotated.status(), StatusCode::OK);
    error_body(
        app.refresh(&user.tokens.refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "refresh_token_reused",
    )
    .await;
    // Reuse ends every access token (the token version moves on); sign in again to read.
    let reader = login_from(&app, &user, LAPTOP).await;
    let log = events(&app, &reader.access_token).await;
    assert_eq!(log[1]["type"], "refresh_reuse_detected", "{log:?}");
    assert_eq!(log[1]["session_id"], stolen_session["id"]);
    // The reused session is over.
    assert!(
        sessions(&app, &reader.access_token)
            .await
            .iter()
            .all(|session| session["id"] != stolen_session["id"])
    );

    // Ten wrong passwords, then the limit refuses: one `sign_in_locked`, however many more
    // attempts are refused.
    for _ in 0..10 {
        app.login(&user.email, "not-the-password").await;
    }
    for _ in 0..3 {
        error_body(
            app.login(&user.email, "not-the-password").await,
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failures",
        )
        .await;
    }
    let log = events(&app, &reader.access_token).await;
    let kinds = types(&log);
    assert_eq!(kinds[0], "sign_in_locked", "{kinds:?}");
    assert_eq!(
        kinds
            .iter()
            .filter(|kind| **kind == "sign_in_locked")
            .count(),
        1
    );
    assert_eq!(
        kinds.iter().filter(|kind| **kind == "login_failed").count(),
        10
    );
}

async fn an_admin_disables_and_enables_an_account(backend: Backend) {
    let app = spawn_app(backend).await;
    let admin = app.register_user().await;
    adiuva_db::sqlx::query("UPDATE users SET role = 'admin' WHERE id = $1")
        .bind(&admin.id)
        .execute(app.database.db.pool())
        .await
        .unwrap();
    let user = app.register_user().await;
    let laptop = login_from(&app, &user, LAPTOP).await;
    let action = |token: &str, id: &str, action: &str| {
        let request = app
            .request(Method::POST, &format!("/api/v1/admin/users/{id}/{action}"))
            .bearer_auth(token);
        async move { request.send().await.unwrap() }
    };

    // Only admins; an unknown id is 404; an admin cannot disable themselves.
    error_body(
        action(&laptop.access_token, &admin.id, "disable").await,
        StatusCode::FORBIDDEN,
        "admin_required",
    )
    .await;
    error_body(
        action(
            &admin.tokens.access_token,
            "00000000-0000-0000-0000-000000000000",
            "disable",
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    error_body(
        action(&admin.tokens.access_token, &admin.id, "disable").await,
        StatusCode::CONFLICT,
        "cannot_disable_self",
    )
    .await;

    let disabled = action(&admin.tokens.access_token, &user.id, "disable").await;
    assert_eq!(disabled.status(), StatusCode::NO_CONTENT);
    // Every session ends at once; signing in is refused, and said so only to the right
    // password.
    for tokens in [&user.tokens, &laptop] {
        app.assert_signed_out(tokens).await;
    }
    error_body(
        app.login(&user.email, &user.password).await,
        StatusCode::FORBIDDEN,
        "account_disabled",
    )
    .await;
    error_body(
        app.login(&user.email, "not-the-password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    // Disabling twice is the same; the admin is unaffected.
    assert_eq!(
        action(&admin.tokens.access_token, &user.id, "disable")
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.me(&admin.tokens.access_token).await.status(),
        StatusCode::OK
    );

    let enabled = action(&admin.tokens.access_token, &user.id, "enable").await;
    assert_eq!(enabled.status(), StatusCode::NO_CONTENT);
    let back = app.login(&user.email, &user.password).await;
    assert_eq!(back.status(), StatusCode::OK);
    let back: Tokens = back.json().await.unwrap();
    assert_eq!(app.me(&back.access_token).await.status(), StatusCode::OK);
    // The sessions that disabling ended stay ended.
    assert_eq!(
        app.me(&laptop.access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

async fn a_family_from_before_sessions_becomes_a_session_at_its_refresh(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    // A refresh token issued before migration 0012: a family without a session row.
    let legacy = "ab".repeat(32);
    let family = uuid::Uuid::new_v4().to_string();
    adiuva_db::sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, token_hash, family_id, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, 0)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(&user.id)
    .bind(sha(legacy.as_bytes()))
    .bind(&family)
    .bind(adiuva_db::now_ms() + 86_400_000)
    .execute(app.database.db.pool())
    .await
    .unwrap();
    assert_eq!(sessions(&app, &user.tokens.access_token).await.len(), 1);

    let response = app
        .request(Method::POST, "/api/v1/auth/refresh")
        .header("user-agent", PHONE)
        .json(&json!({"refresh_token": legacy}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let adopted: Tokens = response.json().await.unwrap();
    // Its new tokens belong to a session like any other: listed, and ended on demand.
    let listed = sessions(&app, &adopted.access_token).await;
    let own = listed
        .iter()
        .find(|session| session["current"] == true)
        .expect("the adopted family is the current session");
    assert_eq!(own["id"], family.as_str());
    assert_eq!(own["user_agent"], PHONE);
    assert_eq!(
        revoke(&app, &user.tokens.access_token, &family)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    error_body(
        app.me(&adopted.access_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_token",
    )
    .await;
}
