//! Team spaces (issue 21, item 7): a team's records, changes feed and uploads, shared by its
//! members, refused (404) to everyone else, counted against the team's own quotas, kept when
//! their author's account goes, and purged with nothing else.
//!
//! The teams API (creating teams, inviting, removing members) lands separately: [`team`] and
//! [`remove`] stand in for it by writing `teams` and `team_members` directly.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, TestUser, b64, error_body, sha, spawn_app, spawn_app_with};

backend_tests!(
    two_members_write_read_and_sync_one_space,
    large_blobs_go_through_the_teams_upload_flow,
    everyone_but_a_member_gets_404_on_every_route,
    the_team_is_counted_as_a_whole,
    an_inactive_team_has_the_free_tiers_quotas,
    records_stay_when_their_authors_account_goes,
    a_teams_cursor_opens_for_that_team_only,
    a_teams_cursor_older_than_its_tombstones_is_gone,
    purging_a_team_space_leaves_everything_else,
);

/// Stands in for the teams API (which lands separately): a team whose subscription is in
/// `status` (`active`: the Team tier; anything else: free), with `members` as (user id, role),
/// written straight into `teams` and `team_members`. Returns its id.
pub(crate) async fn team(app: &TestApp, status: &str, members: &[(&str, &str)]) -> String {
    let pool = app.database.db.pool();
    let team_id = uuid::Uuid::new_v4().to_string();
    adiuva_db::sqlx::query(
        "INSERT INTO teams (id, name, seats, status, created_at, updated_at) \
         VALUES ($1, 'Team', $2, $3, 0, 0)",
    )
    .bind(&team_id)
    .bind(i64::try_from(members.len()).unwrap())
    .bind(status)
    .execute(pool)
    .await
    .expect("failed to write the team");
    for (user_id, role) in members {
        adiuva_db::sqlx::query(
            "INSERT INTO team_members (team_id, user_id, role, joined_at) VALUES ($1, $2, $3, 0)",
        )
        .bind(&team_id)
        .bind(*user_id)
        .bind(*role)
        .execute(pool)
        .await
        .expect("failed to write the member");
    }
    team_id
}

/// Stands in for the teams API's removal of a member.
async fn remove(app: &TestApp, team_id: &str, user_id: &str) {
    adiuva_db::sqlx::query("DELETE FROM team_members WHERE team_id = $1 AND user_id = $2")
        .bind(team_id)
        .bind(user_id)
        .execute(app.database.db.pool())
        .await
        .unwrap();
}

async fn set_status(app: &TestApp, team_id: &str, status: &str) {
    adiuva_db::sqlx::query("UPDATE teams SET status = $2 WHERE id = $1")
        .bind(team_id)
        .bind(status)
        .execute(app.database.db.pool())
        .await
        .unwrap();
}

fn records(team_id: &str) -> String {
    format!("/api/v1/teams/{team_id}/records")
}

async fn create(
    app: &TestApp,
    user: &TestUser,
    team_id: &str,
    bytes: &[u8],
    key_version: i64,
) -> Response {
    app.request(Method::POST, &records(team_id))
        .bearer_auth(&user.tokens.access_token)
        .json(&json!({"table": "tasks", "blob": b64(bytes), "checksum": sha(bytes), "key_version": key_version}))
        .send()
        .await
        .unwrap()
}

