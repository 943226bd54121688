//! The stages of the request pipeline that need to know the caller, between the body limit and
//! the routes (outermost first):
//!
//! 1. **authentication**: the bearer token (or, on a WebSocket upgrade, `?token=`) becomes a
//!    [`Caller`] with the live tier and role, put in the request extensions; public routes
//!    ([`adiuva_http::routes`]) pass without one. The caller's id joins the request's span.
//! 2. **rate limiting**: the tier's requests per minute, shared by every instance; the IETF
//!    `RateLimit` and `RateLimit-Policy` headers on every answer, 429 with `Retry-After` past
//!    the limit.
//! 3. **idempotency**: a creating POST with `Idempotency-Key` is processed once and its
//!    answer replayed.
//!
//! Handlers take the caller with the [`CurrentUser`] extractor; [`admin_only`] is the route
//! layer of admin routes.

mod idempotency;

use adiuva_access::{Caller, Role};
use adiuva_auth::{Accounts, AuthError};
use adiuva_config::{ConfigError, Context};
use adiuva_error::ErrorKind;
use adiuva_http::routes::is_public_path;
use adiuva_http::{ApiError, Function, HttpSettings};
use adiuva_limits::{LimitError, Limits, RateDecision};
use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, UPGRADE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::middleware::{Next, from_fn, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;

pub use adiuva_access::Caller as AuthenticatedCaller;

pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// `routes` behind the whole pipeline: the function constructor of every function with
/// authenticated routes.
pub fn authenticated(routes: OpenApiRouter, context: &Context) -> Result<Function, ConfigError> {
    let accounts: Accounts = context.get()?;
    let limits: Limits = context.get()?;
    let settings: HttpSettings = context.get()?;
    let stages = std::sync::Arc::new(move |router: axum::Router| {
        // Route layers, so unknown paths are 404 without a caller; they wrap every method of a
        // known path, which is why public routes are public by path. Innermost first.
        router
            .route_layer(from_fn_with_state(
                (limits.clone(), settings.max_body_bytes),
                idempotency::stage,
            ))
            .route_layer(from_fn_with_state(limits.clone(), rate_limit))
            .route_layer(from_fn_with_state(accounts.clone(), authenticate))
    });
    Function::with_stages(routes, context, stages)
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

/// The route layer of admin routes: 403 `admin_required` for everyone else.
pub fn admin_only(routes: OpenApiRouter) -> OpenApiRouter {
    routes.route_layer(from_fn(require_admin))
}

async fn require_admin(request: Request, next: Next) -> Response {
    let role = request
        .extensions()
        .get::<Caller>()
        .map(|caller| caller.role);
    match role {
        Some(Role::Admin) => next.run(request).await,
        Some(Role::User) => {
            ApiError::from(adiuva_access::AccessError::AdminRequired).into_response()
        }
        None => ApiError::from(AuthError::MissingToken).into_response(),
    }
}

fn route_of(request: &Request) -> Option<String> {
    request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
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

async fn authenticate(
    State(accounts): State<Accounts>,
    mut request: Request,
    next: Next,
) -> Response {
    // Unknown paths (404) and public paths pass; a wrong method on a public path is then 405.
    let public = route_of(&request).is_none_or(|route| is_public_path(&route));
    if public {
        return next.run(request).await;
    }
    let Some(token) = token(&request) else {
        return ApiError::from(AuthError::MissingToken).into_response();
    };
    match accounts.authenticate(&token).await {
        Ok(caller) => {
            tracing::Span::current().record("user_id", caller.id.as_str());
            request.extensions_mut().insert(caller);
            next.run(request).await
        }
        Err(err) => ApiError::from(err).into_response(),
    }
}

async fn rate_limit(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let Some(caller) = request.extensions().get::<Caller>() else {
        // Public routes have brute-force limits of their own instead.
        return next.run(request).await;
    };
    let Some(decision) = limits.check_rate(&caller.id, caller.tier).await else {
        return next.run(request).await;
    };
    let policy = caller.tier.as_str();
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        tracing::info!(limit = decision.limit, "rate limit reached");
        ApiError::from(LimitError::RateLimited {
            retry_after_secs: decision.retry_after_secs,
        })
        .into_response()
    };
    rate_limit_headers(response.headers_mut(), policy, &decision);
    response
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

/// A kind for the idempotency stage's own refusals.
pub(crate) fn refusal(kind: ErrorKind, code: &'static str, detail: &'static str) -> Response {
    ApiError::new(kind, code, detail).into_response()
}
