//! Consistency under failure: the blob store or the database failing at each step of create,
//! update and delete leaves the previous state readable and no visible half record; what a
//! failure leaves behind is an unreferenced blob, which the janitor removes after the grace
//! period. A dependency that is down is a 503 without details.

use adiuva_blob::Op;
use adiuva_storage::Storage;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, error_body, spawn_app, spawn_app_with};

backend_tests!(
    failed_creates_leave_no_record,
    failed_updates_keep_the_old_record,
    failed_deletes_keep_or_drop_the_whole_record,
    a_down_blob_store_is_503_and_loses_nothing,
    the_janitor_spares_young_and_referenced_blobs,
    the_janitor_walks_a_page_at_a_time_and_resumes,
);

fn storage(app: &TestApp) -> Storage {
    app.context.get().expect("storage")
}

async fn records(app: &TestApp, token: &str) -> Value {
    app.get_authed("/api/v1/storage/records", token)
        .await
        .json()
        .await
        .unwrap()
}

async fn failed_creates_leave_no_record(backend: Backend) {
    let app = spawn_app_with(backend, &[("ORPHAN_GRACE_MINUTES", "0")]).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;

    // Step 1, the blob: the store fails.
    app.faults.fail_next(Op::Put);
    error_body(
        app.create_record(token, "tasks", b"one").await,
        StatusCode::SERVICE_UNAVAILABLE,
        "dependency_unavailable",
    )
    .await;
    // Step 2, the row: the database fails; the stored blob is taken back.
    app.break_database("INSERT", "storage_records").await;
    error_body(
        app.create_record(token, "tasks", b"two").await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
    )
    .await;
    // Step 2 fails and so does taking the blob back: an orphan stays, invisible.
    app.faults.fail_next(Op::Delete);
    error_body(
        app.create_record(token, "tasks", b"three").await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
    )
    .await;
    app.heal_database("INSERT", "storage_records").await;

    assert_eq!(records(&app, token).await, json!([]));
    assert_eq!(app.usage(&user.id).await.0, 0, "no quota was consumed");
    assert_eq!(
        app.blob_keys(&user.id).await.len(),
        1,
        "the orphan of the third attempt"
    );
    let report = storage(&app).sweep().await.unwrap();
    assert_eq!(report.orphans_deleted, 1);
    assert!(app.blob_keys(&user.id).await.is_empty());
    // And the service works again.
    assert_eq!(
        app.create_record(token, "tasks", b"four").await.status(),
        StatusCode::CREATED
    );
}

async fn failed_updates_keep_the_old_record(backend: Backend) {
    let app = spawn_app_with(backend, &[("ORPHAN_GRACE_MINUTES", "0")]).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let id = app.record(token, "tasks", b"old").await;

    app.faults.fail_next(Op::Put);
    error_body(
        app.update_record(token, &id, b"new", None).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "dependency_unavailable",
    )
    .await;
    assert_unchanged(&app, token, &id).await;

    app.break_database("UPDATE", "storage_records").await;
    error_body(
        app.update_record(token, &id, b"new", None).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
    )
    .await;
    app.heal_database("UPDATE", "storage_records").await;
    assert_unchanged(&app, token, &id).await;
    assert_eq!(
        app.blob_keys(&user.id).await.len(),
        1,
        "the new blob was taken back"
    );

    // The row moves to the new blob, but dropping the old one fails: the update stands.
    app.faults.fail_next(Op::Delete);
    assert_eq!(
        app.update_record(token, &id, b"new", None).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.get_record(token, &id)
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"new"
    );
    assert_eq!(app.blob_keys(&user.id).await.len(), 2);
    assert_eq!(storage(&app).sweep().await.unwrap().orphans_deleted, 1);
    assert_eq!(
        app.get_record(token, &id)
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"new"
    );
    assert_eq!(app.usage(&user.id).await.0, 3);
}

async fn assert_unchanged(app: &TestApp, token: &str, id: &str) {
    let current = app.get_record(token, id).await;
    assert_eq!(current.headers()["etag"], "\"1\"");
    assert_eq!(current.bytes().await.unwrap().as_ref(), b"old");
}

