//! The whole API in one process: every function's router merged behind the same middleware the
//! Lambda functions use, plus the OpenAPI document at `/api/v1/openapi.json`. The binary
//! `adiuva-local` and the integration tests both build the app here.

use adiuva_auth::Accounts;
use adiuva_config::Config;
use adiuva_db::Database;
use axum::Router;
use axum::routing::get;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

/// Where the local server serves the OpenAPI document.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Every Lambda function by binary name, with its router: the one list of what is deployed.
pub fn functions(config: &Config, db: &Database) -> Vec<(&'static str, OpenApiRouter)> {
    vec![
        ("health", health::router(db.clone())),
        ("auth", auth::router(Accounts::new(db.clone(), config))),
    ]
}

/// Every function's routes, merged: what API Gateway routes to the Lambda functions.
pub fn routes(config: &Config, db: &Database) -> OpenApiRouter {
    functions(config, db).into_iter().fold(
        OpenApiRouter::with_openapi(adiuva_http::api_doc()),
        |merged, (_, router)| merged.merge(router),
    )
}

/// The OpenAPI document of the whole API.
pub fn openapi(config: &Config, db: &Database) -> OpenApi {
    routes(config, db).into_openapi()
}

/// The local app: all routes, the OpenAPI document, and the shared middleware.
pub fn app(config: &Config, db: &Database) -> Router {
    let routes = routes(config, db);
    let document = routes.get_openapi().clone();
    let routes = routes.route(
        OPENAPI_PATH,
        get(move || std::future::ready(axum::Json(document.clone()))),
    );
    adiuva_http::app(routes, config)
}

/// Serves `app` on `listener` until ctrl-c.
pub async fn serve(listener: tokio::net::TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
        .await
}
