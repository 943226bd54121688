//! The relational database: one `Database` handle over PostgreSQL (production) or SQLite (the
//! embedded default), the embedded migrations of both, and error classification.
//!
//! Queries are written once in the SQL both engines share and run through sqlx's `Any` driver;
//! ARCHITECTURE.md explains the dialect rules (TEXT ids, BIGINT millisecond timestamps, `$N`
//! placeholders, enums as CHECKed TEXT).

pub mod log_cursor;

use std::path::{Path, PathBuf};

use adiuva_config::{Component, ConfigError, Context, Secret, Source};
use adiuva_error::ErrorKind;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyQueryResult};
use sqlx::{AnyPool, Executor};

pub use sqlx;

/// The migrations, embedded only where they run (the `migrate` feature: `adiuva-local` and the
/// tests). No Lambda function migrates, so none carries them or sqlx's migration code.
#[cfg(feature = "migrate")]
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");
#[cfg(all(feature = "migrate", feature = "sqlite"))]
static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// How long a request waits for a pooled connection before the database counts as down.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// A pooled connection idle for longer than this is pinged before it is handed out (a
/// connection that went stale, say while a Lambda was frozen, is replaced instead of failing a
/// request). One busy in the last seconds is handed out as is: a ping per acquire was a round
/// trip per query, which under load is most of the database's latency.
pub const PING_WHEN_IDLE_FOR: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database url scheme (expected postgres:// or sqlite://)")]
    UnsupportedUrl,
    #[error(
        "this binary was built without the sqlite driver; set DATABASE_URL to a postgres:// url"
    )]
    SqliteNotCompiled,
    #[error("failed to create the data directory {path}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("failed to open the database")]
    Open(#[source] sqlx::Error),
    #[cfg(feature = "migrate")]
    #[error("failed to run migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// `DATABASE_URL` (unset: the embedded SQLite file), `DATABASE_MAX_CONNECTIONS` and
/// `ADIUVA_DATA_DIR`.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: Option<Secret>,
    pub max_connections: u32,
    pub data_dir: PathBuf,
}

impl DatabaseSettings {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        Ok(Self {
            url: source
                .optional("DATABASE_URL")
                .map(|url| Secret::new(normalize_url(&url))),
            max_connections: source.number_in("DATABASE_MAX_CONNECTIONS", 5, 1..=1000)?,
            data_dir: source.data_dir(),
        })
    }
}

impl Component for Database {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        let settings = DatabaseSettings::from_source(context.source())?;
        Self::from_settings(&settings).map_err(|err| ConfigError::unusable("the database", err))
    }
}

/// The Python deployment used SQLAlchemy URLs (`postgresql+asyncpg://`); sqlx wants
/// `postgres://`. Accepting both lets an existing `.env` keep working.
fn normalize_url(url: &str) -> String {
    for prefix in [
        "postgresql+asyncpg://",
        "postgresql+psycopg2://",
        "postgresql+psycopg://",
    ] {
        if let Some(rest) = url.strip_prefix(prefix) {
            return format!("postgres://{rest}");
        }
    }
    url.to_owned()
}

/// A cheaply cloneable handle to the connection pool.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    backend: Backend,
}

