//! The janitor Lambda function, invoked by an EventBridge schedule.

use aws_lambda_events::cloudwatch_events::CloudWatchEvent;
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    let context = adiuva_config::Context::from_env()?;
    adiuva_config::logging::init(context.source())?;
    let janitor = janitor::Janitor::new(&context)?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<CloudWatchEvent>| {
        let janitor = janitor.clone();
        // Boxed: the run's future is deep (S3 and Qdrant clients), and nesting it unboxed in
        // the runtime's future overflows the compiler's layout depth.
        Box::pin(async move { janitor.handle(event.payload).await })
    }))
    .await
}
