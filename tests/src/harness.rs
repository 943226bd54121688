//! `spawn_app`: the whole API on an ephemeral port with its own database, plus typed helpers.
//!
//! PostgreSQL comes from `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! each test gets a new database there, dropped when the `TestApp` is. SQLite gets a new file in
//! a temporary directory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use adiuva_blob::{BlobStore, Faults, FaultyStore};
use adiuva_config::{Context, Source};
use adiuva_db::Database;
use adiuva_kv::KvStore;
use adiuva_vectors::VectorStore;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

pub use adiuva_db::Backend;

/// Runs each named `async fn name(backend: Backend)` once per backend, as
/// `postgres::name` and `sqlite::name`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Postgres).await
                }
            )+
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::harness::Backend::Sqlite).await
                }
            )+
        }
    };
}

pub const TEST_JWT_SECRET: &str = "test-secret-that-is-long-enough-for-hs256!";

fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A database that exists for one test and is removed afterwards.
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    pub db: Database,
    cleanup: Cleanup,
}

#[derive(Debug)]
enum Cleanup {
    Postgres { admin_url: String, name: String },
    Sqlite { _dir: TempDir },
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
        let database = Self::create_unmigrated(backend).await;
        database.db.migrate().await.expect("migrations failed");
        database
    }

    /// An empty database, no migration applied (for tests of one migration's data changes).
    pub async fn create_unmigrated(backend: Backend) -> Self {
        let (url, cleanup) = match backend {
            Backend::Postgres => {
                let admin_url = admin_url();
                let name = format!("adiuva_test_{}", uuid::Uuid::new_v4().simple());
                let admin = Database::connect_lazy(&admin_url, 1)
                    .expect("TEST_DATABASE_URL is not a postgres url");
                adiuva_db::sqlx::query(adiuva_db::sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(admin.pool()).await.unwrap_or_else(
                    |err| {
                        panic!(
                            "PostgreSQL is not reachable at {admin_url} ({err}). Start it with \
                             `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                             or point TEST_DATABASE_URL at a server where user postgres may create databases."
                        )
                    },
                );
                admin.close().await;
                let base = admin_url
                    .rsplit_once('/')
                    .map_or(admin_url.as_str(), |(base, _)| base);
                (
                    format!("{base}/{name}"),
                    Cleanup::Postgres {
                        admin_url: admin_url.clone(),
                        name,
                    },
                )
            }
            Backend::Sqlite => {
                let dir = TempDir::new();
                let url = format!("sqlite://{}?mode=rwc", dir.0.join("adiuva.db").display());
                (url, Cleanup::Sqlite { _dir: dir })
            }
        };
        let db = Database::connect_lazy(&url, 5).expect("failed to open the test database");
        Self { url, db, cleanup }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Postgres { admin_url, name } => {
                let (admin_url, name, db) = (admin_url.clone(), name.clone(), self.db.clone());
                // Drop runs inside the test's runtime, which cannot block on itself: use a
                // thread with a runtime of its own.
                let _ = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    runtime.block_on(async move {
                        db.close().await;
                        let admin = Database::connect_lazy(&admin_url, 1).ok()?;
                        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = adiuva_db::sqlx::query(adiuva_db::sqlx::AssertSqlSafe(drop))
                            .execute(admin.pool())
                            .await;
                        admin.close().await;
                        Some(())
                    })
                })
                .join();
            }
            Cleanup::Sqlite { .. } => {}
        }
    }
}

/// The context tests run with: fast bcrypt, a fixed secret, the given database, tier rate
/// limits off (the rate-limit tests turn them on), then `overrides`.
pub fn test_context(database_url: &str, overrides: &[(&str, &str)]) -> Context {
    context_of(test_settings(database_url, overrides))
}

