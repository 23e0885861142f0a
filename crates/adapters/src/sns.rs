//! The SNS publisher of dispatch messages: PublishBatch, ten messages per call.

use aws_sdk_sns::Client;
use aws_sdk_sns::error::DisplayErrorContext;
use aws_sdk_sns::types::PublishBatchRequestEntry;
use taskfleet_core::PublishError;

use crate::config::{self, ConfigError};
use taskfleet_core::dispatch::DispatchMessage;
use taskfleet_core::ports::Publisher;

/// SNS accepts at most ten entries per PublishBatch.
const BATCH: usize = 10;

#[derive(Debug, Clone)]
pub struct SnsPublisher {
    client: Client,
    topic_arn: String,
}

impl SnsPublisher {
    pub fn new(client: Client, topic_arn: impl Into<String>) -> Self {
        Self { client, topic_arn: topic_arn.into() }
    }

    /// The publisher to the topic named by `DISPATCH_TOPIC_ARN`.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(Client::new(sdk), config::required(config::DISPATCH_TOPIC_ARN)?))
    }

    async fn publish_chunk(&self, chunk: &[DispatchMessage]) -> Vec<Result<(), PublishError>> {
        let mut entries = Vec::with_capacity(chunk.len());
        for (index, message) in chunk.iter().enumerate() {
            let body = match serde_json::to_string(message) {
                Ok(body) => body,
                Err(e) => {
                    return vec![Err(PublishError(format!("cannot encode message: {e}"))); chunk.len()];
                }
            };
            match PublishBatchRequestEntry::builder().id(index.to_string()).message(body).build() {
                Ok(entry) => entries.push(entry),
                Err(e) => return vec![Err(PublishError(e.to_string())); chunk.len()],
            }
        }
        let answer = self
            .client
            .publish_batch()
            .topic_arn(&self.topic_arn)
            .set_publish_batch_request_entries(Some(entries))
            .send()
            .await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                return vec![Err(PublishError(DisplayErrorContext(&e).to_string())); chunk.len()];
            }
        };
        // An entry is published only if SNS lists it as successful.
        let mut outcomes = vec![Err(PublishError("not acknowledged by SNS".into())); chunk.len()];
        for ok in answer.successful.unwrap_or_default() {
            if let Some(slot) = ok.id.and_then(|id| id.parse::<usize>().ok()).and_then(|i| outcomes.get_mut(i)) {
                *slot = Ok(());
            }
        }
        for failed in answer.failed.unwrap_or_default() {
            if let Some(slot) = failed.id.parse::<usize>().ok().and_then(|i| outcomes.get_mut(i)) {
                let reason = failed.message.unwrap_or(failed.code);
                *slot = Err(PublishError(reason));
            }
        }
        outcomes
    }
}

impl Publisher for SnsPublisher {
    async fn publish(&self, messages: &[DispatchMessage]) -> Vec<Result<(), PublishError>> {
        let mut outcomes = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(BATCH) {
            outcomes.extend(self.publish_chunk(chunk).await);
        }
        outcomes
    }
}
