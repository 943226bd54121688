//! `adiuva-local`: the whole API on 127.0.0.1:$PORT, or one of its maintenance commands
//! (see [`local::cli`]).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = async {
        let context = adiuva_config::Context::from_env()?;
        adiuva_config::logging::init(context.source())?;
        local::cli::run(&args, &context).await
    };
    match result.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("adiuva-local: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}
