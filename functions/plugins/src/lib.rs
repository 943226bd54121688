//! Plugins function: the marketplace. The catalog (`GET /api/v1/plugins`, `GET
//! /api/v1/plugins/{id}`), ratings, installs; developer submissions (`POST /api/v1/plugins`)
//! and the developer's routes under `/api/v1/developer/`; the admin's review queue under
//! `/api/v1/admin/plugins/` behind the admin guard.

use adiuva_access::tiers::Feature;
use adiuva_config::{ConfigError, Context};
#[cfg(feature = "openapi")]
use adiuva_http::ErrorBody;
use adiuva_http::{Function, Json, Path, Query, RawBody, Result, Routes, StatusCode, routes};
#[cfg(feature = "openapi")]
use adiuva_marketplace::catalog::PluginList;
use adiuva_marketplace::catalog::{CatalogQuery, PluginDetail, Rating, RatingRequest};
use adiuva_marketplace::checklist::Manifest;
use adiuva_marketplace::developers::{DeveloperAccount, Onboarding};
#[cfg(feature = "openapi")]
use adiuva_marketplace::installs::{CheckoutNeeded, Installed};
use adiuva_marketplace::installs::{InstallOutcome, Uninstalled};
#[cfg(feature = "openapi")]
use adiuva_marketplace::openapi::PluginSubmission;
use adiuva_marketplace::revenue::{Earnings, EarningsQuery};
use adiuva_marketplace::review::{
    BlockRequest, Blocked, QueuedVersion, ReviewOutcome, ReviewRequest,
};
use adiuva_marketplace::submissions::{DeveloperPlugin, Submitted};
use adiuva_marketplace::{Marketplace, MarketplaceError};
use adiuva_pipeline::CurrentUser;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// The number of plugins that match a catalog query, beside the page in the body.
pub static X_TOTAL_COUNT: HeaderName = HeaderName::from_static("x-total-count");

pub fn function(context: &Context) -> Result<Function, ConfigError> {
    let marketplace: Marketplace = context.get()?;
    let routes = Routes::new()
        .routes(routes!(list).feature(Feature::PluginMarketplace.name()))
        .routes(routes!(submit).idempotent())
        .routes(routes!(detail).feature(Feature::PluginMarketplace.name()))
        .routes(routes!(rate))
        .routes(
            routes!(install)
                .idempotent()
                .feature(Feature::PluginMarketplace.name()),
        )
        .routes(routes!(uninstall))
        .routes(routes!(developer_plugins))
        .routes(routes!(connect).idempotent())
        .routes(routes!(account))
        .routes(routes!(earnings))
        .routes(routes!(queue).admin())
        .routes(routes!(review).admin().idempotent())
        .routes(routes!(block).admin())
        .with_state(marketplace);
    adiuva_pipeline::authenticated("plugins", routes, context)
}

/// Browses the marketplace (Power and Team): approved, unblocked plugins, 20 a page.
#[adiuva_http::route(get, path = "/api/v1/plugins", tag = "plugins",
    params(CatalogQuery),
    responses(
        (status = 200, description = "One page; the total is also in X-Total-Count", body = PluginList,
            headers(("x-total-count" = i64, description = "Plugins matching the query"))),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The tier has no marketplace", body = ErrorBody),
        (status = 422, description = "Unknown sort, bad page or too long a query", body = ErrorBody),
    ))]
async fn list(
    State(marketplace): State<Marketplace>,
    CurrentUser(_): CurrentUser,
    Query(query): Query<CatalogQuery>,
) -> Result<Response> {
    let list = marketplace.list(&query).await?;
    let total = HeaderValue::from(list.total);
    Ok(([(X_TOTAL_COUNT.clone(), total)], Json(list)).into_response())
}

/// Submits a plugin version: the manifest and a package committed through
/// `POST /api/v1/storage/uploads` with purpose `plugin_package`. Every check of the automated
/// checklist runs; a failure answers 422 with every reason. The body is read into a
/// [`Manifest`] with every field's bound applied while parsing: no client array or string
/// grows past its field's limit in memory, and a body that is not an object is 422 at once.
#[adiuva_http::route(post, path = "/api/v1/plugins", tag = "plugins",
    request_body(content = PluginSubmission, description = "The manifest and the committed package"),
    responses(
        (status = 201, description = "Waiting for review, with the checklist's results", body = Submitted),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 409, description = "Another developer's id, or a version already in review", body = ErrorBody),
        (status = 422, description = "The checklist failed: every reason in `reasons`", body = ErrorBody),
    ))]
