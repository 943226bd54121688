//! Runs a function as an AWS Lambda function behind an API Gateway HTTP API. The router is the
//! one the local server mounts; this crate only adds what the gateway knows (its request id,
//! the client's source address, and that the request came over HTTPS through it), so nothing in
//! a handler knows whether it runs in Lambda or locally.
//!
//! The client's address is API Gateway's `sourceIp`. Behind the CloudFront distribution of
//! `infra/` (its `EdgeProtection`, whose WAF throttles each address on the auth routes), the
//! source is a CloudFront edge, and the viewer's address comes in CloudFront's
//! `CloudFront-Viewer-Address` header. That header is believed only on a request that carries
//! the origin secret CloudFront adds (`X-Origin-Verify` = `EDGE_ORIGIN_SECRET`), so a client
//! calling the API Gateway endpoint directly cannot choose its address.

use std::net::IpAddr;
use std::sync::Arc;

use adiuva_config::{ConfigError, Context, Secret};
use adiuva_http::{ClientAddr, Function, Gateway, RequestId};
use axum::Router;
use axum::extract::{Request, State};
use lambda_http::request::{LambdaRequest, RequestContext};
use lambda_http::{Adapter, LambdaEvent, RequestExt, Service};

pub use lambda_http::Error;

/// The secret CloudFront sends to the origin (`EDGE_ORIGIN_SECRET`); `None` without the edge.
#[derive(Debug, Clone, Default)]
pub struct Edge {
    origin_secret: Option<Arc<Secret>>,
}

impl Edge {
    pub fn new(origin_secret: Option<Secret>) -> Self {
        Self {
            origin_secret: origin_secret.map(Arc::new),
        }
    }

    pub fn from_context(context: &Context) -> Self {
        Self::new(context.source().secret("EDGE_ORIGIN_SECRET"))
    }

    /// The viewer's address CloudFront reports, if this request came through our
    /// distribution (it carries the origin secret).
    fn viewer(&self, request: &Request) -> Option<IpAddr> {
        let secret = self.origin_secret.as_deref()?;
        let given = request.headers().get("x-origin-verify")?.to_str().ok()?;
        if !adiuva_checksum::same_secret(secret.expose(), given) {
            return None;
        }
        viewer_address(
            request
                .headers()
                .get("cloudfront-viewer-address")?
                .to_str()
                .ok()?,
        )
    }
}

/// `CloudFront-Viewer-Address`: the address and port, `198.51.100.10:46532` or
/// `2001:db8::1:46532` (the last colon separates the port; brackets are accepted too).
fn viewer_address(value: &str) -> Option<IpAddr> {
    let (address, port) = value.trim().rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let address = address
        .strip_prefix('[')
        .and_then(|inner| inner.strip_suffix(']'))
        .unwrap_or(address);
    address.parse().ok()
}

/// The router with the API Gateway request id and the client's address copied into
/// extensions, and every request marked as having come through the gateway ([`Gateway`]: over
/// HTTPS, so answers carry HSTS; in Lambda, so the request log writes its metrics).
pub fn service(router: Router, edge: Edge) -> Router {
    router.layer(axum::middleware::map_request_with_state(edge, from_gateway))
}

async fn from_gateway(State(edge): State<Edge>, mut request: Request) -> Request {
    request.extensions_mut().insert(Gateway);
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
    if let Some(client) = edge.viewer(&request).or(source) {
        request.extensions_mut().insert(ClientAddr(client));
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
    lambda_http::run(service(router, Edge::from_context(&context))).await
}

/// Feeds one API Gateway event (JSON) through the router exactly as the runtime would, and
/// returns the JSON payload the function would hand back to API Gateway. Used by the tests
/// with the samples in `events/`.
pub async fn invoke(
    router: Router,
    edge: Edge,
    event_json: &str,
) -> Result<serde_json::Value, Error> {
    let request: LambdaRequest = serde_json::from_str(event_json)?;
    let mut adapter = Adapter::from(service(router, edge));
    let response = adapter
        .call(LambdaEvent::new(request, lambda_http::Context::default()))
        .await?;
    Ok(serde_json::to_value(&response)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_viewer_address_is_read_with_its_port_stripped() {
        for (header, expected) in [
            ("198.51.100.10:46532", Some("198.51.100.10")),
            ("2001:db8::1:46532", Some("2001:db8::1")),
            ("[2001:db8::1]:443", Some("2001:db8::1")),
            ("198.51.100.10", None),
            ("not an address:80", None),
            ("198.51.100.10:port", None),
            ("", None),
        ] {
            assert_eq!(
                viewer_address(header),
                expected.map(|ip| ip.parse::<IpAddr>().unwrap()),
                "{header:?}"
            );
        }
    }

    fn request(verify: Option<&str>) -> Request {
        let mut builder = http::Request::builder()
            .uri("/")
            .header("cloudfront-viewer-address", "203.0.113.7:5000");
        if let Some(verify) = verify {
            builder = builder.header("x-origin-verify", verify);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    }

    #[test]
    fn the_viewer_header_counts_only_with_the_origin_secret() {
        let edge = Edge::new(Some(Secret::new("origin-secret")));
        assert_eq!(
            edge.viewer(&request(Some("origin-secret"))),
            Some("203.0.113.7".parse().unwrap())
        );
        assert_eq!(edge.viewer(&request(Some("guessed"))), None);
        assert_eq!(edge.viewer(&request(None)), None);
        // Without the edge, the header is never believed.
        assert_eq!(
            Edge::default().viewer(&request(Some("origin-secret"))),
            None
        );
    }
}
