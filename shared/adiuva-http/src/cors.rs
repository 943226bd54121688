//! CORS from one list: the request headers the API reads and the response headers it returns.
//! `infra/template.yaml` declares the same lists for API Gateway (which answers preflight
//! requests itself); a test compares the two.

use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Every request header the API reads.
pub const ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "idempotency-key",
    "if-match",
    "if-modified-since",
    "x-backup-checksum",
    "x-backup-chunk-count",
    "x-backup-timestamp",
    "x-backup-version",
    "x-request-id",
];

/// Every response header a browser client may need to read.
pub const EXPOSED_HEADERS: &[&str] = &[
    "etag",
    "idempotent-replayed",
    "last-modified",
    "link",
    "ratelimit",
    "ratelimit-policy",
    "retry-after",
    "x-author-id",
    "x-backup-checksum",
    "x-backup-chunk-count",
    "x-backup-id",
    "x-backup-timestamp",
    "x-backup-version",
    "x-checksum",
    "x-key-version",
    "x-next-cursor",
    "x-request-id",
    "x-total-count",
];

pub const ALLOWED_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// How long browsers may cache a preflight answer.
pub const MAX_AGE: Duration = Duration::from_secs(600);

pub(crate) fn layer(origins: &[String]) -> CorsLayer {
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
    let names = |list: &[&'static str]| -> Vec<HeaderName> {
        list.iter()
            .map(|name| HeaderName::from_static(name))
            .collect()
    };
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods(
            ALLOWED_METHODS
                .iter()
                .map(|method| Method::from_bytes(method.as_bytes()).expect("a valid method"))
                .collect::<Vec<_>>(),
        )
        .allow_headers(names(ALLOWED_HEADERS))
        .expose_headers(names(EXPOSED_HEADERS))
        .max_age(MAX_AGE)
}
