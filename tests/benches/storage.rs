//! Storage benchmarks: checksum verification throughput, and record upload and download
//! latency through the local server (HTTP on loopback, real database and blob store).
//!
//! `cargo bench -p tests --bench storage` (embedded SQLite + local folder; set
//! `BENCH_BACKEND=postgres` for PostgreSQL + S3 on moto_server). The data folder is a temporary
//! one: `TMPDIR=/dev/shm` puts it on tmpfs, so that the disk's fsync is not what is measured.

use adiuva_db::Backend;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use reqwest::StatusCode;
use tests::harness::{TestApp, b64, sha, spawn_app_with};

/// Inline record sizes: a small one, and the 1 to 3 MiB the upload path is tuned for.
const UPLOAD_SIZES: [usize; 3] = [1024, 1024 * 1024, 3 * 1024 * 1024];

fn checksum(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum_verify");
    for size in [1024usize, 64 * 1024, 1024 * 1024, 4 * 1024 * 1024] {
        let bytes: Vec<u8> = (0..size).map(|n| (n % 251) as u8).collect();
        let digest = sha(&bytes);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &bytes, |b, bytes| {
            b.iter(|| adiuva_checksum::verify(std::hint::black_box(bytes), &digest).unwrap())
        });
    }
    group.finish();
}

/// What the server does with an inline record's body before it stores it: parse the JSON,
/// decode the base64 blob while hashing it, compare the checksum. The floor of the upload path.
fn upload_cpu_path(c: &mut Criterion) {
    #[derive(serde::Deserialize)]
    struct Create {
        #[allow(dead_code)]
        table: String,
        blob: adiuva_http::Blob,
        checksum: String,
    }
    let mut group = c.benchmark_group("upload_cpu_path");
    for size in &UPLOAD_SIZES[1..] {
        let body = create_body(*size);
        group.throughput(Throughput::Bytes(*size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.iter(|| {
                let create: Create = serde_json::from_slice(std::hint::black_box(body)).unwrap();
                create.blob.0.verify(&create.checksum).unwrap();
            })
        });
    }
    group.finish();
}

/// The HTTP floor of an inline upload: the same bodies, from the same client, to a bare axum
/// route on loopback that collects the body and answers 201 (no pipeline, no JSON, no store).
/// `record_upload` minus this is what the API adds to moving the bytes.
fn loopback_transport(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = runtime.block_on(async {
        let app = axum::Router::new().route(
            "/upload",
            axum::routing::post(|body: bytes::Bytes| async move {
                std::hint::black_box(body);
                StatusCode::CREATED
            })
            .layer(axum::extract::DefaultBodyLimit::max(8 << 20)),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tests::harness::serve(listener, app);
        format!("http://{address}/upload")
    });
    let client = tests::harness::http_client();
    let mut group = c.benchmark_group("loopback_transport");
    group.sample_size(30);
    for size in &UPLOAD_SIZES[1..] {
        let body = bytes::Bytes::from(create_body(*size));
        group.throughput(Throughput::Bytes(*size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.to_async(&runtime).iter(|| async {
                let response = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), StatusCode::CREATED);
            })
        });
    }
    group.finish();
}

/// The body of an inline record upload of `size` bytes.
fn create_body(size: usize) -> Vec<u8> {
    let bytes: Vec<u8> = (0..size).map(|n| (n % 253) as u8).collect();
    serde_json::to_vec(&serde_json::json!({
        "table": "bench", "blob": b64(&bytes), "checksum": sha(&bytes),
    }))
    .unwrap()
}

fn backend() -> Backend {
    match std::env::var("BENCH_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        _ => Backend::Sqlite,
    }
}

fn records(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (app, token): (TestApp, String) = runtime.block_on(async {
        // Bench numbers are about the API, not bcrypt; a large quota so uploads never hit it.
        // Bodies up to 3 MiB of blob (4 MiB of base64): a larger body limit than the default.
        let app = spawn_app_with(
            backend(),
            &[
                ("QUOTA_UNIT_BYTES", "1073741824"),
                ("MAX_BODY_BYTES", "8388608"),
            ],
        )
        .await;
        let user = app.pro_user().await;
        (app, user.tokens.access_token)
    });

    // The request body is built once: what is measured is the server's path (JSON, base64,
    // SHA-256, the blob store, the database), not the client encoding it.
    let mut group = c.benchmark_group("record_upload");
    group.sample_size(30);
    for size in UPLOAD_SIZES {
        let body = bytes::Bytes::from(create_body(size));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            // Only the upload is timed. Each record is deleted after it, untimed, so the data
            // folder stays small: thousands of records left on tmpfs (gigabytes of RAM) slowed
            // later sizes down by half, which measured the machine's memory, not the API.
            let (app, token) = (&app, &token);
            b.to_async(&runtime).iter_custom(|iterations| async move {
                let mut timed = std::time::Duration::ZERO;
                for _ in 0..iterations {
                    let started = std::time::Instant::now();
                    let response = app
                        .request(reqwest::Method::POST, "/api/v1/storage/records")
                        .bearer_auth(token)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::CREATED);
                    let created: serde_json::Value = response.json().await.unwrap();
                    timed += started.elapsed();
                    let id = created["id"].as_str().unwrap();
                    assert!(app.delete_record(token, id).await.status().is_success());
                }
                timed
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("record_download");
    group.sample_size(30);
    for size in [1024usize, 256 * 1024, 2 * 1024 * 1024] {
        let bytes: Vec<u8> = (0..size).map(|n| (n % 253) as u8).collect();
        let id = runtime.block_on(app.record(&token, "bench", &bytes));
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &id, |b, id| {
            b.to_async(&runtime).iter(|| async {
                let body = app.get_record(&token, id).await.bytes().await.unwrap();
                assert_eq!(body.len(), size);
            })
        });
    }
    group.finish();
    runtime.block_on(async move { drop(app) });
}

criterion_group!(
    benches,
    checksum,
    upload_cpu_path,
    loopback_transport,
    records
);
criterion_main!(benches);
