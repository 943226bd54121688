//! Encrypted backups: upload, latest with If-Modified-Since, history, delete, tier limits.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::backend_tests;
use crate::harness::{Backend, error_body, sha, spawn_app, spawn_app_with};

backend_tests!(
    backups_round_trip_with_history,
    backup_errors_and_tier_limits,
    counts_are_limited_per_tier_and_the_history_is_paged,
);

const JAN_1_2026: i64 = 1_767_225_600_000;

async fn backups_round_trip_with_history(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    error_body(
        app.get_authed("/api/v1/backup", token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;

    let first = app.put_backup(token, b"backup-one", JAN_1_2026).await;
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["ok"], true);
    let first_id = first["id"].as_str().unwrap().to_owned();
    let second: Value = app
        .put_backup(token, b"backup-two!", JAN_1_2026 + 86_400_000)
        .await
        .json()
        .await
        .unwrap();

    let latest = app.get_authed("/api/v1/backup", token).await;
    assert_eq!(latest.status(), StatusCode::OK);
    assert_eq!(
        latest.headers()["x-backup-timestamp"],
        (JAN_1_2026 + 86_400_000).to_string().as_str()
    );
    assert_eq!(
        latest.headers()["x-backup-checksum"],
        sha(b"backup-two!").as_str()
    );
    assert_eq!(
        latest.headers()["last-modified"],
        "Fri, 02 Jan 2026 00:00:00 GMT"
    );
    assert_eq!(latest.bytes().await.unwrap().as_ref(), b"backup-two!");

    let since = |date: &'static str| {
        app.request(Method::GET, "/api/v1/backup")
            .bearer_auth(token)
            .header("if-modified-since", date)
            .send()
    };
    let unchanged = since("Fri, 02 Jan 2026 00:00:00 GMT").await.unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    assert!(unchanged.bytes().await.unwrap().is_empty());
    assert_eq!(
        since("Sat, 03 Jan 2026 10:00:00 GMT")
            .await
            .unwrap()
            .status(),
        StatusCode::NOT_MODIFIED
    );
    assert_eq!(
        since("Thu, 01 Jan 2026 23:59:59 GMT")
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        since("not a date").await.unwrap().status(),
        StatusCode::OK,
        "an unreadable date is ignored"
    );

    let history: Value = app
        .get_authed("/api/v1/backup/history", token)
        .await
        .json()
        .await
        .unwrap();
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["id"], second["id"]);
    assert_eq!(history[1]["id"], first_id.as_str());
    for field in [
        "version",
        "timestamp",
        "checksum",
        "chunk_count",
        "size_bytes",
    ] {
        assert!(
            history[1].get(field).is_some(),
            "history entries carry {field}"
        );
    }
    assert_eq!(app.usage(&user.id).await.1, 21);

    let path = format!("/api/v1/backup/{first_id}");
    assert_eq!(
        app.request(Method::DELETE, &path)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let again = app
        .request(Method::DELETE, &path)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    error_body(again, StatusCode::NOT_FOUND, "not_found").await;
    let history: Value = app
        .get_authed("/api/v1/backup/history", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history.as_array().unwrap().len(), 1);
    assert_eq!(app.usage(&user.id).await.1, 11);
    assert_eq!(app.blob_keys(&user.id).await.len(), 1);
}

async fn backup_errors_and_tier_limits(backend: Backend) {
    let app = spawn_app_with(backend, &[("QUOTA_UNIT_BYTES", "100")]).await;
    let free = app.register_user().await;
    error_body(
        app.put_backup(&free.tokens.access_token, b"x", JAN_1_2026)
            .await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;

    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let put = |headers: &[(&'static str, String)], body: &'static [u8]| {
        let mut request = app
            .request(Method::PUT, "/api/v1/backup")
            .bearer_auth(token)
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send()
    };
    let complete = |checksum: String| {
        vec![
            ("x-backup-version", "1".to_owned()),
            ("x-backup-timestamp", JAN_1_2026.to_string()),
            ("x-backup-checksum", checksum),
        ]
    };
    let missing = put(&complete(sha(b"data"))[..2], b"data").await.unwrap();
    error_body(missing, StatusCode::BAD_REQUEST, "missing_header").await;
    let mut bad_version = complete(sha(b"data"));
    bad_version[0].1 = "one".into();
    error_body(
        put(&bad_version, b"data").await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_header",
    )
    .await;
    error_body(
        put(&complete(sha(b"other")), b"data").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "checksum_mismatch",
    )
    .await;
    // Pro holds 5 units = 500 bytes of backups.
    assert_eq!(
        app.put_backup(token, &[7u8; 300], JAN_1_2026)
            .await
            .status(),
        StatusCode::CREATED
    );
    error_body(
        app.put_backup(token, &[8u8; 300], JAN_1_2026).await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    let history: Value = app
        .get_authed("/api/v1/backup/history", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        history.as_array().unwrap().len(),
        1,
        "refused backups leave nothing"
    );
    assert_eq!(app.blob_keys(&user.id).await.len(), 1);
}

/// Pro keeps at most 100 backups (and free no records at all, not even empty ones); deleting
/// gives the room back. The history comes a page at a time.
async fn counts_are_limited_per_tier_and_the_history_is_paged(backend: Backend) {
    let app = spawn_app(backend).await;
    let free = app.register_user().await;
    error_body(
        app.create_record(&free.tokens.access_token, "tasks", b"")
            .await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;

    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    for n in 0..100 {
        let stored = app.put_backup(token, b"", JAN_1_2026 + n).await;
        assert_eq!(stored.status(), StatusCode::CREATED, "backup {n}");
    }
    let over = app.put_backup(token, b"", JAN_1_2026 + 100).await;
    let body = error_body(over, StatusCode::PAYMENT_REQUIRED, "quota_exceeded").await;
    assert!(
        body["detail"].as_str().unwrap().contains("100 backups"),
        "{body}"
    );

    let page = |query: &'static str| {
        let app = &app;
        async move {
            app.get_authed(&format!("/api/v1/backup/history{query}"), token)
                .await
        }
    };
    let all: Value = page("").await.json().await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 100);
    assert_eq!(all[0]["timestamp"], JAN_1_2026 + 99);
    let last: Value = page("?limit=30&page=4").await.json().await.unwrap();
    let timestamps: Vec<i64> = last
        .as_array()
        .unwrap()
        .iter()
        .map(|backup| backup["timestamp"].as_i64().unwrap())
        .collect();
    assert_eq!(
        timestamps,
        (0..10).rev().map(|n| JAN_1_2026 + n).collect::<Vec<_>>()
    );
    for bad in ["?limit=501", "?limit=0", "?page=0"] {
        error_body(
            page(bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        )
        .await;
    }

    // Deleting one makes room for one.
    let oldest = last[9]["id"].as_str().unwrap();
    let deleted = app
        .request(reqwest::Method::DELETE, &format!("/api/v1/backup/{oldest}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(
        app.put_backup(token, b"", JAN_1_2026 + 100).await.status(),
        StatusCode::CREATED
    );
}
