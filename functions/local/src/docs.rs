//! The interactive reference of the OpenAPI document at `GET /docs`, outside production only
//! (as the reference serves it): Scalar's API reference, every byte of it served by this
//! server (no CDN, no web fonts, no telemetry), so it works offline.
//!
//! The bundle comes from the `scalar_api_reference` crate (`get_asset`), without its `axum`
//! feature: that feature brings axum-extra and tokio's full feature set for two routes we write
//! here in a few lines. The page is ours rather than the crate's template because the template
//! starts Scalar from an inline script, which a Content-Security-Policy without
//! `'unsafe-inline'` forbids: here the start-up is `/docs/init.js`, and the page's policy lets
//! only this server's scripts run.

use adiuva_http::Routes;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use crate::OPENAPI_PATH;

pub const DOCS_PATH: &str = "/docs";
pub const SCRIPT_PATH: &str = "/docs/scalar.js";
pub const INIT_PATH: &str = "/docs/init.js";

/// Only this server's scripts; inline styles, which Scalar's components set; images and fonts
/// from here or inline; requests ("Test request") only to this server.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' \
    'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const PAGE: &str = r#"<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Adiuva Cloud API reference</title>
  </head>
  <body>
    <div id="app"></div>
    <script src="/docs/scalar.js"></script>
    <script src="/docs/init.js"></script>
  </body>
</html>
"#;

/// Scalar's configuration: the document, and nothing fetched from elsewhere (its default
/// fonts come from fonts.scalar.com, its telemetry and agent call scalar.com).
fn init_script() -> String {
    format!(
        "Scalar.createApiReference('#app', {{\"url\": \"{OPENAPI_PATH}\", \
         \"withDefaultFonts\": false, \"telemetry\": false, \"agent\": {{\"disabled\": true}}}});\n"
    )
}

/// The page, its start-up script and Scalar's bundle.
pub fn router() -> Routes {
    let init = init_script();
    Routes::new()
        .public_route(DOCS_PATH, get(page))
        .public_route(
            INIT_PATH,
            get(move || std::future::ready(script(init.clone().into_bytes(), "no-store"))),
        )
        .public_route(SCRIPT_PATH, get(bundle))
}

async fn page() -> Response {
    ([(CONTENT_SECURITY_POLICY, DOCS_CSP)], Html(PAGE)).into_response()
}

async fn bundle() -> Response {
    match scalar_api_reference::get_asset("scalar.js") {
        // The bundle changes only with the binary: a day in the browser's cache spares
        // reloading 5 MB on each visit.
        Some(bytes) => script(bytes, "public, max-age=86400"),
        None => axum::http::StatusCode::NOT_FOUND.into_response(),
    }
}

fn script(bytes: Vec<u8>, cache_control: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, cache_control),
        ],
        bytes,
    )
        .into_response()
}
