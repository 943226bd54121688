//! Assembles a function's routes into the service that both Lambda and the local server run.

use adiuva_config::Config;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Uri, header};
use tower_http::cors::{AllowOrigin, CorsLayer};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa_axum::router::OpenApiRouter;

use crate::ApiError;
use crate::request_id::{self, X_REQUEST_ID};

/// The base OpenAPI document every function router starts from: title, version and the bearer
/// security scheme that authenticated operations refer to as `bearer`.
pub fn api_doc() -> OpenApi {
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Adiuva Cloud API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some("Backend of the Adiuva desktop app. Errors are JSON `{detail, code, request_id}`.")),
        )
        .components(Some(
            ComponentsBuilder::new()
                .security_scheme(
                    "bearer",
                    SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
                )
                .build(),
        ))
        .build()
}

/// Turns documented routes into the service: JSON 404/405 fallbacks, the body limit, CORS and
/// request ids (outermost, so even preflight and fallback answers carry one).
pub fn app(routes: OpenApiRouter, config: &Config) -> Router {
    let (router, _openapi) = routes.split_for_parts();
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(cors(&config.cors_origins))
        .layer(axum::middleware::from_fn(request_id::middleware))
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}

fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|origin| match HeaderValue::from_str(origin) {
            Ok(value) => Some(value),
            Err(_) => {
                tracing::warn!(
                    origin,
                    "ignoring CORS origin that is not a valid header value"
                );
                None
            }
        })
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::IF_MATCH,
            header::IF_MODIFIED_SINCE,
            X_REQUEST_ID.clone(),
            HeaderName::from_static("x-backup-version"),
            HeaderName::from_static("x-backup-timestamp"),
            HeaderName::from_static("x-backup-checksum"),
        ])
        .expose_headers([
            X_REQUEST_ID.clone(),
            header::ETAG,
            header::RETRY_AFTER,
            header::LAST_MODIFIED,
            HeaderName::from_static("x-checksum"),
        ])
        .max_age(std::time::Duration::from_secs(600))
}
