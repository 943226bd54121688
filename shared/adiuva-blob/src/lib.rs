//! The blob store: the bytes of user content (record versions, backups), addressed by key.
//!
//! One interface, [`BlobStore`], with two backends chosen by configuration: S3 in production
//! (`S3_BUCKET` set) and a folder under `ADIUVA_DATA_DIR` for the embedded default. A third
//! variant, [`FaultyStore`], wraps either one so tests can make chosen operations fail.
//!
//! Keys look like `{user_id}/{table}/{record_id}/{version}` or `{user_id}/backups/{id}`. Both
//! backends accept the same keys (see [`validate_key`]), so code that works on one works on the
//! other, and no key can name a path outside the local blobs folder.
//!
//! Errors are split by what the caller should do: [`BlobError::Unavailable`] means "try again
//! later" (answer 503 and keep state), [`BlobError::Failed`] is a bug or misconfiguration.
//!
//! The store is built once per process ([`BlobStore::from_config`] does no network I/O, so a
//! Lambda cold start does not wait for S3) and cloned cheaply into handlers.

mod faulty;
mod local;
mod s3;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use adiuva_aws::AwsSettings;
use adiuva_config::{Component, ConfigError, Context, Secret, Source};

use bytes::Bytes;

pub use faulty::{Faults, FaultyStore, InjectedFault, Op};
pub use local::{BodyTooLarge, LocalStore, UploadGrant};
pub use s3::S3Store;

/// Boxed cause carried by [`BlobError`], so callers log the whole chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What [`BlobStore::head`] and [`BlobStore::list`] report about one stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// The key the blob was stored under.
    pub key: String,
    /// Stored size in bytes, which quota accounting compares with what a client declared.
    pub size: u64,
    /// Last write, in milliseconds since the Unix epoch (file mtime or S3 `LastModified`), so the
    /// janitor can leave blobs younger than the orphan grace period alone.
    pub last_modified_ms: i64,
}

/// Where and how a client uploads bytes directly, so large bodies never pass through a Lambda.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedUpload {
    /// The URL to send the bytes to.
    pub url: String,
    /// The HTTP method to use: always `PUT`.
    pub method: String,
    /// Headers the client must send unchanged, because they are part of the signature (for
    /// S3, `x-amz-server-side-encryption`).
    pub headers: Vec<(String, String)>,
    /// When the URL stops working, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

/// A short-lived URL to GET a blob from, so large bodies never pass through a Lambda.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresignedDownload {
    pub url: String,
    /// When the URL stops working, in milliseconds since the Unix epoch.
    pub expires_at_ms: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The store cannot be reached or answered 5xx/throttling: callers answer 503 and keep state.
    #[error("blob store unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else (bad key, permission, local I/O error ...).
    #[error("blob store operation failed")]
    Failed(#[source] BoxError),
    /// A local upload URL was forged, altered, expired, or signed with another secret.
    #[error("upload token is invalid or expired")]
    InvalidUploadToken,
    /// Something is stored at the key already: an upload URL writes once.
    #[error("something was already uploaded to this URL")]
    AlreadyExists,
    /// The bytes sent to an upload URL are not the ones it was made for.
    #[error("the upload is not what was announced: {0}")]
    NotAnnounced(&'static str),
}

impl BlobError {
    /// True for [`BlobError::Unavailable`]: the operation may succeed if retried later.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }

    fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into().into())
    }
}

/// The blob store, as one enum rather than a trait object: the set of backends is closed, and
/// an enum keeps the futures `Send` without boxing on the hot path.
#[derive(Clone, Debug)]
pub enum BlobStore {
    S3(S3Store),
    Local(LocalStore),
    Faulty(FaultyStore),
}

