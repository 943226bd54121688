//! The HTTP layer every function shares: request ids, error format, fallbacks, CORS, body limit.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::harness::{Backend, error_body, spawn_app, spawn_app_with};

#[tokio::test]
async fn request_ids_are_echoed_or_made() {
    let app = spawn_app(Backend::Sqlite).await;
    let made = app.get("/api/v1/health").await;
    let id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "generated id {id:?} is not a UUID"
    );

    let given = app
        .request(Method::GET, "/api/v1/health")
        .header("x-request-id", "client-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "client-abc-123");

    // Too long or not printable: replaced, never echoed into logs and headers.
    let long = "x".repeat(200);
    let refused = app
        .request(Method::GET, "/api/v1/health")
        .header("x-request-id", &long)
        .send()
        .await
        .unwrap();
    assert_ne!(refused.headers()["x-request-id"], long.as_str());

    // Error bodies carry the same id as the header (error_body checks it).
    let failed = app
        .request(Method::GET, "/api/v1/auth/me")
        .header("x-request-id", "trace-me")
        .send()
        .await
        .unwrap();
    let body = error_body(failed, StatusCode::UNAUTHORIZED, "missing_token").await;
    assert_eq!(body["request_id"], "trace-me");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_json() {
    let app = spawn_app(Backend::Sqlite).await;
    error_body(
        app.get("/api/v1/nothing-here").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    error_body(app.get("/").await, StatusCode::NOT_FOUND, "not_found").await;
    let wrong_method = app
        .request(Method::DELETE, "/api/v1/auth/login")
        .send()
        .await
        .unwrap();
    error_body(
        wrong_method,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

/// Client text in an error (a path, a value serde quotes) is a short escaped excerpt, never
/// the whole text: it goes into the answer and into the log line of the request.
#[tokio::test]
async fn client_text_is_never_echoed_in_full() {
    let app = spawn_app(Backend::Sqlite).await;
    let long = "y".repeat(3000);
    let path = format!("/api/v1/{long}%0Aforged%1B[2J");
    let body = error_body(app.get(&path).await, StatusCode::NOT_FOUND, "not_found").await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.len() < 100 && detail.ends_with('…'), "{detail:.200}");
    // A value inside the JSON body, with control characters, in a 422 of the parser.
    let user = app.register_user().await;
    let purpose = format!("{long}\n\u{1b}[2J");
    let response = app
        .request(Method::POST, "/api/v1/storage/uploads")
        .bearer_auth(&user.tokens.access_token)
        .json(&json!({"purpose": purpose, "size_bytes": 1, "checksum": "0"}))
        .send()
        .await
        .unwrap();
    let body = error_body(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    let detail = body["detail"].as_str().unwrap();
    assert!(
        !detail.contains(&"y".repeat(33)) && !detail.contains('\u{1b}') && !detail.contains('\n'),
        "{detail:.300}"
    );
    assert!(detail.contains(&format!("{}…", "y".repeat(32))), "{detail}");
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("CORS_ORIGINS", r#"["app://.", "http://localhost:5173"]"#)],
    )
    .await;
    let preflight = |origin: &'static str| {
        app.request(Method::OPTIONS, "/api/v1/auth/login")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,authorization",
            )
            .send()
    };
    let allowed = preflight("app://.").await.unwrap();
    assert!(allowed.status().is_success());
    assert_eq!(allowed.headers()["access-control-allow-origin"], "app://.");
    let methods = allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");

    let denied = preflight("https://evil.example").await.unwrap();
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let simple = app
        .request(Method::GET, "/api/v1/health")
        .header("origin", "http://localhost:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(
        simple.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    let exposed = simple.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(exposed.contains("x-request-id"), "{exposed}");
}

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let app = spawn_app_with(Backend::Sqlite, &[("MAX_BODY_BYTES", "256")]).await;
    let big = json!({"email": "big@example.com", "password": "x".repeat(400)});
    error_body(
        app.post_json("/api/v1/auth/register", &big).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    // Within the limit, the same route works.
    assert_eq!(
        app.register("big@example.com", "correct-horse-battery")
            .await
            .status(),
        StatusCode::CREATED
    );
}

/// A client that sends a body over the limit without `Expect: 100-continue` (as browsers and
/// Electron's `fetch` do) reads the 413 instead of losing the connection mid-upload (a broken
/// pipe, from about 20 MB on loopback); so does one whose body is refused before it is read for
/// another reason (no token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_bodies_still_get_a_readable_answer() {
    let app = spawn_app(Backend::Sqlite).await;
    let user = app.pro_user().await;
    let body = vec![b'x'; 24 * 1024 * 1024];
    for _ in 0..3 {
        let response = app
            .request(Method::POST, "/api/v1/storage/records")
            .bearer_auth(&user.tokens.access_token)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("the client lost the connection instead of reading the answer");
        error_body(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
    }
    let anonymous = app
        .request(Method::PUT, "/api/v1/backup")
        .body(body.clone())
        .send()
        .await
        .expect("the client lost the connection instead of reading the answer");
    error_body(anonymous, StatusCode::UNAUTHORIZED, "missing_token").await;
}
