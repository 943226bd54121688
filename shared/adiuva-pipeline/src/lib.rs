//! The stages of the request pipeline that need to know the caller, between the body limit and
//! the routes (outermost first):
//!
//! 1. **authentication**: the bearer token (or, on a WebSocket upgrade, `?token=`) becomes a
//!    [`Caller`] with the live tier and role, put in the request extensions; public routes
//!    (declared so where their function registers them, [`adiuva_http::routes`]) pass without
//!    one. The caller's id joins the request's span.
//! 2. **rate limiting**: the tier's requests per minute, shared by every instance; the IETF
//!    `RateLimit` and `RateLimit-Policy` headers on every answer, 429 with `Retry-After` past
//!    the limit.
//! 3. **admin routes**: 403 `admin_required` unless the caller is an admin; **tier
//!    features**: 403 `tier_required` unless the caller's live tier includes the route's;
//! 4. **idempotency**: a creating POST with `Idempotency-Key` is processed once and its
//!    answer replayed.
//!
//! Each stage reads the route's policy from the declarations of the function it serves
//! ([`adiuva_http::routes::Policies`]). Handlers take the caller with the [`CurrentUser`]
//! extractor.

mod idempotency;

use adiuva_access::tiers::{Feature, require_feature};
use adiuva_access::{Caller, Role};
use adiuva_auth::{Accounts, Admitted, AuthError, Credential, Refusal};
use adiuva_config::{ConfigError, Context};
use std::sync::Arc;

use adiuva_http::routes::Policies;
use adiuva_http::{ApiError, Function, HttpSettings, Routes};
use adiuva_limits::{LimitError, Limits, RateDecision};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, UPGRADE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};

pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// What the caller-aware stages need, built once per process.
#[derive(Debug, Clone)]
struct Stages {
    accounts: Accounts,
    limits: Limits,
    max_body_bytes: usize,
    /// The policies of the routes served (the function's, or every function's when merged).
    policies: Arc<Policies>,
}

/// `routes` behind the whole pipeline: the function constructor of every function with
/// authenticated routes. `name` is the function's (its binary's) name.
pub fn authenticated(
    name: &'static str,
    routes: Routes,
    context: &Context,
) -> Result<Function, ConfigError> {
    let accounts: Accounts = context.get()?;
    let limits: Limits = context.get()?;
    let max_body_bytes = context.get::<HttpSettings>()?.max_body_bytes;
    for route in routes.policies().routes() {
        if let Some(name) = route.policy.feature {
            assert!(
                Feature::from_name(name).is_some(),
                "{} {} needs the tier feature {name}, which the tier matrix does not have",
                route.method,
                route.path
            );
        }
    }
    let layer = Arc::new(move |router: axum::Router, policies: Arc<Policies>| {
        let stages = Stages {
            accounts: accounts.clone(),
            limits: limits.clone(),
            max_body_bytes,
            policies,
        };
        // A route layer, so unknown paths are 404 without a caller; it wraps every method of a
        // known path, which is why public routes are public by path. The stages run in one
        // layer: one middleware call per request, not one each.
        router.route_layer(from_fn_with_state(stages, caller_stages))
    });
    Function::with_stages(name, routes, context, layer)
}

/// Authentication, then the rate limit (both [`adiuva_auth::admit`], as for a chat WebSocket
/// message), then the admin check, then idempotency, then the route.
async fn caller_stages(State(stages): State<Stages>, mut request: Request, next: Next) -> Response {
    // Public routes (and unknown paths, which the router answers 404) pass without a caller;
    // they have brute-force limits of their own instead of tier limits. A wrong method on a
    // public path is 405.
    if route_of(&request).is_none_or(|route| stages.policies.is_public_path(route)) {
        return next.run(request).await;
    }
    let Some(token) = token(&request) else {
        return ApiError::from(AuthError::MissingToken).into_response();
    };
    let admitted = adiuva_auth::admit(&stages.accounts, &stages.limits, Credential::Token(&token));
    match admitted.await {
        Ok(Admitted { caller, rate }) => {
            let policy = caller.tier.as_str();
            request.extensions_mut().insert(caller);
            let mut response = admitted_route(&stages, request, next).await;
            if let Some(decision) = rate {
                rate_limit_headers(response.headers_mut(), policy, &decision);
            }
            response
        }
        Err(Refusal::Auth(err)) => ApiError::from(err).into_response(),
        Err(Refusal::RateLimited { caller, decision }) => {
            let mut response = ApiError::from(LimitError::RateLimited {
                retry_after_secs: decision.retry_after_secs,
            })
            .into_response();
            rate_limit_headers(response.headers_mut(), caller.tier.as_str(), &decision);
            response
        }
    }
}

/// A caller within the rate limit: admin routes refuse everyone but admins (403
/// `admin_required`), a route with a tier feature every tier without it (403 `tier_required`),
/// then the idempotency stage and the route.
async fn admitted_route(stages: &Stages, request: Request, next: Next) -> Response {
    let policy = route_of(&request)
        .and_then(|route| stages.policies.get(request.method(), route))
        .copied()
        .unwrap_or_default();
    let Some(caller) = request.extensions().get::<Caller>() else {
        return ApiError::internal("an admitted request has no caller").into_response();
    };
    if policy.admin && caller.role != Role::Admin {
        return ApiError::from(adiuva_access::AccessError::AdminRequired).into_response();
    }
    if let Some(feature) = policy.feature.and_then(Feature::from_name)
        && let Err(refused) = require_feature(caller.tier, feature)
    {
        return ApiError::from(refused).into_response();
    }
    idempotency::stage(
        &stages.limits,
        &stages.policies,
        stages.max_body_bytes,
        request,
        next,
    )
    .await
}

/// The caller of an authenticated route.
#[derive(Debug, Clone)]
pub struct CurrentUser(pub Caller);

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .map(CurrentUser)
            .ok_or_else(|| {
                ApiError::internal("a route that needs a caller was served without authentication")
            })
    }
}

fn route_of(request: &Request) -> Option<&str> {
    request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
}

/// The access token: `Authorization: Bearer <token>` (scheme case-insensitive), or on a
/// WebSocket upgrade, where browsers cannot set headers, the `token` query parameter.
fn token(request: &Request) -> Option<String> {
    if let Some(token) = bearer(request.headers()) {
        return Some(token.to_owned());
    }
    let upgrade = request
        .headers()
        .get(UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        return None;
    }
    request.uri().query()?.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == "token" && !value.is_empty()).then(|| value.to_owned())
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The IETF httpapi `RateLimit-Policy` (the tier's quota `q` per window `w` in seconds) and
/// `RateLimit` (what remains `r`, seconds until the window resets `t`) fields.
pub fn rate_limit_headers(headers: &mut HeaderMap, policy: &str, decision: &RateDecision) {
    let window = adiuva_limits::RATE_WINDOW.as_secs();
    let values = [
        (
            &RATELIMIT_POLICY,
            format!("\"{policy}\";q={};w={window}", decision.limit),
        ),
        (
            &RATELIMIT,
            format!(
                "\"{policy}\";r={};t={}",
                decision.remaining,
                if decision.allowed {
                    decision.reset_secs
                } else {
                    decision.retry_after_secs
                }
            ),
        ),
    ];
    for (name, value) in values {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name.clone(), value);
        }
    }
}
