//! Commits that cannot go wrong quietly: a `COMMIT` whose answer is lost keeps the blob its row
//! may point at, an upload is committed once however many requests race for it, backups claim
//! only dates an HTTP header can carry, and SQLite's busy errors are 503s.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use adiuva_access::{Caller, Role, Tier, TierSource};
use adiuva_checksum::Digested;
use adiuva_db::Database;
use adiuva_storage::{Storage, StorageError, StorageSettings};
use bytes::Bytes;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, error_body, sha, spawn_app};

backend_tests!(
    an_upload_is_committed_once_and_the_loser_gets_409,
    backup_timestamps_stay_within_what_http_dates_say,
);

/// A TCP proxy in front of PostgreSQL that, once armed, forwards the next `COMMIT` to the server
/// and then cuts the client off before the server's answer: the server commits, the client
/// never learns it.
struct CommitCutter {
    address: String,
    armed: Arc<AtomicBool>,
}

impl CommitCutter {
    async fn start(upstream: &'static str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let armed = Arc::new(AtomicBool::new(false));
        let flag = armed.clone();
        tokio::spawn(async move {
            loop {
                let (client, _) = listener.accept().await.unwrap();
                let server = TcpStream::connect(upstream).await.unwrap();
                tokio::spawn(relay(client, server, flag.clone()));
            }
        });
        Self { address, armed }
    }
}

async fn relay(client: TcpStream, server: TcpStream, armed: Arc<AtomicBool>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let cut = Arc::new(AtomicBool::new(false));
    let cut_up = cut.clone();
    let up = tokio::spawn(async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let chunk = &buffer[..n];
            let is_commit = chunk.windows(6).any(|w| w.eq_ignore_ascii_case(b"COMMIT"));
            if is_commit && armed.swap(false, Ordering::SeqCst) {
                cut_up.store(true, Ordering::SeqCst);
                let _ = server_write.write_all(chunk).await;
                // Give the server the time to commit, then leave.
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                return;
            }
            if server_write.write_all(chunk).await.is_err() {
                return;
            }
        }
    });
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = match server_read.read(&mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) || client_write.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
    // Dropping both halves closes the client's connection without the COMMIT's answer.
    up.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_whose_answer_is_lost_keeps_the_blob_its_row_points_at() {
    let app = spawn_app(Backend::Postgres).await;
    let cutter = CommitCutter::start("127.0.0.1:5432").await;
    let mut url = app
        .database
        .url
        .replacen("127.0.0.1:5432", &cutter.address, 1);
    assert_ne!(
        url, app.database.url,
        "the test database is not on 127.0.0.1:5432"
    );
    // In clear text, so that the proxy sees the COMMIT.
    url.push_str(if url.contains('?') {
        "&sslmode=disable"
    } else {
        "?sslmode=disable"
    });
    let storage = Storage::new(
        Database::connect_lazy(&url, 2).unwrap(),
        app.backends.blobs.clone(),
        &StorageSettings {
            quota_unit_bytes: 1 << 30,
            orphan_grace_minutes: 60,
            inline_download_bytes: 1 << 20,
            tombstone_retention_days: 30,
            janitor: Default::default(),
            cursor_key: None,
        },
    );
    let user = app.pro_user().await;
    let caller = Caller {
        id: user.id.clone(),
        email: user.email.clone(),
        tier: Tier::Pro,
        tier_source: TierSource::Own,
        role: Role::User,
        session_id: None,
    };
    let stored = |record_id: String| {
        let pool = app.database.db.pool().clone();
        async move {
            adiuva_db::sqlx::query_as::<_, (String, i64)>(
                "SELECT s3_key, version FROM storage_records WHERE id = $1",
            )
            .bind(record_id)
            .fetch_optional(&pool)
            .await
            .unwrap()
        }
    };

    // A create: the row was committed, so its blob must still be there.
    cutter.armed.store(true, Ordering::SeqCst);
    let err = storage
        .create_record(
            &caller,
            "notes",
            Digested::new(Bytes::from_static(b"first")),
            &sha(b"first"),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::CommitUncertain(_)), "{err:?}");
    let keys = app.blob_keys(&user.id).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let record_id: String =
        adiuva_db::sqlx::query_scalar("SELECT id FROM storage_records WHERE user_id = $1")
            .bind(&user.id)
            .fetch_one(app.database.db.pool())
            .await
            .unwrap();
    let (key, _) = stored(record_id.clone()).await.unwrap();
    assert_eq!(keys, [key]);

    // An update: the row points at the new blob, which must stay; the old one is the
    // janitor's.
    cutter.armed.store(true, Ordering::SeqCst);
    let err = storage
        .update_record(
            &caller,
            &record_id,
            Digested::new(Bytes::from_static(b"second")),
            &sha(b"second"),
            Some(1),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::CommitUncertain(_)), "{err:?}");
    let (key, version) = stored(record_id.clone()).await.unwrap();
    assert_eq!(version, 2);
    assert!(app.blob_keys(&user.id).await.contains(&key));
    let read = app.get_record(&user.tokens.access_token, &record_id).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.bytes().await.unwrap().as_ref(), b"second");
}

