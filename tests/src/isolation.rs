//! The two-user matrix: user B tries every records, uploads, backup and vector route with user
//! A's ids and gets 404 or nothing, and A's data is unchanged afterwards.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, b64, error_body, sha, spawn_app};

backend_tests!(another_users_ids_get_404_or_nothing);

async fn another_users_ids_get_404_or_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.pro_user().await;
    let bob = app.pro_user().await;
    let (a, b) = (&alice.tokens.access_token, &bob.tokens.access_token);

    let record = app.record(a, "tasks", b"alice-secret").await;
    let backup: Value = app
        .put_backup(a, b"alice-backup", 1_767_225_600_000)
        .await
        .json()
        .await
        .unwrap();
    let backup_id = backup["id"].as_str().unwrap().to_owned();
    assert_eq!(
        app.upsert_vectors(a, &[("alice-note", b"alice-vector", None)])
            .await
            .status(),
        StatusCode::OK
    );
    let ticket =
        json!({"purpose": "record", "table": "notes", "size_bytes": 5, "checksum": sha(b"hello")});
    let ticket: Value = app
        .request(Method::POST, "/api/v1/storage/uploads")
        .bearer_auth(a)
        .json(&ticket)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let upload_id = ticket["upload_id"].as_str().unwrap().to_owned();

    // Records.
    error_body(
        app.get_record(b, &record).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    error_body(
        app.update_record(b, &record, b"bob-was-here", None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    error_body(
        app.update_record(b, &record, b"bob-was-here", Some("\"1\""))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    error_body(
        app.delete_record(b, &record).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let bobs_list: Value = app
        .get_authed("/api/v1/storage/records?table=tasks", b)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bobs_list, json!([]));
    // Uploads: neither commit Alice's upload nor start one that overwrites her record.
    let commit = format!("/api/v1/storage/uploads/{upload_id}/commit");
    error_body(
        app.request(Method::POST, &commit)
            .bearer_auth(b)
            .send()
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let hijack =
        json!({"purpose": "record", "record_id": record, "size_bytes": 3, "checksum": sha(b"bob")});
    let hijack = app
        .request(Method::POST, "/api/v1/storage/uploads")
        .bearer_auth(b)
        .json(&hijack)
        .send()
        .await
        .unwrap();
    error_body(hijack, StatusCode::NOT_FOUND, "not_found").await;
    // Backups.
    error_body(
        app.get_authed("/api/v1/backup", b).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let bobs_history: Value = app
        .get_authed("/api/v1/backup/history", b)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(bobs_history, json!([]));
    let delete_backup = app
        .request(Method::DELETE, &format!("/api/v1/backup/{backup_id}"))
        .bearer_auth(b)
        .send()
        .await
        .unwrap();
    error_body(delete_backup, StatusCode::NOT_FOUND, "not_found").await;
    // Vectors: Bob's search never sees Alice's points, and his delete of her ids does nothing.
    assert!(app.search_ids(b, b"alice-vector", None).await.is_empty());
    let delete = json!({"ids": ["alice-note"]});
    let deleted = app
        .request(Method::DELETE, "/api/v1/storage/vectors")
        .bearer_auth(b)
        .json(&delete)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    // Bob's own point with Alice's id is his, and does not replace hers.
    assert_eq!(
        app.upsert_vectors(b, &[("alice-note", b"bob-vector", None)])
            .await
            .status(),
        StatusCode::OK
    );

    // Alice's data is intact.
    let download = app.get_record(a, &record).await;
    assert_eq!(download.headers()["etag"], "\"1\"");
    assert_eq!(download.bytes().await.unwrap().as_ref(), b"alice-secret");
    assert_eq!(
        app.get_authed("/api/v1/backup", a)
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"alice-backup"
    );
    let hits: Value = app
        .search_vectors(a, b"alice-vector", None, 5)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hits["results"].as_array().unwrap().len(), 1);
    assert_eq!(hits["results"][0]["blob"], b64(b"alice-vector").as_str());
    assert_eq!(
        app.request(Method::POST, &commit)
            .bearer_auth(a)
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::CONFLICT
    );
}
