//! The one error type of every handler: what the client is told ([`Public`], whose kind gives
//! the status) plus the server-side cause, which is logged and never shown.

use std::borrow::Cow;
use std::error::Error as StdError;

use adiuva_error::{DomainError, ErrorKind, Public, cause_chain};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::request_id::current_request_id;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

type Source = Box<dyn StdError + Send + Sync + 'static>;

/// The JSON body of every error response (SPEC section 4).
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// A human-readable message.
    pub detail: String,
    /// A stable machine-readable code, e.g. `invalid_credentials`.
    pub code: String,
    /// The id of the request, also sent as the `x-request-id` header.
    pub request_id: String,
    /// Every reason, when there are several (each failed check of a plugin submission).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<ReasonBody>,
    /// When a spent allowance is granted again, in ms since the epoch (402
    /// `ai_budget_exhausted`: the first instant of next month, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<i64>,
}

/// One reason of an error that has several.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReasonBody {
    /// What failed: a check's or a field's name.
    pub name: String,
    pub detail: String,
}

#[derive(Debug)]
pub struct ApiError {
    public: Public,
    /// Server-side cause, logged and never shown to the client.
    source: Option<Source>,
}

/// Every domain error becomes an `ApiError` through its kind and code; this is the only
/// conversion, so statuses are decided in one table ([`ErrorKind::status`]).
impl<E: DomainError> From<E> for ApiError {
    fn from(err: E) -> Self {
        let public = Public::of(&err);
        let source = public
            .kind
            .is_server_side()
            .then(|| Box::new(err) as Source);
        Self { public, source }
    }
}

impl ApiError {
    /// An error the HTTP layer itself finds (a missing header, a malformed body, ...).
    pub fn new(kind: ErrorKind, code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            public: Public::new(kind, code, detail),
            source: None,
        }
    }

    pub fn bad_request(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::BadRequest, code, detail)
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Invalid, code, detail)
    }

    /// Not found, or not yours: the two are indistinguishable on purpose.
    pub fn not_found(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::NotFound, "not_found", detail)
    }

    pub fn payload_too_large(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::TooLarge, "payload_too_large", detail)
    }

    /// A bug or an unexpected failure: 500, with the cause logged and hidden from the client.
    pub fn internal(source: impl Into<Source>) -> Self {
        Self {
            public: Public::new(
                ErrorKind::Internal,
                "internal_error",
                "internal server error",
            ),
            source: Some(source.into()),
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.public.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    pub fn kind(&self) -> ErrorKind {
        self.public.kind
    }

    pub fn code(&self) -> &'static str {
        self.public.code
    }

    /// The message shown to the client.
    pub fn detail(&self) -> &str {
        &self.public.detail
    }

    /// What the client is told.
    pub fn public(&self) -> &Public {
        &self.public
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.public.status(),
            self.public.code,
            self.public.detail
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let code = self.public.code;
        if self.public.kind.is_server_side() {
            let cause = self
                .source
                .as_deref()
                .map(|s| cause_chain(s))
                .unwrap_or_default();
            tracing::error!(status = status.as_u16(), code, cause, "request failed");
        } else {
            tracing::info!(status = status.as_u16(), code, detail = %self.public.detail, "request rejected");
        }
        let body = ErrorBody {
            detail: self.public.detail.into_owned(),
            code: code.to_owned(),
            request_id: current_request_id(),
            reasons: self
                .public
                .reasons
                .into_iter()
                .map(|reason| ReasonBody {
                    name: reason.name.into_owned(),
                    detail: reason.detail,
                })
                .collect(),
            resets_at: self.public.resets_at,
        };
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.public.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
