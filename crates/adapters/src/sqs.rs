//! The timer queues' publisher (the jobs queue, the deliveries queue): SendMessageBatch, ten messages per call, the calls of a large
//! batch made concurrently. Each message carries its delay (SQS per-message `DelaySeconds`, at
//! most 900 s) and its message group (the client: on a standard queue that makes it a fair
//! queue, so one client's burst does not make the others wait).

use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures_util::future::join_all;
use taskfleet_core::PublishError;
use taskfleet_core::dispatch::Dispatch;
use taskfleet_core::ports::Publisher;

use crate::config::{self, ConfigError};

/// SQS accepts at most ten entries per SendMessageBatch.
const BATCH: usize = 10;

#[derive(Debug, Clone)]
pub struct SqsPublisher {
    client: Client,
    queue_url: String,
}

impl SqsPublisher {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }

    /// The publisher to the queue named by `JOBS_QUEUE_URL`.
    pub fn from_env(sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(Client::new(sdk), config::required(config::JOBS_QUEUE_URL)?))
    }

    /// The publisher to the queue named by `DELIVERIES_QUEUE_URL`.
    pub fn deliveries_from_env(sdk: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self::new(Client::new(sdk), config::required(config::DELIVERIES_QUEUE_URL)?))
    }

    async fn send_chunk(&self, chunk: &[Dispatch]) -> Vec<Result<(), PublishError>> {
        let mut entries = Vec::with_capacity(chunk.len());
        for (index, dispatch) in chunk.iter().enumerate() {
            let body = match serde_json::to_string(&dispatch.message) {
                Ok(body) => body,
                Err(e) => return vec![Err(PublishError(format!("cannot encode message: {e}"))); chunk.len()],
            };
            let entry = SendMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .message_body(body)
                .delay_seconds(i32::try_from(dispatch.delay_seconds).unwrap_or(i32::MAX))
                .set_message_group_id(Some(dispatch.group.clone()).filter(|group| !group.is_empty()))
                .build();
            match entry {
                Ok(entry) => entries.push(entry),
                Err(e) => return vec![Err(PublishError(e.to_string())); chunk.len()],
            }
        }
        let answer =
            self.client.send_message_batch().queue_url(&self.queue_url).set_entries(Some(entries)).send().await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => return vec![Err(PublishError(DisplayErrorContext(&e).to_string())); chunk.len()],
        };
        // An entry is sent only if SQS lists it as successful.
        let mut outcomes = vec![Err(PublishError("not acknowledged by SQS".into())); chunk.len()];
        for ok in answer.successful {
            if let Some(slot) = ok.id.parse::<usize>().ok().and_then(|i| outcomes.get_mut(i)) {
                *slot = Ok(());
            }
        }
        for failed in answer.failed {
            if let Some(slot) = failed.id.parse::<usize>().ok().and_then(|i| outcomes.get_mut(i)) {
                *slot = Err(PublishError(failed.message.unwrap_or(failed.code)));
            }
        }
        outcomes
    }
}

impl Publisher for SqsPublisher {
    async fn publish(&self, dispatches: &[Dispatch]) -> Vec<Result<(), PublishError>> {
        join_all(dispatches.chunks(BATCH).map(|chunk| self.send_chunk(chunk))).await.into_iter().flatten().collect()
    }
}
