//! The plans Lambda function.

#[tokio::main]
async fn main() -> Result<(), adiuva_lambda::Error> {
    let config = adiuva_config::Config::from_env()?;
    adiuva_http::logging::init(&config);
    let db = adiuva_db::Database::from_config(&config)?;
    let state = plans::State::new(
        adiuva_auth::Accounts::new(db, &config),
        adiuva_plans::PlanCache::new(adiuva_kv::KvStore::from_config(&config)?),
    );
    adiuva_lambda::run(adiuva_http::app(plans::router(state), &config)).await
}
