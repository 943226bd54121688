//! The embedded backend: one file per blob under a folder, the key as its relative path.
//!
//! Writes go to a temp file in the blob's own folder and are renamed over the target, so a
//! reader sees the old bytes or the new ones, never a torn write. Bookkeeping files start with
//! `.` (temp files `.{name}.{pid}.{n}.tmp`, checksum sidecars `.{name}.checksum`), a name no
//! key segment can have, so `list` skips them and no key can overwrite them.
//!
//! Clients upload through the API (`PUT /api/v1/storage/blobs/{token}`) rather than to S3; the
//! token is an HMAC of the key and expiry, so the route needs no database lookup to authorize.

use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use adiuva_checksum::{Sha256, Signer};
use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::{BlobError, BlobInfo, BoxError, PresignedDownload, PresignedUpload, validate_key};

/// Domain separation between the two kinds of token signed with this store's key (derived for
/// `adiuva_checksum::purpose::BLOB_URLS`): an upload token never opens a download, or the
/// other way round.
const TOKEN_DOMAIN: &[u8] = b"adiuva-blob/upload-token/v1\0";
/// The same for download tokens.
const DOWNLOAD_DOMAIN: &[u8] = b"adiuva-blob/download-token/v1\0";

/// Read and hash in chunks of this size, so a digest never holds a whole blob in memory.
const CHUNK_BYTES: usize = 64 * 1024;

/// Names temp files uniquely within this process; the pid makes them unique across processes.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The local-folder backend. Cheap to clone: the signing key is shared.
#[derive(Clone)]
pub struct LocalStore {
    /// The blobs folder (`{ADIUVA_DATA_DIR}/blobs`); created on first write.
    dir: PathBuf,
    /// Where clients reach this API, so upload URLs work from the desktop app.
    public_base_url: String,
    /// Signs the upload URLs (the secret is redacted in its `Debug`).
    signer: Signer,
    /// Signs the download URLs: another domain, so an upload token never opens a download.
    download_signer: Signer,
    /// How long an upload token stays valid.
    upload_ttl: Duration,
}

impl fmt::Debug for LocalStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalStore")
            .field("dir", &self.dir)
            .field("public_base_url", &self.public_base_url)
            .field("signer", &self.signer)
            .field("upload_ttl", &self.upload_ttl)
            .finish()
    }
}

/// The key of a verified token's payload `{expires_at_ms}\n{key}`, unless it has expired.
fn parse_token(payload: &[u8]) -> Result<String, BlobError> {
    let payload = std::str::from_utf8(payload).map_err(|_| BlobError::InvalidUploadToken)?;
    let (expires_at_ms, key) = payload
        .split_once('\n')
        .ok_or(BlobError::InvalidUploadToken)?;
    let expires_at_ms: i64 = expires_at_ms
        .parse()
        .map_err(|_| BlobError::InvalidUploadToken)?;
    if crate::now_ms() >= expires_at_ms {
        return Err(BlobError::InvalidUploadToken);
    }
    validate_key(key).map_err(|_| BlobError::InvalidUploadToken)?;
    Ok(key.to_owned())
}

/// What a local upload URL allows: exactly `size` bytes with this SHA-256 at `key`, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadGrant {
    pub key: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
}

/// The cause inside [`BlobError::Failed`] when [`LocalStore::put_upload`] receives more than
/// `max_bytes`; the upload route downcasts to it to answer 413 instead of 500.
#[derive(Debug, thiserror::Error)]
#[error("upload body exceeds {max_bytes} bytes")]
pub struct BodyTooLarge {
    pub max_bytes: u64,
}

/// A local I/O error with what was being done, for the logs.
#[derive(Debug, thiserror::Error)]
#[error("failed to {action} {path}")]
struct LocalIoError {
    action: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

fn io_failed(action: &'static str, path: &Path, source: io::Error) -> BlobError {
    BlobError::Failed(Box::new(LocalIoError {
        action,
        path: path.to_owned(),
        source,
    }))
}

/// "Nothing at this key": the file is missing, or a path component is missing, is a file, or
/// the key names a folder (because longer keys exist below it).
fn is_absent(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory | io::ErrorKind::IsADirectory
    )
}

impl LocalStore {
    pub fn new(
        dir: PathBuf,
        public_base_url: String,
        signing_secret: &[u8],
        upload_ttl: Duration,
    ) -> Self {
        Self {
            dir,
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
            signer: Signer::new(signing_secret, TOKEN_DOMAIN),
            download_signer: Signer::new(signing_secret, DOWNLOAD_DOMAIN),
            upload_ttl,
        }
    }

