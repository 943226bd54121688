//! The chat Lambda function.

#[tokio::main]
async fn main() -> Result<(), adiuva_lambda::Error> {
    adiuva_lambda::serve(chat::function).await
}
