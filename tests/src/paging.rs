//! Keyset pages of the record list and the backup history: `?cursor=` in, `X-Next-Cursor` and
//! `Link: <...>; rel="next"` out, the body still the bare array. On both backends: following
//! the cursors while records are created and deleted between pages neither skips nor repeats a
//! record; every edge (empty list, a last page exactly full, a malformed cursor, another user's
//! cursor, a cursor with `?page`).

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::Value;

use crate::backend_tests;
use crate::harness::{Backend, TestApp, error_body, spawn_app};

backend_tests!(
    following_cursors_skips_and_repeats_nothing_while_records_change,
    cursor_edges,
    backup_history_pages_by_cursor,
);

/// One page: its ids, and the next cursor (checked against the Link header).
async fn page(app: &TestApp, token: &str, path: &str) -> (Vec<String>, Option<String>) {
    let response = app.get_authed(path, token).await;
    assert_eq!(response.status(), StatusCode::OK, "{path}");
    let headers = response.headers().clone();
    let body: Value = response.json().await.unwrap();
    let ids = body
        .as_array()
        .expect("the body is the bare array")
        .iter()
        .map(|item| item["id"].as_str().unwrap().to_owned())
        .collect();
    let next = headers
        .get("x-next-cursor")
        .map(|value| value.to_str().unwrap().to_owned());
    match (&next, headers.get("link")) {
        (Some(cursor), Some(link)) => {
            let link = link.to_str().unwrap();
            assert!(
                link.ends_with("; rel=\"next\"") && link.contains(&format!("cursor={cursor}")),
                "{link}"
            );
        }
        (None, None) => {}
        (next, link) => panic!("X-Next-Cursor {next:?} without a matching Link {link:?}"),
    }
    (ids, next)
}

/// The path the Link header names.
fn link_target(response_link: &str) -> String {
    response_link
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned()
}

async fn following_cursors_skips_and_repeats_nothing_while_records_change(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    // Records created in the same millisecond are ordered by id: the cursor must keep both.
    let mut original = Vec::new();
    for n in 0..23 {
        original.push(app.record(token, "tasks", format!("r{n}").as_bytes()).await);
    }
    let mut seen: Vec<String> = Vec::new();
    let mut deleted = BTreeSet::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => "/api/v1/storage/records?limit=5".to_owned(),
            Some(cursor) => format!("/api/v1/storage/records?limit=5&cursor={cursor}"),
        };
        let (ids, next) = page(&app, token, &path).await;
        seen.extend(ids);
        pages += 1;
        // Between pages: a new record (newer than every cursor, so on no later page) and the
        // deletion of one not seen yet.
        app.record(token, "tasks", format!("new{pages}").as_bytes())
            .await;
        if let Some(victim) = original
            .iter()
            .find(|id| !seen.contains(id) && !deleted.contains(*id))
            .cloned()
        {
            assert_eq!(
                app.delete_record(token, &victim).await.status(),
                StatusCode::OK
            );
            deleted.insert(victim);
        }
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
        assert!(pages < 20, "the cursors do not end");
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "a record was repeated: {seen:?}");
    let expected: BTreeSet<&String> = original
        .iter()
        .filter(|id| !deleted.contains(*id))
        .collect();
    assert_eq!(unique, expected, "the pages are not the records left");
    assert!(!deleted.is_empty());

    // Newest first, ties by id: what ?page gives over the same rows.
    let (all, _) = page(&app, token, "/api/v1/storage/records?limit=200").await;
    let in_list: Vec<&String> = all.iter().filter(|id| unique.contains(id)).collect();
    assert_eq!(
        in_list,
        seen.iter().collect::<Vec<_>>(),
        "not in list order"
    );

    // The Link header is a working URL of the next page, with the filter kept.
    for n in 0..3 {
        app.record(token, "notes", format!("note{n}").as_bytes())
            .await;
    }
    let response = app
        .get_authed("/api/v1/storage/records?table=notes&limit=2", token)
        .await;
    let link = link_target(response.headers()["link"].to_str().unwrap());
    assert!(
        link.starts_with("/api/v1/storage/records?table=notes&limit=2&cursor="),
        "{link}"
    );
    let (rest, next) = page(&app, token, &link).await;
    assert_eq!(rest.len(), 1, "the third note");
    assert!(next.is_none());
}

async fn cursor_edges(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;

    // Empty: an empty page and no next.
    let (ids, next) = page(&app, token, "/api/v1/storage/records").await;
    assert!(ids.is_empty() && next.is_none());

    // A last page exactly full has no next.
    let mut mine = Vec::new();
    for n in 0..4 {
        mine.push(app.record(token, "tasks", format!("m{n}").as_bytes()).await);
    }
    let (first, next) = page(&app, token, "/api/v1/storage/records?limit=2").await;
    let next = next.expect("a second page");
    let (second, last) = page(
        &app,
        token,
        &format!("/api/v1/storage/records?limit=2&cursor={next}"),
    )
    .await;
    assert_eq!(first.len() + second.len(), 4);
    assert!(
        last.is_none(),
        "4 records in pages of 2 end after the second"
    );

    // Malformed cursors, and a cursor together with ?page.
    for bad in ["x", "djE", "%21%21", "djEuMS5h%20"] {
        let response = app
            .get_authed(&format!("/api/v1/storage/records?cursor={bad}"), token)
            .await;
        error_body(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_cursor").await;
    }
    let response = app
        .get_authed(
            &format!("/api/v1/storage/records?page=2&cursor={next}"),
            token,
        )
        .await;
    error_body(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;

    // Another user's cursor selects only the caller's own records.
    let other = app.pro_user().await;
    let theirs = &other.tokens.access_token;
    for n in 0..3 {
        app.record(theirs, "tasks", format!("t{n}").as_bytes())
            .await;
    }
    let (_, their_next) = page(&app, theirs, "/api/v1/storage/records?limit=1").await;
    let their_next = their_next.unwrap();
    let (ids, _) = page(
        &app,
        token,
        &format!("/api/v1/storage/records?limit=200&cursor={their_next}"),
    )
    .await;
    assert!(
        ids.iter().all(|id| mine.contains(id)),
        "another user's cursor showed their records: {ids:?}"
    );
}

async fn backup_history_pages_by_cursor(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.pro_user().await;
    let token = &user.tokens.access_token;
    // Two backups share each timestamp: the cursor orders by timestamp, creation and id.
    let mut ids = BTreeSet::new();
    for n in 0..7 {
        let response = app
            .put_backup(token, format!("b{n}").as_bytes(), 1_000 + n / 2)
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        ids.insert(body["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut timestamps = Vec::new();
    let mut path = "/api/v1/backup/history?limit=3".to_owned();
    loop {
        let response = app.get_authed(&path, token).await;
        let next = response
            .headers()
            .get("x-next-cursor")
            .map(|v| v.to_str().unwrap().to_owned());
        let body: Value = response.json().await.unwrap();
        for backup in body.as_array().unwrap() {
            seen.push(backup["id"].as_str().unwrap().to_owned());
            timestamps.push(backup["timestamp"].as_i64().unwrap());
        }
        match next {
            Some(cursor) => path = format!("/api/v1/backup/history?limit=3&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    assert_eq!(seen.iter().cloned().collect::<BTreeSet<_>>(), ids);
    assert!(
        timestamps.windows(2).all(|w| w[0] >= w[1]),
        "{timestamps:?}"
    );
    let response = app
        .get_authed("/api/v1/backup/history?cursor=nope", token)
        .await;
    error_body(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_cursor").await;
}
