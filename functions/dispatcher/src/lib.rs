//! On the tasks table's DynamoDB stream: every change that leaves a task active becomes a timer
//! on the jobs queue (see `taskfleet_core::dispatch`): a RECEIVED task's start, delayed until it
//! is due, and an IN_PROGRESS attempt's deadline check, delayed until its callback is due; in
//! the client's message group (SendMessageBatch, ten per call, the calls made concurrently).
//! REMOVE records (TTL deletions), finished tasks and items that are not tasks are skipped. The answer lists batch item failures, so one bad record
//! neither blocks nor replays the whole batch: Lambda retries from the first failed record,
//! and a record that keeps failing ends in the on-failure destination.

use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::LambdaEvent;
use taskfleet_adapters::record::snapshot_from_image;
use taskfleet_adapters::{ConfigError, SdkConfig, SqsPublisher};
use taskfleet_core::dispatch::{Dispatch, dispatch_for};
use taskfleet_core::ports::Publisher;
use taskfleet_core::{PublishError, StoreError, Timestamp};

/// Everything the function needs, built once per cold start.
pub struct App<P> {
    pub publisher: P,
}

impl App<SqsPublisher> {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self { publisher: SqsPublisher::from_env(sdk)? })
    }
}

/// What one stream record calls for.
fn dispatch_of(record: &EventRecord, now: Timestamp) -> Result<Option<Dispatch>, StoreError> {
    if record.event_name == "REMOVE" {
        return Ok(None);
    }
    let Some((task_id, new)) = snapshot_from_image(&record.change.new_image)? else { return Ok(None) };
    // The old image only tells a no-op write apart; if it is unreadable the record counts as a
    // change (a duplicate dispatch is harmless: starting an attempt is conditional).
    let old = snapshot_from_image(&record.change.old_image).ok().flatten().map(|(_, old)| old);
    Ok(dispatch_for(&task_id, old, Some(new)).map(|(message, group)| Dispatch::new(message, group, now)))
}

pub async fn handle<P: Publisher>(app: &App<P>, event: LambdaEvent<Event>) -> DynamoDbEventResponse {
    let mut failures = Vec::new();
    let mut messages = Vec::new();
    let mut sources = Vec::new();
    let now = Timestamp::now();
    for record in &event.payload.records {
        let sequence = record.change.sequence_number.clone().unwrap_or_else(|| record.event_id.clone());
        match dispatch_of(record, now) {
            Ok(Some(message)) => {
                messages.push(message);
                sources.push(sequence);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(event_id = %record.event_id, %error, "unreadable stream record");
                failures.push(sequence);
            }
        }
    }
    let mut outcomes = app.publisher.publish(&messages).await.into_iter();
    for (dispatch, sequence) in messages.iter().zip(sources) {
        let message = &dispatch.message;
        // A publisher answering fewer results than messages has not confirmed the rest.
        let outcome = outcomes.next().unwrap_or_else(|| Err(PublishError("no result from the publisher".into())));
        match outcome {
            Ok(()) => {
                // DEBUG: the transitions around it (task received, job handed over, callback
                // overdue) are the lines on-call reads; a timer that was not set is a WARN.
                tracing::debug!(
                    task_id = %message.task_id,
                    attempt = message.attempt,
                    step = ?message.step,
                    delay_seconds = dispatch.delay_seconds,
                    "timer set"
                )
            }
            Err(error) => {
                tracing::warn!(task_id = %message.task_id, %error, "timer not sent; the record will be retried");
                failures.push(sequence);
            }
        }
    }
    let mut answer = DynamoDbEventResponse::default();
    answer.batch_item_failures = failures
        .into_iter()
        .map(|sequence| {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence);
            failure
        })
        .collect();
    answer
}

#[cfg(test)]
mod tests;
