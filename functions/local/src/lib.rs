//! The whole API in one process: every function, built by its own constructor, merged behind
//! one request pipeline, plus the OpenAPI document at `/api/v1/openapi.json` (and outside
//! production its interactive reference at `/docs`) and, with the
//! embedded blob store, the URL that stands in for S3 presigned uploads, and the streaming chat
//! WebSocket that stands in for API Gateway's WebSocket API. The binary `adiuva-local` and the
//! integration tests both build the app here.

use std::net::SocketAddr;

use adiuva_blob::BlobStore;
use adiuva_config::{ConfigError, Context};
use adiuva_http::{Function, Routes};
use adiuva_storage::Storage;
use axum::Router;
use axum::routing::get;
use axum::serve::ListenerExt;
use utoipa::openapi::OpenApi;

pub mod chat_stream;
pub mod cli;
pub mod docs;

/// Where the local server serves the OpenAPI document.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Every Lambda function with an HTTP route, by binary name, each built by the constructor its
/// own `main.rs` calls: the one list of what API Gateway serves.
pub fn functions(context: &Context) -> Result<Vec<(&'static str, Function)>, ConfigError> {
    Ok(vec![
        ("health", health::function(context)?),
        ("auth", auth::function(context)?),
        ("account", account::function(context)?),
        ("storage", storage::function(context)?),
        ("backup", backup::function(context)?),
        ("vectors", vectors::function(context)?),
        ("plans", plans::function(context)?),
        ("chat", chat::function(context)?),
        ("billing", billing::function(context)?),
        ("plugins", plugins::function(context)?),
        ("teams", teams::function(context)?),
    ])
}

/// Every function merged behind one pipeline: what API Gateway routes to the Lambda functions.
fn merged(context: &Context) -> Result<Function, ConfigError> {
    Ok(functions(context)?
        .into_iter()
        .map(|(_, function)| function)
        .reduce(Function::merge)
        .expect("the list of functions is not empty"))
}

/// The OpenAPI document of the whole API.
pub fn openapi(context: &Context) -> Result<OpenApi, ConfigError> {
    Ok(merged(context)?.openapi())
}

/// The local app: all routes, the OpenAPI document, the streaming chat, the embedded blob
/// store's upload and download URLs, the stub page and the docs page (outside production), and
/// the shared pipeline around all of it.
pub fn app(context: &Context) -> Result<Router, ConfigError> {
    let api = merged(context)?;
    let document = api.openapi();
    let mut extras = Routes::new()
        .public_route(
            OPENAPI_PATH,
            get(move || std::future::ready(axum::Json(document.clone()))),
        )
        .merge(Routes::from(chat_stream::router(context)?));
    // The stub page, for trying tiers, plugin purchases and payouts without Stripe; never in
    // production.
    if !context.is_prod() {
        extras = extras.merge(billing::stub_router(context)?);
        // The interactive reference of the document, as the reference serves it: in
        // development only.
        extras = extras.merge(docs::router());
    }
    let blobs: BlobStore = context.get()?;
    if blobs.local().is_some() {
        let storage: Storage = context.get()?;
        let uploads = storage::local_upload_router(storage);
        extras = extras.merge(uploads);
    }
    Ok(api
        .with_routes(extras)
        .into_router()
        .layer(axum::middleware::from_fn(drain_refused_bodies)))
}

/// How much of a refused request body the local server still reads, so that its client can
/// read the answer.
const DRAIN_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// Lets a client whose body is refused before it is read (413 over the body limit, 401, ...)
/// read the answer. Without this the server answers and closes while the client is still
/// sending, and the client (one that does not send `Expect: 100-continue`) gets a broken pipe
/// instead of the 413. The body is passed to the routes through a channel; what they leave
/// unread is read and dropped (up to 64 MiB). API Gateway reads whole bodies itself, so only
/// the local server needs this.
async fn drain_refused_bodies(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let headers = request.headers();
    let has_body = headers.contains_key(axum::http::header::TRANSFER_ENCODING)
        || headers
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|length| length != "0");
    if !has_body {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    tokio::spawn(forward_body(body, sender));
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|chunk| (chunk, receiver))
    });
    let request = axum::extract::Request::from_parts(parts, axum::body::Body::from_stream(stream));
    next.run(request).await
}

async fn forward_body(
    body: axum::body::Body,
    sender: tokio::sync::mpsc::Sender<Result<axum::body::Bytes, axum::Error>>,
) {
    use futures_util::StreamExt as _;
    let mut chunks = body.into_data_stream();
    let mut dropped = 0usize;
    while let Some(chunk) = chunks.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(err) => {
                let _ = sender.send(Err(err)).await;
                return;
            }
        };
        if sender.is_closed() || sender.send(Ok(chunk.clone())).await.is_err() {
            dropped += chunk.len();
            if dropped > DRAIN_LIMIT_BYTES {
                return;
            }
        }
    }
}

/// Serves `app` on `listener` until ctrl-c, with each connection's peer address (the client
/// address of brute-force limits). Nagle's algorithm is off: streamed chat frames are small,
/// and holding them back for the client's delayed ACK costs 40 ms each.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(
        listener.tap_io(no_delay),
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
    .await
}

/// Turns Nagle's algorithm off on an accepted connection (see [`serve`]).
pub fn no_delay(stream: &mut tokio::net::TcpStream) {
    if let Err(err) = stream.set_nodelay(true) {
        tracing::warn!(error = %err, "could not set TCP_NODELAY");
    }
}
