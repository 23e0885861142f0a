//! Adapters: the AWS and HTTP implementations of taskfleet's ports, plus the configuration every
//! function reads at cold start. Each SDK client is built once per cold start from one shared
//! [`aws_config::SdkConfig`]; `AWS_ENDPOINT_URL` points them all at a local emulator.

pub mod blobs;
pub mod cloudwatch;
pub mod completion;
pub mod config;
pub mod dynamo;
pub mod emf;
pub mod external;
pub mod invocation;
mod item;
pub mod keys;
pub mod logging;
pub mod record;
pub mod secret_records;
pub mod secrets;
pub mod sqs;
pub mod table;
pub mod timer_queue;

pub use aws_config::SdkConfig;
pub use blobs::S3Blobs;
pub use cloudwatch::CloudWatchSink;
pub use completion::CompletionSender;
pub use config::ConfigError;
pub use dynamo::DynamoStore;
pub use emf::EmfSink;
pub use external::HttpExternalService;
pub use keys::DynamoKeyRecords;
pub use secret_records::DynamoSecretRecords;
pub use secrets::SecretsManagerStore;
pub use sqs::SqsPublisher;
