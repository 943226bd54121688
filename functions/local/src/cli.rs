//! The `adiuva-local` commands:
//!
//! - `serve` (the default): the whole API on 127.0.0.1:$PORT;
//! - `migrate`: applies the database migrations and exits (what a deploy runs against
//!   production);
//! - `admin grant <email>` / `admin revoke <email>`: gives or takes the admin role, against the
//!   database `DATABASE_URL` names (the embedded SQLite file when unset). It takes effect on the
//!   user's next request;
//! - `job <name>`: runs one scheduled job of the janitor function (`janitor`,
//!   `purge-sessions`, `purge-tombstones`, `reconcile-billing`) once, against the configured
//!   stores, and prints its summary `{"job":"<name>", ...counts}` as the last line of stdout.

use adiuva_access::Role;
use adiuva_auth::Accounts;
use adiuva_config::Context;
use adiuva_db::{Backend, Database};

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Runs one command (`args` without the program name); what `main` does, and what the tests
/// call.
pub async fn run(args: &[String], context: &Context) -> Result<(), Error> {
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
            let port: u16 = context.source().number("PORT", 8000)?;
            let app = crate::app(context)?;
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
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
            "unknown command {:?}; expected `serve`, `migrate`, `admin grant|revoke <email>`, or `job <name>` ({})",
            args.join(" "),
            janitor::Job::names()
        )
        .into()),
    }
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
