//! Security headers on every answer, set by the outermost layer of every router (Lambda and
//! the local server alike), after the routes, the pipeline and the error handling have
//! answered:
//!
//! - `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`, always;
//! - `Cache-Control: no-store` unless the answer set its own: every authenticated answer and
//!   every `/auth/*` answer carries tokens or personal data, and the public ones (health, the
//!   OpenAPI document, errors) lose nothing by not being cached, so there is no list of routes
//!   to keep in step;
//! - `Strict-Transport-Security` when the request came over HTTPS, which in practice means
//!   through API Gateway (adiuva-lambda marks the request with [`Gateway`](crate::Gateway)); the local server
//!   speaks plain HTTP, where the header means nothing;
//! - a strict `Content-Security-Policy` on an HTML page that does not bring its own (the stub
//!   page; the docs page sets one that lets its own scripts run).

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY,
    STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue};

/// Two years, subdomains included (the preload list's minimum is one year).
pub const HSTS: &str = "max-age=63072000; includeSubDomains";

/// The policy of an HTML page that does not set one: no script, style, frame or form target
/// of anyone's, inline or not.
pub const HTML_CSP: &str =
    "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub(crate) fn secure(headers: &mut HeaderMap, https: bool) {
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if https {
        headers.insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    let html = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value
                .trim_start()
                .get(..9)
                .is_some_and(|start| start.eq_ignore_ascii_case("text/html"))
        });
    if html && !headers.contains_key(CONTENT_SECURITY_POLICY) {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(HTML_CSP));
    }
}

#[cfg(test)]
mod tests {
    use adiuva_config::{Context, Source};
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::response::{Html, IntoResponse, Response};
    use tower::ServiceExt as _;

    use super::*;
    use crate::{ApiError, Function, Gateway, Routes, routes};

    #[adiuva_http::route(get, path = "/data", responses((status = 200, description = "JSON")))]
    async fn data() -> axum::Json<&'static str> {
        axum::Json("data")
    }

    #[adiuva_http::route(get, path = "/page", responses((status = 200, description = "HTML")))]
    async fn page() -> Html<&'static str> {
        Html("<!doctype html><p>done</p>")
    }

    #[adiuva_http::route(get, path = "/cached", responses((status = 200, description = "Cacheable")))]
    async fn cached() -> Response {
        ([(CACHE_CONTROL, "public, max-age=60")], "static").into_response()
    }

    #[adiuva_http::route(get, path = "/boom", responses((status = 500, description = "Failed")))]
    async fn boom() -> ApiError {
        ApiError::internal(std::io::Error::other("disk on fire"))
    }

    async fn answer(path: &str, gateway: bool) -> (StatusCode, HeaderMap) {
        let context = Context::new(Source::default()).unwrap();
        let routes = Routes::new()
            .routes(routes!(data).public())
            .routes(routes!(page).public())
            .routes(routes!(cached).public())
            .routes(routes!(boom).public());
        let router = Function::public("test", routes, &context)
            .unwrap()
            .into_router();
        let mut request = Request::get(path).body(Body::empty()).unwrap();
        if gateway {
            request.extensions_mut().insert(Gateway);
        }
        let response = router.oneshot(request).await.unwrap();
        (response.status(), response.headers().clone())
    }

    fn header<'a>(headers: &'a HeaderMap, name: &axum::http::HeaderName) -> Option<&'a str> {
        headers.get(name).map(|value| value.to_str().unwrap())
    }

    #[tokio::test]
    async fn every_answer_is_nosniff_no_referrer_and_not_stored() {
        for (path, status) in [
            ("/data", StatusCode::OK),
            ("/boom", StatusCode::INTERNAL_SERVER_ERROR),
            ("/nowhere", StatusCode::NOT_FOUND),
        ] {
            let (got, headers) = answer(path, false).await;
            assert_eq!(got, status, "{path}");
            assert_eq!(header(&headers, &X_CONTENT_TYPE_OPTIONS), Some("nosniff"));
            assert_eq!(header(&headers, &REFERRER_POLICY), Some("no-referrer"));
            assert_eq!(header(&headers, &CACHE_CONTROL), Some("no-store"), "{path}");
            // Plain HTTP (the local server): no HSTS; not HTML: no CSP.
            assert_eq!(header(&headers, &STRICT_TRANSPORT_SECURITY), None);
            assert_eq!(header(&headers, &CONTENT_SECURITY_POLICY), None, "{path}");
        }
    }

    #[tokio::test]
    async fn an_answer_keeps_its_own_cache_control() {
        let (_, headers) = answer("/cached", false).await;
        assert_eq!(header(&headers, &CACHE_CONTROL), Some("public, max-age=60"));
    }

    #[tokio::test]
    async fn through_the_gateway_every_answer_has_hsts() {
        for path in ["/data", "/boom", "/nowhere", "/page"] {
            let (_, headers) = answer(path, true).await;
            assert_eq!(
                header(&headers, &STRICT_TRANSPORT_SECURITY),
                Some("max-age=63072000; includeSubDomains"),
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn an_html_page_gets_a_strict_content_security_policy() {
        let (_, headers) = answer("/page", false).await;
        assert_eq!(header(&headers, &CONTENT_SECURITY_POLICY), Some(HTML_CSP));
        assert_eq!(header(&headers, &X_CONTENT_TYPE_OPTIONS), Some("nosniff"));
    }
}
