//! Wrappers around axum's extractors whose rejections answer in our error format, so malformed
//! input gets a 4xx with a useful message instead of axum's plain-text body.

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use adiuva_error::ErrorKind;

use crate::ApiError;

/// JSON body extractor and response. Syntax errors are 400, type and field errors 422,
/// a missing `content-type: application/json` 415, a body over the limit 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// serde's message with what the client sent (a variant, a field name, a string value: serde
/// quotes them) cut to a short escaped excerpt: it goes into the 4xx body and the log line.
fn client_detail(body_text: String) -> String {
    adiuva_error::excerpt_quoted(&body_text)
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    let detail = client_detail(rejection.body_text());
    match rejection {
        JsonRejection::JsonDataError(_) => ApiError::unprocessable("validation_error", detail),
        JsonRejection::JsonSyntaxError(_) => ApiError::bad_request("invalid_json", detail),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            ErrorKind::UnsupportedMediaType,
            "unsupported_media_type",
            "expected a request with `content-type: application/json`",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => too_large(),
        _ => ApiError::bad_request("invalid_body", detail),
    }
}

/// The 413 answer, with a pointer to the way large blobs travel.
fn too_large() -> ApiError {
    ApiError::payload_too_large(
        "request body is larger than this endpoint accepts; upload large blobs with POST /api/v1/storage/uploads",
    )
}

/// The raw request body (octet streams such as backups), with our 413 over the body limit.
#[derive(Debug, Clone, Default)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(too_large())
            }
            Err(rejection) => Err(ApiError::bad_request(
                "invalid_body",
                client_detail(rejection.body_text()),
            )),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Query-string extractor: a malformed or mistyped parameter is 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection: QueryRejection| {
                ApiError::bad_request("invalid_query", client_detail(rejection.body_text()))
            })
    }
}

/// Path-parameter extractor: a malformed parameter is 400.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection: PathRejection| {
                ApiError::bad_request("invalid_path", client_detail(rejection.body_text()))
            })
    }
}

/// An `application/octet-stream` answer: the bytes themselves, or a `307 Temporary Redirect`
/// to where they are (a blob too large for a Lambda answer; `fetch` follows it).
#[derive(Debug, Clone)]
pub enum Octets {
    Bytes(axum::body::Bytes),
    At(String),
}

impl axum::response::IntoResponse for Octets {
    fn into_response(self) -> axum::response::Response {
        use axum::http::{HeaderValue, StatusCode, header};
        match self {
            Self::Bytes(bytes) => (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                )],
                bytes,
            )
                .into_response(),
            Self::At(url) => match HeaderValue::from_str(&url) {
                Ok(location) => (
                    StatusCode::TEMPORARY_REDIRECT,
                    [(header::LOCATION, location)],
                )
                    .into_response(),
                Err(err) => crate::ApiError::internal(err).into_response(),
            },
        }
    }
}
