//! Incremental sync (`GET /api/v1/storage/changes`), on both backends: creates, updates and
//! deletes after a cursor come once each and in order, in pages of `?limit`; `since=0` gives
//! the live records; a cursor older than the kept tombstones is 410 and a sync from 0 recovers;
//! another user's changes never appear; cursors are sealed for their user (no global number
//! in them, another user's is 422, one of the earlier readable format is 410); malformed cursors
//! and limits are 422.

use adiuva_storage::Storage;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, error_body, sha, spawn_app, spawn_app_with};

backend_tests!(
    changes_after_a_cursor_come_once_each_in_order,
    a_sync_from_zero_gives_the_live_records,
    a_cursor_older_than_the_tombstones_is_gone,
    another_users_changes_never_appear,
    malformed_cursors_and_limits_are_refused,
    cursors_are_opaque_and_only_their_user_s,
);

/// A cursor carries a number of the sequence every user's writes share: the client must not
/// be able to read it (it would show how much everyone else writes), and a cursor opens only
/// for the user it was made for.
async fn cursors_are_opaque_and_only_their_user_s(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.pro_user().await;
    let bob = app.pro_user().await;
    let (alice_token, bob_token) = (&alice.tokens.access_token, &bob.tokens.access_token);
    // Some traffic, so the numbers are not all small.
    for n in 0..3 {
        app.record(bob_token, "tasks", format!("bob {n}").as_bytes())
            .await;
    }
    let mine = app.record(alice_token, "tasks", b"alice").await;
    let seq: i64 =
        adiuva_db::sqlx::query_scalar("SELECT change_seq FROM storage_records WHERE id = $1")
            .bind(&mine)
            .fetch_one(app.database.db.pool())
            .await
            .unwrap();
    let (_, cursor, _) = changes(&app, alice_token, "?since=0").await;
    assert_ne!(cursor, "0");
    // Not in the text, nor in its bytes (base64url or not), as digits or as an integer.
    let bytes = adiuva_checksum::decode_base64(
        cursor
            .replace('-', "+")
            .replace('_', "/")
            .chars()
            .chain(std::iter::repeat_n('=', (4 - cursor.len() % 4) % 4))
            .collect::<String>()
            .as_bytes(),
    )
    .unwrap();
    // As digits only where a number that long is not in a random text by chance.
    let text = String::from_utf8_lossy(&bytes);
    assert!(
        seq < 1000 || !(cursor.contains(&seq.to_string()) || text.contains(&seq.to_string())),
        "{cursor}"
    );
    assert!(!text.contains("changes"), "{cursor}");
    for width in [seq.to_be_bytes().to_vec(), seq.to_le_bytes().to_vec()] {
        assert!(!bytes.windows(8).any(|w| w == width.as_slice()), "{cursor}");
    }
    // The same position gives the same cursor (a device that is caught up keeps its cursor).
    let (_, again, _) = changes(&app, alice_token, "?since=0").await;
    assert_eq!(again, cursor);
    let (after, _, _) = changes(&app, alice_token, &format!("?since={again}")).await;
    assert!(after.is_empty(), "{after:?}");
    // Alice's cursor in Bob's hands is refused, not read.
    error_body(
        app.get_authed(
            &format!("/api/v1/storage/changes?since={cursor}"),
            bob_token,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_cursor",
    )
    .await;
    // A cursor of the earlier format (the numbers readable): sync again from 0.
    let old = base64url(format!("v1.{seq}.0.changes").as_bytes());
    error_body(
        app.get_authed(&format!("/api/v1/storage/changes?since={old}"), alice_token)
            .await,
        StatusCode::GONE,
        "cursor_expired",
    )
    .await;
}

/// base64url without padding, as the earlier cursors were written.
fn base64url(bytes: &[u8]) -> String {
    adiuva_checksum::encode_base64(bytes)
        .trim_end_matches('=')
        .replace('+', "-")
        .replace('/', "_")
}

/// One page of the feed: its changes, the next cursor and whether more follow.
async fn changes(app: &TestApp, token: &str, query: &str) -> (Vec<Value>, String, bool) {
    let response = app
        .get_authed(&format!("/api/v1/storage/changes{query}"), token)
        .await;
    assert_eq!(response.status(), StatusCode::OK, "{query}");
    let body: Value = response.json().await.unwrap();
    let object = body.as_object().unwrap();
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["changes", "has_more", "next_cursor"]);
    (
        body["changes"].as_array().unwrap().clone(),
        body["next_cursor"].as_str().unwrap().to_owned(),
        body["has_more"].as_bool().unwrap(),
    )
}

/// Every change after `since`, following the cursors `limit` at a time.
async fn all_changes(app: &TestApp, token: &str, since: &str, limit: u32) -> (Vec<Value>, String) {
    let mut all = Vec::new();
    let mut cursor = since.to_owned();
    for _ in 0..100 {
        let (page, next, more) =
            changes(app, token, &format!("?since={cursor}&limit={limit}")).await;
        assert!(page.len() <= limit as usize);
        all.extend(page);
        cursor = next;
        if !more {
            return (all, cursor);
        }
    }
    panic!("the feed does not end");
}

