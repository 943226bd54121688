//! Billing function: `POST /api/v1/billing/checkout`, `POST /api/v1/billing/webhook` (public:
//! Stripe signs it), `GET` and `DELETE /api/v1/billing/subscription`,
//! `GET /api/v1/billing/entitlements` (with the AI token budget of `adiuva-budgets`),
//! `POST /api/v1/billing/portal`, and
//! `PUT /api/v1/teams/{id}/seats` (a team's seats are its subscription's quantity at Stripe).
//! The webhook is Stripe's one endpoint: the marketplace's
//! events (plugin purchases, refunds, developers' accounts) go to its [`Purchases`], the
//! subscription events to billing. The local server also mounts [`stub_router`], the page
//! that completes stub links (tiers, plugin purchases, payout onboarding).

use adiuva_access::entitlements::{Allowances, Entitlements};
use adiuva_billing::{Billing, Checkout, CheckoutOrder, Delivery, StubItem, SubscriptionView};
use adiuva_budgets::{AiUsage, Budgets};
use adiuva_config::{ConfigError, Context};
#[cfg(feature = "openapi")]
use adiuva_http::ErrorBody;
use adiuva_http::{ApiError, Function, Json, Path, Query, RawBody, Result, Routes, routes};
use adiuva_marketplace::Purchases;
use adiuva_marketplace::purchases::StubCompleted;
use adiuva_pipeline::CurrentUser;
use adiuva_teams::Team;
use axum::extract::{FromRef, State};
use axum::http::HeaderMap;
use axum::response::Html;
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

/// What the routes share.
#[derive(Debug, Clone)]
struct Services {
    billing: Billing,
    purchases: Purchases,
    allowances: Allowances,
    /// The AI token budgets, for the entitlements' AI figure (adiuva-budgets builds on
    /// adiuva-access, so the two are put together here, not in the entitlements).
    budgets: Budgets,
}

impl FromRef<Services> for Billing {
    fn from_ref(services: &Services) -> Self {
        services.billing.clone()
    }
}

fn services(context: &Context) -> Result<Services, ConfigError> {
    Ok(Services {
        billing: context.get()?,
        purchases: context.get()?,
        allowances: context.get()?,
        budgets: context.get()?,
    })
}

pub fn function(context: &Context) -> Result<Function, ConfigError> {
    let routes = Routes::new()
        .routes(routes!(checkout).idempotent())
        // Stripe signs its deliveries.
        .routes(routes!(webhook).public())
        .routes(routes!(subscription, cancel))
        .routes(routes!(portal).idempotent())
        .routes(routes!(entitlements))
        .routes(routes!(change_seats))
        .with_state(services(context)?);
    adiuva_pipeline::authenticated("billing", routes, context)
}

/// The page a stub link opens (local server only, never in production): it completes what
/// Stripe's page would have, without Stripe. Public: the signed one-time link is the
/// credential.
pub fn stub_router(context: &Context) -> Result<Routes, ConfigError> {
    Ok(Routes::new()
        .public_route(adiuva_billing::STUB_PATH, axum::routing::get(complete_stub))
        .with_state(services(context)?))
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CheckoutRequest {
    /// The paid tier to buy: `pro`, `power` or `team`.
    #[cfg_attr(feature = "openapi", schema(schema_with = paid_tier))]
    pub tier: String,
    /// Tier `team` only: the team whose seats to buy (the caller must own it). Without it, a
    /// team is made for the caller, its owner, and billed.
    #[serde(default)]
    pub team_id: Option<String>,
    /// Tier `team` only: how many seats, 1 to 1000 (default 1).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub seats: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeatsRequest {
    /// The team's seats from now on, 1 to 1000: at least its members and pending invitations.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub seats: i64,
}

/// The tiers [`Billing::checkout`] sells (`free` is not one).
#[cfg(feature = "openapi")]
fn paid_tier() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::String)
        .enum_values(Some(["pro", "power", "team"]))
        .description(Some("The paid tier to buy: `pro`, `power` or `team`."))
        .build()
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Received {
    pub ok: bool,
}

#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Portal {
    /// Stripe's Billing Portal, where the user manages cards and invoices.
    pub portal_url: String,
}

/// The reference's `{"ok": true}`, with the subscription as it is after cancelling.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Cancelled {
    pub ok: bool,
    #[serde(flatten)]
    pub subscription: SubscriptionView,
}

