//! `ScriptedLlm`: a local, scripted fake of the OpenAI Chat Completions API, for tests.
//!
//! The code under test talks to a third-party LLM provider over HTTP. Tests must not depend on
//! that provider (network, cost, nondeterministic answers), yet they should exercise the same
//! client code that runs in production. So this module serves the provider's *real wire
//! protocol* on `127.0.0.1:<ephemeral port>`: point the client's base URL at
//! [`ScriptedLlm::base_url`] (`http://127.0.0.1:PORT/v1`) and it sees an OpenAI-compatible server.
//!
//! What is served:
//! - `POST /v1/chat/completions` with the JSON body the OpenAI SDKs send (`model`, `messages`,
//!   `tools`, `temperature`, `max_tokens` / `max_completion_tokens`, `stream`, `stream_options`).
//!   Every request body is recorded (parsed JSON; a body that is not JSON is recorded as a JSON
//!   string) before it is answered, see [`ScriptedLlm::requests`].
//! - Each request consumes the next [`Reply`] of a FIFO script ([`ScriptedLlm::push`]). When the
//!   script is exhausted the answer is a 500 with an OpenAI-style error body whose message is
//!   `"scripted LLM: no reply left for this request"`, unless [`ScriptedLlm::otherwise`] gave a
//!   reply for that case.
//! - Without `"stream": true` the answer is one `chat.completion` object. With it, the answer is
//!   `text/event-stream`: `chat.completion.chunk` events (`data: {json}\n\n`), an empty-delta
//!   chunk carrying `finish_reason`, a usage chunk (`"choices": []`) when the request asked for
//!   `"stream_options": {"include_usage": true}`, and `data: [DONE]\n\n`. The body is really
//!   streamed, with [`ScriptedLlm::set_chunk_delay`] between events, so a client can observe the
//!   chunks arriving over time.
//! - Any other method or path is a 404.
//!
//! Token usage is deterministic: `prompt_tokens` = 10 per request message, `completion_tokens` =
//! number of whitespace-separated words of the output (tool calls: of their names and argument
//! strings), at least 1. [`ScriptedLlm::report_usage`] turns it off, as some OpenAI-compatible
//! servers answer: no `usage` in a completion, no usage chunk in a stream even when asked.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Message of the 500 answered when the script has no reply left.
const EXHAUSTED_MESSAGE: &str = "scripted LLM: no reply left for this request";

/// One scripted answer, consumed by one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Assistant text. Non-streaming: one message with content = chunks joined.
    /// Streaming: one SSE chunk per element (delta.content), in order.
    Text(Vec<String>),
    /// Tool calls (function calls). Non-streaming: `message.tool_calls` with ids "call_0",
    /// "call_1", ... Streaming: the first chunk per call carries index, id, type "function",
    /// function.name and the first half of the arguments; a second chunk carries the rest of the
    /// arguments (only index + function.arguments), as OpenAI streams them. finish_reason
    /// "tool_calls".
    ToolCalls(Vec<ToolCall>),
    /// An error status with an OpenAI-style body
    /// `{"error":{"message":..,"type":..,"param":null,"code":null}}` (also for streaming requests,
    /// as OpenAI answers errors before any event is sent).
    Error { status: u16, message: String },
    /// Waits `delay` before sending the response headers, then answers `reply`.
    Slow { delay: Duration, reply: Box<Reply> },
    /// 200 with a body that is not valid JSON (non-streaming), or an SSE event whose data is not
    /// JSON (streaming; followed by `data: [DONE]`).
    Malformed,
}

/// A function call the assistant asks for.
#[derive(Debug, Clone)]
pub struct ToolCall {
    pub name: String,
    /// The arguments as a JSON-encoded string, as the API carries them.
    pub arguments: String,
}

impl ToolCall {
    /// A call of `name` with `arguments` serialized to a string.
    pub fn new(name: &str, arguments: Value) -> Self {
        Self {
            name: name.to_owned(),
            arguments: arguments.to_string(),
        }
    }
}

