//! The chat-ws Lambda function, invoked by the API Gateway WebSocket API.

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let config = adiuva_config::Config::from_env()?;
    adiuva_http::logging::init(&config);
    let db = adiuva_db::Database::from_config(&config)?;
    let state = chat_ws::State::new(
        chat::State::from_config(adiuva_auth::Accounts::new(db, &config), &config),
        adiuva_kv::KvStore::from_config(&config)?,
        &config,
    )?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let state = state.clone();
        // Boxed: the orchestration's future is deep.
        Box::pin(
            async move { Ok::<_, std::convert::Infallible>(state.handle(event.payload).await) },
        )
    }))
    .await
}
