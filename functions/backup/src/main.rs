//! The backup Lambda function.

#[tokio::main]
async fn main() -> Result<(), adiuva_lambda::Error> {
    let config = adiuva_config::Config::from_env()?;
    adiuva_http::logging::init(&config);
    let db = adiuva_db::Database::from_config(&config)?;
    let blobs = adiuva_blob::BlobStore::from_config(&config)?;
    let state = backup::State::new(
        adiuva_auth::Accounts::new(db.clone(), &config),
        adiuva_storage::Storage::new(db, blobs, &config),
    );
    adiuva_lambda::run(adiuva_http::app(backup::router(state), &config)).await
}
