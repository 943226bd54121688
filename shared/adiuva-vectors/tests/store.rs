//! Behaviour of `VectorStore`, the same test bodies run against each backend:
//! - `embedded::*` always, each test on a fresh directory;
//! - `qdrant::*` with the `qdrant-tests` feature (`.ci/test-qdrant` runs them), against a real
//!   Qdrant server: the one `adiuva_vectors::testing` starts (`../shared/bin/qdrant`, or
//!   `QDRANT_BIN`), or the one at `QDRANT_URL` (with `QDRANT_API_KEY` if it wants one). Without
//!   either they fail and say how to provide one.
//!
//! Every test uses fresh random user ids and collections of its own.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use adiuva_config::Source;
use adiuva_vectors::{
    DERIVED_DIMENSIONS, DIMENSIONS, SearchHit, VectorError, VectorPoint, VectorSettings,
    VectorStore,
};

// ---------------------------------------------------------------------------------------------
// Harness

struct Backend {
    store: VectorStore,
    /// The embedded store knows how many points a delete removed; Qdrant does not say.
    counts_deletes: bool,
    /// Users to delete when the test ends (Qdrant keeps them otherwise).
    users: std::sync::Mutex<Vec<String>>,
    _dir: Option<TempDir>,
}

impl Backend {
    fn user(&self) -> String {
        let user = format!("user-{}", uuid::Uuid::new_v4());
        self.users.lock().unwrap().push(user.clone());
        user
    }

    async fn cleanup(&self) {
        let users = std::mem::take(&mut *self.users.lock().unwrap());
        for user in users {
            self.store.delete_user(&user).await.unwrap();
        }
    }
}

/// A directory removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("adiuva-vectors-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn from_pairs(pairs: &[(&str, &str)]) -> Result<VectorStore, VectorError> {
    let source = Source::from_pairs(pairs.iter().copied());
    VectorStore::from_settings(&VectorSettings::from_source(&source))
}

fn embedded_store(dir: &Path) -> VectorStore {
    let store = from_pairs(&[("ADIUVA_DATA_DIR", dir.to_str().unwrap())]).unwrap();
    assert!(matches!(store, VectorStore::Embedded(_)));
    store
}

fn embedded() -> Backend {
    let dir = TempDir::new();
    Backend {
        store: embedded_store(&dir.0),
        counts_deletes: true,
        users: Default::default(),
        _dir: Some(dir),
    }
}

#[cfg(feature = "qdrant-tests")]
async fn qdrant() -> Backend {
    let mut settings = adiuva_vectors::testing::qdrant_settings().await;
    settings.push((
        "QDRANT_API_KEY".to_owned(),
        std::env::var("QDRANT_API_KEY").unwrap_or_default(),
    ));
    let pairs: Vec<(&str, &str)> = settings
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    let store = from_pairs(&pairs).unwrap();
    assert!(matches!(store, VectorStore::Qdrant(_)));
    Backend {
        store,
        counts_deletes: false,
        users: Default::default(),
        _dir: None,
    }
}

macro_rules! shared_tests {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    let backend = super::embedded();
                    super::$name(&backend).await;
                    backend.cleanup().await;
                }
            )*
        }

        #[cfg(feature = "qdrant-tests")]
        mod qdrant {
            $(
                #[tokio::test]
                async fn $name() {
                    let backend = super::qdrant().await;
                    super::$name(&backend).await;
                    backend.cleanup().await;
                }
            )*
        }
    };
}

shared_tests!(
    search_orders_by_cosine_similarity,
    top_k_bounds_the_results,
    upsert_replaces_by_id,
    users_never_see_or_delete_each_others_points,
    every_supported_size_is_stored_and_searched,
    dimension_mismatch_within_a_call_writes_nothing,
    unsupported_non_finite_and_empty_vectors_are_rejected,
    delete_removes_only_the_given_ids,
    delete_user_removes_every_point_and_frees_the_dimension,
    concurrent_upserts_of_one_user_all_land,
    derived_vectors_find_their_own_blob,
);

/// The size most tests use; [`WIDE`] is another supported one.
const SIZE: usize = DERIVED_DIMENSIONS;
const WIDE: usize = 256;

/// `values`, then zeros up to `dimensions`: cosine similarities are those of `values`.
fn padded(values: &[f32], dimensions: usize) -> Vec<f32> {
    let mut vector = values.to_vec();
    vector.resize(dimensions, 0.0);
    vector
}