async fn an_upload_is_committed_once_and_the_loser_gets_409(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let bytes = b"a record that two requests commit";
    for (purpose, extra) in [
        ("record", json!({"table": "notes"})),
        (
            "backup",
            json!({"version": 1, "timestamp": 1_700_000_000_000i64}),
        ),
    ] {
        let mut announce =
            json!({"purpose": purpose, "size_bytes": bytes.len(), "checksum": sha(bytes)});
        announce
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let started = app
            .request(Method::POST, "/api/v1/storage/uploads")
            .bearer_auth(token)
            .json(&announce)
            .send()
            .await
            .unwrap();
        assert_eq!(started.status(), StatusCode::CREATED);
        let ticket: Value = started.json().await.unwrap();
        let mut put = app
            .client
            .put(ticket["url"].as_str().unwrap())
            .body(bytes.to_vec());
        for (name, value) in ticket["headers"].as_object().unwrap() {
            put = put.header(name, value.as_str().unwrap());
        }
        assert!(put.send().await.unwrap().status().is_success());
        let commit = format!(
            "/api/v1/storage/uploads/{}/commit",
            ticket["upload_id"].as_str().unwrap()
        );
        let attempts = (0..4).map(|_| app.request(Method::POST, &commit).bearer_auth(token).send());
        let mut statuses: Vec<u16> = Vec::new();
        for response in futures::future::join_all(attempts).await {
            let response = response.unwrap();
            let status = response.status();
            if status == StatusCode::CONFLICT {
                error_body(response, status, "upload_committed").await;
            } else if status == StatusCode::NOT_FOUND {
                // A commit that started after the winner's had finished.
                error_body(response, status, "not_found").await;
            }
            statuses.push(status.as_u16());
        }
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "{purpose}: {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| matches!(s, 200 | 404 | 409)),
            "{purpose}: {statuses:?}"
        );
    }
    let records: Value = app
        .get_authed("/api/v1/storage/records", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(records.as_array().unwrap().len(), 1);
    let history: Value = app
        .get_authed("/api/v1/backup/history", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history.as_array().unwrap().len(), 1);
}

async fn put_backup(app: &TestApp, token: &str, timestamp: &str) -> reqwest::Response {
    let bytes = b"backup";
    app.request(Method::PUT, "/api/v1/backup")
        .bearer_auth(token)
        .header("x-backup-version", "1")
        .header("x-backup-timestamp", timestamp)
        .header("x-backup-checksum", sha(bytes))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

async fn backup_timestamps_stay_within_what_http_dates_say(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    error_body(
        put_backup(&app, token, "-1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_header",
    )
    .await;
    for bad in ["253402300800000", "9223372036854775807"] {
        error_body(
            put_backup(&app, token, bad).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        )
        .await;
    }
    let upload = json!({"purpose": "backup", "version": 1, "timestamp": 253_402_300_800_000i64, "size_bytes": 6, "checksum": sha(b"backup")});
    let started = app
        .request(Method::POST, "/api/v1/storage/uploads")
        .bearer_auth(token)
        .json(&upload)
        .send()
        .await
        .unwrap();
    error_body(
        started,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    assert_eq!(
        app.get_authed("/api/v1/backup", token).await.status(),
        StatusCode::NOT_FOUND
    );
    // The last millisecond of the year 9999 is fine, and reading it back works.
    assert_eq!(
        put_backup(&app, token, "253402300799999").await.status(),
        StatusCode::CREATED
    );
    let latest = app.get_authed("/api/v1/backup", token).await;
    assert_eq!(latest.status(), StatusCode::OK);
    assert_eq!(
        latest.headers()["last-modified"],
        "Fri, 31 Dec 9999 23:59:59 GMT"
    );
}

/// A write that finds SQLite busy (another writer, or a snapshot gone stale) is a 503 to retry,
/// never a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_busy_errors_are_unavailable() {
    let app = spawn_app(Backend::Sqlite).await;
    let pool = app.database.db.pool();
    let mut holder = pool.acquire().await.unwrap();
    let mut waiter = pool.acquire().await.unwrap();
    adiuva_db::sqlx::query("PRAGMA busy_timeout = 0")
        .execute(&mut *waiter)
        .await
        .unwrap();

    // Another connection holds the write lock.
    adiuva_db::sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut *holder)
        .await
        .unwrap();
    let err = adiuva_db::sqlx::query("UPDATE users SET updated_at = updated_at")
        .execute(&mut *waiter)
        .await
        .unwrap_err();
    assert!(adiuva_db::is_unavailable(&err), "{err:?}");
    adiuva_db::sqlx::query("COMMIT")
        .execute(&mut *holder)
        .await
        .unwrap();

    // A transaction that read, then finds another write committed since (BUSY_SNAPSHOT).
    adiuva_db::sqlx::query("BEGIN")
        .execute(&mut *waiter)
        .await
        .unwrap();
    adiuva_db::sqlx::query("SELECT COUNT(*) FROM users")
        .execute(&mut *waiter)
        .await
        .unwrap();
    adiuva_db::sqlx::query("INSERT INTO account_deletions (user_id, deleted_at) VALUES ('x', 0)")
        .execute(&mut *holder)
        .await
        .unwrap();
    let err = adiuva_db::sqlx::query("UPDATE users SET updated_at = updated_at")
        .execute(&mut *waiter)
        .await
        .unwrap_err();
    assert!(adiuva_db::is_unavailable(&err), "{err:?}");
    assert_eq!(
        adiuva_db::kind_of(&err),
        adiuva_error::ErrorKind::Unavailable
    );
    adiuva_db::sqlx::query("ROLLBACK")
        .execute(&mut *waiter)
        .await
        .unwrap();
}
