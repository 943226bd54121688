//! Health function: liveness (`GET /api/v1/health`) and readiness (`GET /api/v1/health/ready`,
//! which checks the database and answers 503 when it is down).

use std::time::Duration;

use adiuva_config::{ConfigError, Context};
use adiuva_db::Database;
use adiuva_error::ErrorKind;
#[cfg(feature = "openapi")]
use adiuva_http::ErrorBody;
use adiuva_http::{ApiError, Function, Json, Routes, routes};
use axum::extract::State;
use serde::Serialize;

/// How long readiness waits for the database before calling it down.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// The health function: public routes only, so its pipeline has no caller and no store.
pub fn function(context: &Context) -> Result<Function, ConfigError> {
    let db: Database = context.get()?;
    let routes = Routes::new()
        .routes(routes!(health).public())
        .routes(routes!(ready).public())
        .with_state(db);
    Function::public("health", routes, context)
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthStatus {
    /// Always `ok` when the service answers.
    pub status: &'static str,
    pub version: &'static str,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReadyStatus {
    pub status: &'static str,
    pub database: &'static str,
}

/// Liveness: the function runs. Touches no dependency.
#[adiuva_http::route(get, path = "/api/v1/health", tag = "health",
    responses((status = 200, description = "The service is up", body = HealthStatus)))]
async fn health() -> Json<HealthStatus> {
    Json(HealthStatus {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Readiness: the database answers a query.
#[adiuva_http::route(get, path = "/api/v1/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = ReadyStatus),
        (status = 503, description = "The database is unreachable", body = ErrorBody),
    ))]
async fn ready(State(db): State<Database>) -> Result<Json<ReadyStatus>, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, db.ping()).await {
        Ok(Ok(())) => Ok(Json(ReadyStatus {
            status: "ok",
            database: "ok",
        })),
        Ok(Err(err)) => Err(database_down(err)),
        Err(elapsed) => Err(database_down(elapsed)),
    }
}

fn database_down(cause: impl std::error::Error + Send + Sync + 'static) -> ApiError {
    tracing::warn!(error = %adiuva_error::cause_chain(&cause), "readiness: the database is down");
    ApiError::new(
        ErrorKind::Unavailable,
        "dependency_unavailable",
        "the database is temporarily unavailable, retry later",
    )
}