/// A context of test settings plus `pairs`, with a data folder of its own and a placeholder
/// database that nothing connects to unless `pairs` names a real one (`DATABASE_URL`): for
/// building functions without serving them.
pub fn unconnected_context(pairs: &[(&str, &str)]) -> (Context, TempDir) {
    let dir = TempDir::new();
    let mut settings = vec![("ADIUVA_DATA_DIR", dir.0.to_str().unwrap().to_owned())];
    settings.extend(pairs.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    (
        test_context("postgres://postgres@127.0.0.1:5432/unused", &settings),
        dir,
    )
}

/// A context of exactly these settings; the later of two equal keys wins.
pub fn context_of(pairs: Vec<(String, String)>) -> Context {
    let values: HashMap<String, String> = pairs.into_iter().collect();
    Context::new(Source::from_pairs(values)).expect("invalid test settings")
}

fn test_settings(database_url: &str, overrides: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut values: Vec<(String, String)> = [
        ("DATABASE_URL", database_url),
        ("JWT_SECRET", TEST_JWT_SECRET),
        ("BCRYPT_COST", "4"),
        ("LOG_FORMAT", "pretty"),
        ("RATE_LIMIT_ENABLED", "false"),
        // Every test client registers from loopback, many accounts per test process; the
        // limit's own tests set it low again.
        ("AUTH_REGISTRATIONS_PER_ADDRESS", "1000000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    values.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    values
}

/// A directory that is removed with the value.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let dir =
            std::env::temp_dir().join(format!("adiuva-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("failed to create a temporary directory");
        Self(dir)
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What the app runs on, taken from its context.
#[derive(Debug, Clone)]
pub struct Backends {
    pub db: Database,
    pub blobs: BlobStore,
    pub vectors: VectorStore,
    /// The shared short-lived store (DynamoDB, or memory on the SQLite pairing).
    pub kv: KvStore,
}

/// The running API and handles to what is behind it.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    pub client: reqwest::Client,
    /// The context the app was built from; its components are the app's own.
    pub context: Context,
    pub database: TestDatabase,
    pub backends: Backends,
    /// Makes chosen blob-store operations fail, for fault-injection tests.
    pub faults: Arc<Faults>,
    /// Embedded state (local blobs, embedded vectors).
    pub data_dir: TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// `spawn_app` with configuration overrides (`("MAX_BODY_BYTES", "1024")`, ...).
///
/// The backends come in the two pairings the service runs in: PostgreSQL with S3, DynamoDB (a
/// fresh bucket and table on a moto_server on loopback) and, with the `qdrant` feature
/// (`.ci/test-qdrant`), Qdrant (collections of its own on a Qdrant server on loopback; without
/// the feature, the embedded vector store), and SQLite with the embedded blob folder, the
/// embedded vector store and the in-memory short-lived store.
pub async fn spawn_app_with(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    // `TEST_LOG=1` shows the app's logs (with `--nocapture`), for finding why a test failed.
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = adiuva_config::logging::init(&Source::from_pairs([("LOG_FORMAT", "pretty")]));
    }
    let database = TestDatabase::create(backend).await;
    let data_dir = TempDir::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("failed to bind a port");
    let address = format!(
        "http://{}",
        listener.local_addr().expect("no local address")
    );
    let data_dir_text = data_dir.0.display().to_string();
    let mut settings = vec![
        ("ADIUVA_DATA_DIR", data_dir_text.as_str()),
        ("PUBLIC_BASE_URL", address.as_str()),
    ];
    settings.extend_from_slice(overrides);
    let context = match backend {
        Backend::Postgres => {
            // The table's and the vector store's settings first, so that the test's own
            // overrides win.
            let mut pairs = adiuva_kv::testing::dynamo_settings().await;
            #[cfg(feature = "qdrant")]
            pairs.extend(adiuva_vectors::testing::qdrant_settings().await);
            pairs.extend(test_settings(&database.url, &settings));
            let pairs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            context_of(adiuva_blob::testing::s3_settings(&pairs).await)
        }
        Backend::Sqlite => test_context(&database.url, &settings),
    };
    // The test's own pool, and the blob store behind the fault injector, before anything is
    // built from the context.
    context.provide(database.db.clone());
    let (blobs, faults) = FaultyStore::wrap(context.get::<BlobStore>().expect("blob store"));
    context.provide(blobs);
    let backends = Backends {
        db: database.db.clone(),
        blobs: context.get().expect("blob store"),
        vectors: context.get().expect("vector store"),
        kv: context.get().expect("short-lived store"),
    };
    #[cfg(feature = "qdrant")]
    if backend == Backend::Postgres {
        assert!(
            matches!(backends.vectors, adiuva_vectors::VectorStore::Qdrant(_)),
            "the qdrant feature runs the PostgreSQL pairing on Qdrant"
        );
    }
    let app = local::app(&context).expect("the app's settings are valid");
    let server = serve(listener, app);
    TestApp {
        address,
        client: http_client(),
        context,
        database,
        backends,
        faults,
        data_dir,
        server,
    }
}

/// An HTTP client for the tests. Within the workspace, reqwest is built with rustls but no
/// bundled crypto provider (adiuva-llm hands it its own config), so a plain client needs ring
/// installed as the process default first.
/// Serves `app` on `listener` in a task, as the local server does: `TCP_NODELAY` on each
/// connection, and the client's address for the handlers that read it.
pub fn serve(listener: tokio::net::TcpListener, app: axum::Router) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        axum::serve(
            axum::serve::ListenerExt::tap_io(listener, local::no_delay),
            app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
        )
        .await
        .expect("server failed");
    })
}

pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// An HTTP client whose connections leave from `address` (Linux routes all of 127.0.0.0/8 to
/// the loopback interface), to play clients behind different addresses.
pub fn http_client_from(address: &str) -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .local_address(address.parse::<std::net::IpAddr>().expect("an IP address"))
        .build()
        .expect("HTTP client")
}

