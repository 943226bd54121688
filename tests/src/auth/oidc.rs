//! Sign-in with OpenID Connect (issue 23, item 5) against the fake provider of
//! `crate::oidc`, which speaks the real protocol: the desktop flow with PKCE from start to
//! tokens, accounts created and linked, unlinking, and each refusal (states, verifiers, codes,
//! every check of the ID token, unverified emails, redirects, a provider that is down).

use reqwest::{Method, Response, StatusCode};
use serde_json::{Map, Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, Tokens, error_body, spawn_app, spawn_app_with};
use crate::oidc::{CLIENT_ID, CLIENT_SECRET, FakeProvider, Forgery, Person};

backend_tests!(
    a_new_identity_signs_up_and_signs_in_again,
    es256_tokens_and_listed_redirects_work_too,
    an_existing_email_needs_linking_while_signed_in,
    unlinking_keeps_a_way_to_sign_in,
    an_account_without_password_sets_one_alone,
    states_are_single_use_and_expire,
    a_wrong_verifier_or_a_replayed_code_is_refused,
    every_check_of_the_id_token_refuses_a_forgery,
    keys_are_cached_and_refetched_once_on_an_unknown_kid,
    redirects_methods_and_providers_are_checked_before_anything,
    a_provider_that_is_down_is_503,
    a_disabled_account_cannot_sign_in_with_its_identity,
    failed_callbacks_count_against_the_address,
);

pub(super) const REDIRECT: &str = "http://127.0.0.1:53682/callback";

/// A PKCE pair: a verifier and its S256 challenge.
pub(super) struct Pkce {
    pub(super) verifier: String,
    pub(super) challenge: String,
}

pub(super) fn pkce() -> Pkce {
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    let challenge = crate::harness::b64(digest.as_ref())
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_");
    Pkce {
        verifier,
        challenge,
    }
}

async fn oidc_app(backend: Backend) -> (TestApp, FakeProvider) {
    oidc_app_with(backend, &[]).await
}

async fn oidc_app_with(backend: Backend, extra: &[(&str, &str)]) -> (TestApp, FakeProvider) {
    let provider = FakeProvider::start().await;
    let settings = provider.settings();
    let mut pairs: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    pairs.extend_from_slice(extra);
    (spawn_app_with(backend, &pairs).await, provider)
}

async fn start_with(app: &TestApp, body: &Value) -> Response {
    app.post_json("/api/v1/auth/oidc/start", body).await
}

