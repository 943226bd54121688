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
        let bytes: Vec<u8> = (0..*size).map(|n| (n % 253) as u8).collect();
        let body = serde_json::to_vec(&serde_json::json!({
            "table": "bench", "blob": b64(&bytes), "checksum": sha(&bytes),
        }))
        .unwrap();
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
        // Bench numbers are about the API, not bcrypt. Every iteration adds a record, so a
        // quota "GB" of 1 TiB keeps a fast run (thousands of 3 MiB records) under the quota.
        // Bodies up to 3 MiB of blob (4 MiB of base64): a larger body limit than the default.
        let app = spawn_app_with(
            backend(),
            &[
                ("QUOTA_UNIT_BYTES", "1099511627776"),
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
        let bytes: Vec<u8> = (0..size).map(|n| (n % 253) as u8).collect();
        let body = serde_json::to_vec(&serde_json::json!({
            "table": "bench", "blob": b64(&bytes), "checksum": sha(&bytes),
        }))
        .unwrap();
        let body = bytes::Bytes::from(body);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &body, |b, body| {
            b.to_async(&runtime).iter(|| async {
                let response = app
                    .request(reqwest::Method::POST, "/api/v1/storage/records")
                    .bearer_auth(&token)
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

criterion_group!(benches, checksum, upload_cpu_path, records);
criterion_main!(benches);
