//! The security headers on a sample of answers, through the whole API (plain HTTP: no HSTS)
//! and through Lambda events (API Gateway, HTTPS: HSTS): public, authenticated, errors, the
//! stub page (HTML: a Content-Security-Policy).

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::harness::{Backend, spawn_app, unconnected_context};

const HSTS: &str = "max-age=63072000; includeSubDomains";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| value.to_str().unwrap())
}

/// What every answer carries, wherever it came from.
fn assert_secured(what: &str, headers: &HeaderMap) {
    assert_eq!(
        header(headers, "x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        header(headers, "referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
    assert_eq!(header(headers, "cache-control"), Some("no-store"), "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_of_the_local_server_carries_the_security_headers() {
    let app = spawn_app(Backend::Sqlite).await;
    let registered = app
        .register("headers@example.com", "correct-horse-battery")
        .await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    assert_secured("POST /auth/register", registered.headers());
    let tokens: Value = registered.json().await.unwrap();
    let token = tokens["access_token"].as_str().unwrap();

    let checkout = app
        .request(reqwest::Method::POST, "/api/v1/billing/checkout")
        .bearer_auth(token)
        .json(&json!({"tier": "pro"}))
        .send()
        .await
        .unwrap();
    assert_eq!(checkout.status(), StatusCode::OK);
    assert_secured("POST /billing/checkout", checkout.headers());
    let stub_url = checkout.json::<Value>().await.unwrap()["checkout_url"]
        .as_str()
        .unwrap()
        .to_owned();

    for (what, response, status) in [
        ("public", app.get("/api/v1/health").await, StatusCode::OK),
        (
            "authenticated",
            app.get_authed("/api/v1/auth/me", token).await,
            StatusCode::OK,
        ),
        (
            "no token",
            app.get("/api/v1/storage/records").await,
            StatusCode::UNAUTHORIZED,
        ),
        (
            "no route",
            app.get("/api/v1/nowhere").await,
            StatusCode::NOT_FOUND,
        ),
        (
            "the OpenAPI document",
            app.get("/api/v1/openapi.json").await,
            StatusCode::OK,
        ),
    ] {
        assert_eq!(response.status(), status, "{what}");
        assert_secured(what, response.headers());
        // Plain HTTP: HSTS would mean nothing. Not HTML: no CSP.
        assert_eq!(
            header(response.headers(), "strict-transport-security"),
            None
        );
        assert_eq!(
            header(response.headers(), "content-security-policy"),
            None,
            "{what}"
        );
    }

    // The stub checkout page is HTML: it runs nothing, loads nothing, frames nothing.
    let page = app.client.get(&stub_url).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        header(page.headers(), "content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert_secured("the stub page", page.headers());
    assert_eq!(
        header(page.headers(), "content-security-policy"),
        Some(adiuva_http::headers::HTML_CSP)
    );
    assert!(adiuva_http::headers::HTML_CSP.starts_with("default-src 'none'"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lambda_answer_carries_hsts_too() {
    let (context, _dir) = unconnected_context(&[]);
    let functions: std::collections::HashMap<&str, axum::Router> = local::functions(&context)
        .unwrap()
        .into_iter()
        .map(|(name, function)| (name, function.into_router()))
        .collect();
    let events = format!("{}/../events", env!("CARGO_MANIFEST_DIR"));
    for (function, file, status) in [
        ("health", "health/health.json", 200),
        // A placeholder token: 401, an error answer.
        ("auth", "auth/me.json", 401),
        ("storage", "storage/list_records.json", 401),
    ] {
        let event = std::fs::read_to_string(format!("{events}/{file}"))
            .unwrap()
            .replace("{{access_token}}", "not-a-token");
        let answer = adiuva_lambda::invoke(
            functions[function].clone(),
            adiuva_lambda::Edge::default(),
            &event,
        )
        .await
        .unwrap();
        assert_eq!(answer["statusCode"], status, "{file}: {answer}");
        let headers = &answer["headers"];
        assert_eq!(headers["strict-transport-security"], HSTS, "{file}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{file}");
        assert_eq!(headers["referrer-policy"], "no-referrer", "{file}");
        assert_eq!(headers["cache-control"], "no-store", "{file}");
    }
}
