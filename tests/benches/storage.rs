//! Storage benchmarks: checksum verification throughput, and record upload and download
//! latency through the local server (HTTP on loopback, real database and blob store).
//!
//! `cargo bench -p tests --bench storage` (embedded SQLite + local folder; set
//! `BENCH_BACKEND=postgres` for PostgreSQL + S3 on moto_server).

use adiuva_db::Backend;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use reqwest::StatusCode;
use tests::harness::{TestApp, sha, spawn_app_with};

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
        let app = spawn_app_with(backend(), &[("QUOTA_UNIT_BYTES", "1073741824")]).await;
        let user = app.pro_user().await;
        (app, user.tokens.access_token)
    });

    let mut group = c.benchmark_group("record_upload");
    group.sample_size(30);
    for size in [1024usize, 256 * 1024, 2 * 1024 * 1024] {
        let bytes: Vec<u8> = (0..size).map(|n| (n % 253) as u8).collect();
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(size), &bytes, |b, bytes| {
            b.to_async(&runtime).iter(|| async {
                let response = app.create_record(&token, "bench", bytes).await;
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

criterion_group!(benches, checksum, records);
criterion_main!(benches);
