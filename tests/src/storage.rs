//! Encrypted records: the round trip, every documented error, versions, quotas (also under
//! concurrency) and the large-blob upload flow, on PostgreSQL + S3 and SQLite + local folder.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, b64, error_body, sha, spawn_app, spawn_app_with};

backend_tests!(
    records_round_trip_with_versions,
    bad_input_is_refused_and_stores_nothing,
    stale_if_match_is_412_and_changes_nothing,
    lists_page_newest_first_and_filter_by_table,
    free_users_cannot_store,
    pro_quota_holds_also_under_concurrency,
    over_quota_deletes_and_shrinking_writes_still_work,
    large_blobs_take_the_upload_flow,
    uploads_are_verified_before_they_count,
    open_uploads_are_capped_and_count_against_the_quota,
    large_blobs_are_read_through_a_redirect,
    upload_urls_are_used_up_once_their_record_moves_on,
);

/// An upload URL names the one blob key it was issued for. Once its upload is committed and
/// the record moves on to a newer blob (whose write frees the old key), the URL must not
/// write the old key again: locally it is refused (412) because no open upload targets that
/// key; on S3, which cannot be asked, whatever the URL stores is no record's and no commit can
/// use it.
async fn upload_urls_are_used_up_once_their_record_moves_on(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let first = b"the first version, uploaded".to_vec();
    let request = json!({"purpose": "record", "table": "notes", "size_bytes": first.len(), "checksum": sha(&first)});
    let ticket: Value = app
        .request(Method::POST, "/api/v1/storage/uploads")
        .bearer_auth(token)
        .json(&request)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(upload_to(&app, &ticket, &first).await.is_success());
    let commit = format!(
        "/api/v1/storage/uploads/{}/commit",
        ticket["upload_id"].as_str().unwrap()
    );
    let committed = app
        .request(Method::POST, &commit)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(committed.status(), StatusCode::OK);
    let id = ticket["target_id"].as_str().unwrap();
    // The record moves on: its first blob's key is deleted.
    let second = b"the second version".to_vec();
    let updated = app.update_record(token, id, &second, None).await;
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(app.blob_keys(&user.id).await.len(), 1);

    let reused = upload_to(&app, &ticket, &first).await;
    if backend == Backend::Sqlite {
        assert_eq!(reused, StatusCode::PRECONDITION_FAILED);
        assert_eq!(
            app.blob_keys(&user.id).await.len(),
            1,
            "the used-up URL stored a blob"
        );
    }
    // Either way the old upload cannot be committed again, and the record keeps its blob.
    let again = app
        .request(Method::POST, &commit)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    error_body(again, StatusCode::NOT_FOUND, "not_found").await;
    let current = app.get_record(token, id).await;
    assert_eq!(current.bytes().await.unwrap().as_ref(), second.as_slice());
}

