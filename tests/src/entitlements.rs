//! `GET /billing/entitlements` on both pairings: the tier matrix as the desktop app reads it,
//! and the caller's usage from the same counters the quotas are checked against, and their AI
//! token budget as `GET /chat/usage` shows it.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, TestUser, spawn_app_with};

backend_tests!(
    a_free_user_reads_the_free_matrix_and_no_storage,
    usage_follows_what_the_user_stores_and_deletes,
    the_route_needs_a_token,
    a_seat_in_an_active_team_gives_the_team_s_entitlements,
    entitlements_carry_the_ai_budget_as_chat_usage_shows_it,
);

async fn entitlements(app: &TestApp, user: &TestUser) -> Value {
    let response = app
        .get_authed("/api/v1/billing/entitlements", &user.tokens.access_token)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

async fn a_free_user_reads_the_free_matrix_and_no_storage(backend: Backend) {
    let app = spawn_app_with(backend, &[("QUOTA_UNIT_BYTES", "100")]).await;
    let user = app.register_user().await;
    let body = entitlements(&app, &user).await;
    assert_eq!(body["tier"], "free");
    assert_eq!(body["tier_source"], "own");
    assert_eq!(
        body["features"],
        json!({
            "agents": 3, "batch_active": 2, "providers": 1, "batch_builder": false,
            "plugin_marketplace": false, "sso": false, "requests_per_minute": 20,
        })
    );
    assert_eq!(body["usage"]["storage"], json!({"used": 0, "limit": 0}));
    assert_eq!(body["usage"]["records"], json!({"used": 0, "limit": 0}));
    assert_eq!(
        body["usage"]["vector_points"],
        json!({"used": 0, "limit": 1000})
    );
}

async fn usage_follows_what_the_user_stores_and_deletes(backend: Backend) {
    let app = spawn_app_with(backend, &[("QUOTA_UNIT_BYTES", "100")]).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let first = app.record(token, "tasks", b"0123456789").await;
    app.record(token, "tasks", b"abc").await;
    let upserted = app
        .upsert_vectors(token, &[("p1", b"blob-of-seven".as_slice(), None)])
        .await;
    assert_eq!(upserted.status(), StatusCode::OK);

    let body = entitlements(&app, &user).await;
    assert_eq!(body["tier"], "pro");
    assert_eq!(
        body["features"]["agents"],
        Value::Null,
        "pro: unlimited agents"
    );
    assert_eq!(body["features"]["plugin_marketplace"], false);
    assert_eq!(body["features"]["requests_per_minute"], 60);
    // Pro: 5 quota units (here 100 bytes each) of storage and of backups.
    assert_eq!(body["usage"]["storage"], json!({"used": 13, "limit": 500}));
    assert_eq!(body["usage"]["backup"], json!({"used": 0, "limit": 500}));
    assert_eq!(
        body["usage"]["records"],
        json!({"used": 2, "limit": 100_000})
    );
    assert_eq!(body["usage"]["vector_points"]["used"], 1);
    assert_eq!(body["usage"]["vector_bytes"]["used"], 13);

    let deleted = app.delete_record(token, &first).await;
    assert!(deleted.status().is_success());
    let body = entitlements(&app, &user).await;
    assert_eq!(body["usage"]["storage"], json!({"used": 3, "limit": 500}));
    assert_eq!(body["usage"]["records"]["used"], 1);

    // Someone else's counters are not the caller's.
    let other = app.pro_user().await;
    let body = entitlements(&app, &other).await;
    assert_eq!(body["usage"]["storage"]["used"], 0);
    assert_eq!(body["usage"]["vector_points"]["used"], 0);
}

async fn the_route_needs_a_token(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let response = app
        .request(reqwest::Method::GET, "/api/v1/billing/entitlements")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

async fn a_seat_in_an_active_team_gives_the_team_s_entitlements(backend: Backend) {
    let app = spawn_app_with(backend, &[]).await;
    let owner = app.register_user().await;
    let created = app
        .request(reqwest::Method::POST, "/api/v1/teams")
        .bearer_auth(&owner.tokens.access_token)
        .json(&json!({"name": "Studio"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let team: Value = created.json().await.unwrap();
    let body = entitlements(&app, &owner).await;
    assert_eq!(
        (body["tier"].clone(), body["tier_source"].clone()),
        (json!("free"), json!("own"))
    );

    crate::teams::activate_team(&app, team["id"].as_str().unwrap(), 1).await;
    let body = entitlements(&app, &owner).await;
    assert_eq!(body["tier"], "team");
    assert_eq!(body["tier_source"], "team");
    assert_eq!(body["features"]["sso"], true);
    assert_eq!(body["features"]["requests_per_minute"], 200);
    assert_eq!(body["usage"]["storage"]["limit"], Value::Null);
}

async fn entitlements_carry_the_ai_budget_as_chat_usage_shows_it(backend: Backend) {
    let llm = crate::llm::ScriptedLlm::start().await;
    let base = llm.base_url();
    // A limit of its own, to show billing reads the same settings as chat.
    let app = spawn_app_with(
        backend,
        &[
            ("LLM_BASE_URL", base.as_str()),
            ("AI_MONTHLY_TOKENS_FREE", "123456"),
        ],
    )
    .await;
    let user = app.register_user().await;

    // Before any chat: nothing used, the month's limit.
    let body = entitlements(&app, &user).await;
    assert_eq!(body["ai_usage"], chat_usage(&app, &user).await);
    assert_eq!(body["ai_usage"]["used_tokens"], 0);
    assert_eq!(body["ai_usage"]["limit_tokens"], 123_456);
    assert_eq!(body["ai_usage"]["source"], "own");
    // The entitlements themselves are as they were.
    assert_eq!(body["tier"], "free");
    assert_eq!(body["features"]["agents"], 3);

    // After a chat: the same figures, per model.
    llm.push_all([
        crate::llm::Reply::Text(vec!["note_agent".to_owned()]),
        crate::llm::Reply::Text(vec!["No notes yet.".to_owned()]),
    ]);
    let chatted = app
        .client
        .post(app.url("/api/v1/chat"))
        .bearer_auth(&user.tokens.access_token)
        .json(&json!({"message": "my notes?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(chatted.status(), StatusCode::OK);
    let usage = chat_usage(&app, &user).await;
    assert!(usage["used_tokens"].as_u64().unwrap() > 0, "{usage}");
    assert_eq!(usage["by_model"].as_array().unwrap().len(), 2);
    let body = entitlements(&app, &user).await;
    assert_eq!(body["ai_usage"], usage);
}

async fn chat_usage(app: &TestApp, user: &TestUser) -> Value {
    let response = app
        .get_authed("/api/v1/chat/usage", &user.tokens.access_token)
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}