#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct CancelQuery {
    /// `true` (default): at the end of the paid period; `false`: now, back to free at once.
    #[cfg_attr(feature = "openapi", param(value_type = bool, required = false))]
    pub at_period_end: Option<bool>,
}

/// Starts a Stripe Checkout of a paid tier; open `checkout_url` in a browser. The Team tier is
/// bought per seat for a team (`quantity` = `seats` on the Team price): the caller's team named
/// by `team_id`, or one made for the caller. A personal tier and a team's seats are separate
/// subscriptions.
#[adiuva_http::route(post, path = "/api/v1/billing/checkout", tag = "billing",
    request_body = CheckoutRequest,
    responses(
        (status = 200, description = "Where to pay", body = Checkout),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "The caller is a member of the team but not its owner", body = ErrorBody),
        (status = 404, description = "No such team among the caller's", body = ErrorBody),
        (status = 409, description = "The caller's own subscription already has this tier, or the team already has a subscription", body = ErrorBody),
        (status = 422, description = "Not a paid tier, seats outside 1 to 1000, or team fields with another tier", body = ErrorBody),
        (status = 503, description = "Stripe is unavailable; nothing was charged", body = ErrorBody),
    ))]
async fn checkout(
    State(billing): State<Billing>,
    CurrentUser(caller): CurrentUser,
    Json(body): Json<CheckoutRequest>,
) -> Result<Json<Checkout>> {
    let order = CheckoutOrder {
        tier: &body.tier,
        team_id: body.team_id.as_deref(),
        seats: body.seats,
    };
    Ok(Json(billing.checkout(&caller, &order).await?))
}

/// Changes a team's seats (its owner only): the subscription's quantity at Stripe, prorated
/// on the next invoice (stub mode: at once).
#[adiuva_http::route(put, path = "/api/v1/teams/{id}/seats", tag = "teams",
    params(("id" = String, Path, description = "The team")),
    request_body = SeatsRequest,
    responses(
        (status = 200, description = "The team with its new seats", body = Team),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 402, description = "The team has no active subscription (team_inactive)", body = ErrorBody),
        (status = 403, description = "The caller is a member but not the owner", body = ErrorBody),
        (status = 404, description = "No such team among the caller's", body = ErrorBody),
        (status = 409, description = "Fewer seats than members and pending invitations (seats_in_use)", body = ErrorBody),
        (status = 422, description = "Seats outside 1 to 1000", body = ErrorBody),
        (status = 503, description = "Stripe is unavailable; nothing changed", body = ErrorBody),
    ))]
async fn change_seats(
    State(billing): State<Billing>,
    CurrentUser(caller): CurrentUser,
    Path(id): Path<String>,
    Json(body): Json<SeatsRequest>,
) -> Result<Json<Team>> {
    Ok(Json(billing.change_seats(&caller, &id, body.seats).await?))
}

/// Stripe's events (checkout completed, subscription created, updated and deleted, invoice
/// paid and payment failed), signed with the endpoint's secret.
#[adiuva_http::route(post, path = "/api/v1/billing/webhook", tag = "billing",
    params(("Stripe-Signature" = String, Header, description = "t=<unix time>,v1=<HMAC-SHA256>")),
    request_body(content = String, content_type = "application/json"),
    responses(
        (status = 200, description = "Received (applied, already applied, or ignored)", body = Received),
        (status = 400, description = "Missing, invalid or stale signature; nothing changed", body = ErrorBody),
        (status = 503, description = "Webhooks not configured, or Stripe unavailable: Stripe retries", body = ErrorBody),
    ))]
async fn webhook(
    State(services): State<Services>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<Received>> {
    let signature = headers
        .get("stripe-signature")
        .and_then(|value| value.to_str().ok());
    if let Delivery::Event(event) = services.billing.read_webhook(&body, signature)? {
        let span =
            tracing::info_span!("stripe_event", event_id = event.id, event_type = event.kind);
        let mut outcome = services
            .purchases
            .apply(&event)
            .instrument(span.clone())
            .await?;
        if outcome.is_none() {
            outcome = services
                .billing
                .apply(&event)
                .instrument(span.clone())
                .await?;
        }
        span.in_scope(|| match outcome {
            Some(outcome) => tracing::info!(outcome = ?outcome, "webhook event handled"),
            None => tracing::info!("webhook event acknowledged and ignored"),
        });
    }
    Ok(Json(Received { ok: true }))
}

/// The caller's subscription; `free` without one.
#[adiuva_http::route(get, path = "/api/v1/billing/subscription", tag = "billing",
    responses(
        (status = 200, description = "The subscription", body = SubscriptionView),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
    ))]
