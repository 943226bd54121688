//! The `adiuva-local` commands:
//!
//! - `serve` (the default): the whole API on `BIND_ADDR` (default 127.0.0.1:$PORT; a container
//!   sets `0.0.0.0:8000`);
//! - `migrate`: applies the database migrations and exits (what a deploy runs against
//!   production);
//! - `admin grant <email>` / `admin revoke <email>`: gives or takes the admin role, against the
//!   database `DATABASE_URL` names (the embedded SQLite file when unset). It takes effect on the
//!   user's next request;
//! - `job <name>`: runs one scheduled job of the janitor function (`janitor`,
//!   `purge-sessions`, `purge-tombstones`, `reconcile-billing`, `purge-ai-budgets`) once,
//!   against the configured stores, and prints its summary `{"job":"<name>", ...counts}` as the
//!   last line of stdout;
//! - `routes`: every function's declared routes with their policies, as one JSON array (what
//!   `cargo xtask gen|check` derives the template's routes, the watch router, the sample
//!   events and the infra README's route list from). Built on the embedded defaults in a
//!   folder of its own, whatever the environment says: no database, store or network.

use adiuva_access::Role;
use adiuva_auth::Accounts;
use adiuva_config::Context;
use adiuva_db::{Backend, Database};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Where `serve` listens: `BIND_ADDR` (`host:port`, e.g. `0.0.0.0:8000` in a container), else
/// 127.0.0.1 on `PORT` (8000): only this machine, unless asked otherwise.
pub fn bind_address(
    source: &adiuva_config::Source,
) -> Result<std::net::SocketAddr, adiuva_config::ConfigError> {
    match source.optional("BIND_ADDR") {
        Some(address) => address.parse().map_err(|_| {
            adiuva_config::ConfigError::invalid(
                "BIND_ADDR",
                "must be an address and a port, such as 0.0.0.0:8000 or [::]:8000",
            )
        }),
        None => Ok(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            source.number("PORT", 8000)?,
        ))),
    }
}

/// Runs one command (`args` without the program name); what `main` does, and what the tests
/// call.
pub async fn run(args: &[String], context: &Context) -> Result<(), Error> {
    if let [routes] = args
        && routes == "routes"
    {
        println!("{}", serde_json::to_string_pretty(&declared_routes()?)?);
        return Ok(());
    }
    let db: Database = context.get()?;
    db.migrate().await?;
    let database = match db.backend() {
        Backend::Postgres => "postgres (DATABASE_URL)".to_owned(),
        Backend::Sqlite => format!(
            "sqlite at {}",
            context.source().data_dir().join("adiuva.db").display()
        ),
    };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        [] | ["serve"] => {
            let bind = bind_address(context.source())?;
            let app = crate::app(context)?;
            let listener = tokio::net::TcpListener::bind(bind).await?;
            let address = listener.local_addr()?;
            println!("adiuva-local listening on http://{address} (database: {database})");
            println!("OpenAPI document: http://{address}{}", crate::OPENAPI_PATH);
            crate::serve(listener, app).await?;
            Ok(())
        }
        ["migrate"] => {
            println!("migrations applied to {database}");
            Ok(())
        }
        ["admin", action @ ("grant" | "revoke"), email] => {
            let role = if *action == "grant" {
                Role::Admin
            } else {
                Role::User
            };
            let accounts: Accounts = context.get()?;
            let user_id = accounts.set_role(email, role).await?;
            println!("{email} ({user_id}) is now {} in {database}", role.as_str());
            Ok(())
        }
        ["job", name] => {
            let line = job(context, name).await?;
            println!("{line}");
            Ok(())
        }
        _ => Err(format!(
            "unknown command {:?}; expected `serve`, `migrate`, `admin grant|revoke <email>`, `routes`, or `job <name>` ({})",
            args.join(" "),
            janitor::Job::names()
        )
        .into()),
    }
}

/// One route of `adiuva-local routes`: the function that serves it, and its declaration.
#[derive(Debug, serde::Serialize)]
pub struct FunctionRoute {
    pub function: &'static str,
    #[serde(flatten)]
    pub route: adiuva_http::routes::DeclaredRoute,
}

/// Every function's declared routes, each function built by its own constructor on the
/// embedded defaults (a data folder of its own, removed after; nothing is connected).
pub fn declared_routes() -> Result<Vec<FunctionRoute>, Error> {
    let dir = std::env::temp_dir().join(format!("adiuva-routes-{}", std::process::id()));
    let source = adiuva_config::Source::from_pairs([(
        "ADIUVA_DATA_DIR".to_owned(),
        dir.display().to_string(),
    )]);
    let routes = Context::new(source)
        .and_then(|context| crate::functions(&context))
        .map(|functions| {
            functions
                .iter()
                .flat_map(|(name, function)| {
                    function.policies().routes().map(|route| FunctionRoute {
                        function: name,
                        route: route.clone(),
                    })
                })
                .collect()
        });
    let _ = std::fs::remove_dir_all(&dir);
    Ok(routes?)
}

/// Runs the scheduled job `name` once, as its schedule does in Lambda (the same
/// `Janitor::run_job`), and answers its summary line `{"job":"<name>", ...counts}`.
pub async fn job(context: &Context, name: &str) -> Result<String, Error> {
    let Some(job) = janitor::Job::parse(name) else {
        return Err(format!(
            "unknown job {name:?}; expected one of {}",
            janitor::Job::names()
        )
        .into());
    };
    let janitor = janitor::Janitor::new(context)?;
    Ok(janitor.run_job(job).await?.summary_line())
}

#[cfg(test)]
mod tests {
    use super::*;
    use adiuva_config::Source;

    #[test]
    fn serve_binds_loopback_unless_bind_addr_says_otherwise() {
        let address = |pairs: &[(&str, &str)]| {
            bind_address(&Source::from_pairs(pairs.iter().copied())).map(|a| a.to_string())
        };
        assert_eq!(address(&[]).unwrap(), "127.0.0.1:8000");
        assert_eq!(address(&[("PORT", "9000")]).unwrap(), "127.0.0.1:9000");
        assert_eq!(
            address(&[("BIND_ADDR", "0.0.0.0:8080"), ("PORT", "9000")]).unwrap(),
            "0.0.0.0:8080"
        );
        assert_eq!(address(&[("BIND_ADDR", "[::]:8000")]).unwrap(), "[::]:8000");
        for bad in ["0.0.0.0", "localhost:8000", "8000"] {
            assert!(address(&[("BIND_ADDR", bad)]).is_err(), "{bad}");
        }
    }
}
