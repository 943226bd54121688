//! The vector store: derived and client vectors, ranking, bounds and errors, on Qdrant (the
//! PostgreSQL pairing) and on the embedded store (the SQLite pairing).

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::backend_tests;
use crate::harness::{Backend, b64, error_body, sha, spawn_app};

backend_tests!(
    derived_vectors_find_their_own_blob,
    client_vectors_rank_by_cosine,
    vector_requests_are_validated
);

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
    let points = [
        ("east", b"e".as_slice(), Some(vec![1.0, 0.0, 0.0])),
        ("north", b"n".as_slice(), Some(vec![0.0, 1.0, 0.0])),
        ("north-east", b"ne".as_slice(), Some(vec![0.7, 0.7, 0.0])),
    ];
    assert_eq!(
        app.upsert_vectors(token, &points).await.status(),
        StatusCode::OK
    );
    let ranked = app
        .search_ids(token, b"query", Some(vec![0.9, 0.2, 0.0]))
        .await;
    assert_eq!(ranked, ["east", "north-east", "north"]);
    // Replacing a point by id moves it.
    assert_eq!(
        app.upsert_vectors(token, &[("north", b"n2", Some(vec![1.0, 0.05, 0.0]))])
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        app.search_ids(token, b"query", Some(vec![1.0, 0.0, 0.0]))
            .await[..2],
        ["east", "north"]
    );
    // top_k bounds the answer.
    let top1: Value = app
        .search_vectors(token, b"q", Some(vec![1.0, 0.0, 0.0]), 1)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(top1["results"].as_array().unwrap().len(), 1);
    // This account's vectors have 3 dimensions now; derived ones have 32.
    let mixed = app.upsert_vectors(token, &[("derived", b"d", None)]).await;
    error_body(mixed, StatusCode::UNPROCESSABLE_ENTITY, "invalid_vector").await;
    let query = app
        .search_vectors(token, b"q", Some(vec![1.0, 0.0]), 3)
        .await;
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
