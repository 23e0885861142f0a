//! The S3 blob store of large payloads and results: one object per key, written once, encrypted
//! by the bucket's default encryption and expired by its lifecycle rules
//! (deploy/resources/blobs.yml); nothing per request.
//!
//! Against the emulator (an endpoint override: `AWS_ENDPOINT_URL`) buckets are addressed by path
//! (`http://127.0.0.1:4566/{bucket}/{key}`), since `{bucket}.127.0.0.1` resolves nowhere. In AWS
//! the client keeps virtual-hosted addressing (`https://{bucket}.s3.{region}.amazonaws.com/{key}`),
//! the style AWS supports going forward.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use taskfleet_core::StoreError;
use taskfleet_core::blob::BlobStore;

use crate::config::{self, ConfigError};

/// The content type of every object: payloads and results are compact JSON.
pub const CONTENT_TYPE: &str = "application/json";

/// The SDK's own variable for an S3-only endpoint override (read by aws-config too).
const S3_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL_S3";

#[derive(Debug, Clone)]
pub struct S3Blobs {
    client: Client,
    bucket: String,
}

impl S3Blobs {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self { client, bucket: bucket.into() }
    }

    /// The store of the bucket named by `BLOBS_BUCKET`, with a client from the shared SDK
    /// configuration (see [`client`]).
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(client(sdk), config::required(config::BLOBS_BUCKET)?))
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}

/// An S3 client from the shared SDK configuration: path-style addressing when the endpoint is
/// overridden (the emulator), virtual-hosted addressing otherwise (AWS).
pub fn client(sdk: &aws_config::SdkConfig) -> Client {
    let overridden = sdk.endpoint_url().is_some() || std::env::var(S3_ENDPOINT_URL).is_ok_and(|v| !v.trim().is_empty());
    Client::from_conf(aws_sdk_s3::config::Builder::from(sdk).force_path_style(overridden).build())
}

/// Creates `bucket` in the client's region unless this account has it already. The local fleet
/// and the tests use it; in AWS the stack creates the bucket (deploy/resources/blobs.yml).
pub async fn create_bucket(client: &Client, bucket: &str) -> Result<(), StoreError> {
    let mut request = client.create_bucket().bucket(bucket);
    // us-east-1 is the one region that takes no location constraint.
    if let Some(region) = client.config().region().map(AsRef::as_ref).filter(|region| *region != "us-east-1") {
        let location = CreateBucketConfiguration::builder().location_constraint(BucketLocationConstraint::from(region));
        request = request.create_bucket_configuration(location.build());
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(SdkError::ServiceError(e)) if e.err().is_bucket_already_owned_by_you() => Ok(()),
        Err(e) => Err(unavailable(e)),
    }
}

/// S3 could not be reached or refused the request (the same mapping as the table's stores).
fn unavailable<E, R>(error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    StoreError::Unavailable(DisplayErrorContext(&error).to_string())
}

impl BlobStore for S3Blobs {
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(CONTENT_TYPE)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(unavailable)?;
        tracing::debug!(key, "blob stored");
        Ok(())
    }

    /// `None` for S3's `NoSuchKey`. S3 answers that only to a role that may also list the bucket;
    /// the fleet's roles may not (deploy/resources/iam.yml), so in AWS a missing object answers
    /// 403 AccessDenied, which is [`StoreError::Unavailable`] like every other refusal.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let answer = self.client.get_object().bucket(&self.bucket).key(key).send().await;
        let object = match answer {
            Ok(object) => object,
            Err(SdkError::ServiceError(e)) if e.err().is_no_such_key() => return Ok(None),
            Err(e) => return Err(unavailable(e)),
        };
        let body = object.body.collect().await.map_err(|e| {
            StoreError::Unavailable(format!("reading the object {key} failed: {}", DisplayErrorContext(&e)))
        })?;
        Ok(Some(body.to_vec()))
    }

    /// A SigV4 query-string URL: a plain GET of it, without headers, answers the object until
    /// `valid_for` has passed (at most 7 days, and never past the expiry of the credentials that
    /// signed it: a Lambda role's session lasts hours).
    async fn presign_get(&self, key: &str, valid_for: Duration) -> Result<String, StoreError> {
        let presigning = PresigningConfig::expires_in(valid_for).map_err(|e| {
            StoreError::Unavailable(format!("cannot presign a GET valid for {} s: {e}", valid_for.as_secs()))
        })?;
        let request =
            self.client.get_object().bucket(&self.bucket).key(key).presigned(presigning).await.map_err(unavailable)?;
        // Whoever holds the URL sends no headers of ours: a URL that needs one would be refused.
        if let Some((name, _)) = request.headers().next() {
            return Err(StoreError::Unavailable(format!("the presigned GET of {key} needs the header {name}")));
        }
        Ok(request.uri().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region, SharedCredentialsProvider};

    use super::*;

    /// An SDK configuration like the one a function loads, with or without an endpoint override.
    fn sdk(endpoint: Option<&str>) -> aws_config::SdkConfig {
        let credentials = Credentials::new("AKIDEXAMPLE", "not-a-secret", None, None, "test");
        let mut builder = aws_config::SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(SharedCredentialsProvider::new(credentials));
        if let Some(endpoint) = endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        builder.build()
    }

    /// Presigning is local (no request is sent): the URL shows the addressing style.
    async fn presigned(sdk: &aws_config::SdkConfig) -> String {
        let blobs = S3Blobs::new(client(sdk), "taskfleet-prod-blobs");
        blobs.presign_get("payloads/t", Duration::from_secs(60)).await.expect("presign")
    }

    #[tokio::test]
    async fn aws_gets_virtual_hosted_addressing() {
        if std::env::var_os(S3_ENDPOINT_URL).is_some() {
            return; // an S3 endpoint override in this environment means path style on purpose
        }
        let url = presigned(&sdk(None)).await;
        assert!(url.starts_with("https://taskfleet-prod-blobs.s3.eu-west-1.amazonaws.com/payloads/t?"), "{url}");
    }

    #[tokio::test]
    async fn an_endpoint_override_gets_path_style_addressing() {
        let url = presigned(&sdk(Some("http://localhost:4566"))).await;
        assert!(url.starts_with("http://localhost:4566/taskfleet-prod-blobs/payloads/t?"), "{url}");
    }
}
