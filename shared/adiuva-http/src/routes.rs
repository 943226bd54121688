//! The policy of every route, in one place: which routes are public (served without a caller,
//! never rate limited by tier) and which POSTs create something and so honour an
//! `Idempotency-Key`. Every other route needs a bearer token. A test checks that each entry
//! names a real route, that the OpenAPI document marks exactly the others as authenticated, and
//! that no path mixes public and authenticated methods (so a wrong method on a public path is
//! a 405, not a 401).

use axum::http::Method;

/// Routes served without a caller: they authenticate otherwise (passwords, refresh tokens,
/// signed URLs, Stripe signatures) or need nothing (health, the OpenAPI document).
pub const PUBLIC_ROUTES: &[(&str, &str)] = &[
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/health/ready"),
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    // Sign-in with OpenID Connect: the provider's ID token (through the single-use state) is
    // the credential. Linking and unlinking identities need a caller.
    ("GET", "/api/v1/auth/oidc/providers"),
    ("POST", "/api/v1/auth/oidc/start"),
    ("POST", "/api/v1/auth/oidc/callback"),
    ("GET", "/api/v1/openapi.json"),
    // adiuva-local's stand-in for S3 presigned PUTs and GETs: the signed token in the path is
    // the credential.
    ("PUT", "/api/v1/storage/blobs/{token}"),
    ("GET", "/api/v1/storage/blobs/{token}"),
    // Stripe signs its deliveries.
    ("POST", "/api/v1/billing/webhook"),
    // adiuva-local's stub page (checkouts, plugin purchases, payout onboarding): the signed
    // one-time link is the credential.
    ("GET", "/api/v1/billing/stub/{token}"),
    // adiuva-local's interactive reference of the document (outside production): the page,
    // its start-up script and Scalar's bundle.
    ("GET", "/docs"),
    ("GET", "/docs/init.js"),
    ("GET", "/docs/scalar.js"),
];

/// POSTs that create something: the same `Idempotency-Key` replays their first answer.
pub const IDEMPOTENT_ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/storage/records"),
    ("POST", "/api/v1/storage/uploads"),
    ("POST", "/api/v1/storage/uploads/{upload_id}/commit"),
    ("POST", "/api/v1/teams/{id}/records"),
    ("POST", "/api/v1/teams/{id}/uploads"),
    ("POST", "/api/v1/teams/{id}/uploads/{upload_id}/commit"),
    ("POST", "/api/v1/billing/checkout"),
    ("POST", "/api/v1/billing/portal"),
    ("POST", "/api/v1/plugins"),
    ("POST", "/api/v1/plugins/{id}/install"),
    ("POST", "/api/v1/developer/connect"),
    ("POST", "/api/v1/admin/plugins/{id}/review"),
    ("POST", "/api/v1/teams"),
    ("POST", "/api/v1/teams/{id}/invitations"),
];

fn listed(list: &[(&str, &str)], method: &Method, route: &str) -> bool {
    list.iter()
        .any(|(m, r)| *r == route && method.as_str() == *m)
}

/// Whether `route` (the matched path template) is served without a caller.
pub fn is_public(method: &Method, route: &str) -> bool {
    listed(PUBLIC_ROUTES, method, route)
}

/// Whether `route` is a public path: every method on it is served without a caller (and a
/// method it does not serve is answered 405 without one).
pub fn is_public_path(route: &str) -> bool {
    PUBLIC_ROUTES.iter().any(|(_, r)| *r == route)
}

/// Whether `route` honours `Idempotency-Key`.
pub fn is_idempotent(method: &Method, route: &str) -> bool {
    listed(IDEMPOTENT_ROUTES, method, route)
}
