//! `spawn_app`: the whole API on an ephemeral port with its own database, plus typed helpers.
//!
//! PostgreSQL comes from `TEST_DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`);
//! each test gets a new database there, dropped when the `TestApp` is. SQLite gets a new file in
//! a temporary directory.

use std::collections::HashMap;
use std::path::PathBuf;

use adiuva_config::Config;
use adiuva_db::Database;
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
    Sqlite { dir: PathBuf },
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> Self {
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
                let dir = std::env::temp_dir()
                    .join(format!("adiuva-test-{}", uuid::Uuid::new_v4().simple()));
                std::fs::create_dir_all(&dir).expect("failed to create a temporary directory");
                (
                    format!("sqlite://{}?mode=rwc", dir.join("adiuva.db").display()),
                    Cleanup::Sqlite { dir },
                )
            }
        };
        let db = Database::connect_lazy(&url, 5).expect("failed to open the test database");
        db.migrate().await.expect("migrations failed");
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
            Cleanup::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// The configuration tests run with: fast bcrypt, a fixed secret, the given database.
pub fn test_config(database_url: &str, overrides: &[(&str, &str)]) -> Config {
    let mut values: HashMap<String, String> = [
        ("DATABASE_URL", database_url),
        ("JWT_SECRET", TEST_JWT_SECRET),
        ("BCRYPT_COST", "4"),
        ("LOG_FORMAT", "pretty"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    values.extend(
        overrides
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    Config::from_lookup(|key| values.get(key).cloned()).expect("invalid test configuration")
}

/// The running API and handles to what is behind it.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:<port>`
    pub address: String,
    pub client: reqwest::Client,
    pub config: Config,
    pub database: TestDatabase,
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
pub async fn spawn_app_with(backend: Backend, overrides: &[(&str, &str)]) -> TestApp {
    let database = TestDatabase::create(backend).await;
    let config = test_config(&database.url, overrides);
    let app = local::app(&config, &database.db);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("failed to bind a port");
    let address = format!(
        "http://{}",
        listener.local_addr().expect("no local address")
    );
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("server failed");
    });
    TestApp {
        address,
        client: reqwest::Client::new(),
        config,
        database,
        server,
    }
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