    /// Verifies an upload token from presign_put and returns what it allows
    /// (InvalidUploadToken otherwise, e.g. expired/tampered).
    pub fn verify_upload_token(&self, token: &str) -> Result<UploadGrant, BlobError> {
        let payload = self
            .signer
            .verify(token)
            .ok_or(BlobError::InvalidUploadToken)?;
        let payload = std::str::from_utf8(&payload).map_err(|_| BlobError::InvalidUploadToken)?;
        let mut parts = payload.splitn(4, '\n');
        let (Some(expires_at_ms), Some(size), Some(sha256), Some(key)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(BlobError::InvalidUploadToken);
        };
        let expires_at_ms: i64 = expires_at_ms
            .parse()
            .map_err(|_| BlobError::InvalidUploadToken)?;
        if crate::now_ms() >= expires_at_ms {
            return Err(BlobError::InvalidUploadToken);
        }
        validate_key(key).map_err(|_| BlobError::InvalidUploadToken)?;
        Ok(UploadGrant {
            key: key.to_owned(),
            size: size.parse().map_err(|_| BlobError::InvalidUploadToken)?,
            sha256: sha256.to_owned(),
        })
    }

    /// Streams the body of an upload URL to its key: exactly the announced size and SHA-256
    /// (checked as the bytes arrive: more than the size stops the stream), and only if nothing
    /// is stored at the key yet (write-once, atomically: a hard link of the finished temp file
    /// fails if the key exists). Returns the number of bytes stored. On any error (body error,
    /// other bytes, a second write, I/O) nothing is stored and what was there stays.
    pub async fn put_upload<S, E>(&self, grant: &UploadGrant, body: S) -> Result<u64, BlobError>
    where
        S: futures_core::Stream<Item = Result<Bytes, E>> + Unpin,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        validate_key(&grant.key)?;
        let target = self.path(&grant.key);
        if tokio::fs::try_exists(&target).await.unwrap_or(false) {
            return Err(BlobError::AlreadyExists);
        }
        let parent = parent_of(&target).to_owned();
        tokio::fs::create_dir_all(&parent)
            .await
            .map_err(|err| io_failed("create folder", &parent, err))?;
        let temp = temp_path(&target);
        let written = match write_stream(&temp, body, grant.size).await {
            Ok((size, _)) if size != grant.size => {
                Err(BlobError::NotAnnounced("fewer bytes than announced"))
            }
            Ok((_, sha256)) if hex::encode(sha256) != grant.sha256 => Err(BlobError::NotAnnounced(
                "the SHA-256 is not the announced one",
            )),
            Ok((size, _)) => Ok(size),
            Err(err) => Err(err),
        };
        let size = match written {
            Ok(size) => size,
            Err(err) => {
                // Best effort: a leftover temp file is invisible to readers and to `list`.
                let _ = tokio::fs::remove_file(&temp).await;
                return Err(err);
            }
        };
        let checksum = grant.sha256.clone();
        blocking(move || {
            let linked = fs::hard_link(&temp, &target);
            let _ = fs::remove_file(&temp);
            match linked {
                Ok(()) => write_sidecar(&target, &checksum),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                    Err(BlobError::AlreadyExists)
                }
                Err(err) => Err(io_failed("link into place", &target, err)),
            }
        })
        .await?;
        Ok(size)
    }

    pub(crate) async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        checksum_hex: &str,
    ) -> Result<(), BlobError> {
        let target = self.path(key);
        let checksum = checksum_hex.to_owned();
        blocking(move || {
            let parent = parent_of(&target);
            fs::create_dir_all(parent).map_err(|err| io_failed("create folder", parent, err))?;
            // The sidecar goes first: a blob visible at its key always has its checksum next
            // to it (a crash in between leaves a sidecar without a blob, which nothing reads).
            write_sidecar(&target, &checksum)?;
            write_atomically(&target, &bytes)
        })
        .await
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError> {
        let path = self.path(key);
        blocking(move || match fs::read(&path) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(err) if is_absent(&err) => Ok(None),
            Err(err) => Err(io_failed("read", &path, err)),
        })
        .await
    }

    pub(crate) async fn head(&self, key: &str) -> Result<Option<BlobInfo>, BlobError> {
        let path = self.path(key);
        let key = key.to_owned();
        blocking(move || match fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => Ok(Some(info(key, &metadata))),
            Ok(_) => Ok(None),
            Err(err) if is_absent(&err) => Ok(None),
            Err(err) => Err(io_failed("read metadata of", &path, err)),
        })
        .await
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path(key);
        blocking(move || {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(err) if is_absent(&err) => {}
                Err(err) => return Err(io_failed("delete", &path, err)),
            }
            // Empty folders are left in place: removing them would race with a concurrent put
            // into the same folder, and they cost nothing to `list`.
            let sidecar = sidecar_path(&path);
            match fs::remove_file(&sidecar) {
                Ok(()) => Ok(()),
                Err(err) if is_absent(&err) => Ok(()),
                Err(err) => Err(io_failed("delete", &sidecar, err)),
            }
        })
        .await
    }

    /// A page of the folder in key order (see [`crate::BlobStore::list_page`]). The folder is
    /// walked whole for each page: the embedded store serves one machine's data.
    pub(crate) async fn list_page(
        &self,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<BlobInfo>, bool), BlobError> {
        let mut all = self.list("").await?;
        all.sort_by(|a, b| a.key.cmp(&b.key));
        let mut after: Vec<BlobInfo> = all
            .into_iter()
            .filter(|blob| start_after.is_none_or(|start| blob.key.as_str() > start))
            .collect();
        let more = after.len() > max;
        after.truncate(max);
        Ok((after, more))
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        // Start at the deepest folder the prefix names, not at the root: listing one user's
        // blobs must not walk everybody's.
        let (start_key, start_dir) = match prefix.rsplit_once('/') {
            Some((dirs, _)) => (format!("{dirs}/"), self.dir.join(dirs)),
            None => (String::new(), self.dir.clone()),
        };
        let prefix = prefix.to_owned();
        blocking(move || {
            let mut found = Vec::new();
            let mut pending = vec![(start_key, start_dir)];
            while let Some((key_prefix, dir)) = pending.pop() {
                let entries = match fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(err) if is_absent(&err) => continue,
                    Err(err) => return Err(io_failed("list", &dir, err)),
                };
                for entry in entries {
                    let entry = entry.map_err(|err| io_failed("list", &dir, err))?;
                    // Bookkeeping files start with '.', and a name that is not UTF-8 was not
                    // written by this store.
                    let Ok(name) = entry.file_name().into_string() else {
                        continue;
                    };
                    if name.starts_with('.') {
                        continue;
                    }
                    let key = format!("{key_prefix}{name}");
                    let file_type = entry
                        .file_type()
                        .map_err(|err| io_failed("list", &entry.path(), err))?;
                    if file_type.is_dir() {
                        // Descend only where matching keys can be.
                        let key_dir = format!("{key}/");
                        if key_dir.starts_with(&prefix) || prefix.starts_with(&key_dir) {
                            pending.push((key_dir, entry.path()));
                        }
                    } else if file_type.is_file() && key.starts_with(&prefix) {
                        match entry.metadata() {
                            Ok(metadata) => found.push(info(key, &metadata)),
                            // Deleted since read_dir saw it.
                            Err(err) if is_absent(&err) => {}
                            Err(err) => return Err(io_failed("list", &entry.path(), err)),
                        }
                    }
                }
            }
            Ok(found)
        })
        .await
    }

    /// Size and SHA-256 (hex) of a stored blob: the checksum kept beside it (computed or
    /// checked when it was written), else the blob read and hashed.
    pub(crate) async fn digest(&self, key: &str) -> Result<Option<(u64, String)>, BlobError> {
        let path = self.path(key);
        blocking(move || {
            if let (Ok(metadata), Ok(checksum)) =
                (fs::metadata(&path), fs::read_to_string(sidecar_path(&path)))
                && metadata.is_file()
            {
                return Ok(Some((metadata.len(), checksum)));
            }
            let mut file = match fs::File::open(&path) {
                Ok(file) => file,
                Err(err) if is_absent(&err) => return Ok(None),
                Err(err) => return Err(io_failed("open", &path, err)),
            };
            let mut hasher = Sha256::new();
            let mut buffer = vec![0; CHUNK_BYTES];
            let mut size = 0u64;
            loop {
                let read = match file.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    // Opening a folder succeeds on Linux; reading it says EISDIR.
                    Err(err) if is_absent(&err) => return Ok(None),
                    Err(err) => return Err(io_failed("read", &path, err)),
                };
                hasher.update(&buffer[..read]);
                size += read as u64;
            }
            Ok(Some((size, hex::encode(hasher.finish()))))
        })
        .await
    }

    pub(crate) fn presign_put(
        &self,
        key: &str,
        size: u64,
        sha256_hex: &str,
    ) -> Result<PresignedUpload, BlobError> {
        let expires_at_ms = crate::now_ms().saturating_add(crate::duration_ms(self.upload_ttl));
        let token = self.upload_token(key, size, sha256_hex, expires_at_ms);
        Ok(PresignedUpload {
            url: format!("{}/api/v1/storage/blobs/{token}", self.public_base_url),
            method: "PUT".to_owned(),
            headers: Vec::new(),
            expires_at_ms,
        })
    }

    /// A signed URL of the local server that serves `key` until `ttl` has passed.
    pub(crate) fn presign_get(&self, key: &str, ttl: Duration) -> PresignedDownload {
        let expires_at_ms = crate::now_ms().saturating_add(crate::duration_ms(ttl));
        let token = self
            .download_signer
            .sign(format!("{expires_at_ms}\n{key}").as_bytes());
        PresignedDownload {
            url: format!("{}/api/v1/storage/blobs/{token}", self.public_base_url),
            expires_at_ms,
        }
    }

    /// Verifies a download token from [`LocalStore::presign_get`] and returns its key.
    pub fn verify_download_token(&self, token: &str) -> Result<String, BlobError> {
        let payload = self
            .download_signer
            .verify(token)
            .ok_or(BlobError::InvalidUploadToken)?;
        parse_token(&payload)
    }

    /// `base64url(payload).base64url(hmac)` with payload
    /// `{expires_at_ms}\n{size}\n{sha256 hex}\n{key}`: the key comes last and may hold any
    /// character, so the split is unambiguous.
    fn upload_token(&self, key: &str, size: u64, sha256_hex: &str, expires_at_ms: i64) -> String {
        self.signer
            .sign(format!("{expires_at_ms}\n{size}\n{sha256_hex}\n{key}").as_bytes())
    }

    /// The file of a key that [`validate_key`] accepted: always inside `dir`.
    fn path(&self, key: &str) -> PathBuf {
        let mut path = self.dir.clone();
        path.extend(key.split('/'));
        path
    }
}