async fn records_round_trip_with_versions(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;

    let created = app.create_record(token, "tasks", b"ciphertext-v1").await;
    assert_eq!(created.status(), StatusCode::CREATED);
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["version"], 1);
    assert!(
        created["created_at"].as_i64().unwrap() > 1_700_000_000_000,
        "timestamps are milliseconds"
    );

    let download = app.get_record(token, &id).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(
        download.headers()["content-type"],
        "application/octet-stream"
    );
    assert_eq!(
        download.headers()["x-checksum"],
        sha(b"ciphertext-v1").as_str()
    );
    assert_eq!(download.headers()["etag"], "\"1\"");
    assert_eq!(download.bytes().await.unwrap().as_ref(), b"ciphertext-v1");

    let listed: Value = app
        .get_authed("/api/v1/storage/records", token)
        .await
        .json()
        .await
        .unwrap();
    let entry = &listed.as_array().unwrap()[0];
    assert_eq!(entry["id"], id.as_str());
    assert_eq!(entry["table"], "tasks");
    assert_eq!(entry["checksum"], sha(b"ciphertext-v1").as_str());
    assert!(
        entry.get("blob").is_none(),
        "list must not carry blobs: {entry}"
    );

    let updated = app
        .update_record(token, &id, b"ciphertext-version-2", Some("\"1\""))
        .await;
    assert_eq!(updated.status(), StatusCode::OK);
    assert_eq!(updated.json::<Value>().await.unwrap()["version"], 2);
    let download = app.get_record(token, &id).await;
    assert_eq!(download.headers()["etag"], "\"2\"");
    assert_eq!(
        download.bytes().await.unwrap().as_ref(),
        b"ciphertext-version-2"
    );
    // Without If-Match the update applies to whatever version is current.
    assert_eq!(
        app.update_record(token, &id, b"v3", None).await.status(),
        StatusCode::OK
    );
    // The old blobs are gone: one blob for one record.
    assert_eq!(app.blob_keys(&user.id).await.len(), 1);
    assert_eq!(app.usage(&user.id).await.0, 2);

    let deleted = app.delete_record(token, &id).await;
    assert_eq!(deleted.json::<Value>().await.unwrap(), json!({"ok": true}));
    error_body(
        app.get_record(token, &id).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    error_body(
        app.delete_record(token, &id).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert!(app.blob_keys(&user.id).await.is_empty());
    assert_eq!(app.usage(&user.id).await.0, 0);
}

async fn bad_input_is_refused_and_stores_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let post = |body: Value| {
        app.request(Method::POST, "/api/v1/storage/records")
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let mismatch = post(json!({"table": "tasks", "blob": b64(b"abc"), "checksum": sha(b"abd")}))
        .await
        .unwrap();
    error_body(mismatch, StatusCode::BAD_REQUEST, "checksum_mismatch").await;
    let malformed = post(json!({"table": "tasks", "blob": b64(b"abc"), "checksum": "ABC"}))
        .await
        .unwrap();
    error_body(
        malformed,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_checksum",
    )
    .await;
    let not_base64 = post(json!({"table": "tasks", "blob": "%%%", "checksum": sha(b"abc")}))
        .await
        .unwrap();
    error_body(
        not_base64,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    for table in ["", "Tasks", "../etc", "_backups", "9lives"] {
        let bad_table = post(json!({"table": table, "blob": b64(b"abc"), "checksum": sha(b"abc")}))
            .await
            .unwrap();
        error_body(
            bad_table,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        )
        .await;
    }
    let missing = post(json!({"table": "tasks", "blob": b64(b"abc")}))
        .await
        .unwrap();
    error_body(
        missing,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    let anonymous = app.post_json("/api/v1/storage/records", &json!({})).await;
    error_body(anonymous, StatusCode::UNAUTHORIZED, "missing_token").await;

    let listed: Value = app
        .get_authed("/api/v1/storage/records", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]));
    assert!(app.blob_keys(&user.id).await.is_empty());
    assert_eq!(app.usage(&user.id).await, (0, 0));

    // A bad update changes nothing either.
    let id = app.record(token, "tasks", b"original").await;
    let body = json!({"blob": b64(b"new"), "checksum": sha(b"other")});
    let path = format!("/api/v1/storage/records/{id}");
    let bad_update = app
        .request(Method::PUT, &path)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    error_body(bad_update, StatusCode::BAD_REQUEST, "checksum_mismatch").await;
    assert_eq!(
        app.get_record(token, &id)
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"original"
    );
}

async fn stale_if_match_is_412_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let id = app.record(token, "notes", b"laptop-version").await;
    assert_eq!(
        app.update_record(token, &id, b"phone-version", Some("\"1\""))
            .await
            .status(),
        StatusCode::OK
    );
    // The laptop still believes version 1 is current.
    let stale = app
        .update_record(token, &id, b"laptop-edit", Some("\"1\""))
        .await;
    error_body(stale, StatusCode::PRECONDITION_FAILED, "version_conflict").await;
    let weak = app
        .update_record(token, &id, b"laptop-edit", Some("W/\"1\""))
        .await;
    error_body(weak, StatusCode::PRECONDITION_FAILED, "version_conflict").await;
    let garbage = app
        .update_record(token, &id, b"laptop-edit", Some("yesterday"))
        .await;
    error_body(garbage, StatusCode::BAD_REQUEST, "invalid_if_match").await;
    let current = app.get_record(token, &id).await;
    assert_eq!(current.headers()["etag"], "\"2\"");
    assert_eq!(current.bytes().await.unwrap().as_ref(), b"phone-version");
    assert_eq!(
        app.blob_keys(&user.id).await.len(),
        1,
        "refused updates leave no blob behind"
    );
    assert_eq!(
        app.update_record(token, &id, b"merged", Some("2"))
            .await
            .status(),
        StatusCode::OK
    );
}

