//! The HTTP layer every function shares: the API error type (the one place domain errors
//! become statuses and JSON bodies), extractors whose rejections use that body, request ids and
//! spans, the client address, CORS from one list, the body limit, the route policy table, and
//! [`Function`]: a function's routes with the request pipeline around them. The caller-aware
//! stages (authentication, rate limits, idempotency) live in adiuva-pipeline, so a function
//! with only public routes links no authentication or store.

mod app;
mod base64;
pub mod contract;
pub mod cors;
mod error;
mod extract;
mod function;
pub mod paging;
mod request_id;
pub mod routes;

pub use app::api_doc;
pub use axum::http::StatusCode;
pub use base64::{Base64, Blob};
pub use error::{ApiError, ErrorBody, Result};
pub use extract::{Json, Octets, Path, Query, RawBody};
pub use function::{Function, HttpSettings, Stages};
pub use request_id::{ClientAddr, RequestId, current_request_id};
