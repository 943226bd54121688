//! Request ids and the request's span: the API Gateway request id when running in Lambda, else
//! a well-formed client `x-request-id`, else a new UUID. The id is echoed as `x-request-id`, put
//! in error bodies, and carried by the `request` span, so every log line of the request (domain
//! lines included) carries it; one line per request logs its status and latency, and in Lambda
//! one more line carries the same as metrics (see [`crate::metrics`]). The security headers
//! ([`crate::headers`]) are set here too, on every answer, as the last thing before it leaves.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

use crate::headers;
use crate::metrics::Measured;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Set as a request extension by the Lambda adapter with the gateway's request id.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Set as a request extension by the Lambda adapter: the request came through API Gateway,
/// over HTTPS, and the function runs in Lambda (so its metrics go to CloudWatch).
#[derive(Debug, Clone, Copy)]
pub struct Gateway;

/// The client's address: the TCP peer in the local server, API Gateway's `sourceIp` in Lambda.
/// Never `X-Forwarded-For`, which any client can write. As an extractor, an unknown address
/// (a router called without a connection, in tests) is `0.0.0.0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientAddr>()
            .copied()
            .unwrap_or(ClientAddr(IpAddr::V4(Ipv4Addr::UNSPECIFIED))))
    }
}

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled on this task, or `"unknown"` outside a request.
pub fn current_request_id() -> String {
    CURRENT
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// Client-supplied ids are echoed into logs and headers, so only short visible ASCII passes.
fn acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// What the request log of one router (one function instance) knows.
#[derive(Debug, Clone)]
pub(crate) struct RequestLog {
    /// The function's name, the `function` dimension of its metrics.
    pub function: &'static str,
    /// Whether this instance has served no request yet (its next one is its cold start).
    pub fresh: Arc<AtomicBool>,
}

impl RequestLog {
    pub(crate) fn new(function: &'static str) -> Self {
        Self {
            function,
            fresh: Arc::new(AtomicBool::new(true)),
        }
    }
}

pub(crate) async fn middleware(
    State(log): State<RequestLog>,
    mut request: Request,
    next: Next,
) -> Response {
    let cold_start = log.fresh.swap(false, Ordering::Relaxed);
    let gateway = request.extensions().get::<Gateway>().is_some();
    let id = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.0.clone())
        .filter(|id| acceptable(id))
        .or_else(|| {
            request
                .headers()
                .get(&X_REQUEST_ID)
                .and_then(|value| value.to_str().ok())
                .filter(|id| acceptable(id))
                .map(str::to_owned)
        })
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    if request.extensions().get::<ClientAddr>().is_none()
        && let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>()
    {
        let peer = ClientAddr(peer.ip());
        request.extensions_mut().insert(peer);
    }

    let method = request.method().clone();
    let matched = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned());
    // No route matched: the path is the client's, so only an excerpt of it is logged.
    let route = matched
        .clone()
        .unwrap_or_else(|| adiuva_error::excerpt(request.uri().path()));
    // `user_id` is recorded by the authentication stage once the caller is known.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        %method,
        route,
        user_id = tracing::field::Empty
    );
    let started = Instant::now();

    let mut response = CURRENT
        .scope(id.clone(), next.run(request))
        .instrument(span.clone())
        .await;

    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| tracing::info!(status, latency_ms, "request completed"));
    if gateway {
        Measured {
            function: log.function,
            route: matched.as_deref(),
            status,
            latency_ms,
            cold_start,
            request_id: &id,
        }
        .emit();
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    headers::secure(response.headers_mut(), gateway);
    response
}