/// Runs blocking file work off the async workers, as one hop per operation.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, BlobError> + Send + 'static,
) -> Result<T, BlobError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| BlobError::Failed(Box::new(err)))?
}

fn parent_of(path: &Path) -> &Path {
    path.parent()
        .expect("a blob path is below the blobs folder")
}

fn file_name(path: &Path) -> &str {
    path.file_name()
        .and_then(|name| name.to_str())
        .expect("a blob path ends in a UTF-8 key segment")
}

fn temp_path(target: &Path) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(
        ".{}.{}.{n}.tmp",
        file_name(target),
        std::process::id()
    ))
}

fn sidecar_path(target: &Path) -> PathBuf {
    target.with_file_name(format!(".{}.checksum", file_name(target)))
}

fn write_sidecar(target: &Path, checksum_hex: &str) -> Result<(), BlobError> {
    write_atomically(&sidecar_path(target), checksum_hex.as_bytes())
}

/// Temp file in the same folder (so `rename` stays on one filesystem and is atomic), synced
/// before the rename so a crash cannot leave a renamed but empty file.
fn write_atomically(target: &Path, bytes: &[u8]) -> Result<(), BlobError> {
    let temp = temp_path(target);
    let written = (|| {
        let mut file = fs::File::create(&temp)?;
        io::Write::write_all(&mut file, bytes)?;
        file.sync_data()
    })();
    if let Err(err) = written {
        let _ = fs::remove_file(&temp);
        return Err(io_failed("write", &temp, err));
    }
    fs::rename(&temp, target).map_err(|err| {
        let _ = fs::remove_file(&temp);
        io_failed("rename into place", target, err)
    })
}