async fn lists_page_newest_first_and_filter_by_table(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let mut tasks = Vec::new();
    for n in 0..5 {
        tasks.push(
            app.record(token, "tasks", format!("task-{n}").as_bytes())
                .await,
        );
        tokio::time::sleep(std::time::Duration::from_millis(3)).await;
    }
    for n in 0..2 {
        app.record(token, "notes", format!("note-{n}").as_bytes())
            .await;
    }
    let ids = |body: Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let page = |query: &'static str| app.get_authed(query, token);
    let first: Value = page("/api/v1/storage/records?table=tasks&page=1&limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(first), vec![tasks[4].clone(), tasks[3].clone()]);
    let third: Value = page("/api/v1/storage/records?table=tasks&page=3&limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ids(third), vec![tasks[0].clone()]);
    let notes: Value = page("/api/v1/storage/records?table=notes")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(notes.as_array().unwrap().len(), 2);
    let all: Value = page("/api/v1/storage/records").await.json().await.unwrap();
    assert_eq!(all.as_array().unwrap().len(), 7);
    for bad in ["?limit=0", "?limit=201", "?page=0", "?table=Bad-Name"] {
        let response = app
            .get_authed(&format!("/api/v1/storage/records{bad}"), token)
            .await;
        error_body(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        )
        .await;
    }
    let response = app
        .get_authed("/api/v1/storage/records?page=abc", token)
        .await;
    error_body(response, StatusCode::BAD_REQUEST, "invalid_query").await;
}

async fn free_users_cannot_store(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let token = &user.tokens.access_token;
    error_body(
        app.create_record(token, "tasks", b"x").await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    error_body(
        app.create_record(token, "tasks", b"").await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    let upload = json!({"purpose": "record", "table": "tasks", "size_bytes": 10, "checksum": sha(b"0123456789")});
    let started = app
        .request(Method::POST, "/api/v1/storage/uploads")
        .bearer_auth(token)
        .json(&upload)
        .send()
        .await
        .unwrap();
    error_body(started, StatusCode::PAYMENT_REQUIRED, "quota_exceeded").await;
    assert!(app.blob_keys(&user.id).await.is_empty());
}

async fn pro_quota_holds_also_under_concurrency(backend: Backend) {
    // One quota unit is 100 bytes here, so pro (5 units) may hold 500 bytes.
    let app = spawn_app_with(backend, &[("QUOTA_UNIT_BYTES", "100")]).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let big = app.record(token, "tasks", &[1u8; 400]).await;
    error_body(
        app.create_record(token, "tasks", &[2u8; 101]).await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    error_body(
        app.update_record(token, &big, &[3u8; 501], None).await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    assert_eq!(
        app.get_record(token, &big)
            .await
            .bytes()
            .await
            .unwrap()
            .len(),
        400
    );
    assert_eq!(
        app.delete_record(token, &big).await.status(),
        StatusCode::OK
    );

    // Ten concurrent 100-byte uploads against a 500-byte quota: exactly five fit.
    let blobs: Vec<Vec<u8>> = (0..10u8).map(|n| vec![n; 100]).collect();
    let attempts = blobs
        .iter()
        .map(|blob| app.create_record(token, "tasks", blob));
    let statuses: Vec<StatusCode> = futures::future::join_all(attempts)
        .await
        .iter()
        .map(|r| r.status())
        .collect();
    let created = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::PAYMENT_REQUIRED)
        .count();
    assert_eq!((created, refused), (5, 5), "{statuses:?}");
    assert_eq!(app.usage(&user.id).await.0, 500);
    assert_eq!(
        app.blob_keys(&user.id).await.len(),
        5,
        "refused uploads leave no blob"
    );
}

async fn over_quota_deletes_and_shrinking_writes_still_work(backend: Backend) {
    let app = spawn_app_with(backend, &[("QUOTA_UNIT_BYTES", "100")]).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let a = app.record(token, "tasks", &[1u8; 300]).await;
    let b = app.record(token, "tasks", &[2u8; 200]).await;
    // The subscription ends: the user is now over the free quota of zero.
    app.set_subscription(&user.id, "pro", "canceled").await;
    error_body(
        app.update_record(token, &a, &[1u8; 301], None).await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    assert_eq!(
        app.update_record(token, &a, &[1u8; 50], None)
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(app.delete_record(token, &b).await.status(), StatusCode::OK);
    assert_eq!(app.usage(&user.id).await.0, 50);
    // Reading still works.
    assert_eq!(
        app.get_record(token, &a).await.bytes().await.unwrap().len(),
        50
    );
}

/// Uploads bytes to a ticket's URL as a client would.
async fn upload_to(app: &crate::harness::TestApp, ticket: &Value, bytes: &[u8]) -> StatusCode {
    let mut request = app
        .client
        .put(ticket["url"].as_str().unwrap())
        .body(bytes.to_vec());
    for (name, value) in ticket["headers"].as_object().unwrap() {
        request = request.header(name, value.as_str().unwrap());
    }
    request.send().await.unwrap().status()
}

async fn large_blobs_take_the_upload_flow(backend: Backend) {
    let app = spawn_app_with(backend, &[("MAX_BODY_BYTES", "4096")]).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let big: Vec<u8> = (0..20_000u32).map(|n| (n % 251) as u8).collect();

    let direct = app.create_record(token, "notes", &big).await;
    let body = error_body(direct, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("/api/v1/storage/uploads"),
        "{body}"
    );

    let start = |request: Value| {
        app.request(Method::POST, "/api/v1/storage/uploads")
            .bearer_auth(token)
            .json(&request)
            .send()
    };
    let ticket = start(json!({"purpose": "record", "table": "notes", "size_bytes": big.len(), "checksum": sha(&big)})).await.unwrap();
    assert_eq!(ticket.status(), StatusCode::CREATED);
    let ticket: Value = ticket.json().await.unwrap();
    assert_eq!(ticket["method"], "PUT");
    assert!(upload_to(&app, &ticket, &big).await.is_success());
    let commit = format!(
        "/api/v1/storage/uploads/{}/commit",
        ticket["upload_id"].as_str().unwrap()
    );
    let committed = app
        .request(Method::POST, &commit)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(committed.status(), StatusCode::OK);
    let committed: Value = committed.json().await.unwrap();
    assert_eq!(committed["purpose"], "record");
    let id = committed["record"]["id"].as_str().unwrap().to_owned();
    assert_eq!(id, ticket["target_id"].as_str().unwrap());
    assert_eq!(
        app.get_record(token, &id)
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        big.as_slice()
    );
    assert_eq!(app.usage(&user.id).await.0, big.len() as i64);
    // A commit is used up.
    let again = app
        .request(Method::POST, &commit)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    error_body(again, StatusCode::NOT_FOUND, "not_found").await;

    // The same flow updates a record, with If-Match...
    let bigger = [big.as_slice(), b"more"].concat();
    let update = json!({"purpose": "record", "record_id": id, "if_match": 1, "size_bytes": bigger.len(), "checksum": sha(&bigger)});
    let ticket: Value = start(update).await.unwrap().json().await.unwrap();
    assert!(upload_to(&app, &ticket, &bigger).await.is_success());
    let commit = format!(
        "/api/v1/storage/uploads/{}/commit",
        ticket["upload_id"].as_str().unwrap()
    );
    let committed: Value = app
        .request(Method::POST, &commit)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(committed["record"]["version"], 2);
    assert_eq!(
        app.get_record(token, &id)
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        bigger.as_slice()
    );
    assert_eq!(
        app.blob_keys(&user.id).await.len(),
        1,
        "the replaced blob was dropped"
    );

    // ...and stores large backups.
    let backup = json!({"purpose": "backup", "version": 3, "timestamp": 1_767_225_600_000i64, "size_bytes": big.len(), "checksum": sha(&big)});
    let ticket: Value = start(backup).await.unwrap().json().await.unwrap();
    assert!(upload_to(&app, &ticket, &big).await.is_success());
    let commit = format!(
        "/api/v1/storage/uploads/{}/commit",
        ticket["upload_id"].as_str().unwrap()
    );
    let committed: Value = app
        .request(Method::POST, &commit)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(committed["purpose"], "backup");
    assert_eq!(committed["backup"]["version"], 3);
    let latest = app.get_authed("/api/v1/backup", token).await;
    assert_eq!(latest.headers()["x-backup-version"], "3");
    assert_eq!(latest.bytes().await.unwrap().as_ref(), big.as_slice());
}

async fn uploads_are_verified_before_they_count(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let expected = b"the bytes the client announced".to_vec();
    let start = |size: usize, checksum: String| {
        let request = json!({"purpose": "record", "table": "notes", "size_bytes": size, "checksum": checksum});
        app.request(Method::POST, "/api/v1/storage/uploads")
            .bearer_auth(token)
            .json(&request)
            .send()
    };
    let commit = |ticket: &Value| {
        let path = format!(
            "/api/v1/storage/uploads/{}/commit",
            ticket["upload_id"].as_str().unwrap()
        );
        app.request(Method::POST, &path).bearer_auth(token).send()
    };

    let ticket: Value = start(expected.len(), sha(&expected))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // Nothing uploaded yet.
    error_body(
        commit(&ticket).await.unwrap(),
        StatusCode::CONFLICT,
        "upload_incomplete",
    )
    .await;
    // The URL takes only the announced bytes. Locally, other bytes of the same size and fewer
    // bytes are refused as they stream in; on S3 the URL signs length and SHA-256 and S3
    // refuses them (moto checks neither: the signing is shown in adiuva-blob's tests).
    if backend == Backend::Sqlite {
        let tampered = b"the bytes the client ANNOUNCED".to_vec();
        assert_eq!(
            upload_to(&app, &ticket, &tampered).await,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            upload_to(&app, &ticket, b"short").await,
            StatusCode::BAD_REQUEST
        );
        let longer = [expected.as_slice(), b"!"].concat();
        assert_eq!(
            upload_to(&app, &ticket, &longer).await,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
    // None of it became a record.
    let listed: Value = app
        .get_authed("/api/v1/storage/records", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!([]));
    assert_eq!(app.usage(&user.id).await.0, 0);
    // The right bytes, once: the URL writes once, so nothing can replace them before or
    // after the commit.
    assert!(upload_to(&app, &ticket, &expected).await.is_success());
    assert_eq!(
        upload_to(&app, &ticket, &expected).await,
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(commit(&ticket).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        upload_to(&app, &ticket, &expected).await,
        StatusCode::PRECONDITION_FAILED
    );

    // Bad tickets are refused before any URL is handed out.
    error_body(
        start(10, "nope".into()).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_checksum",
    )
    .await;
    let too_big = start(6 * 1024 * 1024 * 1024, sha(b"x")).await.unwrap();
    error_body(too_big, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    let no_table = json!({"purpose": "record", "size_bytes": 1, "checksum": sha(b"x")});
    let response = app
        .request(Method::POST, "/api/v1/storage/uploads")
        .bearer_auth(token)
        .json(&no_table)
        .send()
        .await
        .unwrap();
    error_body(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
}

async fn open_uploads_are_capped_and_count_against_the_quota(backend: Backend) {
    // One quota unit is 100 bytes here, so pro (5 units) may hold 500 bytes.
    let app = crate::harness::spawn_app_with(backend, &[("QUOTA_UNIT_BYTES", "100")]).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let start = |purpose: &str, size: usize| {
        let mut request = json!({"purpose": purpose, "size_bytes": size, "checksum": sha(b"x")});
        match purpose {
            "record" => request["table"] = json!("notes"),
            "backup" => {
                request["version"] = json!(1);
                request["timestamp"] = json!(1_700_000_000_000i64);
            }
            _ => {}
        }
        app.request(Method::POST, "/api/v1/storage/uploads")
            .bearer_auth(token)
            .json(&request)
            .send()
    };
    // 300 bytes announced and not committed still count: another 300 would pass the quota.
    assert_eq!(
        start("record", 300).await.unwrap().status(),
        StatusCode::CREATED
    );
    error_body(
        start("record", 300).await.unwrap(),
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    // Backups have a quota of their own.
    assert_eq!(
        start("backup", 300).await.unwrap().status(),
        StatusCode::CREATED
    );
    // At most 20 open uploads per user, whatever their purpose (plugin packages need the
    // marketplace's tier, which pro has not: records here).
    for _ in 2..20 {
        assert_eq!(
            start("record", 1).await.unwrap().status(),
            StatusCode::CREATED
        );
    }
    error_body(
        start("record", 1).await.unwrap(),
        StatusCode::CONFLICT,
        "too_many_uploads",
    )
    .await;
}

/// Blobs over `INLINE_DOWNLOAD_BYTES` are answered with a 307 to a short-lived URL of their
/// bytes, which a client that follows redirects (fetch, reqwest) reads as if they were inline.
async fn large_blobs_are_read_through_a_redirect(backend: Backend) {
    let app = crate::harness::spawn_app_with(backend, &[("INLINE_DOWNLOAD_BYTES", "1000")]).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let manual = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let big: Vec<u8> = (0..5000u32).map(|n| (n % 251) as u8).collect();
    let small = app.record(token, "notes", b"small enough").await;
    let large = app.record(token, "notes", &big).await;

    let inline = app.get_record(token, &small).await;
    assert_eq!(inline.status(), StatusCode::OK);
    assert_eq!(inline.bytes().await.unwrap().as_ref(), b"small enough");

    let redirect = manual
        .get(app.url(&format!("/api/v1/storage/records/{large}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(redirect.headers()["x-checksum"], sha(&big).as_str());
    assert_eq!(redirect.headers()["etag"], "\"1\"");
    assert!(redirect.headers().contains_key("location"));
    let followed = app.get_record(token, &large).await;
    assert_eq!(followed.status(), StatusCode::OK);
    assert_eq!(followed.bytes().await.unwrap().as_ref(), big.as_slice());

    let stored = app.put_backup(token, &big, 1_700_000_000_000).await;
    assert_eq!(stored.status(), StatusCode::CREATED);
    let redirect = manual
        .get(app.url("/api/v1/backup"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(redirect.headers()["x-backup-checksum"], sha(&big).as_str());
    let followed = app.get_authed("/api/v1/backup", token).await;
    assert_eq!(followed.status(), StatusCode::OK);
    assert_eq!(followed.bytes().await.unwrap().as_ref(), big.as_slice());

    // Not modified: answered from the metadata, the blob store never asked.
    app.faults.fail_all(adiuva_blob::Op::Get);
    app.faults.fail_all(adiuva_blob::Op::Presign);
    let unchanged = app
        .request(Method::GET, "/api/v1/backup")
        .bearer_auth(token)
        .header("if-modified-since", "Tue, 14 Nov 2023 22:13:20 GMT")
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    app.faults.clear();
}
