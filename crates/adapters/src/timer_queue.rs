//! What the two consumers of a timer queue share — the caller (jobs queue) and the notifier
//! (deliveries queue), each on an SQS event source in batches:
//!
//! - [`handle_batch`]: each message handled concurrently, at most a given number at once, each in
//!   a task span; the answer lists the messages that failed (`ReportBatchItemFailures`), so only
//!   those come back after the visibility timeout.
//! - [`timer_of`]: a message's timer, if it is one that belongs on this queue; an unreadable
//!   message, or another queue's timer, is dropped loudly (retrying cannot fix either).
//! - [`send_on`]: a timer sent on to the queue to arrive when it is due, in its message group.

use std::fmt::Display;
use std::future::Future;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use futures_util::StreamExt;
use taskfleet_core::dispatch::{Dispatch, DispatchMessage, Step, Timer};
use taskfleet_core::ports::Publisher;
use taskfleet_core::{PublishError, Timestamp, trace};
use tracing::Instrument;

/// Handles `messages` with `fire`, at most `concurrency` at once, each in a task span (its lines
/// carry the task's id, and its trace once the task is read); the messages `fire` failed.
pub async fn handle_batch<F, Fut, E>(messages: Vec<SqsMessage>, concurrency: usize, fire: F) -> SqsBatchResponse
where
    F: Fn(SqsMessage) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: Display,
{
    let fire = &fire;
    let failures: Vec<BatchItemFailure> = futures_util::stream::iter(messages)
        .map(|message| {
            async move {
                let message_id = message.message_id.clone().unwrap_or_default();
                fire(message).await.err().map(|error| {
                    tracing::error!(%message_id, %error, "timer not handled; the message will come back");
                    let mut failure = BatchItemFailure::default();
                    failure.item_identifier = message_id;
                    failure
                })
            }
            .instrument(trace::task_span(None))
        })
        .buffer_unordered(concurrency.max(1))
        .filter_map(std::future::ready)
        .collect()
        .await;
    let mut answer = SqsBatchResponse::default();
    answer.batch_item_failures = failures;
    answer
}

/// The timer `message` carries, if it parses and `belongs(step)` holds (else it is dropped with
/// an error line naming `queue`). Notes the task's id on the span.
pub fn timer_of(message: &SqsMessage, queue: &str, belongs: impl Fn(Step) -> bool) -> Option<Timer> {
    let body = message.body.as_deref().unwrap_or_default();
    let timer = match DispatchMessage::parse(body) {
        Ok(timer) => timer,
        Err(error) => {
            tracing::error!(message_id = ?message.message_id, %error, "unreadable timer dropped");
            return None;
        }
    };
    if !belongs(timer.step) {
        tracing::error!(message_id = ?message.message_id, task_id = %timer.task_id, step = ?timer.step, queue, "a timer on the wrong queue dropped");
        return None;
    }
    trace::note_id(&timer.task_id);
    Some(timer)
}

/// The message group `message` was sent in (the client's), or none.
pub fn group(message: &SqsMessage) -> &str {
    message.attributes.get("MessageGroupId").map_or("", String::as_str)
}

/// Sends `timer` on through `queue` to arrive at `due_at`, in message group `group`.
pub async fn send_on(
    queue: &impl Publisher,
    timer: &Timer,
    due_at: Timestamp,
    group: &str,
    now: Timestamp,
) -> Result<(), PublishError> {
    let dispatch = Dispatch::new(timer.message(due_at), group, now);
    for outcome in queue.publish(std::slice::from_ref(&dispatch)).await {
        outcome?;
    }
    Ok(())
}
