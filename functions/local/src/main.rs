//! `adiuva-local`: runs the whole API on 127.0.0.1:$PORT (`serve`, the default), or applies the
//! database migrations and exits (`migrate`, what a deploy runs against production).

use std::process::ExitCode;

use adiuva_config::Config;
use adiuva_db::Backend;
use local::Backends;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
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

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let command = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "serve".to_owned());
    let config = Config::from_env()?;
    adiuva_http::logging::init(&config);
    let backends = Backends::from_config(&config).map_err(|err| err.to_string())?;
    let db = &backends.db;
    db.migrate().await?;
    let database = match db.backend() {
        Backend::Postgres => "postgres (DATABASE_URL)".to_owned(),
        Backend::Sqlite => format!("sqlite at {}", config.data_dir.join("adiuva.db").display()),
    };
    match command.as_str() {
        "migrate" => {
            println!("migrations applied to {database}");
            Ok(())
        }
        "serve" => {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.port)).await?;
            let address = listener.local_addr()?;
            println!("adiuva-local listening on http://{address} (database: {database})");
            println!("OpenAPI document: http://{address}{}", local::OPENAPI_PATH);
            local::serve(listener, local::app(&config, &backends)).await?;
            Ok(())
        }
        other => Err(format!("unknown command {other:?}; expected `serve` or `migrate`").into()),
    }
}
