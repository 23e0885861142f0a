//! What Lambda's SQS event source mapping does in AWS: polls a queue (the jobs queue, the
//! deliveries queue) and invokes its function (the caller, the notifier) with batches — up to `batch_size` messages, gathered for at most `batch_window` —
//! from at most `max_concurrency` pollers at once (the mapping's `MaximumConcurrency`). The
//! function answers its partial batch failures (`ReportBatchItemFailures`): the other messages
//! are deleted; the failed ones reappear after the visibility timeout, and after
//! [`crate::resources::MAX_RECEIVES`] receives the queue moves them to its dead-letter queue.
//!
//! Fairness between clients is the queue's (a standard queue whose messages carry a message
//! group: an SQS fair queue); the emulator serves groups in turn (scripts/emulator.py).
//!
//! Each invocation is recorded as Lambda records it ([`crate::aws_metrics`]), and what is received
//! and deleted is told to the queue's metrics ([`crate::queue_metrics::QueueWatch`]).

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsBatchResponse;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
use tokio::time::Instant;

use crate::DeliveryChaos;
use crate::aws_metrics::AwsMetrics;
use crate::events;
use crate::functions::Functions;
use crate::local_names::Function;
use crate::queue_metrics::QueueWatch;

pub struct QueueSource {
    /// The function the mapping invokes: [`Function::Caller`] or [`Function::Notifier`].
    pub function: Function,
    pub client: Client,
    pub queue_url: String,
    pub queue_arn: String,
    pub region: String,
    pub metrics: Arc<AwsMetrics>,
    pub watch: Arc<QueueWatch>,
}

/// The event source mapping's settings (serverless.yml: `batchSize`, `maximumBatchingWindow`,
/// `maximumConcurrency`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventSource {
    pub batch_size: usize,
    pub batch_window: Duration,
    pub max_concurrency: usize,
}

impl Default for EventSource {
    fn default() -> Self {
        Self { batch_size: 10, batch_window: Duration::ZERO, max_concurrency: 4 }
    }
}

/// SQS hands out at most ten messages per receive.
const RECEIVE_MAX: usize = 10;

/// Receives one batch: waits (long polls) for a first message, then gathers more until the
/// batch is full or the window since the first message has passed.
async fn next_batch(source: &QueueSource, settings: &EventSource) -> Vec<Message> {
    let mut batch = Vec::new();
    let mut window_ends = None;
    loop {
        let wanted = settings.batch_size.saturating_sub(batch.len()).clamp(1, RECEIVE_MAX);
        let wait = match window_ends {
            None => 1,
            Some(end) if Instant::now() >= end => return batch,
            Some(_) => 0,
        };
        let received = source
            .client
            .receive_message()
            .queue_url(&source.queue_url)
            .max_number_of_messages(i32::try_from(wanted).unwrap_or(10))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .wait_time_seconds(wait)
            .send()
            .await;
        let messages = match received {
            Ok(answer) => answer.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %DisplayErrorContext(&e), "cannot read the queue");
                tokio::time::sleep(Duration::from_secs(1)).await;
                if batch.is_empty() {
                    continue;
                }
                return batch;
            }
        };
        let got_some = !messages.is_empty();
        batch.extend(messages);
        if batch.len() >= settings.batch_size {
            return batch;
        }
        if window_ends.is_none() && !batch.is_empty() {
            if settings.batch_window.is_zero() {
                return batch;
            }
            window_ends = Some(Instant::now() + settings.batch_window);
        }
        if window_ends.is_some() && !got_some {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// One poller of the event source mapping; runs until the task is dropped.
pub async fn run(source: Arc<QueueSource>, settings: EventSource, functions: Arc<Functions>, chaos: DeliveryChaos) {
    loop {
        let batch = next_batch(&source, &settings).await;
        if batch.is_empty() {
            continue;
        }
        source.watch.received(&batch);
        let event = events::sqs_event(&batch, &source.queue_arn, &source.region);
        let invoke = |event| async {
            match source.function {
                Function::Notifier => functions.invoke_notifier(event).await,
                _ => functions.invoke_caller(event).await,
            }
        };
        if fastrand::f64() < chaos.duplicate_message {
            let _ = source.metrics.invoke(source.function, invoke(event.clone())).await;
        }
        let failed: Vec<String> = match source.metrics.invoke(source.function, invoke(event)).await {
            Ok(answer) => serde_json::from_value::<SqsBatchResponse>(answer)
                .map(|answer| answer.batch_item_failures.into_iter().map(|f| f.item_identifier).collect())
                .unwrap_or_else(|error| {
                    tracing::warn!(%error, "unreadable answer; the whole batch will be delivered again");
                    batch.iter().filter_map(|m| m.message_id.clone()).collect()
                }),
            Err(error) => {
                tracing::warn!(%error, "function failed; the whole batch will be delivered again");
                continue;
            }
        };
        let done: Vec<&Message> =
            batch.iter().filter(|m| m.message_id.as_ref().is_none_or(|id| !failed.contains(id))).collect();
        delete(&source, &done).await;
    }
}

async fn delete(source: &QueueSource, messages: &[&Message]) {
    for chunk in messages.chunks(RECEIVE_MAX) {
        let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(index, message)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .set_receipt_handle(message.receipt_handle.clone())
                    .build()
                    .ok()
            })
            .collect();
        let deleted =
            source.client.delete_message_batch().queue_url(&source.queue_url).set_entries(Some(entries)).send().await;
        match deleted {
            Ok(answer) => source.watch.deleted(
                answer
                    .successful
                    .iter()
                    .filter_map(|entry| entry.id.parse::<usize>().ok())
                    .filter_map(|index| chunk.get(index).and_then(|m| m.message_id.as_deref())),
            ),
            Err(e) => {
                tracing::warn!(error = %DisplayErrorContext(&e), "cannot delete handled messages; they will come back")
            }
        }
    }
}
