//! Every log line of a request, the domain's included, carries the request's id. In a test
//! binary of its own: tracing decides once per process which spans and events a subscriber
//! wants, so a subscriber set for one test while other tests run on other threads can find the
//! request's span already decided "not wanted".

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::Request;
use serde_json::{Value, json};
use tests::harness::{Backend, TestDatabase, unconnected_context};
use tower::ServiceExt as _;

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
            let database = TestDatabase::create(Backend::Sqlite).await;
            let (context, _dir) = unconnected_context(&[("DATABASE_URL", database.url.as_str())]);
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
    assert_eq!(
        domain_line["span"]["request_id"], "trace-me-42",
        "{domain_line}\n{output}"
    );
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
