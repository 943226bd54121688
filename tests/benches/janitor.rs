//! How long the janitor takes to sweep a large bucket: PostgreSQL and S3 on moto_server, with
//! `BENCH_OBJECTS` blobs (default 100,000), nine in ten of them referenced by a record and one
//! in ten an orphan. One sweep with an unlimited time budget walks the whole bucket; the report
//! gives its time, pages and what it deleted. A second sweep (nothing left to delete) shows the
//! cost of checking alone.
//!
//! `cargo bench -p tests --bench janitor` (`BENCH_OBJECTS=10000` for a quicker run).

use std::time::Instant;

use adiuva_db::Backend;
use adiuva_storage::Storage;
use futures::StreamExt as _;
use tests::harness::{sha, spawn_app_with};

fn main() {
    let objects: usize = std::env::var("BENCH_OBJECTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let app = spawn_app_with(
            Backend::Postgres,
            &[("ORPHAN_GRACE_MINUTES", "0"), ("JANITOR_BUDGET_SECS", "900")],
        )
        .await;
        let user = app.pro_user().await;
        let started = Instant::now();
        let blobs = app.backends.blobs.clone();
        let checksum = sha(b"x");
        futures::stream::iter(0..objects)
            .map(|n| {
                let (blobs, checksum, user) = (blobs.clone(), checksum.clone(), user.id.clone());
                async move {
                    let key = format!("{user}/tasks/r{n:07}/v1");
                    blobs
                        .put(&key, bytes::Bytes::from_static(b"x"), &checksum)
                        .await
                        .unwrap();
                }
            })
            .buffer_unordered(64)
            .collect::<Vec<()>>()
            .await;
        // Nine in ten are records' blobs.
        let pool = app.database.db.pool();
        let referenced: Vec<usize> = (0..objects).filter(|n| n % 10 != 0).collect();
        for chunk in referenced.chunks(1000) {
            let mut sql = String::from(
                "INSERT INTO storage_records (id, user_id, table_name, s3_key, checksum, size_bytes, version, created_at, updated_at) VALUES ",
            );
            for (i, n) in chunk.iter().enumerate() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "('r{n:07}', '{user}', 'tasks', '{user}/tasks/r{n:07}/v1', '{checksum}', 1, 1, 0, 0)",
                    user = user.id
                ));
            }
            adiuva_db::sqlx::query(adiuva_db::sqlx::AssertSqlSafe(sql))
                .execute(pool)
                .await
                .unwrap();
        }
        println!(
            "{objects} objects put on moto and {} records written in {:.1} s",
            referenced.len(),
            started.elapsed().as_secs_f64()
        );

        let storage: Storage = app.context.get().unwrap();
        for run in ["first sweep (deletes the orphans)", "second sweep (checks only)"] {
            let started = Instant::now();
            let report = storage.sweep().await.unwrap();
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "{run}: {seconds:.1} s, {} pages, {} blobs checked ({:.0}/s), {} orphans deleted, walked to the end: {}",
                report.pages,
                report.blobs_checked,
                report.blobs_checked as f64 / seconds,
                report.orphans_deleted,
                report.walked_to_end
            );
        }
    });
}
