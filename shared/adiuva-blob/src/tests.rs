//! The same contract runs against the local folder and against S3 (moto_server on loopback);
//! then what only one backend has: upload tokens and streaming for local, presigned URLs,
//! encryption and connection failures for S3, and the fault-injection decorator.

use std::collections::BTreeSet;
use std::error::Error as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::testing::{s3_settings, s3_store};
use crate::*;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A folder under the system temp dir, removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "adiuva-blob-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn from_pairs<K: Into<String>, V: Into<String>>(
    pairs: impl IntoIterator<Item = (K, V)>,
) -> Result<BlobStore, BlobError> {
    let source = adiuva_config::Source::from_pairs(pairs);
    BlobStore::from_settings(&crate::BlobSettings::from_source(&source).unwrap())
}

fn local_store(dir: &TempDir) -> LocalStore {
    LocalStore::new(
        dir.0.join("blobs"),
        "http://127.0.0.1:8000/".to_owned(),
        b"test-secret",
        Duration::from_secs(900),
    )
}

use adiuva_checksum::sha256_hex;

fn keys(infos: &[BlobInfo]) -> BTreeSet<&str> {
    infos.iter().map(|info| info.key.as_str()).collect()
}

fn assert_failed<T: std::fmt::Debug>(result: Result<T, BlobError>, what: &str) {
    assert!(
        matches!(result, Err(BlobError::Failed(_))),
        "{what}: expected Failed, got {result:?}"
    );
}

/// Files under `dir`, relative, bookkeeping files included.
fn files_under(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.insert(path.to_string_lossy().into_owned());
            }
        }
    }
    found
}

