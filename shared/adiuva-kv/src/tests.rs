//! The same behaviour tests on both backends: DynamoDB on a moto_server on loopback, and memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;

use crate::dynamo::{EXPIRES_AT, PK, SK, VALUE};
use adiuva_config::Source;

use crate::{Counted, KvError, KvSettings, KvStore, MemoryStore, now_epoch_secs, testing};

async fn memory() -> KvStore {
    KvStore::Memory(MemoryStore::new())
}

async fn dynamo() -> KvStore {
    testing::dynamo_store(&[]).await
}

/// Runs each `async fn name(store: KvStore)` once per backend, as `memory::name` and
/// `dynamo::name`.
macro_rules! kv_tests {
    ($($name:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::memory().await).await
                }
            )+
        }
        mod dynamo {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::dynamo().await).await
                }
            )+
        }
    };
}

kv_tests!(
    put_get_overwrite_delete,
    take_gives_a_value_to_exactly_one_taker,
    list_is_one_namespace_sorted_by_key,
    put_if_absent_lets_exactly_one_concurrent_writer_win,
    expired_values_are_invisible,
    counters_stop_at_their_maximum,
    concurrent_increments_let_exactly_the_room_through,
    expired_counters_start_again,
    decrements_give_back_exactly_what_was_taken,
);

async fn decrements_give_back_exactly_what_was_taken(store: KvStore) {
    let ttl = Duration::from_secs(60);
    // Nothing to give back: no counter is created.
    assert!(!store.decrement("failures", "a").await.unwrap());
    assert_eq!(store.count("failures", "a").await.unwrap(), 0);
    for _ in 0..3 {
        store.increment("failures", "a", 3, ttl).await.unwrap();
    }
    assert_eq!(
        store.increment("failures", "a", 3, ttl).await.unwrap(),
        Counted::Full(3)
    );
    // A unit given back makes room for exactly one more.
    assert!(store.decrement("failures", "a").await.unwrap());
    assert_eq!(store.count("failures", "a").await.unwrap(), 2);
    assert_eq!(
        store.increment("failures", "a", 3, ttl).await.unwrap(),
        Counted::Added(3)
    );
    // Concurrent give-backs never take the counter below zero.
    let releases = (0..6).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.decrement("failures", "a").await.unwrap() })
    });
    let mut lowered = 0;
    for release in releases {
        lowered += u64::from(release.await.unwrap());
    }
    assert_eq!(lowered, 3);
    assert_eq!(store.count("failures", "a").await.unwrap(), 0);
    assert!(!store.decrement("failures", "a").await.unwrap());
    // Other keys are untouched.
    store.increment("failures", "b", 3, ttl).await.unwrap();
    assert!(store.decrement("failures", "a").await.is_ok());
    assert_eq!(store.count("failures", "b").await.unwrap(), 1);
}

async fn counters_stop_at_their_maximum(store: KvStore) {
    let ttl = Duration::from_secs(60);
    assert_eq!(store.count("rate", "u1").await.unwrap(), 0);
    for expected in 1..=3 {
        assert_eq!(
            store.increment("rate", "u1", 3, ttl).await.unwrap(),
            Counted::Added(expected)
        );
    }
    assert_eq!(
        store.increment("rate", "u1", 3, ttl).await.unwrap(),
        Counted::Full(3)
    );
    assert_eq!(store.count("rate", "u1").await.unwrap(), 3);
    // A higher maximum (a tier upgrade) has room again at once; other keys are untouched.
    assert_eq!(
        store.increment("rate", "u1", 5, ttl).await.unwrap(),
        Counted::Added(4)
    );
    assert_eq!(store.count("rate", "u2").await.unwrap(), 0);
    assert_eq!(
        store.increment("rate", "u2", 0, ttl).await.unwrap(),
        Counted::Full(0)
    );
}