/// A query of [`SIZE`] dimensions starting with `values`.
fn q(values: &[f32]) -> Vec<f32> {
    padded(values, SIZE)
}

fn point_of(id: &str, vector: Vec<f32>) -> VectorPoint {
    VectorPoint {
        id: id.to_owned(),
        vector,
        blob: format!("blob of {id}").into_bytes(),
    }
}

/// A point of [`SIZE`] dimensions starting with `values`.
fn point(id: &str, values: &[f32]) -> VectorPoint {
    point_of(id, q(values))
}

/// A point of [`WIDE`] dimensions starting with `values`.
fn wide(id: &str, values: &[f32]) -> VectorPoint {
    point_of(id, padded(values, WIDE))
}

fn ids(hits: &[SearchHit]) -> Vec<&str> {
    hits.iter().map(|hit| hit.id.as_str()).collect()
}

fn assert_close(got: f32, expected: f32) {
    assert!((got - expected).abs() < 1e-4, "{got} != {expected}");
}

fn assert_mismatch(result: Result<impl std::fmt::Debug, VectorError>, expected: usize, got: usize) {
    match result {
        Err(VectorError::DimensionMismatch {
            expected: e,
            got: g,
        }) if (e, g) == (expected, got) => {}
        other => panic!("expected DimensionMismatch {{ {expected}, {got} }}, got {other:?}"),
    }
}

/// A vector at `degrees` from [1, 0, 0, ...]: its cosine with that is cos(degrees).
fn at_angle(degrees: f32, length: f32) -> Vec<f32> {
    let radians = degrees.to_radians();
    q(&[length * radians.cos(), length * radians.sin()])
}

// ---------------------------------------------------------------------------------------------
// Shared behaviour

async fn search_orders_by_cosine_similarity(backend: &Backend) {
    let store = &backend.store;
    let user = backend.user();
    // Lengths differ on purpose: the order is by angle (cosine), not by dot product.
    let points = vec![
        point_of("opposite", at_angle(180.0, 1.0)),
        point_of("sixty", at_angle(60.0, 10.0)),
        point_of("same", at_angle(0.0, 0.5)),
        point_of("right-angle", at_angle(90.0, 3.0)),
        point_of("thirty", at_angle(-30.0, 2.0)),
    ];
    assert_eq!(store.upsert(&user, points).await.unwrap(), 5);

    let hits = store.search(&user, &q(&[2.0, 0.0]), 10).await.unwrap();
    assert_eq!(
        ids(&hits),
        ["same", "thirty", "sixty", "right-angle", "opposite"]
    );
    for (hit, expected) in hits.iter().zip([1.0, 0.866_025_4, 0.5, 0.0, -1.0]) {
        assert_close(hit.score, expected);
    }
    assert_eq!(hits[0].blob, b"blob of same", "blob returned verbatim");
}