impl Database {
    /// Creates a pool that connects on first use, so a Lambda cold start does no network I/O.
    pub fn connect_lazy(url: &str, max_connections: u32) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        let pool = pool_options(backend, max_connections)
            .connect_lazy(url)
            .map_err(DbError::Open)?;
        Ok(Self { pool, backend })
    }

    /// The database the settings name: `DATABASE_URL` when set, else the embedded SQLite file
    /// under `ADIUVA_DATA_DIR` (available only where the `sqlite` feature is on).
    pub fn from_settings(settings: &DatabaseSettings) -> Result<Self, DbError> {
        match &settings.url {
            Some(url) => Self::connect_lazy(url.expose(), settings.max_connections),
            None => Self::embedded(&settings.data_dir, settings.max_connections),
        }
    }

    /// Opens (creating if needed) the embedded SQLite database in `data_dir`.
    pub fn embedded(data_dir: &Path, max_connections: u32) -> Result<Self, DbError> {
        std::fs::create_dir_all(data_dir).map_err(|source| DbError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let url = format!("sqlite://{}?mode=rwc", data_dir.join("adiuva.db").display());
        Self::connect_lazy(&url, max_connections)
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies every pending migration of this backend.
    #[cfg(feature = "migrate")]
    pub async fn migrate(&self) -> Result<(), DbError> {
        let migrator = match self.backend {
            Backend::Postgres => &POSTGRES_MIGRATIONS,
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            #[cfg(not(feature = "sqlite"))]
            Backend::Sqlite => return Err(DbError::SqliteNotCompiled),
        };
        migrator.run(&self.pool).await.map_err(DbError::Migrate)
    }

    /// A round trip to the database, for readiness checks.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_: AnyQueryResult| ())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn backend_of(url: &str) -> Result<Backend, DbError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else if url.starts_with("sqlite:") {
        if cfg!(feature = "sqlite") {
            Ok(Backend::Sqlite)
        } else {
            Err(DbError::SqliteNotCompiled)
        }
    } else {
        Err(DbError::UnsupportedUrl)
    }
}

fn pool_options(backend: Backend, max_connections: u32) -> AnyPoolOptions {
    let options = AnyPoolOptions::new()
        .max_connections(max_connections.max(1))
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .idle_timeout(Duration::from_secs(300))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for > PING_WHEN_IDLE_FOR {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        });
    match backend {
        Backend::Postgres => options,
        // SQLite: enforce foreign keys (cascading deletes rely on them), let readers run beside
        // a writer, and wait for a lock instead of failing at once.
        Backend::Sqlite => options.after_connect(|conn, _meta| {
            Box::pin(async move {
                conn.execute("PRAGMA foreign_keys = ON; PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 5000;")
                    .await?;
                Ok(())
            })
        }),
    }
}

/// True when the error means the database could not be reached or is overloaded (answer 503),
/// as opposed to a bug or a constraint violation.
pub fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // PostgreSQL: too_many_connections, cannot_connect_now, admin/crash shutdown.
            Some("53300" | "57P03" | "57P01" | "57P02") => true,
            // SQLite: SQLITE_BUSY (5) and SQLITE_LOCKED (6) and their extended codes
            // (BUSY_SNAPSHOT, BUSY_TIMEOUT, LOCKED_SHAREDCACHE, ...), whose low byte is the
            // primary code. SQLite codes are short numbers; SQLSTATEs are five characters.
            Some(code) if code.len() < 5 => {
                code.parse::<u32>().is_ok_and(|n| matches!(n & 0xff, 5 | 6))
            }
            _ => false,
        },
        _ => false,
    }
}

/// The kind of a database failure: unavailable (retry later) or internal (a bug).
pub fn kind_of(err: &sqlx::Error) -> ErrorKind {
    if is_unavailable(err) {
        ErrorKind::Unavailable
    } else {
        ErrorKind::Internal
    }
}

/// True when the error is a unique-constraint violation, in either engine.
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// The current time as integer milliseconds since the Unix epoch (SPEC §4).
pub fn now_ms() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

/// A new random identifier (UUID v4, hyphenated, lowercase), the form every `id` column uses.
pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlalchemy_urls_are_accepted() {
        let settings = DatabaseSettings::from_source(&Source::from_pairs([(
            "DATABASE_URL",
            "postgresql+asyncpg://postgres:pw@localhost:5432/adiuva",
        )]))
        .unwrap();
        assert_eq!(
            settings.url.unwrap().expose(),
            "postgres://postgres:pw@localhost:5432/adiuva"
        );
        let embedded = DatabaseSettings::from_source(&Source::default()).unwrap();
        assert!(embedded.url.is_none());
        assert_eq!(embedded.max_connections, 5);
    }
}