/// A change as (id, deleted, version), to compare sequences.
fn summary(change: &Value) -> (String, bool, Option<i64>) {
    (
        change["id"].as_str().unwrap().to_owned(),
        change["deleted"].as_bool().unwrap(),
        change["version"].as_i64(),
    )
}

fn live(id: &str, version: i64) -> (String, bool, Option<i64>) {
    (id.to_owned(), false, Some(version))
}

fn gone(id: &str) -> (String, bool, Option<i64>) {
    (id.to_owned(), true, None)
}

async fn changes_after_a_cursor_come_once_each_in_order(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let a = app.record(token, "tasks", b"a").await;
    let b = app.record(token, "tasks", b"b").await;
    let c = app.record(token, "notes", b"c").await;
    let (start, cursor, more) = changes(&app, token, "").await;
    assert!(!more);
    assert_eq!(
        start.iter().map(summary).collect::<Vec<_>>(),
        [live(&a, 1), live(&b, 1), live(&c, 1)]
    );

    // A record's change is its metadata as it is now, a deletion a tombstone: nothing else.
    assert_eq!(
        start[2],
        json!({
            "id": c, "table": "notes", "version": 1, "checksum": sha(b"c"), "size_bytes": 1,
            "updated_at": start[2]["updated_at"], "deleted": false,
        })
    );

    // After the cursor: a update, b deleted, d created, a updated again, c deleted.
    assert_eq!(
        app.update_record(token, &a, b"a2", None).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.delete_record(token, &b).await.status(), StatusCode::OK);
    let d = app.record(token, "tasks", b"d").await;
    assert_eq!(
        app.update_record(token, &a, b"a3", None).await.status(),
        StatusCode::OK
    );
    assert_eq!(app.delete_record(token, &c).await.status(), StatusCode::OK);

    // Each once, in the order of its last change: a appears once, at version 3.
    let expected = [gone(&b), live(&d, 1), live(&a, 3), gone(&c)];
    let (after, end) = all_changes(&app, token, &cursor, 500).await;
    assert_eq!(after.iter().map(summary).collect::<Vec<_>>(), expected);
    let tombstone = &after[3];
    assert_eq!(
        tombstone,
        &json!({"id": c, "table": "notes", "deleted_at": tombstone["deleted_at"], "deleted": true})
    );
    assert!(tombstone["deleted_at"].as_i64().unwrap() >= start[2]["updated_at"].as_i64().unwrap());
    assert_eq!(after[2]["checksum"], json!(sha(b"a3")));

    // The same a page at a time: the pages join into the same sequence.
    let (paged, paged_end) = all_changes(&app, token, &cursor, 1).await;
    assert_eq!(paged, after);
    assert_eq!(paged_end, end);

    // Caught up: nothing more, and the cursor stays.
    let (none, same, more) = changes(&app, token, &format!("?since={end}")).await;
    assert!(none.is_empty() && !more);
    assert_eq!(same, end);

    // A later change shows after it, alone.
    assert_eq!(
        app.update_record(token, &d, b"d2", None).await.status(),
        StatusCode::OK
    );
    let (later, _, _) = changes(&app, token, &format!("?since={end}")).await;
    assert_eq!(later.iter().map(summary).collect::<Vec<_>>(), [live(&d, 2)]);
}

async fn a_sync_from_zero_gives_the_live_records(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let (empty, cursor, more) = changes(&app, token, "?since=0").await;
    assert!(empty.is_empty() && !more);
    assert_eq!(cursor, "0");

    let mut ids = Vec::new();
    for n in 0..7 {
        ids.push(app.record(token, "tasks", format!("r{n}").as_bytes()).await);
    }
    assert_eq!(
        app.delete_record(token, &ids[2]).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.update_record(token, &ids[0], b"r0'", None)
            .await
            .status(),
        StatusCode::OK
    );
    let removed = ids.remove(2);
    // Live records only, in the order of their last change; no tombstone of the deleted one.
    let mut expected: Vec<_> = ids[1..].iter().map(|id| live(id, 1)).collect();
    expected.push(live(&ids[0], 2));
    for since in ["", "?since=0"] {
        let (all, _, more) = changes(&app, token, since).await;
        assert!(!more);
        assert_eq!(
            all.iter().map(summary).collect::<Vec<_>>(),
            expected,
            "{since}"
        );
    }
    // In pages of two, with a deletion between pages of a record not read yet: it never shows
    // as live, only as a tombstone on a later page. Later pages are "after a cursor", so they also carry the tombstone
    // of the record deleted before the sync, whose number follows the first page's (a device
    // ignores the deletion of a record it does not have).
    let (first, cursor, more) = changes(&app, token, "?since=0&limit=2").await;
    assert!(more);
    assert_eq!(first.iter().map(summary).collect::<Vec<_>>(), expected[..2]);
    assert_eq!(
        app.delete_record(token, &ids[0]).await.status(),
        StatusCode::OK
    );
    let (rest, _) = all_changes(&app, token, &cursor, 2).await;
    assert_eq!(
        rest.iter().map(summary).collect::<Vec<_>>(),
        [
            live(&ids[3], 1),
            live(&ids[4], 1),
            live(&ids[5], 1),
            gone(&removed),
            gone(&ids[0]),
        ]
    );
}

