//! The teams Lambda function.

#[tokio::main]
async fn main() -> Result<(), adiuva_lambda::Error> {
    adiuva_lambda::serve(teams::function).await
}