/// Creates a team record and returns its id.
pub(crate) async fn created(app: &TestApp, user: &TestUser, team_id: &str, bytes: &[u8]) -> String {
    let response = create(app, user, team_id, bytes, 1).await;
    assert_eq!(
        response.status(),
        StatusCode::CREATED,
        "{}",
        response.text().await.unwrap()
    );
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn update(
    app: &TestApp,
    user: &TestUser,
    team_id: &str,
    record_id: &str,
    bytes: &[u8],
    key_version: i64,
    if_match: &str,
) -> Response {
    app.request(Method::PUT, &format!("{}/{record_id}", records(team_id)))
        .bearer_auth(&user.tokens.access_token)
        .header("if-match", if_match)
        .json(&json!({"blob": b64(bytes), "checksum": sha(bytes), "key_version": key_version}))
        .send()
        .await
        .unwrap()
}

async fn get(app: &TestApp, user: &TestUser, path: &str) -> Response {
    app.get_authed(path, &user.tokens.access_token).await
}

async fn list(app: &TestApp, user: &TestUser, team_id: &str) -> Vec<Value> {
    let response = get(app, user, &records(team_id)).await;
    assert_eq!(response.status(), StatusCode::OK);
    response
        .json::<Value>()
        .await
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

async fn changes(app: &TestApp, user: &TestUser, team_id: &str, since: &str) -> Value {
    let response = get(
        app,
        user,
        &format!("/api/v1/teams/{team_id}/changes?since={since}"),
    )
    .await;
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// The keys the blob store holds under a prefix.
pub(crate) async fn keys(app: &TestApp, prefix: &str) -> Vec<String> {
    app.backends
        .blobs
        .list(prefix)
        .await
        .unwrap()
        .into_iter()
        .map(|blob| blob.key)
        .collect()
}

async fn start_upload(app: &TestApp, user: &TestUser, team_id: &str, body: &Value) -> Response {
    app.request(Method::POST, &format!("/api/v1/teams/{team_id}/uploads"))
        .bearer_auth(&user.tokens.access_token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// PUTs the bytes where the ticket says.
async fn upload(app: &TestApp, ticket: &Value, bytes: &[u8]) {
    let mut put = app
        .client
        .put(ticket["url"].as_str().unwrap())
        .body(bytes.to_vec());
    for (name, value) in ticket["headers"].as_object().unwrap() {
        put = put.header(name, value.as_str().unwrap());
    }
    let status = put.send().await.unwrap().status();
    assert!(status.is_success(), "upload failed: {status}");
}

async fn commit(app: &TestApp, user: &TestUser, team_id: &str, upload_id: &str) -> Response {
    app.request(
        Method::POST,
        &format!("/api/v1/teams/{team_id}/uploads/{upload_id}/commit"),
    )
    .bearer_auth(&user.tokens.access_token)
    .send()
    .await
    .unwrap()
}

async fn two_members_write_read_and_sync_one_space(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.register_user().await;
    let bob = app.register_user().await;
    let team_id = team(&app, "active", &[(&alice.id, "owner"), (&bob.id, "member")]).await;

    // Alice creates; Bob sees it, with its author and key version, and reads its bytes.
    let id = created(&app, &alice, &team_id, b"team-task-1").await;
    let listed = list(&app, &bob, &team_id).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["table"], "tasks");
    assert_eq!(listed[0]["version"], 1);
    assert_eq!(listed[0]["key_version"], 1);
    assert_eq!(listed[0]["author_id"], alice.id.as_str());
    assert_eq!(listed[0]["checksum"], sha(b"team-task-1").as_str());
    let download = get(&app, &bob, &format!("{}/{id}", records(&team_id))).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(download.headers()["etag"], "\"1\"");
    assert_eq!(download.headers()["x-key-version"], "1");
    assert_eq!(download.headers()["x-author-id"], alice.id.as_str());
    assert_eq!(
        download.headers()["x-checksum"],
        sha(b"team-task-1").as_str()
    );
    assert_eq!(&download.bytes().await.unwrap()[..], b"team-task-1");

    // Bob updates it under a new key version; he becomes its author. Alice's stale write is 412.
    let updated = update(&app, &bob, &team_id, &id, b"team-task-2", 2, "\"1\"").await;
    assert_eq!(updated.status(), StatusCode::OK);
    let updated: Value = updated.json().await.unwrap();
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["checksum"], sha(b"team-task-2").as_str());
    let stale = update(&app, &alice, &team_id, &id, b"team-task-3", 2, "\"1\"").await;
    error_body(stale, StatusCode::PRECONDITION_FAILED, "version_conflict").await;
    let listed = list(&app, &alice, &team_id).await;
    assert_eq!(listed[0]["version"], 2);
    assert_eq!(listed[0]["key_version"], 2);
    assert_eq!(listed[0]["author_id"], bob.id.as_str());
    let download = get(&app, &alice, &format!("{}/{id}", records(&team_id))).await;
    assert_eq!(&download.bytes().await.unwrap()[..], b"team-task-2");

    // key_version is required on create and update, and starts at 1.
    for body in [
        json!({"table": "tasks", "blob": b64(b"x"), "checksum": sha(b"x")}),
        json!({"table": "tasks", "blob": b64(b"x"), "checksum": sha(b"x"), "key_version": 0}),
        json!({"table": "tasks", "blob": b64(b"x"), "checksum": sha(b"x"), "key_version": "1"}),
    ] {
        let response = app
            .request(Method::POST, &records(&team_id))
            .bearer_auth(&alice.tokens.access_token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}"
        );
    }
    let no_key = app
        .request(Method::PUT, &format!("{}/{id}", records(&team_id)))
        .bearer_auth(&alice.tokens.access_token)
        .json(&json!({"blob": b64(b"x"), "checksum": sha(b"x")}))
        .send()
        .await
        .unwrap();
    assert_eq!(no_key.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let zero = update(&app, &alice, &team_id, &id, b"x", 0, "\"2\"").await;
    error_body(zero, StatusCode::UNPROCESSABLE_ENTITY, "validation_error").await;
    // Bad writes changed nothing.
    assert_eq!(list(&app, &bob, &team_id).await.len(), 1);

    // The feed from 0: the record as it is now. Then Bob deletes it: a tombstone after the cursor.
    let feed = changes(&app, &alice, &team_id, "0").await;
    let entries = feed["changes"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["id"], id.as_str());
    assert_eq!(entries[0]["version"], 2);
    assert_eq!(entries[0]["key_version"], 2);
    assert_eq!(entries[0]["author_id"], bob.id.as_str());
    assert_eq!(entries[0]["deleted"], false);
    let cursor = feed["next_cursor"].as_str().unwrap().to_owned();
    let other = created(&app, &alice, &team_id, b"team-task-other").await;
    let deleted = app
        .request(Method::DELETE, &format!("{}/{id}", records(&team_id)))
        .bearer_auth(&bob.tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let gone = get(&app, &alice, &format!("{}/{id}", records(&team_id))).await;
    error_body(gone, StatusCode::NOT_FOUND, "not_found").await;
    let feed = changes(&app, &bob, &team_id, &cursor).await;
    let entries = feed["changes"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{feed}");
    assert_eq!(entries[0]["id"], other.as_str());
    assert_eq!(entries[0]["deleted"], false);
    assert_eq!(entries[1]["id"], id.as_str());
    assert_eq!(entries[1]["deleted"], true);
    assert_eq!(entries[1]["table"], "tasks");

    // None of it is anyone's own storage: blobs under the team's prefix, no personal rows.
    let mine = get(&app, &alice, "/api/v1/storage/records").await;
    assert_eq!(mine.json::<Value>().await.unwrap(), json!([]));
    assert!(keys(&app, &format!("{}/", alice.id)).await.is_empty());
    assert!(keys(&app, &format!("{}/", bob.id)).await.is_empty());
    let team_keys = keys(&app, &format!("teams/{team_id}/")).await;
    assert_eq!(team_keys.len(), 1, "{team_keys:?}");
    assert!(team_keys[0].contains(&other));
    assert_eq!(app.usage(&alice.id).await, (0, 0));
}

async fn large_blobs_go_through_the_teams_upload_flow(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.register_user().await;
    let bob = app.register_user().await;
    let team_id = team(&app, "active", &[(&alice.id, "owner"), (&bob.id, "admin")]).await;
    let big = vec![7u8; 300_000];

    // Alice starts it, Bob commits it: the record is Bob's, with the announced key version.
    let ticket = start_upload(
        &app,
        &alice,
        &team_id,
        &json!({"table": "notes", "size_bytes": big.len(), "checksum": sha(&big), "key_version": 3}),
    )
    .await;
    assert_eq!(ticket.status(), StatusCode::CREATED);
    let ticket: Value = ticket.json().await.unwrap();
    let record_id = ticket["target_id"].as_str().unwrap().to_owned();
    let early = commit(&app, &bob, &team_id, ticket["upload_id"].as_str().unwrap()).await;
    error_body(early, StatusCode::CONFLICT, "upload_incomplete").await;
    upload(&app, &ticket, &big).await;
    let committed = commit(&app, &bob, &team_id, ticket["upload_id"].as_str().unwrap()).await;
    assert_eq!(committed.status(), StatusCode::OK);
    let committed: Value = committed.json().await.unwrap();
    assert_eq!(committed["purpose"], "record");
    assert_eq!(committed["record"]["id"], record_id.as_str());
    assert_eq!(committed["record"]["key_version"], 3);
    assert_eq!(committed["record"]["author_id"], bob.id.as_str());
    assert_eq!(committed["record"]["size_bytes"], big.len());
    let again = commit(&app, &bob, &team_id, ticket["upload_id"].as_str().unwrap()).await;
    error_body(again, StatusCode::NOT_FOUND, "not_found").await;
    let download = get(&app, &alice, &format!("{}/{record_id}", records(&team_id))).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(&download.bytes().await.unwrap()[..], &big[..]);

    // A new blob for it, refused when it names a stale version, accepted at the current one.
    let bigger = vec![9u8; 400_000];
    let stale = start_upload(
        &app,
        &bob,
        &team_id,
        &json!({"record_id": record_id, "if_match": 7, "size_bytes": bigger.len(), "checksum": sha(&bigger), "key_version": 4}),
    )
    .await;
    error_body(stale, StatusCode::PRECONDITION_FAILED, "version_conflict").await;
    let ticket: Value = start_upload(
        &app,
        &bob,
        &team_id,
        &json!({"record_id": record_id, "if_match": 1, "size_bytes": bigger.len(), "checksum": sha(&bigger), "key_version": 4}),
    )
    .await
    .json()
    .await
    .unwrap();
    upload(&app, &ticket, &bigger).await;
    let committed: Value = commit(
        &app,
        &alice,
        &team_id,
        ticket["upload_id"].as_str().unwrap(),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(committed["record"]["version"], 2);
    assert_eq!(committed["record"]["key_version"], 4);
    assert_eq!(committed["record"]["author_id"], alice.id.as_str());

    // The bytes live under the team's prefix only, the old blob is gone.
    let team_keys = keys(&app, &format!("teams/{team_id}/")).await;
    assert_eq!(team_keys.len(), 1, "{team_keys:?}");
    assert!(team_keys[0].starts_with(&format!("teams/{team_id}/notes/{record_id}/")));
    assert!(keys(&app, &format!("{}/", alice.id)).await.is_empty());
    assert!(keys(&app, &format!("{}/", bob.id)).await.is_empty());

    // The upload's own checks: key_version, a record of another space, a missing table.
    let body = |extra: Value| {
        let mut body = json!({"size_bytes": 10, "checksum": sha(b"0123456789")});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    for (extra, status) in [
        (json!({"table": "notes"}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"table": "notes", "key_version": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (json!({"key_version": 1}), StatusCode::UNPROCESSABLE_ENTITY),
        (
            json!({"record_id": uuid::Uuid::new_v4().to_string(), "key_version": 1}),
            StatusCode::NOT_FOUND,
        ),
        (
            json!({"table": "notes", "key_version": 1, "size_bytes": 6_000_000_000_u64}),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ] {
        let response = start_upload(&app, &alice, &team_id, &body(extra.clone())).await;
        assert_eq!(response.status(), status, "{extra}");
    }
    // A personal record is not the team's to update, nor a team record the member's own.
    let own = app.pro_user().await;
    let own_record = app.record(&own.tokens.access_token, "tasks", b"own").await;
    let own_team = team(&app, "active", &[(&own.id, "member")]).await;
    let response = start_upload(
        &app,
        &own,
        &own_team,
        &body(json!({"record_id": own_record, "key_version": 1})),
    )
    .await;
    error_body(response, StatusCode::NOT_FOUND, "not_found").await;
}

/// One request of every team route, with a query or body that would be refused if it were
/// read, and what a member gets for it.
fn every_route(team_id: &str) -> Vec<(Method, String, Option<Value>, StatusCode)> {
    let record = uuid::Uuid::new_v4();
    let upload = uuid::Uuid::new_v4();
    let invalid = StatusCode::UNPROCESSABLE_ENTITY;
    let missing = StatusCode::NOT_FOUND;
    vec![
        (Method::POST, records(team_id), Some(json!({})), invalid),
        (
            Method::GET,
            format!("{}?limit=0", records(team_id)),
            None,
            invalid,
        ),
        (
            Method::GET,
            format!("{}/{record}", records(team_id)),
            None,
            missing,
        ),
        (
            Method::PUT,
            format!("{}/{record}", records(team_id)),
            Some(json!({"blob": "!"})),
            invalid,
        ),
        (
            Method::DELETE,
            format!("{}/{record}", records(team_id)),
            None,
            missing,
        ),
        (
            Method::GET,
            format!("/api/v1/teams/{team_id}/changes?since=garbage"),
            None,
            invalid,
        ),
        (
            Method::POST,
            format!("/api/v1/teams/{team_id}/uploads"),
            Some(json!({"size_bytes": -1})),
            invalid,
        ),
        (
            Method::POST,
            format!("/api/v1/teams/{team_id}/uploads/{upload}/commit"),
            None,
            missing,
        ),
    ]
}

async fn everyone_but_a_member_gets_404_on_every_route(backend: Backend) {
    let app = spawn_app(backend).await;
    let owner = app.register_user().await;
    let member = app.register_user().await;
    let outsider = app.register_user().await;
    let removed = app.register_user().await;
    let other_team_member = app.register_user().await;
    let team_id = team(
        &app,
        "active",
        &[
            (&owner.id, "owner"),
            (&member.id, "member"),
            (&removed.id, "member"),
        ],
    )
    .await;
    team(&app, "active", &[(&other_team_member.id, "owner")]).await;
    // The removed member wrote a record while they were in, and knows its id.
    let id = created(&app, &removed, &team_id, b"written-while-in").await;
    remove(&app, &team_id, &removed.id).await;
    let missing_team = uuid::Uuid::new_v4().to_string();

    let refused = [
        ("outsider", &outsider, team_id.as_str()),
        ("removed member", &removed, team_id.as_str()),
        (
            "member of another team",
            &other_team_member,
            team_id.as_str(),
        ),
        ("member, no such team", &member, missing_team.as_str()),
    ];
    for (who, user, team_id) in refused {
        for (method, path, body, _) in every_route(team_id) {
            let mut request = app
                .request(method.clone(), &path)
                .bearer_auth(&user.tokens.access_token)
                .header("if-match", "garbage");
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            assert_eq!(
                response.status(),
                StatusCode::NOT_FOUND,
                "{who}: {method} {path}"
            );
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["code"], "not_found", "{who}: {method} {path}");
        }
        // The record they know of, by its real id.
        let response = get(&app, user, &format!("{}/{id}", records(team_id))).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{who}");
    }
    // The same requests from a member are refused for what they hold, or do not find the
    // record or upload they name.
    for (method, path, body, expected) in every_route(&team_id) {
        let mut request = app
            .request(method.clone(), &path)
            .bearer_auth(&member.tokens.access_token)
            .header("if-match", "garbage");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let status = request.send().await.unwrap().status();
        assert_eq!(status, expected, "member: {method} {path}");
    }
    // Nothing the refused callers sent changed anything.
    let listed = list(&app, &member, &team_id).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
}

/// Starts the upload of a small record numbered `n`.
async fn start_numbered(app: &TestApp, user: &TestUser, team_id: &str, n: usize) -> Response {
    let bytes = format!("upload-{n}");
    let body = json!({"table": "notes", "size_bytes": bytes.len(), "checksum": sha(bytes.as_bytes()), "key_version": 1});
    start_upload(app, user, team_id, &body).await
}

async fn the_team_is_counted_as_a_whole(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.pro_user().await;
    let bob = app.register_user().await;
    let team_id = team(&app, "active", &[(&alice.id, "owner"), (&bob.id, "member")]).await;

    // Their records count on the team's usage row, not on either member's.
    created(&app, &alice, &team_id, &[1u8; 100]).await;
    created(&app, &bob, &team_id, &[2u8; 50]).await;
    let usage: (i64, i64) = adiuva_db::sqlx::query_as(
        "SELECT record_count, records_bytes FROM team_usage WHERE team_id = $1",
    )
    .bind(&team_id)
    .fetch_one(app.database.db.pool())
    .await
    .unwrap();
    assert_eq!(usage, (2, 150));
    assert_eq!(app.usage(&alice.id).await, (0, 0));
    assert_eq!(app.usage(&bob.id).await, (0, 0));
    // Bob pays for no tier, but his seat gives him the Team tier for his own storage too
    // (issue 21, item 5); what he stores for himself counts on his own row, not the team's.
    let own = app
        .create_record(&bob.tokens.access_token, "tasks", b"own")
        .await;
    assert_eq!(own.status(), StatusCode::CREATED);
    assert_eq!(
        app.usage(&bob.id).await,
        (3, 0),
        "his record's bytes, no backups"
    );
    let team_usage: (i64, i64) = adiuva_db::sqlx::query_as(
        "SELECT record_count, records_bytes FROM team_usage WHERE team_id = $1",
    )
    .bind(&team_id)
    .fetch_one(app.database.db.pool())
    .await
    .unwrap();
    assert_eq!(team_usage, (2, 150));

    // The team's open uploads are one allowance for both: 10 each, then the team is full.
    for n in 0..10 {
        let started = start_numbered(&app, &alice, &team_id, n).await;
        assert_eq!(started.status(), StatusCode::CREATED);
        let started = start_numbered(&app, &bob, &team_id, n + 10).await;
        assert_eq!(started.status(), StatusCode::CREATED);
    }
    for (user, n) in [(&bob, 20), (&alice, 21)] {
        let refused = start_numbered(&app, user, &team_id, n).await;
        error_body(refused, StatusCode::CONFLICT, "too_many_uploads").await;
    }
    // Alice's own uploads are her own allowance.
    let personal = app
        .request(Method::POST, "/api/v1/storage/uploads")
        .bearer_auth(&alice.tokens.access_token)
        .json(&json!({"purpose": "record", "table": "notes", "size_bytes": 3, "checksum": sha(b"own")}))
        .send()
        .await
        .unwrap();
    assert_eq!(personal.status(), StatusCode::CREATED);
}

async fn an_inactive_team_has_the_free_tiers_quotas(backend: Backend) {
    let app = spawn_app_with(backend, &[("QUOTA_UNIT_BYTES", "1000")]).await;
    // A Pro member of an unpaid team: the team's tier counts, not hers.
    let alice = app.pro_user().await;
    let team_id = team(&app, "none", &[(&alice.id, "owner")]).await;
    let refused = create(&app, &alice, &team_id, b"task", 1).await;
    error_body(refused, StatusCode::PAYMENT_REQUIRED, "quota_exceeded").await;
    let upload = start_upload(
        &app,
        &alice,
        &team_id,
        &json!({"table": "notes", "size_bytes": 4, "checksum": sha(b"task"), "key_version": 1}),
    )
    .await;
    error_body(upload, StatusCode::PAYMENT_REQUIRED, "quota_exceeded").await;
    // Reading still works.
    assert!(list(&app, &alice, &team_id).await.is_empty());

    // Paid: the Team tier, with no limit (beyond what her own Pro tier would allow: 5000 bytes).
    set_status(&app, &team_id, "active").await;
    let id = created(&app, &alice, &team_id, &[3u8; 6000]).await;

    // The subscription lapses: growth is refused, shrinking and deleting are not.
    set_status(&app, &team_id, "past_due").await;
    let grow = update(&app, &alice, &team_id, &id, &[3u8; 7000], 1, "\"1\"").await;
    error_body(grow, StatusCode::PAYMENT_REQUIRED, "quota_exceeded").await;
    let shrink = update(&app, &alice, &team_id, &id, &[3u8; 10], 1, "\"1\"").await;
    assert_eq!(shrink.status(), StatusCode::OK);
    let deleted = app
        .request(Method::DELETE, &format!("{}/{id}", records(&team_id)))
        .bearer_auth(&alice.tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    let refused = create(&app, &alice, &team_id, b"task", 1).await;
    error_body(refused, StatusCode::PAYMENT_REQUIRED, "quota_exceeded").await;
}

async fn records_stay_when_their_authors_account_goes(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.register_user().await;
    let bob = app.pro_user().await;
    let team_id = team(&app, "active", &[(&alice.id, "owner"), (&bob.id, "member")]).await;
    let id = created(&app, &bob, &team_id, b"bob-wrote-this").await;
    let own = app
        .record(&bob.tokens.access_token, "tasks", b"bobs-own")
        .await;

    let deleted = app
        .request(Method::DELETE, "/api/v1/auth/me")
        .bearer_auth(&bob.tokens.access_token)
        .json(&json!({"password": bob.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);

    // His own records and blobs are gone; the team's record he wrote stays, still his.
    assert!(keys(&app, &format!("{}/", bob.id)).await.is_empty());
    let left: i64 =
        adiuva_db::sqlx::query_scalar("SELECT COUNT(*) FROM storage_records WHERE id = $1")
            .bind(&own)
            .fetch_one(app.database.db.pool())
            .await
            .unwrap();
    assert_eq!(left, 0);
    let listed = list(&app, &alice, &team_id).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["author_id"], bob.id.as_str());
    let download = get(&app, &alice, &format!("{}/{id}", records(&team_id))).await;
    assert_eq!(download.status(), StatusCode::OK);
    assert_eq!(&download.bytes().await.unwrap()[..], b"bob-wrote-this");
    // And the purge of his blobs, which the janitor repeats until it succeeds, leaves them too.
    let storage: adiuva_storage::Storage = app.context.get().unwrap();
    storage.purge_user_blobs(&bob.id).await.unwrap();
    assert_eq!(keys(&app, &format!("teams/{team_id}/")).await.len(), 1);
}

async fn a_teams_cursor_opens_for_that_team_only(backend: Backend) {
    let app = spawn_app(backend).await;
    let alice = app.pro_user().await;
    let team_a = team(&app, "active", &[(&alice.id, "owner")]).await;
    let team_b = team(&app, "active", &[(&alice.id, "member")]).await;
    created(&app, &alice, &team_a, b"in-a").await;
    app.record(&alice.tokens.access_token, "tasks", b"own")
        .await;
    let cursor_a = changes(&app, &alice, &team_a, "0").await["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let own_cursor: Value = get(&app, &alice, "/api/v1/storage/changes?since=0")
        .await
        .json()
        .await
        .unwrap();
    let own_cursor = own_cursor["next_cursor"].as_str().unwrap().to_owned();
    assert_ne!(cursor_a, "0");

    // A's cursor works on A, not on B, not on her own storage; hers not on A.
    assert!(
        changes(&app, &alice, &team_a, &cursor_a).await["changes"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    for path in [
        format!("/api/v1/teams/{team_b}/changes?since={cursor_a}"),
        format!("/api/v1/storage/changes?since={cursor_a}"),
        format!("/api/v1/teams/{team_a}/changes?since={own_cursor}"),
    ] {
        error_body(
            get(&app, &alice, &path).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_cursor",
        )
        .await;
    }
}

async fn purging_a_team_space_leaves_everything_else(backend: Backend) {
    let app = spawn_app_with(backend, &[("ORPHAN_GRACE_MINUTES", "0")]).await;
    let alice = app.pro_user().await;
    let team_a = team(&app, "active", &[(&alice.id, "owner")]).await;
    let team_b = team(&app, "active", &[(&alice.id, "owner")]).await;
    let in_a = created(&app, &alice, &team_a, b"in-a").await;
    let deleted_in_a = created(&app, &alice, &team_a, b"deleted-in-a").await;
    app.request(
        Method::DELETE,
        &format!("{}/{deleted_in_a}", records(&team_a)),
    )
    .bearer_auth(&alice.tokens.access_token)
    .send()
    .await
    .unwrap();
    let ticket: Value = start_upload(
        &app,
        &alice,
        &team_a,
        &json!({"table": "notes", "size_bytes": 7, "checksum": sha(b"pending"), "key_version": 1}),
    )
    .await
    .json()
    .await
    .unwrap();
    upload(&app, &ticket, b"pending").await;
    let in_b = created(&app, &alice, &team_b, b"in-b").await;
    let own = app
        .record(&alice.tokens.access_token, "tasks", b"own")
        .await;

    // The janitor sweeps with no grace period: every team blob is referenced and stays.
    let storage: adiuva_storage::Storage = app.context.get().unwrap();
    let report = storage.sweep().await.unwrap();
    assert_eq!(report.orphans_deleted, 0, "{report:?}");

    let purged = storage.purge_team_space(&team_a).await.unwrap();
    assert_eq!(purged, 2, "the record's blob and the uploaded one");
    assert!(keys(&app, &format!("teams/{team_a}/")).await.is_empty());
    for table in [
        "team_records",
        "team_tombstones",
        "team_usage",
        "pending_uploads",
    ] {
        let left: i64 = adiuva_db::sqlx::query_scalar(adiuva_db::sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM {table} WHERE team_id = $1"
        )))
        .bind(&team_a)
        .fetch_one(app.database.db.pool())
        .await
        .unwrap();
        assert_eq!(left, 0, "{table}");
    }
    assert!(list(&app, &alice, &team_a).await.is_empty());
    assert!(
        changes(&app, &alice, &team_a, "0").await["changes"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let gone = get(&app, &alice, &format!("{}/{in_a}", records(&team_a))).await;
    error_body(gone, StatusCode::NOT_FOUND, "not_found").await;
    let commit = commit(&app, &alice, &team_a, ticket["upload_id"].as_str().unwrap()).await;
    error_body(commit, StatusCode::NOT_FOUND, "not_found").await;

    // Team B and Alice's own storage are untouched.
    let b = get(&app, &alice, &format!("{}/{in_b}", records(&team_b))).await;
    assert_eq!(&b.bytes().await.unwrap()[..], b"in-b");
    let mine = app.get_record(&alice.tokens.access_token, &own).await;
    assert_eq!(&mine.bytes().await.unwrap()[..], b"own");
    assert_eq!(keys(&app, &format!("teams/{team_b}/")).await.len(), 1);
    assert_eq!(keys(&app, &format!("{}/", alice.id)).await.len(), 1);
}

async fn a_teams_cursor_older_than_its_tombstones_is_gone(backend: Backend) {
    // Retention 0: the next sweep removes every tombstone, a team's as a user's.
    let app = spawn_app_with(backend, &[("TOMBSTONE_RETENTION_DAYS", "0")]).await;
    let storage: adiuva_storage::Storage = app.context.get().unwrap();
    let alice = app.pro_user().await;
    let team_id = team(&app, "active", &[(&alice.id, "owner")]).await;
    let gone = created(&app, &alice, &team_id, b"gone").await;
    let kept = created(&app, &alice, &team_id, b"kept").await;
    let before = changes(&app, &alice, &team_id, "0").await["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    // Her own feed, with a cursor taken before any purge.
    let own = app
        .record(&alice.tokens.access_token, "tasks", b"own")
        .await;
    let own_feed: Value = get(&app, &alice, "/api/v1/storage/changes?since=0")
        .await
        .json()
        .await
        .unwrap();
    let own_cursor = own_feed["next_cursor"].as_str().unwrap().to_owned();

    let deleted = app
        .request(Method::DELETE, &format!("{}/{gone}", records(&team_id)))
        .bearer_auth(&alice.tokens.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), StatusCode::OK);
    assert_eq!(storage.sweep().await.unwrap().tombstones_purged, 1);

    // The team's cursor from before the deletion may have missed it: 410, sync again from 0.
    error_body(
        get(
            &app,
            &alice,
            &format!("/api/v1/teams/{team_id}/changes?since={before}"),
        )
        .await,
        StatusCode::GONE,
        "cursor_expired",
    )
    .await;
    let fresh = changes(&app, &alice, &team_id, "0").await;
    let live: Vec<&Value> = fresh["changes"].as_array().unwrap().iter().collect();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0]["id"], kept.as_str());
    // Her own horizon did not move: her cursor still works.
    let own_feed = get(
        &app,
        &alice,
        &format!("/api/v1/storage/changes?since={own_cursor}"),
    )
    .await;
    assert_eq!(own_feed.status(), StatusCode::OK);
    assert_eq!(
        app.get_record(&alice.tokens.access_token, &own)
            .await
            .status(),
        StatusCode::OK
    );
}
