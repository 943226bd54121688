//! The OpenAPI document's part that no handler declares: the base document every function's
//! routes start from, and what the request pipeline adds to every route's contract, written in
//! one place instead of on each handler: which operations need a bearer token (from the routes'
//! declared policies), and the answers the pipeline's stages give before a handler runs.
//!
//! Only with the `openapi` feature (the local server and the tests, which serve and check the
//! document); a Lambda binary builds no document.
//!
//! | stage | operations | statuses |
//! |---|---|---|
//! | body limit, JSON extractor | with a JSON body | 400 malformed JSON, 413, 415 not JSON, 422 wrong fields |
//! | body limit | with another body | 413 |
//! | path and query extractors | with parameters | 400 |
//! | authentication | not public | 401 |
//! | tier rate limit | not public | 429 with `Retry-After` |
//! | idempotency | the idempotent routes | 400 bad key, 409 key in use, 422 key reused |
//! | the store behind the caller | every operation of a caller-aware function | 503 with `Retry-After` |
//!
//! A status a handler documents itself keeps its description; the pipeline's is added only when
//! it is missing.

use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HeaderBuilder, InfoBuilder, ObjectBuilder, OpenApi,
    OpenApiBuilder, Ref, RefOr, Required, Type,
};

use crate::routes::Policies;
use axum::http::Method;

/// The JSON content type of request bodies the [`crate::Json`] extractor reads.
const JSON: &str = "application/json";

/// The base document every function's routes start from: title, version and the bearer
/// security scheme that authenticated operations refer to as `bearer`.
pub(crate) fn base_document() -> OpenApi {
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

/// Completes `document` with the pipeline's part of every operation's contract. `caller_aware`:
/// the function runs the authentication, rate-limit and idempotency stages (and so reaches a
/// store on every request).
pub(crate) fn complete(document: &mut OpenApi, policies: &Policies, caller_aware: bool) {
    for (path, item) in document.paths.paths.iter_mut() {
        for (method, operation) in operations(item) {
            complete_operation(path, &method, operation, policies, caller_aware);
        }
    }
}

fn operations(item: &mut PathItem) -> Vec<(Method, &mut Operation)> {
    [
        (Method::GET, item.get.as_mut()),
        (Method::PUT, item.put.as_mut()),
        (Method::POST, item.post.as_mut()),
        (Method::DELETE, item.delete.as_mut()),
        (Method::PATCH, item.patch.as_mut()),
    ]
    .into_iter()
    .filter_map(|(method, operation)| operation.map(|operation| (method, operation)))
    .collect()
}

fn complete_operation(
    path: &str,
    method: &Method,
    operation: &mut Operation,
    policies: &Policies,
    caller_aware: bool,
) {
    let public = policies.is_public(method, path);
    operation.security =
        (!public).then(|| vec![SecurityRequirement::new("bearer", [] as [&str; 0])]);

    if let Some(body) = &operation.request_body {
        let json = matches!(body, RefOr::T(body) if body.content.contains_key(JSON));
        add(operation, 413, "The body is larger than this route accepts");
        if json {
            add(operation, 400, "The body is not JSON");
            add(
                operation,
                415,
                "The body is not `content-type: application/json`",
            );
            add(
                operation,
                422,
                "A field is missing, of the wrong type or out of bounds",
            );
        }
    }
    let has_parameters = operation
        .parameters
        .as_ref()
        .is_some_and(|parameters| !parameters.is_empty());
    if has_parameters {
        add(operation, 400, "A parameter is malformed");
    }
    if !caller_aware {
        return;
    }
    if !public {
        add(
            operation,
            401,
            "No bearer token, or an invalid, expired or revoked one",
        );
        add_retry_after(operation, 429, "Over the tier's rate limit");
    }
    if policies.is_idempotent(method, path) {
        idempotency_key(operation);
        add(
            operation,
            400,
            "The Idempotency-Key is not 1 to 255 visible ASCII characters",
        );
        add(
            operation,
            409,
            "A request with this Idempotency-Key is still being answered",
        );
        add(
            operation,
            422,
            "The Idempotency-Key was used for another request",
        );
    }
    add_retry_after(operation, 503, "A backing store is unavailable; try again");
}

/// Documents the `Idempotency-Key` header an idempotent route honours.
fn idempotency_key(operation: &mut Operation) {
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    let present = parameters.iter().any(|parameter| {
        matches!(parameter, RefOr::T(p) if p.name.eq_ignore_ascii_case("idempotency-key"))
    });
    if present {
        return;
    }
    parameters.push(RefOr::T(
        ParameterBuilder::new()
            .name("Idempotency-Key")
            .parameter_in(ParameterIn::Header)
            .required(Required::False)
            .description(Some(
                "Replays the first answer to a retry with the same key and body (24 hours)",
            ))
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(IDEMPOTENCY_KEY_MAX_LEN))
                    .pattern(Some("^[!-~]+$")),
            ))
            .build(),
    ));
}

/// The longest Idempotency-Key, as `adiuva_limits::idempotency::MAX_KEY_LEN` checks it (a test
/// holds the two equal; this crate links no store).
pub const IDEMPOTENCY_KEY_MAX_LEN: usize = 255;

fn error_content() -> utoipa::openapi::Content {
    ContentBuilder::new()
        .schema(Some(Ref::from_schema_name("ErrorBody")))
        .build()
}

fn add(operation: &mut Operation, status: u16, description: &str) {
    insert(operation, status, description, false);
}

/// A status whose answer says in `Retry-After` when to try again (429, 503).
fn add_retry_after(operation: &mut Operation, status: u16, description: &str) {
    insert(operation, status, description, true);
}

fn insert(operation: &mut Operation, status: u16, description: &str, retry_after: bool) {
    operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| {
            let mut response = ResponseBuilder::new()
                .description(description)
                .content(JSON, error_content());
            if retry_after {
                response = response.header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(
                            ObjectBuilder::new()
                                .schema_type(Type::Integer)
                                .minimum(Some(0)),
                        ))
                        .description(Some("Seconds to wait before retrying"))
                        .build(),
                );
            }
            RefOr::T(response.build())
        });
}