async fn submit(
    State(marketplace): State<Marketplace>,
    CurrentUser(caller): CurrentUser,
    Json(manifest): Json<Manifest>,
) -> Result<(StatusCode, Json<Submitted>)> {
    Ok((
        StatusCode::CREATED,
        Json(marketplace.submit(&caller, manifest).await?),
    ))
}

/// A plugin's detail: manifest, install count, ratings, whether it is blocked, and the
/// caller's install and rating.
#[adiuva_http::route(get, path = "/api/v1/plugins/{id}", tag = "plugins",
    params(("id" = String, Path, pattern = "^[a-z0-9-]{3,64}$",
        description = "The plugin id: 3 to 64 lowercase letters, digits or `-` (no other id exists)")),
    responses(
        (status = 200, description = "The plugin", body = PluginDetail),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The tier has no marketplace", body = ErrorBody),
        (status = 404, description = "No such plugin (or not yet approved)", body = ErrorBody),
    ))]
async fn detail(
    State(marketplace): State<Marketplace>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<PluginDetail>> {
    Ok(Json(marketplace.detail(&caller, &id).await?))
}

/// Rates a plugin the caller installed, 1 to 5 stars; a new rating replaces the caller's.
#[adiuva_http::route(put, path = "/api/v1/plugins/{id}/rating", tag = "plugins",
    params(("id" = String, Path, pattern = "^[a-z0-9-]{3,64}$",
        description = "The plugin id: 3 to 64 lowercase letters, digits or `-` (no other id exists)")),
    request_body = RatingRequest,
    responses(
        (status = 200, description = "The plugin's ratings now", body = Rating),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The caller has not installed it", body = ErrorBody),
        (status = 404, description = "No such plugin", body = ErrorBody),
        (status = 422, description = "Stars out of 1 to 5", body = ErrorBody),
    ))]
async fn rate(
    State(marketplace): State<Marketplace>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
    Json(body): Json<RatingRequest>,
) -> Result<Json<Rating>> {
    Ok(Json(marketplace.rate(&caller, &id, body.stars).await?))
}

/// The reference's optional body.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InstallRequest {
    /// Must be the plugin id of the path.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9-]{3,64}$"))]
    pub plugin_id: String,
}

/// Installs a plugin (Power and Team). Free, or bought already: 200 with a short-lived
/// download URL. Paid and not bought: 202 with where to pay; the install happens when the
/// payment completes, after which this answers 200.
#[adiuva_http::route(post, path = "/api/v1/plugins/{id}/install", tag = "plugins",
    params(("id" = String, Path, pattern = "^[a-z0-9-]{3,64}$",
        description = "The plugin id: 3 to 64 lowercase letters, digits or `-` (no other id exists)")),
    request_body(content = Option<InstallRequest>, description = "Optional; the reference's body"),
    responses(
        (status = 200, description = "Installed", body = Installed),
        (status = 202, description = "Pay first", body = CheckoutNeeded),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The tier has no marketplace", body = ErrorBody),
        (status = 404, description = "No such plugin", body = ErrorBody),
        (status = 409, description = "The plugin is blocked", body = ErrorBody),
        (status = 422, description = "The body names another plugin", body = ErrorBody),
        (status = 503, description = "Stripe or the database is unavailable", body = ErrorBody),
    ))]
async fn install(
    State(marketplace): State<Marketplace>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Response> {
    if !body.iter().all(u8::is_ascii_whitespace) {
        let request: InstallRequest = serde_json::from_slice(&body).map_err(|err| {
            adiuva_http::ApiError::unprocessable("validation_error", format!("invalid body: {err}"))
        })?;
        if request.plugin_id != id {
            return Err(MarketplaceError::Invalid(
                "plugin_id in the body is not the plugin of the path".into(),
            )
            .into());
        }
    }
    Ok(match marketplace.install(&caller, &id).await? {
        InstallOutcome::Installed(installed) => Json(installed).into_response(),
        InstallOutcome::CheckoutNeeded(checkout) => {
            (StatusCode::ACCEPTED, Json(checkout)).into_response()
        }
    })
}

/// Uninstalls a plugin (no refund by itself).
#[adiuva_http::route(delete, path = "/api/v1/plugins/{id}/install", tag = "plugins",
    params(("id" = String, Path, pattern = "^[a-z0-9-]{3,64}$",
        description = "The plugin id: 3 to 64 lowercase letters, digits or `-` (no other id exists)")),
    responses(
        (status = 200, description = "Not installed any more", body = Uninstalled),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such plugin", body = ErrorBody),
    ))]
