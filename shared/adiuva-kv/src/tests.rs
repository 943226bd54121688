//! The same behaviour tests on both backends: DynamoDB on a moto_server on loopback, and memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use serde_json::json;

use crate::dynamo::{EXPIRES_AT, PK, SK, VALUE};
use crate::{KvError, KvStore, MemoryStore, now_epoch_secs, testing};

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
    list_is_one_namespace_sorted_by_key,
    put_if_absent_lets_exactly_one_concurrent_writer_win,
    expired_values_are_invisible,
);

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
    let config =
        adiuva_config::Config::from_lookup(|key| values.get(key).map(|v| (*v).to_owned())).unwrap();
    let store = KvStore::from_config(&config).unwrap();
    assert!(matches!(store, KvStore::Dynamo(_)));

    let started = Instant::now();
    let err = store.get("plans", "a").await.unwrap_err();
    assert!(matches!(err, KvError::Unavailable(_)), "{err:?}");
    let err = store
        .put_if_absent("plans", "a", &json!(1), None)
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn memory_is_the_default_and_dynamo_needs_credentials() {
    let config = adiuva_config::Config::from_lookup(|_| None).unwrap();
    assert!(matches!(
        KvStore::from_config(&config).unwrap(),
        KvStore::Memory(_)
    ));
    let config = adiuva_config::Config::from_lookup(|key| {
        (key == "DYNAMODB_TABLE").then(|| "table".to_owned())
    })
    .unwrap();
    assert!(matches!(
        KvStore::from_config(&config),
        Err(KvError::Failed(_))
    ));
}
