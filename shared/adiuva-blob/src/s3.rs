//! The S3 backend, on the SDK configuration of `adiuva-aws` (credentials from our config,
//! rustls + ring, timeouts and retries), with path-style addressing for custom endpoints.

use std::time::Duration;

use adiuva_checksum::Sha256;
use aws_sdk_s3::config::BehaviorVersion;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ChecksumAlgorithm, ChecksumMode, ServerSideEncryption};
use bytes::Bytes;

use crate::{BlobError, BlobInfo, PresignedDownload, PresignedUpload};

/// Error codes S3 uses for "slow down" and transient server trouble.
const TRANSIENT_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
    "InternalError",
    "ServiceUnavailable",
];

/// The S3 backend. Cheap to clone: the SDK client is reference-counted.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// How long a presigned upload URL stays valid.
    upload_ttl: Duration,
}

impl S3Store {
    /// Builds the client without touching the network: connections open on first use.
    pub fn new(settings: &crate::S3Settings, upload_ttl: Duration) -> Result<Self, BlobError> {
        let sdk = adiuva_aws::sdk_config(&settings.aws, &settings.region)
            .map_err(|reason| BlobError::failed(format!("S3_BUCKET is set but {reason}")))?;
        let mut builder =
            aws_sdk_s3::config::Builder::from(&sdk).behavior_version(BehaviorVersion::latest());
        if let Some(endpoint) = &settings.endpoint_url {
            // MinIO and moto_server serve every bucket on one host: no virtual-host addressing.
            builder = builder
                .endpoint_url(endpoint.clone())
                .force_path_style(true);
        }
        Ok(Self {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: settings.bucket.clone(),
            upload_ttl,
        })
    }

    /// The SDK client, for tests and tools that need an S3 call this store does not offer.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub(crate) async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        checksum_hex: &str,
    ) -> Result<(), BlobError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .metadata("checksum", checksum_hex)
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(err) => return Err(classify(err)),
        };
        let body = output
            .body
            .collect()
            .await
            .map_err(|err| BlobError::Unavailable(Box::new(err)))?;
        Ok(Some(body.into_bytes()))
    }

    pub(crate) async fn head(&self, key: &str) -> Result<Option<BlobInfo>, BlobError> {
        let output = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            // HEAD answers carry no body, so a 404 has no error code to tell a missing key from
            // a missing bucket; a missing bucket shows up on the next put or list.
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => {
                return Ok(None);
            }
            Err(err) => return Err(classify(err)),
        };
        Ok(Some(BlobInfo {
            key: key.to_owned(),
            size: size(output.content_length),
            last_modified_ms: millis(output.last_modified.as_ref()),
        }))
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), BlobError> {
        // S3 answers 204 for a missing key too.
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(classify)?;
        Ok(())
    }

    pub(crate) async fn list_page(
        &self,
        start_after: Option<&str>,
        max: usize,
    ) -> Result<(Vec<BlobInfo>, bool), BlobError> {
        let page = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .set_start_after(start_after.map(str::to_owned))
            .max_keys(i32::try_from(max).unwrap_or(1000))
            .send()
            .await
            .map_err(classify)?;
        let more = page.is_truncated.unwrap_or(false);
        let found = page
            .contents
            .unwrap_or_default()
            .into_iter()
            .filter_map(|object| {
                Some(BlobInfo {
                    key: object.key?,
                    size: size(object.size),
                    last_modified_ms: millis(object.last_modified.as_ref()),
                })
            })
            .collect();
        Ok((found, more))
    }

    pub(crate) async fn list(&self, prefix: &str) -> Result<Vec<BlobInfo>, BlobError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(classify)?;
            for object in page.contents.unwrap_or_default() {
                let Some(key) = object.key else { continue };
                found.push(BlobInfo {
                    key,
                    size: size(object.size),
                    last_modified_ms: millis(object.last_modified.as_ref()),
                });
            }
        }
        Ok(found)
    }

    /// Size and SHA-256 (hex) of a stored object. An object uploaded through a presigned URL
    /// carries the SHA-256 that S3 checked on the way in (the URL signs it), so a `HEAD` says
    /// both; only an object without one is read and hashed.
    pub(crate) async fn digest(&self, key: &str) -> Result<Option<(u64, String)>, BlobError> {
        let head = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .checksum_mode(ChecksumMode::Enabled)
            .send()
            .await
        {
            Ok(head) => head,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => {
                return Ok(None);
            }
            Err(err) => return Err(classify(err)),
        };
        if let Some(checksum) = head.checksum_sha256.as_deref()
            && head
                .checksum_type
                .as_ref()
                .is_none_or(|kind| kind.as_str() == "FULL_OBJECT")
        {
            use base64::Engine as _;
            let digest = base64::engine::general_purpose::STANDARD
                .decode(checksum)
                .map_err(|err| BlobError::Failed(Box::new(err)))?;
            return Ok(Some((size(head.content_length), hex::encode(digest))));
        }
        self.hash_object(key).await
    }

    /// Reads an object and hashes it.
    async fn hash_object(&self, key: &str) -> Result<Option<(u64, String)>, BlobError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(err) => return Err(classify(err)),
        };
        let mut body = output.body;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|err| BlobError::Unavailable(Box::new(err)))?
        {
            hasher.update(&chunk);
            size += chunk.len() as u64;
        }
        Ok(Some((size, hex::encode(hasher.finish()))))
    }

    pub(crate) async fn presign_put(
        &self,
        key: &str,
        size: u64,
        sha256_hex: &str,
    ) -> Result<PresignedUpload, BlobError> {
        use base64::Engine as _;
        let presigning = PresigningConfig::expires_in(self.upload_ttl)
            .map_err(|err| BlobError::Failed(Box::new(err)))?;
        let expires_at_ms = crate::now_ms().saturating_add(crate::duration_ms(self.upload_ttl));
        let digest = hex::decode(sha256_hex).map_err(|err| BlobError::Failed(Box::new(err)))?;
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .server_side_encryption(ServerSideEncryption::Aes256)
            // Signed: S3 refuses a body of another length or SHA-256, and a second write.
            .content_length(i64::try_from(size).unwrap_or(i64::MAX))
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(digest))
            .if_none_match("*")
            .presigned(presigning)
            .await
            .map_err(classify)?;
        Ok(PresignedUpload {
            url: request.uri().to_owned(),
            method: request.method().to_owned(),
            headers: request
                .headers()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            expires_at_ms,
        })
    }
}