async fn subscription(
    State(billing): State<Billing>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<SubscriptionView>> {
    Ok(Json(billing.subscription(&caller).await?))
}

/// `GET /api/v1/billing/entitlements`: the entitlements and, beside them, the AI token budget
/// of this month.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EntitlementsView {
    #[serde(flatten)]
    pub entitlements: Entitlements,
    /// This month's AI token budget: the same object as `GET /api/v1/chat/usage`.
    pub ai_usage: AiUsage,
}

/// What the caller's tier allows (features as numbers, `null` for unlimited, or flags), how
/// much of each quota they use, and their AI token budget this month (`ai_usage`, as `GET
/// /api/v1/chat/usage` answers it): the desktop app's one source for the gates it applies
/// itself.
#[adiuva_http::route(get, path = "/api/v1/billing/entitlements", tag = "billing",
    responses(
        (status = 200, description = "The tier's features, the caller's usage and AI token budget", body = EntitlementsView),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 503, description = "The database is unavailable", body = ErrorBody),
    ))]
async fn entitlements(
    State(services): State<Services>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<EntitlementsView>> {
    let (entitlements, ai_usage) = tokio::try_join!(
        async {
            services
                .allowances
                .of(&caller)
                .await
                .map_err(ApiError::from)
        },
        async {
            services
                .budgets
                .usage(&caller)
                .await
                .map_err(ApiError::from)
        },
    )?;
    Ok(Json(EntitlementsView {
        entitlements,
        ai_usage,
    }))
}

/// Cancels the subscription: at the end of the paid period by default (the tier stays until
/// then), or with `at_period_end=false` now (free at once).
#[adiuva_http::route(delete, path = "/api/v1/billing/subscription", tag = "billing",
    params(CancelQuery),
    responses(
        (status = 200, description = "The subscription after cancelling", body = Cancelled),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No subscription to cancel", body = ErrorBody),
        (status = 503, description = "Stripe is unavailable; nothing changed", body = ErrorBody),
    ))]
async fn cancel(
    State(billing): State<Billing>,
    CurrentUser(caller): CurrentUser,
    Query(query): Query<CancelQuery>,
) -> Result<Json<Cancelled>> {
    let at_period_end = query.at_period_end.unwrap_or(true);
    Ok(Json(Cancelled {
        ok: true,
        subscription: billing.cancel(&caller, at_period_end).await?,
    }))
}

/// A Stripe Billing Portal session: cards, invoices, plan.
#[adiuva_http::route(post, path = "/api/v1/billing/portal", tag = "billing",
    responses(
        (status = 200, description = "Where to manage billing", body = Portal),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No billing account yet", body = ErrorBody),
        (status = 503, description = "Stub mode, or Stripe unavailable", body = ErrorBody),
    ))]
async fn portal(
    State(billing): State<Billing>,
    CurrentUser(caller): CurrentUser,
) -> Result<Json<Portal>> {
    Ok(Json(Portal {
        portal_url: billing.portal(&caller).await?,
    }))
}

async fn complete_stub(
    State(services): State<Services>,
    Path(token): Path<String>,
) -> Result<Html<String>> {
    let link = services.billing.open_stub_link(&token)?;
    let done = match &link.item {
        StubItem::Tier(tier) => {
            services
                .billing
                .complete_stub_checkout(&link, *tier)
                .await?;
            format!("Your Adiuva <b>{}</b> plan is active", tier.as_str())
        }
        StubItem::Team { team_id, seats } => {
            services
                .billing
                .complete_stub_team_checkout(&link, team_id, *seats)
                .await?;
            format!("Your team's <b>{seats}</b> seats are active")
        }
        StubItem::Purchase(_) | StubItem::Onboarding => {
            match services.purchases.complete_stub(&link).await? {
                StubCompleted::Purchase { plugin_id } => {
                    format!("The plugin <b>{plugin_id}</b> is bought and installed")
                }
                StubCompleted::Onboarding => {
                    "Payouts are enabled on your developer account".to_owned()
                }
            }
        }
    };
    Ok(Html(format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Adiuva</title>\
         <p>{done} (stub mode, no payment). You can close this window.</p>"
    )))
}
