//! `GET /docs`: the interactive reference of the OpenAPI document in development, every script
//! and style from the server itself; none in production.

use reqwest::StatusCode;

use crate::harness::{Backend, spawn_app, spawn_app_with};

/// The values of `attribute="..."` in `html`.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let marker = format!("{attribute}=\"");
    html.match_indices(&marker)
        .map(|(at, _)| {
            let rest = &html[at + marker.len()..];
            &rest[..rest.find('"').unwrap()]
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_docs_page_is_served_whole_by_the_server_in_development() {
    let app = spawn_app(Backend::Sqlite).await;
    let page = app.get("/docs").await;
    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert_eq!(csp, local::docs::DOCS_CSP);
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(!csp.contains("unsafe-eval") && !csp.contains("script-src 'self' 'unsafe-inline'"));
    let html = page.text().await.unwrap();

    // Nothing from another host, and no inline script (the policy would refuse it).
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    assert!(!html.contains("<script>"), "{html}");
    let assets: Vec<&str> = attribute_values(&html, "src")
        .into_iter()
        .chain(attribute_values(&html, "href"))
        .collect();
    assert_eq!(assets, ["/docs/scalar.js", "/docs/init.js"]);
    for asset in &assets {
        assert!(
            asset.starts_with('/') && !asset.starts_with("//"),
            "{asset}"
        );
        let response = app.get(asset).await;
        assert_eq!(response.status(), StatusCode::OK, "{asset}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/javascript"),
            "{asset}"
        );
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let script = response.text().await.unwrap();
        assert!(!script.is_empty(), "{asset}");
        if *asset == "/docs/init.js" {
            // The document it shows is this server's, with Scalar's web fonts and telemetry off.
            assert!(script.contains(&format!("\"url\": \"{}\"", local::OPENAPI_PATH)));
            assert!(script.contains("\"withDefaultFonts\": false"), "{script}");
            assert!(script.contains("\"telemetry\": false"), "{script}");
        } else {
            assert!(script.contains("createApiReference"), "not Scalar's bundle");
        }
    }
    assert_eq!(app.get(local::OPENAPI_PATH).await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn production_serves_no_docs_page() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("ENV", "prod"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef-prod"),
        ],
    )
    .await;
    for path in ["/docs", "/docs/init.js", "/docs/scalar.js"] {
        assert_eq!(
            app.get(path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // The document itself stays.
    assert_eq!(app.get(local::OPENAPI_PATH).await.status(), StatusCode::OK);
}