async fn uninstall(
    State(marketplace): State<Marketplace>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
) -> Result<Json<Uninstalled>> {
    Ok(Json(marketplace.uninstall(&caller, &id).await?))
}

/// The caller's plugins with every submitted version, its checklist results and the
/// reviewer's notes.
#[adiuva_http::route(get, path = "/api/v1/developer/plugins", tag = "developer",
    responses(
        (status = 200, description = "The caller's plugins", body = Vec<DeveloperPlugin>),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
async fn developer_plugins(
    State(marketplace): State<Marketplace>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<Vec<DeveloperPlugin>>> {
    Ok(Json(marketplace.developer_plugins(&caller).await?))
}

/// Starts (or resumes) Stripe Connect onboarding, so paid plugins can pay the caller out.
#[adiuva_http::route(post, path = "/api/v1/developer/connect", tag = "developer",
    responses(
        (status = 200, description = "Where to onboard", body = Onboarding),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 503, description = "Stripe is unavailable", body = ErrorBody),
    ))]
async fn connect(
    State(marketplace): State<Marketplace>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<Onboarding>> {
    Ok(Json(marketplace.purchases().connect(&caller).await?))
}

/// The caller's payout account: connected, payouts enabled.
#[adiuva_http::route(get, path = "/api/v1/developer/account", tag = "developer",
    responses(
        (status = 200, description = "The payout account", body = DeveloperAccount),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 503, description = "Stripe is unavailable", body = ErrorBody),
    ))]
async fn account(
    State(marketplace): State<Marketplace>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<DeveloperAccount>> {
    Ok(Json(marketplace.purchases().account(&caller).await?))
}

/// The caller's earnings by month of sale (`?period=YYYY-MM` for one month).
#[adiuva_http::route(get, path = "/api/v1/developer/earnings", tag = "developer",
    params(EarningsQuery),
    responses(
        (status = 200, description = "Earnings by month, newest first", body = Earnings),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 422, description = "A period that is not YYYY-MM", body = ErrorBody),
    ))]
async fn earnings(
    State(marketplace): State<Marketplace>,
    CurrentUser(caller): CurrentUser,
    Query(query): Query<EarningsQuery>,
) -> Result<Json<Earnings>> {
    Ok(Json(
        marketplace.purchases().earnings(&caller, &query).await?,
    ))
}

/// The versions waiting for review, oldest first, with their checklist results (admin).
#[adiuva_http::route(get, path = "/api/v1/admin/plugins/queue", tag = "admin",
    responses(
        (status = 200, description = "The queue", body = Vec<QueuedVersion>),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
async fn queue(
    State(marketplace): State<Marketplace>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<Vec<QueuedVersion>>> {
    Ok(Json(marketplace.queue(&caller).await?))
}

/// Approves or rejects the plugin's version under review (admin).
#[adiuva_http::route(post, path = "/api/v1/admin/plugins/{id}/review", tag = "admin",
    params(("id" = String, Path, pattern = "^[a-z0-9-]{3,64}$",
        description = "The plugin id: 3 to 64 lowercase letters, digits or `-` (no other id exists)")),
    request_body = ReviewRequest,
    responses(
        (status = 200, description = "The decision, recorded", body = ReviewOutcome),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin, or the admin's own plugin (`own_plugin`)", body = ErrorBody),
        (status = 404, description = "No such plugin", body = ErrorBody),
        (status = 409, description = "No version waiting for review", body = ErrorBody),
        (status = 422, description = "Unknown decision, or a rejection without notes", body = ErrorBody),
    ))]
async fn review(
    State(marketplace): State<Marketplace>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
    Json(body): Json<ReviewRequest>,
) -> Result<Json<ReviewOutcome>> {
    Ok(Json(marketplace.review(&caller, &id, body).await?))
}

/// Blocks a plugin: gone from the catalog, no new installs; existing installs keep working
/// and see the block in the detail (admin).
#[adiuva_http::route(post, path = "/api/v1/admin/plugins/{id}/block", tag = "admin",
    params(("id" = String, Path, pattern = "^[a-z0-9-]{3,64}$",
        description = "The plugin id: 3 to 64 lowercase letters, digits or `-` (no other id exists)")),
    request_body = BlockRequest,
    responses(
        (status = 200, description = "Blocked", body = Blocked),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such plugin", body = ErrorBody),
        (status = 422, description = "No reason", body = ErrorBody),
    ))]
async fn block(
    State(marketplace): State<Marketplace>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
    Json(body): Json<BlockRequest>,
) -> Result<Json<Blocked>> {
    Ok(Json(marketplace.block(&caller, &id, &body.reason).await?))
}
