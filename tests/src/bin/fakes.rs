//! The fakes of the third-party APIs as one process, for runs outside the test binaries
//! (`.ci/schemathesis`): the scripted model, answering every request with the same short text,
//! and the fake Stripe with its hosted checkout page, which delivers to the webhook URL given as
//! the only argument. Prints the settings that point the API at them, one `NAME=value` per line,
//! then serves until it is killed.

use tests::llm::{Reply, ScriptedLlm};
use tests::stripe::FakeStripe;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Some(webhook_url) = std::env::args().nth(1) else {
        eprintln!(
            "usage: fakes <the API's webhook URL, http://127.0.0.1:PORT/api/v1/billing/webhook>"
        );
        std::process::exit(2);
    };
    // The hosted checkout page delivers to the webhook with reqwest, which needs a provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let llm = ScriptedLlm::start().await;
    llm.otherwise(Reply::Text(vec!["Noted: ".to_owned(), "done.".to_owned()]));
    let stripe = FakeStripe::start_hosted(webhook_url).await;
    println!("LLM_BASE_URL={}", llm.base_url());
    println!("OPENAI_API_KEY=sk-scripted");
    for (name, value) in stripe.settings() {
        println!("{name}={value}");
    }
    std::future::pending::<()>().await;
}
