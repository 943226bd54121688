//! The HTTP layer every function shares: the API error type and its JSON body, extractors whose
//! rejections use that body, request ids, CORS, the body limit, JSON logs and the OpenAPI base
//! document. Domain crates convert their errors into [`ApiError`]; nothing below this crate
//! knows about status codes.

mod app;
mod base64;
mod error;
mod extract;
pub mod logging;
mod request_id;

pub use app::{api_doc, app};
pub use axum::http::StatusCode;
pub use base64::Base64;
pub use error::{ApiError, ErrorBody, Result};
pub use extract::{Json, Path, Query, RawBody};
pub use request_id::{RequestId, current_request_id};