#[derive(Debug, Default)]
struct LlmState {
    script: VecDeque<Reply>,
    /// The reply when the script is empty; without one, the 500 of an exhausted script.
    otherwise: Option<Reply>,
    requests: Vec<Value>,
    chunk_delay: Duration,
    /// Numbers the completions ("chatcmpl-N").
    answered: u64,
    /// Answers without usage (a provider that reports none).
    no_usage: bool,
}

type Shared = Arc<Mutex<LlmState>>;

fn lock(state: &Shared) -> MutexGuard<'_, LlmState> {
    // A panicking test thread must not hide the state from the others.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A scripted OpenAI-compatible Chat Completions server on 127.0.0.1; stopped when dropped.
#[derive(Debug)]
pub struct ScriptedLlm {
    base_url: String,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ScriptedLlm {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl ScriptedLlm {
    /// Binds 127.0.0.1:0 and serves the API on a spawned task.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0 for the scripted LLM");
        let addr = listener.local_addr().expect("scripted LLM local address");
        let state = Shared::default();
        let app = Router::new().fallback(handle).with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener.tap_io(local::no_delay), app)
                .await
                .expect("scripted LLM server failed");
        });
        Self {
            base_url: format!("http://{addr}/v1"),
            state,
            server,
        }
    }

    /// `http://127.0.0.1:PORT/v1`, the base URL an OpenAI client is configured with.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Appends `reply` to the script.
    pub fn push(&self, reply: Reply) {
        lock(&self.state).script.push_back(reply);
    }

    /// Appends `replies` to the script, in order.
    pub fn push_all(&self, replies: impl IntoIterator<Item = Reply>) {
        lock(&self.state).script.extend(replies);
    }

    /// Answers `reply` to every request the script has no reply left for (a model that always
    /// says the same thing, for runs that cannot know how many requests they make).
    pub fn otherwise(&self, reply: Reply) {
        lock(&self.state).otherwise = Some(reply);
    }

    /// Every request body received so far, in order (including unanswerable ones).
    pub fn requests(&self) -> Vec<Value> {
        lock(&self.state).requests.clone()
    }

    /// Replies not consumed yet.
    pub fn remaining(&self) -> usize {
        lock(&self.state).script.len()
    }

    /// Whether answers report their token usage (default yes).
    pub fn report_usage(&self, report: bool) {
        lock(&self.state).no_usage = !report;
    }

    /// Delay between streamed SSE chunks (default zero).
    pub fn set_chunk_delay(&self, delay: Duration) {
        lock(&self.state).chunk_delay = delay;
    }
}

/// The only handler: routes by hand so that every other method or path is a 404.
async fn handle(State(state): State<Shared>, method: Method, uri: Uri, body: Bytes) -> Response {
    if method != Method::POST || uri.path() != "/v1/chat/completions" {
        return error_response(
            StatusCode::NOT_FOUND,
            &format!("Unknown request URL: {method} {}", uri.path()),
        );
    }
    let request: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let (reply, number, chunk_delay, no_usage) = {
        let mut state = lock(&state);
        state.requests.push(request.clone());
        state.answered += 1;
        let reply = state.script.pop_front().or_else(|| state.otherwise.clone());
        (reply, state.answered, state.chunk_delay, state.no_usage)
    };
    let Some(mut reply) = reply else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, EXHAUSTED_MESSAGE);
    };
    while let Reply::Slow {
        delay,
        reply: inner,
    } = reply
    {
        tokio::time::sleep(delay).await;
        reply = *inner;
    }
    if let Reply::Error { status, message } = &reply {
        let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return error_response(status, message);
    }
    if !request.is_object() {
        return error_response(StatusCode::BAD_REQUEST, "request body is not a JSON object");
    }

    let meta = Meta {
        id: format!("chatcmpl-{number}"),
        created: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs()),
        model: request.get("model").cloned().unwrap_or(Value::Null),
        prompt_tokens: request
            .get("messages")
            .and_then(Value::as_array)
            .map_or(0, |messages| messages.len() as u64 * 10),
    };
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        stream_response(&meta, &reply, include_usage && !no_usage, chunk_delay)
    } else {
        complete_response(&meta, &reply, !no_usage)
    }
}

/// What every answer to one request shares.
struct Meta {
    id: String,
    created: u64,
    model: Value,
    prompt_tokens: u64,
}

