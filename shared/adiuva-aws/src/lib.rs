//! The AWS SDK configuration every client of ours starts from (S3, DynamoDB).
//!
//! `aws-config` is not used: it links the SSO, STS and IMDS credential providers and defaults
//! to aws-lc-rs, a large C build. Lambda hands the role's credentials to the process as
//! environment variables, which our config already reads, and the HTTP client is rustls + ring,
//! the TLS stack the rest of the workspace links. Building it does no network I/O.

use std::time::Duration;

use adiuva_config::{Secret, Source};
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

/// The credentials Lambda hands the process (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_SESSION_TOKEN`) and `AWS_REGION` (default: `S3_REGION`, else `us-east-1`).
#[derive(Debug, Clone)]
pub struct AwsSettings {
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<Secret>,
    pub session_token: Option<Secret>,
    /// Region of the AWS services other than S3 (DynamoDB, the Management API).
    pub region: String,
}

impl AwsSettings {
    pub fn from_source(source: &Source) -> Self {
        Self {
            access_key_id: source.optional("AWS_ACCESS_KEY_ID"),
            secret_access_key: source.secret("AWS_SECRET_ACCESS_KEY"),
            session_token: source.secret("AWS_SESSION_TOKEN"),
            region: source
                .optional("AWS_REGION")
                .unwrap_or_else(|| source.string("S3_REGION", "us-east-1")),
        }
    }
}

/// The shared SDK configuration in `region`, or why it cannot be built (missing credentials).
/// Each client sets `BehaviorVersion::latest()` on its own builder (aws-types does not export it).
pub fn sdk_config(settings: &AwsSettings, region: &str) -> Result<SdkConfig, &'static str> {
    let (Some(access_key_id), Some(secret_access_key)) =
        (&settings.access_key_id, &settings.secret_access_key)
    else {
        return Err("AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is empty");
    };
    let credentials = Credentials::new(
        access_key_id.clone(),
        secret_access_key.expose(),
        settings
            .session_token
            .as_ref()
            .map(|token| token.expose().to_owned()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_defaults_to_the_s3_region() {
        let s3_only =
            AwsSettings::from_source(&Source::from_pairs([("S3_REGION", "eu-central-1")]));
        assert_eq!(s3_only.region, "eu-central-1");
        let both = AwsSettings::from_source(&Source::from_pairs([
            ("S3_REGION", "eu-central-1"),
            ("AWS_REGION", "eu-west-1"),
        ]));
        assert_eq!(both.region, "eu-west-1");
        assert_eq!(
            AwsSettings::from_source(&Source::default()).region,
            "us-east-1"
        );
        assert!(sdk_config(&both, "eu-west-1").is_err(), "no credentials");
    }
}
