//! Account deletion: every row, blob, backup and vector of the account goes, tokens stop
//! working, and an account re-registered with the same email starts empty.

use adiuva_vectors::derived_vector;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, TestUser, error_body, sha, spawn_app};

backend_tests!(
    deleting_an_account_purges_everything,
    a_failed_purge_is_finished_by_the_janitor
);

async fn delete_account(app: &TestApp, user: &TestUser, password: &str) -> reqwest::Response {
    app.request(Method::DELETE, "/api/v1/auth/me")
        .bearer_auth(&user.tokens.access_token)
        .json(&json!({"password": password}))
        .send()
        .await
        .unwrap()
}

/// Gives the user one of everything.
async fn fill(app: &TestApp, user: &TestUser) {
    let token = &user.tokens.access_token;
    app.record(token, "tasks", b"task").await;
    assert_eq!(
        app.put_backup(token, b"backup", 1_767_225_600_000)
            .await
            .status(),
        StatusCode::CREATED
    );
    assert_eq!(
        app.upsert_vectors(token, &[("v", b"vector", None)])
            .await
            .status(),
        StatusCode::OK
    );
    let upload =
        json!({"purpose": "record", "table": "notes", "size_bytes": 3, "checksum": sha(b"abc")});
    let started = app
        .request(Method::POST, "/api/v1/storage/uploads")
        .bearer_auth(token)
        .json(&upload)
        .send()
        .await
        .unwrap();
    assert_eq!(started.status(), StatusCode::CREATED);
    // A linked OpenID identity (the OIDC tests link them through the provider).
    adiuva_db::sqlx::query(
        "INSERT INTO user_identities (id, user_id, provider, issuer, subject, email, linked_at) \
         VALUES ($1, $2, 'google', 'https://accounts.google.com', $1, $3, 0)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(&user.id)
    .bind(&user.email)
    .execute(app.database.db.pool())
    .await
    .unwrap();
}

/// Rows that still name the user, across every table that has a user_id.
async fn rows_of(app: &TestApp, user_id: &str) -> i64 {
    let mut total = 0;
    for table in [
        "users",
        "refresh_tokens",
        "sessions",
        "security_events",
        "user_identities",
        "subscriptions",
        "storage_records",
        "backup_metadata",
        "storage_usage",
        "pending_uploads",
        "plugin_installations",
        "revenue_events",
    ] {
        let column = if table == "users" { "id" } else { "user_id" };
        let sql = format!("SELECT COUNT(*) FROM {table} WHERE {column} = $1");
        let count: i64 = adiuva_db::sqlx::query_scalar(adiuva_db::sqlx::AssertSqlSafe(sql))
            .bind(user_id)
            .fetch_one(app.database.db.pool())
            .await
            .unwrap();
        total += count;
    }
    total
}

async fn vectors_of(app: &TestApp, user_id: &str) -> usize {
    app.backends
        .vectors
        .search(user_id, &derived_vector(b"vector"), 10)
        .await
        .unwrap()
        .len()
}

async fn deleting_an_account_purges_everything(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    fill(&app, &user).await;
    let other = app.pro_user().await;
    fill(&app, &other).await;

    error_body(
        delete_account(&app, &user, "wrong-password").await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(
        app.me(&user.tokens.access_token).await.status(),
        StatusCode::OK,
        "a wrong password changes nothing"
    );
    let missing_body = app
        .request(Method::DELETE, "/api/v1/auth/me")
        .bearer_auth(&user.tokens.access_token)
        .send()
        .await
        .unwrap();
    error_body(
        missing_body,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    let deleted = delete_account(&app, &user, &user.password).await;
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(
        deleted.json::<Value>().await.unwrap(),
        json!({"ok": true, "subscription_canceled": false})
    );

    app.assert_signed_out(&user.tokens).await;
    error_body(
        app.login(&user.email, &user.password).await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    assert_eq!(rows_of(&app, &user.id).await, 0);
    assert!(app.blob_keys(&user.id).await.is_empty());
    assert_eq!(vectors_of(&app, &user.id).await, 0);

    // The other account is untouched.
    assert!(rows_of(&app, &other.id).await > 0);
    assert_eq!(
        app.blob_keys(&other.id).await.len(),
        2,
        "the record and the backup; the upload never came"
    );
    assert_eq!(vectors_of(&app, &other.id).await, 1);

    // The same email starts from nothing.
    let again = app.register(&user.email, &user.password).await;
    assert_eq!(again.status(), StatusCode::CREATED);
    let token = again.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        app.get_authed("/api/v1/storage/records", &token)
            .await
            .json::<Value>()
            .await
            .unwrap(),
        json!([])
    );
    error_body(
        app.get_authed("/api/v1/backup", &token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert!(app.search_ids(&token, b"vector", None).await.is_empty());
    let profile: Value = app.me(&token).await.json().await.unwrap();
    assert_eq!(
        profile["tier"], "free",
        "the subscription went with the old account"
    );
}

async fn a_failed_purge_is_finished_by_the_janitor(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    fill(&app, &user).await;
    app.faults.fail_all(adiuva_blob::Op::List);
    // The account is deleted even though its blobs could not be listed for deletion.
    assert_eq!(
        delete_account(&app, &user, &user.password).await.status(),
        StatusCode::OK
    );
    assert_eq!(rows_of(&app, &user.id).await, 0);
    app.faults.clear();
    assert_eq!(app.blob_keys(&user.id).await.len(), 2);

    let janitor = janitor::Janitor::new(&app.context).unwrap();
    let report = janitor.run().await.unwrap();
    assert_eq!((report.accounts_purged, report.accounts_pending), (1, 0));
    assert!(app.blob_keys(&user.id).await.is_empty());
    assert_eq!(vectors_of(&app, &user.id).await, 0);
    // Done is done: the next run has nothing to purge.
    let report = janitor.run().await.unwrap();
    assert_eq!(report.accounts_purged, 0);
}
