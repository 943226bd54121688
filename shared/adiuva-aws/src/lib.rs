//! The AWS SDK configuration every client of ours starts from (S3, DynamoDB).
//!
//! `aws-config` is not used: it links the SSO, STS and IMDS credential providers and defaults
//! to aws-lc-rs, a large C build. Lambda hands the role's credentials to the process as
//! environment variables, which our config already reads, and the HTTP client is rustls + ring,
//! the TLS stack the rest of the workspace links. Building it does no network I/O.

use std::time::Duration;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_types::SdkConfig;
use aws_types::region::Region;
use aws_types::sdk_config::{RetryConfig, TimeoutConfig};

/// A connection that is not up in this time will not come up: fail over to a retry.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The whole operation, retries included, so a request answers 503 well before API Gateway's
/// 30-second integration limit cuts it off.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(25);
/// Attempts per operation (the first one included), with the SDK's standard backoff.
pub const MAX_ATTEMPTS: u32 = 3;

/// The shared SDK configuration in `region`, or why it cannot be built (missing credentials).
/// Each client sets `BehaviorVersion::latest()` on its own builder (aws-types does not export it).
pub fn sdk_config(config: &adiuva_config::Config, region: &str) -> Result<SdkConfig, &'static str> {
    if config.aws_access_key_id.is_empty() || config.aws_secret_access_key.is_empty() {
        return Err("AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is empty");
    }
    let session_token = Some(config.aws_session_token.expose())
        .filter(|token| !token.is_empty())
        .map(str::to_owned);
    let credentials = Credentials::new(
        config.aws_access_key_id.clone(),
        config.aws_secret_access_key.expose(),
        session_token,
        None,
        "adiuva-config",
    );
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    Ok(SdkConfig::builder()
        .region(Region::new(region.to_owned()))
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .http_client(http_client)
        .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .build())
}