async fn failed_deletes_keep_or_drop_the_whole_record(backend: Backend) {
    let app = spawn_app_with(backend, &[("ORPHAN_GRACE_MINUTES", "0")]).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let id = app.record(token, "tasks", b"keep-me").await;

    app.break_database("DELETE", "storage_records").await;
    error_body(
        app.delete_record(token, &id).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
    )
    .await;
    app.heal_database("DELETE", "storage_records").await;
    assert_eq!(
        app.get_record(token, &id)
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"keep-me"
    );

    app.faults.fail_next(Op::Delete);
    assert_eq!(app.delete_record(token, &id).await.status(), StatusCode::OK);
    error_body(
        app.get_record(token, &id).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(app.usage(&user.id).await.0, 0);
    assert_eq!(storage(&app).sweep().await.unwrap().orphans_deleted, 1);
    assert!(app.blob_keys(&user.id).await.is_empty());
}

async fn a_down_blob_store_is_503_and_loses_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let id = app.record(token, "tasks", b"precious").await;
    assert_eq!(
        app.put_backup(token, b"backup", 1).await.status(),
        StatusCode::CREATED
    );

    app.faults.fail_all(Op::Get);
    app.faults.fail_all(Op::Put);
    let read = error_body(
        app.get_record(token, &id).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "dependency_unavailable",
    )
    .await;
    assert_eq!(
        read["detail"],
        "the blob store is temporarily unavailable, retry later"
    );
    error_body(
        app.get_authed("/api/v1/backup", token).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "dependency_unavailable",
    )
    .await;
    error_body(
        app.put_backup(token, b"backup-2", 2).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "dependency_unavailable",
    )
    .await;
    app.faults.clear();

    assert_eq!(
        app.get_record(token, &id)
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"precious"
    );
    let history: Value = app
        .get_authed("/api/v1/backup/history", token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(history.as_array().unwrap().len(), 1);
}

async fn the_janitor_spares_young_and_referenced_blobs(backend: Backend) {
    let app = spawn_app(backend).await; // default grace: 60 minutes
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let id = app.record(token, "tasks", b"referenced").await;
    app.faults.fail_next(Op::Delete);
    assert_eq!(
        app.delete_record(token, &app.record(token, "tasks", b"orphan").await)
            .await
            .status(),
        StatusCode::OK
    );

    let event = std::fs::read_to_string(
        crate::contract::workspace_root().join("events/janitor/schedule.json"),
    )
    .unwrap();
    // A plain "Scheduled Event" names no job: it runs the janitor.
    let janitor::JobReport::Janitor(report) = janitor::Janitor::new(&app.context)
        .unwrap()
        .handle(serde_json::from_str(&event).unwrap())
        .await
        .unwrap()
    else {
        panic!("the schedule event ran another job than the janitor");
    };
    assert_eq!(
        (report.sweep.orphans_deleted, report.sweep.orphans_kept),
        (0, 1)
    );
    assert_eq!(app.blob_keys(&user.id).await.len(), 2);
    assert_eq!(
        app.get_record(token, &id)
            .await
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        b"referenced"
    );
}

/// With a page of two keys and no time budget, each sweep handles one page and the next one
/// resumes after it; after the last page the walk starts over.
async fn the_janitor_walks_a_page_at_a_time_and_resumes(backend: Backend) {
    let app = spawn_app_with(
        backend,
        &[
            ("ORPHAN_GRACE_MINUTES", "0"),
            ("JANITOR_PAGE_SIZE", "2"),
            ("JANITOR_BUDGET_SECS", "0"),
        ],
    )
    .await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let kept = [
        app.record(token, "tasks", b"kept one").await,
        app.record(token, "tasks", b"kept two").await,
    ];
    for n in 0..5 {
        let orphan = format!("{}/tasks/orphan-{n}/blob", user.id);
        app.backends
            .blobs
            .put(
                &orphan,
                bytes::Bytes::from_static(b"x"),
                &crate::harness::sha(b"x"),
            )
            .await
            .unwrap();
    }
    assert_eq!(app.blob_keys(&user.id).await.len(), 7);
    let storage = storage(&app);
    let mut reports = Vec::new();
    loop {
        let report = storage.sweep().await.unwrap();
        assert_eq!(report.pages, 1, "{report:?}");
        assert!(report.blobs_checked <= 2, "{report:?}");
        let done = report.walked_to_end;
        reports.push(report);
        if done {
            break;
        }
        assert!(reports.len() < 10, "the walk does not advance: {reports:?}");
    }
    assert_eq!(reports.len(), 4, "7 keys in pages of 2: {reports:?}");
    let deleted: u64 = reports.iter().map(|report| report.orphans_deleted).sum();
    assert_eq!(deleted, 5);
    assert_eq!(app.blob_keys(&user.id).await.len(), 2);
    for id in &kept {
        assert_eq!(app.get_record(token, id).await.status(), StatusCode::OK);
    }
    // Starting over: the first page again, nothing left to delete.
    let again = storage.sweep().await.unwrap();
    assert_eq!((again.blobs_checked, again.orphans_deleted), (2, 0));
}
