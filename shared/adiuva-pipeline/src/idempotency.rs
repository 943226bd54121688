//! The idempotency stage: a creating POST (declared `.idempotent()`) with an
//! `Idempotency-Key` is claimed in the shared store before it runs, and its answer stored; the
//! same key again replays it (with `Idempotent-Replayed: true`), the same key with another
//! request is 422, and one still running is 409. Requests without the header work as before.

use adiuva_access::Caller;
use adiuva_http::ApiError;
use adiuva_http::routes::Policies;
use adiuva_limits::idempotency::{IdempotencyError, fingerprint};
use adiuva_limits::{Claim, Limits, StoredResponse};
use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Answers larger than this are not kept for replay (ours are small JSON documents).
const MAX_STORED_BODY: usize = 256 * 1024;

pub(crate) async fn stage(
    limits: &Limits,
    policies: &Policies,
    max_body_bytes: usize,
    request: Request,
    next: Next,
) -> Response {
    let Some(key) = request.headers().get(&IDEMPOTENCY_KEY).cloned() else {
        return next.run(request).await;
    };
    let route = super::route_of(&request).map(str::to_owned);
    let (Some(route), Some(caller)) = (route, request.extensions().get::<Caller>().cloned()) else {
        return next.run(request).await;
    };
    if !policies.is_idempotent(request.method(), &route) {
        return next.run(request).await;
    }
    let Ok(key) = key.to_str().map(str::to_owned) else {
        return ApiError::from(IdempotencyError::InvalidKey).into_response();
    };

    let (parts, body) = request.into_parts();
    let Ok(body) = to_bytes(body, max_body_bytes).await else {
        return ApiError::payload_too_large(
            "request body is larger than this endpoint accepts; upload large blobs with POST /api/v1/storage/uploads",
        )
        .into_response();
    };
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| parts.uri.path().to_owned(), |pq| pq.as_str().to_owned());
    let print = fingerprint(parts.method.as_str(), &path, &body);
    let scope = format!("{} {route}", parts.method);
    let ticket = match limits.claim(&caller.id, &scope, &key, &print).await {
        Ok(Claim::Fresh(ticket)) => ticket,
        Ok(Claim::Replay(stored)) => return replay(stored),
        Ok(Claim::Mismatch) => return ApiError::from(IdempotencyError::Mismatch).into_response(),
        Ok(Claim::InFlight) => return ApiError::from(IdempotencyError::InFlight).into_response(),
        Err(err) => return ApiError::from(err).into_response(),
    };

    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    let body = match to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(err) => {
            limits.abandon(ticket).await;
            return ApiError::internal(err).into_response();
        }
    };
    if body.len() > MAX_STORED_BODY {
        // Processed, but too large to keep: the key is freed and the answer goes out as is.
        tracing::warn!(bytes = body.len(), "answer too large to store for replay");
        limits.abandon(ticket).await;
        return Response::from_parts(parts, Body::from(body));
    }
    let stored = StoredResponse {
        status: parts.status.as_u16(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
            })
            .collect(),
        body: body.to_vec(),
    };
    limits.complete(ticket, &stored).await;
    Response::from_parts(parts, Body::from(body))
}

fn replay(stored: StoredResponse) -> Response {
    let mut response = Response::new(Body::from(stored.body));
    *response.status_mut() = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let headers = response.headers_mut();
    for (name, value) in stored.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.append(name, value);
        }
    }
    headers.insert(
        IDEMPOTENT_REPLAYED.clone(),
        HeaderValue::from_static("true"),
    );
    tracing::info!(status = stored.status, "idempotent request replayed");
    response
}
