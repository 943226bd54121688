//! Runs a function as an AWS Lambda function behind an API Gateway HTTP API. The router is the
//! one the local server mounts; this crate only adds what the gateway knows (its request id and
//! the client's source address), so nothing in a handler knows whether it runs in Lambda or
//! locally.

use std::net::IpAddr;

use adiuva_config::{ConfigError, Context};
use adiuva_http::{ClientAddr, Function, RequestId};
use axum::Router;
use axum::extract::Request;
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Adapter, LambdaEvent, RequestExt, Service};

pub use lambda_http::Error;

/// The router with the API Gateway request id and source address copied into extensions.
pub fn service(router: Router) -> Router {
    router.layer(axum::middleware::map_request(from_gateway))
}

async fn from_gateway(mut request: Request) -> Request {
    let (id, source) = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => (
            context.request_id.clone(),
            context
                .http
                .source_ip
                .as_deref()
                .and_then(|ip| ip.parse::<IpAddr>().ok()),
        ),
        #[allow(unreachable_patterns)]
        _ => (None, None),
    };
    if let Some(id) = id {
        request.extensions_mut().insert(RequestId(id));
    }
    if let Some(source) = source {
        request.extensions_mut().insert(ClientAddr(source));
    }
    request
}

/// The whole `main` of an HTTP function: the context from the environment, logging, the
/// function from its constructor (the same one the local server and the tests call), then the
/// runtime loop. Clients are built before the first invocation and connect on first use.
pub async fn serve(function: fn(&Context) -> Result<Function, ConfigError>) -> Result<(), Error> {
    let context = Context::from_env()?;
    adiuva_config::logging::init(context.source())?;
    let router = function(&context)?.into_router();
    lambda_http::run(service(router)).await
}

/// Feeds one API Gateway event (JSON) through the router exactly as the runtime would, and
/// returns the JSON payload the function would hand back to API Gateway. Used by the tests
/// with the samples in `events/`.
pub async fn invoke(router: Router, event_json: &str) -> Result<serde_json::Value, Error> {
    let request: LambdaRequest = serde_json::from_str(event_json)?;
    let mut adapter = Adapter::from(service(router));
    let response = adapter
        .call(LambdaEvent::new(request, lambda_http::Context::default()))
        .await?;
    Ok(serde_json::to_value(&response)?)
}
