//! On the tasks table's DynamoDB stream: every change that calls for a timer (see
//! `taskfleet_core::dispatch`) becomes a message, delayed until it is due, in the client's message
//! group. Timers of jobs go to the jobs queue (a RECEIVED task's start, an IN_PROGRESS attempt's
//! deadline check), timers of completion-webhook deliveries (an ended task's next attempt) to the
//! deliveries queue, so that a receiver that is down never delays a task (SendMessageBatch, ten
//! per call, the calls to both queues made concurrently). REMOVE records (TTL deletions), other
//! changes to ended tasks and items that are not tasks are skipped. The answer lists batch item
//! failures, so one bad record neither blocks nor replays the whole batch: Lambda retries from
//! the first failed record, and a record that keeps failing ends in the on-failure destination.

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
    /// The jobs queue (starts and deadlines).
    pub jobs: P,
    /// The deliveries queue (completion-webhook attempts).
    pub deliveries: P,
}

impl App<SqsPublisher> {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self { jobs: SqsPublisher::from_env(sdk)?, deliveries: SqsPublisher::deliveries_from_env(sdk)? })
    }
}

/// Sends each dispatch to its queue; the outcomes in the order of `dispatches`. A queue answering
/// fewer results than it was given messages has not confirmed the rest.
async fn publish<P: Publisher>(app: &App<P>, dispatches: &[Dispatch]) -> Vec<Result<(), PublishError>> {
    let (deliveries, jobs): (Vec<Dispatch>, Vec<Dispatch>) =
        dispatches.iter().cloned().partition(|dispatch| dispatch.message.step.is_delivery());
    let (jobs_sent, deliveries_sent) = futures_util::future::join(
        async { if jobs.is_empty() { Vec::new() } else { app.jobs.publish(&jobs).await } },
        async { if deliveries.is_empty() { Vec::new() } else { app.deliveries.publish(&deliveries).await } },
    )
    .await;
    let (mut jobs_sent, mut deliveries_sent) = (jobs_sent.into_iter(), deliveries_sent.into_iter());
    dispatches
        .iter()
        .map(|dispatch| {
            let sent = if dispatch.message.step.is_delivery() { deliveries_sent.next() } else { jobs_sent.next() };
            sent.unwrap_or_else(|| Err(PublishError("no result from the publisher".into())))
        })
        .collect()
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
    let outcomes = publish(app, &messages).await;
    for ((dispatch, sequence), outcome) in messages.iter().zip(sources).zip(outcomes) {
        let message = &dispatch.message;
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