impl Meta {
    fn usage(&self, reply: &Reply) -> Value {
        let output = match reply {
            Reply::Text(chunks) => chunks.concat(),
            Reply::ToolCalls(calls) => calls
                .iter()
                .map(|call| format!("{} {}", call.name, call.arguments))
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        };
        let completion_tokens = (output.split_whitespace().count() as u64).max(1);
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        })
    }

    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "delta": delta,
                "finish_reason": finish_reason,
                "logprobs": null,
            }],
        })
    }
}

fn call_id(index: usize) -> String {
    format!("call_{index}")
}

/// A non-streaming `chat.completion` answer, with `usage` when `report_usage`.
fn complete_response(meta: &Meta, reply: &Reply, report_usage: bool) -> Response {
    let (message, finish_reason) = match reply {
        Reply::Text(chunks) => (
            json!({"role": "assistant", "content": chunks.concat()}),
            "stop",
        ),
        Reply::ToolCalls(calls) => {
            let tool_calls: Vec<Value> = calls
                .iter()
                .enumerate()
                .map(|(index, call)| {
                    json!({
                        "id": call_id(index),
                        "type": "function",
                        "function": {"name": call.name, "arguments": call.arguments},
                    })
                })
                .collect();
            (
                json!({"role": "assistant", "content": null, "tool_calls": tool_calls}),
                "tool_calls",
            )
        }
        Reply::Malformed => {
            return (
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"id": "chatcmpl-malformed", "choices": [{"#,
            )
                .into_response();
        }
        Reply::Error { .. } | Reply::Slow { .. } => unreachable!("resolved by the handler"),
    };
    let mut body = json!({
        "id": meta.id,
        "object": "chat.completion",
        "created": meta.created,
        "model": meta.model,
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason,
            "logprobs": null,
        }],
        "usage": meta.usage(reply),
    });
    if !report_usage && let Some(body) = body.as_object_mut() {
        body.remove("usage");
    }
    axum::Json(body).into_response()
}

/// Splits `text` near its middle, on a character boundary.
fn halves(text: &str) -> (&str, &str) {
    let mut middle = text.len() / 2;
    while !text.is_char_boundary(middle) {
        middle -= 1;
    }
    text.split_at(middle)
}

/// The SSE events of a streamed answer, each `data: ...\n\n`.
fn stream_events(meta: &Meta, reply: &Reply, include_usage: bool) -> Vec<String> {
    let data = |value: &Value| format!("data: {value}\n\n");
    let mut events = Vec::new();
    let finish_reason = match reply {
        Reply::Malformed => {
            events.push("data: {\"id\": \"chatcmpl-malformed\", \"choices\": [\n\n".to_owned());
            events.push("data: [DONE]\n\n".to_owned());
            return events;
        }
        Reply::Text(chunks) => {
            events.push(data(
                &meta.chunk(json!({"role": "assistant", "content": ""}), None),
            ));
            for chunk in chunks {
                events.push(data(&meta.chunk(json!({"content": chunk}), None)));
            }
            "stop"
        }
        Reply::ToolCalls(calls) => {
            events.push(data(
                &meta.chunk(json!({"role": "assistant", "content": ""}), None),
            ));
            for (index, call) in calls.iter().enumerate() {
                let (first, rest) = halves(&call.arguments);
                events.push(data(&meta.chunk(
                    json!({"tool_calls": [{
                        "index": index,
                        "id": call_id(index),
                        "type": "function",
                        "function": {"name": call.name, "arguments": first},
                    }]}),
                    None,
                )));
                events.push(data(&meta.chunk(
                    json!({"tool_calls": [{
                        "index": index,
                        "function": {"arguments": rest},
                    }]}),
                    None,
                )));
            }
            "tool_calls"
        }
        Reply::Error { .. } | Reply::Slow { .. } => unreachable!("resolved by the handler"),
    };
    events.push(data(&meta.chunk(json!({}), Some(finish_reason))));
    if include_usage {
        events.push(data(&json!({
            "id": meta.id,
            "object": "chat.completion.chunk",
            "created": meta.created,
            "model": meta.model,
            "choices": [],
            "usage": meta.usage(reply),
        })));
    }
    events.push("data: [DONE]\n\n".to_owned());
    events
}

