//! On the deliveries queue (SQS, in batches): makes each completion-webhook delivery attempt the
//! dispatcher set a timer for (issue 12).
//!
//! - A **Deliver** timer for attempt n: if the task's delivery still waits for exactly that
//!   attempt (`completion::attempt::due_attempt`; a repeated message, or one for a delivery that
//!   was recorded or whose task is gone, sends nothing), POSTs the task as `GET /tasks/{id}` shows
//!   it (a large result as a presigned `result_url`), signed with the client's own secret, and
//!   records the attempt in one conditional write: delivered, retrying (the next attempt's due
//!   time, whose timer the dispatcher sets) or given up. The receiver's answer never fails the
//!   message: only the store and the queue do.
//! - Any other timer does not belong here and is dropped, loudly.
//!
//! A timer that arrives early waits (up to a second) or is sent on. The deliveries of a batch run
//! concurrently, at most `NOTIFIER_CONCURRENCY` at once, each bounded by the attempt timeout, so
//! one client's slow or broken receiver never holds another's delivery (nor any task: deliveries
//! have a queue of their own). The answer lists the messages that failed
//! (`ReportBatchItemFailures`): only those come back, after the visibility timeout.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use taskfleet_adapters::completion::ClientBuildError;
use taskfleet_adapters::timer_queue;
use taskfleet_adapters::{
    CompletionSender, ConfigError, DynamoSecretRecords, DynamoStore, EmfSink, S3Blobs, SdkConfig, SqsPublisher, config,
};
use taskfleet_api::view::TaskView;
use taskfleet_core::blob::BlobStore;
use taskfleet_core::completion::attempt::{self, Attempted, Settings};
use taskfleet_core::completion::client_secret::MasterKey;
use taskfleet_core::completion::schedule::DeliverySchedule;
use taskfleet_core::dispatch::{Step, Timer, When};
use taskfleet_core::ports::{EventSink, Publisher, SecretRecords, TaskEvent, TaskStore, WebhookSender};
use taskfleet_core::{PublishError, StoreError, Timestamp, TtlPolicy, trace};
use thiserror::Error;

/// Everything the function needs, built once per cold start.
pub struct App<S, R, W, B = S3Blobs, Q = SqsPublisher> {
    pub store: S,
    /// The clients' webhook secret records.
    pub records: R,
    /// Sends one attempt (the HTTP client, the destination rules, the attempt timeout).
    pub sender: W,
    /// Where large results are (the function only presigns reads of them).
    pub blobs: B,
    /// The key every client's webhook secret is derived from.
    pub master: MasterKey,
    pub schedule: DeliverySchedule,
    pub ttl: TtlPolicy,
    pub events: Arc<dyn EventSink>,
    /// The deliveries queue, to send a timer on.
    pub queue: Q,
    /// Deliveries of one batch made at once.
    pub concurrency: usize,
}

/// Why the function cannot start.
#[derive(Debug, Error)]
pub enum InitError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Client(#[from] ClientBuildError),
}

impl App<DynamoStore, DynamoSecretRecords, CompletionSender> {
    /// Reads the configuration, and the master key (a key that cannot be read fails).
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, InitError> {
        let concurrency = config::bounded(
            config::NOTIFIER_CONCURRENCY,
            config::DEFAULT_NOTIFIER_CONCURRENCY,
            config::MAX_NOTIFIER_CONCURRENCY,
        )?;
        Ok(Self {
            store: DynamoStore::from_env(sdk)?,
            records: DynamoSecretRecords::from_env(sdk)?,
            sender: CompletionSender::new(config::destination_rules()?, config::webhook_timeout()?)?,
            blobs: S3Blobs::from_env(sdk)?,
            master: config::master_key(sdk).await?,
            schedule: config::delivery_schedule()?,
            ttl: config::ttl_policy()?,
            events: Arc::new(EmfSink::from_env()),
            queue: SqsPublisher::deliveries_from_env(sdk)?,
            concurrency: usize::try_from(concurrency).unwrap_or(1),
        })
    }
}

/// Why a message was not handled; it comes back after the visibility timeout (and, after the
/// queue's receive limit, goes to its dead-letter queue).
#[derive(Debug, Error)]
pub enum NotifierError {
    #[error("task store unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("cannot send the timer on: {0}")]
    Queue(#[from] PublishError),
}

pub async fn handle<S, R, W, B, Q>(app: &App<S, R, W, B, Q>, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse
where
    S: TaskStore,
    R: SecretRecords,
    W: WebhookSender,
    B: BlobStore,
    Q: Publisher,
{
    timer_queue::handle_batch(
        event.payload.records,
        app.concurrency,
        |message| async move { fire(app, &message).await },
    )
    .await
}

/// Handles one message.
async fn fire<S, R, W, B, Q>(app: &App<S, R, W, B, Q>, message: &SqsMessage) -> Result<(), NotifierError>
where
    S: TaskStore,
    R: SecretRecords,
    W: WebhookSender,
    B: BlobStore,
    Q: Publisher,
{
    // Jobs have a queue and a function of their own.
    let Some(timer) = timer_queue::timer_of(message, "deliveries", Step::is_delivery) else { return Ok(()) };
    let mut now = Timestamp::now();
    match timer.when(now) {
        When::Now => {}
        When::After(wait) => {
            tokio::time::sleep(wait).await;
            now = Timestamp::now();
        }
        When::SendOn => {
            return Ok(timer_queue::send_on(&app.queue, &timer, timer.due_at, timer_queue::group(message), now).await?);
        }
    }
    deliver(app, &timer, now).await
}

/// Makes the attempt `timer` asks for, if it is still due, and records it.
async fn deliver<S, R, W, B, Q>(app: &App<S, R, W, B, Q>, timer: &Timer, now: Timestamp) -> Result<(), NotifierError>
where
    S: TaskStore,
    R: SecretRecords,
    W: WebhookSender,
    B: BlobStore,
{
    let (task_id, attempt) = (&timer.task_id, timer.attempt);
    let Some((task, delivery)) = attempt::due_attempt(&app.store, task_id, attempt, now).await? else {
        tracing::info!(%task_id, attempt, "delivery attempt made already, superseded, or its task is gone; ignored");
        return Ok(());
    };
    trace::note(&task);
    let view = TaskView::shown(&task, &app.blobs).await?;
    let view = serde_json::to_value(&view).unwrap_or_else(|_| unreachable!("a task view serialises"));
    let settings = Settings { master: &app.master, schedule: &app.schedule, ttl: &app.ttl };
    let attempted = attempt::send_and_record(&app.store, &app.records, &app.sender, (&task, &delivery), view, settings)
        .await
        .inspect_err(|error| {
            // The message comes back: the attempt is made again (the receiver may get it twice,
            // under the same webhook-id).
            tracing::error!(%task_id, attempt, %error, "delivery attempt not recorded");
        })?;
    match attempted {
        Attempted::Delivered => {
            tracing::info!(%task_id, attempt, "completion webhook delivered");
            app.events.record(TaskEvent::WebhookDelivered);
        }
        Attempted::Retrying { reason, next_at } => {
            tracing::warn!(%task_id, attempt, %reason, next_at = %next_at.to_rfc3339(), "completion webhook attempt failed; will retry");
            app.events.record(TaskEvent::WebhookRetried);
        }
        Attempted::GaveUp { reason } => {
            tracing::warn!(%task_id, attempt, %reason, "completion webhook attempt failed; no attempts left, given up");
            app.events.record(TaskEvent::WebhookGaveUp);
        }
        Attempted::Superseded => {
            tracing::info!(%task_id, attempt, "delivery attempt recorded by another instance first; ignored");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
