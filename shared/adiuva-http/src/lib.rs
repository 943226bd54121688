//! The HTTP layer every function shares: the API error type (the one place domain errors
//! become statuses and JSON bodies), extractors whose rejections use that body, request ids and
//! spans, the request log and its metrics (CloudWatch EMF, in Lambda), the security headers of
//! every answer, the client address, CORS from one list, the body limit, route policies, and
//! [`Function`]: a function's routes ([`Routes`], built with [`routes!`]) with the request
//! pipeline around them. The caller-aware stages (authentication, rate limits, idempotency)
//! live in adiuva-pipeline, so a function with only public routes links no authentication or
//! store.
//!
//! A handler is declared with [`route`] (`#[route(get, path = "...", responses(...))]`, utoipa's
//! syntax). The `openapi` feature (off by default; the local server and the tests turn it on,
//! with each function's own) builds the OpenAPI document of the routes ([`Function::openapi`]);
//! without it no document exists and nothing of utoipa is compiled.

// `#[route]` writes `::adiuva_http::...`, which this crate's own tests use too.
extern crate self as adiuva_http;

mod base64;
#[cfg(feature = "openapi")]
pub mod contract;
pub mod cors;
mod error;
mod extract;
mod function;
pub mod headers;
pub mod metrics;
pub mod paging;
mod request_id;
mod router;
pub mod routes;

pub use adiuva_http_macros::route;
pub use axum::http::StatusCode;
#[cfg(feature = "openapi")]
pub use base64::base64_schema;
pub use base64::{Base64, Blob};
pub use error::{ApiError, ErrorBody, Result};
pub use extract::{Json, Octets, Path, Query, RawBody};
pub use function::{Function, HttpSettings, Stages};
pub use request_id::{ClientAddr, Gateway, RequestId, current_request_id};
#[cfg(feature = "openapi")]
pub use router::Operations;
pub use router::{Declaration, MethodRoutes, Routes};

/// What [`routes!`] expands to, not an API.
#[doc(hidden)]
pub mod __private {
    pub use pastey::paste;
}