impl S3Store {
    pub(crate) async fn presign_get(
        &self,
        key: &str,
        ttl: Duration,
    ) -> Result<PresignedDownload, BlobError> {
        let presigning =
            PresigningConfig::expires_in(ttl).map_err(|err| BlobError::Failed(Box::new(err)))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(classify)?;
        Ok(PresignedDownload {
            url: request.uri().to_owned(),
            expires_at_ms: crate::now_ms().saturating_add(crate::duration_ms(ttl)),
        })
    }
}

/// Sorts an SDK error into "retry later" and "something is wrong" (see [`BlobError`]).
fn classify<E>(err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> BlobError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err
        .raw_response()
        .map(|response| response.status().as_u16());
    let unavailable = match &err {
        SdkError::TimeoutError(_) => true,
        // Connection refused or reset, DNS failure, TLS handshake failure; but not a request
        // the client could not even build.
        SdkError::DispatchFailure(failure) => !failure.is_user(),
        SdkError::ResponseError(_) => status.is_none_or(|status| status >= 500),
        SdkError::ServiceError(service) => {
            status.is_some_and(|status| status >= 500 || status == 429)
                || service
                    .err()
                    .code()
                    .is_some_and(|code| TRANSIENT_CODES.contains(&code))
        }
        _ => false,
    };
    if unavailable {
        BlobError::Unavailable(Box::new(err))
    } else {
        BlobError::Failed(Box::new(err))
    }
}

fn size(content_length: Option<i64>) -> u64 {
    content_length
        .and_then(|length| u64::try_from(length).ok())
        .unwrap_or(0)
}

fn millis(time: Option<&DateTime>) -> i64 {
    time.and_then(|time| time.to_millis().ok()).unwrap_or(0)
}
