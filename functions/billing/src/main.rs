//! The billing Lambda function.

#[tokio::main]
async fn main() -> Result<(), adiuva_lambda::Error> {
    adiuva_lambda::serve(billing::function).await
}
