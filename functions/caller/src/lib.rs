//! On the jobs queue (SQS, in batches): fires each timer the dispatcher set.
//! - **Start** attempt n: unless the fleet holds new jobs, starts the attempt (a conditional
//!   write, so a repeated message is a no-op and the service is called at most once per attempt)
//!   and POSTs `{"task_id","payload","callback_url","attempt"}` to the external service. A refusal
//!   worth retrying (5xx, 408, 429, timeout, network) puts the task back for a later attempt with
//!   backoff while its series has attempts left; any other refusal fails it with the reason. A
//!   429 or 503 with `Retry-After` also holds new jobs fleet-wide for that long
//!   (`taskfleet_core::hold`); a job that meets a hold is sent on to arrive when it ends, its
//!   task staying RECEIVED.
//! - **Deadline** of attempt n: times the attempt out if its callback has not come and no
//!   heartbeat moved the deadline.
//!
//! A timer that arrives early waits (up to a second) or is sent on. The jobs of a batch run
//! concurrently, at most `CALLER_CONCURRENCY` at once (fleet-wide: that × the event source's
//! `MaximumConcurrency`). The answer lists the messages that failed (`ReportBatchItemFailures`):
//! only those come back, after the visibility timeout.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::LambdaEvent;
use taskfleet_adapters::timer_queue;
use taskfleet_adapters::{
    ConfigError, DynamoStore, EmfSink, HttpExternalService, S3Blobs, SdkConfig, SqsPublisher, config,
};
use taskfleet_core::blob::{BlobStore, Blobs};
use taskfleet_core::dispatch::{Step, Timer, When};
use taskfleet_core::hold::{self, HoldGate};
use taskfleet_core::policy::Policies;
use taskfleet_core::ports::{EventSink, ExternalService, HoldStore, Publisher, TaskEvent, TaskStore};
use taskfleet_core::random::SystemJitter;
use taskfleet_core::service::{self, HandOver, HandOverError};
use taskfleet_core::time::SystemClock;
use taskfleet_core::{PublishError, StoreError, TaskStatus, Timestamp, trace};
use thiserror::Error;

/// Everything the function needs, built once per cold start.
pub struct App<S, E, B = S3Blobs, Q = SqsPublisher, H = DynamoStore> {
    pub store: S,
    /// Where large payloads are.
    pub blobs: Blobs<B>,
    pub service: E,
    /// Public base URL of the webhook.
    pub callback_base: String,
    pub policies: Policies,
    pub events: Arc<dyn EventSink>,
    /// The jobs queue, to send a timer on.
    pub queue: Q,
    /// The fleet-wide hold on new jobs.
    pub hold: HoldGate<H>,
    /// Jobs of one batch handled at once.
    pub concurrency: usize,
}

impl App<DynamoStore, HttpExternalService> {
    /// Reads the configuration, and the signing secrets (a secret that cannot be read fails).
    pub async fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        let concurrency = config::bounded(
            config::CALLER_CONCURRENCY,
            config::DEFAULT_CALLER_CONCURRENCY,
            config::MAX_CALLER_CONCURRENCY,
        )?;
        Ok(Self {
            store: DynamoStore::from_env(sdk)?,
            hold: HoldGate::new(DynamoStore::from_env(sdk)?),
            blobs: Blobs::new(S3Blobs::from_env(sdk)?, config::inline_max_bytes()?),
            service: HttpExternalService::from_env(config::signing(sdk).await?)?,
            callback_base: config::url(config::CALLBACK_BASE_URL)?,
            policies: config::policies()?,
            events: Arc::new(EmfSink::from_env()),
            queue: SqsPublisher::from_env(sdk)?,
            concurrency: usize::try_from(concurrency).unwrap_or(1),
        })
    }
}

