//! `Idempotency-Key` on creating POSTs, on both pairings (memory and DynamoDB on moto).

use std::time::Duration;

use adiuva_limits::idempotency::fingerprint;
use adiuva_limits::{Claim, Limits};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, b64, error_body, sha, spawn_app, spawn_app_with};

backend_tests!(
    the_same_key_replays_the_first_answer,
    the_same_key_with_another_body_is_422,
    a_key_still_in_flight_is_409,
    concurrent_requests_with_one_key_create_one_record,
    server_errors_are_not_stored,
    keys_are_scoped_per_user_and_route,
    stored_answers_expire,
    requests_without_a_key_work_as_before,
);

const RECORDS: &str = "/api/v1/storage/records";

fn record_body(bytes: &[u8]) -> Value {
    json!({"table": "notes", "blob": b64(bytes), "checksum": sha(bytes)})
}

async fn create(app: &TestApp, token: &str, key: Option<&str>, body: &Value) -> Response {
    let mut request = app
        .request(Method::POST, RECORDS)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    request.send().await.unwrap()
}

async fn record_ids(app: &TestApp, token: &str) -> Vec<String> {
    let list: Value = app.get_authed(RECORDS, token).await.json().await.unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|record| record["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn the_same_key_replays_the_first_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let body = record_body(b"first");
    let first = create(&app, token, Some("key-1"), &body).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    let again = create(&app, token, Some("key-1"), &body).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["content-type"], "application/json");
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    assert_eq!(
        record_ids(&app, token).await,
        [first["id"].as_str().unwrap()]
    );
}

async fn the_same_key_with_another_body_is_422(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let created = create(&app, token, Some("key-2"), &record_body(b"one")).await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let other = create(&app, token, Some("key-2"), &record_body(b"two")).await;
    error_body(
        other,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(record_ids(&app, token).await.len(), 1);
}

async fn a_key_still_in_flight_is_409(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let body = record_body(b"slow");
    // The first request with the key is being processed: its claim is in the store.
    let limits: Limits = app.context.get().unwrap();
    let print = fingerprint("POST", RECORDS, body.to_string().as_bytes());
    let claim = limits
        .claim(&user.id, &format!("POST {RECORDS}"), "key-3", &print)
        .await
        .unwrap();
    let Claim::Fresh(ticket) = claim else {
        panic!("the key is new");
    };
    let second = create(&app, token, Some("key-3"), &body).await;
    assert_eq!(second.headers()["retry-after"], "1");
    error_body(second, StatusCode::CONFLICT, "idempotency_key_in_use").await;
    assert!(record_ids(&app, token).await.is_empty());
    // Once the first gives up without an answer, the key can be used again.
    limits.abandon(ticket).await;
    assert_eq!(
        create(&app, token, Some("key-3"), &body).await.status(),
        StatusCode::CREATED
    );
}

async fn concurrent_requests_with_one_key_create_one_record(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let body = record_body(b"once");
    let requests = (0..6).map(|_| {
        let request = app
            .request(Method::POST, RECORDS)
            .bearer_auth(&user.tokens.access_token)
            .header("content-type", "application/json")
            .header("idempotency-key", "key-4")
            .body(body.to_string());
        tokio::spawn(async move { request.send().await.unwrap().status() })
    });
    let mut statuses = Vec::new();
    for request in requests {
        statuses.push(request.await.unwrap());
    }
    assert!(
        statuses
            .iter()
            .all(|status| *status == StatusCode::CREATED || *status == StatusCode::CONFLICT),
        "{statuses:?}"
    );
    assert!(statuses.contains(&StatusCode::CREATED));
    assert_eq!(record_ids(&app, &user.tokens.access_token).await.len(), 1);
}

async fn server_errors_are_not_stored(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let body = record_body(b"retry me");
    app.faults.fail_next(adiuva_blob::Op::Put);
    let failed = create(&app, token, Some("key-5"), &body).await;
    assert_eq!(failed.status(), StatusCode::SERVICE_UNAVAILABLE);
    // The retry with the same key is processed, not answered with the stored failure.
    let retried = create(&app, token, Some("key-5"), &body).await;
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert!(retried.headers().get("idempotent-replayed").is_none());
    assert_eq!(record_ids(&app, token).await.len(), 1);
}

async fn keys_are_scoped_per_user_and_route(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.pro_user().await;
    let bob = app.pro_user().await;
    let body = record_body(b"same bytes");
    let hers: Value = create(&app, &alice.tokens.access_token, Some("shared"), &body)
        .await
        .json()
        .await
        .unwrap();
    // Bob's request with Alice's key is his own: processed, his record.
    let his = create(&app, &bob.tokens.access_token, Some("shared"), &body).await;
    assert_eq!(his.status(), StatusCode::CREATED);
    assert!(his.headers().get("idempotent-replayed").is_none());
    let his: Value = his.json().await.unwrap();
    assert_ne!(his["id"], hers["id"]);
    assert_eq!(record_ids(&app, &bob.tokens.access_token).await.len(), 1);
    // The same key on another route is another key.
    let upload = app
        .request(Method::POST, "/api/v1/storage/uploads")
        .bearer_auth(&alice.tokens.access_token)
        .header("idempotency-key", "shared")
        .json(&json!({"purpose": "record", "table": "notes", "size_bytes": 5, "checksum": sha(b"bytes")}))
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), StatusCode::CREATED);
}

async fn stored_answers_expire(backend: Backend) {
    let app = spawn_app_with(backend, &[("IDEMPOTENCY_TTL_SECONDS", "1")]).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let body = record_body(b"short-lived");
    let first: Value = create(&app, token, Some("key-6"), &body)
        .await
        .json()
        .await
        .unwrap();
    // DynamoDB's TTL has whole seconds: wait past the next one.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let later = create(&app, token, Some("key-6"), &body).await;
    assert_eq!(later.status(), StatusCode::CREATED);
    assert!(later.headers().get("idempotent-replayed").is_none());
    let later: Value = later.json().await.unwrap();
    assert_ne!(later["id"], first["id"]);
}

async fn requests_without_a_key_work_as_before(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let body = record_body(b"twice");
    for _ in 0..2 {
        assert_eq!(
            create(&app, token, None, &body).await.status(),
            StatusCode::CREATED
        );
    }
    assert_eq!(record_ids(&app, token).await.len(), 2);
    // A malformed key is refused, not ignored.
    let bad = create(&app, token, Some("has spaces"), &body).await;
    error_body(bad, StatusCode::BAD_REQUEST, "invalid_idempotency_key").await;
}
