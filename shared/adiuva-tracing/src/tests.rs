//! Against a fake Langfuse on 127.0.0.1 that speaks its real HTTP API and records every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use adiuva_config::Source;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::*;

const PUBLIC: &str = "pk-lf-test";
const SECRET: &str = "sk-lf-test";

#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    query: Option<String>,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Bytes,
}

#[derive(Debug, Default)]
struct FakeState {
    requests: Mutex<Vec<Recorded>>,
    /// Delay before answering the OTLP endpoint.
    otel_delay: Option<Duration>,
}

#[derive(Debug)]
struct Fake {
    state: Arc<FakeState>,
    host: String,
}

impl Fake {
    async fn start(otel_delay: Option<Duration>) -> Self {
        let state = Arc::new(FakeState {
            requests: Mutex::default(),
            otel_delay,
        });
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self { state, host }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().unwrap().clone()
    }

    fn langfuse(&self) -> Langfuse {
        langfuse_at(&self.host)
    }
}

async fn handle(
    State(state): State<Arc<FakeState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
    };
    state.requests.lock().unwrap().push(Recorded {
        method: method.clone(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        authorization: header("authorization"),
        content_type: header("content-type"),
        body,
    });
    let expected_auth = format!("Basic {}", STANDARD.encode(format!("{PUBLIC}:{SECRET}")));
    if header("authorization").as_deref() != Some(expected_auth.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let path = uri.path();
    if method == Method::POST && path == "/api/public/otel/v1/traces" {
        if let Some(delay) = state.otel_delay {
            tokio::time::sleep(delay).await;
        }
        return axum::Json(json!({})).into_response();
    }
    if method == Method::GET
        && let Some(name) = path.strip_prefix("/api/public/v2/prompts/")
    {
        if uri.query() != Some("label=production") {
            return StatusCode::BAD_REQUEST.into_response();
        }
        return match name {
            "system" => axum::Json(json!({
                "id": "p1", "name": "system", "type": "text", "version": 7,
                "prompt": "You are Adiuva.", "config": {}, "labels": ["production"], "tags": [],
            }))
            .into_response(),
            "folder%2Fnested" => axum::Json(json!({
                "name": "folder/nested", "type": "text", "version": 1, "prompt": "Nested.",
            }))
            .into_response(),
            "chatty" => axum::Json(json!({
                "name": "chatty", "type": "chat", "version": 2,
                "prompt": [{ "role": "system", "content": "You are Adiuva." }],
            }))
            .into_response(),
            "hang" => {
                tokio::time::sleep(Duration::from_secs(30)).await;
                StatusCode::OK.into_response()
            }
            _ => (
                StatusCode::NOT_FOUND,
                axum::Json(json!({ "message": "Prompt not found" })),
            )
                .into_response(),
        };
    }
    StatusCode::NOT_FOUND.into_response()
}

fn config(vars: &[(&str, &str)]) -> Source {
    Source::from_pairs(vars.iter().copied())
}

fn langfuse_at(host: &str) -> Langfuse {
    Langfuse::from_source(&config(&[
        ("LANGFUSE_PUBLIC_KEY", PUBLIC),
        ("LANGFUSE_SECRET_KEY", SECRET),
        ("LANGFUSE_HOST", host),
    ]))
    .expect("both keys are set")
}

fn is_hex(value: &str, len: usize) -> bool {
    value.len() == len
        && value
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// Attribute key -> value object (`{"stringValue": ..}` or `{"intValue": ..}`).
fn attributes(span: &Value) -> HashMap<String, Value> {
    span["attributes"]
        .as_array()
        .expect("attributes is a list")
        .iter()
        .map(|attribute| {
            (
                attribute["key"].as_str().unwrap().to_owned(),
                attribute["value"].clone(),
            )
        })
        .collect()
}

fn string_value(attributes: &HashMap<String, Value>, key: &str) -> Option<String> {
    attributes
        .get(key)
        .map(|value| value["stringValue"].as_str().expect(key).to_owned())
}

fn int_value(attributes: &HashMap<String, Value>, key: &str) -> Option<String> {
    attributes
        .get(key)
        .map(|value| value["intValue"].as_str().expect(key).to_owned())
}

fn nanos(span: &Value, field: &str) -> u64 {
    span[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is a string"))
        .parse()
        .unwrap()
}

#[test]
fn from_source_needs_both_keys() {
    assert!(Langfuse::from_source(&config(&[])).is_none());
    assert!(Langfuse::from_source(&config(&[("LANGFUSE_PUBLIC_KEY", PUBLIC)])).is_none());
    assert!(Langfuse::from_source(&config(&[("LANGFUSE_SECRET_KEY", SECRET)])).is_none());
    assert!(
        Langfuse::from_source(&config(&[
            ("LANGFUSE_PUBLIC_KEY", "  "),
            ("LANGFUSE_SECRET_KEY", SECRET)
        ]))
        .is_none()
    );
    let langfuse = Langfuse::from_source(&config(&[
        ("LANGFUSE_PUBLIC_KEY", PUBLIC),
        ("LANGFUSE_SECRET_KEY", SECRET),
    ]))
    .expect("both keys are set");
    assert_eq!(langfuse.inner.host.as_str(), "https://cloud.langfuse.com/");
    assert!(langfuse.trace("chat", "user-1").is_enabled());
}

#[test]
fn debug_output_hides_the_keys() {
    let langfuse = langfuse_at("http://127.0.0.1:9");
    let trace = langfuse.trace("chat", "user-1");
    for debug in [format!("{langfuse:?}"), format!("{trace:?}")] {
        assert!(!debug.contains(SECRET), "{debug}");
        assert!(
            !debug.contains(&STANDARD.encode(format!("{PUBLIC}:{SECRET}"))),
            "{debug}"
        );
    }
}

#[tokio::test]
async fn a_disabled_trace_sends_nothing() {
    let fake = Fake::start(None).await;
    let mut trace = Trace::disabled();
    assert!(!trace.is_enabled());
    let now = SystemTime::now();
    trace.generation(Generation {
        name: "router",
        model: "gpt-4o-mini",
        started: now,
        ended: now,
        input_tokens: 1,
        output_tokens: 1,
        prompt_name: None,
        error: None,
    });
    trace.tool("search", now, now, None);
    trace.finish("ok", false).await;
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn finish_sends_one_otlp_request_with_the_whole_trace() {
    let fake = Fake::start(None).await;
    let langfuse = fake.langfuse();
    assert_eq!(
        langfuse.prompt("system").await.as_deref(),
        Some("You are Adiuva.")
    );

    let mut trace = langfuse.trace("chat", "user-42");
    let t0 = SystemTime::now();
    trace.generation(Generation {
        name: "task_agent",
        model: "gpt-4o",
        started: t0,
        ended: t0 + Duration::from_millis(350),
        input_tokens: 1200,
        output_tokens: 85,
        prompt_name: Some("system"),
        error: Some("rate_limited"),
    });
    trace.tool(
        "search_records",
        t0 + Duration::from_millis(400),
        t0 + Duration::from_millis(450),
        None,
    );
    trace.finish("ok", false).await;

    let requests: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|request| request.method == Method::POST)
        .collect();
    assert_eq!(requests.len(), 1, "{requests:?}");
    let request = &requests[0];
    assert_eq!(request.path, "/api/public/otel/v1/traces");
    assert_eq!(
        request.authorization.as_deref(),
        Some("Basic cGstbGYtdGVzdDpzay1sZi10ZXN0")
    );
    assert_eq!(request.content_type.as_deref(), Some("application/json"));

    let body: Value = serde_json::from_slice(&request.body).unwrap();
    let resource_spans = body["resourceSpans"].as_array().unwrap();
    assert_eq!(resource_spans.len(), 1);
    assert_eq!(
        resource_spans[0]["resource"]["attributes"],
        json!([{ "key": "service.name", "value": { "stringValue": "adiuva-chat" } }])
    );
    let scope_spans = resource_spans[0]["scopeSpans"].as_array().unwrap();
    assert_eq!(scope_spans.len(), 1);
    assert_eq!(scope_spans[0]["scope"]["name"], "adiuva-tracing");
    let spans = scope_spans[0]["spans"].as_array().unwrap();
    assert_eq!(spans.len(), 3);

    let trace_id = spans[0]["traceId"].as_str().unwrap();
    assert!(is_hex(trace_id, 32), "{trace_id}");
    for span in spans {
        assert_eq!(span["traceId"], trace_id);
        assert!(is_hex(span["spanId"].as_str().unwrap(), 16), "{span}");
        assert_eq!(span["kind"], 1);
        assert!(nanos(span, "endTimeUnixNano") >= nanos(span, "startTimeUnixNano"));
        for attribute in span["attributes"].as_array().unwrap() {
            let value = attribute["value"].as_object().unwrap();
            assert_eq!(value.len(), 1);
            if let Some(int) = value.get("intValue") {
                assert!(int.as_str().unwrap().parse::<i64>().is_ok(), "{attribute}");
            } else {
                assert!(value["stringValue"].is_string(), "{attribute}");
            }
        }
    }

    let root = spans
        .iter()
        .find(|span| span.get("parentSpanId").is_none())
        .expect("a root span");
    let root_id = root["spanId"].as_str().unwrap();
    assert_eq!(root["name"], "chat");
    assert_eq!(root["status"], json!({ "code": 1 }));
    let root_attributes = attributes(root);
    assert_eq!(
        string_value(&root_attributes, "langfuse.trace.name").as_deref(),
        Some("chat")
    );
    assert_eq!(
        string_value(&root_attributes, "langfuse.user.id").as_deref(),
        Some("user-42")
    );
    assert_eq!(
        string_value(&root_attributes, "langfuse.trace.output").as_deref(),
        Some("ok")
    );

    let children: Vec<_> = spans
        .iter()
        .filter(|span| span.get("parentSpanId").is_some())
        .collect();
    assert_eq!(children.len(), 2);
    for child in &children {
        assert_eq!(child["parentSpanId"], root_id);
        assert_ne!(child["spanId"], root_id);
    }
    assert_ne!(children[0]["spanId"], children[1]["spanId"]);

    let generation = children
        .iter()
        .find(|span| span["name"] == "task_agent")
        .unwrap();
    let generation_attributes = attributes(generation);
    assert_eq!(
        string_value(&generation_attributes, "langfuse.observation.type").as_deref(),
        Some("generation")
    );
    assert_eq!(
        string_value(&generation_attributes, "gen_ai.request.model").as_deref(),
        Some("gpt-4o")
    );
    assert_eq!(
        int_value(&generation_attributes, "gen_ai.usage.input_tokens").as_deref(),
        Some("1200")
    );
    assert_eq!(
        int_value(&generation_attributes, "gen_ai.usage.output_tokens").as_deref(),
        Some("85")
    );
    assert_eq!(
        string_value(&generation_attributes, "langfuse.observation.prompt.name").as_deref(),
        Some("system")
    );
    assert_eq!(
        int_value(
            &generation_attributes,
            "langfuse.observation.prompt.version"
        )
        .as_deref(),
        Some("7")
    );
    assert_eq!(
        generation["status"],
        json!({ "code": 2, "message": "rate_limited" })
    );
    assert_eq!(
        nanos(generation, "endTimeUnixNano") - nanos(generation, "startTimeUnixNano"),
        350_000_000
    );

    let tool = children
        .iter()
        .find(|span| span["name"] == "search_records")
        .unwrap();
    let tool_attributes = attributes(tool);
    assert_eq!(
        string_value(&tool_attributes, "langfuse.observation.type").as_deref(),
        Some("tool")
    );
    assert_eq!(tool["status"], json!({ "code": 1 }));

    // No content: the prompt text never leaves in a trace.
    let raw = String::from_utf8(request.body.to_vec()).unwrap();
    assert!(!raw.contains("You are Adiuva."));
}

#[tokio::test]
async fn a_failed_request_marks_the_root_span_as_an_error() {
    let fake = Fake::start(None).await;
    let trace = fake.langfuse().trace("chat", "user-1");
    trace.finish("llm_unavailable", true).await;
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    let spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
        .as_array()
        .unwrap();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        spans[0]["status"],
        json!({ "code": 2, "message": "llm_unavailable" })
    );
    assert_eq!(
        string_value(&attributes(&spans[0]), "langfuse.trace.output").as_deref(),
        Some("llm_unavailable")
    );
}

#[test]
fn an_end_before_the_start_is_clamped() {
    let now = SystemTime::now();
    let span = span_json(
        "0".repeat(32).as_str(),
        "0".repeat(16).as_str(),
        "x",
        now,
        now - Duration::from_secs(1),
        Vec::new(),
        None,
    );
    assert_eq!(span["startTimeUnixNano"], span["endTimeUnixNano"]);
}

#[tokio::test]
async fn prompt_returns_the_text_and_caches_it() {
    let fake = Fake::start(None).await;
    let langfuse = fake.langfuse();
    assert_eq!(
        langfuse.prompt("system").await.as_deref(),
        Some("You are Adiuva.")
    );
    assert_eq!(
        langfuse.prompt("system").await.as_deref(),
        Some("You are Adiuva.")
    );
    // A clone shares the cache.
    assert_eq!(
        langfuse.clone().prompt("system").await.as_deref(),
        Some("You are Adiuva.")
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, Method::GET);
    assert_eq!(requests[0].path, "/api/public/v2/prompts/system");
    assert_eq!(requests[0].query.as_deref(), Some("label=production"));
    assert_eq!(
        requests[0].authorization.as_deref(),
        Some("Basic cGstbGYtdGVzdDpzay1sZi10ZXN0")
    );
}

#[tokio::test]
async fn prompt_names_are_url_encoded() {
    let fake = Fake::start(None).await;
    assert_eq!(
        fake.langfuse().prompt("folder/nested").await.as_deref(),
        Some("Nested.")
    );
}

#[tokio::test]
async fn prompt_is_refetched_after_the_ttl() {
    let fake = Fake::start(None).await;
    let langfuse = fake.langfuse().with_prompt_ttl(Duration::from_millis(100));
    assert!(langfuse.prompt("system").await.is_some());
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(langfuse.prompt("system").await.is_some());
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn prompt_is_none_when_absent_and_the_miss_is_cached() {
    let fake = Fake::start(None).await;
    let langfuse = fake.langfuse();
    assert_eq!(langfuse.prompt("missing").await, None);
    assert_eq!(langfuse.prompt("missing").await, None);
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn prompt_is_none_for_a_chat_prompt() {
    let fake = Fake::start(None).await;
    let langfuse = fake.langfuse();
    assert_eq!(langfuse.prompt("chatty").await, None);
    assert_eq!(langfuse.prompt("chatty").await, None);
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn prompt_is_none_on_bad_credentials() {
    let fake = Fake::start(None).await;
    let langfuse = Langfuse::from_source(&config(&[
        ("LANGFUSE_PUBLIC_KEY", PUBLIC),
        ("LANGFUSE_SECRET_KEY", "wrong"),
        ("LANGFUSE_HOST", &fake.host),
    ]))
    .unwrap();
    assert_eq!(langfuse.prompt("system").await, None);
}

#[tokio::test]
async fn prompt_gives_up_quickly_when_langfuse_hangs_and_caches_the_failure() {
    let fake = Fake::start(None).await;
    let langfuse = fake.langfuse();
    let started = Instant::now();
    assert_eq!(langfuse.prompt("hang").await, None);
    let elapsed = started.elapsed();
    assert!(elapsed <= Duration::from_millis(2500), "{elapsed:?}");
    let started = Instant::now();
    assert_eq!(langfuse.prompt("hang").await, None);
    assert!(started.elapsed() < Duration::from_millis(100));
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn prompt_is_none_when_langfuse_is_down() {
    let host = unused_host().await;
    let started = Instant::now();
    assert_eq!(langfuse_at(&host).prompt("system").await, None);
    assert!(started.elapsed() <= Duration::from_millis(2500));
}

#[tokio::test]
async fn finish_returns_when_langfuse_is_down() {
    let host = unused_host().await;
    let mut trace = langfuse_at(&host).trace("chat", "user-1");
    trace.tool("search", SystemTime::now(), SystemTime::now(), None);
    let started = Instant::now();
    trace.finish("ok", false).await;
    let elapsed = started.elapsed();
    assert!(elapsed <= Duration::from_millis(2500), "{elapsed:?}");
}

#[tokio::test]
async fn finish_gives_up_after_two_seconds_when_langfuse_is_slow() {
    let fake = Fake::start(Some(Duration::from_secs(10))).await;
    let trace = fake.langfuse().trace("chat", "user-1");
    let started = Instant::now();
    trace.finish("ok", false).await;
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed <= Duration::from_millis(2500),
        "{elapsed:?}"
    );
    assert_eq!(fake.requests().len(), 1);
}

/// A local address nothing listens on: connections are refused.
async fn unused_host() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}")
}

#[test]
fn handles_and_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Langfuse>();
    assert_send_sync::<Trace>();
    let langfuse = langfuse_at("http://127.0.0.1:9");
    assert_send(&langfuse.prompt("system"));
    assert_send(&langfuse.trace("chat", "user-1").finish("ok", false));
}
