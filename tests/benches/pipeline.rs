//! What the request pipeline costs: warm `GET /api/v1/auth/me` through the local server (request
//! id and span, CORS, body limit, authentication with the live-tier query, the tier rate limit,
//! the idempotency stage, the handler) against a bare axum handler answering a profile of the
//! same shape, both over HTTP on loopback with one kept-alive reqwest client per task. Reports
//! p50 and p99 at concurrency 1 and 32.
//!
//! `cargo bench -p tests --bench pipeline` (embedded SQLite and the in-memory store; set
//! `BENCH_BACKEND=postgres` for PostgreSQL and DynamoDB on moto_server). `BENCH_REQUESTS`
//! (default 4000) sets the measured requests per run; `BENCH_RATE_LIMIT=false` measures the
//! pipeline without the rate-limit stage, to see what that stage costs; `BENCH_PATH` measures
//! another GET route instead (`/api/v1/health`: the pipeline without a caller).
//!
//! Team users (200 requests a minute each), signed in before the measured window, take turns
//! so that no request is refused: every measured request pays for the rate-limit check.

use std::time::{Duration, Instant};

use adiuva_db::Backend;
use reqwest::StatusCode;
use serde_json::json;
use tests::harness::{http_client, spawn_app_with};

const CONCURRENCY: [usize; 2] = [1, 32];
const USERS: usize = 120;

fn backend() -> Backend {
    match std::env::var("BENCH_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

fn requests() -> usize {
    std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4000)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

/// Runs `total` GETs of `url` (with a bearer token from `tokens`, round robin) from
/// `concurrency` tasks; returns the sorted latencies.
async fn measure(url: &str, tokens: &[String], concurrency: usize, total: usize) -> Vec<Duration> {
    let per_task = total / concurrency;
    let tasks = (0..concurrency).map(|task| {
        let (url, tokens) = (url.to_owned(), tokens.to_vec());
        tokio::spawn(async move {
            let client = http_client();
            let mut latencies = Vec::with_capacity(per_task);
            for n in 0..per_task {
                let token = &tokens[(task * per_task + n) % tokens.len()];
                let started = Instant::now();
                let response = client.get(&url).bearer_auth(token).send().await.unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                response.bytes().await.unwrap();
                latencies.push(started.elapsed());
            }
            latencies
        })
    });
    let mut all = Vec::with_capacity(total);
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    all
}

/// A bare axum server answering what `/auth/me` answers, without any pipeline.
async fn bare_server() -> String {
    let app = axum::Router::new().route(
        "/api/v1/auth/me",
        axum::routing::get(|| async {
            axum::Json(json!({
                "id": "0f8fad5b-d9cb-469f-a165-70867728950e",
                "email": "bench@example.com",
                "tier": "team",
            }))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tests::harness::serve(listener, app);
    format!("http://{address}/api/v1/auth/me")
}

fn main() {
    // `cargo bench` passes `--bench`; a filter from `cargo test --benches` would skip us.
    if std::env::args().any(|arg| arg == "--list") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let rate_limit = std::env::var("BENCH_RATE_LIMIT").unwrap_or_else(|_| "true".to_owned());
        let app = spawn_app_with(backend(), &[("RATE_LIMIT_ENABLED", rate_limit.as_str())]).await;
        let mut tokens = Vec::with_capacity(USERS);
        for _ in 0..USERS {
            let user = app.register_user().await;
            app.set_subscription(&user.id, "team", "active").await;
            tokens.push(user.tokens.access_token);
        }
        let path = std::env::var("BENCH_PATH").unwrap_or_else(|_| "/api/v1/auth/me".to_owned());
        let pipeline_url = app.url(&path);
        let bare_url = bare_server().await;
        let total = requests();
        println!(
            "pipeline bench: {total} requests per run, {USERS} team users, backend {:?}, rate limit {rate_limit}",
            backend()
        );
        println!("| concurrency | bare p50 | bare p99 | pipeline p50 | pipeline p99 | p50 ratio | p99 ratio |");
        println!("|---|---|---|---|---|---|---|");
        for concurrency in CONCURRENCY {
            // Warm both: connections, caches, the pool.
            measure(&bare_url, &tokens, concurrency, concurrency * 20).await;
            measure(&pipeline_url, &tokens, concurrency, concurrency * 20).await;
            let bare = measure(&bare_url, &tokens, concurrency, total).await;
            let pipeline = measure(&pipeline_url, &tokens, concurrency, total).await;
            let (b50, b99) = (percentile(&bare, 0.5), percentile(&bare, 0.99));
            let (p50, p99) = (percentile(&pipeline, 0.5), percentile(&pipeline, 0.99));
            println!(
                "| {concurrency} | {:.0} µs | {:.0} µs | {:.0} µs | {:.0} µs | {:.2}x | {:.2}x |",
                b50.as_secs_f64() * 1e6,
                b99.as_secs_f64() * 1e6,
                p50.as_secs_f64() * 1e6,
                p99.as_secs_f64() * 1e6,
                p50.as_secs_f64() / b50.as_secs_f64(),
                p99.as_secs_f64() / b99.as_secs_f64(),
            );
        }
        drop(app);
    });
}
