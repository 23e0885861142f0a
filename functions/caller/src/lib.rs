//! On the dispatch SNS topic: starts the attempt named by each message (a conditional write, so
//! a repeated message is a no-op and the service is called at most once per attempt) and POSTs
//! `{"task_id","payload","callback_url","attempt"}` to the external service. A refusal worth
//! retrying (5xx, 408, 429, timeout, network) puts the task back for a later attempt with
//! backoff while its series has attempts left; any other refusal fails it with the reason. That
//! follow-up write is tried 3 times (storage throttled or unreachable) before the invocation
//! fails; an attempt left started is then recovered by the sweeper at its callback deadline.

use std::sync::Arc;

use aws_lambda_events::event::sns::SnsEvent;
use lambda_runtime::{Diagnostic, LambdaEvent};
use taskfleet_adapters::{ConfigError, DynamoStore, EmfSink, HttpExternalService, S3Blobs, SdkConfig, config};
use taskfleet_core::blob::{BlobStore, Blobs};
use taskfleet_core::dispatch::DispatchMessage;
use taskfleet_core::policy::Policies;
use taskfleet_core::ports::{EventSink, ExternalService, TaskEvent, TaskStore};
use taskfleet_core::service::{self, HandOver, HandOverError};
use taskfleet_core::{StoreError, Timestamp};
use thiserror::Error;

/// Everything the function needs, built once per cold start.
pub struct App<S, E, B = S3Blobs> {
    pub store: S,
    /// Where large payloads are.
    pub blobs: Blobs<B>,
    pub service: E,
    /// Public base URL of the webhook.
    pub callback_base: String,
    pub policies: Policies,
    pub events: Arc<dyn EventSink>,
}

impl App<DynamoStore, HttpExternalService> {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            store: DynamoStore::from_env(sdk)?,
            blobs: Blobs::new(S3Blobs::from_env(sdk)?, config::inline_max_bytes()?),
            service: HttpExternalService::from_env()?,
            callback_base: config::url(config::CALLBACK_BASE_URL)?,
            policies: config::policies()?,
            events: Arc::new(EmfSink::from_env()),
        })
    }
}

/// Failures that make Lambda retry the invocation (and, after its retries, send the message to
/// the on-failure destination).
#[derive(Debug, Error)]
pub enum CallerError {
    #[error("task store unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Token(String),
}

impl From<HandOverError> for CallerError {
    fn from(error: HandOverError) -> Self {
        match error {
            HandOverError::Store(e) => Self::Store(e),
            HandOverError::Token(e) => Self::Token(e.to_string()),
        }
    }
}

impl From<CallerError> for Diagnostic {
    fn from(error: CallerError) -> Self {
        let error_type = match error {
            CallerError::Store(_) => "StoreUnavailable",
            CallerError::Token(_) => "NoRandomness",
        };
        Diagnostic { error_type: error_type.to_owned(), error_message: error.to_string() }
    }
}

pub async fn handle<S: TaskStore, E: ExternalService, B: BlobStore>(
    app: &App<S, E, B>,
    event: LambdaEvent<SnsEvent>,
) -> Result<(), CallerError> {
    for record in &event.payload.records {
        let message_id = &record.sns.message_id;
        let (task_id, attempt) = match DispatchMessage::parse(&record.sns.message) {
            Ok(parsed) => parsed,
            Err(error) => {
                // Retrying cannot fix a message that does not parse: drop it, loudly.
                tracing::error!(%message_id, %error, "unreadable dispatch message dropped");
                continue;
            }
        };
        let now = Timestamp::now();
        let outcome = service::hand_over(
            &app.store,
            &app.blobs,
            &app.service,
            (&task_id, attempt),
            &app.callback_base,
            now,
            &app.policies,
        )
        .await
        .inspect_err(|error| {
            // Lambda retries the message; if the attempt had started, the retry skips it and the
            // sweeper recovers it at its callback deadline.
            tracing::error!(%task_id, attempt, %error, "hand-over failed");
        })?;
        match outcome {
            HandOver::Accepted { .. } => {
                tracing::info!(%task_id, attempt, "job handed to the external service");
                app.events.record(TaskEvent::ExternalCall { accepted: true });
            }
            HandOver::Skipped => tracing::info!(%task_id, attempt, "attempt already started; duplicate ignored"),
            HandOver::Missing => tracing::warn!(%task_id, attempt, "task no longer exists"),
            HandOver::Retrying { error, retry_at } => {
                tracing::warn!(%task_id, attempt, %error, retry_at = %retry_at.to_rfc3339(), "external service refused; will retry");
                app.events.record(TaskEvent::ExternalCall { accepted: false });
                app.events.record(TaskEvent::Retried);
            }
            HandOver::Failed { error, task } => {
                tracing::warn!(%task_id, attempt, %error, "external service refused; task failed");
                app.events.record(TaskEvent::ExternalCall { accepted: false });
                if let Some(task) = task {
                    app.events.record(TaskEvent::finished(&task));
                }
            }
            HandOver::PayloadGone { task } => {
                tracing::error!(%task_id, attempt, "the task's payload is no longer stored; task failed");
                if let Some(task) = task {
                    app.events.record(TaskEvent::finished(&task));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