/// A `text/event-stream` answer whose events are sent one by one, `chunk_delay` apart.
fn stream_response(
    meta: &Meta,
    reply: &Reply,
    include_usage: bool,
    chunk_delay: Duration,
) -> Response {
    let events = stream_events(meta, reply, include_usage);
    let (sender, receiver) = mpsc::channel::<Bytes>(1);
    tokio::spawn(async move {
        for (position, event) in events.into_iter().enumerate() {
            if position > 0 && !chunk_delay.is_zero() {
                tokio::time::sleep(chunk_delay).await;
            }
            if sender.send(Bytes::from(event)).await.is_err() {
                return; // The client went away.
            }
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(EventStream(receiver)),
    )
        .into_response()
}

/// The receiving end of the event channel as the `Stream` that `Body::from_stream` takes.
#[derive(Debug)]
struct EventStream(mpsc::Receiver<Bytes>);

impl futures_core::Stream for EventStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|event| event.map(Ok))
    }
}

/// An OpenAI-style error answer.
fn error_response(status: StatusCode, message: &str) -> Response {
    let kind = match status.as_u16() {
        400 | 404 | 409 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        _ => "server_error",
    };
    (
        status,
        axum::Json(json!({
            "error": {"message": message, "type": kind, "param": null, "code": null},
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> reqwest::Client {
        crate::harness::http_client()
    }

    async fn post(llm: &ScriptedLlm, body: &Value) -> reqwest::Response {
        client()
            .post(format!("{}/chat/completions", llm.base_url()))
            .json(body)
            .send()
            .await
            .expect("request to the scripted LLM")
    }

    fn request(stream: bool) -> Value {
        json!({
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Hello"},
            ],
            "temperature": 0.2,
            "max_completion_tokens": 64,
            "stream": stream,
            "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null },
        })
    }

    /// Reads the body chunk by chunk and returns the `data:` payloads of its SSE events, plus
    /// how many body chunks carried them.
    async fn read_events(mut response: reqwest::Response) -> (Vec<String>, usize) {
        let mut buffer = String::new();
        let mut body_chunks = 0;
        while let Some(chunk) = response.chunk().await.expect("read a body chunk") {
            body_chunks += 1;
            buffer.push_str(std::str::from_utf8(&chunk).expect("utf-8 body"));
        }
        assert!(buffer.ends_with("\n\n"), "unterminated event in {buffer:?}");
        let events = buffer
            .split_terminator("\n\n")
            .map(|event| {
                event
                    .strip_prefix("data: ")
                    .unwrap_or_else(|| panic!("not a data event: {event:?}"))
                    .to_owned()
            })
            .collect();
        (events, body_chunks)
    }

    #[tokio::test]
    async fn non_streaming_text() {
        let llm = ScriptedLlm::start().await;
        llm.push(Reply::Text(vec!["Hello ".into(), "there, friend".into()]));
        let response = post(&llm, &request(false)).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["object"], "chat.completion");
        assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert!(body["created"].as_u64().unwrap() > 0);
        assert_eq!(body["model"], "gpt-test");
        let choice = &body["choices"][0];
        assert_eq!(choice["index"], 0);
        assert_eq!(choice["message"]["role"], "assistant");
        assert_eq!(choice["message"]["content"], "Hello there, friend");
        assert!(choice["message"].get("tool_calls").is_none());
        assert_eq!(choice["finish_reason"], "stop");
        assert_eq!(
            body["usage"],
            json!({"prompt_tokens": 20, "completion_tokens": 3, "total_tokens": 23})
        );
        assert_eq!(llm.remaining(), 0);
    }

    #[tokio::test]
    async fn non_streaming_tool_calls() {
        let llm = ScriptedLlm::start().await;
        llm.push(Reply::ToolCalls(vec![
            ToolCall::new("get_weather", json!({"city": "Paris"})),
            ToolCall::new("get_time", json!({"zone": "CET"})),
        ]));
        let body: Value = post(&llm, &request(false)).await.json().await.unwrap();
        let choice = &body["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(choice["message"]["content"], Value::Null);
        let calls = choice["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(
            calls[0],
            json!({
                "id": "call_0",
                "type": "function",
                "function": {"name": "get_weather", "arguments": r#"{"city":"Paris"}"#},
            })
        );
        assert_eq!(calls[1]["id"], "call_1");
        assert_eq!(calls[1]["function"]["name"], "get_time");
        let arguments: Value =
            serde_json::from_str(calls[1]["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(arguments, json!({"zone": "CET"}));
    }

    #[tokio::test]
    async fn streamed_text_arrives_as_separate_events() {
        let llm = ScriptedLlm::start().await;
        llm.set_chunk_delay(Duration::from_millis(20));
        llm.push(Reply::Text(vec![
            "Hel".into(),
            "lo ".into(),
            "world".into(),
        ]));
        let started = std::time::Instant::now();
        let response = post(&llm, &request(true)).await;
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()[reqwest::header::CONTENT_TYPE],
            "text/event-stream"
        );
        let (events, body_chunks) = read_events(response).await;
        // role, 3 contents, finish, usage, [DONE]: sent 20 ms apart, so each arrives in its own
        // body chunk (or more, should a read split one) and the whole takes 6 delays.
        assert_eq!(events.len(), 7, "{events:?}");
        assert!(body_chunks >= 7, "{body_chunks} body chunks");
        assert!(started.elapsed() >= Duration::from_millis(120));
        assert_eq!(events.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = events[..6]
            .iter()
            .map(|event| serde_json::from_str(event).unwrap())
            .collect();
        for chunk in &chunks {
            assert_eq!(chunk["object"], "chat.completion.chunk");
            assert_eq!(chunk["id"], chunks[0]["id"]);
            assert_eq!(chunk["model"], "gpt-test");
        }
        assert_eq!(
            chunks[0]["choices"][0]["delta"],
            json!({"role": "assistant", "content": ""})
        );
        let text: String = chunks[1..4]
            .iter()
            .map(|chunk| {
                assert_eq!(chunk["choices"][0]["finish_reason"], Value::Null);
                chunk["choices"][0]["delta"]["content"].as_str().unwrap()
            })
            .collect();
        assert_eq!(text, "Hello world");
        assert_eq!(chunks[4]["choices"][0]["delta"], json!({}));
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[5]["choices"], json!([]));
        assert_eq!(
            chunks[5]["usage"],
            json!({"prompt_tokens": 20, "completion_tokens": 2, "total_tokens": 22})
        );
    }

    #[tokio::test]
    async fn streamed_text_without_usage_chunk_unless_asked() {
        let llm = ScriptedLlm::start().await;
        llm.push(Reply::Text(vec!["Hi".into()]));
        let mut body = request(true);
        body.as_object_mut().unwrap().remove("stream_options");
        let (events, _) = read_events(post(&llm, &body).await).await;
        assert_eq!(events.len(), 4, "{events:?}"); // role, content, finish, [DONE]
        assert!(events.iter().all(|event| !event.contains("\"usage\"")));
        assert_eq!(events[3], "[DONE]");
    }

    #[tokio::test]
    async fn streamed_tool_call_arguments_concatenate() {
        let llm = ScriptedLlm::start().await;
        let arguments = json!({"query": "weather in Zürich", "days": 3});
        llm.push(Reply::ToolCalls(vec![
            ToolCall::new("search", arguments.clone()),
            ToolCall::new("noop", json!({})),
        ]));
        let (events, _) = read_events(post(&llm, &request(true)).await).await;
        assert_eq!(events.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = events[..events.len() - 1]
            .iter()
            .map(|event| serde_json::from_str(event).unwrap())
            .collect();

        // (id, name, arguments) per call index, assembled the way OpenAI clients do.
        let mut calls: Vec<(String, String, String)> = Vec::new();
        let mut finish_reason = Value::Null;
        for chunk in &chunks {
            let Some(choice) = chunk["choices"].get(0) else {
                continue; // The usage chunk.
            };
            if !choice["finish_reason"].is_null() {
                finish_reason = choice["finish_reason"].clone();
            }
            for delta in choice["delta"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let index = delta["index"].as_u64().unwrap() as usize;
                if index == calls.len() {
                    assert_eq!(delta["type"], "function");
                    calls.push((
                        delta["id"].as_str().unwrap().to_owned(),
                        delta["function"]["name"].as_str().unwrap().to_owned(),
                        String::new(),
                    ));
                } else {
                    // Continuations carry only the index and more arguments.
                    assert_eq!(delta.as_object().unwrap().len(), 2, "{delta}");
                    assert_eq!(delta["function"].as_object().unwrap().len(), 1, "{delta}");
                }
                calls[index].2 += delta["function"]["arguments"].as_str().unwrap();
            }
        }
        assert_eq!(finish_reason, "tool_calls");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].0, "call_0");
        assert_eq!(calls[0].1, "search");
        assert_eq!(calls[0].2, arguments.to_string());
        assert_eq!(
            serde_json::from_str::<Value>(&calls[0].2).unwrap(),
            arguments
        );
        assert_eq!(calls[1], ("call_1".into(), "noop".into(), "{}".into()));
        // Two deltas per call: the arguments really were split.
        let tool_deltas = chunks
            .iter()
            .filter(|chunk| !chunk["choices"][0]["delta"]["tool_calls"].is_null())
            .count();
        assert_eq!(tool_deltas, 4);
    }

    #[tokio::test]
    async fn error_reply() {
        let llm = ScriptedLlm::start().await;
        llm.push(Reply::Error {
            status: 429,
            message: "Rate limit reached".into(),
        });
        let response = post(&llm, &request(true)).await;
        assert_eq!(response.status(), 429);
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            body,
            json!({"error": {
                "message": "Rate limit reached",
                "type": "rate_limit_error",
                "param": null,
                "code": null,
            }})
        );
    }

    #[tokio::test]
    async fn slow_and_malformed_replies() {
        let llm = ScriptedLlm::start().await;
        llm.push_all([
            Reply::Slow {
                delay: Duration::from_millis(150),
                reply: Box::new(Reply::Text(vec!["late".into()])),
            },
            Reply::Malformed,
            Reply::Malformed,
        ]);
        let started = std::time::Instant::now();
        let body: Value = post(&llm, &request(false)).await.json().await.unwrap();
        assert!(started.elapsed() >= Duration::from_millis(150));
        assert_eq!(body["choices"][0]["message"]["content"], "late");

        let response = post(&llm, &request(false)).await;
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(serde_json::from_str::<Value>(&text).is_err());

        let (events, _) = read_events(post(&llm, &request(true)).await).await;
        assert!(serde_json::from_str::<Value>(&events[0]).is_err());
        assert_eq!(events.last().unwrap(), "[DONE]");
    }

    #[tokio::test]
    async fn exhausted_script_is_a_500_and_still_recorded() {
        let llm = ScriptedLlm::start().await;
        let response = post(&llm, &request(false)).await;
        assert_eq!(response.status(), 500);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["message"], EXHAUSTED_MESSAGE);
        assert_eq!(body["error"]["param"], Value::Null);
        assert_eq!(body["error"]["code"], Value::Null);
        assert_eq!(llm.requests(), vec![request(false)]);
    }

    #[tokio::test]
    async fn requests_are_recorded_in_order_and_other_routes_are_404() {
        let llm = ScriptedLlm::start().await;
        llm.push_all([Reply::Text(vec!["a".into()]), Reply::Text(vec!["b".into()])]);
        assert_eq!(llm.remaining(), 2);
        let first = json!({
            "model": "m1",
            "messages": [{"role": "user", "content": "one"}],
            "tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}],
            "max_tokens": 5,
        });
        post(&llm, &first).await;
        assert_eq!(llm.remaining(), 1);
        post(&llm, &request(true)).await.text().await.unwrap();
        assert_eq!(llm.remaining(), 0);
        assert_eq!(llm.requests(), vec![first, request(true)]);

        let get = client()
            .get(format!("{}/chat/completions", llm.base_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(get.status(), 404);
        let other = client()
            .post(format!("{}/completions", llm.base_url()))
            .json(&request(false))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 404);
        // Not the chat completions endpoint: not recorded.
        assert_eq!(llm.requests().len(), 2);
    }
}
