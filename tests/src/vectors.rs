//! The vector store: derived and client vectors, ranking, bounds and errors, the supported
//! sizes, each account's one size, the per-tier quotas and account deletion racing an upsert,
//! on Qdrant (the PostgreSQL pairing with the `qdrant` feature: `.ci/test-qdrant`) and on the
//! embedded store (the SQLite pairing, and the PostgreSQL one without the feature).

use adiuva_vectors::{VectorStore, derived_vector};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, TestApp, TestUser, VectorInput, b64, error_body, sha, spawn_app};

backend_tests!(
    derived_vectors_find_their_own_blob,
    client_vectors_rank_by_cosine,
    vector_requests_are_validated,
    unsupported_sizes_are_refused_and_store_nothing,
    each_account_keeps_one_size_until_its_last_point_is_deleted,
    the_point_quota_is_exact_and_deletes_give_it_back,
    the_byte_quota_is_exact_under_replacement_and_deletes_give_it_back,
    an_upsert_racing_account_deletion_leaves_no_point,
);

/// The sizes the API accepts, as its messages list them.
const SIZES: &str = "32, 256, 384, 512, 768, 1024, 1536, 3072";

/// `values`, then zeros up to `dimensions`: cosine similarities are those of `values`.
fn padded(values: &[f32], dimensions: usize) -> Vec<f32> {
    let mut vector = values.to_vec();
    vector.resize(dimensions, 0.0);
    vector
}

/// The user's row in `vector_spaces`: (dimensions, points, bytes).
async fn space_of(app: &TestApp, user_id: &str) -> Option<(i64, i64, i64)> {
    adiuva_db::sqlx::query_as(
        "SELECT dimensions, points, bytes FROM vector_spaces WHERE user_id = $1",
    )
    .bind(user_id)
    .fetch_optional(app.database.db.pool())
    .await
    .unwrap()
}

/// The user's rows in `vector_points`.
async fn point_rows_of(app: &TestApp, user_id: &str) -> i64 {
    adiuva_db::sqlx::query_scalar("SELECT COUNT(*) FROM vector_points WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(app.database.db.pool())
        .await
        .unwrap()
}

/// What the store holds for the whole test: on Qdrant, the sizes that have a collection (each
/// test has collections of its own); embedded, the number of user files.
async fn store_footprint(app: &TestApp) -> Vec<usize> {
    match &app.backends.vectors {
        VectorStore::Qdrant(qdrant) => qdrant.collection_sizes().await.unwrap(),
        VectorStore::Embedded(_) => match std::fs::read_dir(app.data_dir.0.join("vectors")) {
            Ok(files) => vec![files.count()],
            Err(_) => vec![0],
        },
    }
}

async fn delete_vectors(app: &TestApp, token: &str, ids: &[&str]) -> Response {
    app.request(Method::DELETE, "/api/v1/storage/vectors")
        .bearer_auth(token)
        .json(&json!({"ids": ids}))
        .send()
        .await
        .unwrap()
}

async fn upsert_ok(app: &TestApp, token: &str, points: &[VectorInput<'_>]) -> Value {
    let response = app.upsert_vectors(token, points).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "{}",
        response.text().await.unwrap()
    );
    response.json().await.unwrap()
}

async fn derived_vectors_find_their_own_blob(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let token = &user.tokens.access_token;
    let upserted = app
        .upsert_vectors(
            token,
            &[
                ("note-1", b"cipher-one", None),
                ("note-2", b"cipher-two", None),
            ],
        )
        .await;
    assert_eq!(upserted.status(), StatusCode::OK);
    assert_eq!(
        upserted.json::<Value>().await.unwrap(),
        json!({"upserted": 2})
    );

    let response: Value = app
        .search_vectors(token, b"cipher-one", None, 5)
        .await
        .json()
        .await
        .unwrap();
    let best = &response["results"][0];
    assert_eq!(best["id"], "note-1");
    assert!(
        (best["score"].as_f64().unwrap() - 1.0).abs() < 1e-4,
        "{best}"
    );
    assert_eq!(
        best["blob"],
        b64(b"cipher-one").as_str(),
        "blobs come back verbatim"
    );

    let delete = json!({"ids": ["note-2", "never-existed"]});
    let deleted = app
        .request(Method::DELETE, "/api/v1/storage/vectors")
        .bearer_auth(token)
        .json(&delete)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.json::<Value>().await.unwrap(), json!({"ok": true}));
    assert_eq!(app.search_ids(token, b"cipher-two", None).await, ["note-1"]);
}

