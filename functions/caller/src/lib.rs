//! On the dispatch SNS topic: starts the attempt named by each message (a conditional write, so
//! a repeated message is a no-op) and POSTs `{"task_id","payload","callback_url","attempt"}` to
//! the external service. A refusal fails the task with the reason.

use aws_lambda_events::event::sns::SnsEvent;
use lambda_runtime::{Diagnostic, LambdaEvent};
use taskfleet_adapters::{ConfigError, DynamoStore, HttpExternalService, SdkConfig, config};
use taskfleet_core::dispatch::DispatchMessage;
use taskfleet_core::ports::{ExternalService, TaskStore};
use taskfleet_core::service::{self, HandOver};
use taskfleet_core::{StoreError, Timestamp, TtlPolicy};
use thiserror::Error;

/// Everything the function needs, built once per cold start.
pub struct App<S, E> {
    pub store: S,
    pub service: E,
    /// Public base URL of the webhook.
    pub callback_base: String,
    pub ttl: TtlPolicy,
}

impl App<DynamoStore, HttpExternalService> {
    pub fn from_env(sdk: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Self {
            store: DynamoStore::from_env(sdk)?,
            service: HttpExternalService::from_env()?,
            callback_base: config::url(config::CALLBACK_BASE_URL)?,
            ttl: config::ttl_policy()?,
        })
    }
}

/// Failures that make Lambda retry the invocation (and, after its retries, send the message to
/// the on-failure destination).
#[derive(Debug, Error)]
pub enum CallerError {
    #[error("task store unavailable: {0}")]
    Store(#[from] StoreError),
}

impl From<CallerError> for Diagnostic {
    fn from(error: CallerError) -> Self {
        let error_type = match error {
            CallerError::Store(_) => "StoreUnavailable",
        };
        Diagnostic { error_type: error_type.to_owned(), error_message: error.to_string() }
    }
}

pub async fn handle<S: TaskStore, E: ExternalService>(
    app: &App<S, E>,
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
        let outcome = service::hand_over(
            &app.store,
            &app.service,
            &task_id,
            attempt,
            &app.callback_base,
            Timestamp::now(),
            &app.ttl,
        )
        .await?;
        match outcome {
            HandOver::Accepted { attempt } => {
                tracing::info!(%task_id, attempt, "job handed to the external service")
            }
            HandOver::Skipped => {
                tracing::info!(%task_id, attempt, "attempt already started; duplicate ignored")
            }
            HandOver::Missing => tracing::warn!(%task_id, attempt, "task no longer exists"),
            HandOver::Refused { error } => {
                tracing::warn!(%task_id, attempt, %error, "external service refused; task failed")
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
