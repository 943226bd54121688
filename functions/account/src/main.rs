//! The account Lambda function.

#[tokio::main]
async fn main() -> Result<(), adiuva_lambda::Error> {
    let config = adiuva_config::Config::from_env()?;
    adiuva_http::logging::init(&config);
    let db = adiuva_db::Database::from_config(&config)?;
    let storage = adiuva_storage::Storage::new(
        db.clone(),
        adiuva_blob::BlobStore::from_config(&config)?,
        &config,
    );
    let vectors = adiuva_vectors::VectorStore::from_config(&config)?;
    let state = account::State::new(adiuva_auth::Accounts::new(db, &config), storage, vectors);
    adiuva_lambda::run(adiuva_http::app(account::router(state), &config)).await
}