async fn client_vectors_rank_by_cosine(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let token = &user.tokens.access_token;
    // 256 dimensions, of which the first three carry the direction.
    let v = |values: &[f32]| Some(padded(values, 256));
    let points = [
        ("east", b"e".as_slice(), v(&[1.0, 0.0, 0.0])),
        ("north", b"n".as_slice(), v(&[0.0, 1.0, 0.0])),
        ("north-east", b"ne".as_slice(), v(&[0.7, 0.7, 0.0])),
    ];
    assert_eq!(
        app.upsert_vectors(token, &points).await.status(),
        StatusCode::OK
    );
    let ranked = app.search_ids(token, b"query", v(&[0.9, 0.2, 0.0])).await;
    assert_eq!(ranked, ["east", "north-east", "north"]);
    // Replacing a point by id moves it.
    assert_eq!(
        app.upsert_vectors(token, &[("north", b"n2", v(&[1.0, 0.05, 0.0]))])
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.search_ids(token, b"query", v(&[1.0, 0.0, 0.0])).await[..2],
        ["east", "north"]
    );
    // top_k bounds the answer.
    let top1: Value = app
        .search_vectors(token, b"q", v(&[1.0, 0.0, 0.0]), 1)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(top1["results"].as_array().unwrap().len(), 1);
    // This account's vectors have 256 dimensions now; derived ones have 32.
    let mixed = app.upsert_vectors(token, &[("derived", b"d", None)]).await;
    error_body(mixed, StatusCode::UNPROCESSABLE_ENTITY, "invalid_vector").await;
    let query = app.search_vectors(token, b"q", None, 3).await;
    error_body(query, StatusCode::UNPROCESSABLE_ENTITY, "invalid_vector").await;
}

