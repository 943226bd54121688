//! Typed configuration, read once per process from the environment and an optional `.env` file.
//!
//! Every variable of the reference deployment keeps its name and default; what this service
//! adds is listed in `.env.example`. Real environment variables win over `.env` entries, and
//! nothing here writes to the process environment.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

/// The secret that ships as the default and must never reach production.
pub const DEFAULT_JWT_SECRET: &str = "change-me-in-production";

/// Shortest `JWT_SECRET` accepted in production: 256 bits for HMAC-SHA-256.
pub const MIN_PROD_SECRET_BYTES: usize = 32;

/// A string that never shows up in `Debug` output or logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("Secret(<empty>)")
        } else {
            f.write_str("Secret(<redacted>)")
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    Dev,
    Prod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// The whole configuration. Fields are grouped by the subsystem that reads them.
#[derive(Debug, Clone)]
pub struct Config {
    pub env: Env,
    /// `None` selects the embedded SQLite database under `data_dir`.
    pub database_url: Option<Secret>,
    pub database_max_connections: u32,
    /// Where the embedded backends keep their state (`ADIUVA_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Port of the local server; Lambda ignores it.
    pub port: u16,

    pub jwt_secret: Secret,
    pub jwt_algorithm: String,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    pub jwt_access_token_expire_minutes: u64,
    pub jwt_refresh_token_expire_days: u64,
    /// bcrypt work factor for new hashes; existing hashes verify at whatever cost they carry.
    pub bcrypt_cost: u32,

    pub cors_origins: Vec<String>,
    /// Largest request body the extractors accept, in bytes.
    pub max_body_bytes: usize,
    pub log_format: LogFormat,

    pub stripe_secret_key: Secret,
    pub stripe_webhook_secret: Secret,

    /// Empty: blobs live in a folder under `data_dir` (the embedded default).
    pub s3_bucket: String,
    pub s3_region: String,
    /// Custom S3 endpoint (MinIO, moto_server); path-style addressing is used when set.
    pub s3_endpoint_url: String,
    pub aws_access_key_id: String,
    pub aws_secret_access_key: Secret,
    /// Set by Lambda together with the two above (temporary credentials of the role).
    pub aws_session_token: Secret,
    /// Region of the AWS services other than S3 (DynamoDB). Lambda sets `AWS_REGION`; when it
    /// is unset, `s3_region`.
    pub aws_region: String,
    /// Empty: the shared short-lived store (cached plans, ...) is in process memory, which is
    /// right for one local process but not shared between Lambda instances.
    pub dynamodb_table: String,
    /// Custom DynamoDB endpoint (moto_server, DynamoDB Local). Empty = AWS.
    pub dynamodb_endpoint_url: String,
    /// Base URL clients reach this API at; the embedded blob store's upload URLs start with it.
    pub public_base_url: String,
    /// Bytes in one "GB" of the tier matrix; tests shrink it to exercise quotas.
    pub quota_unit_bytes: u64,
    /// How long an upload URL stays valid.
    pub upload_url_expire_minutes: u64,
    /// Blobs no row refers to are removed by the janitor once they are this old.
    pub orphan_grace_minutes: u64,

    pub pinecone_api_key: Secret,
    pub pinecone_index: String,
    /// Empty: exact in-process vector search, persisted under `data_dir`.
    pub qdrant_url: String,
    pub qdrant_api_key: Secret,
    /// Prefix of the Qdrant collection names (one collection per vector size).
    pub qdrant_collection: String,

    pub openai_api_key: Secret,
    /// LiteLLM-style `provider/model` names (`gpt-4o`, `openai/gpt-4o`, `ollama/llama3`, ...).
    pub llm_model: String,
    pub llm_router_model: String,
    /// Base URL of an OpenAI-compatible API (`LLM_BASE_URL`, or the OpenAI SDKs'
    /// `OPENAI_BASE_URL`); empty = the provider's own. Overrides the provider's default.
    pub llm_base_url: String,
    pub openrouter_api_key: Secret,
    pub anthropic_api_key: Secret,
    pub gemini_api_key: Secret,
    /// Where `ollama/` models are served (`OLLAMA_BASE_URL`, or LiteLLM's `OLLAMA_API_BASE`).
    pub ollama_base_url: String,
    /// Per model call, including a streamed answer.
    pub llm_timeout_seconds: u64,
    /// Retries of a model call that failed with 429, 5xx or a connection error.
    pub llm_max_retries: u32,
    /// Cap on the tokens a model call may generate.
    pub llm_max_output_tokens: u32,
    /// Cap on one whole chat request (routing, agents, synthesis). API Gateway's HTTP API
    /// gives up on an integration after 30 s, hence 28.
    pub chat_timeout_seconds: u64,
    /// Interval of the WebSocket heartbeat pings.
    pub ws_heartbeat_seconds: u64,
    /// Endpoint of the API Gateway Management API for `chat-ws` frames; empty = the WebSocket
    /// API's own (`https://{domainName}/{stage}` of the event). Tests point it at moto_server.
    pub ws_management_endpoint_url: String,
    /// Langfuse tracing and prompt management; off unless both keys are set.
    pub langfuse_public_key: String,
    pub langfuse_secret_key: Secret,
    pub langfuse_host: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ConfigError {
    Invalid { key: &'static str, reason: String },
    InsecureInProduction(String),
    DotEnv(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid { key, reason } => write!(f, "invalid {key}: {reason}"),
            Self::InsecureInProduction(reason) => {
                write!(f, "refusing to start with ENV=prod: {reason}")
            }
            Self::DotEnv(reason) => write!(f, "failed to read .env: {reason}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads the process environment, with `.env` in the working directory (if present) as a
    /// lower-priority source.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut values: HashMap<String, String> = match dotenvy::from_filename_iter(".env") {
            Ok(iter) => iter
                .collect::<Result<_, _>>()
                .map_err(|err| ConfigError::DotEnv(err.to_string()))?,
            Err(err) if err.not_found() => HashMap::new(),
            Err(err) => return Err(ConfigError::DotEnv(err.to_string())),
        };
        values.extend(std::env::vars());
        Self::from_lookup(|key| values.get(key).cloned())
    }

    /// Builds the configuration from any key lookup; tests pass a map.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let source = Source(&lookup);
        let env = match source.string("ENV", "dev").to_ascii_lowercase().as_str() {
            "dev" | "development" | "local" | "test" => Env::Dev,
            "prod" | "production" => Env::Prod,
            other => {
                return Err(invalid(
                    "ENV",
                    format!("expected dev or prod, got {other:?}"),
                ));
            }
        };
        let log_format = match source
            .string("LOG_FORMAT", "json")
            .to_ascii_lowercase()
            .as_str()
        {
            "json" => LogFormat::Json,
            "pretty" | "text" => LogFormat::Pretty,
            other => {
                return Err(invalid(
                    "LOG_FORMAT",
                    format!("expected json or pretty, got {other:?}"),
                ));
            }
        };
        let jwt_algorithm = source.string("JWT_ALGORITHM", "HS256").to_ascii_uppercase();
        if !matches!(jwt_algorithm.as_str(), "HS256" | "HS384" | "HS512") {
            return Err(invalid(
                "JWT_ALGORITHM",
                format!("expected HS256, HS384 or HS512, got {jwt_algorithm:?}"),
            ));
        }
        let bcrypt_cost = source.number("BCRYPT_COST", 12)?;
        if !(4..=31).contains(&bcrypt_cost) {
            return Err(invalid(
                "BCRYPT_COST",
                "must be between 4 and 31".to_owned(),
            ));
        }

        let s3_region = source.string("S3_REGION", "us-east-1");
        let config = Self {
            env,
            database_url: source
                .optional("DATABASE_URL")
                .map(|url| Secret::new(normalize_database_url(&url))),
            database_max_connections: source.number("DATABASE_MAX_CONNECTIONS", 5)?,
            data_dir: PathBuf::from(source.string("ADIUVA_DATA_DIR", "./.adiuva")),
            port: source.number("PORT", 8000)?,
            jwt_secret: Secret::new(
                source
                    .raw("JWT_SECRET")
                    .unwrap_or_else(|| DEFAULT_JWT_SECRET.to_owned()),
            ),
            jwt_algorithm,
            jwt_issuer: source.string("JWT_ISSUER", "adiuva-api"),
            jwt_audience: source.string("JWT_AUDIENCE", "adiuva-app"),
            jwt_access_token_expire_minutes: source
                .number("JWT_ACCESS_TOKEN_EXPIRE_MINUTES", 30)?,
            jwt_refresh_token_expire_days: source.number("JWT_REFRESH_TOKEN_EXPIRE_DAYS", 30)?,
            bcrypt_cost,
            cors_origins: parse_list(&source.string(
                "CORS_ORIGINS",
                r#"["app://.", "http://localhost:3000", "http://localhost:5173"]"#,
            )),
            // Lambda takes 6 MB per invocation and binary bodies arrive base64-encoded in it.
            max_body_bytes: source.number("MAX_BODY_BYTES", 4 * 1024 * 1024)?,
            log_format,
            stripe_secret_key: source.secret("STRIPE_SECRET_KEY"),
            stripe_webhook_secret: source.secret("STRIPE_WEBHOOK_SECRET"),
            s3_bucket: source.string("S3_BUCKET", ""),
            aws_region: source.string("AWS_REGION", &s3_region),
            s3_region,
            s3_endpoint_url: source.string("S3_ENDPOINT_URL", ""),
            aws_access_key_id: source.string("AWS_ACCESS_KEY_ID", ""),
            aws_secret_access_key: source.secret("AWS_SECRET_ACCESS_KEY"),
            aws_session_token: source.secret("AWS_SESSION_TOKEN"),
            dynamodb_table: source.string("DYNAMODB_TABLE", ""),
            dynamodb_endpoint_url: source.string("DYNAMODB_ENDPOINT_URL", ""),
            public_base_url: source
                .optional("PUBLIC_BASE_URL")
                .unwrap_or_else(|| {
                    format!(
                        "http://127.0.0.1:{}",
                        source.optional("PORT").unwrap_or_else(|| "8000".into())
                    )
                })
                .trim_end_matches('/')
                .to_owned(),
            quota_unit_bytes: source.number("QUOTA_UNIT_BYTES", 1 << 30)?,
            upload_url_expire_minutes: source.number("UPLOAD_URL_EXPIRE_MINUTES", 15)?,
            orphan_grace_minutes: source.number("ORPHAN_GRACE_MINUTES", 60)?,
            pinecone_api_key: source.secret("PINECONE_API_KEY"),
            pinecone_index: source.string("PINECONE_INDEX", "adiuva"),
            qdrant_url: source.string("QDRANT_URL", ""),
            qdrant_api_key: source.secret("QDRANT_API_KEY"),
            qdrant_collection: source.string("QDRANT_COLLECTION", "adiuva_vectors"),
            openai_api_key: source.secret("OPENAI_API_KEY"),
            llm_model: source.string("LLM_MODEL", "gpt-4o"),
            llm_router_model: source.string("LLM_ROUTER_MODEL", "gpt-4o-mini"),
            llm_base_url: source
                .optional("LLM_BASE_URL")
                .or_else(|| source.optional("OPENAI_BASE_URL"))
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned(),
            openrouter_api_key: source.secret("OPENROUTER_API_KEY"),
            anthropic_api_key: source.secret("ANTHROPIC_API_KEY"),
            gemini_api_key: source.secret("GEMINI_API_KEY"),
            ollama_base_url: source
                .optional("OLLAMA_BASE_URL")
                .or_else(|| source.optional("OLLAMA_API_BASE"))
                .unwrap_or_else(|| "http://localhost:11434".to_owned())
                .trim_end_matches('/')
                .to_owned(),
            llm_timeout_seconds: source.number("LLM_TIMEOUT_SECONDS", 60)?,
            llm_max_retries: source.number("LLM_MAX_RETRIES", 2)?,
            llm_max_output_tokens: source.number("LLM_MAX_OUTPUT_TOKENS", 1024)?,
            chat_timeout_seconds: source.number("CHAT_TIMEOUT_SECONDS", 28)?,
            ws_heartbeat_seconds: source.number("WS_HEARTBEAT_SECONDS", 30)?,
            ws_management_endpoint_url: source
                .string("WS_MANAGEMENT_ENDPOINT_URL", "")
                .trim_end_matches('/')
                .to_owned(),
            langfuse_public_key: source.string("LANGFUSE_PUBLIC_KEY", ""),
            langfuse_secret_key: source.secret("LANGFUSE_SECRET_KEY"),
            langfuse_host: source
                .string("LANGFUSE_HOST", "https://cloud.langfuse.com")
                .trim_end_matches('/')
                .to_owned(),
        };
        config.check_production()?;
        Ok(config)
    }

    /// Production refuses the defaults that are only safe on a developer's machine.
    fn check_production(&self) -> Result<(), ConfigError> {
        if self.env != Env::Prod {
            return Ok(());
        }
        let secret = self.jwt_secret.expose();
        if secret.is_empty() || secret == DEFAULT_JWT_SECRET {
            return Err(ConfigError::InsecureInProduction(
                "JWT_SECRET is empty or the default; set a random secret of at least 32 bytes"
                    .to_owned(),
            ));
        }
        if secret.len() < MIN_PROD_SECRET_BYTES {
            return Err(ConfigError::InsecureInProduction(format!(
                "JWT_SECRET is {} bytes; use at least {MIN_PROD_SECRET_BYTES}",
                secret.len()
            )));
        }
        Ok(())
    }

    pub fn is_prod(&self) -> bool {
        self.env == Env::Prod
    }
}

struct Source<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Source<'_> {
    fn raw(&self, key: &str) -> Option<String> {
        (self.0)(key)
    }

    /// A value that is unset or blank counts as absent.
    fn optional(&self, key: &str) -> Option<String> {
        self.raw(key)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn string(&self, key: &str, default: &str) -> String {
        self.optional(key).unwrap_or_else(|| default.to_owned())
    }

    fn secret(&self, key: &str) -> Secret {
        Secret::new(self.optional(key).unwrap_or_default())
    }

    fn number<T: std::str::FromStr>(&self, key: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.optional(key) {
            None => Ok(default),
            Some(value) => value
                .parse()
                .map_err(|err| invalid(key, format!("{value:?}: {err}"))),
        }
    }
}

fn invalid(key: &'static str, reason: String) -> ConfigError {
    ConfigError::Invalid { key, reason }
}

/// Accepts a JSON list (the reference's format) or a comma-separated list.
fn parse_list(value: &str) -> Vec<String> {
    let trimmed = value.trim();
    let inner = trimmed
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(trimmed);
    inner
        .split(',')
        .map(|item| item.trim().trim_matches('"').trim().to_owned())
        .filter(|item| !item.is_empty())
        .collect()
}

/// The Python deployment used SQLAlchemy URLs (`postgresql+asyncpg://`); sqlx wants
/// `postgres://`. Accepting both lets an existing `.env` keep working.
fn normalize_database_url(url: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|key| map.get(key).cloned())
    }

    #[test]
    fn defaults_match_the_reference() {
        let config = config(&[]).unwrap();
        assert_eq!(config.env, Env::Dev);
        assert_eq!(config.database_url, None);
        assert_eq!(config.jwt_secret.expose(), DEFAULT_JWT_SECRET);
        assert_eq!(config.jwt_algorithm, "HS256");
        assert_eq!(config.jwt_access_token_expire_minutes, 30);
        assert_eq!(config.jwt_refresh_token_expire_days, 30);
        assert_eq!(config.s3_region, "us-east-1");
        assert_eq!(config.aws_region, "us-east-1");
        assert_eq!(config.dynamodb_table, "");
        assert_eq!(config.pinecone_index, "adiuva");
        assert_eq!(config.llm_model, "gpt-4o");
        assert_eq!(config.llm_router_model, "gpt-4o-mini");
        assert_eq!(config.llm_base_url, "");
        assert_eq!(config.ollama_base_url, "http://localhost:11434");
        assert_eq!(config.chat_timeout_seconds, 28);
        assert_eq!(
            config.cors_origins,
            ["app://.", "http://localhost:3000", "http://localhost:5173"]
        );
        assert_eq!(config.port, 8000);
        assert_eq!(config.data_dir, PathBuf::from("./.adiuva"));
        assert_eq!(config.public_base_url, "http://127.0.0.1:8000");
        assert_eq!(config.quota_unit_bytes, 1 << 30);
    }

    #[test]
    fn prod_refuses_default_empty_and_short_secrets() {
        for secret in [
            None,
            Some(""),
            Some(DEFAULT_JWT_SECRET),
            Some("short-secret"),
        ] {
            let mut pairs = vec![("ENV", "prod")];
            if let Some(secret) = secret {
                pairs.push(("JWT_SECRET", secret));
            }
            let err = config(&pairs).unwrap_err();
            assert!(
                matches!(err, ConfigError::InsecureInProduction(_)),
                "{secret:?} gave {err:?}"
            );
        }
        let ok = config(&[
            ("ENV", "prod"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .unwrap();
        assert!(ok.is_prod());
    }

    #[test]
    fn dev_accepts_the_default_secret() {
        assert!(config(&[("ENV", "dev"), ("JWT_SECRET", "")]).is_ok());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let config = config(&[
            ("JWT_SECRET", "super-secret-value"),
            ("DATABASE_URL", "postgres://u:pw@h/db"),
        ])
        .unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("super-secret-value"));
        assert!(!debug.contains("pw@h"));
    }

    #[test]
    fn sqlalchemy_urls_and_comma_lists_are_accepted() {
        let config = config(&[
            (
                "DATABASE_URL",
                "postgresql+asyncpg://postgres:postgres@localhost:5432/adiuva",
            ),
            ("CORS_ORIGINS", "https://a.example, https://b.example"),
        ])
        .unwrap();
        assert_eq!(
            config.database_url.unwrap().expose(),
            "postgres://postgres:postgres@localhost:5432/adiuva"
        );
        assert_eq!(
            config.cors_origins,
            ["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn aws_region_defaults_to_the_s3_region() {
        let s3_only = config(&[("S3_REGION", "eu-central-1")]).unwrap();
        assert_eq!(s3_only.aws_region, "eu-central-1");
        let both = config(&[("S3_REGION", "eu-central-1"), ("AWS_REGION", "eu-west-1")]).unwrap();
        assert_eq!(both.aws_region, "eu-west-1");
    }

    #[test]
    fn bad_values_name_their_variable() {
        assert_eq!(
            config(&[("PORT", "eighty")]).unwrap_err().to_string(),
            "invalid PORT: \"eighty\": invalid digit found in string"
        );
        assert!(matches!(
            config(&[("JWT_ALGORITHM", "none")]),
            Err(ConfigError::Invalid {
                key: "JWT_ALGORITHM",
                ..
            })
        ));
        assert!(matches!(
            config(&[("ENV", "staging")]),
            Err(ConfigError::Invalid { key: "ENV", .. })
        ));
    }

    #[test]
    fn llm_base_url_also_comes_from_the_openai_sdk_name() {
        let config = config(&[("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")]).unwrap();
        assert_eq!(config.llm_base_url, "http://127.0.0.1:9/v1");
        let config = config_with_both();
        assert_eq!(config.llm_base_url, "http://llm/v1");
    }

    fn config_with_both() -> Config {
        config(&[
            ("LLM_BASE_URL", "http://llm/v1"),
            ("OPENAI_BASE_URL", "http://other/v1"),
        ])
        .unwrap()
    }
}