async fn a_cursor_older_than_the_tombstones_is_gone(backend: Backend) {
    // Retention 0: the next sweep removes every tombstone.
    let app = spawn_app_with(backend, &[("TOMBSTONE_RETENTION_DAYS", "0")]).await;
    let storage: Storage = app.context.get().unwrap();
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    let a = app.record(token, "tasks", b"a").await;
    let b = app.record(token, "tasks", b"b").await;
    let (_, before_deletion, _) = changes(&app, token, "").await;

    assert_eq!(app.delete_record(token, &a).await.status(), StatusCode::OK);
    // A cursor read after the deletion but before the purge still works: it gets the tombstone.
    let (tombstone, after_deletion, _) =
        changes(&app, token, &format!("?since={before_deletion}")).await;
    assert_eq!(
        tombstone.iter().map(summary).collect::<Vec<_>>(),
        [gone(&a)]
    );
    assert_eq!(storage.sweep().await.unwrap().tombstones_purged, 1);

    // The cursor from before the deletion may have missed it: 410, sync again from 0.
    error_body(
        app.get_authed(
            &format!("/api/v1/storage/changes?since={before_deletion}"),
            token,
        )
        .await,
        StatusCode::GONE,
        "cursor_expired",
    )
    .await;
    // One that saw the tombstone before the purge lost nothing.
    let (none, _, _) = changes(&app, token, &format!("?since={after_deletion}")).await;
    assert!(none.is_empty());

    // Starting over: the live records, and a cursor that keeps working across the horizon.
    let (live_now, fresh, _) = changes(&app, token, "?since=0").await;
    assert_eq!(
        live_now.iter().map(summary).collect::<Vec<_>>(),
        [live(&b, 1)]
    );
    let (none, _, _) = changes(&app, token, &format!("?since={fresh}")).await;
    assert!(none.is_empty());
    assert_eq!(app.delete_record(token, &b).await.status(), StatusCode::OK);
    let (deleted, _, _) = changes(&app, token, &format!("?since={fresh}")).await;
    assert_eq!(deleted.iter().map(summary).collect::<Vec<_>>(), [gone(&b)]);
}

async fn another_users_changes_never_appear(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.pro_user().await;
    let bob = app.pro_user().await;
    let (alice_token, bob_token) = (&alice.tokens.access_token, &bob.tokens.access_token);
    let mine = app.record(alice_token, "tasks", b"alice").await;
    let (_, alice_cursor, _) = changes(&app, alice_token, "").await;
    let theirs = app.record(bob_token, "tasks", b"bob").await;
    assert_eq!(
        app.update_record(bob_token, &theirs, b"bob2", None)
            .await
            .status(),
        StatusCode::OK
    );
    let other = app.record(bob_token, "tasks", b"bob3").await;
    assert_eq!(
        app.delete_record(bob_token, &other).await.status(),
        StatusCode::OK
    );

    let (from_zero, _, _) = changes(&app, alice_token, "").await;
    assert_eq!(
        from_zero.iter().map(summary).collect::<Vec<_>>(),
        [live(&mine, 1)]
    );
    let (after, _, _) = changes(&app, alice_token, &format!("?since={alice_cursor}")).await;
    assert!(after.is_empty(), "{after:?}");
    // Bob's cursor in Alice's hands is refused (it is sealed for Bob).
    let (_, bob_cursor, _) = changes(&app, bob_token, "?since=0&limit=1").await;
    error_body(
        app.get_authed(
            &format!("/api/v1/storage/changes?since={bob_cursor}"),
            alice_token,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_cursor",
    )
    .await;
    let (bobs, _, _) = changes(&app, bob_token, "").await;
    assert_eq!(
        bobs.iter().map(summary).collect::<Vec<_>>(),
        [live(&theirs, 2)]
    );
}

async fn malformed_cursors_and_limits_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    app.record(token, "tasks", b"a").await;
    let list = app
        .get_authed("/api/v1/storage/records?limit=1", token)
        .await;
    assert_eq!(list.status(), StatusCode::OK);
    for query in [
        "?since=",
        "?since=abc",
        "?since=-1",
        "?since=12",
        "?since=0x",
    ] {
        error_body(
            app.get_authed(&format!("/api/v1/storage/changes{query}"), token)
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_cursor",
        )
        .await;
    }
    for query in ["?limit=0", "?limit=1001"] {
        let response = app
            .get_authed(&format!("/api/v1/storage/changes{query}"), token)
            .await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}"
        );
    }
    // Not a number: the query does not parse.
    let response = app
        .get_authed("/api/v1/storage/changes?limit=x", token)
        .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let anonymous = app.get("/api/v1/storage/changes").await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}
