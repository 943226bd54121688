//! The caller-aware route policies the pipeline enforces on routes declared for the test: the
//! admin role (403 for everyone else) with the `adiuva-local admin` command that grants and
//! revokes it, and a tier feature (403 `tier_required` for a tier without it), on both
//! databases.

use std::sync::atomic::{AtomicUsize, Ordering};

use adiuva_access::tiers::Feature;
use adiuva_pipeline::CurrentUser;
use axum::body::Body;
use axum::http::{Method, Request};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::backend_tests;
use crate::harness::{Backend, TestApp, spawn_app};

backend_tests!(
    the_admin_guard_answers_403_to_everyone_else_and_the_command_grants_the_role,
    a_tier_feature_route_answers_403_to_tiers_without_it_before_its_handler,
);

#[adiuva_http::route(get, path = "/api/v1/admin/whoami", responses((status = 200, description = "The admin's email")))]
async fn whoami(CurrentUser(caller): CurrentUser) -> axum::Json<Value> {
    axum::Json(json!({"email": caller.email}))
}

/// How many times the tier-feature route's handler ran.
static MARKETPLACE_CALLS: AtomicUsize = AtomicUsize::new(0);

#[adiuva_http::route(post, path = "/api/v1/test/marketplace", responses((status = 200, description = "The caller's email")))]
async fn marketplace_only(CurrentUser(caller): CurrentUser) -> axum::Json<Value> {
    MARKETPLACE_CALLS.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({"email": caller.email}))
}

/// A route declared `.admin()`, behind the whole pipeline of `app`'s context.
fn guarded(app: &TestApp) -> axum::Router {
    let routes = adiuva_http::Routes::new().routes(adiuva_http::routes!(whoami).admin());
    adiuva_pipeline::authenticated("admin-test", routes, &app.context)
        .unwrap()
        .into_router()
}

async fn call(router: &axum::Router, token: Option<&str>) -> (StatusCode, Value) {
    send(router, Method::GET, "/api/v1/admin/whoami", token).await
}

async fn send(
    router: &axum::Router,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = router
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

async fn admin(app: &TestApp, action: &str, email: &str) -> Result<(), local::cli::Error> {
    let args = ["admin", action, email].map(str::to_owned);
    local::cli::run(&args, &app.context).await
}

async fn the_admin_guard_answers_403_to_everyone_else_and_the_command_grants_the_role(
    backend: Backend,
) {
    let app = spawn_app(backend).await;
    let router = guarded(&app);
    let user = app.register_user().await;
    let token = &user.tokens.access_token;

    let (status, body) = call(&router, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("missing_token"))
    );
    let (status, body) = call(&router, Some(token)).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("admin_required"))
    );

    // Granted by email (any case): the same token is an admin's on its next request.
    admin(&app, "grant", &user.email.to_uppercase())
        .await
        .unwrap();
    let (status, body) = call(&router, Some(token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["email"], user.email.as_str());

    admin(&app, "revoke", &user.email).await.unwrap();
    assert_eq!(call(&router, Some(token)).await.0, StatusCode::FORBIDDEN);

    let unknown = admin(&app, "grant", "nobody@example.com")
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("no account"), "{unknown}");
    assert!(admin(&app, "promote", &user.email).await.is_err());
}

async fn a_tier_feature_route_answers_403_to_tiers_without_it_before_its_handler(backend: Backend) {
    let app = spawn_app(backend).await;
    let routes = adiuva_http::Routes::new().routes(
        adiuva_http::routes!(marketplace_only)
            .idempotent()
            .feature(Feature::PluginMarketplace.name()),
    );
    let router = adiuva_pipeline::authenticated("feature-test", routes, &app.context)
        .unwrap()
        .into_router();
    let user = app.register_user().await;
    let token = &user.tokens.access_token;
    let path = "/api/v1/test/marketplace";
    let before = MARKETPLACE_CALLS.load(Ordering::SeqCst);

    for tier in ["free", "pro"] {
        app.set_subscription(&user.id, tier, "active").await;
        let (status, body) = send(&router, Method::POST, path, Some(token)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("tier_required")),
            "{tier}"
        );
    }
    assert_eq!(MARKETPLACE_CALLS.load(Ordering::SeqCst), before);

    // The tier is read live: the same token passes once the subscription has the feature.
    app.set_subscription(&user.id, "power", "active").await;
    let (status, body) = send(&router, Method::POST, path, Some(token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["email"], user.email.as_str());
    assert!(MARKETPLACE_CALLS.load(Ordering::SeqCst) > before);
}

/// A feature the tier matrix does not name is refused when the function is built, not when a
/// request comes.
#[tokio::test]
#[should_panic(expected = "which the tier matrix does not have")]
async fn a_route_needing_an_unknown_feature_is_refused_when_the_function_is_built() {
    let app = spawn_app(Backend::Sqlite).await;
    let routes = adiuva_http::Routes::new()
        .routes(adiuva_http::routes!(marketplace_only).feature("marketplace"));
    let _ = adiuva_pipeline::authenticated("feature-test", routes, &app.context);
}
