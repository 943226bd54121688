//! Streamed chat latency: what our stack (WebSocket, JWT check, orchestrator, router call,
//! agent, stream sanitizer) adds to the first token and to each chunk of a streamed answer,
//! against the scripted OpenAI-compatible server of `tests::llm` on loopback (chunk delay 0,
//! an answer of N = 64 one-word chunks "word0 ", "word1 ", ...).
//!
//! `cargo bench -p tests --bench chat` (embedded SQLite; for a quick run add
//! `-- --warm-up-time 1 --measurement-time 4`).
//!
//! Benchmark ids (`iter_custom`: each iteration runs a whole request or chat and reports only
//! the span named; the rest of it runs untimed):
//! - `chat/direct_first_chunk`: a streamed `POST {base_url}/chat/completions` straight to the
//!   scripted server (reqwest, connection kept alive), from sending to the first SSE event
//!   carrying `"content":"word0 "`.
//! - `chat/direct_total`: the same request, from sending to `data: [DONE]`.
//! - `chat/direct_after_first`: the same request, from the first chunk to `[DONE]` (the
//!   difference of the two above, taken within each iteration: less noisy).
//! - `chat/direct_first_chunk_new_conn`: `direct_first_chunk` on a new connection per request
//!   (connect included), see the stall below.
//! - `chat/router_call`: a non-streamed `POST` to the scripted server answering "task_agent",
//!   from sending to the whole body: the router call every chat makes before the agent's.
//! - `chat/ws_first_frame`: a chat over a fresh WebSocket (connected untimed), from sending the
//!   `{"message": ..}` frame to the first text frame.
//! - `chat/ws_total`: the same, from sending the request frame to the final `{"done": true}` frame.
//! - `chat/ws_after_first`: the same, from the first text frame to the final frame.
//! - `chat/ws_cold_first_frame`, `chat/ws_cold_total`: `ws_first_frame` and `ws_total` timed from
//!   the start of the WebSocket connect (TCP, HTTP upgrade, JWT check) instead: nothing but the
//!   app and the access token is reused.
//! - `chat/ws_resumable_first_frame`, `chat/ws_resumable_total`, `chat/ws_resumable_after_first`:
//!   `ws_first_frame`, `ws_total` and `ws_after_first` with `"resumable": true` (numbered JSON
//!   frames, each stored in the short-lived store, here process memory, before it is sent;
//!   the first frame counted is the first `delta`). What a resumable stream adds: to the
//!   first token `ws_resumable_first_frame` − `ws_first_frame`, to each chunk
//!   (`ws_resumable_after_first` − `ws_after_first`) / 63. On Lambda each frame also costs
//!   a DynamoDB write and a read (not measured here).
//!
//! Derived numbers (from the medians, by hand):
//! - added first-token latency = `ws_first_frame` − `router_call` − `direct_first_chunk`. The
//!   stack's first frame comes after the router call and once the agent's stream is open; it
//!   also includes the sanitizer holding back up to 7 words (the first frame leaves once ~8 words
//!   are in, so it includes the arrival of words 1..7: with chunk delay 0 only the scripted
//!   server's and our compute, about 7/63 of `direct_after_first`).
//! - added per-chunk latency = (`ws_total` − `ws_first_frame` − (`direct_total` −
//!   `direct_first_chunk`)) / 63, or with less noise (`ws_after_first` − `direct_after_first`) / 63:
//!   the tail of the stream through the stack minus the tail of the same stream read directly,
//!   over the 63 chunks after the first. The hold-back moves ~7 chunks of model time from the
//!   tail into the first frame, so this split understates per-chunk and overstates first-token
//!   by the same amount; their sum, `ws_total` − `router_call` − `direct_total`, does not depend
//!   on it. (The stack sends ~58 frames: one per word after the hold-back, then the rest.)
//!
//! TCP_NODELAY: the local server, the test harness and the scripted server turn Nagle's algorithm
//! off on accepted connections (`local::no_delay`). Before they did, a kept-alive connection
//! stalled ~40 ms before the first content event (a small write waiting for the peer's delayed
//! ACK); `direct_first_chunk_new_conn` stays as a check that the kept-alive path is not slower.
//!
//! Caveats: the client, the app and the scripted server share one tokio runtime on the same
//! machine (loopback only, no network latency, 2 cores here), the database is a temporary
//! SQLite file, and the router request the stack sends (the router prompt) is larger than the
//! bench's `router_call` body. These are compute and IO overheads on this machine, not
//! production latencies.