/// `S3_BUCKET` (unset: a folder under `ADIUVA_DATA_DIR`), `S3_REGION`, `S3_ENDPOINT_URL`, the
/// AWS credentials, `UPLOAD_URL_EXPIRE_MINUTES`; for the folder, `PUBLIC_BASE_URL` (its upload
/// URLs start with it) and the server's secret (`JWT_SECRET`, or the generated development
/// one: see `Source::server_secret`), from which the key that signs them is derived.
#[derive(Debug, Clone)]
pub struct BlobSettings {
    pub s3: Option<S3Settings>,
    pub data_dir: PathBuf,
    pub public_base_url: String,
    /// The server's secret, for the folder only (S3 signs its own URLs); `None`: a random key
    /// of this process.
    pub signing_secret: Option<Secret>,
    /// How long an upload URL stays valid.
    pub upload_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct S3Settings {
    pub bucket: String,
    pub region: String,
    /// Custom endpoint (MinIO, moto_server); path-style addressing is used when set.
    pub endpoint_url: Option<String>,
    pub aws: AwsSettings,
}

impl BlobSettings {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        let minutes: u64 = source.number_in("UPLOAD_URL_EXPIRE_MINUTES", 15, 1..=7 * 24 * 60)?;
        let s3 = source.optional("S3_BUCKET");
        // Read only where it signs something: a Lambda on S3 (the janitor) needs no secret.
        let signing_secret = match s3 {
            None => Some(source.server_secret(source.env()?)?),
            Some(_) => None,
        };
        Ok(Self {
            s3: s3.map(|bucket| S3Settings {
                bucket,
                region: source.string("S3_REGION", "us-east-1"),
                endpoint_url: source.url("S3_ENDPOINT_URL"),
                aws: AwsSettings::from_source(source),
            }),
            data_dir: source.data_dir(),
            public_base_url: source.public_base_url(),
            signing_secret,
            upload_ttl: Duration::from_secs(minutes * 60),
        })
    }
}

impl Component for BlobStore {
    fn build(context: &Context) -> Result<Self, ConfigError> {
        let settings = BlobSettings::from_source(context.source())?;
        Self::from_settings(&settings).map_err(|err| ConfigError::unusable("the blob store", err))
    }
}

impl BlobStore {
    /// S3 when a bucket is set, else the local folder. No network I/O here (Lambda cold start).
    pub fn from_settings(settings: &BlobSettings) -> Result<Self, BlobError> {
        match &settings.s3 {
            None => {
                let secret = match &settings.signing_secret {
                    // A key of its own, so these URLs share nothing with access tokens, stub
                    // links or cursors made from the same secret.
                    Some(secret) => adiuva_checksum::derive_key(
                        secret.expose().as_bytes(),
                        adiuva_checksum::purpose::BLOB_URLS,
                    ),
                    None => {
                        let mut key = [0u8; 32];
                        getrandom::fill(&mut key).map_err(|err| BlobError::Failed(err.into()))?;
                        key
                    }
                };
                Ok(Self::Local(LocalStore::new(
                    settings.data_dir.join("blobs"),
                    settings.public_base_url.clone(),
                    &secret,
                    settings.upload_ttl,
                )))
            }
            Some(s3) => Ok(Self::S3(S3Store::new(s3, settings.upload_ttl)?)),
        }
    }

    /// Stores bytes at key. S3: PutObject with SSE-S3 (ServerSideEncryption::Aes256) and user
    /// metadata `checksum` = checksum_hex. Local: write to a temp file in the same dir then
    /// rename (atomic), with the checksum in a sidecar file next to it.
    ///
    /// A reader sees either the old bytes or the new ones, never a partial write.
    pub async fn put(&self, key: &str, bytes: Bytes, checksum_hex: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        match self {
            Self::S3(store) => store.put(key, bytes, checksum_hex).await,
            Self::Local(store) => store.put(key, bytes, checksum_hex).await,
            Self::Faulty(store) => store.put(key, bytes, checksum_hex).await,
        }
    }

    /// The whole blob, `None` when absent. Meant for blobs that fit in memory (one record
    /// version); use [`BlobStore::digest`] to check a large one.
    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError> {
        validate_key(key)?;
        match self {
            Self::S3(store) => store.get(key).await,
            Self::Local(store) => store.get(key).await,
            Self::Faulty(store) => store.get(key).await,
        }
    }

    /// Size and modification time without reading the bytes, `None` when absent.
    pub async fn head(&self, key: &str) -> Result<Option<BlobInfo>, BlobError> {
        validate_key(key)?;
        match self {
            Self::S3(store) => store.head(key).await,
            Self::Local(store) => store.head(key).await,
            Self::Faulty(store) => store.head(key).await,
        }
    }