/// Why a message was not handled; it comes back after the visibility timeout (and, after the
/// queue's receive limit, goes to its dead-letter queue).
#[derive(Debug, Error)]
pub enum CallerError {
    #[error("task store unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Token(String),
    #[error("cannot send the timer on: {0}")]
    Queue(#[from] PublishError),
}

impl From<HandOverError> for CallerError {
    fn from(error: HandOverError) -> Self {
        match error {
            HandOverError::Store(e) => Self::Store(e),
            HandOverError::Token(e) => Self::Token(e.to_string()),
        }
    }
}

pub async fn handle<S, E, B, Q, H>(app: &App<S, E, B, Q, H>, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse
where
    S: TaskStore,
    E: ExternalService,
    B: BlobStore,
    Q: Publisher,
    H: HoldStore,
{
    timer_queue::handle_batch(
        event.payload.records,
        app.concurrency,
        |message| async move { fire(app, &message).await },
    )
    .await
}

/// Handles one message.
async fn fire<S, E, B, Q, H>(app: &App<S, E, B, Q, H>, message: &SqsMessage) -> Result<(), CallerError>
where
    S: TaskStore,
    E: ExternalService,
    B: BlobStore,
    Q: Publisher,
    H: HoldStore,
{
    // Deliveries have a queue and a function of their own.
    let Some(timer) = timer_queue::timer_of(message, "jobs", |step| !step.is_delivery()) else { return Ok(()) };
    let group = timer_queue::group(message);
    let mut now = Timestamp::now();
    match timer.when(now) {
        When::Now => {}
        When::After(wait) => {
            // Most attempts end before their deadline: look before waiting (an instance waiting
            // is billed), and wait only for one that still runs.
            if timer.step == Step::Deadline && service::running(&app.store, &timer).await?.is_none() {
                return Ok(());
            }
            tokio::time::sleep(wait).await;
            now = Timestamp::now();
        }
        When::SendOn => return send_on(app, &timer, timer.due_at, group, now).await,
    }
    match timer.step {
        Step::Deadline => time_out(app, &timer, now).await,
        Step::Deliver => Ok(()),
        Step::Start => {
            if let Some(until) = app.hold.held_until(now).await? {
                tracing::info!(task_id = %timer.task_id, attempt = timer.attempt, until = %until.to_rfc3339(), "jobs held; start sent on");
                return send_on(app, &timer, until, group, now).await;
            }
            start(app, &timer).await
        }
    }
}

async fn send_on<S, E, B, Q: Publisher, H>(
    app: &App<S, E, B, Q, H>,
    timer: &Timer,
    due_at: Timestamp,
    group: &str,
    now: Timestamp,
) -> Result<(), CallerError> {
    Ok(timer_queue::send_on(&app.queue, timer, due_at, group, now).await?)
}

async fn time_out<S: TaskStore, E, B, Q, H>(
    app: &App<S, E, B, Q, H>,
    timer: &Timer,
    now: Timestamp,
) -> Result<(), CallerError> {
    let (task_id, attempt) = (&timer.task_id, timer.attempt);
    let timed_out = service::deadline(&app.store, timer, now, &app.policies).await?;
    if let Some(task) = &timed_out {
        trace::note(task);
    }
    match timed_out {
        Some(task) if task.status == TaskStatus::Received => {
            tracing::warn!(%task_id, attempt, "callback overdue; attempt timed out, will retry");
            app.events.record(TaskEvent::Retried);
        }
        Some(task) => {
            tracing::warn!(%task_id, attempt, "callback overdue; no attempts left, task failed");
            app.events.record(TaskEvent::finished(&task));
        }
        None => {}
    }
    Ok(())
}

async fn start<S, E, B, Q, H>(app: &App<S, E, B, Q, H>, timer: &Timer) -> Result<(), CallerError>
where
    S: TaskStore,
    E: ExternalService,
    B: BlobStore,
    H: HoldStore,
{
    let (task_id, attempt) = (&timer.task_id, timer.attempt);
    let outcome = service::hand_over(
        &app.store,
        &app.blobs,
        &app.service,
        (task_id, attempt),
        &app.callback_base,
        (SystemClock, SystemJitter),
        &app.policies,
    )
    .await
    .inspect_err(|error| {
        // The message comes back; if the attempt had started, the retry skips it and its
        // deadline timer recovers it.
        tracing::error!(%task_id, attempt, %error, "hand-over failed");
    })?;
    match outcome {
        HandOver::Accepted { .. } => {
            tracing::info!(%task_id, attempt, "job handed to the external service");
            app.events.record(TaskEvent::ExternalCall { accepted: true });
        }
        HandOver::Skipped => tracing::info!(%task_id, attempt, "attempt already started or task moved on; ignored"),
        HandOver::Missing => tracing::warn!(%task_id, attempt, "task no longer exists"),
        HandOver::Retrying { error, retry_at } => {
            tracing::warn!(%task_id, attempt, %error, retry_at = %retry_at.to_rfc3339(), "external service refused; will retry");
            app.events.record(TaskEvent::ExternalCall { accepted: false });
            app.events.record(TaskEvent::Retried);
            hold_if_asked(app, &error).await;
        }
        HandOver::Failed { error, task } => {
            tracing::warn!(%task_id, attempt, %error, "external service refused; task failed");
            app.events.record(TaskEvent::ExternalCall { accepted: false });
            if let Some(task) = task {
                app.events.record(TaskEvent::finished(&task));
            }
            hold_if_asked(app, &error).await;
        }
        HandOver::PayloadGone { task } => {
            tracing::error!(%task_id, attempt, "the task's payload is no longer stored; task failed");
            if let Some(task) = task {
                app.events.record(TaskEvent::finished(&task));
            }
        }
    }
    Ok(())
}

/// A 429/503 with `Retry-After` holds new jobs fleet-wide, from when the answer came. The
/// refusal itself is recorded already; a hold that cannot be stored is only logged (this
/// instance holds anyway).
async fn hold_if_asked<S, E, B, Q, H: HoldStore>(app: &App<S, E, B, Q, H>, error: &taskfleet_core::ExternalError) {
    let Some(pause) = hold::back_off_for(error) else { return };
    let until = Timestamp::now().plus(pause);
    tracing::warn!(until = %until.to_rfc3339(), "external service asks to back off; holding new jobs");
    if let Err(error) = app.hold.hold(until).await {
        tracing::error!(%error, "hold not stored; other instances will not see it");
    }
}

#[cfg(test)]
mod tests;
