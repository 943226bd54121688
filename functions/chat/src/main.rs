//! The chat Lambda function.

#[tokio::main]
async fn main() -> Result<(), adiuva_lambda::Error> {
    let config = adiuva_config::Config::from_env()?;
    adiuva_http::logging::init(&config);
    let db = adiuva_db::Database::from_config(&config)?;
    let state = chat::State::from_config(adiuva_auth::Accounts::new(db, &config), &config);
    adiuva_lambda::run(adiuva_http::app(chat::router(state), &config)).await
}