    /// Idempotent: deleting an absent key is Ok, so a retried cleanup never fails on the part
    /// that already succeeded.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        match self {
            Self::S3(store) => store.delete(key).await,
            Self::Local(store) => store.delete(key).await,
            Self::Faulty(store) => store.delete(key).await,
        }
    }

    /// Every blob whose key starts with prefix (all pages), any order. Used by account deletion
    /// and the orphan janitor, which must see everything under a user.
    pub async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        validate_prefix(prefix)?;
        match self {
            Self::S3(store) => store.list(prefix).await,
            Self::Local(store) => store.list(prefix).await,
            Self::Faulty(store) => store.list(prefix).await,
        }
    }

    /// One page of the whole store in key order: up to `max` blobs with keys after
    /// `start_after` (from the first without it), and whether more follow. The janitor walks
    /// the store this way, a page at a time, resuming where its last run stopped.
    pub async fn list_page(
        &self,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<BlobInfo>, bool), BlobError> {
        match self {
            Self::S3(store) => store.list_page(start_after, max).await,
            Self::Local(store) => store.list_page(start_after, max).await,
            Self::Faulty(store) => store.list_page(start_after, max).await,
        }
    }

    /// Size and lowercase-hex SHA-256 of what is stored, computed by streaming (never the whole
    /// object in memory) — used to verify a presigned upload before it is committed. None when
    /// absent.
    pub async fn digest(&self, key: &str) -> Result<Option<(u64, String)>, BlobError> {
        validate_key(key)?;
        match self {
            Self::S3(store) => store.digest(key).await,
            Self::Local(store) => store.digest(key).await,
            Self::Faulty(store) => store.digest(key).await,
        }
    }

    /// A URL the client PUTs exactly the announced bytes to, once. S3: a presigned PutObject
    /// URL that signs `Content-Length`, `x-amz-checksum-sha256` (S3 refuses other bytes) and
    /// `If-None-Match: *` (S3 refuses a second write), all in `headers` because they are
    /// signed. Local: `{public_base_url}/api/v1/storage/blobs/{token}`, where the token is
    /// `base64url(payload).base64url(hmac)` and the payload carries the key, size, SHA-256 and
    /// expiry, checked while the body streams in.
    ///
    /// Nothing is stored until the client uploads; verify with [`BlobStore::digest`].
    pub async fn presign_put(
        &self,
        key: &str,
        size: u64,
        sha256_hex: &str,
    ) -> Result<PresignedUpload, BlobError> {
        validate_key(key)?;
        match self {
            Self::S3(store) => store.presign_put(key, size, sha256_hex).await,
            Self::Local(store) => store.presign_put(key, size, sha256_hex),
            Self::Faulty(store) => store.presign_put(key, size, sha256_hex).await,
        }
    }

    /// A URL that serves the blob at `key` for `ttl`: a presigned S3 GET, or a signed URL of
    /// the local server. No network I/O.
    pub async fn presign_get(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<PresignedDownload, BlobError> {
        validate_key(key)?;
        match self {
            Self::S3(store) => store.presign_get(key, ttl).await,
            Self::Local(store) => Ok(store.presign_get(key, ttl)),
            Self::Faulty(store) => store.presign_get(key, ttl).await,
        }
    }

    /// The local backend, also when wrapped by [`FaultyStore`]: the upload route needs it to
    /// verify upload tokens and stream bodies. `None` on S3, where clients upload to S3 itself.
    pub fn local(&self) -> Option<&LocalStore> {
        match self {
            Self::S3(_) => None,
            Self::Local(store) => Some(store),
            Self::Faulty(store) => store.inner().local(),
        }
    }
}

/// Longest key accepted: S3's limit.
const MAX_KEY_BYTES: usize = 1024;

/// Checks a key before any backend sees it, so both backends accept exactly the same keys.
///
/// A key is `/`-separated segments, none empty and none starting with `.` (which rules out `.`
/// and `..`, and keeps the local backend's temp and sidecar files, which start with `.`, out of
/// the key space); no backslash, NUL or leading `/`. So a key can never escape the local blobs
/// folder or collide with its bookkeeping files.
pub fn validate_key(key: &str) -> Result<(), BlobError> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES {
        return Err(BlobError::failed(format!(
            "blob key must be 1 to {MAX_KEY_BYTES} bytes"
        )));
    }
    if key.contains(['\\', '\0']) {
        return Err(BlobError::failed(
            "blob key must not contain backslashes or NUL",
        ));
    }
    if key.split('/').any(|segment| !valid_segment(segment)) {
        return Err(BlobError::failed(
            "blob key segments must be non-empty and must not start with '.'",
        ));
    }
    Ok(())
}

/// A list prefix is a key with a possibly partial or empty last segment (`u1/`, `u1/rec`, ``).
fn validate_prefix(prefix: &str) -> Result<(), BlobError> {
    if prefix.len() > MAX_KEY_BYTES || prefix.contains(['\\', '\0']) {
        return Err(BlobError::failed("invalid blob key prefix"));
    }
    if let Some((dirs, _last)) = prefix.rsplit_once('/')
        && dirs.split('/').any(|segment| !valid_segment(segment))
    {
        return Err(BlobError::failed("invalid blob key prefix"));
    }
    Ok(())
}

fn valid_segment(segment: &str) -> bool {
    !segment.is_empty() && !segment.starts_with('.')
}

fn now_ms() -> i64 {
    system_time_ms(SystemTime::now())
}

fn system_time_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(elapsed) => i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

fn duration_ms(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
