//! The chat-ws Lambda function, invoked by the API Gateway WebSocket API.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let context = adiuva_config::Context::from_env()?;
    adiuva_config::logging::init(context.source())?;
    let function = chat_ws::ChatWs::new(&context)?;
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            let function = function.clone();
            // Boxed: the orchestration's future is deep.
            Box::pin(async move {
                Ok::<_, std::convert::Infallible>(function.handle(event.payload).await)
            })
        },
    ))
    .await
}