/// A body stream made of the given chunks, as an upload route would receive it.
struct Chunks(Vec<Result<Bytes, std::io::Error>>);

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Poll::Ready(if self.0.is_empty() {
            None
        } else {
            Some(self.0.remove(0))
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The contract both backends meet

async fn contract(store: &BlobStore) {
    let key = "u1/records/r1/1";

    // Absent keys.
    assert_eq!(store.get(key).await.unwrap(), None);
    assert_eq!(store.head(key).await.unwrap(), None);
    assert_eq!(store.digest(key).await.unwrap(), None);

    // Put, then every read sees the bytes.
    let before = now_ms();
    store
        .put(key, Bytes::from_static(b"hello"), &sha256_hex(b"hello"))
        .await
        .unwrap();
    let after = now_ms();
    assert_eq!(
        store.get(key).await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    let info = store.head(key).await.unwrap().unwrap();
    assert_eq!(info.key, key);
    assert_eq!(info.size, 5);
    // S3's LastModified has one-second precision.
    assert!(
        (before - 2000..=after + 2000).contains(&info.last_modified_ms),
        "last_modified_ms {} not within [{before}, {after}]",
        info.last_modified_ms
    );
    assert_eq!(
        store.digest(key).await.unwrap(),
        Some((5, sha256_hex(b"hello")))
    );

    // Overwrite replaces.
    store
        .put(key, Bytes::from_static(b"bye"), &sha256_hex(b"bye"))
        .await
        .unwrap();
    assert_eq!(store.get(key).await.unwrap().as_deref(), Some(&b"bye"[..]));
    assert_eq!(store.head(key).await.unwrap().unwrap().size, 3);

    // An empty blob is a blob.
    let empty = "u1/records/r0/1";
    store
        .put(empty, Bytes::new(), &sha256_hex(b""))
        .await
        .unwrap();
    assert_eq!(store.get(empty).await.unwrap(), Some(Bytes::new()));
    assert_eq!(
        store.digest(empty).await.unwrap(),
        Some((0, sha256_hex(b"")))
    );

    // A blob larger than one read chunk digests to the same hash as its bytes.
    let large_key = "u1/backups/b1";
    let large: Vec<u8> = (0..(1 << 20) + 12345).map(|i| (i % 251) as u8).collect();
    store
        .put(large_key, Bytes::from(large.clone()), &sha256_hex(&large))
        .await
        .unwrap();
    assert_eq!(
        store.digest(large_key).await.unwrap(),
        Some((large.len() as u64, sha256_hex(&large)))
    );
    assert_eq!(store.get(large_key).await.unwrap().unwrap(), large);

    // List by prefix: "u1/" must not match "u10/".
    for other in ["u1/records/r2/1", "u2/records/r1/1", "u10/records/x/1"] {
        store
            .put(other, Bytes::from_static(b"x"), &sha256_hex(b"x"))
            .await
            .unwrap();
    }
    let u1 = store.list("u1/").await.unwrap();
    assert_eq!(
        keys(&u1),
        BTreeSet::from([key, empty, large_key, "u1/records/r2/1"])
    );
    let large_info = u1.iter().find(|info| info.key == large_key).unwrap();
    assert_eq!(large_info.size, large.len() as u64);
    assert!(large_info.last_modified_ms >= before - 2000);
    assert_eq!(
        keys(&store.list("u1/records/r").await.unwrap()),
        BTreeSet::from([key, empty, "u1/records/r2/1"])
    );
    assert_eq!(
        keys(&store.list("u1").await.unwrap()),
        BTreeSet::from([key, empty, large_key, "u1/records/r2/1", "u10/records/x/1"])
    );
    assert_eq!(store.list("").await.unwrap().len(), 6);
    assert!(store.list("nobody/").await.unwrap().is_empty());

    // Delete is idempotent.
    store.delete(key).await.unwrap();
    assert_eq!(store.get(key).await.unwrap(), None);
    assert_eq!(store.head(key).await.unwrap(), None);
    store.delete(key).await.unwrap();
    store.delete("u9/never/existed").await.unwrap();
    assert!(!keys(&store.list("u1/").await.unwrap()).contains(key));

    // Keys that could escape a folder are refused by every backend and every operation.
    for bad in [
        "",
        "/abs/path",
        "../escape",
        "u1/../../escape",
        "u1//x",
        "u1/x/",
        "u1\\x",
        "u1/./x",
        ".hidden",
        "u1/.x",
    ] {
        let body = Bytes::from_static(b"x");
        assert_failed(store.put(bad, body, "00").await, bad);
        assert_failed(store.get(bad).await, bad);
        assert_failed(store.head(bad).await, bad);
        assert_failed(store.delete(bad).await, bad);
        assert_failed(store.digest(bad).await, bad);
        assert_failed(store.presign_put(bad, 1, &sha256_hex(b"x")).await, bad);
    }
    assert_failed(store.list("../").await, "list ../");
    assert_failed(store.list("/abs/").await, "list /abs/");
}

#[tokio::test]
async fn local_store_meets_the_contract() {
    let dir = TempDir::new();
    contract(&BlobStore::Local(local_store(&dir))).await;
}

#[tokio::test]
async fn s3_store_meets_the_contract() {
    contract(&s3_store(&[]).await).await;
}

/// What the route layer relies on: every future can move to another worker thread.
#[allow(dead_code)]
fn futures_are_send(store: &BlobStore, local: &LocalStore) {
    fn is_send<T: Send>(_: T) {}
    is_send(store.put("k", Bytes::new(), ""));
    is_send(store.get("k"));
    is_send(store.head("k"));
    is_send(store.delete("k"));
    is_send(store.list("k"));
    is_send(store.digest("k"));
    is_send(store.presign_put("k", 1, ""));
    let grant = UploadGrant {
        key: "k".into(),
        size: 1,
        sha256: String::new(),
    };
    is_send(local.put_upload(&grant, Chunks(Vec::new())));
}

// ---------------------------------------------------------------------------------------------
// Local backend

#[tokio::test]
async fn from_config_picks_the_local_folder_without_a_bucket() {
    let dir = TempDir::new();
    let data_dir = dir.0.to_str().unwrap();
    let store = from_pairs([("ADIUVA_DATA_DIR", data_dir)]).unwrap();
    assert!(matches!(store, BlobStore::Local(_)));
    store
        .put("u1/backups/b1", Bytes::from_static(b"x"), "ab")
        .await
        .unwrap();
    assert!(dir.0.join("blobs/u1/backups/b1").is_file());
    // The checksum is kept beside the blob, under a name no key can have.
    assert_eq!(
        std::fs::read_to_string(dir.0.join("blobs/u1/backups/.b1.checksum")).unwrap(),
        "ab"
    );
    assert_eq!(
        keys(&store.list("").await.unwrap()),
        BTreeSet::from(["u1/backups/b1"])
    );
}

#[tokio::test]
async fn local_refusals_leave_nothing_outside_the_blobs_folder() {
    let dir = TempDir::new();
    let store = BlobStore::Local(local_store(&dir));
    for bad in ["../escape", "u1/../../escape", "/tmp/escape-adiuva-blob"] {
        assert_failed(store.put(bad, Bytes::from_static(b"x"), "00").await, bad);
    }
    assert!(files_under(&dir.0).is_empty());
    assert!(!Path::new("/tmp/escape-adiuva-blob").exists());
}

#[tokio::test]
async fn local_folders_are_not_blobs() {
    let dir = TempDir::new();
    let store = BlobStore::Local(local_store(&dir));
    store
        .put("u1/records/r1/1", Bytes::from_static(b"x"), "00")
        .await
        .unwrap();
    // "u1/records" is a folder on disk, and "u1/records/r1/1/more" would go through a file.
    for key in ["u1/records", "u1/records/r1/1/more"] {
        assert_eq!(store.get(key).await.unwrap(), None, "{key}");
        assert_eq!(store.head(key).await.unwrap(), None, "{key}");
        assert_eq!(store.digest(key).await.unwrap(), None, "{key}");
        store.delete(key).await.unwrap();
    }
}

#[tokio::test]
async fn local_upload_token_round_trips() {
    let dir = TempDir::new();
    let store = BlobStore::Local(local_store(&dir));
    let before = now_ms();
    let upload = store
        .presign_put("u1/records/r1/2", 11, &sha256_hex(b"hello world"))
        .await
        .unwrap();
    assert_eq!(upload.method, "PUT");
    assert!(upload.headers.is_empty());
    assert!((before + 900_000..=now_ms() + 900_000).contains(&upload.expires_at_ms));
    let token = upload
        .url
        .strip_prefix("http://127.0.0.1:8000/api/v1/storage/blobs/")
        .unwrap_or_else(|| panic!("unexpected upload URL {}", upload.url));
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "token must be URL-safe: {token}"
    );
    let local = store.local().unwrap();
    assert_eq!(
        local.verify_upload_token(token).unwrap(),
        UploadGrant {
            key: "u1/records/r1/2".into(),
            size: 11,
            sha256: sha256_hex(b"hello world"),
        }
    );
}

#[tokio::test]
async fn local_upload_token_refuses_tampering_and_other_secrets() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let dir = TempDir::new();
    let store = local_store(&dir);
    let url = store
        .presign_put("u1/records/r1/2", 11, &sha256_hex(b"hello world"))
        .unwrap()
        .url;
    let token = url.rsplit('/').next().unwrap().to_owned();
    let (payload, mac) = token.split_once('.').unwrap();

    // Another key under the same MAC.
    let decoded = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let forged_payload = URL_SAFE_NO_PAD.encode(decoded.replace("u1/", "u2/"));
    // A later expiry, or a larger size, under the same MAC.
    let (expiry, rest) = decoded.split_once('\n').unwrap();
    let later = URL_SAFE_NO_PAD.encode(format!("{}\n{rest}", expiry.parse::<i64>().unwrap() + 1));
    let larger = URL_SAFE_NO_PAD.encode(decoded.replacen("\n11\n", "\n5000000000\n", 1));
    // One bit of the MAC flipped.
    let mut mac_bytes = URL_SAFE_NO_PAD.decode(mac).unwrap();
    mac_bytes[0] ^= 1;
    let flipped = URL_SAFE_NO_PAD.encode(&mac_bytes);

    let tampered = [
        format!("{forged_payload}.{mac}"),
        format!("{later}.{mac}"),
        format!("{larger}.{mac}"),
        format!("{payload}.{flipped}"),
        format!("{payload}.{}", &mac[..mac.len() - 2]),
        format!("{payload}.{mac}.extra"),
        payload.to_owned(),
        String::new(),
        "not base64!.x".to_owned(),
    ];
    for token in &tampered {
        assert!(
            matches!(
                store.verify_upload_token(token),
                Err(BlobError::InvalidUploadToken)
            ),
            "{token:?} was accepted"
        );
    }

    // Same key and expiry, another secret.
    let other = LocalStore::new(
        dir.0.join("blobs"),
        "http://127.0.0.1:8000".to_owned(),
        b"another-secret",
        Duration::from_secs(900),
    );
    assert!(matches!(
        other.verify_upload_token(&token),
        Err(BlobError::InvalidUploadToken)
    ));
    assert_eq!(
        store.verify_upload_token(&token).unwrap().key,
        "u1/records/r1/2"
    );
}

#[tokio::test]
async fn local_upload_token_expires() {
    let dir = TempDir::new();
    let store = LocalStore::new(
        dir.0.join("blobs"),
        "http://127.0.0.1:8000".to_owned(),
        b"test-secret",
        Duration::ZERO,
    );
    let url = store.presign_put("u1/records/r1/2", 1, "").unwrap().url;
    let token = url.rsplit('/').next().unwrap();
    assert!(matches!(
        store.verify_upload_token(token),
        Err(BlobError::InvalidUploadToken)
    ));
}

fn grant(key: &str, bytes: &[u8]) -> UploadGrant {
    UploadGrant {
        key: key.to_owned(),
        size: bytes.len() as u64,
        sha256: sha256_hex(bytes),
    }
}

#[tokio::test]
async fn local_put_upload_stores_exactly_the_announced_bytes_once() {
    let dir = TempDir::new();
    let local = local_store(&dir);
    let store = BlobStore::Local(local.clone());
    let key = "u1/records/r1/1";
    let body = || {
        Chunks(vec![
            Ok(Bytes::from_static(b"hello ")),
            Ok(Bytes::new()),
            Ok(Bytes::from_static(b"world")),
        ])
    };
    let stored = local
        .put_upload(&grant(key, b"hello world"), body())
        .await
        .unwrap();
    assert_eq!(stored, 11);
    assert_eq!(
        store.get(key).await.unwrap().as_deref(),
        Some(&b"hello world"[..])
    );
    assert_eq!(
        store.digest(key).await.unwrap(),
        Some((11, sha256_hex(b"hello world")))
    );
    assert_eq!(
        std::fs::read_to_string(dir.0.join("blobs/u1/records/r1/.1.checksum")).unwrap(),
        sha256_hex(b"hello world")
    );
    // The URL writes once: the same bytes again are refused and change nothing.
    let again = local.put_upload(&grant(key, b"hello world"), body()).await;
    assert!(matches!(again, Err(BlobError::AlreadyExists)), "{again:?}");
    assert_eq!(
        store.get(key).await.unwrap().as_deref(),
        Some(&b"hello world"[..])
    );
}

#[tokio::test]
async fn local_put_upload_refuses_other_bytes_and_stores_nothing() {
    let dir = TempDir::new();
    let local = local_store(&dir);
    let store = BlobStore::Local(local.clone());
    let key = "u1/records/r1/1";
    let files_before = files_under(&dir.0);
    let announced = grant(key, b"1234567890");

    let too_big = Chunks(vec![
        Ok(Bytes::from_static(b"12345")),
        Ok(Bytes::from_static(b"67890")),
        Ok(Bytes::from_static(b"x")),
    ]);
    let err = local.put_upload(&announced, too_big).await.unwrap_err();
    let BlobError::Failed(cause) = &err else {
        panic!("expected Failed, got {err:?}");
    };
    let too_large = cause
        .downcast_ref::<BodyTooLarge>()
        .expect("the cause says the body was too large");
    assert_eq!(too_large.max_bytes, 10);

    let fewer = Chunks(vec![Ok(Bytes::from_static(b"12345"))]);
    let err = local.put_upload(&announced, fewer).await.unwrap_err();
    assert!(matches!(err, BlobError::NotAnnounced(_)), "{err:?}");
    let other = Chunks(vec![Ok(Bytes::from_static(b"0987654321"))]);
    let err = local.put_upload(&announced, other).await.unwrap_err();
    assert!(matches!(err, BlobError::NotAnnounced(_)), "{err:?}");

    // A body that breaks off halfway (client disconnect) stores nothing either.
    let broken = Chunks(vec![
        Ok(Bytes::from_static(b"12345")),
        Err(std::io::Error::other("connection reset")),
    ]);
    let err = local.put_upload(&announced, broken).await.unwrap_err();
    assert!(matches!(err, BlobError::Failed(_)), "{err:?}");
    assert_eq!(
        err.source().unwrap().to_string(),
        "connection reset",
        "the body's error is the cause"
    );

    assert_eq!(store.get(key).await.unwrap(), None);
    assert_eq!(
        files_under(&dir.0),
        files_before,
        "no temp file is left behind"
    );
    // After all that, the announced bytes still go in.
    let right = Chunks(vec![Ok(Bytes::from_static(b"1234567890"))]);
    assert_eq!(local.put_upload(&announced, right).await.unwrap(), 10);
    assert_failed(
        local
            .put_upload(&grant("../escape", b""), Chunks(Vec::new()))
            .await,
        "put_upload ../escape",
    );
}

// ---------------------------------------------------------------------------------------------
// S3 backend

#[tokio::test]
async fn s3_put_requests_server_side_encryption_and_keeps_the_checksum() {
    let store = s3_store(&[]).await;
    let BlobStore::S3(s3) = &store else {
        panic!("s3_store gave {store:?}");
    };
    let checksum = sha256_hex(b"secret");
    store
        .put("u1/records/r1/1", Bytes::from_static(b"secret"), &checksum)
        .await
        .unwrap();
    let head = s3
        .client()
        .head_object()
        .bucket(s3.bucket())
        .key("u1/records/r1/1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.server_side_encryption,
        Some(aws_sdk_s3::types::ServerSideEncryption::Aes256)
    );
    assert_eq!(
        head.metadata.unwrap_or_default().get("checksum"),
        Some(&checksum)
    );
}

#[tokio::test]
async fn s3_presigned_put_signs_length_checksum_and_write_once() {
    use base64::Engine as _;
    let store = s3_store(&[("UPLOAD_URL_EXPIRE_MINUTES", "5")]).await;
    let key = "u1/records/r1/7";
    let bytes = b"uploaded directly";
    let before = now_ms();
    let upload = store
        .presign_put(key, bytes.len() as u64, &sha256_hex(bytes))
        .await
        .unwrap();
    assert_eq!(upload.method, "PUT");
    assert!((before + 300_000..=now_ms() + 300_000).contains(&upload.expires_at_ms));
    let header = |name: &str| {
        upload
            .headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    assert_eq!(header("x-amz-server-side-encryption"), Some("AES256"));
    assert_eq!(header("content-length"), Some("17"));
    assert_eq!(header("if-none-match"), Some("*"));
    let digest = adiuva_checksum::sha256(bytes);
    assert_eq!(
        header("x-amz-checksum-sha256"),
        Some(
            base64::engine::general_purpose::STANDARD
                .encode(digest)
                .as_str()
        )
    );
    // S3 checks what the URL signs (moto does not check signatures, so read them here): a
    // body of another length or SHA-256, or a second write, is refused by S3 itself.
    let signed = upload
        .url
        .split(['?', '&'])
        .find_map(|part| part.strip_prefix("X-Amz-SignedHeaders="))
        .expect("a presigned URL names its signed headers")
        .replace("%3B", ";");
    for name in [
        "content-length",
        "if-none-match",
        "x-amz-checksum-sha256",
        "host",
    ] {
        assert!(
            signed.split(';').any(|h| h == name),
            "{name} is not signed: {signed}"
        );
    }
    // Nothing is stored before the client uploads.
    assert_eq!(store.head(key).await.unwrap(), None);

    // Within the workspace reqwest has rustls without a bundled provider (see adiuva-llm).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let put = || {
        let mut request = client.put(&upload.url).body(&bytes[..]);
        for (name, value) in &upload.headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let response = put().await.unwrap();
    assert!(
        response.status().is_success(),
        "upload answered {}: {}",
        response.status(),
        response.text().await.unwrap_or_default()
    );
    assert_eq!(store.get(key).await.unwrap().as_deref(), Some(&bytes[..]));
    // The commit's check is a HEAD: the SHA-256 S3 kept with the object.
    assert_eq!(
        store.digest(key).await.unwrap(),
        Some((17, sha256_hex(bytes)))
    );
    // Write-once: the same URL again is refused.
    let again = put().await.unwrap();
    assert_eq!(again.status(), reqwest::StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn s3_unreachable_endpoint_is_unavailable_and_fast() {
    let store = from_pairs([
        ("S3_BUCKET", "adiuva-unreachable"),
        ("S3_ENDPOINT_URL", "http://127.0.0.1:1"),
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ])
    .unwrap();
    let started = Instant::now();
    let err = store.get("u1/records/r1/1").await.unwrap_err();
    assert!(err.is_unavailable(), "get gave {err:?}");
    let err = store
        .put("u1/records/r1/1", Bytes::from_static(b"x"), "00")
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "put gave {err:?}");
    let err = store.list("u1/").await.unwrap_err();
    assert!(err.is_unavailable(), "list gave {err:?}");
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(20),
        "three operations against a closed port took {elapsed:?}"
    );
}

#[tokio::test]
async fn s3_missing_bucket_is_failed_not_unavailable() {
    let store = from_pairs(
        s3_settings(&[])
            .await
            .into_iter()
            .filter(|(key, _)| key != "S3_BUCKET")
            .chain([("S3_BUCKET".to_owned(), "adiuva-no-such-bucket".to_owned())]),
    )
    .unwrap();
    let err = store
        .put("u1/records/r1/1", Bytes::from_static(b"x"), "00")
        .await
        .unwrap_err();
    assert!(matches!(err, BlobError::Failed(_)), "{err:?}");
}

#[tokio::test]
async fn s3_needs_credentials() {
    let result = from_pairs([("S3_BUCKET", "adiuva")]);
    assert!(matches!(result, Err(BlobError::Failed(_))), "{result:?}");
}

// ---------------------------------------------------------------------------------------------
// Fault injection

#[tokio::test]
async fn fail_next_fails_exactly_the_next_call() {
    let dir = TempDir::new();
    let (store, faults) = FaultyStore::wrap(BlobStore::Local(local_store(&dir)));
    let body = || Bytes::from_static(b"x");

    faults.fail_next(Op::Put);
    let err = store.put("u1/a", body(), "00").await.unwrap_err();
    let BlobError::Unavailable(cause) = &err else {
        panic!("expected Unavailable, got {err:?}");
    };
    assert_eq!(cause.downcast_ref::<InjectedFault>().unwrap().op, Op::Put);
    // Nothing reached the inner store, and other operations pass.
    assert_eq!(store.get("u1/a").await.unwrap(), None);
    store.put("u1/a", body(), "00").await.unwrap();
    store.put("u1/b", body(), "00").await.unwrap();
    assert_eq!(store.list("u1/").await.unwrap().len(), 2);

    faults.fail_all(Op::Delete);
    for _ in 0..3 {
        assert!(store.delete("u1/a").await.unwrap_err().is_unavailable());
    }
    faults.fail_next(Op::Get);
    faults.clear();
    assert!(store.get("u1/a").await.unwrap().is_some());
    store.delete("u1/a").await.unwrap();

    for (op, result) in [
        (Op::Head, {
            faults.fail_next(Op::Head);
            store.head("u1/b").await.map(|_| ())
        }),
        (Op::List, {
            faults.fail_next(Op::List);
            store.list("u1/").await.map(|_| ())
        }),
        (Op::Digest, {
            faults.fail_next(Op::Digest);
            store.digest("u1/b").await.map(|_| ())
        }),
        (Op::Presign, {
            faults.fail_next(Op::Presign);
            store
                .presign_put("u1/b", 1, &sha256_hex(b"b"))
                .await
                .map(|_| ())
        }),
    ] {
        assert!(
            result.as_ref().is_err_and(BlobError::is_unavailable),
            "{op:?} gave {result:?}"
        );
    }
    // The wrapped local store is still reachable for the upload route.
    assert!(store.local().is_some());
}
