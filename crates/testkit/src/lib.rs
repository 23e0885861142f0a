//! Test support for tests that talk to the AWS emulator (moto server). `make test` starts the
//! emulator and exports `AWS_ENDPOINT_URL`; these helpers point the real SDK at it with dummy
//! credentials. Nothing here fakes AWS.

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The emulator's endpoint. Tests that need it fail loudly when it is not set.
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!("AWS_ENDPOINT_URL is not set: these tests need the AWS emulator; run them with `make test`")
    })
}

/// An SDK configuration for the emulator: its endpoint, region us-east-1, dummy credentials.
pub async fn sdk_config() -> SdkConfig {
    let credentials = aws_credential_types::Credentials::new("testing", "testing", None, None, "taskfleet-testkit");
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
        .load()
        .await
}

/// A name no other test uses, so tests can share one emulator and run in parallel.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}
