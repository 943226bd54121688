//! Runs a function's axum router as an AWS Lambda function behind an API Gateway HTTP API.
//! The router is the same one the local server mounts; this crate only adds the gateway's
//! request id, so nothing in a handler knows whether it runs in Lambda or locally.

use adiuva_http::RequestId;
use axum::Router;
use axum::extract::Request;
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Adapter, Context, LambdaEvent, RequestExt, Service};

pub use lambda_http::Error;

/// The router with the API Gateway request id copied into the `RequestId` extension.
pub fn service(router: Router) -> Router {
    router.layer(axum::middleware::map_request(gateway_request_id))
}

async fn gateway_request_id(mut request: Request) -> Request {
    let id = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone(),
        #[allow(unreachable_patterns)]
        _ => None,
    };
    if let Some(id) = id {
        request.extensions_mut().insert(RequestId(id));
    }
    request
}

/// Starts the Lambda runtime loop. Call it last in `main`, after clients and pools are built.
pub async fn run(router: Router) -> Result<(), Error> {
    lambda_http::run(service(router)).await
}

/// Feeds one API Gateway event (JSON) through the router exactly as the runtime would, and
/// returns the JSON payload the function would hand back to API Gateway. Used by the tests
/// with the samples in `events/`.
pub async fn invoke(router: Router, event_json: &str) -> Result<serde_json::Value, Error> {
    let request: LambdaRequest = serde_json::from_str(event_json)?;
    let mut adapter = Adapter::from(service(router));
    let response = adapter
        .call(LambdaEvent::new(request, Context::default()))
        .await?;
    Ok(serde_json::to_value(&response)?)
}