/// What register, login and refresh answer.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_at: i64,
}

/// A registered user with the password it registered with.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub email: String,
    pub password: String,
    pub tokens: Tokens,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path)
            .send()
            .await
            .expect("request failed")
    }

    pub async fn get_authed(&self, path: &str, token: &str) -> Response {
        self.request(Method::GET, path)
            .bearer_auth(token)
            .send()
            .await
            .expect("request failed")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.request(Method::POST, path)
            .json(body)
            .send()
            .await
            .expect("request failed")
    }

    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/auth/register",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json(
            "/api/v1/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json(
            "/api/v1/auth/refresh",
            &json!({"refresh_token": refresh_token}),
        )
        .await
    }

    /// Asserts that a device's tokens ended: its access token is refused on the next request
    /// (401 `invalid_token`) and its refresh token too (401 `invalid_refresh_token`).
    pub async fn assert_signed_out(&self, tokens: &Tokens) {
        error_body(
            self.me(&tokens.access_token).await,
            StatusCode::UNAUTHORIZED,
            "invalid_token",
        )
        .await;
        error_body(
            self.refresh(&tokens.refresh_token).await,
            StatusCode::UNAUTHORIZED,
            "invalid_refresh_token",
        )
        .await;
    }

    pub async fn me(&self, access_token: &str) -> Response {
        self.get_authed("/api/v1/auth/me", access_token).await
    }

    /// Registers a new user with a unique email and returns it signed in.
    pub async fn register_user(&self) -> TestUser {
        let email = format!("user-{}@example.com", uuid::Uuid::new_v4().simple());
        let password = "correct-horse-battery".to_owned();
        let response = self.register(&email, &password).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "register failed: {}",
            response.text().await.unwrap()
        );
        let tokens: Tokens = response.json().await.expect("register answered no tokens");
        let profile: Value = self
            .me(&tokens.access_token)
            .await
            .json()
            .await
            .expect("me failed");
        let id = profile["id"]
            .as_str()
            .expect("profile without id")
            .to_owned();
        TestUser {
            id,
            email,
            password,
            tokens,
        }
    }

    /// Gives the user a subscription row, as the billing webhook would.
    pub async fn set_subscription(&self, user_id: &str, tier: &str, status: &str) {
        adiuva_db::sqlx::query(
            "INSERT INTO subscriptions (id, user_id, tier, status, created_at, updated_at) VALUES ($1, $2, $3, $4, 0, 0) \
             ON CONFLICT (user_id) DO UPDATE SET tier = excluded.tier, status = excluded.status",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(user_id)
        .bind(tier)
        .bind(status)
        .execute(self.database.db.pool())
        .await
        .expect("failed to write the subscription");
    }
}

/// A point to upsert: id, encrypted blob, optional client vector.
pub type VectorInput<'a> = (&'a str, &'a [u8], Option<Vec<f32>>);

/// Standard base64, as bytes travel inside JSON.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Lowercase hex SHA-256, as checksums travel.
pub fn sha(bytes: &[u8]) -> String {
    adiuva_checksum::sha256_hex(bytes)
}

impl TestApp {
    /// A registered user on the pro tier (5 quota units of storage and backups).
    pub async fn pro_user(&self) -> TestUser {
        let user = self.register_user().await;
        self.set_subscription(&user.id, "pro", "active").await;
        user
    }