async fn concurrent_increments_let_exactly_the_room_through(store: KvStore) {
    let ttl = Duration::from_secs(60);
    for _ in 0..10 {
        store.increment("rate", "busy", 20, ttl).await.unwrap();
    }
    let attempts = (0..30).map(|_| {
        let store = store.clone();
        tokio::spawn(async move { store.increment("rate", "busy", 20, ttl).await.unwrap() })
    });
    let mut added = 0;
    for attempt in attempts {
        if matches!(attempt.await.unwrap(), Counted::Added(_)) {
            added += 1;
        }
    }
    assert_eq!(added, 10);
    assert_eq!(store.count("rate", "busy").await.unwrap(), 20);
}

async fn expired_counters_start_again(store: KvStore) {
    match &store {
        KvStore::Memory(_) => {
            store
                .increment("rate", "old", 1, Duration::from_millis(100))
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        KvStore::Dynamo(dynamo) => {
            // A full counter whose TTL passed but that DynamoDB has not deleted yet.
            let past = (now_epoch_secs() - 60).to_string();
            dynamo
                .client()
                .put_item()
                .table_name(dynamo.table())
                .item(PK, AttributeValue::S("rate".to_owned()))
                .item(SK, AttributeValue::S("old".to_owned()))
                .item("count", AttributeValue::N("1".to_owned()))
                .item(EXPIRES_AT, AttributeValue::N(past))
                .send()
                .await
                .unwrap();
        }
    }
    assert_eq!(store.count("rate", "old").await.unwrap(), 0);
    assert_eq!(
        store
            .increment("rate", "old", 1, Duration::from_secs(60))
            .await
            .unwrap(),
        Counted::Added(1)
    );
}

async fn put_get_overwrite_delete(store: KvStore) {
    assert_eq!(store.get("plans", "a").await.unwrap(), None);
    store
        .put("plans", "a", &json!({"agent": "task_agent"}), None)
        .await
        .unwrap();
    assert_eq!(
        store.get("plans", "a").await.unwrap(),
        Some(json!({"agent": "task_agent"}))
    );
    // Same key in another namespace is another value.
    assert_eq!(store.get("other", "a").await.unwrap(), None);

    store
        .put("plans", "a", &json!(["replaced", 2]), None)
        .await
        .unwrap();
    assert_eq!(
        store.get("plans", "a").await.unwrap(),
        Some(json!(["replaced", 2]))
    );

    store.delete("plans", "a").await.unwrap();
    assert_eq!(store.get("plans", "a").await.unwrap(), None);
    // Deleting what is not there is fine.
    store.delete("plans", "a").await.unwrap();
    store.delete("never", "existed").await.unwrap();
}

async fn list_is_one_namespace_sorted_by_key(store: KvStore) {
    assert!(store.list("plans").await.unwrap().is_empty());
    for key in ["b", "c", "a", "B"] {
        store.put("plans", key, &json!(key), None).await.unwrap();
    }
    store.put("other", "z", &json!("z"), None).await.unwrap();
    let listed = store.list("plans").await.unwrap();
    assert_eq!(
        listed,
        [
            ("B".to_owned(), json!("B")),
            ("a".to_owned(), json!("a")),
            ("b".to_owned(), json!("b")),
            ("c".to_owned(), json!("c")),
        ]
    );
    assert_eq!(
        store.list("other").await.unwrap(),
        [("z".to_owned(), json!("z"))]
    );
}

async fn put_if_absent_lets_exactly_one_concurrent_writer_win(store: KvStore) {
    let writers: Vec<_> = (0..10)
        .map(|writer| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put_if_absent("locks", "once", &json!(writer), None)
                    .await
                    .unwrap()
                    .then_some(writer)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for writer in writers {
        winners.extend(writer.await.unwrap());
    }
    assert_eq!(winners.len(), 1, "winners: {winners:?}");
    assert_eq!(
        store.get("locks", "once").await.unwrap(),
        Some(json!(winners[0]))
    );
    // Later attempts lose too, and leave the winner's value alone.
    assert!(
        !store
            .put_if_absent("locks", "once", &json!("late"), None)
            .await
            .unwrap()
    );
    assert_eq!(
        store.get("locks", "once").await.unwrap(),
        Some(json!(winners[0]))
    );
}

async fn expired_values_are_invisible(store: KvStore) {
    store
        .put(
            "short",
            "live",
            &json!("live"),
            Some(Duration::from_secs(600)),
        )
        .await
        .unwrap();
    match &store {
        KvStore::Memory(_) => {
            store
                .put("short", "gone", &json!(1), Some(Duration::from_millis(150)))
                .await
                .unwrap();
            assert_eq!(store.get("short", "gone").await.unwrap(), Some(json!(1)));
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        KvStore::Dynamo(dynamo) => {
            // DynamoDB deletes expired items lazily (moto never does): write one whose TTL has
            // passed, as the table may hold it for days.
            let past = (now_epoch_secs() - 60).to_string();
            let item = HashMap::from([
                (PK.to_owned(), AttributeValue::S("short".to_owned())),
                (SK.to_owned(), AttributeValue::S("gone".to_owned())),
                (VALUE.to_owned(), AttributeValue::S("1".to_owned())),
                (EXPIRES_AT.to_owned(), AttributeValue::N(past)),
            ]);
            dynamo
                .client()
                .put_item()
                .table_name(dynamo.table())
                .set_item(Some(item))
                .send()
                .await
                .unwrap();
        }
    }
    assert_eq!(store.get("short", "gone").await.unwrap(), None);
    // Nor is it taken.
    assert_eq!(store.take("short", "gone").await.unwrap(), None);
    assert_eq!(
        store.list("short").await.unwrap(),
        [("live".to_owned(), json!("live"))]
    );
    // An expired value counts as absent for a conditional write.
    assert!(
        store
            .put_if_absent("short", "gone", &json!(2), None)
            .await
            .unwrap()
    );
    assert_eq!(store.get("short", "gone").await.unwrap(), Some(json!(2)));
}

#[tokio::test]
async fn an_unreachable_dynamodb_is_unavailable_quickly() {
    // A port nothing listens on: bind one, then free it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let values: HashMap<&str, &str> = HashMap::from([
        ("DYNAMODB_TABLE", "unreachable"),
        ("DYNAMODB_ENDPOINT_URL", endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ]);
    let store = store_of(values);
    assert!(matches!(store, KvStore::Dynamo(_)));

    let started = Instant::now();
    let err = store.get("plans", "a").await.unwrap_err();
    assert!(matches!(err, KvError::Unavailable(_)), "{err:?}");
    let err = store
        .put_if_absent("plans", "a", &json!(1), None)
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    let err = store
        .increment("rate", "a", 5, Duration::from_secs(60))
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

fn store_of<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> KvStore {
    KvStore::from_settings(&KvSettings::from_source(&Source::from_pairs(pairs))).unwrap()
}

#[test]
fn memory_is_the_default_and_dynamo_needs_credentials() {
    assert!(matches!(store_of([]), KvStore::Memory(_)));
    let settings = KvSettings::from_source(&Source::from_pairs([("DYNAMODB_TABLE", "table")]));
    assert!(matches!(
        KvStore::from_settings(&settings),
        Err(KvError::Failed(_))
    ));
}

async fn take_gives_a_value_to_exactly_one_taker(store: KvStore) {
    assert_eq!(store.take("states", "none").await.unwrap(), None);
    store
        .put(
            "states",
            "a",
            &json!({"nonce": "n"}),
            Some(Duration::from_secs(60)),
        )
        .await
        .unwrap();
    let takers: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.take("states", "a").await.unwrap() })
        })
        .collect();
    let mut taken = Vec::new();
    for taker in takers {
        taken.extend(taker.await.unwrap());
    }
    assert_eq!(taken, vec![json!({"nonce": "n"})]);
    assert_eq!(store.get("states", "a").await.unwrap(), None);
}
