//! The whole API in one process: every function's router merged behind the same middleware the
//! Lambda functions use, plus the OpenAPI document at `/api/v1/openapi.json` and, with the
//! embedded blob store, the URL that stands in for S3 presigned uploads, and the streaming chat
//! WebSocket that stands in for API Gateway's WebSocket API. The binary
//! `adiuva-local` and the integration tests both build the app here.

use adiuva_auth::Accounts;
use adiuva_blob::BlobStore;
use adiuva_config::Config;
use adiuva_db::Database;
use adiuva_kv::KvStore;
use adiuva_plans::PlanCache;
use adiuva_storage::Storage;
use adiuva_vectors::VectorStore;
use axum::Router;
use axum::routing::get;
use axum::serve::ListenerExt;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub mod chat_stream;

/// Where the local server serves the OpenAPI document.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// What the functions are built from: the clients `main` makes once per process.
#[derive(Debug, Clone)]
pub struct Backends {
    pub db: Database,
    pub blobs: BlobStore,
    pub vectors: VectorStore,
    /// The shared short-lived store (DynamoDB, or memory on the embedded default).
    pub kv: KvStore,
}

impl Backends {
    /// The backends the configuration names (embedded ones where nothing is configured).
    pub fn from_config(config: &Config) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self {
            db: Database::from_config(config)?,
            blobs: BlobStore::from_config(config)?,
            vectors: VectorStore::from_config(config)?,
            kv: KvStore::from_config(config)?,
        })
    }
}

/// Every Lambda function with an HTTP route, by binary name, with its router: the one list of
/// what API Gateway serves.
pub fn functions(config: &Config, backends: &Backends) -> Vec<(&'static str, OpenApiRouter)> {
    functions_with(config, backends, chat_state(config, backends))
}

/// The chat's state (its orchestrator and LLM clients), shared by `POST /api/v1/chat` and the
/// streaming WebSocket of the local app.
fn chat_state(config: &Config, backends: &Backends) -> chat::State {
    chat::State::from_config(Accounts::new(backends.db.clone(), config), config)
}

fn functions_with(
    config: &Config,
    backends: &Backends,
    chat: chat::State,
) -> Vec<(&'static str, OpenApiRouter)> {
    let Backends {
        db,
        blobs,
        vectors,
        kv,
    } = backends;
    let accounts = Accounts::new(db.clone(), config);
    let storage = Storage::new(db.clone(), blobs.clone(), config);
    vec![
        ("health", health::router(db.clone())),
        ("auth", auth::router(accounts.clone())),
        (
            "account",
            account::router(account::State::new(
                accounts.clone(),
                storage.clone(),
                vectors.clone(),
            )),
        ),
        (
            "storage",
            storage::router(storage::State::new(accounts.clone(), storage.clone())),
        ),
        (
            "backup",
            backup::router(backup::State::new(accounts.clone(), storage)),
        ),
        (
            "vectors",
            vectors::router(vectors::State::new(accounts.clone(), vectors.clone())),
        ),
        (
            "plans",
            plans::router(plans::State::new(
                accounts.clone(),
                PlanCache::new(kv.clone()),
            )),
        ),
        ("chat", chat::router(chat)),
    ]
}

/// Every function's routes, merged: what API Gateway routes to the Lambda functions.
pub fn routes(config: &Config, backends: &Backends) -> OpenApiRouter {
    merged(functions(config, backends))
}

fn merged(functions: Vec<(&'static str, OpenApiRouter)>) -> OpenApiRouter {
    functions.into_iter().fold(
        OpenApiRouter::with_openapi(adiuva_http::api_doc()),
        |merged, (_, router)| merged.merge(router),
    )
}

/// The OpenAPI document of the whole API.
pub fn openapi(config: &Config, backends: &Backends) -> OpenApi {
    routes(config, backends).into_openapi()
}

/// The local app: all routes, the OpenAPI document, the embedded blob store's upload URL, and
/// the shared middleware.
pub fn app(config: &Config, backends: &Backends) -> Router {
    let chat = chat_state(config, backends);
    let routes = merged(functions_with(config, backends, chat.clone()));
    let document = routes.get_openapi().clone();
    let mut routes = routes.route(
        OPENAPI_PATH,
        get(move || std::future::ready(axum::Json(document.clone()))),
    );
    let heartbeat = std::time::Duration::from_secs(config.ws_heartbeat_seconds.max(1));
    routes = routes.merge(OpenApiRouter::from(chat_stream::router(chat, heartbeat)));
    if backends.blobs.local().is_some() {
        let storage = Storage::new(backends.db.clone(), backends.blobs.clone(), config);
        let uploads = storage::local_upload_router(storage, adiuva_storage::MAX_UPLOAD_BYTES);
        routes = routes.merge(OpenApiRouter::from(uploads));
    }
    adiuva_http::app(routes, config)
}

/// Serves `app` on `listener` until ctrl-c. Nagle's algorithm is off: streamed chat frames are
/// small, and holding them back for the client's delayed ACK costs 40 ms each.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener.tap_io(no_delay), app)
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
