//! The base OpenAPI document every function's routes start from.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, InfoBuilder, OpenApi, OpenApiBuilder};

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
