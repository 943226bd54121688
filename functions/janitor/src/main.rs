//! The janitor Lambda function, invoked by an EventBridge schedule.

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = adiuva_config::Config::from_env()?;
    adiuva_http::logging::init(&config);
    let db = adiuva_db::Database::from_config(&config)?;
    let storage =
        adiuva_storage::Storage::new(db, adiuva_blob::BlobStore::from_config(&config)?, &config);
    let vectors = adiuva_vectors::VectorStore::from_config(&config)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let (storage, vectors) = (storage.clone(), vectors.clone());
        // Boxed: the run's future is deep (S3 and Qdrant clients), and nesting it unboxed in
        // the runtime's future overflows the compiler's layout depth.
        Box::pin(async move { janitor::handle(event.payload, &storage, &vectors).await })
    }))
    .await
}
