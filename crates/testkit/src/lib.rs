//! Test support for tests that talk to the AWS emulator (moto server). `make test` starts the
//! emulator and exports `AWS_ENDPOINT_URL`; these helpers point the real SDK at it with dummy
//! credentials. Nothing here fakes AWS; [`faults`] puts a misbehaving proxy in front of it, and
//! [`receiver`] is a client's webhook endpoint on loopback.

pub mod faults;
pub mod receiver;

use aws_config::{BehaviorVersion, Region, SdkConfig};

/// The emulator's endpoint. Tests that need it fail loudly when it is not set.
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| {
        panic!("AWS_ENDPOINT_URL is not set: these tests need the AWS emulator; run them with `make test`")
    })
}

/// An SDK configuration for the emulator: its endpoint, region us-east-1, dummy credentials.
pub async fn sdk_config() -> SdkConfig {
    sdk_config_at(&endpoint()).await
}

/// [`sdk_config`] with another endpoint (e.g. a [`faults::FaultyProxy`] in front of the emulator).
pub async fn sdk_config_at(endpoint: &str) -> SdkConfig {
    loader_at(endpoint).load().await
}

/// The loader of [`sdk_config_at`], for callers that add settings of their own (the fleet's
/// timeouts: `taskfleet_adapters::config::aws_from`).
pub fn loader_at(endpoint: &str) -> aws_config::ConfigLoader {
    let credentials = aws_credential_types::Credentials::new("testing", "testing", None, None, "taskfleet-testkit");
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(credentials)
}

/// A name no other test uses, so tests can share one emulator and run in parallel.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}
