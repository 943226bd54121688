//! The vectors Lambda function.

#[tokio::main]
async fn main() -> Result<(), adiuva_lambda::Error> {
    let config = adiuva_config::Config::from_env()?;
    adiuva_http::logging::init(&config);
    let db = adiuva_db::Database::from_config(&config)?;
    let state = vectors::State::new(
        adiuva_auth::Accounts::new(db, &config),
        adiuva_vectors::VectorStore::from_config(&config)?,
    );
    adiuva_lambda::run(adiuva_http::app(vectors::router(state), &config)).await
}