async fn top_k_bounds_the_results(backend: &Backend) {
    let store = &backend.store;
    let user = backend.user();
    let points = (0..5)
        .map(|i| point_of(&format!("p{i}"), at_angle(i as f32 * 20.0, 1.0)))
        .collect();
    store.upsert(&user, points).await.unwrap();

    let hits = store.search(&user, &q(&[1.0, 0.0]), 2).await.unwrap();
    assert_eq!(ids(&hits), ["p0", "p1"]);
    assert_eq!(
        store
            .search(&user, &q(&[1.0, 0.0]), 50)
            .await
            .unwrap()
            .len(),
        5
    );
    assert!(
        store
            .search(&user, &q(&[1.0, 0.0]), 0)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn upsert_replaces_by_id(backend: &Backend) {
    let store = &backend.store;
    let user = backend.user();
    store
        .upsert(
            &user,
            vec![point("a", &[1.0, 0.0]), point("b", &[0.0, 1.0])],
        )
        .await
        .unwrap();
    let replacement = VectorPoint {
        blob: b"new blob".to_vec(),
        ..point("a", &[0.0, -1.0])
    };
    assert_eq!(store.upsert(&user, vec![replacement]).await.unwrap(), 1);

    let hits = store.search(&user, &q(&[0.0, -1.0]), 10).await.unwrap();
    assert_eq!(ids(&hits), ["a", "b"], "still two points");
    assert_close(hits[0].score, 1.0);
    assert_eq!(hits[0].blob, b"new blob");

    // Within one call, the last point with an id wins.
    let twice = vec![
        point("c", &[1.0, 0.0]),
        VectorPoint {
            blob: b"second c".to_vec(),
            ..point("c", &[1.0, 1.0])
        },
    ];
    assert_eq!(store.upsert(&user, twice).await.unwrap(), 1);
    let hits = store.search(&user, &q(&[1.0, 1.0]), 1).await.unwrap();
    assert_eq!(
        (hits[0].id.as_str(), &hits[0].blob[..]),
        ("c", &b"second c"[..])
    );
    assert_eq!(
        store
            .search(&user, &q(&[1.0, 0.0]), 10)
            .await
            .unwrap()
            .len(),
        3
    );
}

async fn users_never_see_or_delete_each_others_points(backend: &Backend) {
    let store = &backend.store;
    let (alice, bob) = (backend.user(), backend.user());
    store
        .upsert(
            &alice,
            vec![
                point("shared-id", &[1.0, 0.0]),
                point("alice-only", &[0.9, 0.1]),
            ],
        )
        .await
        .unwrap();
    assert!(
        store
            .search(&bob, &q(&[1.0, 0.0]), 10)
            .await
            .unwrap()
            .is_empty(),
        "a user without points sees nothing"
    );

    let bobs = VectorPoint {
        blob: b"bob's".to_vec(),
        ..point("shared-id", &[1.0, 0.0])
    };
    store.upsert(&bob, vec![bobs]).await.unwrap();
    let hits = store.search(&bob, &q(&[1.0, 0.0]), 10).await.unwrap();
    assert_eq!(ids(&hits), ["shared-id"]);
    assert_eq!(hits[0].blob, b"bob's");

    let deleted = store
        .delete(
            &bob,
            SIZE,
            &["alice-only".to_owned(), "shared-id".to_owned()],
        )
        .await
        .unwrap();
    if backend.counts_deletes {
        assert_eq!(deleted, 1, "only bob's own shared-id");
    }
    assert!(
        store
            .search(&bob, &q(&[1.0, 0.0]), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let hits = store.search(&alice, &q(&[1.0, 0.0]), 10).await.unwrap();
    assert_eq!(ids(&hits), ["shared-id", "alice-only"]);
    assert_eq!(hits[0].blob, b"blob of shared-id");
}

async fn every_supported_size_is_stored_and_searched(backend: &Backend) {
    let store = &backend.store;
    for dimensions in DIMENSIONS {
        // One user per size: the API keeps one size per user.
        let user = backend.user();
        let points = vec![
            point_of("x", padded(&[1.0, 0.0], dimensions)),
            point_of("y", padded(&[0.0, 1.0], dimensions)),
        ];
        assert_eq!(store.upsert(&user, points).await.unwrap(), 2);
        let hits = store
            .search(&user, &padded(&[0.0, 1.0], dimensions), 10)
            .await
            .unwrap();
        assert_eq!(ids(&hits), ["y", "x"], "{dimensions}");
        assert_close(hits[0].score, 1.0);
        store
            .delete(&user, dimensions, &["y".to_owned()])
            .await
            .unwrap();
        let hits = store
            .search(&user, &padded(&[0.0, 1.0], dimensions), 10)
            .await
            .unwrap();
        assert_eq!(ids(&hits), ["x"], "{dimensions}");
    }
}

async fn dimension_mismatch_within_a_call_writes_nothing(backend: &Backend) {
    let store = &backend.store;
    let user = backend.user();
    let mixed = vec![point("narrow", &[1.0, 0.0]), wide("wide", &[1.0, 0.0])];
    assert_mismatch(store.upsert(&user, mixed).await, SIZE, WIDE);
    assert!(
        store
            .search(&user, &q(&[1.0, 0.0]), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // Also when the user already has points: the existing ones are untouched.
    store
        .upsert(&user, vec![point("a", &[1.0, 0.0])])
        .await
        .unwrap();
    let mixed = vec![
        VectorPoint {
            blob: b"changed".to_vec(),
            ..point("a", &[0.0, 1.0])
        },
        wide("wide", &[1.0, 0.0]),
    ];
    assert_mismatch(store.upsert(&user, mixed).await, SIZE, WIDE);
    let hits = store.search(&user, &q(&[1.0, 0.0]), 10).await.unwrap();
    assert_eq!(ids(&hits), ["a"]);
    assert_eq!(hits[0].blob, b"blob of a");
}

async fn unsupported_non_finite_and_empty_vectors_are_rejected(backend: &Backend) {
    let store = &backend.store;
    let user = backend.user();
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let result = store
            .upsert(
                &user,
                vec![point("ok", &[1.0, 0.0]), point("bad", &[bad, 0.0])],
            )
            .await;
        assert!(matches!(result, Err(VectorError::NotFinite)), "{result:?}");
        let result = store.search(&user, &q(&[bad, 1.0]), 5).await;
        assert!(matches!(result, Err(VectorError::NotFinite)), "{result:?}");
    }
    for size in [0, 2, 3, 31, 33, 4096] {
        let result = store
            .upsert(&user, vec![point_of("odd", vec![1.0; size])])
            .await;
        assert!(
            matches!(result, Err(VectorError::InvalidDimensions { got }) if got == size),
            "{result:?}"
        );
        let result = store.search(&user, &vec![1.0; size], 5).await;
        assert!(
            matches!(result, Err(VectorError::InvalidDimensions { got }) if got == size),
            "{result:?}"
        );
        let result = store.delete(&user, size, &["odd".to_owned()]).await;
        assert!(
            matches!(result, Err(VectorError::InvalidDimensions { got }) if got == size),
            "{result:?}"
        );
    }
    assert!(
        store
            .search(&user, &q(&[1.0, 0.0]), 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.upsert(&user, Vec::new()).await.unwrap(), 0);
}

async fn delete_removes_only_the_given_ids(backend: &Backend) {
    let store = &backend.store;
    let user = backend.user();
    store
        .upsert(
            &user,
            vec![
                point("a", &[1.0, 0.0]),
                point("b", &[0.0, 1.0]),
                point("c", &[1.0, 1.0]),
            ],
        )
        .await
        .unwrap();
    let deleted = store
        .delete(&user, SIZE, &["a".into(), "missing".into(), "a".into()])
        .await
        .unwrap();
    assert_eq!(deleted, if backend.counts_deletes { 1 } else { 2 });
    let hits = store.search(&user, &q(&[1.0, 0.0]), 10).await.unwrap();
    assert_eq!(ids(&hits), ["c", "b"]);
    assert_eq!(store.delete(&user, SIZE, &[]).await.unwrap(), 0);

    // Deleting every point leaves a user with no points, who searches and gets nothing.
    store
        .delete(&user, SIZE, &["b".into(), "c".into()])
        .await
        .unwrap();
    assert!(
        store
            .search(&user, &q(&[1.0, 0.0]), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn delete_user_removes_every_point_and_frees_the_dimension(backend: &Backend) {
    let store = &backend.store;
    let (user, other) = (backend.user(), backend.user());
    store
        .upsert(
            &user,
            vec![point("a", &[1.0, 0.0]), point("b", &[0.0, 1.0])],
        )
        .await
        .unwrap();
    store
        .upsert(&other, vec![point("a", &[1.0, 0.0])])
        .await
        .unwrap();

    store.delete_user(&user).await.unwrap();
    assert!(
        store
            .search(&user, &q(&[1.0, 0.0]), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(&store.search(&other, &q(&[1.0, 0.0]), 10).await.unwrap()),
        ["a"]
    );
    // Without points the user has no dimension yet.
    store
        .upsert(&user, vec![wide("x", &[1.0, 0.0, 0.0])])
        .await
        .unwrap();
    store.delete_user(&user).await.unwrap();
    store.delete_user(&user).await.unwrap();
}

async fn concurrent_upserts_of_one_user_all_land(backend: &Backend) {
    let user = backend.user();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = backend.store.clone();
            let user = user.clone();
            tokio::spawn(async move {
                store
                    .upsert(
                        &user,
                        vec![point_of(&format!("p{i}"), at_angle(i as f32, 1.0))],
                    )
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap(), 1);
    }
    let hits = backend
        .store
        .search(&user, &q(&[1.0, 0.0]), 100)
        .await
        .unwrap();
    assert_eq!(hits.len(), 16);
    assert_eq!(hits[0].id, "p0");
}

async fn derived_vectors_find_their_own_blob(backend: &Backend) {
    let store = &backend.store;
    let user = backend.user();
    let blobs: Vec<Vec<u8>> = (0..10)
        .map(|i| format!("ciphertext {i}").into_bytes())
        .collect();
    let points = blobs
        .iter()
        .enumerate()
        .map(|(i, blob)| VectorPoint {
            id: format!("r{i}"),
            vector: adiuva_vectors::derived_vector(blob),
            blob: blob.clone(),
        })
        .collect();
    store.upsert(&user, points).await.unwrap();
    let query = adiuva_vectors::derived_vector(&blobs[7]);
    let hits = store.search(&user, &query, 1).await.unwrap();
    assert_eq!(hits[0].id, "r7");
    assert_close(hits[0].score, 1.0);
    assert_eq!(hits[0].blob, blobs[7]);
}

// ---------------------------------------------------------------------------------------------
// Embedded only

#[tokio::test]
async fn embedded_points_persist_across_restarts() {
    let dir = TempDir::new();
    let store = embedded_store(&dir.0);
    store
        .upsert(
            "alice",
            vec![
                point("a", &[1.0, 0.0]),
                point("b", &[0.0, 1.0]),
                point("c", &[1.0, 1.0]),
            ],
        )
        .await
        .unwrap();
    store
        .upsert("bob", vec![wide("z", &[1.0, 0.0, 0.0])])
        .await
        .unwrap();
    store.delete("alice", SIZE, &["c".into()]).await.unwrap();
    drop(store);

    let store = embedded_store(&dir.0);
    let hits = store.search("alice", &q(&[1.0, 0.0]), 10).await.unwrap();
    assert_eq!(ids(&hits), ["a", "b"]);
    assert_eq!(hits[0].blob, b"blob of a");
    assert_close(hits[0].score, 1.0);
    // The dimension survives the restart too.
    assert_mismatch(
        store
            .upsert("alice", vec![wide("d", &[1.0, 0.0, 0.0])])
            .await,
        SIZE,
        WIDE,
    );
    assert_eq!(
        ids(&store
            .search("bob", &padded(&[0.0, 0.0, 1.0], WIDE), 10)
            .await
            .unwrap()),
        ["z"]
    );

    let files = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir.join("vectors"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    };
    assert_eq!(
        files(&dir.0).len(),
        2,
        "one file per user, no temporary files left"
    );
    assert!(files(&dir.0).iter().all(|name| !name.contains("alice")));

    store.delete_user("alice").await.unwrap();
    assert_eq!(files(&dir.0).len(), 1);
    drop(store);
    let store = embedded_store(&dir.0);
    assert!(
        store
            .search("alice", &q(&[1.0, 0.0]), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        ids(&store
            .search("bob", &padded(&[1.0, 0.0, 0.0], WIDE), 10)
            .await
            .unwrap()),
        ["z"]
    );
}

/// The embedded file of a user holds one size. The API never mixes sizes for a user (it keeps
/// each user's size); the store refuses to, rather than mixing them in one file.
#[tokio::test]
async fn embedded_store_holds_one_size_per_user() {
    let dir = TempDir::new();
    let store = embedded_store(&dir.0);
    store
        .upsert("alice", vec![point("narrow", &[1.0, 0.0])])
        .await
        .unwrap();
    assert_mismatch(
        store.upsert("alice", vec![wide("wide", &[1.0, 0.0])]).await,
        SIZE,
        WIDE,
    );
    assert_mismatch(
        store.search("alice", &padded(&[1.0, 0.0], WIDE), 5).await,
        SIZE,
        WIDE,
    );
    // A delete of another size finds nothing to delete.
    assert_eq!(
        store
            .delete("alice", WIDE, &["narrow".into()])
            .await
            .unwrap(),
        0
    );
    let hits = store.search("alice", &q(&[1.0, 0.0]), 10).await.unwrap();
    assert_eq!(ids(&hits), ["narrow"]);
    // Another user has a size of their own.
    store
        .upsert("bob", vec![wide("wide", &[1.0, 0.0])])
        .await
        .unwrap();
}

#[tokio::test]
async fn embedded_store_fails_cleanly_when_its_directory_breaks() {
    let dir = TempDir::new();
    let store = embedded_store(&dir.0);
    store
        .upsert("alice", vec![point("a", &[1.0, 0.0])])
        .await
        .unwrap();

    // A file where the vectors directory was: every later write fails.
    std::fs::remove_dir_all(dir.0.join("vectors")).unwrap();
    std::fs::write(dir.0.join("vectors"), b"not a directory").unwrap();
    let replace = vec![
        VectorPoint {
            blob: b"changed".to_vec(),
            ..point("a", &[0.0, 1.0])
        },
        point("b", &[1.0, 1.0]),
    ];
    let result = store.upsert("alice", replace).await;
    assert!(matches!(result, Err(VectorError::Failed(_))), "{result:?}");
    let result = store.delete("alice", SIZE, &["a".into()]).await;
    assert!(matches!(result, Err(VectorError::Failed(_))), "{result:?}");
    // What failed to reach the disk is not visible in memory either.
    let hits = store.search("alice", &q(&[1.0, 0.0]), 10).await.unwrap();
    assert_eq!(ids(&hits), ["a"]);
    assert_eq!(hits[0].blob, b"blob of a");

    // A user whose file cannot be read gets an error, not an empty account.
    let result = embedded_store(&dir.0)
        .search("alice", &q(&[1.0, 0.0]), 10)
        .await;
    assert!(matches!(result, Err(VectorError::Failed(_))), "{result:?}");
}

// ---------------------------------------------------------------------------------------------
// Qdrant only

/// Collections exist only for sizes that were written: a search or a delete of another size
/// creates none, a refused size creates none, and no request lists collections to find a user's
/// size (the caller names it).
#[cfg(feature = "qdrant-tests")]
#[tokio::test]
async fn qdrant_creates_a_collection_only_for_a_size_written() {
    let backend = qdrant().await;
    let VectorStore::Qdrant(qdrant) = &backend.store else {
        unreachable!("qdrant() builds a Qdrant store");
    };
    let store = &backend.store;
    let user = backend.user();
    assert!(qdrant.collection_sizes().await.unwrap().is_empty());

    let refused = store
        .upsert(&user, vec![point_of("odd", vec![1.0; 100])])
        .await;
    assert!(matches!(
        refused,
        Err(VectorError::InvalidDimensions { got: 100 })
    ));
    assert!(qdrant.collection_sizes().await.unwrap().is_empty());

    store
        .upsert(&user, vec![point("a", &[1.0, 0.0])])
        .await
        .unwrap();
    assert_eq!(qdrant.collection_sizes().await.unwrap(), [SIZE]);
    // Another size's collection does not exist: nothing there, nothing created.
    assert!(
        store
            .search(&user, &padded(&[1.0], WIDE), 5)
            .await
            .unwrap()
            .is_empty()
    );
    store.delete(&user, WIDE, &["a".into()]).await.unwrap();
    assert_eq!(qdrant.collection_sizes().await.unwrap(), [SIZE]);
    assert_eq!(
        ids(&store.search(&user, &q(&[1.0, 0.0]), 5).await.unwrap()),
        ["a"]
    );

    // A user with points of two sizes (which the API never makes) loses both to delete_user.
    store
        .upsert(&user, vec![wide("b", &[1.0, 0.0])])
        .await
        .unwrap();
    assert_eq!(qdrant.collection_sizes().await.unwrap(), [SIZE, WIDE]);
    store.delete_user(&user).await.unwrap();
    assert!(
        store
            .search(&user, &q(&[1.0, 0.0]), 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .search(&user, &padded(&[1.0], WIDE), 5)
            .await
            .unwrap()
            .is_empty()
    );
    backend.cleanup().await;
}

// ---------------------------------------------------------------------------------------------
// Qdrant, no server needed

#[tokio::test]
async fn unreachable_qdrant_is_unavailable_quickly() {
    let store = from_pairs(&[("QDRANT_URL", "http://127.0.0.1:1")]).unwrap();
    assert!(matches!(store, VectorStore::Qdrant(_)));
    let started = Instant::now();
    let result = store.upsert("alice", vec![point("a", &[1.0, 0.0])]).await;
    assert!(
        matches!(result, Err(VectorError::Unavailable(_))),
        "{result:?}"
    );
    let result = store.search("alice", &q(&[1.0, 0.0]), 5).await;
    assert!(
        matches!(result, Err(VectorError::Unavailable(_))),
        "{result:?}"
    );
    let result = store.delete("alice", SIZE, &["a".into()]).await;
    assert!(
        matches!(result, Err(VectorError::Unavailable(_))),
        "{result:?}"
    );
    let result = store.delete_user("alice").await;
    assert!(
        matches!(result, Err(VectorError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    // Validation happens before any network I/O.
    let result = store.upsert("alice", vec![point("a", &[f32::NAN])]).await;
    assert!(matches!(result, Err(VectorError::NotFinite)));
}

#[test]
fn an_invalid_qdrant_url_is_refused_at_start_up() {
    let result = from_pairs(&[("QDRANT_URL", "not a url")]);
    assert!(matches!(result, Err(VectorError::Failed(_))), "{result:?}");
}
