//! In Lambda, each answer writes one line in CloudWatch Embedded Metric Format: the function,
//! the matched route template, the latency, whether it was a 5xx and whether it was the
//! instance's first request. In a test binary of its own, like `request_logs.rs`: tracing
//! decides once per process which events a subscriber wants.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tests::harness::unconnected_context;

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

fn event(file: &str) -> String {
    let path = format!("{}/../events/{file}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// The lines that are EMF objects (they have `_aws`), in order.
fn emf_lines(output: &str) -> Vec<Value> {
    output
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line)
                .unwrap_or_else(|err| panic!("not one JSON object per line ({err}): {line}"))
        })
        .filter(|line| line.get("_aws").is_some())
        .collect()
}

#[test]
fn each_lambda_answer_writes_one_emf_line_and_the_local_server_none() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = adiuva_config::logging::json(move || writer.clone());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let answers = tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            // Nothing listens on port 1: readiness answers 503 at once.
            let (context, _dir) =
                unconnected_context(&[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/down")]);
            let mut routers = std::collections::HashMap::new();
            for (name, function) in local::functions(&context).unwrap() {
                assert_eq!(function.name(), name, "a function's name is its binary's");
                routers.insert(name, function.into_router());
            }
            let edge = adiuva_lambda::Edge::default();
            let mut statuses = Vec::new();
            for (function, file) in [
                ("health", "health/health.json"),
                ("health", "health/ready.json"),
                ("storage", "storage/get_record.json"),
            ] {
                let event = event(file)
                    .replace("{{record_id}}", "3f2b8c1e-0d4a-4c6b-9e7f-1a2b3c4d5e6f")
                    .replace("{{access_token}}", "not-a-token");
                let router = routers[function].clone();
                let answer = adiuva_lambda::invoke(router, edge.clone(), &event)
                    .await
                    .unwrap();
                statuses.push(answer["statusCode"].as_u64().unwrap());
            }
            statuses
        })
    });
    // The storage event's token is no token: 401.
    assert_eq!(answers, [200, 503, 401]);
    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines = emf_lines(&output);
    assert_eq!(lines.len(), 3, "one EMF line per answer:\n{output}");
    for line in &lines {
        let declaration = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(declaration["Namespace"], "Adiuva", "{line}");
        // Per function and route, and per function (what the per-function alarms read).
        assert_eq!(
            declaration["Dimensions"],
            json!([["function", "route"], ["function"]])
        );
        let metrics: Vec<(&str, &str)> = declaration["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|metric| {
                (
                    metric["Name"].as_str().unwrap(),
                    metric["Unit"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            metrics,
            [
                ("Latency", "Milliseconds"),
                ("Errors5xx", "Count"),
                ("ColdStart", "Count"),
            ]
        );
        assert!(line["_aws"]["Timestamp"].as_u64().unwrap() >= started);
        assert!(line["Latency"].as_f64().unwrap() >= 0.0, "{line}");
        // Every metric and dimension the declaration names is a top-level member.
        for member in ["function", "route", "Latency", "Errors5xx", "ColdStart"] {
            assert!(line.get(member).is_some(), "{member} missing: {line}");
        }
    }
    let summary: Vec<(&str, &str, u64, u64, u64)> = lines
        .iter()
        .map(|line| {
            (
                line["function"].as_str().unwrap(),
                line["route"].as_str().unwrap(),
                line["status"].as_u64().unwrap(),
                line["Errors5xx"].as_u64().unwrap(),
                line["ColdStart"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            // The health instance's first request is its cold start, its second is not.
            ("health", "/api/v1/health", 200, 0, 1),
            ("health", "/api/v1/health/ready", 503, 1, 0),
            // Another instance: its own cold start. The route template, not the path with the
            // record's id.
            ("storage", "/api/v1/storage/records/{id}", 401, 0, 1),
        ]
    );
    // The gateway's request id rides along.
    assert_eq!(lines[0]["request_id"], "JKJaXmPLvHcESHA=");

    // The local server (no gateway, no CloudWatch) logs its requests but writes no metrics.
    // In the same test, under the same subscriber (see the module's comment).
    captured.0.lock().unwrap().clear();
    let writer = captured.clone();
    let subscriber = adiuva_config::logging::json(move || writer.clone());
    tracing::subscriber::with_default(subscriber, || {
        runtime.block_on(async {
            use tower::ServiceExt as _;
            let (context, _dir) = unconnected_context(&[]);
            let app = local::app(&context).unwrap();
            let request = axum::http::Request::get("/api/v1/health")
                .body(axum::body::Body::empty())
                .unwrap();
            assert_eq!(app.oneshot(request).await.unwrap().status(), 200);
        })
    });
    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(output.contains("request completed"), "{output}");
    assert!(emf_lines(&output).is_empty(), "{output}");
}
