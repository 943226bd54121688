//! The health Lambda function.

#[tokio::main]
async fn main() -> Result<(), adiuva_lambda::Error> {
    adiuva_lambda::serve(health::function).await
}