async fn vector_requests_are_validated(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let token = &user.tokens.access_token;
    let post = |path: &'static str, body: Value| {
        app.request(Method::POST, path)
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let upsert = "/api/v1/storage/vectors/upsert";
    let item = |checksum: String| json!({"id": "a", "blob": b64(b"blob"), "checksum": checksum});
    error_body(
        post(upsert, json!({"vectors": [item(sha(b"other"))]}))
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "checksum_mismatch",
    )
    .await;
    error_body(
        post(upsert, json!({"vectors": [item("xyz".into())]}))
            .await
            .unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_checksum",
    )
    .await;
    error_body(
        post(upsert, json!({"vectors": []})).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    let empty_id = json!({"vectors": [{"id": "", "blob": b64(b"blob"), "checksum": sha(b"blob")}]});
    error_body(
        post(upsert, empty_id).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    let empty_vector = json!({"vectors": [{"id": "a", "blob": b64(b"blob"), "checksum": sha(b"blob"), "vector": []}]});
    error_body(
        post(upsert, empty_vector).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    let not_base64 = json!({"vectors": [{"id": "a", "blob": "*", "checksum": sha(b"blob")}]});
    error_body(
        post(upsert, not_base64).await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_error",
    )
    .await;
    for top_k in [0, 101] {
        let search = post(
            "/api/v1/storage/vectors/search",
            json!({"query_blob": b64(b"q"), "top_k": top_k}),
        );
        error_body(
            search.await.unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        )
        .await;
    }
    // Nothing was stored by any of that.
    assert!(app.search_ids(token, b"blob", None).await.is_empty());
}

async fn unsupported_sizes_are_refused_and_store_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let token = &user.tokens.access_token;
    let nothing = store_footprint(&app).await;

    for size in [1, 3, 31, 33, 100, 1000, 4096] {
        let body = error_body(
            app.upsert_vectors(token, &[("odd", b"blob", Some(vec![0.5; size]))])
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        )
        .await;
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains(&format!("{size} dimensions")) && detail.ends_with(SIZES),
            "{detail}"
        );
        // With a supported size beside it, the whole request is refused.
        error_body(
            app.upsert_vectors(
                token,
                &[
                    ("fine", b"blob", Some(vec![0.5; 256])),
                    ("odd", b"blob", Some(vec![0.5; size])),
                ],
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        )
        .await;
        let body = error_body(
            app.search_vectors(token, b"q", Some(vec![0.5; size]), 5)
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
        )
        .await;
        assert!(body["detail"].as_str().unwrap().ends_with(SIZES));
    }
    // No collection (Qdrant), no file (embedded), no bookkeeping.
    assert_eq!(store_footprint(&app).await, nothing);
    assert_eq!(space_of(&app, &user.id).await, None);
    assert_eq!(point_rows_of(&app, &user.id).await, 0);

    // Every supported size works, one per account; each makes at most its own collection.
    for size in [32, 256, 384, 512, 768, 1024, 1536, 3072] {
        let other = app.register_user().await;
        let token = &other.tokens.access_token;
        upsert_ok(&app, token, &[("p", b"blob", Some(padded(&[1.0], size)))]).await;
        assert_eq!(
            app.search_ids(token, b"q", Some(padded(&[1.0], size)))
                .await,
            ["p"]
        );
        assert_eq!(space_of(&app, &other.id).await, Some((size as i64, 1, 4)));
    }
    if let VectorStore::Qdrant(qdrant) = &app.backends.vectors {
        assert_eq!(
            qdrant.collection_sizes().await.unwrap(),
            [32, 256, 384, 512, 768, 1024, 1536, 3072],
            "one collection per supported size, none for the refused ones"
        );
    }
}

async fn each_account_keeps_one_size_until_its_last_point_is_deleted(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let token = &user.tokens.access_token;
    let wide = |values: &[f32]| Some(padded(values, 768));

    // No points yet: no size, and a search of any supported size finds nothing.
    assert!(app.search_ids(token, b"q", None).await.is_empty());
    assert!(app.search_ids(token, b"q", wide(&[1.0])).await.is_empty());

    upsert_ok(
        &app,
        token,
        &[
            ("a", b"aaaa", wide(&[1.0, 0.0])),
            ("b", b"bb", wide(&[0.0, 1.0])),
        ],
    )
    .await;
    assert_eq!(space_of(&app, &user.id).await, Some((768, 2, 6)));

    // Another size is refused, for writes and for queries, and nothing changes.
    let body = error_body(
        app.upsert_vectors(token, &[("c", b"c", None)]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_vector",
    )
    .await;
    assert!(body["detail"].as_str().unwrap().contains("768"), "{body}");
    error_body(
        app.upsert_vectors(token, &[("a", b"a", Some(padded(&[1.0], 1536)))])
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_vector",
    )
    .await;
    error_body(
        app.search_vectors(token, b"q", None, 5).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_vector",
    )
    .await;
    assert_eq!(space_of(&app, &user.id).await, Some((768, 2, 6)));
    assert_eq!(
        app.search_ids(token, b"q", wide(&[1.0, 0.1])).await,
        ["a", "b"]
    );

    // The size is per account: someone else uses derived vectors meanwhile.
    let other = app.register_user().await;
    upsert_ok(&app, &other.tokens.access_token, &[("a", b"derived", None)]).await;
    assert_eq!(space_of(&app, &other.id).await, Some((32, 1, 7)));

    // Deleting some points keeps the size; deleting the last one frees it.
    assert_eq!(
        delete_vectors(&app, token, &["a", "never-existed"])
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(space_of(&app, &user.id).await, Some((768, 1, 2)));
    error_body(
        app.upsert_vectors(token, &[("c", b"c", None)]).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_vector",
    )
    .await;
    assert_eq!(
        delete_vectors(&app, token, &["b"]).await.status(),
        StatusCode::OK
    );
    assert_eq!(space_of(&app, &user.id).await, None);
    assert_eq!(point_rows_of(&app, &user.id).await, 0);
    assert!(app.search_ids(token, b"q", None).await.is_empty());
    assert!(app.search_ids(token, b"q", wide(&[1.0])).await.is_empty());

    // Free again: the next upsert sets a new size.
    upsert_ok(&app, token, &[("c", b"cipher-c", None)]).await;
    assert_eq!(space_of(&app, &user.id).await, Some((32, 1, 8)));
    assert_eq!(app.search_ids(token, b"cipher-c", None).await, ["c"]);
    error_body(
        app.search_vectors(token, b"q", wide(&[1.0]), 5).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_vector",
    )
    .await;
    // The other account was never affected.
    assert_eq!(
        app.search_ids(&other.tokens.access_token, b"derived", None)
            .await,
        ["a"]
    );
}

/// 1,000 points on the free tier.
const FREE_POINTS: usize = 1000;

async fn the_point_quota_is_exact_and_deletes_give_it_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let token = &user.tokens.access_token;
    let ids: Vec<String> = (0..FREE_POINTS).map(|i| format!("p{i}")).collect();
    let blobs: Vec<Vec<u8>> = (0..FREE_POINTS)
        .map(|i| format!("blob {i}").into_bytes())
        .collect();
    let points: Vec<VectorInput> = ids
        .iter()
        .zip(&blobs)
        .map(|(id, blob)| (id.as_str(), blob.as_slice(), None))
        .collect();
    for chunk in points.chunks(500) {
        upsert_ok(&app, token, chunk).await;
    }
    let (_, count, bytes) = space_of(&app, &user.id).await.unwrap();
    assert_eq!(count, FREE_POINTS as i64);

    // Full: one new point more is 402, even beside replacements, and nothing is written.
    let body = error_body(
        app.upsert_vectors(token, &[("p0", b"changed", None), ("new", b"new", None)])
            .await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("1000 points"),
        "{body}"
    );
    assert_eq!(space_of(&app, &user.id).await, Some((32, count, bytes)));
    assert_eq!(app.search_ids(token, b"blob 0", None).await[0], "p0");
    let hits: Value = app
        .search_vectors(token, b"blob 0", None, 1)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        hits["results"][0]["blob"],
        b64(b"blob 0").as_str(),
        "p0 unchanged"
    );
    assert!(
        !app.search_ids(token, b"new", None)
            .await
            .contains(&"new".to_owned()),
        "the new point was not stored"
    );

    // Replacing points adds none: exact, not "+1 per point sent". Repeated ids count once.
    let replaced = upsert_ok(
        &app,
        token,
        &[
            ("p1", b"changed 1", None),
            ("p2", b"changed 2", None),
            ("p2", b"changed 2 again", None),
        ],
    )
    .await;
    assert_eq!(replaced, json!({"upserted": 2}));
    let grown = bytes + ("changed 1".len() + "changed 2 again".len()) as i64
        - (blobs[1].len() + blobs[2].len()) as i64;
    assert_eq!(space_of(&app, &user.id).await, Some((32, count, grown)));

    // A delete gives a point back (ids that do not exist give nothing).
    assert_eq!(
        delete_vectors(&app, token, &["p999", "never-existed"])
            .await
            .status(),
        StatusCode::OK
    );
    upsert_ok(
        &app,
        token,
        &[("new", b"new", None), ("new", b"newer", None)],
    )
    .await;
    error_body(
        app.upsert_vectors(token, &[("newer", b"newer", None)])
            .await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;

    // The allowance follows the live tier.
    app.set_subscription(&user.id, "pro", "active").await;
    upsert_ok(&app, token, &[("newer", b"newer", None)]).await;
    let (_, count, _) = space_of(&app, &user.id).await.unwrap();
    assert_eq!(count, FREE_POINTS as i64 + 1);
    assert_eq!(point_rows_of(&app, &user.id).await, count);
}

/// 10 MiB of blobs on the free tier, as 40 points of 256 KiB (the largest blob).
const BIG_BLOB: usize = 256 * 1024;
const BIG_POINTS: usize = 40;

async fn the_byte_quota_is_exact_under_replacement_and_deletes_give_it_back(backend: Backend) {
    let app = spawn_app(backend).await;
    let user = app.register_user().await;
    let token = &user.tokens.access_token;
    let full = (BIG_POINTS * BIG_BLOB) as i64;
    let ids: Vec<String> = (0..BIG_POINTS).map(|i| format!("big{i}")).collect();
    let blobs: Vec<Vec<u8>> = (0..BIG_POINTS).map(|i| vec![i as u8; BIG_BLOB]).collect();
    let points: Vec<VectorInput> = ids
        .iter()
        .zip(&blobs)
        .map(|(id, blob)| (id.as_str(), blob.as_slice(), None))
        .collect();
    // 10 per request keeps each body under MAX_BODY_BYTES (4 MiB) with base64.
    for chunk in points.chunks(10) {
        upsert_ok(&app, token, chunk).await;
    }
    assert_eq!(
        space_of(&app, &user.id).await,
        Some((32, BIG_POINTS as i64, full))
    );

    // Full to the byte: one more byte is 402 and nothing is written.
    let body = error_body(
        app.upsert_vectors(token, &[("one-byte", b"x", None)]).await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    assert!(
        body["detail"].as_str().unwrap().contains("10485760 bytes"),
        "{body}"
    );
    assert_eq!(
        space_of(&app, &user.id).await,
        Some((32, BIG_POINTS as i64, full))
    );
    assert!(
        !app.search_ids(token, b"x", None)
            .await
            .contains(&"one-byte".to_owned())
    );

    // Replacing a blob by one of the same size passes; growing by one byte does not, also
    // when a replacement in the same request shrinks (by one byte, while the new point adds
    // two).
    let same = vec![200u8; BIG_BLOB];
    upsert_ok(&app, token, &[("big0", &same, None)]).await;
    let shrunk = vec![202u8; BIG_BLOB - 1];
    let grown = vec![203u8; 2];
    error_body(
        app.upsert_vectors(token, &[("big1", &shrunk, None), ("small", &grown, None)])
            .await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    assert_eq!(
        space_of(&app, &user.id).await,
        Some((32, BIG_POINTS as i64, full))
    );
    // Shrinking one and adding exactly what it freed lands on the limit again.
    let one = vec![204u8; 1];
    upsert_ok(
        &app,
        token,
        &[("big1", &shrunk, None), ("small", &one, None)],
    )
    .await;
    assert_eq!(
        space_of(&app, &user.id).await,
        Some((32, BIG_POINTS as i64 + 1, full))
    );
    let hits: Value = app
        .search_vectors(token, &same, None, 1)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(hits["results"][0]["id"], "big0");
    assert_eq!(hits["results"][0]["blob"], b64(&same).as_str());

    // Deleting gives the bytes back, exactly.
    assert_eq!(
        delete_vectors(&app, token, &["big2"]).await.status(),
        StatusCode::OK
    );
    let freed = vec![205u8; BIG_BLOB];
    upsert_ok(&app, token, &[("big2-again", &freed, None)]).await;
    error_body(
        app.upsert_vectors(token, &[("one-byte", b"x", None)]).await,
        StatusCode::PAYMENT_REQUIRED,
        "quota_exceeded",
    )
    .await;
    assert_eq!(
        space_of(&app, &user.id).await,
        Some((32, BIG_POINTS as i64 + 1, full))
    );
}

/// An upsert and the deletion of the account, sent together: whichever wins, no point of the
/// account is left in the store once the deletion (and its purge) has answered. The upsert is
/// large enough (500 points) that, without the lock, it would still be writing after the purge.
async fn an_upsert_racing_account_deletion_leaves_no_point(backend: Backend) {
    let app = spawn_app(backend).await;
    let ids: Vec<String> = (0..500).map(|i| format!("raced-{i}")).collect();
    let points: Vec<VectorInput> = ids
        .iter()
        .map(|id| (id.as_str(), b"raced".as_slice(), None))
        .collect();
    let mut outcomes = Vec::new();
    for round in 0..16u64 {
        let user: TestUser = app.register_user().await;
        let token = &user.tokens.access_token;
        // Head starts of 0 to 21 ms, for either side, give the race different winners (an
        // upsert of 500 points takes some 20 ms to reach the database in a debug build).
        let head_start = std::time::Duration::from_millis((round / 2) * 3);
        let (upsert_delay, deletion_delay) = if round % 2 == 0 {
            (head_start, std::time::Duration::ZERO)
        } else {
            (std::time::Duration::ZERO, head_start)
        };
        let upsert = async {
            tokio::time::sleep(upsert_delay).await;
            app.upsert_vectors(token, &points).await
        };
        let deletion = async {
            tokio::time::sleep(deletion_delay).await;
            app.request(Method::DELETE, "/api/v1/auth/me")
                .bearer_auth(token)
                .json(&json!({"password": user.password}))
                .send()
                .await
        };
        let (upserted, deleted) = tokio::join!(upsert, deletion);
        assert_eq!(deleted.unwrap().status(), StatusCode::OK, "round {round}");
        let status = upserted.status();
        assert!(
            status == StatusCode::OK || status == StatusCode::UNAUTHORIZED,
            "round {round}: {status} {}",
            upserted.text().await.unwrap()
        );
        outcomes.push(status);

        let left = app
            .backends
            .vectors
            .search(&user.id, &derived_vector(b"raced"), 10)
            .await
            .unwrap();
        assert!(
            left.is_empty(),
            "round {round}: {} points outlived the account (upsert answered {status})",
            left.len()
        );
        assert_eq!(space_of(&app, &user.id).await, None);
        assert_eq!(point_rows_of(&app, &user.id).await, 0);
    }
    eprintln!("{backend:?}: upserts answered {outcomes:?}");
}
