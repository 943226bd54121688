//! One error type for every handler. Client errors carry a message and a machine code; server
//! errors are logged with their cause chain and answered with a generic message.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::request_id::current_request_id;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// The JSON body of every error response (SPEC section 4).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A human-readable message.
    pub detail: String,
    /// A stable machine-readable code, e.g. `invalid_credentials`.
    pub code: String,
    /// The id of the request, also sent as the `x-request-id` header.
    pub request_id: String,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    detail: Cow<'static, str>,
    retry_after_secs: Option<u64>,
    /// Server-side cause, logged and never shown to the client.
    source: Option<Source>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            retry_after_secs: None,
            source: None,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }

    pub fn unauthorized(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, code, detail)
    }

    /// Quota exceeded (402).
    pub fn payment_required(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::PAYMENT_REQUIRED, code, detail)
    }

    /// Tier or role does not allow this (403).
    pub fn forbidden(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, detail)
    }

    /// Not found, or not yours: the two are indistinguishable on purpose.
    pub fn not_found(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, code, detail)
    }

    pub fn precondition_failed(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::PRECONDITION_FAILED, code, detail)
    }

    pub fn payload_too_large(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", detail)
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }

    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        let mut err = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many requests, retry later",
        );
        err.retry_after_secs = Some(retry_after_secs);
        err
    }

    /// A dependency (database, S3, LLM, ...) is down: 503, with the cause logged.
    pub fn unavailable(what: &'static str, source: impl Into<Source>) -> Self {
        let mut err = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "dependency_unavailable",
            format!("{what} is temporarily unavailable, retry later"),
        );
        err.retry_after_secs = Some(1);
        err.source = Some(source.into());
        err
    }

    /// A bug or an unexpected failure: 500, with the cause logged and hidden from the client.
    pub fn internal(source: impl Into<Source>) -> Self {
        let mut err = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "internal server error",
        );
        err.source = Some(source.into());
        err
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message shown to the client.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

/// `outer: inner: innermost`, the whole cause chain on one line for the logs.
fn cause_chain(err: &(dyn StdError + 'static)) -> String {
    let mut chain = err.to_string();
    let mut current = err.source();
    while let Some(cause) = current {
        let _ = write!(chain, ": {cause}");
        current = cause.source();
    }
    chain
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = current_request_id();
        if self.status.is_server_error() {
            let cause = self
                .source
                .as_deref()
                .map(|s| cause_chain(s))
                .unwrap_or_default();
            tracing::error!(%request_id, status = self.status.as_u16(), code = self.code, cause, "request failed");
        } else {
            tracing::info!(%request_id, status = self.status.as_u16(), code = self.code, detail = %self.detail, "request rejected");
        }
        let body = ErrorBody {
            detail: self.detail.into_owned(),
            code: self.code.to_owned(),
            request_id,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