use std::time::{Duration, Instant};

use adiuva_db::Backend;
use criterion::{Criterion, criterion_group, criterion_main};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tests::harness::{TestApp, http_client, spawn_app_with};
use tests::llm::{Reply, ScriptedLlm};
use tokio_tungstenite::tungstenite::Message;

/// Chunks of the streamed answer.
const WORDS: usize = 64;
/// What the first chunk's SSE event carries.
const FIRST_CONTENT: &[u8] = br#""content":"word0 ""#;
const DONE: &[u8] = b"data: [DONE]";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn words() -> Vec<String> {
    (0..WORDS).map(|i| format!("word{i} ")).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// One streamed completion read straight from the scripted server: (to the first chunk, to
/// `[DONE]`), both from sending.
async fn direct_once(client: &reqwest::Client, llm: &ScriptedLlm) -> (Duration, Duration) {
    llm.push(Reply::Text(words()));
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": "hi"}]});
    let started = Instant::now();
    let mut response = client
        .post(format!("{}/chat/completions", llm.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    // Only the new bytes and a short tail of the previous ones are searched, so that reading
    // costs the same per chunk however long the stream already is.
    let mut window: Vec<u8> = Vec::new();
    let mut first = None;
    while let Some(chunk) = response.chunk().await.unwrap() {
        let keep = window.len().saturating_sub(32);
        window.drain(..keep);
        window.extend_from_slice(&chunk);
        if first.is_none() && contains(&window, FIRST_CONTENT) {
            first = Some(started.elapsed());
        }
        if let Some(first) = first
            && contains(&window, DONE)
        {
            let total = started.elapsed();
            while response.chunk().await.unwrap().is_some() {}
            return (first, total);
        }
    }
    panic!("the stream ended without [DONE]");
}

/// One non-streamed completion, as the router call: from sending to the whole body.
async fn router_once(client: &reqwest::Client, llm: &ScriptedLlm) -> Duration {
    llm.push(Reply::Text(vec!["task_agent".into()]));
    let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    let started = Instant::now();
    let response = client
        .post(format!("{}/chat/completions", llm.base_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let bytes = response.bytes().await.unwrap();
    let elapsed = started.elapsed();
    assert!(contains(&bytes, b"task_agent"));
    elapsed
}

async fn connect(app: &TestApp, token: &str) -> Socket {
    let url = format!(
        "{}/api/v1/chat/stream?token={token}",
        app.address.replacen("http://", "ws://", 1)
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// One chat over a new WebSocket: (to the first text frame, to the final frame), from
/// `started` (just before the request frame, or before the connect when `cold`). With
/// `resumable`, the request asks for a resumable stream: the first text frame is then the
/// first `delta` (after the `start` frame), and every frame is stored before it is sent.
async fn ws_once(
    app: &TestApp,
    llm: &ScriptedLlm,
    token: &str,
    cold: bool,
    resumable: bool,
) -> (Duration, Duration) {
    llm.push_all([Reply::Text(vec!["task_agent".into()]), Reply::Text(words())]);
    let mut started = Instant::now();
    let mut socket = connect(app, token).await;
    if !cold {
        started = Instant::now();
    }
    let request = if resumable {
        json!({"message": "go", "resumable": true})
    } else {
        json!({"message": "go"})
    };
    socket
        .send(Message::text(request.to_string()))
        .await
        .unwrap();
    let mut first = None;
    let mut text = String::new();
    loop {
        let frame = socket
            .next()
            .await
            .expect("the stream ended without a final frame")
            .unwrap();
        let Message::Text(frame) = frame else {
            continue; // Pings: the heartbeat is 30 s, so none in practice.
        };
        if frame.starts_with('{')
            && let Ok(value) = serde_json::from_str::<Value>(frame.as_str())
            && value.get("done") == Some(&json!(true))
        {
            let total = started.elapsed();
            let first = first.expect("no text frame before the final frame");
            assert_eq!(value["response"], text.as_str(), "{value}");
            assert_eq!(text, words().concat());
            return (first, total);
        }
        if resumable {
            let value: Value = serde_json::from_str(frame.as_str()).unwrap();
            if value["type"] != "delta" {
                continue; // The start frame.
            }
            first.get_or_insert_with(|| started.elapsed());
            text.push_str(value["text"].as_str().unwrap());
            continue;
        }
        first.get_or_insert_with(|| started.elapsed());
        text.push_str(frame.as_str());
    }
}

/// Which part of a (to the first chunk, to the end) pair a benchmark id reports.
type Part = fn((Duration, Duration)) -> Duration;

const FIRST: Part = |(first, _)| first;
const TOTAL: Part = |(_, total)| total;
const AFTER_FIRST: Part = |(first, total)| total - first;

fn chat(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let setup = runtime.block_on(async {
        let llm = ScriptedLlm::start().await;
        llm.set_chunk_delay(Duration::ZERO);
        // One user chats thousands of times: a budget that does not run out mid-benchmark.
        let app = spawn_app_with(
            Backend::Sqlite,
            &[
                ("LLM_BASE_URL", &llm.base_url()),
                ("AI_MONTHLY_TOKENS_FREE", "1000000000000"),
            ],
        )
        .await;
        let token = app.register_user().await.tokens.access_token;
        // `http_client` installs the crypto provider the second client needs too.
        let pooled = http_client();
        let unpooled = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        (llm, app, token, pooled, unpooled)
    });
    let (llm, app, token) = (&setup.0, &setup.1, setup.2.as_str());
    let (pooled, unpooled) = (&setup.3, &setup.4);

    let mut group = c.benchmark_group("chat");
    group.sample_size(30);
    for (id, client, part) in [
        ("direct_first_chunk", pooled, FIRST),
        ("direct_total", pooled, TOTAL),
        ("direct_after_first", pooled, AFTER_FIRST),
        ("direct_first_chunk_new_conn", unpooled, FIRST),
    ] {
        group.bench_function(id, |b| {
            b.to_async(&runtime).iter_custom(|iters| async move {
                let mut sum = Duration::ZERO;
                for _ in 0..iters {
                    sum += part(direct_once(client, llm).await);
                }
                sum
            })
        });
    }
    group.bench_function("router_call", |b| {
        b.to_async(&runtime).iter_custom(|iters| async move {
            let mut sum = Duration::ZERO;
            for _ in 0..iters {
                sum += router_once(pooled, llm).await;
            }
            sum
        })
    });
    for (id, cold, resumable, part) in [
        ("ws_first_frame", false, false, FIRST),
        ("ws_total", false, false, TOTAL),
        ("ws_after_first", false, false, AFTER_FIRST),
        ("ws_cold_first_frame", true, false, FIRST),
        ("ws_cold_total", true, false, TOTAL),
        ("ws_resumable_first_frame", false, true, FIRST),
        ("ws_resumable_total", false, true, TOTAL),
        ("ws_resumable_after_first", false, true, AFTER_FIRST),
    ] {
        group.bench_function(id, |b| {
            b.to_async(&runtime).iter_custom(|iters| async move {
                let mut sum = Duration::ZERO;
                for _ in 0..iters {
                    sum += part(ws_once(app, llm, token, cold, resumable).await);
                }
                sum
            })
        });
    }
    group.finish();
    assert_eq!(llm.remaining(), 0, "every scripted reply was consumed");
    // The app's pools and tasks belong to the runtime: drop them inside it.
    runtime.block_on(async move { drop(setup) });
}

criterion_group!(benches, chat);
criterion_main!(benches);
