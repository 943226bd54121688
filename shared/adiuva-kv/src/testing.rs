//! Test support (cargo feature `testing`): a fresh DynamoDB table per test on the moto_server
//! that adiuva-blob's tests already start (one server per test process, serving every AWS
//! service), so tests share the server but not their data.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    TimeToLiveSpecification,
};

use crate::dynamo::{EXPIRES_AT, PK, SK};
use adiuva_config::Source;

use crate::{DynamoStore, KvSettings, KvStore};

/// Environment-style settings naming a fresh table on the moto server, which is created (with
/// the production key schema and TTL attribute) before this returns: `DYNAMODB_TABLE`,
/// `DYNAMODB_ENDPOINT_URL`, `AWS_REGION` and dummy credentials. Merge them into a test's own
/// settings; they do not touch S3's.
pub async fn dynamo_settings() -> Vec<(String, String)> {
    static TABLES: AtomicU64 = AtomicU64::new(0);
    let server = adiuva_blob::testing::moto().await;
    let table = format!(
        "adiuva-test-{}-{}",
        std::process::id(),
        TABLES.fetch_add(1, Ordering::Relaxed)
    );
    let settings: Vec<(String, String)> = [
        ("DYNAMODB_TABLE", table.as_str()),
        ("DYNAMODB_ENDPOINT_URL", server.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    let store = store_of(settings.clone());
    let KvStore::Dynamo(dynamo) = &store else {
        unreachable!("DYNAMODB_TABLE is set");
    };
    create_table(dynamo).await;
    settings
}

fn store_of(pairs: impl IntoIterator<Item = (String, String)>) -> KvStore {
    let settings = KvSettings::from_source(&Source::from_pairs(pairs));
    KvStore::from_settings(&settings).expect("DynamoDB store for the test table")
}

/// A DynamoDB [`KvStore`] on a fresh table of the moto server, with `overrides`
/// (environment-style pairs) applied over its settings.
pub async fn dynamo_store(overrides: &[(&str, &str)]) -> KvStore {
    let mut values: HashMap<String, String> = dynamo_settings().await.into_iter().collect();
    values.extend(
        overrides
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned())),
    );
    store_of(values)
}

/// Creates the table the way `infra/template.yaml` declares `ShortLivedTable`.
async fn create_table(store: &DynamoStore) {
    let client = store.client();
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("attribute definition")
    };
    let key = |name: &str, key_type: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .expect("key schema element")
    };
    if let Err(err) = client
        .create_table()
        .table_name(store.table())
        .attribute_definitions(attribute(PK))
        .attribute_definitions(attribute(SK))
        .key_schema(key(PK, KeyType::Hash))
        .key_schema(key(SK, KeyType::Range))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
    {
        panic!(
            "failed to create test table {}: {}",
            store.table(),
            aws_sdk_dynamodb::error::DisplayErrorContext(&err)
        );
    }
    if let Err(err) = client
        .update_time_to_live()
        .table_name(store.table())
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(EXPIRES_AT)
                .build()
                .expect("TTL specification"),
        )
        .send()
        .await
    {
        panic!(
            "failed to enable TTL on test table {}: {}",
            store.table(),
            aws_sdk_dynamodb::error::DisplayErrorContext(&err)
        );
    }
}
