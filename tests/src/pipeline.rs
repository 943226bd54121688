//! What the pipeline and the settings promise beyond single routes: each function reads only
//! its own settings, and every log line of a request carries the request's id.

use std::io::Write;
use std::sync::{Arc, Mutex};

use adiuva_config::ConfigError;
use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::harness::{TempDir, TestDatabase, test_context};

fn context(pairs: &[(&str, &str)]) -> (adiuva_config::Context, TempDir) {
    let dir = TempDir::new();
    let mut settings = vec![("ADIUVA_DATA_DIR", dir.0.to_str().unwrap().to_owned())];
    settings.extend(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (
        test_context("postgres://postgres@127.0.0.1:5432/unused", &settings),
        dir,
    )
}

#[tokio::test]
async fn a_bad_chat_setting_stops_chat_and_nothing_else() {
    let (context, _dir) = context(&[("LLM_TIMEOUT_SECONDS", "soon")]);
    assert!(health::function(&context).is_ok());
    assert!(auth::function(&context).is_ok());
    let err = chat::function(&context).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                key: "LLM_TIMEOUT_SECONDS",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(chat_ws::ChatWs::new(&context).is_err());
}

#[tokio::test]
async fn production_refuses_a_weak_jwt_secret_only_where_tokens_are_used() {
    let (context, _dir) = context(&[("ENV", "prod"), ("JWT_SECRET", "short")]);
    // Health verifies no token: it starts.
    assert!(health::function(&context).is_ok());
    let err = auth::function(&context).unwrap_err();
    assert!(
        matches!(err, ConfigError::InsecureInProduction(_)),
        "{err:?}"
    );
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn every_log_line_of_a_request_carries_its_request_id() {
    // One thread: the subscriber set here sees everything the request logs.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = adiuva_config::logging::json(move || writer.clone());
    let request_id = tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            let database = TestDatabase::create(crate::harness::Backend::Sqlite).await;
            let (context, _dir) = context(&[("DATABASE_URL", database.url.as_str())]);
            let app = local::app(&context).unwrap();
            let request = Request::post("/api/v1/auth/register")
                .header("content-type", "application/json")
                .header("x-request-id", "trace-me-42")
                .body(Body::from(
                    json!({"email": "logged@example.com", "password": "correct-horse-battery"})
                        .to_string(),
                ))
                .unwrap();
            let response = app.oneshot(request).await.unwrap();
            assert_eq!(response.status().as_u16(), 201);
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned()
        })
    });
    assert_eq!(request_id, "trace-me-42");
    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<Value> = output
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let domain_line = lines
        .iter()
        .find(|line| line["message"] == "account registered")
        .unwrap_or_else(|| panic!("the domain logged nothing: {output}"));
    assert_eq!(domain_line["span"]["request_id"], "trace-me-42");
    let request_lines: Vec<&Value> = lines
        .iter()
        .filter(|line| line["span"]["name"] == "request")
        .collect();
    assert!(request_lines.len() >= 2, "{output}");
    for line in &request_lines {
        assert_eq!(line["span"]["request_id"], "trace-me-42", "{line}");
    }
    assert!(
        request_lines
            .iter()
            .any(|line| line["message"] == "request completed" && line["status"] == 201),
        "{output}"
    );
}
