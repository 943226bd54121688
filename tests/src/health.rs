//! Liveness, readiness, and how the API answers when its database is down.

use adiuva_db::Database;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, error_body, spawn_app, test_context};

backend_tests!(health_and_readiness_answer_ok);

async fn health_and_readiness_answer_ok(backend: Backend) {
    let app = spawn_app(backend).await;
    let health: Value = app.get("/api/v1/health").await.json().await.unwrap();
    assert_eq!(
        health,
        json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")})
    );
    let ready = app.get("/api/v1/health/ready").await;
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"status": "ok", "database": "ok"})
    );
}

/// The whole app on a PostgreSQL that refuses connections (nothing listens on port 1).
async fn app_without_database() -> String {
    let url = "postgres://postgres@127.0.0.1:1/adiuva";
    let dir = crate::harness::TempDir::new();
    let context = test_context(url, &[("ADIUVA_DATA_DIR", &dir.0.display().to_string())]);
    context.provide(Database::connect_lazy(url, 1).unwrap());
    let app = local::app(&context).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _dir = dir;
        axum::serve(listener, app).await.unwrap()
    });
    address
}

#[tokio::test]
async fn a_down_database_is_503_without_internals() {
    let address = app_without_database().await;
    let client = crate::harness::http_client();

    // Liveness does not touch the database.
    assert_eq!(
        client
            .get(format!("{address}/api/v1/health"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    let ready = client
        .get(format!("{address}/api/v1/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.headers()["retry-after"], "1");
    let body = error_body(
        ready,
        StatusCode::SERVICE_UNAVAILABLE,
        "dependency_unavailable",
    )
    .await;
    assert_eq!(
        body["detail"],
        "the database is temporarily unavailable, retry later"
    );

    let register = client
        .post(format!("{address}/api/v1/auth/register"))
        .json(&json!({"email": "down@example.com", "password": "correct-horse-battery"}))
        .send()
        .await
        .unwrap();
    let body = error_body(
        register,
        StatusCode::SERVICE_UNAVAILABLE,
        "dependency_unavailable",
    )
    .await;
    let text = body.to_string().to_lowercase();
    for internal in ["127.0.0.1", "connection refused", "sqlx", "postgres"] {
        assert!(!text.contains(internal), "{internal:?} leaked: {body}");
    }
}

/// A pooled connection that the server ended while it sat idle (a database restart, a Lambda
/// frozen past the server's timeouts) is pinged and replaced before a request gets it: the
/// pool pings connections idle for longer than `PING_WHEN_IDLE_FOR`, not on every acquire.
// Multi-threaded, like the backend tests: `TestDatabase`'s drop blocks its thread until the
// database is dropped, which needs the runtime to return the pool's connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_the_server_ended_is_replaced() {
    let database = crate::harness::TestDatabase::create(Backend::Postgres).await;
    let db = Database::connect_lazy(&database.url, 1).unwrap();
    let pid = || async {
        adiuva_db::sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
            .fetch_one(db.pool())
            .await
    };
    let first = pid().await.unwrap();
    // Back in the pool (after sqlx's own check on release) before the server ends it.
    while db.pool().num_idle() < 1 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let ended: bool = adiuva_db::sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(database.db.pool())
        .await
        .unwrap();
    assert!(ended, "backend {first} was not ended");
    tokio::time::sleep(adiuva_db::PING_WHEN_IDLE_FOR + std::time::Duration::from_secs(1)).await;
    let second = pid()
        .await
        .expect("the ended connection was handed out instead of replaced");
    assert_ne!(first, second);
}
