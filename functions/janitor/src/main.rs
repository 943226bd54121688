//! The janitor Lambda function, invoked by EventBridge schedules, each naming its job.

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let context = adiuva_config::Context::from_env()?;
    adiuva_config::logging::init(context.source())?;
    let janitor = janitor::Janitor::new(&context)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let janitor = janitor.clone();
        // Boxed: the run's future is deep (S3 and Qdrant clients), and nesting it unboxed in
        // the runtime's future overflows the compiler's layout depth.
        Box::pin(async move { janitor.handle(event.payload).await })
    }))
    .await
}
