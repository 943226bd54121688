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