    pub async fn create_record(&self, token: &str, table: &str, bytes: &[u8]) -> Response {
        let body = json!({"table": table, "blob": b64(bytes), "checksum": sha(bytes)});
        self.request(Method::POST, "/api/v1/storage/records")
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a record and returns its id; panics unless it was created.
    pub async fn record(&self, token: &str, table: &str, bytes: &[u8]) -> String {
        let response = self.create_record(token, table, bytes).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "{}",
            response.text().await.unwrap()
        );
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn update_record(
        &self,
        token: &str,
        id: &str,
        bytes: &[u8],
        if_match: Option<&str>,
    ) -> Response {
        let body = json!({"blob": b64(bytes), "checksum": sha(bytes)});
        let mut request = self
            .request(Method::PUT, &format!("/api/v1/storage/records/{id}"))
            .bearer_auth(token)
            .json(&body);
        if let Some(version) = if_match {
            request = request.header("if-match", version);
        }
        request.send().await.unwrap()
    }

    pub async fn get_record(&self, token: &str, id: &str) -> Response {
        self.get_authed(&format!("/api/v1/storage/records/{id}"), token)
            .await
    }

    pub async fn delete_record(&self, token: &str, id: &str) -> Response {
        self.request(Method::DELETE, &format!("/api/v1/storage/records/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn put_backup(&self, token: &str, bytes: &[u8], timestamp: i64) -> Response {
        self.request(Method::PUT, "/api/v1/backup")
            .bearer_auth(token)
            .header("content-type", "application/octet-stream")
            .header("x-backup-version", "1")
            .header("x-backup-timestamp", timestamp.to_string())
            .header("x-backup-checksum", sha(bytes))
            .body(bytes.to_vec())
            .send()
            .await
            .unwrap()
    }

    pub async fn upsert_vectors(&self, token: &str, points: &[VectorInput<'_>]) -> Response {
        let vectors: Vec<Value> = points
            .iter()
            .map(|(id, blob, vector)| json!({"id": id, "blob": b64(blob), "checksum": sha(blob), "vector": vector}))
            .collect();
        self.request(Method::POST, "/api/v1/storage/vectors/upsert")
            .bearer_auth(token)
            .json(&json!({"vectors": vectors}))
            .send()
            .await
            .unwrap()
    }

    pub async fn search_vectors(
        &self,
        token: &str,
        query: &[u8],
        vector: Option<Vec<f32>>,
        top_k: usize,
    ) -> Response {
        let body = json!({"query_blob": b64(query), "vector": vector, "top_k": top_k});
        self.request(Method::POST, "/api/v1/storage/vectors/search")
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// The ids a vector search returns, best first.
    pub async fn search_ids(
        &self,
        token: &str,
        query: &[u8],
        vector: Option<Vec<f32>>,
    ) -> Vec<String> {
        let response = self.search_vectors(token, query, vector, 10).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hit| hit["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Every blob the store holds for a user.
    pub async fn blob_keys(&self, user_id: &str) -> Vec<String> {
        let mut keys: Vec<String> = self
            .backends
            .blobs
            .list(&format!("{user_id}/"))
            .await
            .unwrap()
            .into_iter()
            .map(|b| b.key)
            .collect();
        keys.sort();
        keys
    }

    /// Bytes the user holds under the records and the backup quota.
    pub async fn usage(&self, user_id: &str) -> (i64, i64) {
        let row: Option<(i64, i64)> = adiuva_db::sqlx::query_as(
            "SELECT records_bytes, backup_bytes FROM storage_usage WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.database.db.pool())
        .await
        .unwrap();
        row.unwrap_or((0, 0))
    }

    /// Makes every `operation` (INSERT, UPDATE or DELETE) on `table` fail inside the database,
    /// the way a constraint or a dying connection would, until `heal_database`.
    pub async fn break_database(&self, operation: &str, table: &str) {
        let pool = self.database.db.pool();
        let statements = match self.database.db.backend() {
            Backend::Postgres => vec![
                "CREATE OR REPLACE FUNCTION adiuva_injected_failure() RETURNS trigger AS $$ \
                 BEGIN RAISE EXCEPTION 'injected failure'; END $$ LANGUAGE plpgsql"
                    .to_owned(),
                format!(
                    "CREATE TRIGGER injected_{op} BEFORE {operation} ON {table} FOR EACH ROW \
                     EXECUTE FUNCTION adiuva_injected_failure()",
                    op = operation.to_lowercase()
                ),
            ],
            Backend::Sqlite => vec![format!(
                "CREATE TRIGGER injected_{op} BEFORE {operation} ON {table} BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
                op = operation.to_lowercase()
            )],
        };
        for statement in statements {
            adiuva_db::sqlx::query(adiuva_db::sqlx::AssertSqlSafe(statement))
                .execute(pool)
                .await
                .unwrap();
        }
    }

    pub async fn heal_database(&self, operation: &str, table: &str) {
        let statement = format!(
            "DROP TRIGGER injected_{} ON {table}",
            operation.to_lowercase()
        );
        let statement = match self.database.db.backend() {
            Backend::Postgres => statement,
            Backend::Sqlite => format!("DROP TRIGGER injected_{}", operation.to_lowercase()),
        };
        adiuva_db::sqlx::query(adiuva_db::sqlx::AssertSqlSafe(statement))
            .execute(self.database.db.pool())
            .await
            .unwrap();
    }
}

/// Reads a JSON error body and checks it has our shape; returns it.
pub async fn error_body(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    let header_id = response
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.expect("error body is not JSON");
    assert_eq!(body["code"], code, "unexpected error code in {body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "no detail in {body}"
    );
    assert_eq!(
        body["request_id"].as_str(),
        header_id.as_deref(),
        "request_id differs from the header"
    );
    body
}