/// Starts a sign-in with Google for `REDIRECT`; returns the authorization URL and the state.
async fn start(app: &TestApp, pkce: &Pkce) -> (String, String) {
    let response = start_with(
        app,
        &json!({"provider": "google", "redirect_uri": REDIRECT,
                "code_challenge": pkce.challenge, "code_challenge_method": "S256"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    (
        body["authorization_url"].as_str().unwrap().to_owned(),
        body["state"].as_str().unwrap().to_owned(),
    )
}

pub(super) async fn callback(app: &TestApp, state: &str, code: &str, verifier: &str) -> Response {
    app.post_json(
        "/api/v1/auth/oidc/callback",
        &json!({"state": state, "code": code, "code_verifier": verifier}),
    )
    .await
}

/// The whole flow for `person`: start, the provider's sign-in, the callback.
async fn sign_in(app: &TestApp, provider: &FakeProvider, person: &Person) -> Response {
    provider.set_person(person);
    let pkce = pkce();
    let (url, state) = start(app, &pkce).await;
    let (code, returned_state) = provider.authorize(&url).await;
    assert_eq!(returned_state, state);
    callback(app, &state, &code, &pkce.verifier).await
}

async fn signed_in(app: &TestApp, provider: &FakeProvider, person: &Person) -> Tokens {
    let response = sign_in(app, provider, person).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        response.text().await.unwrap()
    );
    response.json().await.unwrap()
}

/// Links `person`'s identity to the account of `token`.
async fn link(app: &TestApp, provider: &FakeProvider, token: &str, person: &Person) -> Response {
    provider.set_person(person);
    let pkce = pkce();
    let (url, state) = start(app, &pkce).await;
    let (code, _) = provider.authorize(&url).await;
    app.request(Method::POST, "/api/v1/auth/oidc/link")
        .bearer_auth(token)
        .json(&json!({"state": state, "code": code, "code_verifier": pkce.verifier}))
        .send()
        .await
        .unwrap()
}

async fn me(app: &TestApp, token: &str) -> Value {
    let response = app.me(token).await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn event_types(app: &TestApp, token: &str) -> Vec<String> {
    let events: Vec<Value> = app
        .get_authed("/api/v1/auth/events", token)
        .await
        .json()
        .await
        .unwrap();
    events
        .iter()
        .map(|event| event["type"].as_str().unwrap().to_owned())
        .collect()
}

async fn unlink(app: &TestApp, token: &str, id: &str) -> Response {
    app.request(
        Method::DELETE,
        &format!("/api/v1/auth/oidc/identities/{id}"),
    )
    .bearer_auth(token)
    .send()
    .await
    .unwrap()
}

async fn user_count(app: &TestApp) -> i64 {
    adiuva_db::sqlx::query_scalar("SELECT COUNT(*) FROM users")
        .fetch_one(app.database.db.pool())
        .await
        .unwrap()
}

async fn a_new_identity_signs_up_and_signs_in_again(backend: Backend) {
    let (app, provider) = oidc_app(backend).await;
    let providers: Value = app
        .get("/api/v1/auth/oidc/providers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        providers,
        json!([{"id": "google", "issuer": provider.issuer}])
    );

    let person = Person::new();
    let pkce = pkce();
    let (url, state) = start(&app, &pkce).await;
    // The authorization request carries what the flow needs, and no secret.
    assert!(url.starts_with(&format!("{}/authorize?", provider.issuer)));
    assert!(!url.contains(CLIENT_SECRET));
    provider.set_person(&person);
    let (code, _) = provider.authorize(&url).await;
    let asked = &provider.authorizations()[0];
    assert_eq!(asked["client_id"], CLIENT_ID);
    assert_eq!(asked["redirect_uri"], REDIRECT);
    assert_eq!(asked["state"], state);
    assert_eq!(asked["code_challenge"], pkce.challenge);
    assert_eq!(asked["code_challenge_method"], "S256");
    assert_eq!(asked["scope"], "openid email");
    assert!(asked["nonce"].len() >= 32);

    let response = callback(&app, &state, &code, &pkce.verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Tokens = response.json().await.unwrap();
    // The code was redeemed with the client's secret and the verifier, form-encoded.
    let form: Map<String, Value> = provider.token_requests()[0]
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    assert_eq!(
        Value::Object(form),
        json!({"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
               "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
               "code_verifier": pkce.verifier})
    );

    // A new account with the provider's email and the identity, no password.
    let profile = me(&app, &tokens.access_token).await;
    assert_eq!(profile["email"], person.email);
    assert_eq!(profile["tier"], "free");
    let identities = profile["identities"].as_array().unwrap();
    assert_eq!(identities.len(), 1);
    assert_eq!(identities[0]["provider"], "google");
    assert_eq!(identities[0]["issuer"], provider.issuer);
    assert_eq!(identities[0]["email"], person.email);
    assert!(identities[0]["linked_at"].as_i64().unwrap() > 0);
    assert!(identities[0]["id"].as_str().is_some());
    // No password signs in (the attempt is logged as a failure).
    error_body(
        app.login(&person.email, "any-password-at-all").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    // A session like a password login's, and the log says what happened.
    let sessions: Vec<Value> = app
        .get_authed("/api/v1/auth/sessions", &tokens.access_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["current"], true);
    assert_eq!(
        event_types(&app, &tokens.access_token).await,
        ["login_failed", "oidc_linked", "login_succeeded"]
    );
    let refreshed = app.refresh(&tokens.refresh_token).await;
    assert_eq!(refreshed.status(), StatusCode::OK);

    // The same identity signs into the same account, even after its email changed at the
    // provider; a second session starts.
    let users = user_count(&app).await;
    let moved = Person {
        email: format!("moved-{}", person.email),
        ..person.clone()
    };
    let again = signed_in(&app, &provider, &moved).await;
    let profile_again = me(&app, &again.access_token).await;
    assert_eq!(profile_again["id"], profile["id"]);
    assert_eq!(profile_again["email"], person.email);
    assert_eq!(user_count(&app).await, users);
    assert_eq!(
        event_types(&app, &again.access_token).await[0],
        "login_succeeded"
    );
}

async fn es256_tokens_and_listed_redirects_work_too(backend: Backend) {
    let listed = "https://app.adiuva.example/oidc/done";
    let (app, provider) = oidc_app_with(backend, &[("OIDC_REDIRECT_URIS", listed)]).await;
    provider.use_es256();
    provider.set_person(&Person::new());
    let pkce = pkce();
    let response = start_with(
        &app,
        &json!({"provider": "google", "redirect_uri": listed,
                "code_challenge": pkce.challenge, "code_challenge_method": "S256"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let started: Value = response.json().await.unwrap();
    let (code, state) = provider
        .authorize(started["authorization_url"].as_str().unwrap())
        .await;
    let response = callback(&app, &state, &code, &pkce.verifier).await;
    assert_eq!(response.status(), StatusCode::OK);
    // IPv6 loopback too.
    let response = start_with(
        &app,
        &json!({"provider": "google", "redirect_uri": "http://[::1]:4000/cb",
                "code_challenge": pkce.challenge, "code_challenge_method": "S256"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn an_existing_email_needs_linking_while_signed_in(backend: Backend) {
    let (app, provider) = oidc_app(backend).await;
    let user = app.register_user().await;
    let person = Person {
        email: user.email.to_uppercase(),
        ..Person::new()
    };
    // Never linked by email alone: nothing is created, nothing is linked.
    let users = user_count(&app).await;
    error_body(
        sign_in(&app, &provider, &person).await,
        StatusCode::CONFLICT,
        "link_required",
    )
    .await;
    assert_eq!(user_count(&app).await, users);
    assert_eq!(
        me(&app, &user.tokens.access_token).await["identities"],
        json!([])
    );

    // Signed in with the password, the owner links it.
    let response = link(&app, &provider, &user.tokens.access_token, &person).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let linked: Value = response.json().await.unwrap();
    assert_eq!(linked["issuer"], provider.issuer);
    assert_eq!(linked["email"], user.email);
    assert_eq!(
        me(&app, &user.tokens.access_token).await["identities"],
        json!([linked])
    );
    assert_eq!(
        event_types(&app, &user.tokens.access_token).await[0],
        "oidc_linked"
    );
    // Now the identity signs into that account.
    let tokens = signed_in(&app, &provider, &person).await;
    assert_eq!(me(&app, &tokens.access_token).await["id"], json!(user.id));

    // An identity belongs to one account: another account cannot link it, nor this one twice.
    let other = app.register_user().await;
    error_body(
        link(&app, &provider, &other.tokens.access_token, &person).await,
        StatusCode::CONFLICT,
        "identity_taken",
    )
    .await;
    error_body(
        link(&app, &provider, &user.tokens.access_token, &person).await,
        StatusCode::CONFLICT,
        "identity_taken",
    )
    .await;
    // Linking needs a caller.
    let anonymous = app
        .post_json(
            "/api/v1/auth/oidc/link",
            &json!({"state": "s", "code": "c", "code_verifier": pkce().verifier}),
        )
        .await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

async fn unlinking_keeps_a_way_to_sign_in(backend: Backend) {
    let (app, provider) = oidc_app(backend).await;
    let first = Person::new();
    let tokens = signed_in(&app, &provider, &first).await;
    let only = me(&app, &tokens.access_token).await["identities"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // No password and no other identity: it stays.
    error_body(
        unlink(&app, &tokens.access_token, &only).await,
        StatusCode::CONFLICT,
        "last_sign_in_method",
    )
    .await;
    // With a second identity, either can go, and the other still signs in.
    let second = Person::new();
    let response = link(&app, &provider, &tokens.access_token, &second).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(
        unlink(&app, &tokens.access_token, &only).await.status(),
        StatusCode::NO_CONTENT
    );
    let identities = me(&app, &tokens.access_token).await["identities"].clone();
    assert_eq!(identities.as_array().unwrap().len(), 1);
    let remaining = identities[0]["id"].as_str().unwrap().to_owned();
    assert_ne!(remaining, only);
    assert_eq!(
        event_types(&app, &tokens.access_token).await[0],
        "oidc_unlinked"
    );
    error_body(
        unlink(&app, &tokens.access_token, &only).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    error_body(
        unlink(&app, &tokens.access_token, &remaining).await,
        StatusCode::CONFLICT,
        "last_sign_in_method",
    )
    .await;
    // The unlinked identity is a stranger again: its email is the account's, so it must link.
    error_body(
        sign_in(&app, &provider, &first).await,
        StatusCode::CONFLICT,
        "link_required",
    )
    .await;
    // Someone else's identity is not found.
    let other = app.register_user().await;
    error_body(
        unlink(&app, &other.tokens.access_token, &remaining).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    // With a password, the last identity can go.
    let response = app
        .request(Method::POST, "/api/v1/auth/password")
        .bearer_auth(&tokens.access_token)
        .json(&json!({"new_password": "a-first-password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let tokens: Tokens = response.json().await.unwrap();
    assert_eq!(
        unlink(&app, &tokens.access_token, &remaining)
            .await
            .status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        me(&app, &tokens.access_token).await["identities"],
        json!([])
    );
}

async fn an_account_without_password_sets_one_alone(backend: Backend) {
    let (app, provider) = oidc_app(backend).await;
    let person = Person::new();
    let tokens = signed_in(&app, &provider, &person).await;
    let set_password = |token: String, body: Value| {
        let request = app
            .request(Method::POST, "/api/v1/auth/password")
            .bearer_auth(token)
            .json(&body);
        async move { request.send().await.unwrap() }
    };
    // No password yet: a "current" one cannot be right, and the new one follows the rules.
    error_body(
        set_password(
            tokens.access_token.clone(),
            json!({"current_password": "guessed-password", "new_password": "a-first-password"}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    error_body(
        set_password(
            tokens.access_token.clone(),
            json!({"new_password": "short"}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_password",
    )
    .await;
    let response = set_password(
        tokens.access_token.clone(),
        json!({"new_password": "a-first-password"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    let new_tokens: Tokens = response.json().await.unwrap();
    // Every earlier session ended, as for any password change; the password signs in.
    app.assert_signed_out(&tokens).await;
    let login = app.login(&person.email, "a-first-password").await;
    assert_eq!(login.status(), StatusCode::OK);
    // From now on the current password is required.
    error_body(
        set_password(
            new_tokens.access_token.clone(),
            json!({"new_password": "another-password"}),
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let response = set_password(
        new_tokens.access_token.clone(),
        json!({"current_password": "a-first-password", "new_password": "another-password"}),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    // The identity still signs in.
    signed_in(&app, &provider, &person).await;
}

async fn states_are_single_use_and_expire(backend: Backend) {
    let (app, provider) = oidc_app(backend).await;
    let person = Person::new();
    provider.set_person(&person);
    let pkce = pkce();
    let (url, state) = start(&app, &pkce).await;
    let (code, _) = provider.authorize(&url).await;
    // Four devices present the same state at once: it is taken by one of them; only that one
    // reaches the provider.
    let statuses =
        futures::future::join_all((0..4).map(|_| callback(&app, &state, &code, &pkce.verifier)))
            .await
            .iter()
            .map(Response::status)
            .collect::<Vec<_>>();
    assert_eq!(
        statuses
            .iter()
            .filter(|status| **status == StatusCode::OK)
            .count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|status| **status == StatusCode::UNAUTHORIZED)
            .count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(provider.token_requests().len(), 1);
    // Used.
    error_body(
        callback(&app, &state, &code, &pkce.verifier).await,
        StatusCode::UNAUTHORIZED,
        "oidc_invalid",
    )
    .await;
    // Unknown.
    error_body(
        callback(&app, "never-issued", &code, &pkce.verifier).await,
        StatusCode::UNAUTHORIZED,
        "oidc_invalid",
    )
    .await;
    // Expired: the stored state outlives its time to live (shortened here to one second).
    let (url, state) = start(&app, &pkce).await;
    let (code, _) = provider.authorize(&url).await;
    let kv = &app.backends.kv;
    let stored = kv.get("oidc-states", &state).await.unwrap().unwrap();
    kv.put(
        "oidc-states",
        &state,
        &stored,
        Some(std::time::Duration::from_secs(1)),
    )
    .await
    .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    error_body(
        callback(&app, &state, &code, &pkce.verifier).await,
        StatusCode::UNAUTHORIZED,
        "oidc_invalid",
    )
    .await;
    // Only the first callback reached the token endpoint.
    assert_eq!(provider.token_requests().len(), 1);
}

async fn a_wrong_verifier_or_a_replayed_code_is_refused(backend: Backend) {
    let (app, provider) = oidc_app(backend).await;
    provider.set_person(&Person::new());
    let pkce_pair = pkce();
    let (url, state) = start(&app, &pkce_pair).await;
    let (code, _) = provider.authorize(&url).await;
    // Another verifier than the challenge's: refused, and the state is spent.
    error_body(
        callback(&app, &state, &code, &pkce().verifier).await,
        StatusCode::UNAUTHORIZED,
        "oidc_invalid",
    )
    .await;
    error_body(
        callback(&app, &state, &code, &pkce_pair.verifier).await,
        StatusCode::UNAUTHORIZED,
        "oidc_invalid",
    )
    .await;
    assert!(provider.token_requests().is_empty());
    // A malformed verifier is not even looked at.
    error_body(
        callback(&app, &state, &code, "short").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;

    // A code the provider already redeemed, under a fresh state: the provider refuses it.
    let (url, state) = start(&app, &pkce_pair).await;
    let (code, _) = provider.authorize(&url).await;
    assert_eq!(
        callback(&app, &state, &code, &pkce_pair.verifier)
            .await
            .status(),
        StatusCode::OK
    );
    let (_, fresh_state) = start(&app, &pkce_pair).await;
    error_body(
        callback(&app, &fresh_state, &code, &pkce_pair.verifier).await,
        StatusCode::UNAUTHORIZED,
        "oidc_invalid",
    )
    .await;
}

async fn every_check_of_the_id_token_refuses_a_forgery(backend: Backend) {
    let (app, provider) = oidc_app(backend).await;
    let users = user_count(&app).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = |pairs: Value| Forgery {
        claims: pairs.as_object().unwrap().clone(),
        ..Forgery::default()
    };
    let forgeries = [
        (
            "another audience",
            claims(json!({"aud": "someone-elses-client"})),
        ),
        (
            "another issuer",
            claims(json!({"iss": "https://accounts.evil.example"})),
        ),
        (
            "another sign-in's nonce",
            claims(json!({"nonce": "replayed-nonce"})),
        ),
        ("no nonce", claims(json!({"nonce": null}))),
        (
            "expired past the leeway",
            claims(json!({"exp": now - 61, "iat": now - 3700})),
        ),
        (
            "issued in the future",
            claims(json!({"iat": now + 600, "exp": now + 4200})),
        ),
        (
            "alg none",
            Forgery {
                alg: Some("none"),
                ..Forgery::default()
            },
        ),
        (
            "HS256 keyed with the public key",
            Forgery {
                alg: Some("HS256"),
                ..Forgery::default()
            },
        ),
        (
            "signed by another key",
            Forgery {
                foreign_key: true,
                ..Forgery::default()
            },
        ),
    ];
    for (what, forgery) in forgeries {
        provider.forge(forgery);
        let body = error_body(
            sign_in(&app, &provider, &Person::new()).await,
            StatusCode::UNAUTHORIZED,
            "oidc_invalid",
        )
        .await;
        // The answer does not say which check failed.
        assert!(
            !body["detail"].as_str().unwrap().contains("nonce"),
            "{what}"
        );
    }
    // The same, signed by a foreign ES256 key under the published ES256 kid.
    provider.use_es256();
    provider.forge(Forgery {
        foreign_key: true,
        ..Forgery::default()
    });
    error_body(
        sign_in(&app, &provider, &Person::new()).await,
        StatusCode::UNAUTHORIZED,
        "oidc_invalid",
    )
    .await;
    // Within the leeway is fine.
    provider.forge(claims(json!({"exp": now - 30})));
    signed_in(&app, &provider, &Person::new()).await;
    assert_eq!(user_count(&app).await, users + 1);

    // An honest token whose email the provider has not verified.
    provider.forge(Forgery::default());
    let unverified = Person {
        email_verified: false,
        ..Person::new()
    };
    error_body(
        sign_in(&app, &provider, &unverified).await,
        StatusCode::FORBIDDEN,
        "email_unverified",
    )
    .await;
    assert_eq!(user_count(&app).await, users + 1);
}

async fn keys_are_cached_and_refetched_once_on_an_unknown_kid(backend: Backend) {
    let (app, provider) = oidc_app(backend).await;
    signed_in(&app, &provider, &Person::new()).await;
    signed_in(&app, &provider, &Person::new()).await;
    // max-age=3600: fetched once.
    assert_eq!(provider.jwks_fetches(), 1);

    // The provider rotates: the unknown kid makes the server fetch the keys again, once.
    provider.rotate();
    signed_in(&app, &provider, &Person::new()).await;
    assert_eq!(provider.jwks_fetches(), 2);
    signed_in(&app, &provider, &Person::new()).await;
    assert_eq!(provider.jwks_fetches(), 2);

    // A kid that is not there even after refetching: one more fetch, then refused.
    provider.forge(Forgery {
        unknown_kid: true,
        ..Forgery::default()
    });
    error_body(
        sign_in(&app, &provider, &Person::new()).await,
        StatusCode::UNAUTHORIZED,
        "oidc_invalid",
    )
    .await;
    assert_eq!(provider.jwks_fetches(), 3);

    // A provider that says not to cache (from its next answer on: rotated keys) is asked
    // every time.
    provider.forge(Forgery::default());
    provider.set_jwks_max_age(0);
    provider.rotate();
    signed_in(&app, &provider, &Person::new()).await;
    signed_in(&app, &provider, &Person::new()).await;
    signed_in(&app, &provider, &Person::new()).await;
    assert_eq!(provider.jwks_fetches(), 6);
}

async fn redirects_methods_and_providers_are_checked_before_anything(backend: Backend) {
    let (app, provider) = oidc_app(backend).await;
    let pkce = pkce();
    let body = |redirect: &str, method: &str| {
        json!({"provider": "google", "redirect_uri": redirect,
               "code_challenge": pkce.challenge, "code_challenge_method": method})
    };
    for redirect in [
        "https://evil.example/callback",
        "http://evil.example:8080/callback",
        "http://localhost:8080/callback",
        "http://127.0.0.1/callback",
        "http://127.0.0.1:8080/callback#fragment",
        "not a url",
    ] {
        error_body(
            start_with(&app, &body(redirect, "S256")).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "redirect_uri_not_allowed",
        )
        .await;
    }
    error_body(
        start_with(&app, &body(REDIRECT, "plain")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unsupported_challenge_method",
    )
    .await;
    let mut unknown = body(REDIRECT, "S256");
    unknown["provider"] = json!("github");
    error_body(
        start_with(&app, &unknown).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_provider",
    )
    .await;
    let mut short = body(REDIRECT, "S256");
    short["code_challenge"] = json!("too-short");
    error_body(
        start_with(&app, &short).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    // None of these asked the provider anything.
    assert!(provider.authorizations().is_empty());

    // Without GOOGLE_CLIENT_ID there is no provider.
    let plain = spawn_app(backend).await;
    let providers: Value = plain
        .get("/api/v1/auth/oidc/providers")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(providers, json!([]));
    error_body(
        start_with(&plain, &body(REDIRECT, "S256")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unknown_provider",
    )
    .await;
}

async fn a_provider_that_is_down_is_503(backend: Backend) {
    let (app, provider) = oidc_app(backend).await;
    provider.set_person(&Person::new());
    let pkce = pkce();
    // Down before the discovery document was read: the start cannot build the URL.
    provider.set_down(true);
    error_body(
        start_with(
            &app,
            &json!({"provider": "google", "redirect_uri": REDIRECT,
                    "code_challenge": pkce.challenge, "code_challenge_method": "S256"}),
        )
        .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "provider_unavailable",
    )
    .await;
    // Down between the redirect and the callback: the token endpoint cannot be reached.
    provider.set_down(false);
    let (url, state) = start(&app, &pkce).await;
    let (code, _) = provider.authorize(&url).await;
    provider.set_down(true);
    error_body(
        callback(&app, &state, &code, &pkce.verifier).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "provider_unavailable",
    )
    .await;

    // A provider nobody answers for at all.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = format!("http://127.0.0.1:{port}");
    let gone = spawn_app_with(
        backend,
        &[
            ("GOOGLE_CLIENT_ID", CLIENT_ID),
            ("GOOGLE_CLIENT_SECRET", CLIENT_SECRET),
            ("GOOGLE_ISSUER", &issuer),
        ],
    )
    .await;
    error_body(
        start_with(
            &gone,
            &json!({"provider": "google", "redirect_uri": REDIRECT,
                    "code_challenge": pkce.challenge, "code_challenge_method": "S256"}),
        )
        .await,
        StatusCode::SERVICE_UNAVAILABLE,
        "provider_unavailable",
    )
    .await;
}

async fn a_disabled_account_cannot_sign_in_with_its_identity(backend: Backend) {
    let (app, provider) = oidc_app(backend).await;
    let admin = app.register_user().await;
    adiuva_db::sqlx::query("UPDATE users SET role = 'admin' WHERE id = $1")
        .bind(&admin.id)
        .execute(app.database.db.pool())
        .await
        .unwrap();
    let person = Person::new();
    let tokens = signed_in(&app, &provider, &person).await;
    let id = me(&app, &tokens.access_token).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let response = app
        .request(Method::POST, &format!("/api/v1/admin/users/{id}/disable"))
        .bearer_auth(&admin.tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    app.assert_signed_out(&tokens).await;
    error_body(
        sign_in(&app, &provider, &person).await,
        StatusCode::FORBIDDEN,
        "account_disabled",
    )
    .await;
}

async fn failed_callbacks_count_against_the_address(backend: Backend) {
    let (app, provider) = oidc_app_with(backend, &[("AUTH_FAILURES_PER_ADDRESS", "3")]).await;
    provider.set_person(&Person::new());
    let pkce = pkce();
    // What is refused before any check (a malformed verifier) and what the provider cannot
    // vouch for (an unverified email) are no guesses: they do not count.
    error_body(
        callback(&app, "state", "code", "short").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    let unverified = Person {
        email_verified: false,
        ..Person::new()
    };
    error_body(
        sign_in(&app, &provider, &unverified).await,
        StatusCode::FORBIDDEN,
        "email_unverified",
    )
    .await;
    for guess in 0..3 {
        error_body(
            callback(
                &app,
                &format!("guessed-state-{guess}"),
                "code",
                &pkce.verifier,
            )
            .await,
            StatusCode::UNAUTHORIZED,
            "oidc_invalid",
        )
        .await;
    }
    // Past the cap, even an honest callback from the address waits.
    let (url, state) = start(&app, &pkce).await;
    let (code, _) = provider.authorize(&url).await;
    let refused = callback(&app, &state, &code, &pkce.verifier).await;
    assert!(refused.headers().contains_key("retry-after"));
    error_body(refused, StatusCode::TOO_MANY_REQUESTS, "too_many_failures").await;
    // Refused before anything was asked of the provider: only the unverified sign-in reached
    // its token endpoint.
    assert_eq!(provider.token_requests().len(), 1);
}