/// Copies the stream into `temp`, hashing it, and stops as soon as it passes `max_bytes`.
async fn write_stream<S, E>(
    temp: &Path,
    mut body: S,
    max_bytes: u64,
) -> Result<(u64, [u8; 32]), BlobError>
where
    S: futures_core::Stream<Item = Result<Bytes, E>> + Unpin,
    E: Into<BoxError>,
{
    let mut file = tokio::fs::File::create(temp)
        .await
        .map_err(|err| io_failed("create", temp, err))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_next(cx)).await {
        let chunk = chunk.map_err(|err| BlobError::Failed(err.into()))?;
        size += chunk.len() as u64;
        if size > max_bytes {
            return Err(BlobError::Failed(Box::new(BodyTooLarge { max_bytes })));
        }
        hasher.update(&chunk);
        file.write_all(&chunk)
            .await
            .map_err(|err| io_failed("write", temp, err))?;
    }
    // tokio's File writes in the background: flush, then sync, before the rename publishes it.
    file.flush()
        .await
        .map_err(|err| io_failed("write", temp, err))?;
    file.sync_data()
        .await
        .map_err(|err| io_failed("sync", temp, err))?;
    Ok((size, hasher.finish()))
}

fn info(key: String, metadata: &fs::Metadata) -> BlobInfo {
    BlobInfo {
        key,
        size: metadata.len(),
        last_modified_ms: metadata.modified().map(crate::system_time_ms).unwrap_or(0),
    }
}
